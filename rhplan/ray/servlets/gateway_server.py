"""The gateway's server, on the head: each caller's connection (one per process that
reaches this cluster over SSH), its handshake, then its requests, many in flight at
once, each relayed to the servlet's own socket (gateway_links.py) or, failing that,
through Ray (gateway_ray.py). Standard library only (Ray is joined on first need).
"""
from __future__ import annotations

import functools
import hmac
import json
import os
import socket
import struct
import sys

if __package__:  # imported inside rhplan (tests, the caller's checks)
    from . import gateway as proto
    from . import servlet_wire as wire
    from .gateway_links import Peer, ServletLink, SocketRoute
    from .gateway_ray import RayRoute
else:  # on a node, beside gateway_main.py
    import gateway as proto  # type: ignore[no-redef]
    import servlet_wire as wire  # type: ignore[no-redef]
    from gateway_links import Peer, ServletLink, SocketRoute  # type: ignore[no-redef]
    from gateway_ray import RayRoute  # type: ignore[no-redef]

HANDSHAKE_TIMEOUT = 10.0


class Gateway:
    """One cluster's gateway (address: its Ray GCS; token: the cluster's)."""

    def __init__(self, address: str, token: bytes, log_dir: str = "",
                 socket_only: bool = False):
        self.address = address
        self.token = token
        self.sockets = SocketRoute(address)
        self.via_ray = RayRoute(address, log_dir, socket_only)

    def serve_connection(self, sock: socket.socket) -> None:
        """One caller: the handshake, then its requests until it goes."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        caller = Peer(sock)

        def send(req: int, kind: int, body: bytes) -> None:
            caller.send([wire.HEADER.pack(req, kind, len(body)), body])

        out: dict[ServletLink, list] = {}  # requests that arrived together, per servlet
        try:
            if not self._handshake(sock, send):
                return
            reader = wire.FrameReader(sock.recv, sock.recv_into)
            while True:
                req, kind, body = reader.read()
                if kind == wire.REQUEST:
                    name, payload = proto.split_request(body)
                    link = self.sockets.link(name)
                    if link is None or not link.forward(caller, req, payload, out):
                        self.via_ray.pool.submit(self.via_ray.answer, req, name, payload, send)
                if out and not reader.buffered():  # forwarded together: one write
                    ServletLink.flush(out)
        except (OSError, EOFError, ValueError, struct.error, UnicodeDecodeError):
            pass
        finally:
            ServletLink.flush(out)  # what came before the caller went: sent, as it came
            sock.close()

    def _handshake(self, sock: socket.socket, send) -> bool:
        """Both sides prove they hold the cluster's token, never sending it (see
        gateway.py); False for a caller that does not: its connection just closes."""
        sock.settimeout(HANDSHAKE_TIMEOUT)
        _, kind, body = wire.read_frame(sock.recv)
        hello = json.loads(body) if kind == wire.HELLO else {}
        theirs, ours = str(hello.get("nonce", "")), os.urandom(16).hex()
        if len(theirs) < 32:
            return False
        mine = proto.proof(self.token, "gateway", theirs, ours)
        send(0, wire.CHALLENGE, json.dumps({"nonce": ours, "proof": mine}).encode())
        _, kind, body = wire.read_frame(sock.recv)
        given = str((json.loads(body) if kind == wire.AUTH else {}).get("proof", ""))
        if not hmac.compare_digest(given, proto.proof(self.token, "caller", theirs, ours)):
            return False  # no answer to a wrong token
        send(0, wire.WELCOME, json.dumps({
            "protocol": proto.PROTOCOL, "ray": _ray_version(),
            "python": list(sys.version_info[:3]), "pid": os.getpid()}).encode())
        sock.settimeout(None)
        return True


@functools.cache
def _ray_version() -> str:
    """This Python's Ray version, without importing Ray (~0.5 s): from the name of its
    dist-info folder beside it (importlib.metadata scans every distribution, ~70 ms
    of a cold first handle)."""
    try:
        import glob
        from importlib.util import find_spec

        spec = find_spec("ray")
        where = os.path.dirname(list(spec.submodule_search_locations)[0])
        found = glob.glob(os.path.join(where, "ray-*.dist-info"))
        if len(found) == 1:
            return os.path.basename(found[0])[len("ray-"):-len(".dist-info")]
        from importlib.metadata import version
        return version("ray")
    except Exception:  # noqa: BLE001 - a Ray not installed as a distribution
        import ray
        return ray.__version__
