"""Starting and finding a cluster's gateway on its nodes, from the caller's side,
through the provider's Connection: the gateway's files (gateway.py and the modules it
runs with, GATEWAY_FILES) are sent with the one command that starts it and written
into a folder named by their hash unless they are there already.

Nothing here stops a gateway: its command line names its node's Ray temp dir, so
stopping that node's Ray by its temp dir (as destroy does) stops the gateway with it,
as it does the autostop watchdog (tests/support/netns_caller.py checks nothing of the
cluster, its gateway included, outlives destroy).
"""
from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from rhplan import hostside
from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection
from rhplan.ray.head import private_argv, private_env

# What runs on a node, in the order they are written there: the entry (run by
# gateway_boot) last, so that it is there only when what it imports is.
GATEWAY_FILES = ("servlet_wire.py", "gateway.py", "output_tail.py", "gateway_links.py",
                 "gateway_ray.py", "gateway_server.py", "gateway_main.py")
_SOURCES = [(name, resources.files("rhplan.ray.servlets").joinpath(name).read_bytes())
            for name in GATEWAY_FILES]
_STDIN = b"".join(data for _, data in _SOURCES)
# names and sizes, for gateway_boot to cut stdin into the files
_LAYOUT = ",".join(f"{name}:{len(data)}" for name, data in _SOURCES)
GATEWAY_SHA = hashlib.sha256(b"".join(
    name.encode() + b"\0" + hashlib.sha256(data).digest() for name, data in _SOURCES)
).hexdigest()[:16]


def gateway_dir(root_dir: str, node: str = "") -> str:
    """Where a gateway of this rhplan version keeps its files, port file, lock and log; a
    worker node's own gateway (node: its host) in a folder of its own (test hosts
    share one filesystem)."""
    base = f"{root_dir}/ray/gateway-{GATEWAY_SHA}"
    return f"{base}/node-{node}" if node else base


# Runs on the node: writes the gateway's files unless they are there, then runs the
# gateway, in one command (hostside/gateway_boot.py)
_GATEWAY_BOOT = hostside.script("gateway_boot")


def ensure_gateway(conn: Connection, cluster: dict[str, Any], private: dict[str, Any],
                   timeout: float = 120, node: str = "") -> dict[str, Any]:
    """Start the cluster's gateway on its head (or on worker node `node`, private being
    that node's) unless one answers; its {"port", "pid"}. Started by the caller on
    first use, so every cluster gets one, however old."""
    state = gateway_dir(cluster["root_dir"], node)
    argv = private_argv([cluster["ray_python"], "-c", _GATEWAY_BOOT.text, state, _LAYOUT,
                         "ensure", cluster["ray_address"], private["ray_temp_dir"],
                         private["ray_token_path"], state])
    res = conn.run(argv, env=private_env(private), stdin=_STDIN, timeout=timeout)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    data = json.loads(lines[-1]) if lines else {}
    if res.ok and "port" in data:
        return data
    why = data.get("error") or (res.stderr.strip().splitlines() or ["no output"])[-1]
    raise ProviderError(f"starting rhplan's gateway on {conn.host} failed: {why}")


def read_gateway(conn: Connection, cluster: dict[str, Any], node: str = ""
                 ) -> dict[str, Any] | None:
    """The port file of the cluster's gateway (of worker node `node`'s), if there is
    one (it may be stale: the handshake tells)."""
    try:
        data = json.loads(conn.get_bytes(f"{gateway_dir(cluster['root_dir'], node)}"
                                         "/gateway.json"))
    except (OSError, ValueError, ProviderError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("port"), int) else None

