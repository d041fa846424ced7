"""An env's compute, checked while planning (resources/env_plan.py): whether what it
asks for fits in its cluster beside the other servlets planned on it (CPU and GPU
counted cluster-wide), and on which node it goes (placement.py chooses by custom
resources). Refused with the env block's file:line before anything is created.
"""
from __future__ import annotations

from typing import Any

from rhplan.config.model import ResourceConfig
from rhplan.config.values import UNKNOWN
from rhplan.errors import ConfigError
from rhplan.provider import RunContext
from rhplan.resources import placement


def check(rc: ResourceConfig, attrs: dict[str, Any],
          cluster: dict[str, Any], ctx: RunContext) -> None:
    """Where the env's servlet runs, and whether it fits: a servlet asking for more
    than its cluster has would wait forever in Ray, or be refused as unschedulable,
    so refuse it while planning, counting what the cluster's other servlets hold.
    CPU and GPU are the cluster's `resources`. A custom resource places the env: on
    the first host of ips (the head first) whose node offers it (custom_resources,
    with that host's custom_resources_by_host over them) with enough left; the env is
    built on that node and its servlet pinned there. A worker placement is recorded
    as `node` (its host); no `node` is the head, as every env was before."""
    from rhplan.ray.head import resource_problem  # the one rule for resource names

    attrs.pop("node", None)
    compute = attrs.get("compute") or {}
    if not compute:
        return
    line = rc.block.attrs["compute"].line if "compute" in rc.block.attrs else rc.line
    addr = attrs["cluster"]
    recorded = ctx.cache.get("recorded_state")
    with ctx.lock:
        holders = ctx.allocations.setdefault(addr, {})
        if not ctx.cache.get(("placement_seeded", addr)):
            ctx.cache[("placement_seeded", addr)] = True
            placement.seed(holders, recorded, addr, cluster)
        holders.pop(rc.address, None)
    # the state the plan started from (plan/planner.py puts it there; None outside a plan)
    prior = recorded.resources.get(rc.address) if recorded is not None else None
    prefer = (prior.attributes.get("node") or placement.head(cluster)) if prior else None
    custom: dict[str, Any] = {}
    for key, amount in compute.items():
        if amount is UNKNOWN:
            continue
        problem = resource_problem(key, amount, builtin_ok=True)
        if problem:
            raise ConfigError(f"env {rc.name!r}: compute: {problem}", rc.file, line)
        if key not in ("CPU", "GPU"):
            custom[key] = amount
            continue
        have = cluster.get("resources")
        if not isinstance(have, dict) or have.get(key, 0) is UNKNOWN:
            continue  # known once the cluster is (an ssh cluster's CPUs, a variable)
        total = have.get(key, 0)
        others = sum(h.get(key, 0) for h in holders.values())
        if others + amount > total:
            raise ConfigError(
                f"env {rc.name!r} asks for {key} = {amount:g}, but {addr} has "
                f"{total:g}" + (f" and its other servlets hold {others:g}" if others else "")
                + f"; lower compute.{key} or use a bigger cluster", rc.file, line)
    node = placement.choose(rc.name, addr, cluster, custom, holders, prefer)
    if isinstance(node, placement.Refusal):
        raise ConfigError(node.message, rc.file, line)
    if node is not None and node != placement.head(cluster):
        attrs["node"] = node
    holders[rc.address] = {**compute, placement.NODE_KEY: node}
