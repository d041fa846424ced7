"""What an expression refers to: the resource addresses and locals it names
(expr_refs), and each resource's and output's references through locals resolved to
the resources behind them (resolve_local_refs)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rhplan.config import ast
from rhplan.config.evaluate import RESOURCE_TYPES
from rhplan.errors import ConfigError

if TYPE_CHECKING:
    from rhplan.config.model import Config


def address_of(e: ast.Expr) -> str | None:
    if isinstance(e, ast.Index) and isinstance(e.key, ast.Literal):
        e = e.obj  # env.x[0] / env.x["a"]: an order between blocks, as for env.x
    if isinstance(e, ast.GetAttr) and isinstance(e.obj, ast.Name) and e.obj.name in RESOURCE_TYPES:
        return f"{e.obj.name}.{e.name}"
    return None


def expr_refs(expr: ast.Expr) -> set[str]:
    """Addresses (cluster.x) and locals (local.y) an expression mentions, and "each" /
    "count" when it reads each.* / count.* (_resource takes those out again)."""
    # a walk by exact type, literals first: this ran over every expression of every
    # resource at load (~0.3 s for 2,000 envs through ast.walk's isinstance chain)
    out: set[str] = set()
    stack = [expr]
    while stack:
        n = stack.pop()
        t = type(n)
        if t is ast.Literal or t is ast.Name:
            continue
        if t is ast.GetAttr:
            obj = n.obj
            if type(obj) is ast.Name:
                if obj.name in _REF_ROOTS:
                    out.add(f"{obj.name}.{n.name}")
                elif obj.name in REPETITION_NAMES:
                    out.add(obj.name)
                elif obj.name[:7] == "module.":  # a module's resource (config/modules.py)
                    out.add(f"{obj.name}.{n.name}")
            else:
                stack.append(obj)
        elif t is ast.TupleExpr:
            stack.extend(n.items)
        elif t is ast.ObjectExpr:
            for k, v in n.items:
                stack.append(k)
                stack.append(v)
        elif t is ast.Template:
            stack.extend(p for p in n.parts if type(p) is not str)
        else:
            stack.extend(ast.children(n))
    return out


REPETITION_NAMES = frozenset(("each", "count"))  # each.* / count.* (not addresses)
_REF_ROOTS = frozenset(RESOURCE_TYPES) | {"local"}


def resolve_local_refs(cfg: Config) -> None:
    """Replace local.X in each resource's refs by the resources that local needs."""
    memo: dict[str, set[str]] = {}

    def of_local(name: str, stack: tuple[str, ...]) -> set[str]:
        if name in memo:
            return memo[name]
        if name in stack:
            cycle = " -> ".join(f"local.{n}" for n in stack + (name,))
            raise ConfigError(f"locals refer to each other in a loop: {cycle}",
                              cfg.local_files[name], cfg.locals[name].line)
        if name not in cfg.locals:
            return set()  # reported with a file:line when evaluated
        out: set[str] = set()
        for r in expr_refs(cfg.locals[name].expr):
            if r.startswith("local."):
                out |= of_local(r[6:], stack + (name,))
            elif r not in REPETITION_NAMES:  # reported when evaluated
                out.add(r)
        memo[name] = out
        return out

    def expand(refs: set[str]) -> set[str]:
        out: set[str] = set()
        for r in refs:
            out |= of_local(r[6:], ()) if r.startswith("local.") else {r}
        return out

    for rc in cfg.resources.values():
        rc.refs = expand(rc.refs)
    for out in cfg.outputs.values():
        out.refs = expand(out.refs)

