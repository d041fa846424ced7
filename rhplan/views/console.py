"""What `rhplan console` prints: its prompt, and each value as Terraform's console
prints it."""
from __future__ import annotations

import json
from typing import Any

import click

from rhplan.config.values import UNKNOWN, InstanceMap, Instances, ResourceValue, SetValue


def prompt() -> None:
    click.echo("> ", nl=False)


def value(v: Any, sensitive: bool) -> None:
    click.echo("(sensitive value)" if sensitive else value_text(v))


def ended() -> None:
    """The line a terminal's prompt ends with when input ends (exit, Ctrl-D)."""
    click.echo()


def value_text(value: Any, indent: int = 0) -> str:
    """Terraform's console format: strings quoted, multi-line ones as heredocs, lists
    `[ ... ,]`, sets `toset([...])`, maps and objects `{ "k" = v }`, unknown values
    (known after apply)."""
    if value is UNKNOWN:
        return "(known after apply)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, float):
            from decimal import Decimal  # 1e+20 as Terraform writes it: 100000000000000000000
            return format(Decimal(repr(value)), "f")
        return str(value)
    if isinstance(value, str):
        return _string(value, indent)
    if isinstance(value, ResourceValue):
        return _mapping({k: v for k, v in value.attrs.items() if k in value.valid}, indent)
    if isinstance(value, (dict, InstanceMap)):
        return _mapping(value, indent)
    if isinstance(value, (list, tuple, Instances)):
        seq = _sequence(list(value), indent)
        return f"toset({seq})" if isinstance(value, SetValue) else seq
    return json.dumps(str(value))


def _string(s: str, indent: int) -> str:
    lines = s.split("\n")
    if len(lines) < 2:
        return json.dumps(s, ensure_ascii=False)
    op, marker = ("<<-" if indent else "<<"), "EOT"
    while any(line.strip() == marker for line in lines):
        marker += "_"
    pad = " " * indent
    return op + marker + "".join(f"\n{pad}{line}" for line in lines) + f"\n{pad}{marker}"


def _mapping(m: Any, indent: int) -> str:
    if not m:
        return "{}"
    pad = " " * (indent + 2)
    body = "".join(f"\n{pad}{json.dumps(str(k), ensure_ascii=False)} = "
                   f"{value_text(m[k], indent + 2)}" for k in sorted(m, key=str))
    return "{" + body + "\n" + " " * indent + "}"


def _sequence(items: list[Any], indent: int) -> str:
    if not items:
        return "[]"
    pad = " " * (indent + 2)
    body = "".join(f"\n{pad}{value_text(v, indent + 2)}," for v in items)
    return "[" + body + "\n" + " " * indent + "]"
