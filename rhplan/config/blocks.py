"""The top-level blocks that are not resources, read into their values: the rhplan
block's backend, variable and output blocks; and literal values (what may be read
before anything is evaluated)."""
from __future__ import annotations

from typing import Any

from rhplan.config import ast
from rhplan.config.model import Backend, Output, Variable
from rhplan.config.refs import REPETITION_NAMES, expr_refs
from rhplan.errors import ConfigError


def literal(expr: ast.Expr, file: str, what: str) -> Any:
    """Values in the rhplan block must be literal: they are read before anything else."""
    if isinstance(expr, ast.Literal):
        return expr.value
    if isinstance(expr, ast.TupleExpr):
        return [literal(i, file, what) for i in expr.items]
    raise ConfigError(f"{what} must be a literal value (no references)", file, expr.line)


# what each backend "TYPE" block takes (checked further, with types, in workspace.backend_for)
BACKEND_ATTRS = {
    "local": ("path", "workspace_dir"),
    "s3": ("bucket", "key", "region", "endpoint_url", "profile", "workspace_key_prefix"),
}


def read_backend(b: ast.Block) -> Backend:
    for a in b.attrs.values():
        raise ConfigError(f"unknown attribute {a.name!r} in the rhplan block; "
                          "only a backend block goes here", b.file, a.line)
    backend = Backend("local", {"path": "rhplan.state.json"}, b.file, b.line)
    for sub in b.blocks:
        if sub.type != "backend" or len(sub.labels) != 1:
            raise ConfigError('the rhplan block holds one backend "TYPE" { ... } block',
                              b.file, sub.line)
        if sub.labels[0] not in BACKEND_ATTRS:
            raise ConfigError(f'unknown backend {sub.labels[0]!r}; use "local" or "s3"',
                              b.file, sub.line)
        attrs = {k: literal(a.expr, b.file, f"backend attribute {k}") for k, a in sub.attrs.items()}
        allowed = BACKEND_ATTRS[sub.labels[0]]
        unknown = sorted(set(attrs) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown attribute {unknown[0]!r} in backend "
                              f'"{sub.labels[0]}"; it takes {", ".join(allowed)}',
                              b.file, sub.attrs[unknown[0]].line)
        if sub.labels[0] == "local":
            attrs.setdefault("path", "rhplan.state.json")
        backend = Backend(sub.labels[0], attrs, b.file, sub.line)
    return backend


_VARIABLE_ATTRS = {"default", "type", "description", "sensitive", "nullable"}


def read_variable(b: ast.Block) -> Variable:
    from rhplan.config import variables  # type constraints and validation rules

    for name, a in b.attrs.items():
        if name not in _VARIABLE_ATTRS:
            raise ConfigError(f"unknown attribute {name!r} in variable {b.labels[0]!r}; "
                              f"use {', '.join(sorted(_VARIABLE_ATTRS))}", b.file, a.line)
    type_spec = variables.parse_type(b.attrs["type"].expr, b.file) if "type" in b.attrs else None
    desc = b.attrs.get("description")
    sens = b.attrs.get("sensitive")
    nullable = True
    if "nullable" in b.attrs:
        nullable = literal(b.attrs["nullable"].expr, b.file, "nullable")
        if not isinstance(nullable, bool):
            raise ConfigError("nullable must be true or false", b.file, b.attrs["nullable"].line)
        default = b.attrs.get("default")
        if not nullable and default is not None and isinstance(default.expr, ast.Literal) \
                and default.expr.value is None:
            raise ConfigError(f"variable {b.labels[0]!r} has nullable = false, so its default "
                              "cannot be null; remove the default or give a value",
                              b.file, default.line)
    return Variable(
        b.labels[0], b.attrs["default"].expr if "default" in b.attrs else None,
        variables.type_text(type_spec) if type_spec is not None else None,
        literal(desc.expr, b.file, "description") if desc else "",
        bool(literal(sens.expr, b.file, "sensitive")) if sens else False, b.file, b.line,
        type_spec, nullable, variables.read_validations(b, b.labels[0]))


def read_output(b: ast.Block) -> Output:
    allowed = {"value", "sensitive", "description", "depends_on"}
    for name, a in b.attrs.items():
        if name not in allowed:
            raise ConfigError(f"unknown attribute {name!r} in output {b.labels[0]!r}; "
                              f"use {', '.join(sorted(allowed))}", b.file, a.line)
    if "value" not in b.attrs:
        raise ConfigError(f"output {b.labels[0]!r} needs a value = ...", b.file, b.line)
    sens = b.attrs.get("sensitive")
    desc = b.attrs.get("description")
    out = Output(b.labels[0], b.attrs["value"].expr,
                 bool(literal(sens.expr, b.file, "sensitive")) if sens else False,
                 literal(desc.expr, b.file, "description") if desc else "", b.file, b.line)
    out.refs = expr_refs(b.attrs["value"].expr) - REPETITION_NAMES
    return out

