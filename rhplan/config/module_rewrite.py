"""A module's expressions and blocks rewritten as its caller reads them (see
config/modules.py): its variables, locals and outputs as the caller's locals
(module.m.var.V ...), its resources under the call's prefix, `module.m.OUT` as the local
holding that output; and expressions with some nodes replaced (each.* / count.index of
an instance)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rhplan.config import ast
from rhplan.config.evaluate import RESOURCE_TYPES
from rhplan.errors import ConfigError


class Repeated(set):  # type: ignore[type-arg]
    """The output names of a call with count / for_each: `module.m` is then a list or
    map of instances, written out once its keys are known (expand_repeated)."""


def local_name(name: str, prefix: str) -> str:
    # a module's own local has no dot; a name with one was made by a nested call
    return f"{prefix}.{name}" if "." in name else f"{prefix}.local.{name}"


def local_ref(ref: str, prefix: str) -> str:
    return "local." + local_name(ref[6:], prefix)


def block_refs(block: ast.Block) -> set[str]:
    from rhplan.config.refs import expr_refs

    out: set[str] = set()
    stack = [block]
    while stack:
        b = stack.pop()
        for a in b.attrs.values():
            out |= expr_refs(a.expr)
        stack.extend(b.blocks)
    return out


def rewrite_attr(attr: ast.Attribute, prefix: str, module_dir: Path,
          outputs: dict[str, set[str]] | None = None) -> ast.Attribute:
    return ast.Attribute(attr.name, rewrite(attr.expr, prefix, module_dir, outputs), attr.line)


def rewrite_block(b: ast.Block, prefix: str, module_dir: Path,
                  outputs: dict[str, set[str]] | None = None) -> ast.Block:
    try:
        return _rewrite_block(b, prefix, module_dir, outputs)
    except Located as exc:
        raise ConfigError(exc.message, b.file, exc.line) from None


def _rewrite_block(b: ast.Block, prefix: str, module_dir: Path,
                   outputs: dict[str, set[str]] | None) -> ast.Block:
    return ast.Block(b.type, b.labels,
                     {k: rewrite_attr(a, prefix, module_dir, outputs) for k, a in b.attrs.items()},
                     [_rewrite_block(s, prefix, module_dir, outputs) for s in b.blocks],
                     b.file, b.line, b.end_line, b.extra)


def mentions_module(b: ast.Block) -> bool:
    return any(mentions_module_expr(a.expr) for a in b.attrs.values()) or any(
        mentions_module(s) for s in b.blocks)


def mentions_module_expr(e: ast.Expr) -> bool:
    return any(isinstance(n, ast.Name) and n.name == "module" for n in ast.walk(e))


def rewrite(e: Any, prefix: str, module_dir: Path,
            outputs: dict[str, set[str]] | None = None) -> Any:
    """e as its module's caller reads it (see the module docstring). prefix "" rewrites
    only `module.m.OUT` (checked against `outputs`: module name -> its output names)."""
    t = type(e)
    if t is ast.Literal or t is ast.Name:
        return e
    if t is ast.GetAttr:
        obj = e.obj
        if type(obj) is ast.GetAttr and type(obj.obj) is ast.Name and obj.obj.name == "module" \
                and not (outputs is not None and type(outputs.get(obj.name)) is Repeated):
            if outputs is not None and obj.name in outputs and e.name not in outputs[obj.name]:
                have = ", ".join(sorted(outputs[obj.name])) or "none"
                raise Located(f"module.{obj.name} has no output {e.name!r} (its outputs: "
                               f"{have}); declare output \"{e.name}\" in the module or fix "
                               "the name", e.line)
            if outputs is not None and obj.name not in outputs:
                raise Located(f"unknown module.{obj.name}; declare module \"{obj.name}\" "
                               "{ source = ... }", e.line)
            pre = f"{prefix}." if prefix else ""
            return ast.GetAttr(ast.Name("local", e.line),
                               f"{pre}module.{obj.name}.output.{e.name}", e.line)
        if type(obj) is ast.Name and prefix:
            root = obj.name
            if root == "var":
                return ast.GetAttr(ast.Name("local", obj.line), f"{prefix}.var.{e.name}", e.line)
            if root == "local":
                return ast.GetAttr(obj, local_name(e.name, prefix), e.line)
            if root in RESOURCE_TYPES or root.startswith("module."):
                return ast.GetAttr(ast.Name(f"{prefix}.{root}", obj.line), e.name, e.line)
            if root == "path" and e.name == "module":
                return ast.Literal(str(module_dir), e.line)
            return e
        return ast.GetAttr(rewrite(obj, prefix, module_dir, outputs), e.name, e.line)
    if t is ast.Template:
        return ast.Template(tuple(p if type(p) is str else rewrite(p, prefix, module_dir, outputs)
                                  for p in e.parts), e.line)
    if t is ast.ObjectExpr:
        return ast.ObjectExpr(tuple((rewrite(k, prefix, module_dir, outputs),
                                     rewrite(v, prefix, module_dir, outputs))
                                    for k, v in e.items), e.line)
    changes = {}
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, tuple):
            changes[f.name] = tuple(x if type(x) is str else rewrite(x, prefix, module_dir, outputs)
                                    for x in v)
        elif f.name not in ("line",) and v is not None and not isinstance(v, (str, bool, int)):
            changes[f.name] = rewrite(v, prefix, module_dir, outputs)
    return dataclasses.replace(e, **changes) if changes else e


class Located(ConfigError):
    """An error found while rewriting, whose file the caller of rewrite adds."""

    def __init__(self, message: str, line: int):
        super().__init__(message, None, line)


def replace(e: Any, fn: Any) -> Any:
    """e with every node for which fn gives a new node replaced by it."""
    new = fn(e)
    if new is not None:
        return new
    t = type(e)
    if t is ast.Literal or t is ast.Name:
        return e
    if t is ast.ObjectExpr:
        return ast.ObjectExpr(tuple((replace(k, fn), replace(v, fn)) for k, v in e.items),
                              e.line)
    changes = {}
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, tuple):
            changes[f.name] = tuple(x if type(x) is str else replace(x, fn) for x in v)
        elif f.name != "line" and v is not None and not isinstance(v, (str, bool, int, float)):
            changes[f.name] = replace(v, fn)
    return dataclasses.replace(e, **changes) if changes else e


def bind(e: ast.Expr, bindings: dict[str, Any], file: str) -> ast.Expr:
    """each.key / each.value / count.index in a call's argument: the instance's value."""
    def one(n: Any) -> Any:
        if type(n) is ast.GetAttr and type(n.obj) is ast.Name and n.obj.name in bindings:
            got = bindings[n.obj.name]
            if n.name not in got:
                raise ConfigError(f"{n.obj.name}.{n.name} does not exist; use "
                                  + ("each.key or each.value" if n.obj.name == "each"
                                     else "count.index"), file, n.line)
            return ast.Literal(got[n.name], n.line)
        return None
    return replace(e, one)
