"""Which route reaches a cluster's servlets from this process, decided once per process
and cluster (see client.py): "direct" (join the cluster's Ray) when the head's Ray
answers within DIRECT_PROBE seconds, this Python's Ray is the cluster's version and the
driver token is here, else "ssh" (through the cluster's gateway). RHPLAN_SERVLET_ROUTE
forces one. Why not direct is never an error, only the ssh route.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray.head import private_env

DIRECT_PROBE = 1.5  # an unreachable head's Ray is given up on within 2 s
ROUTE_ENV = "RHPLAN_SERVLET_ROUTE"


def reachable(address: str, timeout: float = DIRECT_PROBE) -> bool:
    """Whether host:port accepts a TCP connection within timeout (an address that drops
    packets is given up on then, never waited for)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


_routes: dict[tuple[str, str], str] = {}
_routes_lock = threading.Lock()


def choose_route(cluster: Any) -> str:
    """"direct" or "ssh" for this cluster, decided once per process (see the module
    docstring); why not direct is never an error, only the ssh route."""
    forced = os.environ.get(ROUTE_ENV, "").strip().lower()
    if forced in ("ssh", "direct"):
        return forced
    if forced not in ("", "auto"):
        raise RhplanError(f"{ROUTE_ENV}={forced!r}: use ssh, direct or auto")
    a = cluster.attributes
    key = (cluster.address, a["ray_address"])
    with _routes_lock:
        if key in _routes:
            return _routes[key]
    route = "direct" if _direct_possible(cluster) else "ssh"
    with _routes_lock:
        _routes[key] = route
    return route


def _direct_possible(cluster: Any) -> bool:
    if cluster.provider == "local":
        return True
    token = cluster.private.get("ray_driver_token_path")
    if not token or not os.path.exists(token):
        return False  # state from elsewhere (S3): no driver token on this machine
    try:
        from importlib.metadata import version
        if version("ray") != cluster.attributes.get("ray_version"):
            return False
    except Exception:  # noqa: BLE001 - no Ray here
        return False
    if not _own_loopback_or_network(cluster):
        return False
    wanted = private_env(cluster.private, driver=True)
    if not cluster.private.get("ray_single_node", True) and not all(
            os.path.exists(wanted.get(k, "")) for k in ("RAY_TLS_SERVER_CERT",
                                                         "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")):
        return False  # a multi-node cluster talks TLS only: no driver certificate here
    if "ray" in sys.modules and any(os.environ.get(k) != v for k, v in wanted.items()
                                    if k != "RAY_AUTH_TOKEN_PATH"):
        return False  # this process's Ray is set up for another cluster
    return reachable(cluster.attributes["ray_address"])


def _own_loopback_or_network(cluster: Any) -> bool:
    """A one-host cluster's Ray listens on its head's loopback only: this machine's
    127.0.0.1 is that loopback only when the head is this machine (reached at a loopback
    address, with no proxy command in between)."""
    import ipaddress
    a = cluster.attributes
    try:
        if not ipaddress.ip_address(a["ray_address"].rpartition(":")[0]).is_loopback:
            return True
        head = ipaddress.ip_address((a.get("ips") or ["?"])[0])
    except ValueError:
        return False
    return head.is_loopback and not (a.get("ssh") or {}).get("proxy_command")

