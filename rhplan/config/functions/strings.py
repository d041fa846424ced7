"""String functions: format, join/split, trims, regex and the rest of Terraform's list."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from rhplan.config import values as ev
from rhplan.config.functions.args import (
    MAX_PAD,
    as_bool,
    as_int,
    as_list,
    as_num,
    as_str,
    num_text,
    plain,
    short,
)


def _fn_format(scope: Any, spec: Any, *args: Any) -> str:
    return _format(as_str(spec, "the format"), list(args))


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
            text = json.dumps(plain(v), separators=(",", ":"), ensure_ascii=False)
        else:
            text = v if isinstance(v, str) else _go_g(v)
        return f"{text:{'<' if '-' in flags else '>'}{w}}" if w else text
    if verb == "s":
        if isinstance(v, (list, dict)):
            raise ValueError(f"a {ev.type_name(v)} is not a string {where}")
        text = as_str(v, f"the value {where}")
        if prec and int(prec) > 0:  # cty truncates only for a precision above zero
            text = text[:int(prec)]
        return f"{text:{'<' if '-' in flags else '>'}{w}}" if w else text
    if verb == "q":
        return json.dumps(as_str(v, f"the value {where}"), ensure_ascii=False)
    if verb == "t":
        return "true" if as_bool(v, f"the value {where}") else "false"
    if verb in "dbox":
        n = as_num(v, f"the value {where}")
        if n != int(n):
            raise ValueError(f"{num_text(n)} has a fractional part {where}")
        return f"{int(n):{pyflags}{w}{'x' if verb == 'x' else verb}}"
    if verb == "X":
        return f"{as_int(as_num(v), f'the value {where}'):{pyflags}{w}X}"
    if verb in "eEfFgG":
        n = as_num(v, f"the value {where}")
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
    spec = as_str(spec, "the format")
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
        for x in as_list(lst, "the second argument"):
            if x is None:
                raise ValueError("a list element is null; join needs strings")
            items.append(as_str(x, "a list element"))
    return as_str(sep, "the separator").join(items)


def _fn_split(scope: Any, sep: Any, text: Any) -> list[str]:
    sep, text = as_str(sep, "the separator"), as_str(text, "the string")
    if sep == "":
        return list(text)
    return text.split(sep)


def _fn_replace(scope: Any, text: Any, old: Any, new: Any) -> str:
    """A substring wrapped in slashes is a regular expression, as in Terraform."""
    text, old, new = as_str(text, "the string"), as_str(old, "the substring"), as_str(new, "the "
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
    s = as_str(text, "the string")
    off, n = as_int(offset, "the offset"), as_int(length, "the length")
    if off < 0:
        off = max(len(s) + off, 0)
    return s[off:] if n < 0 else s[off:off + n]


def _fn_trim(scope: Any, text: Any, chars: Any) -> str:
    return as_str(text, "the string").strip(as_str(chars, "the characters"))


def _fn_trimprefix(scope: Any, text: Any, prefix: Any) -> str:
    return as_str(text, "the string").removeprefix(as_str(prefix, "the prefix"))


def _fn_trimsuffix(scope: Any, text: Any, suffix: Any) -> str:
    return as_str(text, "the string").removesuffix(as_str(suffix, "the suffix"))


def _fn_indent(scope: Any, spaces: Any, text: Any) -> str:
    n = as_int(spaces, "the number of spaces")
    if n > MAX_PAD:
        raise ValueError(f"the number of spaces must be at most {MAX_PAD}")
    pad = " " * n
    return ("\n" + pad).join(as_str(text, "the string").split("\n"))


def _fn_title(scope: Any, text: Any) -> str:
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(),
                  as_str(text, "the string"))


def _regex(pattern: str) -> re.Pattern[str]:
    # RE2 spells named groups (?P<n>...) like Python; Terraform's docs also accept (?<n>...)
    try:
        return re.compile(re.sub(r"\(\?<(\w+)>", r"(?P<\1>", pattern))
    except re.error as exc:
        raise ValueError(f"invalid regular expression {short(pattern)}: {exc}") from None


def _match_value(p: re.Pattern[str], m: re.Match[str]) -> Any:
    if p.groupindex:
        return {name: m.group(name) for name in p.groupindex}
    if p.groups:
        return list(m.groups())
    return m.group(0)


def _fn_regex(scope: Any, pattern: Any, text: Any) -> Any:
    p = _regex(as_str(pattern, "the pattern"))
    m = p.search(as_str(text, "the string"))
    if m is None:
        raise ValueError("pattern did not match any part of the given string")
    return _match_value(p, m)


def _fn_regexall(scope: Any, pattern: Any, text: Any) -> list[Any]:
    p = _regex(as_str(pattern, "the pattern"))
    return [_match_value(p, m) for m in p.finditer(as_str(text, "the string"))]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "format": _fn_format,
    "formatlist": _fn_formatlist,
    "join": _fn_join,
    "split": _fn_split,
    "lower": lambda scope, text: as_str(text).lower(),
    "upper": lambda scope, text: as_str(text).upper(),
    "title": _fn_title,
    "trimspace": lambda scope, text: as_str(text).strip(),
    "trim": _fn_trim,
    "trimprefix": _fn_trimprefix,
    "trimsuffix": _fn_trimsuffix,
    "chomp": lambda scope, text: re.sub(r"[\r\n]+\Z", "", as_str(text)),
    "indent": _fn_indent,
    "replace": _fn_replace,
    "substr": _fn_substr,
    "strrev": lambda scope, text: as_str(text)[::-1],
    "startswith": lambda scope, text, prefix: as_str(text).startswith(as_str(prefix)),
    "endswith": lambda scope, text, suffix: as_str(text).endswith(as_str(suffix)),
    "strcontains": lambda scope, text, sub: as_str(sub) in as_str(text),
    "regex": _fn_regex,
    "regexall": _fn_regexall,
}
