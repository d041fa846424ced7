"""Terraform's built-in functions, as rhplan's expressions call them.

Each function takes the evaluation Scope first, then its arguments as plain Python values
(str, int, float, bool, None, list, dict; a Terraform set is a sorted list without
duplicates). Arguments are known (an unknown argument makes the call unknown before it
gets here). A function signals bad input by raising ValueError with a message for a
person; the evaluator adds `NAME():` and the file:line of the call.

`try` and `can` are different: they catch evaluation errors of their arguments, so they
get the argument expressions unevaluated (LAZY) and an `attempt` that evaluates one.

Only light standard modules are imported at the top: yaml is imported inside
yamlencode/yamldecode (start-up time matters for every command).
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rhplan.config import evaluate as ev

# Bounds on what one call may build: a few characters of configuration must not be
# able to ask for gigabytes (format("%999999999d", 1), a YAML billion laughs).
MAX_PAD = 10_000
MAX_VALUE_NODES = 1_000_000

# ---- argument checks: Terraform converts primitives freely, never collections ----------


def _str(v: Any, what: str = "the argument") -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return _num_text(v)
    if v is None:
        raise ValueError(f"{what} is null; a string is required")
    raise ValueError(f"{what} must be a string, not a {ev.type_name(v)}")


def _num(v: Any, what: str = "the argument") -> int | float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        n = ev.parse_number(v)
        if n is not None:
            return n
        raise ValueError(f"{what} must be a number, not {_a_string(v)}")
    if v is None:
        raise ValueError(f"{what} is null; a number is required")
    raise ValueError(f"{what} must be a number, not a {ev.type_name(v)}")


def _int(v: Any, what: str = "the argument") -> int:
    n = _num(v, what)
    if n != int(n):
        raise ValueError(f"{what} must be a whole number, not {n}")
    return int(n)


def _bool(v: Any, what: str = "the argument") -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    if v is None:
        raise ValueError(f"{what} is null; a bool is required")
    raise ValueError(f"{what} must be a bool (true or false), not "
                     f"{_a_string(v) if isinstance(v, str) else 'a ' + ev.type_name(v)}")


def _list(v: Any, what: str = "the argument") -> list[Any]:
    if isinstance(v, list):
        return v
    if v is None:
        raise ValueError(f"{what} is null; a list is required")
    raise ValueError(f"{what} must be a list, not a {ev.type_name(v)}")


def _map(v: Any, what: str = "the argument") -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    if v is None:
        raise ValueError(f"{what} is null; a map is required")
    raise ValueError(f"{what} must be a map or object, not a {ev.type_name(v)}")


def _a_string(v: Any) -> str:
    """A string argument named without its content: it may be a secret's value."""
    return f"a string of {len(v)} character(s)" if isinstance(v, str) else "a value"


def _short(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _num_text(n: int | float) -> str:
    """A number as Terraform prints it: 2 (not 2.0), 1.5."""
    if isinstance(n, float) and n.is_integer() and abs(n) < 1e21:
        return str(int(n))
    return str(n)


def _key(v: Any) -> str:
    """An identity for equality that keeps 1, 1.0, true and "1" apart as Terraform does
    (Python's 1 == True would make distinct([1, true]) drop one)."""
    return json.dumps(_plain(v), sort_keys=True) + ev.type_name(v)


def _plain(v: Any) -> Any:
    """Whole floats as ints, so 2.0 and 2 encode alike (Terraform numbers have one type)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _unify(items: list[Any], what: str) -> list[Any]:
    """Elements of one list/map share a type: mixed primitives become strings (as
    Terraform's tolist(["a", 1]) gives ["a", "1"]); mixed collections are an error."""
    kinds = {ev.type_name(x) for x in items if x is not None}
    if len(kinds) <= 1:
        return items
    if kinds <= {"string", "number", "bool"}:
        return [None if x is None else _str(x) for x in items]
    raise ValueError(f"all {what} elements must have the same type; found "
                     f"{', '.join(sorted(kinds))}")


# ---- strings -------------------------------------------------------------------------


def _fn_format(scope: Any, spec: Any, *args: Any) -> str:
    return _format(_str(spec, "the format"), list(args))


_VERB = re.compile(r"%(?:\[(\d+)\])?([-+# 0]*)(\d+)?(?:\.(\d*))?(.|$)", re.S)


def _format(spec: str, args: list[Any]) -> str:
    """Terraform's format(): Go's verbs (%s %d %f %v %#v %q %t %x %e %g, width,
    precision, %[n] argument indexes), with its errors for missing or extra arguments."""
    out: list[str] = []
    pos = 0
    next_arg = 0
    used = 0
    for m in _VERB.finditer(spec):
        out.append(spec[pos:m.start()])
        pos = m.end()
        index, flags, width, prec, verb = m.groups()
        if max(int(width or 0), int(prec or 0)) > MAX_PAD:
            raise ValueError(f"width and precision in {m.group()!r} must be at most {MAX_PAD}")
        if verb == "%" and index is None:
            out.append("%")
            continue
        if verb == "":
            raise ValueError(f"the format ends with an unfinished verb at offset {m.start()}")
        i = int(index) - 1 if index is not None else next_arg
        if i >= len(args) or i < 0:
            raise ValueError(f"not enough arguments for {m.group()!r} at offset {m.start()}: "
                             f"need argument {i + 1}, have {len(args)}")
        next_arg = i + 1
        used = max(used, next_arg)
        out.append(_format_one(verb, flags, width, prec, args[i], m.start()))
    out.append(spec[pos:])
    if used < len(args):
        raise ValueError(f"too many arguments: the format uses {used}, {len(args)} given")
    return "".join(out)


def _format_one(verb: str, flags: str, width: str | None, prec: str | None, v: Any,
                at: int) -> str:
    where = f"for %{verb} at offset {at}"
    pyflags = "".join(f for f in flags if f in "-+ 0")
    w = width or ""
    p = f".{prec or 0}" if prec is not None else ""
    if verb == "v":
        if "#" in flags or isinstance(v, (list, dict, bool)) or v is None:
            text = json.dumps(_plain(v), separators=(",", ":"), ensure_ascii=False)
        else:
            text = v if isinstance(v, str) else _go_g(v)
        return f"{text:{'<' if '-' in flags else '>'}{w}}" if w else text
    if verb == "s":
        if isinstance(v, (list, dict)):
            raise ValueError(f"a {ev.type_name(v)} is not a string {where}")
        text = _str(v, f"the value {where}")
        if prec and int(prec) > 0:  # cty truncates only for a precision above zero
            text = text[:int(prec)]
        return f"{text:{'<' if '-' in flags else '>'}{w}}" if w else text
    if verb == "q":
        return json.dumps(_str(v, f"the value {where}"), ensure_ascii=False)
    if verb == "t":
        return "true" if _bool(v, f"the value {where}") else "false"
    if verb in "dbox":
        n = _num(v, f"the value {where}")
        if n != int(n):
            raise ValueError(f"{_num_text(n)} has a fractional part {where}")
        return f"{int(n):{pyflags}{w}{'x' if verb == 'x' else verb}}"
    if verb == "X":
        return f"{_int(_num(v), f'the value {where}'):{pyflags}{w}X}"
    if verb in "eEfFgG":
        n = _num(v, f"the value {where}")
        if verb in "gG" and prec is None:
            text = _go_g(n)
            return text.upper() if verb == "G" else text
        return f"{float(n):{pyflags}{w}{p or '.6'}{verb}}"
    raise ValueError(f"unrecognized format verb %{verb} at offset {at}")


def _go_g(n: int | float) -> str:
    """A number as Go's %g with the shortest precision writes it (cty's %v): plain
    digits, or exponent form when the exponent is below -4 or at least 6 (1e+06)."""
    if n == 0:
        return "0"
    sign = "-" if n < 0 else ""
    if isinstance(n, int):
        text = str(abs(n))
        digits, exp = text.rstrip("0"), len(text) - 1
    else:
        short = repr(abs(n))  # the shortest digits that read back as the same float
        mant, _, e = short.partition("e")
        if e:
            digits, exp = mant.replace(".", "").rstrip("0") or "0", int(e)
        else:
            whole, _, frac = short.partition(".")
            frac = frac.rstrip("0")
            raw = (whole + frac).lstrip("0")
            lead = len(whole) if whole != "0" else -(len(frac) - len(frac.lstrip("0")))
            digits, exp = raw.rstrip("0") or "0", lead - 1
    if exp < -4 or exp >= 6:
        body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{body}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    whole = digits[:exp + 1].ljust(exp + 1, "0")
    frac = digits[exp + 1:]
    return f"{sign}{whole}{'.' + frac if frac else ''}"


def _fn_formatlist(scope: Any, spec: Any, *args: Any) -> list[str]:
    spec = _str(spec, "the format")
    n = None
    for i, a in enumerate(args):
        if isinstance(a, list):
            if n is not None and len(a) != n:
                raise ValueError(f"argument {i + 2} has length {len(a)}, which is inconsistent "
                                 f"with previous argument of length {n}")
            n = len(a)
    if n is None:  # no lists: one result
        n = 1
    return [_format(spec, [a[j] if isinstance(a, list) else a for a in args]) for j in range(n)]


def _fn_join(scope: Any, sep: Any, *lists: Any) -> str:
    if not lists:
        raise ValueError("write join(separator, list)")
    items: list[str] = []
    for lst in lists:
        for x in _list(lst, "the second argument"):
            if x is None:
                raise ValueError("a list element is null; join needs strings")
            items.append(_str(x, "a list element"))
    return _str(sep, "the separator").join(items)


def _fn_split(scope: Any, sep: Any, text: Any) -> list[str]:
    sep, text = _str(sep, "the separator"), _str(text, "the string")
    if sep == "":
        return list(text)
    return text.split(sep)


def _fn_replace(scope: Any, text: Any, old: Any, new: Any) -> str:
    """A substring wrapped in slashes is a regular expression, as in Terraform."""
    text, old, new = _str(text, "the string"), _str(old, "the substring"), _str(new, "the "
                                                                               "replacement")
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        pattern = _regex(old[1:-1])
        # Go writes $1 / ${name} in the replacement; Python \g<1>
        py = re.sub(r"\$(\d+|\{(\w+)\})", lambda m: f"\\g<{m.group(2) or m.group(1)}>",
                    new.replace("\\", "\\\\"))
        return pattern.sub(py, text)
    return text.replace(old, new)


def _fn_substr(scope: Any, text: Any, offset: Any, length: Any) -> str:
    """cty's substr: a negative offset counts from the end, a negative length means the
    rest, an offset past the end gives ""."""
    s = _str(text, "the string")
    off, n = _int(offset, "the offset"), _int(length, "the length")
    if off < 0:
        off = max(len(s) + off, 0)
    return s[off:] if n < 0 else s[off:off + n]


def _fn_trim(scope: Any, text: Any, chars: Any) -> str:
    return _str(text, "the string").strip(_str(chars, "the characters"))


def _fn_trimprefix(scope: Any, text: Any, prefix: Any) -> str:
    return _str(text, "the string").removeprefix(_str(prefix, "the prefix"))


def _fn_trimsuffix(scope: Any, text: Any, suffix: Any) -> str:
    return _str(text, "the string").removesuffix(_str(suffix, "the suffix"))


def _fn_indent(scope: Any, spaces: Any, text: Any) -> str:
    n = _int(spaces, "the number of spaces")
    if n > MAX_PAD:
        raise ValueError(f"the number of spaces must be at most {MAX_PAD}")
    pad = " " * n
    return ("\n" + pad).join(_str(text, "the string").split("\n"))


def _fn_title(scope: Any, text: Any) -> str:
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(),
                  _str(text, "the string"))


def _regex(pattern: str) -> re.Pattern[str]:
    # RE2 spells named groups (?P<n>...) like Python; Terraform's docs also accept (?<n>...)
    try:
        return re.compile(re.sub(r"\(\?<(\w+)>", r"(?P<\1>", pattern))
    except re.error as exc:
        raise ValueError(f"invalid regular expression {_short(pattern)}: {exc}") from None


def _match_value(p: re.Pattern[str], m: re.Match[str]) -> Any:
    if p.groupindex:
        return {name: m.group(name) for name in p.groupindex}
    if p.groups:
        return list(m.groups())
    return m.group(0)


def _fn_regex(scope: Any, pattern: Any, text: Any) -> Any:
    p = _regex(_str(pattern, "the pattern"))
    m = p.search(_str(text, "the string"))
    if m is None:
        raise ValueError("pattern did not match any part of the given string")
    return _match_value(p, m)


def _fn_regexall(scope: Any, pattern: Any, text: Any) -> list[Any]:
    p = _regex(_str(pattern, "the pattern"))
    return [_match_value(p, m) for m in p.finditer(_str(text, "the string"))]


# ---- collections ---------------------------------------------------------------------


def _fn_length(scope: Any, v: Any) -> int:
    if isinstance(v, (list, dict, str)):
        return len(v)
    raise ValueError(f"the argument must be a string, list or map, not a {ev.type_name(v)}")


def _fn_concat(scope: Any, *lists: Any) -> list[Any]:
    return [x for i, lst in enumerate(lists) for x in _list(lst, f"argument {i + 1}")]


def _fn_merge(scope: Any, *maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, m in enumerate(maps):
        if m is not None:  # Terraform skips null arguments
            out.update(_map(m, f"argument {i + 1}"))
    return out


def _fn_lookup(scope: Any, m: Any, key: Any, *default: Any) -> Any:
    m, k = _map(m, "the first argument"), _str(key, "the key")
    if k in m:
        return m[k]
    if default:
        if len(default) > 1:
            raise ValueError("write lookup(map, key, default)")
        return default[0]
    raise ValueError(f"lookup failed to find key {k!r}; give a default: "
                     f'lookup(map, "{k}", "fallback")')


def _fn_contains(scope: Any, lst: Any, value: Any) -> bool:
    k = _key(value)
    return any(_key(x) == k for x in _list(lst, "the first argument"))


def _fn_index(scope: Any, lst: Any, value: Any) -> int:
    k = _key(value)
    for i, x in enumerate(_list(lst, "the first argument")):
        if _key(x) == k:
            return i
    raise ValueError("the item was not found in the list")


def _fn_keys(scope: Any, m: Any) -> list[str]:
    return sorted(_map(m))


def _fn_values(scope: Any, m: Any) -> list[Any]:
    m = _map(m)
    return [m[k] for k in sorted(m)]


def _fn_element(scope: Any, lst: Any, index: Any) -> Any:
    lst, i = _list(lst, "the first argument"), _int(index, "the index")
    if not lst:
        raise ValueError("cannot use element function with an empty list")
    return lst[i % len(lst)]  # wraps around, both ways (-1 is the last), as cty does


def _fn_slice(scope: Any, lst: Any, start: Any, end: Any) -> list[Any]:
    lst, a, b = _list(lst, "the first argument"), _int(start, "start"), _int(end, "end")
    if a < 0 or b > len(lst) or a > b:
        raise ValueError(f"start ({a}) and end ({b}) must satisfy 0 <= start <= end <= "
                         f"length ({len(lst)})")
    return lst[a:b]


def _fn_flatten(scope: Any, lst: Any) -> list[Any]:
    out: list[Any] = []
    stack = [iter(_list(lst))]
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
    nums = [_num(a, f"argument {i + 1}") for i, a in enumerate(args)]
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
    keys, values = _list(keys, "the keys"), _list(values, "the values")
    if len(keys) != len(values):
        raise ValueError(f"number of keys ({len(keys)}) does not match number of values "
                         f"({len(values)})")
    return {_str(k, "a key"): v for k, v in zip(keys, values, strict=True)}


def _fn_distinct(scope: Any, lst: Any) -> list[Any]:
    seen: set[str] = set()
    out = []
    for x in _list(lst):
        k = _key(x)
        if k not in seen:
            seen.add(k)
            out.append(x)
    return out


def _fn_sort(scope: Any, lst: Any) -> list[str]:
    items = _list(lst)
    for i, x in enumerate(items):
        if x is None:
            raise ValueError(f"given list element {i} is null; a null string cannot be sorted")
    return sorted(_str(x, f"list element {i}") for i, x in enumerate(items))


def _fn_reverse(scope: Any, lst: Any) -> list[Any]:
    return list(reversed(_list(lst)))


def _fn_compact(scope: Any, lst: Any) -> list[str]:
    return [_str(x) for x in _list(lst) if x is not None and x != ""]


def _fn_chunklist(scope: Any, lst: Any, size: Any) -> list[list[Any]]:
    lst, n = _list(lst, "the first argument"), _int(size, "the chunk size")
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
        if lst is not None and _list(lst, f"argument {i + 1}"):
            return lst
    raise ValueError("no non-null, non-empty list arguments")


def _fn_one(scope: Any, lst: Any) -> Any:
    lst = _list(lst)
    if len(lst) > 1:
        raise ValueError(f"must be a list, set, or tuple value with either zero or one "
                         f"elements; it has {len(lst)}")
    return lst[0] if lst else None


def _fn_sum(scope: Any, lst: Any) -> int | float:
    lst = _list(lst)
    if not lst:
        raise ValueError("cannot sum an empty list")
    total: int | float = 0
    for i, x in enumerate(lst):
        if x is None:
            raise ValueError(f"element {i} is null; sum needs numbers")
        total += _num(x, f"element {i}")
    return total


def _fn_alltrue(scope: Any, lst: Any) -> bool:
    return all([_bool(x, f"element {i}") for i, x in enumerate(_list(lst))])


def _fn_anytrue(scope: Any, lst: Any) -> bool:
    return any([_bool(x, f"element {i}") for i, x in enumerate(_list(lst))])


def _fn_setunion(scope: Any, *lists: Any) -> list[Any]:
    return _fn_toset(scope, [x for i, lst in enumerate(lists)
                             for x in _list(lst, f"argument {i + 1}")])


def _fn_setintersection(scope: Any, first: Any, *rest: Any) -> list[Any]:
    keys = [{_key(x) for x in _list(r, f"argument {i + 2}")} for i, r in enumerate(rest)]
    return _fn_toset(scope, [x for x in _list(first, "argument 1")
                             if all(_key(x) in k for k in keys)])


def _fn_setsubtract(scope: Any, a: Any, b: Any) -> list[Any]:
    drop = {_key(x) for x in _list(b, "argument 2")}
    return _fn_toset(scope, [x for x in _list(a, "argument 1") if _key(x) not in drop])


# ---- type conversion -----------------------------------------------------------------


def _fn_tostring(scope: Any, v: Any) -> str | None:
    return None if v is None else _str(v)


def _fn_tonumber(scope: Any, v: Any) -> int | float | None:
    if v is None:
        return None
    if isinstance(v, str) and ev.parse_number(v) is None:
        raise ValueError(f"cannot convert {_a_string(v)} to a number")
    return _num(v)


def _fn_tobool(scope: Any, v: Any) -> bool | None:
    if v is None:
        return None
    if isinstance(v, str) and v not in ("true", "false"):
        raise ValueError(f'cannot convert {_a_string(v)} to a bool; only "true" or "false"')
    return _bool(v)


def _fn_tolist(scope: Any, v: Any) -> list[Any]:
    return _unify(list(_list(v)), "list")


def _fn_toset(scope: Any, v: Any) -> list[Any]:
    """A set: no duplicates, in Terraform's order (numbers by value, strings lexically)."""
    items = _unify(_fn_distinct(scope, _list(v)), "set")
    if any(x is None for x in items):
        raise ValueError("a set cannot hold null")
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        return ev.SetValue(sorted(items))
    if all(isinstance(x, str) for x in items):
        return ev.SetValue(sorted(items))
    return ev.SetValue(sorted(items, key=_key))


def _fn_tomap(scope: Any, v: Any) -> dict[str, Any]:
    m = _map(v)
    return dict(zip(m, _unify(list(m.values()), "map"), strict=True))


# ---- numbers -------------------------------------------------------------------------


def _fn_min(scope: Any, *xs: Any) -> int | float:
    if not xs:
        raise ValueError("must pass at least one number")
    return min(_num(x, f"argument {i + 1}") for i, x in enumerate(xs))


def _fn_max(scope: Any, *xs: Any) -> int | float:
    if not xs:
        raise ValueError("must pass at least one number")
    return max(_num(x, f"argument {i + 1}") for i, x in enumerate(xs))


def _fn_abs(scope: Any, x: Any) -> int | float:
    return abs(_num(x))


def _fn_ceil(scope: Any, x: Any) -> int:
    return math.ceil(_num(x))


def _fn_floor(scope: Any, x: Any) -> int:
    return math.floor(_num(x))


def _fn_signum(scope: Any, x: Any) -> int:
    n = _num(x)
    return (n > 0) - (n < 0)


def _fn_pow(scope: Any, x: Any, y: Any) -> int | float:
    a, b = _num(x, "the base"), _num(y, "the exponent")
    if isinstance(a, int) and isinstance(b, int) and 0 <= b <= 1100:
        return a ** b
    return math.pow(a, b)


def _fn_parseint(scope: Any, text: Any, base: Any) -> int:
    b = _int(base, "the base")
    if not 2 <= b <= 62:
        raise ValueError("the base must be between 2 and 62")
    try:
        return int(_str(text, "the number"), b)
    except ValueError:
        raise ValueError(f"cannot parse {_a_string(text)} as a base {b} integer") from None


# ---- encoding and hashing ------------------------------------------------------------

# Terraform escapes these for compatibility with 0.11 (and Go's json does by default)
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                 "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _fn_jsonencode(scope: Any, v: Any) -> str:
    text = json.dumps(_plain(v), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)


def _fn_jsondecode(scope: Any, text: Any) -> Any:
    s = _str(text, "the argument")
    try:
        return json.loads(s, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the string is not valid JSON: {exc.msg} (line {exc.lineno}, "
                         f"column {exc.colno})") from None
    except RecursionError:
        raise ValueError("the JSON nests too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number Terraform or rhplan can use")


def _fn_yamlencode(scope: Any, v: Any) -> str:
    import yaml  # imported here: loading PyYAML costs start-up time every command pays

    return yaml.dump(_plain(v), Dumper=_yaml_dumper(yaml), sort_keys=True,
                     default_flow_style=False, allow_unicode=True, width=2 ** 31)


def _yaml_dumper(yaml: Any) -> Any:
    class Dumper(yaml.SafeDumper):
        """Strings as go-cty-yaml writes them: double-quoted, or a literal block when
        they span lines."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    Dumper.add_representer(str, lambda d, s: d.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|" if "\n" in s else '"'))
    return Dumper


def _fn_yamldecode(scope: Any, text: Any) -> Any:
    import yaml  # imported here: see yamlencode

    s = _str(text, "the argument")
    try:
        value = yaml.load(s, Loader=_yaml_loader(yaml))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"the string is not valid YAML: {problem}{where}") from None
    except RecursionError:
        raise ValueError("the YAML nests too deeply") from None
    return _yaml_value(value, 0)


_YAML_LOADER: list[Any] = []  # built on first use


def _yaml_loader(yaml: Any) -> Any:
    if _YAML_LOADER:
        return _YAML_LOADER[0]

    class Loader(yaml.SafeLoader):
        """go-cty-yaml's reading: y/n are bools too; timestamps stay strings (Terraform
        has no time type); nothing but plain data is built."""

        bool_values = {**yaml.SafeLoader.bool_values, "y": True, "n": False}

    Loader.add_constructor("tag:yaml.org,2002:timestamp",
                           lambda loader, node: loader.construct_scalar(node))
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"),
                                 list("yYnN"))
    _YAML_LOADER.append(Loader)
    return Loader


def _yaml_value(v: Any, depth: int, budget: list[int] | None = None) -> Any:
    """PyYAML's result as plain values, within a node budget: aliases let a few lines
    name billions of nodes (the "billion laughs"), which copying would build."""
    if budget is None:
        budget = [MAX_VALUE_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"the YAML expands to more than {MAX_VALUE_NODES} values (through "
                         "aliases?); simplify it")
    if depth > 200:  # aliases may build deep or cyclic values
        raise ValueError("the YAML nests too deeply (or refers to itself through an alias)")
    if isinstance(v, dict):
        return {_str(k, "a key") if k is not None else "null": _yaml_value(x, depth + 1, budget)
                for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_yaml_value(x, depth + 1, budget) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{v} is not a number Terraform or rhplan can use")
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def _fn_base64encode(scope: Any, text: Any) -> str:
    return base64.b64encode(_str(text).encode()).decode()


def _fn_base64decode(scope: Any, text: Any) -> str:
    s = _str(text)
    try:
        data = base64.b64decode(s, validate=True)
    except ValueError:
        raise ValueError(f"failed to decode base64 data ({_a_string(s)})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the result of decoding the provided string is not valid UTF-8"
                         ) from None


def _hasher(name: str) -> Callable[..., str]:
    def fn(scope: Any, text: Any) -> str:
        return hashlib.new(name, _str(text).encode()).hexdigest()
    return fn


def _fn_base64sha256(scope: Any, text: Any) -> str:
    return base64.b64encode(hashlib.sha256(_str(text).encode()).digest()).decode()


def _fn_urlencode(scope: Any, text: Any) -> str:
    return quote(_str(text), safe="-._~")


# ---- files ---------------------------------------------------------------------------


def _path(scope: Any, path: Any) -> Path:
    p = Path(os.path.expanduser(_str(path, "the path")))
    return p if p.is_absolute() else scope.base_dir / p


def _fn_file(scope: Any, path: Any) -> str:
    p = _path(scope, path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no such file {str(p)!r}") from None
    except IsADirectoryError:
        raise ValueError(f"{str(p)!r} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{str(p)!r} is not UTF-8 text") from None


def _fn_fileexists(scope: Any, path: Any) -> bool:
    return _path(scope, path).is_file()


def _fn_templatefile(scope: Any, path: Any, variables: Any) -> str:
    """Render a template file with only the given variables in scope (as Terraform)."""
    from rhplan.config import template  # the template parser is needed only here

    variables = _template_vars(variables)
    if getattr(scope, "in_template", False):
        raise ValueError("cannot call templatefile from inside a template")
    p = _path(scope, path)
    text = _fn_file(scope, str(p))
    return template.render_file(text, p.name, variables, scope)


def _fn_templatestring(scope: Any, text: Any, variables: Any) -> str:
    """Render a string (usually read with file() or from a variable) as a template."""
    from rhplan.config import template

    variables = _template_vars(variables)
    if getattr(scope, "in_template", False):
        raise ValueError("cannot call templatestring from inside a template")
    return template.render_file(_str(text, "the template"), "template string", variables,
                                scope)


def _template_vars(variables: Any) -> dict[str, Any]:
    variables = _map(variables, "the variables")
    for name in variables:
        if not re.fullmatch(r"[A-Za-z_][\w-]*", name):
            raise ValueError(f"invalid template variable name {name!r}: it must start with a "
                             "letter or underscore and contain only letters, digits, "
                             "underscores and dashes")
    return variables


def _file_bytes(scope: Any, path: Any) -> bytes:
    p = _path(scope, path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"no such file {str(p)!r}") from None
    except IsADirectoryError:
        raise ValueError(f"{str(p)!r} is a directory, not a file") from None


def _file_hasher(name: str) -> Callable[..., str]:
    def fn(scope: Any, path: Any) -> str:
        return hashlib.new(name, _file_bytes(scope, path)).hexdigest()
    return fn


def _fn_filebase64(scope: Any, path: Any) -> str:
    return base64.b64encode(_file_bytes(scope, path)).decode()


def _fn_fileset(scope: Any, path: Any, pattern: Any) -> list[str]:
    """Files under path matching pattern (`*`, `**`, `?`), relative to path, sorted."""
    root = _path(scope, path)
    pat = _str(pattern, "the pattern")
    if not root.is_dir():
        return []
    found: set[str] = set()
    try:
        for p in root.glob(pat):
            if p.is_file():
                found.add(p.relative_to(root).as_posix())
                if len(found) > MAX_FILESET:  # fileset("/", "**/*") would walk the disk
                    break
    except (ValueError, NotImplementedError) as exc:  # a pattern pathlib refuses
        raise ValueError(f"invalid pattern {_short(pat)}: {exc}") from None
    except OSError as exc:
        raise ValueError(f"cannot list {str(root)!r}: {exc.strerror}") from None
    if len(found) > MAX_FILESET:
        raise ValueError(f"the pattern matches more than {MAX_FILESET} files; narrow the "
                         "path or the pattern")
    return ev.SetValue(sorted(found))


MAX_FILESET = 10_000


# ---- networks: cidrhost/cidrnetmask/cidrsubnet(s), as Terraform computes them ---------


def _network(prefix: Any) -> Any:
    import ipaddress  # only configurations that compute addresses need it

    text = _str(prefix, "the prefix")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"invalid CIDR expression {_short(text)}; write e.g. "
                         "10.0.0.0/16") from None


def _fn_cidrhost(scope: Any, prefix: Any, hostnum: Any) -> str:
    net, n = _network(prefix), _int(hostnum, "the host number")
    size = net.num_addresses
    index = n if n >= 0 else size + n
    if not 0 <= index < size:
        raise ValueError(f"prefix of {net.prefixlen} does not accommodate a host numbered {n}")
    return str(net.network_address + index)


def _fn_cidrnetmask(scope: Any, prefix: Any) -> str:
    net = _network(prefix)
    if net.version != 4:
        raise ValueError("only IPv4 prefixes have a netmask")
    return str(net.netmask)


def _fn_cidrsubnet(scope: Any, prefix: Any, newbits: Any, netnum: Any) -> str:
    net, bits, num = _network(prefix), _int(newbits, "newbits"), _int(netnum, "netnum")
    new_len = net.prefixlen + bits
    if bits < 0 or new_len > net.max_prefixlen:
        raise ValueError(f"insufficient address space to extend prefix of {net.prefixlen} "
                         f"by {bits}")
    if not 0 <= num < 2 ** bits:
        raise ValueError(f"prefix extension of {bits} does not accommodate a subnet "
                         f"numbered {num}")
    start = int(net.network_address) + (num << (net.max_prefixlen - new_len))
    return f"{type(net.network_address)(start)}/{new_len}"


def _fn_cidrsubnets(scope: Any, prefix: Any, *newbits: Any) -> list[str]:
    """Consecutive subnets, each aligned to its own size (Terraform's allocation)."""
    net = _network(prefix)
    width = net.max_prefixlen
    base = int(net.network_address)
    end = base + net.num_addresses
    out: list[str] = []
    cursor = base  # the first address not yet allocated
    for i, b in enumerate(newbits):
        length = net.prefixlen + _int(b, f"newbits {i + 1}")
        if length > width or length < net.prefixlen:
            raise ValueError(f"would extend prefix to {length} bits, which is too long for "
                             f"an IPv{net.version} address")
        size = 1 << (width - length)
        start = -(-cursor // size) * size  # round up to this subnet's alignment
        if start + size > end:
            after = f" after {out[-1]}" if out else ""
            raise ValueError(f"not enough remaining address space for a subnet with a "
                             f"prefix of {length} bits{after}")
        out.append(f"{type(net.network_address)(start)}/{length}")
        cursor = start + size
    return out


# ---- more collections ----------------------------------------------------------------


def _fn_setproduct(scope: Any, *sets: Any) -> list[list[Any]]:
    if len(sets) < 2:
        raise ValueError("at least two arguments are required")
    lists = [_list(s, f"argument {i + 1}") for i, s in enumerate(sets)]
    if math.prod(len(x) for x in lists) > MAX_VALUE_NODES:
        raise ValueError(f"the product has more than {MAX_VALUE_NODES} elements; use smaller "
                         "sets")
    out: list[list[Any]] = [[]]
    for lst in lists:
        out = [prefix + [x] for prefix in out for x in lst]
    return out


def _fn_transpose(scope: Any, m: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, vs in sorted(_map(m).items()):
        for v in _list(vs, f"the value of {k!r}"):
            out.setdefault(_str(v, "an element"), []).append(k)
    return {k: sorted(v) for k, v in sorted(out.items())}


def _fn_matchkeys(scope: Any, values: Any, keys: Any, searchset: Any) -> list[Any]:
    values, keys = _list(values, "the values"), _list(keys, "the keys")
    if len(values) != len(keys):
        raise ValueError("length of keys and values should be equal")
    def key(x: Any) -> str:  # keys and search set share one type: primitives as strings
        return "s" + _str(x) if isinstance(x, (str, int, float, bool)) else _key(x)

    wanted = {key(x) for x in _list(searchset, "the search set")}
    return [v for v, k in zip(values, keys, strict=True) if key(k) in wanted]


def _fn_log(scope: Any, x: Any, base: Any) -> float:
    try:
        return math.log(_num(x, "the number"), _num(base, "the base"))
    except (ValueError, ZeroDivisionError):
        raise ValueError("log needs a positive number and a positive base other than 1"
                         ) from None


def _fn_uuidv5(scope: Any, namespace: Any, name: Any) -> str:
    import uuid  # only this function needs it

    ns = _str(namespace, "the namespace")
    known = {"dns": uuid.NAMESPACE_DNS, "url": uuid.NAMESPACE_URL, "oid": uuid.NAMESPACE_OID,
             "x500": uuid.NAMESPACE_X500}
    try:
        space = known[ns] if ns in known else uuid.UUID(ns)
    except ValueError:
        raise ValueError(f"uuidv5 namespace must be dns, url, oid, x500 or a UUID, not "
                         f"{_short(ns)}") from None
    return str(uuid.uuid5(space, _str(name, "the name")))


def _fn_env(scope: Any, name: Any, *default: Any) -> Any:
    """rhplan's own: an environment variable of the machine that plans."""
    name = _str(name, "the name")
    value = os.environ.get(name)
    if value is None:
        if not default or default[0] is None:
            raise ValueError(f"environment variable {name} is not set; export it or give a "
                             f'default: env("{name}", "fallback")')
        return default[0]
    return value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # strings
    "format": _fn_format,
    "formatlist": _fn_formatlist,
    "join": _fn_join,
    "split": _fn_split,
    "lower": lambda scope, text: _str(text).lower(),
    "upper": lambda scope, text: _str(text).upper(),
    "title": _fn_title,
    "trimspace": lambda scope, text: _str(text).strip(),
    "trim": _fn_trim,
    "trimprefix": _fn_trimprefix,
    "trimsuffix": _fn_trimsuffix,
    "chomp": lambda scope, text: re.sub(r"[\r\n]+\Z", "", _str(text)),
    "indent": _fn_indent,
    "replace": _fn_replace,
    "substr": _fn_substr,
    "strrev": lambda scope, text: _str(text)[::-1],
    "startswith": lambda scope, text, prefix: _str(text).startswith(_str(prefix)),
    "endswith": lambda scope, text, suffix: _str(text).endswith(_str(suffix)),
    "strcontains": lambda scope, text, sub: _str(sub) in _str(text),
    "regex": _fn_regex,
    "regexall": _fn_regexall,
    # collections
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
    # type conversion
    "tostring": _fn_tostring,
    "tonumber": _fn_tonumber,
    "tobool": _fn_tobool,
    "tolist": _fn_tolist,
    "toset": _fn_toset,
    "tomap": _fn_tomap,
    # numbers
    "min": _fn_min,
    "max": _fn_max,
    "abs": _fn_abs,
    "ceil": _fn_ceil,
    "floor": _fn_floor,
    "signum": _fn_signum,
    "pow": _fn_pow,
    "parseint": _fn_parseint,
    "log": _fn_log,
    # encoding and hashing
    "jsonencode": _fn_jsonencode,
    "jsondecode": _fn_jsondecode,
    "yamlencode": _fn_yamlencode,
    "yamldecode": _fn_yamldecode,
    "base64encode": _fn_base64encode,
    "base64decode": _fn_base64decode,
    "base64sha256": _fn_base64sha256,
    "urlencode": _fn_urlencode,
    "md5": _hasher("md5"),
    "sha1": _hasher("sha1"),
    "sha256": _hasher("sha256"),
    "sha512": _hasher("sha512"),
    "base64sha512": lambda scope, text: base64.b64encode(
        hashlib.sha512(_str(text).encode()).digest()).decode(),
    "uuidv5": _fn_uuidv5,
    "cidrhost": _fn_cidrhost,
    "cidrnetmask": _fn_cidrnetmask,
    "cidrsubnet": _fn_cidrsubnet,
    "cidrsubnets": _fn_cidrsubnets,
    # files and the machine that plans
    "file": _fn_file,
    "fileexists": _fn_fileexists,
    "fileset": _fn_fileset,
    "filebase64": _fn_filebase64,
    "filemd5": _file_hasher("md5"),
    "filesha1": _file_hasher("sha1"),
    "filesha256": _file_hasher("sha256"),
    "filesha512": _file_hasher("sha512"),
    "templatestring": _fn_templatestring,
    "templatefile": _fn_templatefile,
    "abspath": lambda scope, p: str((scope.base_dir / os.path.expanduser(_str(p))).resolve()),
    "basename": lambda scope, p: os.path.basename(_str(p)),
    "dirname": lambda scope, p: os.path.dirname(_str(p)),
    "pathexpand": lambda scope, p: os.path.expanduser(_str(p)),
    "env": _fn_env,
}


# ---- try and can: they see their arguments unevaluated -------------------------------

Attempt = Callable[[Any], Any]  # evaluates one argument expression; raises ev.EvalError


def _lazy_try(attempt: Attempt, exprs: tuple[Any, ...], line: int) -> Any:
    if not exprs:
        raise ev.EvalError("try() needs at least one argument: try(EXPR, FALLBACK)", line)
    last: ev.EvalError | None = None
    for x in exprs:
        try:
            value = attempt(x)
        except ev.EvalError as exc:
            if exc.static:  # a mistake in the configuration itself, not in a value
                raise
            last = exc
            continue
        return value if ev.is_known(value) else ev.UNKNOWN  # undecidable until apply
    assert last is not None
    raise ev.EvalError(f"try(): no argument succeeded; the last one failed with: "
                       f"{last.message}", line)


def _lazy_can(attempt: Attempt, exprs: tuple[Any, ...], line: int) -> Any:
    if len(exprs) != 1:
        raise ev.EvalError("can() takes one argument: can(EXPR)", line)
    try:
        value = attempt(exprs[0])
    except ev.EvalError as exc:
        if exc.static:
            raise
        return False
    return True if ev.is_known(value) else ev.UNKNOWN


LAZY: dict[str, Callable[[Attempt, tuple[Any, ...], int], Any]] = {
    "try": _lazy_try,
    "can": _lazy_can,
}


def names() -> list[str]:
    return sorted([*FUNCTIONS, *LAZY])
