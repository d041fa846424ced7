"""`rhplan providers`' report, laid out as Terraform's command prints it: a tree of the
root module and each module call, the providers the state records, then where each
comes from."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rhplan.workspace.providers import Providers


def providers(report: Providers) -> None:
    click.echo(text(report), nl=False)


def text(report: Providers) -> str:
    out = ["Providers required by configuration:", *tree(report.modules), ""]
    out.append("Providers required by state:")
    out.append("")
    if report.in_state is None:
        out.append(f"    (the state could not be read: {report.state_error})")
    else:
        out += ([f"    provider[{p}]" for p in sorted(report.in_state)]
                or ["    (none: nothing applied)"])
    out += ["", "Where they come from:", ""]
    width = max((len(n) for n, _ in report.origins), default=0)
    out += [f"    {n.ljust(width)}  {w}" for n, w in report.origins]
    return "\n".join(out) + "\n"


def tree(modules: dict[str, set[str]]) -> list[str]:
    """Terraform's layout: `.` for the root, providers first, then module calls."""
    lines = ["."]

    def walk(prefix: str, pad: str) -> None:
        children = sorted(m for m in modules if m != prefix and m.startswith(prefix)
                          and m[len(prefix):].count(".") == 2)
        entries = [f"provider[{p}]" for p in sorted(modules.get(prefix, ()))] + children
        for i, entry in enumerate(entries):
            last = i == len(entries) - 1
            if entry in children:
                lines.append(f"{pad}{'└── ' if last else '├── '}{entry[len(prefix):-1]}")
                walk(entry, pad + ("    " if last else "│   "))
            else:
                lines.append(f"{pad}{'└── ' if last else '├── '}{entry}")

    walk("", "")
    return lines
