"""A configuration in Terraform's JSON "configuration representation": each block's
expressions as written, not evaluated, so a policy can check what the user wrote
(`constant_value`) or what it refers to (`references`). Made by `plan -out` and kept
in the plan file, since `show -json PLANFILE` shows the configuration it was made from.

A constant the schema marks sensitive (a secret's values, an ssh password) and a
sensitive variable's default are left out, as Terraform does.
"""
from __future__ import annotations

from typing import Any

from rhplan.config import ast
from rhplan.config.model import Config, ResourceConfig
from rhplan.config.modules import META_ARGS, call_path
from rhplan.config.schema import META_ATTRS, META_BLOCKS, PROVIDER_SCHEMAS, RESOURCE_SCHEMAS
from rhplan.config.tfjson_refs import references
from rhplan.state.tfjson import MODE, provider_name

_NO_CONSTANT = object()


def constant(expr: Any) -> Any:
    """The value of an expression made of literals only, else _NO_CONSTANT."""
    if isinstance(expr, ast.Literal):
        return expr.value
    if isinstance(expr, ast.TupleExpr):
        items = [constant(x) for x in expr.items]
        return _NO_CONSTANT if any(x is _NO_CONSTANT for x in items) else items
    if isinstance(expr, ast.ObjectExpr):
        out = {}
        for k, v in expr.items:
            key = k.name if isinstance(k, ast.Name) else constant(k)
            value = constant(v)
            if not isinstance(key, str) or value is _NO_CONSTANT:
                return _NO_CONSTANT
            out[key] = value
        return out
    if isinstance(expr, ast.Template) and all(isinstance(p, str) for p in expr.parts):
        return "".join(expr.parts)
    return _NO_CONSTANT


def expression(expr: Any, sensitive: bool = False) -> dict[str, Any]:
    value = constant(expr)
    if value is not _NO_CONSTANT:
        return {} if sensitive else {"constant_value": value}
    refs = references(expr)
    return {"references": refs} if refs else {}


def expressions(block: ast.Block, schema: Any) -> dict[str, Any]:
    """A block's attributes and nested blocks (each a list of objects, as Terraform)."""
    out: dict[str, Any] = {}
    attrs = schema.attrs if schema is not None else {}
    for name, attr in sorted(block.attrs.items()):
        if name in META_ATTRS:
            continue
        a = attrs.get(name)
        out[name] = expression(attr.expr, sensitive=bool(a is not None and a.sensitive))
    for nested in block.blocks:
        if nested.type in META_BLOCKS:
            continue
        inner = schema.blocks.get(nested.type) if schema is not None else None
        out.setdefault(nested.type, []).append(expressions(nested, inner))
    return out


def _resource(rc: ResourceConfig) -> dict[str, Any]:
    provider = _provider_of(rc)
    out: dict[str, Any] = {
        "address": f"{rc.type}.{rc.label}",
        "mode": MODE,
        "type": rc.type,
        "name": rc.label,
        "provider_config_key": provider,
        "expressions": expressions(rc.block, RESOURCE_SCHEMAS.get(rc.type)),
        "schema_version": 0,
    }
    if rc.count is not None:
        out["count_expression"] = expression(rc.count.expr)
    if rc.for_each is not None:
        out["for_each_expression"] = expression(rc.for_each.expr)
    if rc.depends_on:
        out["depends_on"] = list(rc.depends_on)
    return out


def _provider_of(rc: ResourceConfig) -> str:
    """A cluster names its provider; other resources belong to rhplan itself."""
    p = rc.block.attrs.get("provider")
    value = constant(p.expr) if p is not None else _NO_CONSTANT
    return value if rc.type == "cluster" and isinstance(value, str) else "rhplan"


def configuration_json(cfg: Config) -> dict[str, Any]:
    """Terraform's configuration representation of cfg (module calls flattened by the
    loader are nested again under module_calls), plus the block addresses a plan's
    action reasons need (resource_addresses, not shown)."""
    root: dict[str, Any] = {}

    def module(prefix: str) -> dict[str, Any]:  # "module.a.module.b." -> its module
        body, path = root, ""
        for name in call_path(prefix).split(".")[1::2] if prefix else ():
            path += f"module.{name}"
            calls = body.setdefault("module_calls", {})
            if name not in calls:
                calls[name] = _module_call(*cfg.module_calls[path]) \
                    if path in cfg.module_calls else {"module": {}}
            body = calls[name]["module"]
            path += "."
        return body

    seen: set[tuple[str, str]] = set()  # a repeated call's instances: its resources once
    for rc in sorted(cfg.resources.values(), key=lambda r: r.block_address):
        key = (call_path(rc.module), f"{rc.type}.{rc.label}")
        if key not in seen:
            seen.add(key)
            module(rc.module).setdefault("resources", []).append(_resource(rc))
    for path in sorted(cfg.module_calls):  # a call without resources (or instances) too
        module(path + ".")
    if cfg.outputs:
        root["outputs"] = {
            n: {"expression": expression(o.value), **({"sensitive": True} if o.sensitive else {})}
            for n, o in sorted(cfg.outputs.items())}
    if cfg.variables:
        root["variables"] = {n: _variable(v) for n, v in sorted(cfg.variables.items())}
    providers = {}
    for name, block in sorted(cfg.providers.items()):
        providers[name] = {"name": name, "full_name": provider_name(name),
                           "expressions": expressions(block, PROVIDER_SCHEMAS.get(name))}
    out: dict[str, Any] = {"root_module": root}
    if providers:
        out["provider_config"] = providers
    out["resource_addresses"] = sorted(r.block_address for r in cfg.resources.values())
    return out


def _module_call(call: ast.Block, sensitive: frozenset[str]) -> dict[str, Any]:
    """A module call as Terraform shows it: source, arguments, count / for_each."""
    out: dict[str, Any] = {"source": constant(call.attrs["source"].expr)}
    args = {n: expression(a.expr, sensitive=n in sensitive)
            for n, a in sorted(call.attrs.items()) if n not in META_ARGS}
    if args:
        out["expressions"] = args
    for meta in ("count", "for_each"):
        if meta in call.attrs:
            out[f"{meta}_expression"] = expression(call.attrs[meta].expr)
    if "depends_on" in call.attrs:
        out["depends_on"] = sorted(references(call.attrs["depends_on"].expr))
    out["module"] = {}
    return out


def _variable(v: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    default = constant(v.default) if v.default is not None else _NO_CONSTANT
    if default is not _NO_CONSTANT and not v.sensitive:
        out["default"] = default
    if v.description:
        out["description"] = v.description
    if v.sensitive:
        out["sensitive"] = True
    return out
