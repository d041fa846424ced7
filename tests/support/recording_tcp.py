"""A TCP proxy that records what crosses it: run as a script inside the head host's
network namespace, in front of the head, for a Ray driver on another host.

    python recording_tcp.py LISTEN_HOST UPSTREAM_HOST UPSTREAM_PORT RECORD_DIR

Listens on LISTEN_HOST (the head's own address, which its certificate names, so TLS
still verifies), prints its port, and forwards every connection to UPSTREAM; the
bytes each connection sends upstream go to RECORD_DIR/<n>.up, those it gets back to
RECORD_DIR/<n>.down, as they pass (a test reads them while the proxy runs). Exits
when its stdin closes.
"""
from __future__ import annotations

import os
import socket
import sys
import threading


def pump(src: socket.socket, dst: socket.socket, record: str) -> None:
    with open(record, "ab", buffering=0) as out:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            out.write(data)
            try:
                dst.sendall(data)
            except OSError:
                break
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main() -> None:
    listen, host, port, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    os.makedirs(folder, exist_ok=True)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((listen, 0))
    srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    n = 0
    while True:
        client, _ = srv.accept()
        try:
            upstream = socket.create_connection((host, port), timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        n += 1
        for a, b, name in ((client, upstream, f"{n}.up"), (upstream, client, f"{n}.down")):
            threading.Thread(target=pump, args=(a, b, os.path.join(folder, name)),
                             daemon=True).start()


if __name__ == "__main__":
    main()
