"""Terraform's built-in functions, as rhplan's expressions call them.

Each function takes the evaluation Scope first, then its arguments as plain Python values
(str, int, float, bool, None, list, dict; a Terraform set is a sorted list without
duplicates). Arguments are known (an unknown argument makes the call unknown before it
gets here). A function signals bad input by raising ValueError with a message for a
person; the evaluator adds `NAME():` and the file:line of the call.

One module per family (strings, collections, convert, numbers, encoding, files,
networks), each with its own FUNCTIONS table; `args` holds the argument checks they share.
`try` and `can` are different: they catch evaluation errors of their arguments, so they
get the argument expressions unevaluated (LAZY, in `lazy`) and an `attempt` that
evaluates one.

Only light standard modules are imported at the top: yaml, ipaddress, uuid and the
template parser are imported by the functions that need them (start-up time matters for
every command).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rhplan.config.functions import (
    collections,
    convert,
    encoding,
    files,
    lazy,
    networks,
    numbers,
    strings,
)

FUNCTIONS: dict[str, Callable[..., Any]] = {
    **strings.FUNCTIONS, **collections.FUNCTIONS, **convert.FUNCTIONS, **numbers.FUNCTIONS,
    **encoding.FUNCTIONS, **networks.FUNCTIONS, **files.FUNCTIONS,
}
LAZY = lazy.LAZY


def names() -> list[str]:
    return sorted([*FUNCTIONS, *LAZY])
