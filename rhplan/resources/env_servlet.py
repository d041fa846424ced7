"""An env's servlet and the node it runs on (resources/env.py): the connection to the
env's node (or the head), activity for the autostop clock, and starting, asking about
and stopping the servlet: a Ray actor in the env's interpreter, pinned to its node.
"""
from __future__ import annotations

from typing import Any

from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection
from rhplan.lazy import lazy_module
from rhplan.provider import RunContext
from rhplan.resources import env_packages
from rhplan.state.model import ResourceState, State

manage = lazy_module("rhplan.ray.servlets.manage")  # imports paramiko: not needed to plan


def connect(rs: ResourceState, ctx: RunContext, state: State, head: bool = False
           ) -> tuple[Connection, dict]:
    """A connection to the node the env lives on (its `node`, else the head); head:
    to the head whatever the env's node (Ray-wide questions, the autostop clock)."""
    cluster = state.resources.get(rs.attributes["cluster"])
    if cluster is None:
        raise ProviderError(f"{rs.address}: its cluster {rs.attributes['cluster']} is not in "
                            "the state; apply the cluster first")
    provider = ctx.provider(cluster.provider)
    node = rs.attributes.get("node")
    if node and not head:
        return provider.connect_host(node, cluster.attributes, cluster.provider_private,
                                     ctx), cluster.attributes
    return (provider.connect(cluster.attributes, cluster.provider_private, ctx),
            cluster.attributes)


def touch(rs: ResourceState, ctx: RunContext, state: State) -> None:
    """Work on an env counts as activity for the autostop watchdog on the head."""
    if state.resources[rs.attributes["cluster"]].attributes.get("autostop_mins"):
        conn, cluster = connect(rs, ctx, state, head=True)
        manage.touch_activity(conn, cluster)


def _start_args(rs: ResourceState, ctx: RunContext, state: State,
                conn: Connection) -> tuple:
    """manage.start_servlet's arguments: started by a driver on the env's node, pinned
    to that node by its Ray address."""
    cluster = state.resources[rs.attributes["cluster"]]
    node = rs.attributes.get("node")
    node_ip = ctx.provider(cluster.provider).node(
        node, cluster.attributes, cluster.provider_private).address if node else ""
    return (conn, cluster.attributes,
            manage.node_private(cluster.attributes, cluster.private, node),
            rs.attributes["name"], rs.attributes["path"], rs.attributes["python"],
            rs.attributes.get("compute") or {}, node_ip)


def pending_start(rs: ResourceState, conn: Connection, ctx: RunContext,
                  state: State) -> manage.PendingStart:
    return manage.PendingStart(*_start_args(rs, ctx, state, conn))


def start(rs: ResourceState, conn: Connection, ctx: RunContext,
          state: State, pending: manage.PendingStart | None = None) -> None:
    """The servlet runs in the env's interpreter, with the cluster's Ray version (which
    create and update install first, under the user's pins). pending: its start,
    begun while the env was built (create)."""
    from rhplan.resources.cluster_ray import wait_for_ray
    cluster = state.resources[rs.attributes["cluster"]]
    env_packages.wait_seeded(rs, ctx)
    try:
        wait_for_ray(cluster, ctx)  # started while this env was built
    except ProviderError as exc:
        if pending is not None:
            pending.cancel()
        raise manage.ServletNotStarted(str(exc)) from None
    info = pending.start() if pending is not None else manage.start_servlet(
        *_start_args(rs, ctx, state, conn))
    rs.attributes["servlet"] = "running"
    rs.attributes["servlet_pid"] = info["pid"]
    # who it is: callers trust only this actor and process (servlets/client.py)
    rs.private["servlet_identity"] = {k: info.get(k) for k in ("actor_id", "pid",
                                                                "start_ticks")}


def stop(rs: ResourceState, conn: Connection, cluster: ResourceState
        ) -> None:
    """Through Ray while it runs; else (down, or not answering) by the servlet's
    recorded process, proven to be it: a servlet never outlives its env."""
    ca = cluster.attributes
    private = manage.node_private(ca, cluster.private, rs.attributes.get("node"))
    if ca.get("ray_address") and ca.get("ray_status") == "running":
        try:
            manage.stop_servlets(conn, ca, private, [rs.attributes["name"]])
            return
        except ProviderError:
            pass  # its Ray does not answer: stop the process itself
    manage.stop_servlet_process(conn, ca, private, rs.attributes.get("servlet_pid"),
                                rs.attributes["path"])


def status(rs: ResourceState, conn: Connection, ctx: RunContext,
           state: State) -> dict[str, Any]:
    """One command per cluster asks about every servlet recorded on it."""
    cluster_addr = rs.attributes["cluster"]
    cluster = state.resources.get(cluster_addr)
    if cluster is None or cluster.attributes.get("ray_status") != "running":
        return {"alive": False}
    with ctx.lock:
        key = ("servlets", cluster_addr)
        if key not in ctx.cache:
            names = [r.attributes["name"] for r in state.resources.values()
                     if r.type == "env" and r.attributes.get("cluster") == cluster_addr]
            conn, _ = connect(rs, ctx, state, head=True)  # Ray knows every node's
            ctx.cache[key] = manage.servlet_status(conn, cluster.attributes,
                                                   cluster.private, names)
        return ctx.cache[key].get(rs.attributes["name"], {"alive": False})
