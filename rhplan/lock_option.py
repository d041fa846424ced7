"""The -lock-timeout=DURATION option (Terraform's) of every command that locks the state;
the waiting itself is rhplan/state/lockwait.py."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def _lock_timeout(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from rhplan.state import lockwait
    try:
        lockwait.set_timeout(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


def lock_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--lock-timeout", default="0s", metavar="DURATION", expose_value=False,
                        callback=_lock_timeout,
                        help="Wait this long for a held state lock (e.g. 30s, 5m; default "
                             "0s: fail at once).")(f)
