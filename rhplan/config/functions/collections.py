"""Collection functions over lists, maps and sets (a set is a sorted list without
duplicates)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rhplan.config import values as ev
from rhplan.config.functions.args import (
    MAX_VALUE_NODES,
    as_bool,
    as_int,
    as_list,
    as_map,
    as_num,
    as_set,
    as_str,
    distinct,
    identity_key,
)


def _fn_length(scope: Any, v: Any) -> int:
    if isinstance(v, (list, dict, str)):
        return len(v)
    raise ValueError(f"the argument must be a string, list or map, not a {ev.type_name(v)}")


def _fn_concat(scope: Any, *lists: Any) -> list[Any]:
    return [x for i, lst in enumerate(lists) for x in as_list(lst, f"argument {i + 1}")]


def _fn_merge(scope: Any, *maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, m in enumerate(maps):
        if m is not None:  # Terraform skips null arguments
            out.update(as_map(m, f"argument {i + 1}"))
    return out


def _fn_lookup(scope: Any, m: Any, key: Any, *default: Any) -> Any:
    m, k = as_map(m, "the first argument"), as_str(key, "the key")
    if k in m:
        return m[k]
    if default:
        if len(default) > 1:
            raise ValueError("write lookup(map, key, default)")
        return default[0]
    raise ValueError(f"lookup failed to find key {k!r}; give a default: "
                     f'lookup(map, "{k}", "fallback")')


def _fn_contains(scope: Any, lst: Any, value: Any) -> bool:
    k = identity_key(value)
    return any(identity_key(x) == k for x in as_list(lst, "the first argument"))


def _fn_index(scope: Any, lst: Any, value: Any) -> int:
    k = identity_key(value)
    for i, x in enumerate(as_list(lst, "the first argument")):
        if identity_key(x) == k:
            return i
    raise ValueError("the item was not found in the list")


def _fn_keys(scope: Any, m: Any) -> list[str]:
    return sorted(as_map(m))


def _fn_values(scope: Any, m: Any) -> list[Any]:
    m = as_map(m)
    return [m[k] for k in sorted(m)]


def _fn_element(scope: Any, lst: Any, index: Any) -> Any:
    lst, i = as_list(lst, "the first argument"), as_int(index, "the index")
    if not lst:
        raise ValueError("cannot use element function with an empty list")
    return lst[i % len(lst)]  # wraps around, both ways (-1 is the last), as cty does


def _fn_slice(scope: Any, lst: Any, start: Any, end: Any) -> list[Any]:
    lst, a, b = as_list(lst, "the first argument"), as_int(start, "start"), as_int(end, "end")
    if a < 0 or b > len(lst) or a > b:
        raise ValueError(f"start ({a}) and end ({b}) must satisfy 0 <= start <= end <= "
                         f"length ({len(lst)})")
    return lst[a:b]


def _fn_flatten(scope: Any, lst: Any) -> list[Any]:
    out: list[Any] = []
    stack = [iter(as_list(lst))]
    while stack:  # iteratively: nesting may be deep
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


MAX_RANGE = 1024  # Terraform refuses to generate more, to protect itself


def _fn_range(scope: Any, *args: Any) -> list[int | float]:
    nums = [as_num(a, f"argument {i + 1}") for i, a in enumerate(args)]
    start: int | float
    limit: int | float
    step: int | float
    if len(nums) == 1:
        start, limit = 0, nums[0]
        step = 1 if limit >= 0 else -1
    elif len(nums) == 2:
        start, limit = nums
        step = 1 if limit >= start else -1
    elif len(nums) == 3:
        start, limit, step = nums
    else:
        raise ValueError("write range(limit), range(start, limit) or range(start, limit, step)")
    if step == 0:
        raise ValueError("step must not be zero")
    if step < 0 and limit > start:
        raise ValueError("end must be less than start when step is negative")
    if step > 0 and limit < start:
        raise ValueError("end must be greater than start when step is positive")
    out: list[int | float] = []
    v = start
    while (v < limit) if step > 0 else (v > limit):
        if len(out) >= MAX_RANGE:
            raise ValueError(f"more than {MAX_RANGE} values were generated; use a "
                             "smaller range or a larger step")
        out.append(v)
        v = v + step
    return out


def _fn_zipmap(scope: Any, keys: Any, values: Any) -> dict[str, Any]:
    keys, values = as_list(keys, "the keys"), as_list(values, "the values")
    if len(keys) != len(values):
        raise ValueError(f"number of keys ({len(keys)}) does not match number of values "
                         f"({len(values)})")
    return {as_str(k, "a key"): v for k, v in zip(keys, values, strict=True)}


def _fn_distinct(scope: Any, lst: Any) -> list[Any]:
    return distinct(as_list(lst))


def _fn_sort(scope: Any, lst: Any) -> list[str]:
    items = as_list(lst)
    for i, x in enumerate(items):
        if x is None:
            raise ValueError(f"given list element {i} is null; a null string cannot be sorted")
    return sorted(as_str(x, f"list element {i}") for i, x in enumerate(items))


def _fn_reverse(scope: Any, lst: Any) -> list[Any]:
    return list(reversed(as_list(lst)))


def _fn_compact(scope: Any, lst: Any) -> list[str]:
    return [as_str(x) for x in as_list(lst) if x is not None and x != ""]


def _fn_chunklist(scope: Any, lst: Any, size: Any) -> list[list[Any]]:
    lst, n = as_list(lst, "the first argument"), as_int(size, "the chunk size")
    if n < 0:
        raise ValueError("the chunk size must not be negative")
    if n == 0:
        return [lst]
    return [lst[i:i + n] for i in range(0, len(lst), n)]


def _fn_coalesce(scope: Any, *xs: Any) -> Any:
    for x in xs:
        if x is not None and x != "":
            return x
    raise ValueError("no non-null, non-empty-string arguments")


def _fn_coalescelist(scope: Any, *lists: Any) -> list[Any]:
    if not lists:
        raise ValueError("at least one argument is required")
    for i, lst in enumerate(lists):
        if lst is not None and as_list(lst, f"argument {i + 1}"):
            return lst
    raise ValueError("no non-null, non-empty list arguments")


def _fn_one(scope: Any, lst: Any) -> Any:
    lst = as_list(lst)
    if len(lst) > 1:
        raise ValueError(f"must be a list, set, or tuple value with either zero or one "
                         f"elements; it has {len(lst)}")
    return lst[0] if lst else None


def _fn_sum(scope: Any, lst: Any) -> int | float:
    lst = as_list(lst)
    if not lst:
        raise ValueError("cannot sum an empty list")
    total: int | float = 0
    for i, x in enumerate(lst):
        if x is None:
            raise ValueError(f"element {i} is null; sum needs numbers")
        total += as_num(x, f"element {i}")
    return total


def _fn_alltrue(scope: Any, lst: Any) -> bool:
    return all([as_bool(x, f"element {i}") for i, x in enumerate(as_list(lst))])


def _fn_anytrue(scope: Any, lst: Any) -> bool:
    return any([as_bool(x, f"element {i}") for i, x in enumerate(as_list(lst))])


def _fn_setunion(scope: Any, *lists: Any) -> list[Any]:
    return as_set([x for i, lst in enumerate(lists)
                             for x in as_list(lst, f"argument {i + 1}")])


def _fn_setintersection(scope: Any, first: Any, *rest: Any) -> list[Any]:
    keys = [{identity_key(x) for x in as_list(r, f"argument {i + 2}")} for i, r in enumerate(rest)]
    return as_set([x for x in as_list(first, "argument 1")
                             if all(identity_key(x) in k for k in keys)])


def _fn_setsubtract(scope: Any, a: Any, b: Any) -> list[Any]:
    drop = {identity_key(x) for x in as_list(b, "argument 2")}
    return as_set([x for x in as_list(a, "argument 1") if identity_key(x) not in drop])



def _fn_setproduct(scope: Any, *sets: Any) -> list[list[Any]]:
    if len(sets) < 2:
        raise ValueError("at least two arguments are required")
    lists = [as_list(s, f"argument {i + 1}") for i, s in enumerate(sets)]
    if math.prod(len(x) for x in lists) > MAX_VALUE_NODES:
        raise ValueError(f"the product has more than {MAX_VALUE_NODES} elements; use smaller "
                         "sets")
    out: list[list[Any]] = [[]]
    for lst in lists:
        out = [prefix + [x] for prefix in out for x in lst]
    return out


def _fn_transpose(scope: Any, m: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, vs in sorted(as_map(m).items()):
        for v in as_list(vs, f"the value of {k!r}"):
            out.setdefault(as_str(v, "an element"), []).append(k)
    return {k: sorted(v) for k, v in sorted(out.items())}


def _fn_matchkeys(scope: Any, values: Any, keys: Any, searchset: Any) -> list[Any]:
    values, keys = as_list(values, "the values"), as_list(keys, "the keys")
    if len(values) != len(keys):
        raise ValueError("length of keys and values should be equal")
    def key(x: Any) -> str:  # keys and search set share one type: primitives as strings
        return "s" + as_str(x) if isinstance(x, (str, int, float, bool)) else identity_key(x)

    wanted = {key(x) for x in as_list(searchset, "the search set")}
    return [v for v, k in zip(values, keys, strict=True) if key(k) in wanted]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "length": _fn_length,
    "concat": _fn_concat,
    "merge": _fn_merge,
    "lookup": _fn_lookup,
    "contains": _fn_contains,
    "index": _fn_index,
    "keys": _fn_keys,
    "values": _fn_values,
    "element": _fn_element,
    "slice": _fn_slice,
    "flatten": _fn_flatten,
    "range": _fn_range,
    "zipmap": _fn_zipmap,
    "distinct": _fn_distinct,
    "sort": _fn_sort,
    "reverse": _fn_reverse,
    "compact": _fn_compact,
    "chunklist": _fn_chunklist,
    "coalesce": _fn_coalesce,
    "coalescelist": _fn_coalescelist,
    "one": _fn_one,
    "sum": _fn_sum,
    "alltrue": _fn_alltrue,
    "anytrue": _fn_anytrue,
    "setunion": _fn_setunion,
    "setintersection": _fn_setintersection,
    "setsubtract": _fn_setsubtract,
    "setproduct": _fn_setproduct,
    "transpose": _fn_transpose,
    "matchkeys": _fn_matchkeys,
}
