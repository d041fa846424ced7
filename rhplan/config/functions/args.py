"""Argument checks shared by every function: Terraform converts primitives freely, never
collections; errors name the argument, never a string's content (it may be a secret)."""
from __future__ import annotations

import json
from typing import Any

from rhplan.config import values as ev

# Bounds on what one call may build: a few characters of configuration must not be
# able to ask for gigabytes (format("%999999999d", 1), a YAML billion laughs).
MAX_PAD = 10_000
MAX_VALUE_NODES = 1_000_000




def as_str(v: Any, what: str = "the argument") -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return num_text(v)
    if v is None:
        raise ValueError(f"{what} is null; a string is required")
    raise ValueError(f"{what} must be a string, not a {ev.type_name(v)}")


def as_num(v: Any, what: str = "the argument") -> int | float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        n = ev.parse_number(v)
        if n is not None:
            return n
        raise ValueError(f"{what} must be a number, not {a_string(v)}")
    if v is None:
        raise ValueError(f"{what} is null; a number is required")
    raise ValueError(f"{what} must be a number, not a {ev.type_name(v)}")


def as_int(v: Any, what: str = "the argument") -> int:
    n = as_num(v, what)
    if n != int(n):
        raise ValueError(f"{what} must be a whole number, not {n}")
    return int(n)


def as_bool(v: Any, what: str = "the argument") -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    if v is None:
        raise ValueError(f"{what} is null; a bool is required")
    raise ValueError(f"{what} must be a bool (true or false), not "
                     f"{a_string(v) if isinstance(v, str) else 'a ' + ev.type_name(v)}")


def as_list(v: Any, what: str = "the argument") -> list[Any]:
    if isinstance(v, list):
        return v
    if v is None:
        raise ValueError(f"{what} is null; a list is required")
    raise ValueError(f"{what} must be a list, not a {ev.type_name(v)}")


def as_map(v: Any, what: str = "the argument") -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    if v is None:
        raise ValueError(f"{what} is null; a map is required")
    raise ValueError(f"{what} must be a map or object, not a {ev.type_name(v)}")


def a_string(v: Any) -> str:
    """A string argument named without its content: it may be a secret's value."""
    return f"a string of {len(v)} character(s)" if isinstance(v, str) else "a value"


def short(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def num_text(n: int | float) -> str:
    """A number as Terraform prints it: 2 (not 2.0), 1.5."""
    if isinstance(n, float) and n.is_integer() and abs(n) < 1e21:
        return str(int(n))
    return str(n)


def identity_key(v: Any) -> str:
    """An identity for equality that keeps 1, 1.0, true and "1" apart as Terraform does
    (Python's 1 == True would make distinct([1, true]) drop one)."""
    return json.dumps(plain(v), sort_keys=True) + ev.type_name(v)


def plain(v: Any) -> Any:
    """Whole floats as ints, so 2.0 and 2 encode alike (Terraform numbers have one type)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def unify(items: list[Any], what: str) -> list[Any]:
    """Elements of one list/map share a type: mixed primitives become strings (as
    Terraform's tolist(["a", 1]) gives ["a", "1"]); mixed collections are an error."""
    kinds = {ev.type_name(x) for x in items if x is not None}
    if len(kinds) <= 1:
        return items
    if kinds <= {"string", "number", "bool"}:
        return [None if x is None else as_str(x) for x in items]
    raise ValueError(f"all {what} elements must have the same type; found "
                     f"{', '.join(sorted(kinds))}")


def distinct(items: list[Any]) -> list[Any]:
    """The items without repeats, first occurrence kept (1, 1.0, true and "1" differ)."""
    seen: set[str] = set()
    out = []
    for x in items:
        k = identity_key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


def as_set(v: Any, what: str = "the argument") -> list[Any]:
    """A set: no duplicates, in Terraform's order (numbers by value, strings lexically)."""
    items = unify(distinct(as_list(v, what)), "set")
    if any(x is None for x in items):
        raise ValueError("a set cannot hold null")
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        return ev.SetValue(sorted(items))
    if all(isinstance(x, str) for x in items):
        return ev.SetValue(sorted(items))
    return ev.SetValue(sorted(items, key=identity_key))
