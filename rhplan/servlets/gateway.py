"""Runs ON a cluster's head, in the Python that runs Ray there: the cluster's gateway.

Callers anywhere reach a cluster's servlets through SSH alone: rhplan opens a
`direct-tcpip` channel on its SSH connection to this process, which listens on the
head's 127.0.0.1 only, is a Ray driver of the cluster, and relays requests to the
env servlets (named actors) by name. Standard library and Ray only, like
host_script.py (rhplan is not installed on hosts); the caller imports this file too,
for the frame format, so nothing at module level may need Ray.

    python gateway.py ensure ADDRESS TEMP_DIR TOKEN_PATH STATE_DIR
        start the gateway unless one answers already; print its {"port", "pid"}
    python gateway.py serve  ADDRESS TEMP_DIR TOKEN_PATH STATE_DIR
        the gateway itself (started detached by ensure)

TEMP_DIR (the cluster's Ray temp dir) is on the command line so that stopping the
cluster's Ray (by its temp dir) stops the gateway too; the gateway also exits by
itself when the Ray head stops answering.

The protocol, on one stream: frames of `>IBI` (request id, kind, body length) then
the body. Both sides prove they hold the cluster's token without sending it (so a
process squatting on a dead gateway's port learns nothing): the caller sends HELLO
{"protocol", "nonce"}; the gateway answers CHALLENGE {"nonce", "proof"} with proof =
HMAC(token, "gateway" + both nonces), which the caller checks; the caller sends AUTH
{"proof": HMAC(token, "caller" + both nonces)}; a wrong one closes the connection.
After WELCOME (JSON: ray and python versions), the
caller sends REQUEST frames (a pickled (op, servlet, args) tuple) with ids of its
choosing, many at once; each gets OUT frames (1 byte stream, 1 stdout 2 stderr, then
the bytes) while it runs and ends with one RESULT or ERROR frame (pickled). User
objects stay cloudpickled bytes end to end: only the env's own interpreter unpickles
them, so the gateway needs none of their modules.
"""
from __future__ import annotations

import hmac
import json
import os
import pickle
import socket
import struct
import sys
import threading
import time
import traceback
import uuid

PROTOCOL = 1
NAMESPACE = "rhplan"
HEADER = struct.Struct(">IBI")
HELLO, WELCOME, REQUEST, OUT, RESULT, ERROR, CHALLENGE, AUTH = range(1, 9)
HANDSHAKE_TIMEOUT = 10.0
WORKERS = 64  # requests served at once, over all connections
POLL = (0.002, 0.05)  # output is looked for this often while a call runs (min, max)
GCS_MISSES = 3  # the gateway exits after this many failed checks, 5 s apart


# -- frames (used by both sides) --------------------------------------------------------

def read_exact(recv, n: int) -> bytes:
    """n bytes from recv (a socket's or channel's), or EOFError."""
    if n == 0:
        return b""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        chunk = recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        view[got:got + len(chunk)] = chunk
        got += len(chunk)
    return bytes(buf)


def read_frame(recv) -> tuple[int, int, bytes]:
    req, kind, length = HEADER.unpack(read_exact(recv, HEADER.size))
    return req, kind, read_exact(recv, length)


def frame(req: int, kind: int, body: bytes) -> bytes:
    return HEADER.pack(req, kind, len(body)) + body


def proof(token: bytes, who: str, caller_nonce: str, gateway_nonce: str) -> str:
    """What shows a side holds the token, for this one handshake."""
    msg = f"{who}:{caller_nonce}:{gateway_nonce}".encode()
    return hmac.new(token.strip(), msg, "sha256").hexdigest()


# -- the gateway (head side) --------------------------------------------------------

class Gateway:
    def __init__(self, address: str, token: bytes):
        import ray

        self.ray = ray
        self.address = address
        self.token = token
        self.actors: dict[str, object] = {}
        self.lock = threading.Lock()
        self.log_dir = ""
        from concurrent.futures import ThreadPoolExecutor
        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="rhplan-gw")

    # -- servlets by name; a servlet restarted (by apply) is found again by its name
    def actor(self, name: str, fresh: bool = False):
        with self.lock:
            actor = None if fresh else self.actors.get(name)
        if actor is None:
            try:
                actor = self.ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                raise LookupError(f"servlet {name!r} is not running; rhplan plan shows it "
                                  "as drift and rhplan apply starts it") from None
            with self.lock:
                self.actors[name] = actor
        return actor

    def has(self, name: str, method: str) -> bool:
        """Whether the servlet knows method (one started by an older rhplan may not)."""
        try:
            getattr(self.actor(name), method)
            return True
        except AttributeError:
            return False

    def wait(self, name: str, method: str, args: tuple, send_out, log: str | None):
        """Call method on the named servlet and wait for it. A handle to a servlet that
        was replaced (by an apply) fails with RayActorError: ask again by name, once."""
        ray = self.ray
        for attempt in (0, 1):
            ref = getattr(self.actor(name), method).remote(*args)
            try:
                return self._wait_ref(ref, send_out, log)
            except ray.exceptions.RayActorError:
                if attempt:
                    raise
                old = self.actors.get(name)
                new = self.actor(name, fresh=True)
                if getattr(new, "_actor_id", None) == getattr(old, "_actor_id", None):
                    raise
        raise AssertionError("unreachable")

    def _wait_ref(self, ref, send_out, log: str | None):
        ray = self.ray
        if log is None:
            return ray.get(ref)
        offset = 0
        poll = POLL[0]
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=poll)
                offset = self._forward(log, offset, send_out)
                if ready:
                    return ray.get(ref)
                poll = min(POLL[1], poll * 2)
        finally:
            self._forward(log, offset, send_out)
            try:
                os.unlink(log)
            except OSError:
                pass  # nothing was printed: the servlet made no file

    @staticmethod
    def _forward(log: str, offset: int, send_out) -> int:
        """Send the whole records written to log since offset; the new offset."""
        try:
            with open(log, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return offset
        pos = 0
        while pos + 5 <= len(data):
            n = int.from_bytes(data[pos + 1:pos + 5], "big")
            if pos + 5 + n > len(data):
                break
            send_out(data[pos:pos + 1] + data[pos + 5:pos + 5 + n])
            pos += 5 + n
        return offset + pos

    def handle(self, op: str, name: str, args: tuple, send_out):
        log = os.path.join(self.log_dir, f"{uuid.uuid4().hex}.out")
        if op == "find":
            self.actor(name, fresh=True)
            return True
        if op == "call":
            payload, stream = args
            if stream and self.has(name, "call_streamed"):
                return self.wait(name, "call_streamed", (payload, log), send_out, log)
            return self.wait(name, "call", (payload,), send_out, None)
        if op == "run":
            cmd, timeout, stream = args
            if stream and self.has(name, "run_streamed"):
                return self.wait(name, "run_streamed", (cmd, timeout, log), send_out, log)
            return self.wait(name, "run", (cmd, timeout), send_out, None)
        if op == "put":
            return self.wait(name, "put_pickled", args, send_out, None)
        if op == "get":
            return self.wait(name, "get_pickled", args, send_out, None)
        if op in ("keys", "delete", "status"):
            return self.wait(name, op, args, send_out, None)
        raise ValueError(f"unknown request {op!r}")

    # -- connections
    def serve_connection(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        send_lock = threading.Lock()

        def send(req: int, kind: int, body: bytes) -> None:
            data = frame(req, kind, body)
            with send_lock:
                sock.sendall(data)

        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            _, kind, body = read_frame(sock.recv)
            hello = json.loads(body) if kind == HELLO else {}
            theirs, ours = str(hello.get("nonce", "")), os.urandom(16).hex()
            if len(theirs) < 32:
                return
            send(0, CHALLENGE, json.dumps({
                "nonce": ours, "proof": proof(self.token, "gateway", theirs, ours)}).encode())
            _, kind, body = read_frame(sock.recv)
            given = str((json.loads(body) if kind == AUTH else {}).get("proof", ""))
            if not hmac.compare_digest(given, proof(self.token, "caller", theirs, ours)):
                return  # no answer to a wrong token: the connection just closes
            send(0, WELCOME, json.dumps({
                "protocol": PROTOCOL, "ray": self.ray.__version__,
                "python": list(sys.version_info[:3]), "pid": os.getpid()}).encode())
            sock.settimeout(None)
            while True:
                req, kind, body = read_frame(sock.recv)
                if kind == REQUEST:
                    self.pool.submit(self.answer, req, body, send)
        except (OSError, EOFError, ValueError, struct.error):
            pass
        finally:
            sock.close()

    def answer(self, req: int, body: bytes, send) -> None:
        def send_out(chunk: bytes) -> None:
            send(req, OUT, chunk)

        try:
            op, name, args = pickle.loads(body)
            result = self.handle(op, name, args, send_out)
            reply = (RESULT, pickle.dumps(result, protocol=5))
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the caller
            reply = (ERROR, pickle.dumps(_error(exc), protocol=5))
        try:
            send(req, *reply)
        except OSError:
            pass  # the caller is gone


def _error(exc: BaseException) -> tuple:
    """(exception pickled or None, its type name, message, remote traceback text). The
    servlet's own exception (e.g. KeyError from get) rather than Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    try:
        blob = pickle.dumps(exc, protocol=5)
        pickle.loads(blob)
    except Exception:  # noqa: BLE001 - not picklable: the text still goes back
        blob = None
    return (blob, type(exc).__name__, str(exc),
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def _gcs_up(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return True
    except OSError:
        return False


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def serve(address: str, temp_dir: str, token_path: str, state_dir: str) -> int:
    del temp_dir  # on the command line only, so the cluster's Ray owns this process
    if not _gcs_up(address):
        print(f"Ray at {address} is not answering", file=sys.stderr)
        return 1
    with open(token_path, "rb") as fh:
        token = fh.read().strip()
    import ray

    ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR",
             log_to_driver=False, configure_logging=False)
    gw = Gateway(address, token)
    gw.log_dir = os.path.join(state_dir, "gateway-out")
    os.makedirs(gw.log_dir, mode=0o700, exist_ok=True)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))  # loopback only: callers come through SSH
    srv.listen(64)
    info = os.path.join(state_dir, "gateway.json")
    _write_json(info, {"port": srv.getsockname()[1], "pid": os.getpid(),
                       "protocol": PROTOCOL})

    def watch() -> None:
        misses = 0
        while misses < GCS_MISSES:
            time.sleep(5)
            misses = 0 if _gcs_up(address) else misses + 1
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
    return info if info.get("protocol") == PROTOCOL and _answers(int(info["port"])) else None


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
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
        with open(os.path.join(state_dir, "gateway.log"), "rb") as fh:
            tail = fh.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        return {"error": "the gateway did not start: "
                         + (tail[-1] if tail else f"no answer within {wait:.0f}s")}


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        sys.exit(serve(*args))
    result = ensure(*args)
    print(json.dumps(result))
    sys.exit(1 if "error" in result else 0)
