"""A way out of a network namespace to exactly one TCP port, for the SSH-only tests.

    python remote_relay.py serve SOCK HOST PORT   # root namespace: UNIX socket -> TCP
    python remote_relay.py connect SOCK [ARG...]  # a ProxyCommand: stdio <-> UNIX socket
                                                  # (ARGs, e.g. %h %i, are only logged)
    python remote_relay.py inside PORT SOCK -- CMD...
        # in a namespace: loopback up, 127.0.0.1:PORT -> SOCK (e.g. the EC2 API, as a
        # laptop reaches AWS), then CMD; exits with CMD's code

A caller started with `unshare --net` has nothing but its own loopback, yet its SSH
ProxyCommand (`connect`) reaches sshd through the socket file on the shared file
system. Killing the `serve` process cuts every tunnel at once (a dropped connection).
"""
from __future__ import annotations

import os
import socket
import sys
import threading


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(path: str, host: str, port: int) -> None:
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        up = socket.create_connection((host, port), timeout=10)
        up.settimeout(None)
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def connect(path: str, *seen: str) -> None:
    if seen:  # what rhplan substituted (%h, %i), for tests to check
        with open(path + ".log", "a") as fh:
            fh.write(" ".join(seen) + "\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]


def inside(port: int, path: str, argv: list[str]) -> int:
    import subprocess
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)

    def accept() -> None:
        while True:
            conn, _ = srv.accept()
            up = socket.socket(socket.AF_UNIX)
            up.connect(path)
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return subprocess.run(argv, check=False).returncode


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "inside":
        assert sys.argv[4] == "--", "inside PORT SOCK -- CMD..."
        sys.exit(inside(int(sys.argv[2]), sys.argv[3], sys.argv[5:]))
    else:
        connect(sys.argv[2], *sys.argv[3:])
