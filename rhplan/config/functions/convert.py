"""Type conversion: tostring/tonumber/tobool and tolist/toset/tomap."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rhplan.config import values as ev
from rhplan.config.functions.args import (
    a_string,
    as_bool,
    as_list,
    as_map,
    as_num,
    as_set,
    as_str,
    unify,
)


def _fn_tostring(scope: Any, v: Any) -> str | None:
    return None if v is None else as_str(v)


def _fn_tonumber(scope: Any, v: Any) -> int | float | None:
    if v is None:
        return None
    if isinstance(v, str) and ev.parse_number(v) is None:
        raise ValueError(f"cannot convert {a_string(v)} to a number")
    return as_num(v)


def _fn_tobool(scope: Any, v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, str) and v not in ("true", "false"):
        raise ValueError(f'cannot convert {a_string(v)} to a bool; only "true" or "false"')
    return as_bool(v)


def _fn_tolist(scope: Any, v: Any) -> list[Any]:
    return unify(list(as_list(v)), "list")


def _fn_toset(scope: Any, v: Any) -> list[Any]:
    return as_set(v)


def _fn_tomap(scope: Any, v: Any) -> dict[str, Any]:
    m = as_map(v)
    return dict(zip(m, unify(list(m.values()), "map"), strict=True))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "tostring": _fn_tostring,
    "tonumber": _fn_tonumber,
    "tobool": _fn_tobool,
    "tolist": _fn_tolist,
    "toset": _fn_toset,
    "tomap": _fn_tomap,
}
