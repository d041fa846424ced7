"""lifecycle { replace_triggered_by = [...] }: the references it takes, read once at load.

Terraform's form: a resource (env.a), one instance (env.x[0], env.x["k"]) or one of
its attributes (package.p.revision). What they mean for a plan is rhplan/plan/
lifecycle.py's job.
"""
from __future__ import annotations

from dataclasses import dataclass

from rhplan.config import ast
from rhplan.config.evaluate import RESOURCE_TYPES
from rhplan.errors import ConfigError
from rhplan.names import instance_address


@dataclass(frozen=True)
class Trigger:
    address: str  # env.a, env.x[0]: a change to it replaces the resource
    attribute: str | None  # package.p.revision: only a change of this attribute does
    line: int


def read_triggers(a: ast.Attribute, file: str) -> tuple[Trigger, ...]:
    if not isinstance(a.expr, ast.TupleExpr):
        raise ConfigError("replace_triggered_by must be a list of resources or their "
                          "attributes, e.g. [env.a, package.p.revision]", file, a.line)
    return tuple(_trigger(e, file) for e in a.expr.items)


def _trigger(e: ast.Expr, file: str) -> Trigger:
    line = e.line
    attribute = None
    if isinstance(e, ast.GetAttr) and not (isinstance(e.obj, ast.Name)
                                           and e.obj.name in RESOURCE_TYPES):
        attribute, e = e.name, e.obj
    key = None
    if isinstance(e, ast.Index):
        if not isinstance(e.key, ast.Literal) or isinstance(e.key.value, bool):
            raise ConfigError("replace_triggered_by: an index must be a literal, like env.x[0] "
                              'or env.x["k"]', file, line)
        key = int(e.key.value) if isinstance(e.key.value, float) else e.key.value
        e = e.obj
    if isinstance(e, ast.GetAttr) and isinstance(e.obj, ast.Name) and e.obj.name in RESOURCE_TYPES:
        return Trigger(instance_address(e.obj.name, e.name, key), attribute, line)
    raise ConfigError("replace_triggered_by takes resources or their attributes (env.a, "
                      "package.p.revision), not other expressions", file, line)


def read_extras(sub: ast.Block) -> tuple[bool, tuple[Trigger, ...]]:
    """create_before_destroy and replace_triggered_by of one lifecycle block."""
    cbd = False
    a = sub.attrs.get("create_before_destroy")
    if a is not None:
        if not isinstance(a.expr, ast.Literal) or not isinstance(a.expr.value, bool):
            raise ConfigError("create_before_destroy must be true or false", sub.file, a.line)
        cbd = a.expr.value
    t = sub.attrs.get("replace_triggered_by")
    return cbd, read_triggers(t, sub.file) if t is not None else ()
