"""lifecycle settings that shape a change (issue 14 item 6):

- ignore_changes: an ignored attribute keeps its recorded value *before* the resource
  type derives the rest from it, so what is derived (a package's spec from its
  revision) does not change either.
- replace_triggered_by: a no-op or in-place update becomes a replacement when a
  referenced resource is planned to change (or, for env.a.attr, that attribute).
- create_before_destroy: an env is replaced under a new on-host name (its folder and
  servlet beside the old ones), built before the old one is destroyed (apply.py); an
  env that sets name = ..., or a cluster (its folder and Ray are named after it), is
  refused in one line rather than silently destroyed first. Packages and secrets live
  only in the state: the order cannot show, so the setting is honoured as it is.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from rhplan.config.model import ResourceConfig
from rhplan.config.schema import RESOURCE_SCHEMAS
from rhplan.config.values import UNKNOWN
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


def replacement_name(rc: ResourceConfig, old: str) -> str:
    """The on-host name an env replaced create-before-destroy is built under: its label
    and a hash of its address and the old name, so the old one runs on beside it (and a
    saved plan, planned again, picks the same name)."""
    tag = hashlib.sha256(f"{rc.address}|{old}".encode()).hexdigest()[:8]
    return f"{rc.label[:100]}-{tag}"


def create_before_destroy(rc: ResourceConfig, change: Change, desired: Any) -> None:
    """An env replaced with create_before_destroy: planned under a new on-host name
    (apply builds it, then destroys the old one); refused when its block sets name."""
    if change.action != "replace" or not rc.create_before_destroy or rc.type != "env" \
            or "name" in rc.block.attrs:
        check_create_before_destroy(rc, change)
        return
    old = (change.before or {}).get("name") or rc.name
    new = replacement_name(rc, old)
    attrs = desired(dataclasses.replace(rc, name=new, block_name=rc.label), {"name": new})
    from rhplan.resources import TYPES
    for name in TYPES[rc.type].after_apply:
        if attrs.get(name) is UNKNOWN or name not in attrs:
            attrs[name] = UNKNOWN
    change.after = attrs
    change.reason += (f"; create_before_destroy: the replacement is built as {new!r}, then "
                      f"{old!r} is destroyed")


def check_create_before_destroy(rc: ResourceConfig, change: Change) -> None:
    if change.action != "replace" or not rc.create_before_destroy or rc.type not in _REAL:
        return
    name = (change.before or {}).get("name", rc.name)
    if rc.type == "env":  # it sets name: both would need it at once
        raise ConfigError(
            f"{change.address} must be replaced ({change.reason}) and sets lifecycle."
            f"create_before_destroy, but also name = {name!r}: the replacement would need "
            "that on-host name while the old one still runs; remove name (rhplan then "
            "picks a new one) or create_before_destroy", rc.file, rc.line)
    raise ConfigError(
        f"{change.address} must be replaced ({change.reason}) and sets lifecycle."
        f"create_before_destroy, which rhplan cannot honour for a{'n' if rc.type == 'env' else ''}"
        f" {rc.type}: the replacement would need the on-host name {name!r} while the old one "
        "still runs; remove create_before_destroy to replace it by destroying first",
        rc.file, rc.line)


def shape(rc: ResourceConfig, change: Change, desired: dict[str, Any],
          changes: dict[str, Change], plan_again: Any = None) -> None:
    """The planner's one hook after a resource's diff: replace_triggered_by, then
    create_before_destroy (plan_again: the planner's desired(rc, keep))."""
    if rc.replace_triggered_by and change.action in ("no-op", "update"):
        why = trigger_reason(rc, changes)
        if why:
            from rhplan.resources import TYPES
            replace_for_trigger(rc, change, desired, TYPES[rc.type].after_apply, why)
    if plan_again is None:
        check_create_before_destroy(rc, change)
    else:
        create_before_destroy(rc, change, plan_again)


def deposed_names(prior: ResourceState | None) -> list[str]:
    """On-host names of the old objects a create_before_destroy replacement recorded
    beside the new one (apply.py), still to be destroyed."""
    if prior is None:
        return []
    return [str((d.get("attributes") or {}).get("name")) for d in
            prior.private.get("deposed") or [] if isinstance(d, dict)]
