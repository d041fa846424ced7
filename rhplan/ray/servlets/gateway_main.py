"""Runs ON a cluster's head (or a worker node that serves an env), in the Python that
runs Ray there: starts the cluster's gateway (gateway.py says what it is) and runs it.

    python gateway_main.py ensure ADDRESS TEMP_DIR TOKEN_PATH STATE_DIR
        start the gateway unless one answers already; print its {"port", "pid"}
    python gateway_main.py serve  ADDRESS TEMP_DIR TOKEN_PATH STATE_DIR
        the gateway itself (started detached by ensure)

TEMP_DIR (the cluster's Ray temp dir) is on the command line so that stopping the
cluster's Ray (by its temp dir) stops the gateway too; the gateway also exits by
itself when the Ray head stops answering. The gateway listens before it joins Ray, so a
first caller does not wait for a Ray driver to start. Standard library only; its
sibling files (uploaded beside it by gateway_start.py) are imported from its folder.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time

if __package__:  # imported inside rhplan (tests)
    from . import gateway as proto
    from .gateway_ray import gcs_up
    from .gateway_server import Gateway
else:  # run on a node: its sibling files are beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gateway as proto  # type: ignore[no-redef]
    from gateway_ray import gcs_up  # type: ignore[no-redef]
    from gateway_server import Gateway  # type: ignore[no-redef]

GCS_MISSES = 3  # the gateway exits after this many failed checks, 5 s apart


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def serve(address: str, temp_dir: str, token_path: str, state_dir: str) -> int:
    """The gateway: listen on the head's loopback, write the port file, serve callers
    until the Ray head stops answering."""
    del temp_dir  # on the command line only, so the cluster's Ray owns this process
    if not gcs_up(address):
        print(f"Ray at {address} is not answering", file=sys.stderr)
        return 1
    with open(token_path, "rb") as fh:
        token = fh.read().strip()
    log_dir = os.path.join(state_dir, "gateway-out")
    os.makedirs(log_dir, mode=0o700, exist_ok=True)
    # a worker node's own gateway (its state dir is node-HOST) never joins Ray
    gw = Gateway(address, token, log_dir,
                 socket_only=os.path.basename(os.path.normpath(state_dir)).startswith("node-"))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))  # loopback only: callers come through SSH
    srv.listen(64)
    info = os.path.join(state_dir, "gateway.json")
    _write_json(info, {"port": srv.getsockname()[1], "pid": os.getpid(),
                       "protocol": proto.PROTOCOL})

    def watch() -> None:
        misses = 0
        while misses < GCS_MISSES:
            time.sleep(5)
            misses = 0 if gcs_up(address) else misses + 1
        try:
            with open(info) as fh:
                if json.load(fh).get("pid") == os.getpid():
                    os.unlink(info)
        except (OSError, ValueError):
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=gw.serve_connection, args=(conn,), daemon=True).start()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def _running(info_path: str) -> dict | None:
    try:
        with open(info_path) as fh:
            info = json.load(fh)
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if info.get("protocol") == proto.PROTOCOL and _answers(int(info["port"])) else None


def ensure(address: str, temp_dir: str, token_path: str, state_dir: str,
           wait: float = 90.0) -> dict:
    """The running gateway, or a new one (one at a time: callers may race here)."""
    import fcntl
    import subprocess

    os.makedirs(state_dir, exist_ok=True)
    info_path = os.path.join(state_dir, "gateway.json")
    with open(os.path.join(state_dir, "gateway.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _running(info_path)
        if info is not None:
            return info
        try:
            os.unlink(info_path)
        except FileNotFoundError:
            pass
        log = open(os.path.join(state_dir, "gateway.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "serve", address, temp_dir,
             token_path, state_dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + wait
        while time.time() < deadline:
            info = _running(info_path)
            if info is not None:
                return info
            if proc.poll() is not None:
                break
            time.sleep(0.01)  # it listens within ~0.1 s: no Ray to join first
        if proc.poll() is None:
            proc.kill()
        with open(os.path.join(state_dir, "gateway.log"), "rb") as fh:
            tail = fh.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        return {"error": "the gateway did not start: "
                         + (tail[-1] if tail else f"no answer within {wait:.0f}s")}



def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "serve":
        return serve(*args)
    result = ensure(*args)
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
