"""The top-level blocks that refactor what the state records, as Terraform writes them:

    moved   { from = env.a  to = env.b }              # a new address, nothing rebuilt
    moved   { from = env.a  to = module.m["k"].env.a }  # into a module (or out, or
                                                        # module.m -> module.m["k"])
    removed { from = env.x  lifecycle { destroy = false } }   # forget, do not destroy
    import  { to = env.y  id = "..." }                # adopt something already there

Here they are only read and checked on their own (file:line errors); what they do to a
plan is rhplan/plan/moved.py's and rhplan/plan/imports.py's job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rhplan.config import ast
from rhplan.config.evaluate import RESOURCE_TYPES
from rhplan.errors import ConfigError
from rhplan.names import instance_address

BLOCK_TYPES = ("moved", "removed", "import")


@dataclass(frozen=True)
class Moved:
    source: str  # "from": an address (env.a, env.a[0], env.a["k"])
    to: str
    file: str
    line: int  # its from = line, which errors name


@dataclass(frozen=True)
class Removed:
    source: str  # a resource block's address (env.x): all its instances
    destroy: bool
    file: str
    line: int


@dataclass(frozen=True)
class ImportBlock:
    to: str
    id: ast.Expr  # evaluated while planning (it may use variables)
    file: str
    line: int


def read_block(b: ast.Block, into: Any) -> None:
    """Read one moved / removed / import block into the Config's lists."""
    if b.labels:
        raise ConfigError(f"a {b.type} block takes no label: write {b.type} {{ ... }}",
                          b.file, b.line)
    if b.type == "moved":
        _only(b, ("from", "to"), ())
        src, dst = _address(b, "from"), _address(b, "to")
        into.moved.append(Moved(src, dst, b.file, b.attrs["from"].line))
    elif b.type == "removed":
        _only(b, ("from",), ("lifecycle",))
        source = _address(b, "from")
        if source.endswith("]"):
            raise ConfigError(f"removed: from = {source} names one instance; removed takes a "
                              "whole resource (from = " + source[:source.index("[")] + ")",
                              b.file, b.attrs["from"].line)
        into.removed.append(Removed(source, _destroy(b), b.file, b.attrs["from"].line))
    else:
        _only(b, ("to", "id"), ())
        if "id" not in b.attrs:
            raise ConfigError('import needs id = "..." (what to adopt: a folder, a host, an '
                              "instance id); see README \"Refactoring\"", b.file, b.line)
        into.imports.append(ImportBlock(_address(b, "to"), b.attrs["id"].expr, b.file, b.line))


def _only(b: ast.Block, attrs: tuple[str, ...], blocks: tuple[str, ...]) -> None:
    for name, a in b.attrs.items():
        if name not in attrs:
            raise ConfigError(f"unknown attribute {name!r} in a {b.type} block; it takes "
                              f"{', '.join(attrs)}", b.file, a.line)
    for sub in b.blocks:
        if sub.type not in blocks:
            raise ConfigError(f"unknown block {sub.type!r} in a {b.type} block"
                              + (f"; it takes {', '.join(blocks)}" if blocks else ""),
                              b.file, sub.line)


def _address(b: ast.Block, attr: str) -> str:
    """A resource address written as a reference: env.a, env.a[0], env.a["k"], the same
    inside a module call (module.m.env.a, module.m["k"].env.a); in a moved block also a
    whole module call (module.m, module.m["k"], module.m[0])."""
    a = b.attrs.get(attr)
    if a is None:
        raise ConfigError(f"a {b.type} block needs {attr} = ADDRESS (e.g. {attr} = env.a)",
                          b.file, b.line)
    e, key = _key_of(a.expr, b, attr, a.line)
    if b.type == "moved":
        module = module_path(a.expr, b, attr, a.line)
        if module is not None:
            return module
    if isinstance(e, ast.GetAttr) and isinstance(e.obj, ast.GetAttr) \
            and e.obj.name in RESOURCE_TYPES:
        module = module_path(e.obj.obj, b, attr, a.line)
        if module is not None:
            return instance_address(f"{module}.{e.obj.name}", e.name, key)
    if not (isinstance(e, ast.GetAttr) and isinstance(e.obj, ast.Name)
            and e.obj.name in RESOURCE_TYPES):
        raise ConfigError(f"{b.type}: {attr} must be a resource address such as env.a, "
                          f'env.a[0], env.a["k"] or module.m.env.a (types: '
                          f'{", ".join(RESOURCE_TYPES)})', b.file, a.line)
    return instance_address(e.obj.name, e.name, key)


def _key_of(e: ast.Expr, b: ast.Block, attr: str, line: int) -> tuple[ast.Expr, Any]:
    """(the expression without its trailing [key], that key or None)."""
    if not isinstance(e, ast.Index):
        return e, None
    if not isinstance(e.key, ast.Literal) or not isinstance(e.key.value, (int, float, str)) \
            or isinstance(e.key.value, bool):
        raise ConfigError(f"{b.type}: {attr} takes a literal index or key, like env.a[0] "
                          'or env.a["k"]', b.file, line)
    key = e.key.value
    if isinstance(key, float):
        if key != int(key) or key < 0:
            raise ConfigError(f"{b.type}: {attr}: an index is a whole number, not {key}",
                              b.file, line)
        key = int(key)
    return e.obj, key


def module_path(e: ast.Expr, b: ast.Block, attr: str, line: int) -> str | None:
    """module.m, module.m["k"], module.m.module.n... as an address, or None."""
    e, key = _key_of(e, b, attr, line)
    if not isinstance(e, ast.GetAttr):
        return None
    if isinstance(e.obj, ast.Name) and e.obj.name == "module":
        outer = ""
    elif isinstance(e.obj, ast.GetAttr) and e.obj.name == "module":
        inner = module_path(e.obj.obj, b, attr, line)
        if inner is None:
            return None
        outer = inner + "."
    else:
        return None
    return outer + instance_address("module", e.name, key)


def _destroy(b: ast.Block) -> bool:
    life = b.blocks_of("lifecycle")
    if len(life) != 1:
        raise ConfigError("removed needs lifecycle { destroy = false } (forget it, leave it "
                          "running) or destroy = true (destroy it)", b.file, b.line)
    lc = life[0]
    for name, a in lc.attrs.items():
        if name != "destroy":
            raise ConfigError(f"unknown lifecycle setting {name!r} in removed; it takes destroy",
                              b.file, a.line)
    d = lc.attrs.get("destroy")
    if d is None or not isinstance(d.expr, ast.Literal) or not isinstance(d.expr.value, bool):
        raise ConfigError("removed: lifecycle { destroy = true | false } (a literal true or "
                          "false)", b.file, d.line if d else lc.line)
    return bool(d.expr.value)
