"""A resource block read into a ResourceConfig: its settings checked against the
type's schema (nested, dynamic and lifecycle blocks too), what it refers to, its
depends_on and its count / for_each. Nothing is evaluated."""
from __future__ import annotations

from typing import Any

from rhplan.config import ast, lifecycle
from rhplan.config.blocks import literal
from rhplan.config.model import ResourceConfig
from rhplan.config.refactor_blocks import module_path
from rhplan.config.refs import REPETITION_NAMES, address_of, expr_refs
from rhplan.config.schema import META_ATTRS, META_BLOCKS, RESOURCE_SCHEMAS
from rhplan.errors import ConfigError
from rhplan.names import block_address


def read_resource(b: ast.Block) -> ResourceConfig:
    schema = RESOURCE_SCHEMAS[b.type]
    refs: set[str] = set()
    for name, a in b.attrs.items():
        if name in META_ATTRS:
            continue
        spec = schema.attrs.get(name)
        if spec is None or spec.computed:
            hint = (f"{name!r} is computed by rhplan and cannot be set" if spec else
                    f"unknown attribute {name!r} in {b.type} {b.labels[0]!r}")
            raise ConfigError(f"{hint}; {b.type} takes: {', '.join(schema.settable())}",
                              b.file, a.line)
        refs |= expr_refs(a.expr)
    prevent_destroy = False
    ignore: list[str] = []
    nested_seen: set[str] = set()
    cbd, triggers = False, ()
    for sub in b.blocks:
        if sub.type == "lifecycle":
            prevent_destroy, ignore = _lifecycle(sub, schema)
            cbd, triggers = lifecycle.read_extras(sub)
            refs |= {block_address(t.address) for t in triggers}  # planned after them
            continue
        if sub.type == "dynamic":
            label = _dynamic(sub, b, schema)
            if label in nested_seen:
                raise ConfigError(f"a second {label} block; keep one", b.file, sub.line)
            nested_seen.add(label)
            for part in (sub, *sub.blocks):
                for a in part.attrs.values():
                    if a.name != "iterator":
                        refs |= expr_refs(a.expr)
            continue
        if sub.type not in schema.blocks:
            raise ConfigError(
                f"unknown block {sub.type!r} in {b.type} {b.labels[0]!r}; "
                f"{b.type} takes: {', '.join(schema.settable() + sorted(META_BLOCKS))}",
                b.file, sub.line)
        if sub.type in nested_seen:
            raise ConfigError(f"a second {sub.type} block; keep one", b.file, sub.line)
        nested_seen.add(sub.type)
        sub_schema = schema.blocks[sub.type]
        for name, a in sub.attrs.items():
            if name not in sub_schema.attrs:
                raise ConfigError(f"unknown attribute {name!r} in {sub.type} block; it takes: "
                                  f"{', '.join(sub_schema.settable())}", b.file, a.line)
            refs |= expr_refs(a.expr)
    depends_on: list[str] = []
    if "depends_on" in b.attrs:
        dep = b.attrs["depends_on"]
        items = dep.expr.items if isinstance(dep.expr, ast.TupleExpr) else None
        if items is None:
            raise ConfigError("depends_on must be a list of resources, e.g. [cluster.gpu]",
                              b.file, dep.line)
        for item in items:
            # a module call (module.m, module.m["k"]): all inside it (config/modules.py)
            addr = address_of(item) or module_path(item, b, "depends_on", item.line)
            if addr is None:
                raise ConfigError("depends_on entries must be resources like cluster.gpu "
                                  "or module calls like module.pool", b.file, item.line)
            depends_on.append(addr)
    count, for_each = b.attrs.get("count"), b.attrs.get("for_each")
    if count is not None and for_each is not None:
        raise ConfigError(f'{b.type} {b.labels[0]!r} sets both "count" and "for_each"; use '
                          "one of them (for_each = toset(...) or a map, or count = N)",
                          b.file, max(count.line, for_each.line))
    for meta in (count, for_each):
        if meta is not None:
            _no_self_reference(meta, b)
            refs |= expr_refs(meta.expr)
    used = refs & REPETITION_NAMES
    if used:
        refs -= used
        _check_repetition_names(b, used, count is not None, for_each is not None)
    rc = ResourceConfig(b.type, b.labels[0], b, refs, depends_on, prevent_destroy, ignore,
                        count, for_each, repeated="count" if count is not None else (
                            "for_each" if for_each is not None else None))
    rc.create_before_destroy, rc.replace_triggered_by = cbd, triggers
    return rc


def _no_self_reference(meta: ast.Attribute, b: ast.Block) -> None:
    """count / for_each are read before any instance exists: they cannot use each,
    count or the block itself (Terraform: "Invalid count argument")."""
    for n in ast.walk(meta.expr):
        if isinstance(n, ast.Name) and n.name in ("each", "count"):
            raise ConfigError(f'{meta.name} cannot use "{n.name}": it decides how many '
                              "instances there are; use variables, locals or other "
                              "resources", b.file, n.line)


def _check_repetition_names(b: ast.Block, used: set[str], has_count: bool,
                            has_for_each: bool) -> None:
    """each.* only where for_each is set, count.* only where count is (Terraform's
    "Reference to "each" in context without for_each"). `used`: the ones the block's
    expressions read (found by expr_refs' walk); only a mistake walks again, for its line."""
    wrong = ("each" in used and not has_for_each) or ("count" in used and not has_count)
    if not wrong:
        return
    exprs = [a.expr for a in b.attrs.values() if a.name not in ("count", "for_each")]
    for sub in b.blocks:
        for part in (sub, *sub.blocks):
            exprs += [a.expr for a in part.attrs.values() if a.name != "iterator"]
    for expr in exprs:
        for n in ast.walk(expr):
            if not isinstance(n, ast.GetAttr) or not isinstance(n.obj, ast.Name):
                continue
            if n.obj.name == "each" and not has_for_each:
                raise ConfigError(f'"each" is used in {b.type} {b.labels[0]!r}, which does '
                                  "not set for_each; add for_each = ... (a map or a set of "
                                  "strings) or remove each.key / each.value", b.file, n.line)
            if n.obj.name == "count" and not has_count:
                raise ConfigError(f'"count.index" is used in {b.type} {b.labels[0]!r}, which '
                                  "does not set count; add count = N or remove count.index",
                                  b.file, n.line)


def _dynamic(sub: ast.Block, b: ast.Block, schema: Any) -> str:
    """Check a `dynamic "NAME" { for_each = ...  iterator = I  content { ... } }` block;
    returns NAME. Only nested blocks may be dynamic, as in Terraform."""
    if len(sub.labels) != 1:
        raise ConfigError('a dynamic block takes one label, the nested block it makes: '
                          'dynamic "ssh" { ... }', b.file, sub.line)
    label = sub.labels[0]
    if label not in schema.blocks:
        nested = ", ".join(sorted(schema.blocks)) or "none"
        raise ConfigError(f"dynamic {label!r}: {b.type} has no nested block {label!r} "
                          f"(its nested blocks: {nested}; lifecycle cannot be dynamic)",
                          b.file, sub.line)
    for name, a in sub.attrs.items():
        if name not in ("for_each", "iterator"):
            raise ConfigError(f"unknown attribute {name!r} in dynamic {label!r}; it takes "
                              "for_each, iterator and a content block", b.file, a.line)
    if "for_each" not in sub.attrs:
        raise ConfigError(f"dynamic {label!r} needs for_each = ... (a list, set or map)",
                          b.file, sub.line)
    it = sub.attrs.get("iterator")
    if it is not None and not isinstance(it.expr, ast.Name):
        raise ConfigError(f"dynamic {label!r}: iterator must be a bare name, e.g. "
                          "iterator = item", b.file, it.line)
    contents = sub.blocks_of("content")
    if len(contents) != 1 or len(sub.blocks) != 1:
        raise ConfigError(f"dynamic {label!r} holds exactly one content {{ ... }} block",
                          b.file, sub.line)
    sub_schema = schema.blocks[label]
    for name, a in contents[0].attrs.items():
        if name not in sub_schema.attrs:
            raise ConfigError(f"unknown attribute {name!r} in {label} block; it takes: "
                              f"{', '.join(sub_schema.settable())}", b.file, a.line)
    return label


def _lifecycle(sub: ast.Block, schema: Any) -> tuple[bool, list[str]]:
    prevent = False
    ignore: list[str] = []
    for name, a in sub.attrs.items():
        if name == "prevent_destroy":
            v = literal(a.expr, sub.file, "prevent_destroy")
            if not isinstance(v, bool):
                raise ConfigError("prevent_destroy must be true or false", sub.file, a.line)
            prevent = v
        elif name == "ignore_changes":
            # Terraform writes bare attribute names here: ignore_changes = [env_vars]
            e = a.expr
            if isinstance(e, ast.Name) and e.name == "all":
                ignore = ["all"]
                continue
            if not isinstance(e, ast.TupleExpr):
                raise ConfigError("ignore_changes must be a list of attribute names or all",
                                  sub.file, a.line)
            for item in e.items:
                n = item.name if isinstance(item, ast.Name) else (
                    item.value if isinstance(item, ast.Literal) else None)
                if not isinstance(n, str) or n not in schema.attrs:
                    raise ConfigError(
                        f"ignore_changes: {n!r} is not an attribute of this resource",
                        sub.file, item.line)
                ignore.append(n)
        elif name in ("create_before_destroy", "replace_triggered_by"):
            continue  # lifecycle.read_extras
        else:
            raise ConfigError(f"unknown lifecycle setting {name!r}; use prevent_destroy, "
                              "ignore_changes, create_before_destroy or replace_triggered_by",
                              sub.file, a.line)
    return prevent, ignore

