"""The dependency graph of resource addresses (networkx), its checks and its DOT form.

An edge A → B means "B depends on A": A is created first and destroyed last.
"""
from __future__ import annotations

import networkx as nx

from rhplan.config.load import Config
from rhplan.errors import ConfigError, CycleError


def build_graph(cfg: Config) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(cfg.resources)
    for addr, rc in cfg.resources.items():
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
            g.add_edge(ref, addr)
    for out in cfg.outputs.values():
        for ref in sorted(out.refs):
            if not ref.startswith("local.") and ref not in cfg.resources:
                raise ConfigError(
                    f"output {out.name!r} refers to {ref}, which is not declared; declare it or "
                    "fix the reference", out.file, out.value.line)
    check_acyclic(g, cfg)
    return g


def check_acyclic(g: nx.DiGraph, cfg: Config | None = None) -> None:
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return
    nodes = [u for u, _ in cycle]
    path = " -> ".join(nodes + [nodes[0]])
    rc = cfg.resources.get(nodes[0]) if cfg else None
    raise CycleError(
        f"dependency cycle: {path}; break it by removing one of these references",
        rc.file if rc else None, rc.line if rc else None)


def _line_of(rc, ref: str) -> int:  # type: ignore[no-untyped-def]
    """The line of the attribute that mentions ref (the block's line if none does)."""
    from rhplan.config import ast
    from rhplan.config.load import expr_refs

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


def to_dot(g: nx.DiGraph) -> str:
    lines = ["digraph rhplan {", "  rankdir = \"LR\";", "  node [shape = box];"]
    for n in sorted(g.nodes):
        lines.append(f'  "{n}";')
    for u, v in sorted(g.edges):
        lines.append(f'  "{v}" -> "{u}";')  # Terraform draws dependent -> dependency
    lines.append("}")
    return "\n".join(lines) + "\n"
