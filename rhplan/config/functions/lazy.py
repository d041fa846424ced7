"""try and can: they see their argument expressions unevaluated and catch evaluation
errors of the values they compute (never mistakes in the configuration itself)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rhplan.config import values as ev

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
