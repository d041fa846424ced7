"""lifecycle settings that shape a change (issue 14 item 6):

- ignore_changes: an ignored attribute keeps its recorded value *before* the resource
  type derives the rest from it, so what is derived (a package's spec from its
  revision) does not change either.
- replace_triggered_by: a no-op or in-place update becomes a replacement when a
  referenced resource is planned to change (or, for env.a.attr, that attribute).
- create_before_destroy: rhplan replaces by destroying first. For packages and
  secrets (they live only in the state) the order is invisible, so the setting is
  honoured trivially; for an env or a cluster, the replacement would need the same
  on-host folder and servlet name as the object it replaces while both run, so a plan
  that replaces one is refused in one line rather than silently destroying first.
"""
from __future__ import annotations

from typing import Any

from rhplan.config.evaluate import UNKNOWN
from rhplan.config.load import ResourceConfig
from rhplan.config.schema import RESOURCE_SCHEMAS
from rhplan.errors import ConfigError
from rhplan.names import block_address
from rhplan.plan.model import Change
from rhplan.state.model import ResourceState

# types with an object on hosts or in a cloud: replacing them has an order that shows
_REAL = ("env", "cluster")


def ignored_values(rc: ResourceConfig, prior: ResourceState | None) -> dict[str, Any]:
    """The recorded values of rc's ignored attributes, to plan from instead of the
    configured ones (sensitive attributes are recorded as digests: the planner's own
    copy after the diff keeps those)."""
    if prior is None or not rc.ignore_changes:
        return {}
    schema = RESOURCE_SCHEMAS[rc.type]
    names = ([n for n, a in schema.attrs.items() if a.user_settable]
             if "all" in rc.ignore_changes else rc.ignore_changes)
    return {n: prior.attributes[n] for n in names
            if n in prior.attributes and n in schema.attrs and not schema.attrs[n].sensitive
            and schema.attrs[n].user_settable}


def trigger_reason(rc: ResourceConfig, changes: dict[str, Change]) -> str | None:
    """Why rc must be replaced by its replace_triggered_by, or None."""
    for t in rc.replace_triggered_by:
        found = [c for a, c in changes.items()
                 if a == t.address or (block_address(a) == t.address and a != t.address)]
        for c in found:
            if c.action in ("no-op", "delete", "forget"):
                continue
            if t.attribute is None:
                return f"replace_triggered_by: {c.address} will be {_VERB[c.action]}"
            before = (c.before or {}).get(t.attribute)
            after = (c.after or {}).get(t.attribute)
            if c.action == "create" or after is UNKNOWN or before != after:
                return f"replace_triggered_by: {c.address}.{t.attribute} changes"
    return None


_VERB = {"create": "created", "update": "updated in place", "replace": "replaced"}


def replace_for_trigger(rc: ResourceConfig, change: Change, desired: dict[str, Any],
                        after_apply: tuple[str, ...] | list[str], reason: str) -> None:
    """Turn a no-op or update into a replacement, as the planner's own replace does."""
    if rc.prevent_destroy:
        raise ConfigError(f"{change.address} has lifecycle.prevent_destroy set, and this plan "
                          f"would replace it ({reason}); remove prevent_destroy to allow it",
                          rc.file, rc.line)
    change.action, change.reason = "replace", reason
    after = change.after if change.after is not None else {}
    for name in after_apply:
        if name not in desired or desired[name] is UNKNOWN:
            after[name] = UNKNOWN
    change.after = after


def check_create_before_destroy(rc: ResourceConfig, change: Change) -> None:
    if change.action != "replace" or not rc.create_before_destroy or rc.type not in _REAL:
        return
    name = (change.before or {}).get("name", rc.name)
    raise ConfigError(
        f"{change.address} must be replaced ({change.reason}) and sets lifecycle."
        f"create_before_destroy, which rhplan cannot honour for a{'n' if rc.type == 'env' else ''}"
        f" {rc.type}: the replacement would need the on-host name {name!r} while the old one "
        "still runs; remove create_before_destroy to replace it by destroying first",
        rc.file, rc.line)


def shape(rc: ResourceConfig, change: Change, desired: dict[str, Any],
          changes: dict[str, Change]) -> None:
    """The planner's one hook after a resource's diff: replace_triggered_by, then the
    create_before_destroy check."""
    if rc.replace_triggered_by and change.action in ("no-op", "update"):
        why = trigger_reason(rc, changes)
        if why:
            from rhplan.resources import TYPES
            replace_for_trigger(rc, change, desired, TYPES[rc.type].after_apply, why)
    check_create_before_destroy(rc, change)
