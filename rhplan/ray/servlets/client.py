"""Open a handle to an env's servlet (`rhplan.servlet("np_env", chdir="infra")`), given
what the layer above found in the configuration's state (rhplan/env_lookup.py: the
env's and its cluster's records, how to connect to their hosts). Two routes reach it:

- ssh (the default for remote clusters): through the cluster's gateway on its head,
  over the provider's SSH connection (transport.py, gateway.py); nothing but SSH is
  needed, and the caller's Ray, if any, need not match the cluster's.
- direct (a fast path): this process joins the cluster's Ray as a driver and calls
  the named actor. Taken for local clusters, and for remote ones only when the head's
  Ray answers within route.DIRECT_PROBE seconds, this Python's Ray is the cluster's version
  and the driver token is here; otherwise the ssh route is taken.

RHPLAN_SERVLET_ROUTE=ssh|direct forces one route.

Output: what a call prints (print, logging to stdout/stderr) and a run's output appear
on this process's stdout/stderr as they happen, on both routes. The servlet writes
them to a per-call file that someone on its host tails: the gateway on the ssh route;
on the direct route this process itself when the servlet sees this machine's files
(local clusters; a head that is this machine). A direct-route servlet on another host
has its streamed calls and runs sent through the gateway instead, since only something
on that host can read the file. `handle.with_streaming(False)` keeps them on Ray, and
their output is not shown.

Modules: route.py (which route), direct.py and direct_output.py (the direct route),
cluster_gateway.py and transport.py (the ssh route), handle.py (the handle's API),
pickling.py (what travels by value), remote_object.py (objects kept in a servlet).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray.servlets import direct
from rhplan.ray.servlets.cluster_gateway import gateway_of, worker_node
from rhplan.ray.servlets.handle import ServletHandle
from rhplan.ray.servlets.route import choose_route


@dataclass(frozen=True)
class ServletTarget:
    """An applied env as its servlet's caller needs it: the env's and its cluster's
    recorded state, connect(node) giving the provider's connection to the cluster's head
    ("") or worker host node, and reread() the env's record as the state holds it now
    (for a servlet an apply restarted)."""

    env: Any
    cluster: Any
    connect: Callable[[str], Any]
    reread: Callable[[], Any]


def servlet(target: ServletTarget) -> ServletHandle:
    """A handle to the target env's servlet, over the route choose_route picks."""
    env, cluster = target.env, target.cluster
    servlet_name = env.attributes["name"]
    identity = direct.identity_of(env)

    def reread() -> dict[str, Any] | None:
        return direct.identity_of(target.reread())

    node = worker_node(cluster, env)
    if choose_route(cluster) == "ssh":
        if identity is None:
            raise RhplanError(direct.NO_IDENTITY.format(name=servlet_name))
        gw = gateway_of(cluster, target.connect, node)
        handle = ServletHandle(servlet_name, None, "", gw, identity=identity)
        try:
            handle._request(gw, "find", (), 60)
        except LookupError as exc:  # the gateway's "not running", as the direct route says it
            raise RhplanError(str(exc).strip("'\"")) from None
        host = node or (cluster.attributes.get("ips") or ["?"])[0]
        return ServletHandle(servlet_name, None, f"ssh://{host} ({cluster.address})", gw,
                             identity=identity, reread=reread)
    address = direct.connect_ray(cluster)
    actor = direct.find_actor(servlet_name)
    direct.check_actor(servlet_name, actor, identity)
    # a servlet on another host: its output can only be read there, by the gateway
    via = None if cluster.provider == "local" else (
        lambda: gateway_of(cluster, target.connect, node))
    return ServletHandle(servlet_name, actor, address, via_gateway=via, identity=identity,
                         reread=reread)
