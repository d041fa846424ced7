"""The gateway a servlet is reached through on the ssh route: the one on its own host
(its socket is a UNIX one), the cluster's head or the worker node it is placed on, over
the SSH connection apply uses for that host. One per cluster and node per process
(transport.gateway_for).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray.servlets.gateway_open import ssh_opener
from rhplan.ray.servlets.transport import Gateway, gateway_for


def worker_node(cluster: Any, env: Any) -> str:
    """The worker host the env's servlet runs on, or "" for the head."""
    node = env.attributes.get("node") or ""
    head = cluster.private.get("ray_head_host") or (cluster.attributes.get("ips") or [""])[0]
    return "" if node == head else node


def gateway_of(cluster: Any, connect: Callable[[str], Any], node: str = "") -> Gateway:
    """The gateway of the cluster's head, or of worker node `node` (connect(node) gives
    the provider's connection to that host, connect("") the head's): from the head's
    gateway a servlet on a worker was a Ray call between nodes (bench/node_parity.py:
    3.6 ms against 0.7 ms on the head)."""
    from rhplan.ray.servlets import manage  # its host files are read only when needed
    a, p = cluster.attributes, cluster.private
    key = (cluster.address, a.get("root_dir"), a["ray_address"], tuple(a.get("ips") or ()),
           node)

    def conn() -> Any:
        return connect(node)

    if not node:
        return gateway_for(key, cluster.address, ssh_opener(conn, a, p))
    temp_dirs = p.get("ray_worker_temp_dirs") or {}
    if node not in temp_dirs:
        raise RhplanError(f"{cluster.address}: node {node} has not joined its Ray (no temp "
                          "dir recorded); run rhplan apply")
    # the node's token and TLS files; its temp dir, so that stopping its Ray stops it
    mine = dict(manage.node_private(a, p, node), ray_temp_dir=temp_dirs[node])
    return gateway_for(key, f"{cluster.address} (node {node})",
                       ssh_opener(conn, a, mine, node=node))
