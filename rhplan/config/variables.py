"""Variable declarations as Terraform has them: type constraints (with conversion),
`validation` blocks and `nullable`.

A type is a small tuple: ("string",), ("number",), ("bool",), ("any",),
("list", T), ("set", T), ("map", T), ("tuple", (T, ...)) and
("object", ((name, T, optional, default), ...)). It is read from the declaration's syntax
tree once, while loading, and turned back into Terraform's spelling for messages.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rhplan.config import ast
from rhplan.config import evaluate as ev
from rhplan.config.values import (
    UNKNOWN,
    EvalError,
    ResourceValue,
    as_bool,
    as_number,
    to_str,
    type_name,
)
from rhplan.errors import ConfigError

Type = tuple[Any, ...]
ANY: Type = ("any",)
_PRIMITIVES = ("string", "number", "bool", "any")
_TYPE_HELP = ("write string, number, bool, any, list(T), set(T), map(T), "
              "tuple([T, ...]) or object({ name = T, ... })")


@dataclass(frozen=True)
class Validation:
    condition: ast.Expr
    error_message: ast.Expr
    file: str
    line: int


# ---- reading declarations ------------------------------------------------------------


def parse_type(e: ast.Expr, file: str, in_object: bool = False) -> Type:
    """A type constraint's syntax → Type, or a ConfigError at its line."""
    if isinstance(e, ast.Name):
        if e.name in _PRIMITIVES:
            return (e.name,)
        if e.name in ("list", "set", "map"):  # Terraform 0.11's bare list / map
            return (e.name, ANY)
        raise ConfigError(f"unknown type {e.name!r}; {_TYPE_HELP}", file, e.line)
    if isinstance(e, ast.Call):
        if e.name in ("list", "set", "map"):
            if len(e.args) != 1:
                raise ConfigError(f"{e.name}(...) takes one element type, e.g. {e.name}(string)",
                                  file, e.line)
            return (e.name, parse_type(e.args[0], file))
        if e.name == "tuple":
            if len(e.args) != 1 or not isinstance(e.args[0], ast.TupleExpr):
                raise ConfigError("tuple takes a list of element types, e.g. "
                                  "tuple([string, number])", file, e.line)
            return ("tuple", tuple(parse_type(i, file) for i in e.args[0].items))
        if e.name == "object":
            if len(e.args) != 1 or not isinstance(e.args[0], ast.ObjectExpr):
                raise ConfigError("object takes a map of attribute types, e.g. "
                                  "object({ name = string, size = optional(number, 1) })",
                                  file, e.line)
            return ("object", tuple(_object_attr(k, v, file) for k, v in e.args[0].items))
        if e.name == "optional":
            raise ConfigError("optional(...) marks an attribute of an object type; use it "
                              "inside object({ ... })", file, e.line)
    raise ConfigError(f"this is not a type; {_TYPE_HELP}", file, getattr(e, "line", None))


def _object_attr(k: ast.Expr, v: ast.Expr, file: str) -> tuple[str, Type, bool, Any]:
    if not isinstance(k, ast.Literal) or not isinstance(k.value, str):
        raise ConfigError("object attribute names must be plain names", file, k.line)
    if isinstance(v, ast.Call) and v.name == "optional":
        if len(v.args) not in (1, 2):
            raise ConfigError("write optional(TYPE) or optional(TYPE, DEFAULT)", file, v.line)
        t = parse_type(v.args[0], file)
        default = None
        if len(v.args) == 2:
            default = _constant(v.args[1], file)
            try:
                default = _convert(default, t)
            except TypeError as exc:
                raise ConfigError(f"the default of optional attribute {k.value!r}: {exc}",
                                  file, v.line) from None
        return (k.value, t, True, default)
    return (k.value, parse_type(v, file), False, None)


def _constant(e: ast.Expr, file: str) -> Any:
    """A value in a declaration: functions and literals, no references."""
    def no_refs(*args: Any) -> Any:
        raise EvalError("a type's default cannot refer to other values", args[-1])
    from pathlib import Path

    return ev.Scope({}, no_refs, no_refs, Path(".")).evaluate(e, file)


def type_text(t: Type) -> str:
    """Terraform's spelling of a type, for messages and -var parsing."""
    kind = t[0]
    if kind in _PRIMITIVES:
        return kind
    if kind in ("list", "set", "map"):
        return f"{kind}({type_text(t[1])})"
    if kind == "tuple":
        return f"tuple([{', '.join(type_text(x) for x in t[1])}])"
    parts = []
    for name, at, optional, default in t[1]:
        inner = type_text(at)
        if optional:
            inner = f"optional({inner}{'' if default is None else ', ' + _literal(default)})"
        parts.append(f"{name} = {inner}")
    return f"object({{ {', '.join(parts)} }})" if parts else "object({})"


def _literal(v: Any) -> str:
    import json
    return json.dumps(v)


def read_validations(b: ast.Block, name: str) -> list[Validation]:
    """validation { condition = ..., error_message = "..." } blocks of variable `name`."""
    out = []
    for sub in b.blocks:
        if sub.type != "validation" or sub.labels:
            raise ConfigError(f"a variable block holds only validation {{ }} blocks, not "
                              f"{sub.type!r}", sub.file, sub.line)
        for attr in sub.attrs.values():
            if attr.name not in ("condition", "error_message"):
                raise ConfigError(f"unknown attribute {attr.name!r} in validation; it takes "
                                  "condition and error_message", sub.file, attr.line)
        for needed in ("condition", "error_message"):
            if needed not in sub.attrs:
                raise ConfigError(f"validation needs {needed} = ...; e.g. condition = "
                                  f'length(var.{name}) > 0, error_message = "Say why."',
                                  sub.file, sub.line)
        cond = sub.attrs["condition"]
        mentions_self = False
        for n in ast.walk(cond.expr):
            if isinstance(n, ast.GetAttr) and isinstance(n.obj, ast.Name):
                root = n.obj.name
                if root == "var" and n.name == name:
                    mentions_self = True
                elif root == "local" or root in ev.RESOURCE_TYPES:
                    raise ConfigError(f"a validation condition can refer only to variables, "
                                      f"not {root}.{n.name}: variables are checked before "
                                      "anything else is evaluated", sub.file, n.line)
        if not mentions_self:
            raise ConfigError(f"the condition for variable {name!r} must refer to var.{name} "
                              "to test the value it is given", sub.file, cond.line)
        msg = sub.attrs["error_message"]
        if isinstance(msg.expr, ast.Literal) and (not isinstance(msg.expr.value, str)
                                                  or not msg.expr.value.strip()):
            raise ConfigError("error_message must be a non-empty string saying what is wrong "
                              "and how to fix it", sub.file, msg.line)
        out.append(Validation(cond.expr, msg.expr, sub.file, cond.line))
    return out


# ---- values --------------------------------------------------------------------------


def convert(value: Any, t: Type, secret: bool = False) -> Any:
    """value converted to type t (Terraform's rules), or TypeError saying where and why
    (without the value's content when it is secret: a sensitive variable's)."""
    try:
        return _convert(value, t)
    except TypeError as exc:
        if not secret:
            raise
        raise TypeError(re.sub(r"found string '(?:[^'\\]|\\.)*'|found string \"(?:[^\"\\]|\\.)*\"",
                               "found a string", str(exc))) from None


def _convert(value: Any, t: Type) -> Any:
    if value is None or value is UNKNOWN:
        return value
    kind = t[0]
    if isinstance(value, ResourceValue):
        raise TypeError(f"found the whole resource {value.address}")
    if kind == "any":
        return value
    if kind == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return to_str(value, 0) if isinstance(value, int) or not value.is_integer() \
                else str(int(value))
        raise TypeError(f"a string is required, found {_describe(value)}")
    if kind == "number":
        n = as_number(value)
        if n is None:
            raise TypeError(f"a number is required, found {_describe(value)}")
        return n
    if kind == "bool":
        b = as_bool(value)
        if b is None:
            raise TypeError(f"a bool is required, found {_describe(value)}")
        return b
    if kind in ("list", "set", "tuple"):
        if not isinstance(value, list):
            raise TypeError(f"a {kind} is required, found {_describe(value)}")
        if kind == "tuple":
            if len(value) != len(t[1]):
                raise TypeError(f"a tuple of {len(t[1])} element(s) is required, found "
                                f"{len(value)}")
            return [_at(f"element {i}", v, et) for i, (v, et) in enumerate(zip(value, t[1],
                                                                                  strict=True))]
        items = [_at(f"element {i}", v, t[1]) for i, v in enumerate(value)]
        if kind == "set":
            from rhplan.config import functions
            if any(v is None for v in items):
                raise TypeError("a set cannot hold null")
            items = functions.FUNCTIONS["toset"](None, items)
        return items
    if kind == "map":
        if not isinstance(value, dict):
            raise TypeError(f"a map is required, found {_describe(value)}")
        return {str(k): _at(f"key {k!r}", v, t[1]) for k, v in value.items()}
    if kind == "object":
        if not isinstance(value, dict):
            raise TypeError(f"an object is required, found {_describe(value)}")
        out = {}
        for name, at, optional, default in t[1]:
            if name in value and value[name] is not None:
                out[name] = _at(f"attribute {name!r}", value[name], at)
            elif name in value or optional:
                out[name] = default if optional else None
            else:
                raise TypeError(f"attribute {name!r} is required")
        return out  # attributes the type does not name are dropped, as in Terraform
    raise TypeError(f"unknown type {type_text(t)}")


def _at(where: str, value: Any, t: Type) -> Any:
    try:
        return _convert(value, t)
    except TypeError as exc:
        raise TypeError(f"{where}: {exc}") from None


def _describe(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"string {text!r}"
    return type_name(value)


def check(v: Any, value: Any, values: dict[str, Any], declared: dict[str, Any],
          base_dir: Any) -> None:
    """nullable = false and each validation rule of variable v (a model.Variable), against
    its final value; `values` are all variables' values (a rule may read others)."""
    name = v.name
    if value is None and not v.nullable:
        raise ConfigError(f"variable {name!r} must not be null (nullable = false); give it "
                          "a value", v.file, v.line)

    def no_refs(*args: Any) -> Any:
        raise EvalError("a validation condition can refer only to variables", args[-1])

    scope = ev.Scope(values, no_refs, no_refs, base_dir)
    for rule in v.validations:
        ok = scope.evaluate(rule.condition, rule.file)
        if ok is UNKNOWN:
            continue  # validate: a variable without a value (its rule is checked at plan)
        if ok is None or not isinstance(ok, bool) and ok not in ("true", "false"):
            shown = "null" if ok is None else ("a value" if v.sensitive else _describe(ok))
            raise ConfigError(f"the validation condition of variable {name!r} must be true or "
                              f"false, not {shown}", rule.file, rule.line)
        if ok is True or ok == "true":
            continue
        secret = sorted(n.name for n in ast.walk(rule.error_message)
                        if isinstance(n, ast.GetAttr) and isinstance(n.obj, ast.Name)
                        and n.obj.name == "var" and getattr(declared.get(n.name), "sensitive",
                                                            False))
        if secret:  # the message would print a sensitive value
            text = (f"(the error message refers to the sensitive var.{secret[0]} and is not "
                    "shown)")
        else:
            message = scope.evaluate(rule.error_message, rule.file)
            text = " ".join(to_str(message, rule.line).split()) if message is not None \
                else ""
        raise ConfigError(f"invalid value for variable {name!r}: {text} (checked by the "
                          f"validation rule here)", rule.file, rule.line)
