"""Refresh: read every recorded resource as it really is, in parallel, and report drift."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from rhplan.errors import RhplanError
from rhplan.graph import Graph, topological_generations
from rhplan.provider import RunContext
from rhplan.resources import TYPES
from rhplan.state.model import State


def refresh(state: State, ctx: RunContext, parallelism: int = 10) -> tuple[State, list[dict]]:
    """A refreshed copy of state (gone resources removed) and the drift found."""
    fresh = state.copy()
    g = Graph()
    for addr, rs in fresh.resources.items():
        g.add_node(addr)
        for dep in rs.dependencies:
            if dep in fresh.resources:
                g.add_edge(dep, addr)
    drift: list[dict] = []
    # a resource is read after what it depends on (an env needs its cluster's connection)
    for generation in topological_generations(g):
        def read(addr: str) -> tuple[str, object, list[str]]:
            rs = fresh.resources[addr]
            missing = [d for d in rs.dependencies
                       if d in state.resources and d not in fresh.resources]
            if missing:
                return addr, None, [f"{addr}: gone with {', '.join(missing)}"]
            try:
                new, notes = TYPES[rs.type].read(rs, ctx, fresh)
            except RhplanError as exc:
                raise RhplanError(f"refreshing {addr}: {exc}") from None
            return addr, new, notes

        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            results = list(pool.map(read, sorted(generation)))
        for addr, new, notes in results:
            if new is None:
                del fresh.resources[addr]
            for n in notes:
                drift.append({"address": addr, "message": n})
    return fresh, drift
