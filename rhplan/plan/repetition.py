"""count and for_each: a repeated block's instances, each with its key and what
count.index / each.key / each.value mean in it, checked as Terraform checks them (errors
name the argument's line)."""
from __future__ import annotations

from typing import Any

from rhplan.config.coerce import coerce
from rhplan.config.decode import Evaluation
from rhplan.config.model import ResourceConfig
from rhplan.config.values import UNKNOWN, SetValue, is_known, type_name
from rhplan.errors import ConfigError

# a count or for_each this large is a mistake (and would take the machine's memory)
MAX_INSTANCES = 100_000


def repetition(rc: ResourceConfig, evaluation: Evaluation, validating: bool
               ) -> list[tuple[Any, dict[str, Any]]] | None:
    """(key, what count / each mean in that instance) for a repeated block, checked
    as Terraform checks count and for_each; errors name the argument's line."""
    meta = rc.count if rc.count is not None else rc.for_each
    assert meta is not None
    value, mark = evaluation.marked_evaluate(meta.expr, rc.file)
    where = f"{rc.type} {rc.name!r}"
    if mark and rc.for_each is not None:
        raise ConfigError(f"{where}: for_each is derived from a sensitive value ({mark}); "
                          "its keys would show in every address, so Terraform's rule "
                          "applies: build the keys from values that are not sensitive "
                          "(nonsensitive(...) if they are safe to show)", rc.file, meta.line)
    if rc.count is not None:
        if value is UNKNOWN:
            if validating:
                return None
            raise ConfigError(_unknown_message(where, "count"), rc.file, meta.line)
        try:
            n = coerce(value, "number") if not isinstance(value, bool) else None
        except TypeError:
            n = None
        if n is None or n != int(n):
            raise ConfigError(f"{where}: count must be a whole number, not "
                              f"{type_name(value) if n is None else n}; e.g. count = 2",
                              rc.file, meta.line)
        if n < 0:
            raise ConfigError(f"{where}: count must be zero or more, not {int(n)}",
                              rc.file, meta.line)
        if n > MAX_INSTANCES:
            raise ConfigError(f"{where}: count = {int(n)} is more than {MAX_INSTANCES:,} "
                              "instances; lower it", rc.file, meta.line)
        return [(i, {"count": {"index": i}}) for i in range(int(n))]
    if isinstance(value, dict):
        pairs = sorted(value.items())
    elif isinstance(value, SetValue):
        if not is_known(value):
            if validating:
                return None
            raise ConfigError(_unknown_message(where, "for_each"), rc.file, meta.line)
        bad = next((v for v in value if not isinstance(v, str)), None)
        if bad is not None:
            raise ConfigError(f"{where}: for_each takes a set of strings, and this set "
                              f"holds a {type_name(bad)} ({bad!r}); convert its elements "
                              "with tostring, or use a map", rc.file, meta.line)
        pairs = [(v, v) for v in value]
    elif value is UNKNOWN:
        if validating:
            return None
        raise ConfigError(_unknown_message(where, "for_each"), rc.file, meta.line)
    elif isinstance(value, list):
        raise ConfigError(f"{where}: for_each must be a map or a set of strings, and this "
                          "is a list; write toset([...]) to use its elements as keys, or "
                          "a map (e.g. { for v in LIST : v.name => v })",
                          rc.file, meta.line)
    else:
        raise ConfigError(f"{where}: for_each must be a map or a set of strings, not "
                          f"{type_name(value)}", rc.file, meta.line)
    if len(pairs) > MAX_INSTANCES:
        raise ConfigError(f"{where}: for_each has {len(pairs):,} keys, more than "
                          f"{MAX_INSTANCES:,}; split it", rc.file, meta.line)
    return [(k, {"each": {"key": k, "value": v}}) for k, v in pairs]


def _unknown_message(where: str, meta: str) -> str:
    """Terraform's "Invalid count / for_each argument" when it is known only after apply."""
    what = "how many instances" if meta == "count" else "which keys"
    return (f'{where}: the "{meta}" value depends on values known only after apply, so '
            f"rhplan cannot tell {what} to plan; build it from variables or locals, or "
            "apply what it depends on first with -target")
