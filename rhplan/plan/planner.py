"""The planner: configuration + (refreshed) state in, Plan out. No host is touched here
except through the resource types' read() during refresh, which is a separate step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rhplan.config.decode import Evaluation
from rhplan.config.evaluate import UNKNOWN, EvalError, ResourceValue
from rhplan.config.load import Config, ResourceConfig
from rhplan.config.schema import RESOURCE_SCHEMAS
from rhplan.errors import ConfigError
from rhplan.graph import ancestors, build_graph, descendants, topological_order
from rhplan.plan.model import Change, Plan
from rhplan.provider import RunContext
from rhplan.resources import TYPES
from rhplan.resources import secret as secret_type
from rhplan.state import digest
from rhplan.state.model import ResourceState, State


@dataclass
class PlanOptions:
    destroy: bool = False
    targets: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


# how a saved plan marks a variable it keeps only as a (keyed) digest
SENSITIVE_VARIABLE = "$sensitive_sha256"


def _strings(value: Any) -> list[str]:
    """Every string (and number, as text) inside a value."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [] if value is None or isinstance(value, bool) else [str(value)]


def sensitive_digest(value: Any, ctx: RunContext) -> str:
    """What the state and saved plans keep of a sensitive value: a keyed digest."""
    return digest.digest(ctx, value)


class Planner:
    def __init__(self, cfg: Config, ctx: RunContext, variables: dict[str, Any]):
        self.cfg = cfg
        self.ctx = ctx
        self.graph = build_graph(cfg)
        self.planned: dict[str, dict[str, Any]] = {}
        self.evaluation = Evaluation(cfg, variables, self._resolve, ctx.workspace)
        # secrets whose recorded plain digest this plan replaced: address -> plain digest
        self._plain_digests: dict[str, str] = {}
        # secrets whose digest changed only as far as can be told: made with another key
        self._rekeyed: set[str] = set()

    # what `cluster.x` means inside an expression: the planned attributes
    def _resolve(self, type_: str, name: str, line: int) -> ResourceValue:
        addr = f"{type_}.{name}"
        if addr not in self.cfg.resources:
            raise EvalError(f"unknown reference {addr}; declare {type_} \"{name}\" {{ ... }}", line)
        attrs = self.planned.get(addr)
        valid = frozenset(RESOURCE_SCHEMAS[type_].attrs) | frozenset(RESOURCE_SCHEMAS[type_].blocks)
        valid = valid - {n for n, a in RESOURCE_SCHEMAS[type_].attrs.items() if a.sensitive}
        return ResourceValue(addr, attrs if attrs is not None else {}, valid)

    def desired(self, rc: ResourceConfig) -> dict[str, Any]:
        """A resource's configured + plan-time computed attributes, sensitive ones hashed."""
        attrs = self.evaluation.resource(rc)
        schema = RESOURCE_SCHEMAS[rc.type]
        hidden: dict[str, Any] = {}
        for name, spec in schema.attrs.items():
            if spec.sensitive and attrs.get(name):
                hidden[name] = attrs[name]
                attrs[name] = sensitive_digest(attrs[name], self.ctx)
        for bname, bschema in schema.blocks.items():
            block = attrs.get(bname)
            for name, spec in bschema.attrs.items():
                if block and spec.sensitive and block.get(name):
                    hidden[f"{bname}.{name}"] = block[name]
                    block[name] = sensitive_digest(block[name], self.ctx)
        self.ctx.sensitive[rc.address] = hidden
        attrs = TYPES[rc.type].plan_values(rc, attrs, self.ctx, self.planned)
        for name in TYPES[rc.type].after_apply:
            attrs.setdefault(name, UNKNOWN)
        return attrs

    def provider_of(self, rc: ResourceConfig, attrs: dict[str, Any]) -> str:
        if rc.type == "cluster":
            return str(attrs["provider"])
        if rc.type == "env":
            return str(self.planned.get(attrs["cluster"], {}).get("provider", "local"))
        return "rhplan"

    def plan(self, state: State, opts: PlanOptions, drift: list[dict[str, str]] | None = None
             ) -> Plan:
        for addr in opts.targets + opts.replace:
            if addr not in self.cfg.resources and addr not in state.resources:
                raise ConfigError(f"{addr} is not a resource in the configuration or state; "
                                  "check the address (see rhplan state list)")
        selected = self._selected(state, opts)
        changes: dict[str, Change] = {}
        replaced: set[str] = set()
        order = topological_order(self.graph)
        for addr in order:
            rc = self.cfg.resources[addr]
            prior = state.resources.get(addr)
            if addr not in selected:
                # outside -target: keep what is recorded so references still resolve
                if prior is not None:
                    self.planned[addr] = prior.attributes
                continue
            if opts.destroy:
                self.planned[addr] = prior.attributes if prior else {}
                continue
            attrs = self.desired(rc)
            if prior is not None:
                self._upgrade_digests(rc, attrs, prior, state)
            provider = self.provider_of(rc, attrs)
            deps = sorted(self.graph.predecessors(addr))
            change = self._diff(rc, attrs, prior, provider, deps, opts, replaced)
            notes = [d["message"].removeprefix(f"{addr}: ") for d in drift or []
                     if d["address"] == addr]
            if notes and change.action != "no-op":
                change.reason = f"{change.reason} (found outside rhplan: {'; '.join(notes)})"
            if change.action == "replace":
                replaced.add(addr)
            changes[addr] = change
            self.planned[addr] = change.after or {}
        # resources recorded but no longer configured (or all of them, for -destroy)
        for addr, rs in state.resources.items():
            if addr in changes or addr not in selected:
                continue
            if addr in self.cfg.resources and not opts.destroy:
                continue
            rc = self.cfg.resources.get(addr)
            if rc is not None and rc.prevent_destroy:
                raise ConfigError(
                    f"{addr} has lifecycle.prevent_destroy set, and this plan would destroy it; "
                    "remove prevent_destroy to allow it", rc.file, rc.line)
            reason = ("destroy requested" if opts.destroy else
                      "no longer in the configuration")
            changes[addr] = Change(addr, rs.type, rs.name, rs.provider, "delete", rs.attributes,
                                   None, reason, [], list(rs.dependencies))
        ordered = sorted(changes.values(), key=lambda c: c.address)
        plan = Plan(state.lineage, state.serial, ordered, destroy=opts.destroy,
                    variables=self.saved_variables(opts.variables), targets=list(opts.targets),
                    replace=list(opts.replace), drift=drift or [])
        plan.output_changes = self.output_changes(state, opts.destroy)
        return plan

    def saved_variables(self, variables: dict[str, Any]) -> dict[str, Any]:
        """The variables as a saved plan keeps them: a variable declared sensitive, or one
        whose text ends up inside a sensitive attribute (a secret's values, a password),
        is kept as its digest only, so the plan file never holds the secret; `apply FILE`
        takes the value again from -var / RHPLAN_VAR_ and checks it against the digest."""
        hidden = [leaf for values in self.ctx.sensitive.values() for v in values.values()
                  for leaf in _strings(v)]
        saved: dict[str, Any] = {}
        for name, value in variables.items():
            declared = self.cfg.variables.get(name)
            secret = (declared is not None and declared.sensitive) or any(
                len(s) >= 4 and any(s in h for h in hidden) for s in _strings(value))
            saved[name] = ({SENSITIVE_VARIABLE: sensitive_digest(value, self.ctx)} if secret
                           else value)
        return saved

    def _upgrade_digests(self, rc: ResourceConfig, attrs: dict[str, Any], prior: ResourceState,
                         state: State) -> None:
        """A state written before keyed digests holds plain sha256 digests of sensitive
        values. Where a plain digest still matches the value planned now, the recorded one
        becomes the keyed digest, in place: the value is the same, so nothing is planned
        (no servlet restarts), and the next write of the state drops the guessable digest."""
        recorded = prior.attributes
        for path, value in self.ctx.sensitive.get(rc.address, {}).items():
            block, _, name = path.rpartition(".")
            have = recorded.get(block) if block else recorded
            want = attrs.get(block) if block else attrs
            if (isinstance(have, dict) and isinstance(want, dict)
                    and have.get(name) == digest.LEGACY_PREFIX + digest.legacy_hex(value)):
                have[name] = want.get(name)
        if rc.type == "secret" and rc.address in self.ctx.secret_values:
            plain = secret_type.upgrade_recorded(recorded, attrs,
                                                 self.ctx.secret_values[rc.address])
            if plain is not None:
                self._plain_digests[rc.address] = plain
        elif rc.type == "env" and self._plain_digests:
            # the env recorded a digest of its secrets' (then plain) digests
            names = recorded.get("secrets") or []
            now = [state.resources[s].attributes.get("sha256", "")
                   if s in state.resources else "" for s in names]
            before = [self._plain_digests.get(s, d) for s, d in zip(names, now, strict=True)]
            if recorded.get("secrets_sha256") == secret_type.combined(before):
                recorded["secrets_sha256"] = secret_type.combined(now)

    def _selected(self, state: State, opts: PlanOptions) -> set[str]:
        everything = set(self.cfg.resources) | set(state.resources)
        if not opts.targets:
            return everything
        g = self.graph.copy()
        for addr, rs in state.resources.items():
            for dep in rs.dependencies:
                g.add_edge(dep, addr)
        out: set[str] = set()
        for t in opts.targets:
            if t not in g:
                out.add(t)
                continue
            out.add(t)
            # planning a target needs what it depends on; destroying it, what depends on it
            out |= descendants(g, t) if opts.destroy else ancestors(g, t)
        return out

    def _diff(self, rc: ResourceConfig, attrs: dict[str, Any], prior: ResourceState | None,
              provider: str, deps: list[str], opts: PlanOptions, replaced: set[str]) -> Change:
        addr = rc.address
        if prior is None:
            return Change(addr, rc.type, rc.name, provider, "create", None, attrs,
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
        if addr in opts.replace:
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
            if rc.prevent_destroy:
                raise ConfigError(f"{addr} has lifecycle.prevent_destroy set, and this plan would "
                                  f"replace it ({reason}); remove prevent_destroy to allow it",
                                  rc.file, rc.line)
            for name in TYPES[rc.type].after_apply:
                if name not in attrs or attrs[name] is UNKNOWN:
                    after[name] = UNKNOWN
        return Change(addr, rc.type, rc.name, provider, action, before, after, reason,
                      forces, deps)

    def _describe(self, rc: ResourceConfig, name: str, before: Any, after: Any,
                  attrs: dict[str, Any]) -> str:
        """Why an attribute changed; a digest made with another key (the state's digest
        key was lost or replaced) cannot tell whether the value changed, and says so."""
        kb, ka = digest.key_id_of(before), digest.key_id_of(after)
        if kb and ka and kb != ka:
            self._rekeyed.add(rc.address)
            return ("recorded with another digest key, so whether the values changed "
                    "cannot be told; they are written again")
        if name == "secrets_sha256" and any(s in self._rekeyed
                                            for s in attrs.get("secrets") or []):
            return "its secrets' digest key changed, so they are written again"
        return _describe_change(name, before, after)

    def output_changes(self, state: State, destroy: bool) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, o in self.cfg.outputs.items():
            before = state.outputs.get(name, {}).get("value") if name in state.outputs else None
            if destroy:
                after = None
            else:
                try:
                    after = self.evaluation.output(o)  # refuses an unmarked sensitive one
                except ConfigError:
                    if any(r not in self.planned for r in o.refs if not r.startswith("local.")):
                        after = UNKNOWN  # refers to something outside -target
                    else:
                        raise
                if isinstance(after, ResourceValue):
                    raise ConfigError(f"output {name!r} is a whole resource; use one of its "
                                      "attributes", o.file, o.line)
            if name not in state.outputs:
                action = "create" if after is not None else "no-op"
            elif after is None and destroy:
                action = "delete"
            else:
                action = "update" if after != before else "no-op"
            out[name] = {"action": action, "before": before, "after": after,
                         "sensitive": o.sensitive}
        for name, rec in state.outputs.items():
            if name not in out:
                out[name] = {"action": "delete", "before": rec.get("value"), "after": None,
                             "sensitive": rec.get("sensitive", False)}
        return out


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
