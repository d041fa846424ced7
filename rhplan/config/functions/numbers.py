"""Number functions."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rhplan.config.functions.args import (
    a_string,
    as_int,
    as_num,
    as_str,
)


def _fn_min(scope: Any, *xs: Any) -> int | float:
    if not xs:
        raise ValueError("must pass at least one number")
    return min(as_num(x, f"argument {i + 1}") for i, x in enumerate(xs))


def _fn_max(scope: Any, *xs: Any) -> int | float:
    if not xs:
        raise ValueError("must pass at least one number")
    return max(as_num(x, f"argument {i + 1}") for i, x in enumerate(xs))


def _fn_abs(scope: Any, x: Any) -> int | float:
    return abs(as_num(x))


def _fn_ceil(scope: Any, x: Any) -> int:
    return math.ceil(as_num(x))


def _fn_floor(scope: Any, x: Any) -> int:
    return math.floor(as_num(x))


def _fn_signum(scope: Any, x: Any) -> int:
    n = as_num(x)
    return (n > 0) - (n < 0)


def _fn_pow(scope: Any, x: Any, y: Any) -> int | float:
    a, b = as_num(x, "the base"), as_num(y, "the exponent")
    if isinstance(a, int) and isinstance(b, int) and 0 <= b <= 1100:
        return a ** b
    return math.pow(a, b)


def _fn_parseint(scope: Any, text: Any, base: Any) -> int:
    b = as_int(base, "the base")
    if not 2 <= b <= 62:
        raise ValueError("the base must be between 2 and 62")
    try:
        return int(as_str(text, "the number"), b)
    except ValueError:
        raise ValueError(f"cannot parse {a_string(text)} as a base {b} integer") from None



def _fn_log(scope: Any, x: Any, base: Any) -> float:
    try:
        return math.log(as_num(x, "the number"), as_num(base, "the base"))
    except (ValueError, ZeroDivisionError):
        raise ValueError("log needs a positive number and a positive base other than 1"
                         ) from None


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": _fn_min,
    "max": _fn_max,
    "abs": _fn_abs,
    "ceil": _fn_ceil,
    "floor": _fn_floor,
    "signum": _fn_signum,
    "pow": _fn_pow,
    "parseint": _fn_parseint,
    "log": _fn_log,
}
