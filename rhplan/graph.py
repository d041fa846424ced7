"""The dependency graph of resource addresses, its checks and its DOT form.

An edge A → B means "B depends on A": A is created first and destroyed last.

A small graph of our own rather than networkx: importing networkx costs ~0.5 s at
every start of `rhplan validate` / `plan`, several times what planning a few hundred
resources takes. The walks below keep networkx's orders (insertion-ordered nodes and
edges, its find_cycle and lexicographical topological sort), so cycles are reported
the same way.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping

from rhplan.config.default_env import check_default_envs, default_env_refs
from rhplan.config.model import Config
from rhplan.errors import ConfigError, CycleError


class Graph:
    """A directed graph of addresses; nodes and each node's edges keep insertion order."""

    def __init__(self) -> None:
        self._succ: dict[str, dict[str, None]] = {}
        self._pred: dict[str, dict[str, None]] = {}

    def add_node(self, n: str) -> None:
        if n not in self._succ:
            self._succ[n] = {}
            self._pred[n] = {}

    def add_nodes_from(self, nodes: Iterable[str]) -> None:
        for n in nodes:
            self.add_node(n)

    def add_edge(self, u: str, v: str) -> None:
        self.add_node(u)
        self.add_node(v)
        self._succ[u][v] = None
        self._pred[v][u] = None

    def __contains__(self, n: object) -> bool:
        return n in self._succ

    def __iter__(self) -> Iterator[str]:
        return iter(self._succ)

    def __len__(self) -> int:
        return len(self._succ)

    @property
    def nodes(self) -> list[str]:
        return list(self._succ)

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(u, v) for u, vs in self._succ.items() for v in vs]

    def successors(self, n: str) -> Iterator[str]:
        return iter(self._succ[n])

    def predecessors(self, n: str) -> Iterator[str]:
        return iter(self._pred[n])

    def copy(self) -> Graph:
        g = Graph()
        g._succ = {n: dict(vs) for n, vs in self._succ.items()}
        g._pred = {n: dict(us) for n, us in self._pred.items()}
        return g


def topological_order(g: Graph) -> list[str]:
    """Dependencies first; among nodes ready at the same time, the smallest address first
    (networkx's lexicographical_topological_sort). The graph must be acyclic."""
    indegree = {n: len(g._pred[n]) for n in g}
    ready = [n for n, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        n = heapq.heappop(ready)
        out.append(n)
        for child in g._succ[n]:
            indegree[child] -= 1
            if indegree[child] == 0:
                heapq.heappush(ready, child)
    if len(out) != len(g):
        raise ValueError("the graph has a cycle")
    return out


def topological_generations(g: Graph) -> list[list[str]]:
    """Layers: the first needs nothing, each next one only what earlier layers hold."""
    indegree = {n: len(g._pred[n]) for n in g}
    layer = [n for n, d in indegree.items() if d == 0]
    out: list[list[str]] = []
    while layer:
        out.append(layer)
        nxt: list[str] = []
        for n in layer:
            for child in g._succ[n]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    nxt.append(child)
        layer = nxt
    if sum(len(x) for x in out) != len(g):
        raise ValueError("the graph has a cycle")
    return out


def reachable(adj: Mapping[str, Iterable[str]], start: str) -> set[str]:
    """Every node a path leads to from start along adj (start itself left out)."""
    seen: set[str] = set()
    stack = list(adj[start])
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(adj[n])
    seen.discard(start)
    return seen


def ancestors(g: Graph, n: str) -> set[str]:
    """Everything n depends on, directly or not."""
    return reachable(g._pred, n)


def descendants(g: Graph, n: str) -> set[str]:
    """Everything that depends on n, directly or not."""
    return reachable(g._succ, n)


def find_cycle(g: Graph) -> list[str] | None:
    """The nodes of the first cycle networkx's find_cycle would report, or None.

    The same walk: a depth-first walk over edges from each node in insertion order,
    keeping the active path; the first edge back into it closes the cycle."""
    explored: set[str] = set()
    for start in g:
        if start in explored:
            continue
        path: list[tuple[str, str]] = []  # the active path's edges
        seen = {start}
        active = {start}
        previous_head: str | None = None
        visited_edges: set[tuple[str, str]] = set()
        walked: set[str] = set()
        iters: dict[str, Iterator[str]] = {}
        stack = [start]
        while stack:
            current = stack[-1]
            if current not in walked:
                iters[current] = iter(g._succ[current])
                walked.add(current)
            head = next(iters[current], None)
            if head is None:
                stack.pop()
                continue
            edge = (current, head)
            if edge in visited_edges:
                continue
            visited_edges.add(edge)
            stack.append(head)
            tail = current
            if head in explored:
                continue
            if previous_head is not None and tail != previous_head:
                # backtracked: drop path edges until the path ends at this edge's tail
                while True:
                    if not path:
                        active = {tail}
                        break
                    popped = path.pop()
                    active.remove(popped[1])
                    if path and path[-1][1] == tail:
                        break
            path.append(edge)
            if head in active:
                for i, (u, _) in enumerate(path):
                    if u == head:
                        return [u for u, _ in path[i:]]
            seen.add(head)
            active.add(head)
            previous_head = head
        explored |= seen
    return None


def build_graph(cfg: Config) -> Graph:
    g = Graph()
    g.add_nodes_from(cfg.resources)
    for addr, rc in cfg.resources.items():
        soft = default_env_refs(rc, cfg)  # a cluster's default env depends on it, not back
        for ref in sorted(rc.refs | set(rc.depends_on)):
            if ref.startswith("local."):
                continue  # an unknown local is reported with file:line at evaluation
            if ref not in cfg.resources:
                line = _line_of(rc, ref)
                raise ConfigError(
                    f"{addr} refers to {ref}, which is not declared; declare "
                    f"{ref.split('.')[0]} \"{ref.split('.', 1)[1]}\" {{ ... }} or fix the name",
                    rc.file, line)
            if ref == addr:
                raise CycleError(f"{addr} refers to itself; remove that reference", rc.file,
                                 _line_of(rc, ref))
            if ref not in soft or ref in rc.depends_on:
                g.add_edge(ref, addr)
    for out in cfg.outputs.values():
        for ref in sorted(out.refs):
            if not ref.startswith("local.") and ref not in cfg.resources:
                raise ConfigError(
                    f"output {out.name!r} refers to {ref}, which is not declared; declare it or "
                    "fix the reference", out.file, out.value.line)
    check_default_envs(cfg)
    check_acyclic(g, cfg)
    return g


def check_acyclic(g: Graph, cfg: Config | None = None) -> None:
    nodes = find_cycle(g)
    if nodes is None:
        return
    path = " -> ".join(nodes + [nodes[0]])
    rc = cfg.resources.get(nodes[0]) if cfg else None
    raise CycleError(
        f"dependency cycle: {path}; break it by removing one of these references",
        rc.file if rc else None, rc.line if rc else None)


def _line_of(rc, ref: str) -> int:  # type: ignore[no-untyped-def]
    """The line of the attribute that mentions ref (the block's line if none does)."""
    from rhplan.config import ast
    from rhplan.config.refs import expr_refs

    for a in rc.block.attrs.values():
        if ref in expr_refs(a.expr):
            return a.line
    for sub in rc.block.blocks:
        for a in sub.attrs.values():
            if ref in expr_refs(a.expr):
                return a.line
    for a in rc.block.attrs.values():
        if isinstance(a.expr, ast.TupleExpr) and a.name == "depends_on":
            return a.line
    return rc.line


def to_dot(g: Graph) -> str:
    lines = ["digraph rhplan {", "  rankdir = \"LR\";", "  node [shape = box];"]
    for n in sorted(g.nodes):
        lines.append(f'  "{n}";')
    for u, v in sorted(g.edges):
        lines.append(f'  "{v}" -> "{u}";')  # Terraform draws dependent -> dependency
    lines.append("}")
    return "\n".join(lines) + "\n"
