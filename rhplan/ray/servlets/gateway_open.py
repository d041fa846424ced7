"""Opening a channel to a cluster's gateway: the SSH connection (the provider's pooled
one), the gateway started on the head if none answers, the cluster's token read over
SFTP, a `direct-tcpip` channel to the gateway's loopback port, and the handshake in
which both sides prove they hold the token without sending it. Every step is bounded.
"""
from __future__ import annotations

import hmac
import json
import os
import socket
from collections.abc import Callable
from typing import Any

from rhplan.errors import ProviderError
from rhplan.ray.servlets import gateway as proto
from rhplan.ray.servlets import servlet_wire as wire

HANDSHAKE_TIMEOUT = 10.0

# (channel-like object with recv/sendall/close, cluster's {"ray", "python"} versions)
Opener = Callable[[], tuple[Any, dict[str, Any]]]


def handshake(chan: Any, token: bytes, where: str) -> dict[str, Any]:
    """Prove to each other that both hold the cluster's token (it is never sent); the
    gateway's versions. Bounded."""
    chan.settimeout(HANDSHAKE_TIMEOUT)
    ours = os.urandom(16).hex()
    try:
        hello = json.dumps({"protocol": proto.PROTOCOL, "nonce": ours})
        chan.sendall(wire.frame(0, wire.HELLO, hello.encode()))
        _, kind, body = wire.read_frame(chan.recv)
        challenge = json.loads(body) if kind == wire.CHALLENGE else {}
        theirs = str(challenge.get("nonce", ""))
        if not hmac.compare_digest(str(challenge.get("proof", "")),
                                   proto.proof(token, "gateway", ours, theirs)):
            chan.close()
            raise ProviderError(f"the process at rhplan's gateway port on {where} does not "
                                "hold the cluster's token; run rhplan apply if the token "
                                "changed, else check who listens there")
        auth = json.dumps({"proof": proto.proof(token, "caller", ours, theirs)})
        chan.sendall(wire.frame(0, wire.AUTH, auth.encode()))
        _, kind, body = wire.read_frame(chan.recv)
    except (TimeoutError, EOFError, OSError, ValueError) as exc:
        chan.close()
        raise ProviderError(f"rhplan's gateway on {where} refused the handshake "
                            f"({exc or 'closed'}); the cluster's token may have changed: "
                            "run rhplan apply") from None
    chan.settimeout(None)
    if kind != wire.WELCOME:
        chan.close()
        raise ProviderError(f"rhplan's gateway on {where} answered the handshake with frame "
                            f"{kind}; it speaks another protocol")
    welcome: dict[str, Any] = json.loads(body)
    return welcome


def ssh_opener(conn_factory: Callable[[], Any], cluster: dict[str, Any],
               private: dict[str, Any], node: str = "") -> Opener:
    """How to reach the gateway of a cluster through its provider's connection: a
    direct-tcpip channel over SSH, or a plain socket when the head is this machine.
    node: a worker host (conn_factory connects to it; private is that node's)."""
    from rhplan.ray.servlets import gateway_start

    def open_() -> tuple[Any, dict[str, Any]]:
        conn = conn_factory()
        token = conn.get_bytes(private["ray_token_path"])
        known = gateway_start.read_gateway(conn, cluster, node)
        if known is not None:  # the usual case: no command to run on the head
            try:
                chan = _channel(conn, int(known["port"]))
                return chan, handshake(chan, token, conn.host)
            except (ProviderError, OSError):
                pass  # gone (or not ours): make sure one runs
        for attempt in (0, 1):
            info = gateway_start.ensure_gateway(conn, cluster, private, node=node)
            try:
                chan = _channel(conn, int(info["port"]))
                break
            except (ProviderError, OSError):
                if attempt:  # it stopped between ensure and connect: start it again once
                    raise
        return chan, handshake(chan, token, conn.host)

    return open_


def _channel(conn: Any, port: int) -> Any:
    if hasattr(conn, "open_tunnel"):
        return conn.open_tunnel("127.0.0.1", port)
    if getattr(conn, "host", "") != "localhost":  # never this machine's port by mistake
        raise ProviderError(f"the connection to {conn.host} cannot open a tunnel to rhplan's "
                            "gateway; use a provider whose hosts are reached over SSH")
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
