"""The values expressions evaluate to: plain Python (str, int, float, bool, None, list,
dict) plus UNKNOWN (Terraform's "known after apply"), ResourceValue (a whole resource),
SetValue and a repeated resource's Instances / InstanceMap; their type names, the
conversions operators and templates make, and EvalError, an evaluation's error."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


class _Unknown:
    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(known after apply)"

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


def is_known(value: Any) -> bool:
    if value is UNKNOWN:
        return False
    if isinstance(value, list):
        return all(is_known(v) for v in value)
    if isinstance(value, dict):
        return all(is_known(v) for v in value.values())
    return True


@dataclass(frozen=True)
class ResourceValue:
    address: str
    attrs: dict[str, Any]
    valid: frozenset[str]


class SetValue(list):  # type: ignore[type-arg]
    """A set (toset(), a set(...) variable): a list in Terraform's order that remembers
    it is a set, because for_each takes a set of strings but refuses a list."""

    __slots__ = ()


class Instances(list):  # type: ignore[type-arg]
    """`env.x` where x has count: its instances' ResourceValues, by index."""

    __slots__ = ("address",)

    def __init__(self, address: str, items: list[Any]):
        super().__init__(items)
        self.address = address


class InstanceMap(dict):  # type: ignore[type-arg]
    """`env.x` where x has for_each: its instances' ResourceValues, by key."""

    __slots__ = ("address",)

    def __init__(self, address: str, items: dict[str, Any]):
        super().__init__(items)
        self.address = address


def instances_message(obj: Instances | InstanceMap) -> str:
    """Terraform's error for an attribute read on a repeated resource as a whole."""
    if isinstance(obj, Instances):
        return (f'because {obj.address} has "count" set, its attributes must be read on one '
                f"instance: write {obj.address}[count.index] or {obj.address}[0] "
                f"(or {obj.address}[*].ATTR for all of them)")
    return (f'because {obj.address} has "for_each" set, its attributes must be read on one '
            f'instance: write {obj.address}[each.key] or {obj.address}["KEY"]')


class EvalError(Exception):
    """Raised inside evaluation; turned into a ConfigError with the file name."""

    def __init__(self, message: str, line: int, static: bool = False):
        super().__init__(message)
        self.message = message
        self.line = line
        # a mistake in the configuration itself (an undeclared variable, an unknown
        # function): try() and can() do not hide it, as in Terraform
        self.static = static


def index_value(obj: Any, key: Any, line: int) -> Any:
    if isinstance(obj, list):
        if not isinstance(key, (int, float)) or isinstance(key, bool):
            raise EvalError(f"a list index must be a number, not {key!r}", line)
        i = int(key)
        if not 0 <= i < len(obj):
            raise EvalError(f"index {i} is out of range for a list of {len(obj)} element(s)", line)
        return obj[i]
    if isinstance(obj, dict):
        k = to_str(key, line)
        if k not in obj:
            keys = ", ".join(sorted(obj)) or "none"
            raise EvalError(f"the map has no key {k!r} (keys: {keys})", line)
        return obj[k]
    if isinstance(obj, ResourceValue):
        return obj.attrs.get(str(key), UNKNOWN)
    raise EvalError(f"cannot index {type_name(obj)} with {key!r}", line)


def type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "list"
    if isinstance(v, dict):
        return "map"
    if v is None:
        return "null"
    if isinstance(v, ResourceValue):
        return f"resource {v.address}"
    return type(v).__name__


# Numbers stay within a double's range: JSON (plans, state), the plan's text and every
# provider read them, and Python cannot print an int of more than 4300 digits.
MAX_NUMBER = 2.0 ** 1023


def finite(v: Any, line: int) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if isinstance(v, float) and not math.isfinite(v) or abs(v) > MAX_NUMBER:
            raise EvalError("the result is too large a number", line)
    return v


def to_str(v: Any, line: int) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))  # Terraform has one number type: 1.5 * 2 prints as 3, not 3.0
    if isinstance(v, (str, int, float)):
        return str(v)
    raise EvalError(f"cannot use a {type_name(v)} as a string", line)


def as_number(v: Any) -> int | float | None:
    """v as a number, as Terraform converts one (a number, or a string that spells one;
    never a bool), or None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    return parse_number(v) if isinstance(v, str) else None


def as_bool(v: Any) -> bool | None:
    """v as a bool, as Terraform converts one (a bool, "true" or "false"), or None."""
    if isinstance(v, bool):
        return v
    return v == "true" if v in ("true", "false") else None


def to_num(v: Any, line: int) -> float | int:
    if isinstance(v, bool):
        raise EvalError("cannot use a bool as a number", line)
    n = as_number(v)
    if n is None:
        raise EvalError(f"cannot use {short(v)} as a number", line)
    return n


def parse_number(text: str) -> int | float | None:
    """A number written as a string ("4", "1.5e3"), or None; never inf, nan or huge."""
    text = text.strip()
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text) or len(text) > 400:
        return None
    try:
        n: int | float = int(text)
    except ValueError:
        n = float(text)
    return n if math.isfinite(n) and abs(n) <= MAX_NUMBER else None


def short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def to_bool(v: Any, line: int) -> bool:
    b = as_bool(v)
    if b is None:
        raise EvalError(f"cannot use {short(v)} as a bool", line)
    return b
