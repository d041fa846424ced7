"""The checks a saved plan (`rhplan apply PLANFILE`) passes before it is applied: made in
this workspace, for this state (lineage, serial, digest, prior_state), with the same
variables (a sensitive one given again) and the same changes when planned again."""
from __future__ import annotations

import json
from typing import Any

from rhplan.config.model import Config
from rhplan.errors import StalePlanError
from rhplan.plan.model import Plan
from rhplan.plan.sensitive import SENSITIVE_VARIABLE, sensitive_digest
from rhplan.provider import RunContext
from rhplan.state.backend import Backend
from rhplan.state.model import State


def different_state(source: str, what: str) -> StalePlanError:
    return StalePlanError(f"the saved plan {source} was made from a different state ({what}); "
                          f"run rhplan plan -out {source} again")


def first_difference(recorded: State | None, derived: State) -> str:
    """The first way a saved plan's prior state differs from the derived one, or ""."""
    if recorded is None:
        return "the plan file has no prior_state"
    a, b = recorded.recorded(), derived.recorded()
    if a == b:
        return ""
    ra = {r["address"]: r for r in a["resources"]}
    rb = {r["address"]: r for r in b["resources"]}
    for addr in sorted(set(ra) | set(rb)):
        if addr not in rb:
            return f"{addr} is in the plan file's prior_state but not in the state"
        if addr not in ra:
            return f"{addr} is in the state but not in the plan file's prior_state"
        parts = [k for k in ra[addr] if ra[addr][k] != rb[addr].get(k)]
        if parts:
            keys = parts
            if parts == ["attributes"]:
                keys = sorted(k for k in set(ra[addr]["attributes"]) | set(rb[addr]["attributes"])
                              if ra[addr]["attributes"].get(k) != rb[addr]["attributes"].get(k))
                keys = [f"attributes.{k}" for k in keys]
            return f"{addr} differs in {', '.join(keys)}"
    parts = [k for k in a if a[k] != b.get(k)]
    return f"the state differs in {', '.join(parts)}"


def saved_variables(saved: Plan, given: dict[str, Any], source: str,
                     ctx: RunContext) -> dict[str, Any]:
    """A saved plan's variables; a sensitive one is kept there only as a digest, so its
    value must be given again (and match) when the plan is applied."""
    values: dict[str, Any] = {}
    for name, value in saved.variables.items():
        if isinstance(value, dict) and set(value) == {SENSITIVE_VARIABLE}:
            if name not in given or \
                    sensitive_digest(given[name], ctx) != value[SENSITIVE_VARIABLE]:
                raise StalePlanError(
                    f"{source} keeps sensitive variable {name!r} only as a digest; pass the "
                    f"value it was planned with again (-var {name}=... or RHPLAN_VAR_{name})")
            value = given[name]
        values[name] = value
    return values


def typed_again(cfg: Config, values: dict[str, Any]) -> dict[str, Any]:
    """A saved plan's JSON holds a set(...) variable as a list; converted by its type
    again, it is a set once more (for_each takes sets, not lists)."""
    from rhplan.config import variables
    out = dict(values)
    for name, value in values.items():
        v = cfg.variables.get(name)
        if v is not None and v.type_spec is not None:
            try:
                out[name] = variables.convert(value, v.type_spec, secret=v.sensitive)
            except TypeError:
                pass  # kept as saved: the plan's check reports what differs
    return out


def fingerprint(plan: Plan) -> str:
    return json.dumps([[c.address, c.action, c.to_key()] for c in plan.changes], sort_keys=True,
                      default=str)


def check_recorded(saved: Plan, source: str, workspace: str, backend: Backend) -> State:
    """The saved plan was made in this workspace, from the state the backend records
    now (same lineage, serial and digest), which is returned. StalePlanError naming
    what differs otherwise."""
    if saved.workspace != workspace:
        raise StalePlanError(
            f"{source} was made in workspace {saved.workspace!r}, but the workspace in "
            f"use is {workspace!r}; run rhplan workspace select {saved.workspace}, or "
            "plan again here")
    current = backend.read()
    if saved.lineage != current.lineage and (current.resources or current.serial):
        raise StalePlanError(
            f"{source} was made for another state (lineage {saved.lineage}, the state is "
            f"{current.lineage}); run rhplan plan -out again")
    if saved.serial != current.serial:
        raise StalePlanError(
            f"{source} is stale: the state changed since it was made (serial {saved.serial}, "
            f"now {current.serial}); run rhplan plan -out again")
    if saved.state_digest != current.digest():
        raise different_state(source, "the recorded state does not match the one it "
                              f"was planned from, at the same serial {current.serial}")
    return current
