"""The options several commands share: -lock-timeout=DURATION (Terraform's) of every
command that locks the state (the waiting itself is rhplan/state/lockwait.py),
-var / -var-file and the order they were given in, and plan's options, which plan,
apply and destroy receive as one PlanArgs."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rhplan.plan.planner import PlanOptions

# the command line being run (normalized by rhplan.cli): -var and -var-file apply in the
# order given
ARGS: list[str] = []


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


def var_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--var", "var", multiple=True, metavar="NAME=VALUE",
                     help="Set a variable.")(f)
    f = click.option("--var-file", "var_file", multiple=True, metavar="FILE",
                     help="Read variables from a file.")(f)
    return f


def var_order(args: list[str] | None = None) -> list[str]:
    """"var" / "var-file" for each -var / -var-file option in args (default: the command
    line being run), in order."""
    args = ARGS if args is None else args
    kinds: list[str] = []
    i = 0
    while i < len(args) and args[i] != "--":
        a = args[i]
        if a in ("--var", "--var-file"):
            kinds.append(a[2:])
            i += 2
            continue
        if a.startswith(("--var=", "--var-file=")):
            kinds.append(a[2:].partition("=")[0])
        i += 1
    return kinds


@dataclass(frozen=True)
class PlanArgs:
    """What plan, apply and destroy were given of plan's options."""

    var: tuple[str, ...]
    var_file: tuple[str, ...]
    refresh: bool
    target: tuple[str, ...]
    replace: tuple[str, ...]
    parallelism: int
    no_color: bool  # -no-color after the command's name
    refresh_only: bool

    def options(self, destroy: bool) -> PlanOptions:
        from rhplan.workspace import plan_options
        return plan_options(destroy, self.target, self.replace, self.refresh_only,
                            self.refresh)


def plan_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """plan's options, handed to the command as args=PlanArgs(...)."""

    @functools.wraps(f)
    def command(*, var: tuple[str, ...], var_file: tuple[str, ...], refresh: str,
                target: tuple[str, ...], replace: tuple[str, ...], parallelism: int,
                no_color_local: bool, refresh_only: bool, **rest: Any) -> Any:
        return f(args=PlanArgs(var, var_file, refresh == "true", target, replace, parallelism,
                               no_color_local, refresh_only), **rest)

    g: Callable[..., Any] = command
    g = click.option("--refresh", default="true", type=click.Choice(["true", "false"]),
                     help="Read real resources before planning (default true).")(g)
    g = click.option("--target", multiple=True, metavar="ADDR",
                     help="Only this resource (and what it needs).")(g)
    g = click.option("--replace", multiple=True, metavar="ADDR",
                     help="Plan to replace this resource.")(g)
    g = click.option("--parallelism", default=10, type=click.IntRange(1, 256),
                     help="How many operations run at once.")(g)
    g = click.option("--no-color", "no_color_local", is_flag=True, hidden=True)(g)
    g = click.option("--refresh-only", is_flag=True,
                     help="Only record what changed outside rhplan; change nothing.")(g)
    return lock_option(var_options(g))
