"""Which node of a cluster an env lands on (issue 13 item 7), decided while planning.

Pure: the cluster's planned attributes (its ips, custom_resources and
custom_resources_by_host) and what the servlets planned before this one hold on each
node in, a host out. Deterministic: the first host of ips, head first, whose node has
every custom resource the env asks for left over wins; an env asking for none of them
stays on the head. CPU and GPU are counted cluster-wide by the env type itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rhplan.config.values import UNKNOWN

if TYPE_CHECKING:
    from rhplan.state.model import State

# the key under which an allocation (ctx.allocations[cluster][env]) records its node
NODE_KEY = "@node"


@dataclass(frozen=True)
class Refusal:
    """No node can take the env; `message` says what each offers and what to change."""
    message: str


def head(cluster: dict[str, Any]) -> str | None:
    ips = cluster.get("ips")
    return ips[0] if isinstance(ips, list) and ips and isinstance(ips[0], str) else None


def hosts(cluster: dict[str, Any]) -> list[str | None]:
    """The hosts to try, head first; [None] when they are not known yet (a cloud
    cluster before apply: only what every node offers can be judged)."""
    ips = cluster.get("ips")
    if isinstance(ips, list) and ips and all(isinstance(i, str) for i in ips):
        return list(ips)
    return [None]


def offers(cluster: dict[str, Any], host: str | None) -> dict[str, Any]:
    from rhplan.resources.cluster_ray import node_resources  # the one merge rule
    return node_resources(cluster, host) or {}


def seed(holders: dict[str, dict[str, Any]], recorded: State | None, addr: str,
         cluster: dict[str, Any]) -> None:
    """What the envs recorded on the cluster hold of its custom resources, where they
    are: counted until each is planned again (it then takes its own entry out), so an
    env planned alone (-target) or before them does not take their place."""
    for r in (recorded.resources if recorded is not None else {}).values():
        if r.type != "env" or r.attributes.get("cluster") != addr:
            continue
        custom = {k: v for k, v in (r.attributes.get("compute") or {}).items()
                  if k not in ("CPU", "GPU")}
        if custom:
            holders.setdefault(r.address, {**custom, NODE_KEY: r.attributes.get("node")
                                           or head(cluster)})


def choose(env: str, addr: str, cluster: dict[str, Any], custom: dict[str, float],
           holders: dict[str, dict[str, Any]], prefer: str | None = None
           ) -> str | None | Refusal:
    """The host the env's servlet runs on (None: the head, its address not known yet),
    or why none can take it. prefer: where it runs now, kept while it still fits."""
    if not custom:
        return head(cluster)
    if not all(isinstance(cluster.get(k) or {}, dict)
               for k in ("custom_resources", "custom_resources_by_host")):
        return head(cluster)  # known once the cluster's settings are
    tried = hosts(cluster)
    if tried == [None] and cluster.get("custom_resources_by_host"):
        return None  # which host offers what is not known (validate: ips from a variable)
    if prefer in tried:  # stay where it is: a move rebuilds the env
        tried.remove(prefer)
        tried.insert(0, prefer)
    seen: list[tuple[str | None, dict[str, Any], dict[str, float]]] = []
    for host in tried:
        have = offers(cluster, host)
        held = {k: sum(float(h.get(k, 0) or 0) for h in holders.values()
                       if host is None or h.get(NODE_KEY) == host) for k in custom}
        if any(have.get(k) is UNKNOWN for k in custom):
            return host  # a variable known at apply: Ray judges it then
        if all(k in have and held[k] + amount <= have[k] for k, amount in custom.items()):
            return host
        seen.append((host, have, held))
    missing = [k for k in custom if not any(k in have for _, have, _ in seen)]
    if missing:
        key = missing[0]
        return Refusal(f"env {env!r} asks for compute {key} = {custom[key]:g}, which {addr} "
                       f"does not offer, so Ray could never place its servlet; declare it on "
                       f"{addr}: custom_resources = {{ {key} = {max(custom[key], 1):g} }}")
    if len(seen) == 1:
        _, have, held = seen[0]
        key = next(k for k, a in custom.items() if held[k] + a > have.get(k, 0))
        others = held[key]
        return Refusal(f"env {env!r} asks for {key} = {custom[key]:g}, but {addr} has "
                       f"{have.get(key, 0):g}"
                       + (f" and its other servlets hold {others:g}" if others else "")
                       + f"; lower compute.{key} or raise custom_resources.{key} on {addr}")
    asked = ", ".join(f"{k} = {a:g}" for k, a in sorted(custom.items()))
    nodes = "; ".join(
        f"{host} offers " + (", ".join(f"{k} = {have.get(k, 0):g}" for k in sorted(custom))) +
        ("" if not any(held.values()) else " (its other servlets hold " + ", ".join(
            f"{k} = {held[k]:g}" for k in sorted(custom) if held[k]) + ")")
        for host, have, held in seen)
    return Refusal(f"env {env!r} asks for {asked}, which no node of {addr} has free: {nodes}; "
                   f"lower the env's compute, or raise custom_resources (or "
                   f"custom_resources_by_host for one node) on {addr}")
