"""One resource's change: its planned attributes against the recorded ones, the
action (create, update, replace, no-op) and a reason a person can read; and the reasons
for what refresh found changed outside rhplan (drift) and for a recorded resource that
goes."""
from __future__ import annotations

from typing import Any

from rhplan.config.default_env import bare_replaced, is_bare_env
from rhplan.config.model import Config, ResourceConfig
from rhplan.config.schema import RESOURCE_SCHEMAS
from rhplan.config.values import UNKNOWN
from rhplan.errors import ConfigError
from rhplan.names import block_address, parse_address
from rhplan.plan.model import Change
from rhplan.provider import RunContext
from rhplan.resources import TYPES
from rhplan.state import digest
from rhplan.state.model import ResourceState, State


class Differ:
    """Diffs a plan's resources; remembers the secrets whose digest key changed, so an
    env using them says why it is written again."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.rekeyed: set[str] = set()

    def diff(self, rc: ResourceConfig, attrs: dict[str, Any], prior: ResourceState | None,
             provider: str, deps: list[str], opts: Any, replaced: set[str]) -> Change:
        addr = rc.address
        if prior is None:
            return Change(addr, rc.type, rc.block_name or rc.name, provider, "create", None, attrs,
                          "not in the state yet", [], deps)
        schema = RESOURCE_SCHEMAS[rc.type]
        ignore = set(rc.ignore_changes)
        before = prior.attributes
        after = dict(attrs)
        for name in TYPES[rc.type].after_apply:
            if after.get(name) is UNKNOWN and name in before:
                after[name] = before[name]  # kept unless replaced
        TYPES[rc.type].settle(before, after, self.ctx)
        if "all" in ignore:
            ignore = set(schema.attrs) | set(schema.blocks)
        for name in ignore:
            if name in before:
                after[name] = before[name]
        changed = [n for n in sorted(set(after) | set(before))
                   if after.get(n) != before.get(n) and after.get(n) is not UNKNOWN
                   and not _new_and_empty(n, before, after, schema)]
        unknown_changed = [n for n in sorted(after) if after.get(n) is UNKNOWN
                           and n not in TYPES[rc.type].after_apply]
        forces = [n for n in changed + unknown_changed
                  if (schema.attrs.get(n) and schema.attrs[n].force_new)]
        more, why_replace = TYPES[rc.type].replacement(before, after, changed + unknown_changed,
                                                       self.ctx)
        forces += [n for n in more if n not in forces]
        parent_replaced = [d for d in TYPES[rc.type].replaced_with(after) if d in replaced]
        reason = ""
        if addr in opts.replace or (rc.key is not None and rc.block_address in opts.replace):
            action, reason = "replace", "replacement requested with -replace"
        elif forces:
            action, reason = "replace", (why_replace or
                                         f"{', '.join(forces)} cannot be changed in place")
        elif parent_replaced:
            action, reason = "replace", f"{parent_replaced[0]} is being replaced"
        elif changed or unknown_changed:
            action = "update"
            why = [self._describe(rc, n, before.get(n), after.get(n), after)
                   for n in changed + unknown_changed if n not in _EXPLAINED_BY_TYPE]
            why.append(why_replace)  # what the type says an in-place change involves
            why.append(TYPES[rc.type].refine_update(before, after, changed + unknown_changed))
            reason = "; ".join(dict.fromkeys(w for w in why if w))
        else:
            action = "no-op"
        if action == "replace":
            note = TYPES[rc.type].replace_note()
            reason = f"{reason}; {note}" if note else reason
            if rc.prevent_destroy:
                raise ConfigError(f"{addr} has lifecycle.prevent_destroy set, and this plan would "
                                  f"replace it ({reason}); remove prevent_destroy to allow it",
                                  rc.file, rc.line)
            for name in TYPES[rc.type].after_apply:
                if name not in attrs or attrs[name] is UNKNOWN:
                    after[name] = UNKNOWN
        return Change(addr, rc.type, rc.block_name or rc.name, provider, action, before, after,
                      reason, forces, deps)

    def _describe(self, rc: ResourceConfig, name: str, before: Any, after: Any,
                  attrs: dict[str, Any]) -> str:
        """Why an attribute changed; a digest made with another key (the state's digest
        key was lost or replaced) cannot tell whether the value changed, and says so."""
        kb, ka = digest.key_id_of(before), digest.key_id_of(after)
        if kb and ka and kb != ka:
            self.rekeyed.add(rc.address)
            return ("recorded with another digest key, so whether the values changed "
                    "cannot be told; they are written again")
        if name == "secrets_sha256" and any(s in self.rekeyed
                                            for s in attrs.get("secrets") or []):
            return "its secrets' digest key changed, so they are written again"
        return _describe_change(name, before, after)


def key_of(address: str) -> Any:
    parts = parse_address(address)
    return parts[2] if parts else None


def drift_reason(reason: str, notes: list[str]) -> str:
    """The change's reason with what refresh found outside rhplan; a change with no
    reason of its own reads "found outside rhplan: …" (rendered in one pair of brackets)."""
    found = f"found outside rhplan: {'; '.join(notes)}"
    return f"{reason} ({found})" if reason else found


def gone_reason(addr: str, rc: ResourceConfig | None, rs: ResourceState, cfg: Config
                 ) -> str:
    if (rc is None or rc.bare_default_of) and is_bare_env(addr, rs.attributes):
        cluster = rs.attributes["cluster"]  # config/default_env.py
        block = cfg.resources.get(block_address(cluster))
        if block is None or rc is not None:  # the cluster, or this instance of it, goes
            return f"{cluster}'s bare default env goes with it"
        return f"{cluster} {bare_replaced(block, cfg)}"
    if rc is None or addr == rc.address:
        return "no longer in the configuration"
    key = key_of(addr)
    if rc.repeated == "count" and isinstance(key, int):
        return "its index is beyond count"
    if rc.repeated == "for_each" and isinstance(key, str):
        return "its key is no longer in for_each"
    return (f"{rc.address} now sets {rc.repeated}, so this address has no configuration"
            if rc.repeated else f"{rc.address} no longer sets count or for_each")


# status attributes whose change the resource type explains itself (refine_update)
_EXPLAINED_BY_TYPE = {"servlet", "ray_status", "hosts", "cost_per_hour",
                      "resolved_instance_type", "instance_ids"}

_FRIENDLY = {
    "secrets_sha256": "secret values changed",
    "sha256": "values changed",
    "sources": "local package contents changed",
}


def _new_and_empty(name: str, before: dict[str, Any], after: dict[str, Any], schema: Any
                   ) -> bool:
    """An attribute added to the schema after this resource was recorded, left at its
    empty default: not a change (a state written by an older rhplan plans no-op)."""
    spec = schema.attrs.get(name)
    return (name not in before and spec is not None and not spec.computed
            and after.get(name) in (None, [], {}) and after.get(name) == (spec.default
                                                                          or after.get(name)))


def _describe_change(name: str, before: Any, after: Any) -> str:
    """A short why: which list entries or map keys changed."""
    if name in _FRIENDLY:
        return _FRIENDLY[name]
    if isinstance(before, list) and isinstance(after, list):
        parts = [f"+{x}" for x in after if x not in before] + [
            f"-{x}" for x in before if x not in after]
        return f"{name}: {', '.join(parts)}" if parts else f"{name} reordered"
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return f"{name}: {', '.join(keys)} changed"
    return f"{name} changed"


def drift_changes(recorded: State, refreshed: State) -> list[Change]:
    """What refresh found changed outside rhplan, as changes from the recorded values
    to those read (Terraform's resource_drift): updated, or deleted if gone."""
    out: list[Change] = []
    for addr in sorted(recorded.resources):
        rs, now = recorded.resources[addr], refreshed.resources.get(addr)
        if now is not None and now.attributes == rs.attributes:
            continue
        out.append(Change(addr, rs.type, rs.name, rs.provider,
                          "delete" if now is None else "update", rs.attributes,
                          None if now is None else now.attributes, "found outside rhplan"))
    return out
