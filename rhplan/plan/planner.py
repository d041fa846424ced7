"""The planner: configuration + (refreshed) state in, Plan out. No host is touched here
except through the resource types' read() during refresh, which is a separate step."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rhplan.config.decode import Evaluation, coerce
from rhplan.config.default_env import bare_cluster_of, bare_reason, bare_replaced, is_bare_env
from rhplan.config.evaluate import (
    UNKNOWN,
    EvalError,
    InstanceMap,
    Instances,
    ResourceValue,
    SetValue,
    is_known,
    type_name,
)
from rhplan.config.load import Config, ResourceConfig
from rhplan.config.schema import RESOURCE_SCHEMAS
from rhplan.errors import ConfigError
from rhplan.graph import ancestors, build_graph, descendants, topological_order
from rhplan.names import (
    block_address,
    instance_address,
    instance_name,
    normalize_address,
    parse_address,
    valid_name,
)
from rhplan.plan import imports, lifecycle, moved
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
    # validate (Terraform's rule): a count / for_each known only after apply is no
    # error; the block has no instances and references to it are unknown
    validate: bool = False
    # plan -refresh-only: no changes, only what refresh found, to record in the state
    refresh_only: bool = False


# how a saved plan marks a variable it keeps only as a (keyed) digest
SENSITIVE_VARIABLE = "$sensitive_sha256"

# a count or for_each this large is a mistake (and would take the machine's memory)
MAX_INSTANCES = 100_000


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
        from rhplan.config.modules import expand_repeated
        expand_repeated(cfg, variables, ctx.workspace)  # module count / for_each instances
        self.cfg = cfg
        self.ctx = ctx
        self.graph = build_graph(cfg)
        self.planned: dict[str, dict[str, Any]] = {}
        self.evaluation = Evaluation(cfg, variables, self._resolve, ctx.workspace)
        # secrets whose recorded plain digest this plan replaced: address -> plain digest
        self._plain_digests: dict[str, str] = {}
        # secrets whose digest changed only as far as can be told: made with another key
        self._rekeyed: set[str] = set()
        # repetition: each block's instances' keys (None for a block without count or
        # for_each), and each planned instance's own configuration
        self.instance_keys: dict[str, list[Any]] = {}
        self.configs: dict[str, ResourceConfig] = {}
        self._selection: tuple[set[str], set[str]] | None = None
        self._validating = False
        self._unknown: set[str] = set()  # validate: blocks whose instances are unknown

    def resource_config(self, address: str) -> ResourceConfig | None:
        """The configuration of a resource instance (env.x["a"]) or a plain block."""
        return self.configs.get(address) or self.cfg.resources.get(address)

    # what `cluster.x` means inside an expression: the planned attributes; for a block
    # with count a list of its instances, with for_each a map of them
    def _resolve(self, type_: str, name: str, line: int) -> Any:
        addr = f"{type_}.{name}"
        rc = self.cfg.resources.get(addr)
        if rc is None:
            raise EvalError(f"unknown reference {addr}; declare {type_} \"{name}\" {{ ... }}", line)
        if addr in self._unknown:
            return UNKNOWN
        valid = _valid_attrs(rc.type)  # type_ is module.m.env inside a module
        if rc.repeated is None:
            attrs = self.planned.get(addr)
            return ResourceValue(addr, attrs if attrs is not None else {}, valid)
        values = {}
        for key in self.instance_keys.get(addr, ()):
            inst = instance_address(type_, name, key)
            values[key] = ResourceValue(inst, self.planned.get(inst) or {}, valid)
        if rc.repeated == "count":
            return Instances(addr, list(values.values()))
        return InstanceMap(addr, values)

    def expand(self, rc: ResourceConfig) -> list[ResourceConfig]:
        """The instances of a block: itself without count / for_each, else one per index
        or key, named on hosts by names.instance_name."""
        if rc.repeated is None:
            return [rc]
        out: list[ResourceConfig] = []
        pairs = self._repetition(rc)
        if pairs is None:  # validate: known only after apply
            self._unknown.add(rc.address)
            return out
        for key, bindings in pairs:
            out.append(dataclasses.replace(
                rc, name=instance_name(rc.name, key), key=key, block_name=rc.label,
                bindings=bindings, instance=rc.module + instance_address(rc.type, rc.label, key)))
        return out

    def _repetition(self, rc: ResourceConfig) -> list[tuple[Any, dict[str, Any]]] | None:
        """(key, what count / each mean in that instance) for a repeated block, checked
        as Terraform checks count and for_each; errors name the argument's line."""
        meta = rc.count if rc.count is not None else rc.for_each
        assert meta is not None
        value, mark = self.evaluation.marked_evaluate(meta.expr, rc.file)
        where = f"{rc.type} {rc.name!r}"
        if mark and rc.for_each is not None:
            raise ConfigError(f"{where}: for_each is derived from a sensitive value ({mark}); "
                              "its keys would show in every address, so Terraform's rule "
                              "applies: build the keys from values that are not sensitive "
                              "(nonsensitive(...) if they are safe to show)", rc.file, meta.line)
        if rc.count is not None:
            if value is UNKNOWN:
                if self._validating:
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
                if self._validating:
                    return None
                raise ConfigError(_unknown_message(where, "for_each"), rc.file, meta.line)
            bad = next((v for v in value if not isinstance(v, str)), None)
            if bad is not None:
                raise ConfigError(f"{where}: for_each takes a set of strings, and this set "
                                  f"holds a {type_name(bad)} ({bad!r}); convert its elements "
                                  "with tostring, or use a map", rc.file, meta.line)
            pairs = [(v, v) for v in value]
        elif value is UNKNOWN:
            if self._validating:
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

    def desired(self, rc: ResourceConfig, keep: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """A resource's configured + plan-time computed attributes, sensitive ones hashed;
        `keep`: recorded values planned from instead (ignore_changes)."""
        attrs = self.evaluation.resource(rc)
        if keep:
            attrs.update(keep)
        schema = RESOURCE_SCHEMAS[rc.type]
        hidden: dict[str, Any] = {}
        for name, spec in schema.attrs.items():  # (an unknown value: no digest, validate)
            if spec.sensitive and attrs.get(name) and is_known(attrs[name]):
                hidden[name] = attrs[name]
                attrs[name] = sensitive_digest(attrs[name], self.ctx)
        for bname, bschema in schema.blocks.items():
            block = attrs.get(bname)
            for name, spec in bschema.attrs.items():
                if block and spec.sensitive and block.get(name) and is_known(block[name]):
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
        opts.targets = [normalize_address(a) for a in opts.targets]
        opts.replace = [normalize_address(a) for a in opts.replace]
        if any(a.startswith("module.") for a in opts.targets):  # all that is inside it
            from rhplan.config.modules import expand_targets
            opts.targets = expand_targets(opts.targets, self.cfg, state)
        for addr in opts.targets + opts.replace:
            if block_address(addr) not in self.cfg.resources and addr not in state.resources:
                raise ConfigError(f"{addr} is not a resource in the configuration or state; "
                                  "check the address (see rhplan state list)")
        if opts.refresh_only:  # Terraform's refresh-only mode: nothing to undo the drift
            return Plan(state.lineage, state.serial, [], variables=self.saved_variables(
                opts.variables), targets=list(opts.targets), drift=drift or [],
                refresh_only=True)
        if not opts.validate:  # a module's count / for_each unknown at plan
            from rhplan.config.modules import raise_deferred
            raise_deferred(self.cfg)
        self._selection = self._selected(state, opts)
        self._validating = opts.validate
        # resource types skip what reaches outside while validating (git ls-remote)
        self.ctx.cache["validating"] = opts.validate
        moved.check_removed(self.cfg)
        imports.check_blocks(self.cfg)
        moves = moved.plan_moves(self.cfg, state, self._implicit_moves, moved_state)
        if moves:
            state = moved_state(state, moves)
        moved_from = {new: old for old, new in moves.items()}
        self.ctx.cache["recorded_state"] = state  # env placement keeps recorded nodes
        recorded: dict[str, list[str]] = {}  # block address -> its recorded instances
        for addr in state.resources:
            b = addr if addr[-1] != "]" else block_address(addr)
            recorded.setdefault(b, []).append(addr)
        changes: dict[str, Change] = {}
        replaced: set[str] = set()
        order = topological_order(self.graph)
        for block in order:
            rc = self.cfg.resources[block]
            if opts.destroy or (self._selection is not None
                                and not self._block_selected(block)):
                # outside -target (or destroying): keep what is recorded, so references
                # still resolve
                self._keep_recorded(rc, recorded.get(block, []), state, opts.destroy)
                continue
            instances = [rc] if rc.repeated is None else self.expand(rc)
            if rc.repeated is not None:
                self.instance_keys[block] = [i.key for i in instances]
            deps = self._dependencies(block)
            for inst in instances:
                addr = inst.address
                prior = state.resources.get(addr)
                # a bare default env depends on its cluster alone (config/default_env.py)
                if inst.bare_default_of and self.planned.get(bare_cluster_of(inst), {}).get(
                        "ray_status") == "skipped":
                    continue  # no Ray on its cluster: nothing to build a bare env in
                if prior is not None and prior.attributes.get("name") != inst.name:
                    inst = _keep_name(inst, prior)
                self.configs[addr] = inst
                if self._selection is not None and not self.selected(addr):
                    # -target names another instance
                    if prior is not None:
                        self.planned[addr] = prior.attributes
                    continue
                attrs = self.desired(inst, lifecycle.ignored_values(inst, prior))
                if prior is not None:
                    self._upgrade_digests(inst, attrs, prior, state)
                provider = self.provider_of(inst, attrs)
                change = self._diff(inst, attrs, prior, provider, deps, opts, replaced)
                lifecycle.shape(inst, change, attrs, changes, self.desired)
                change.deposed = lifecycle.deposed_names(prior)
                notes = [d["message"].removeprefix(f"{addr}: ") for d in drift or []
                         if d["address"] == addr]
                if notes and change.action != "no-op":
                    change.reason = drift_reason(change.reason, notes)
                if change.action == "replace":
                    replaced.add(addr)
                if inst.bare_default_of and change.action == "create":
                    change.reason = bare_reason(bare_cluster_of(inst), inst.bare_why)
                change.previous_address = moved_from.get(addr)
                changes[addr] = change
                self.planned[addr] = change.after or {}
        for addr in opts.targets + opts.replace:
            if addr not in self.configs and addr not in state.resources \
                    and addr not in self.cfg.resources:
                raise ConfigError(f"{addr} is not a resource instance in the configuration or "
                                  "state; check the key (see rhplan state list)")
        # resources recorded but no longer configured (or all of them, for -destroy)
        for addr, rs in state.resources.items():
            if addr in changes or not self.selected(addr):
                continue
            if addr in self.configs and not opts.destroy:
                continue
            removed = moved.forgotten(self.cfg, addr)
            if removed is not None:  # a removed block with destroy = false
                changes[addr] = moved.forget_change(addr, rs, removed)
                continue
            rc = self.cfg.resources.get(block_address(addr))
            if rc is not None and rc.prevent_destroy:
                raise ConfigError(
                    f"{addr} has lifecycle.prevent_destroy set, and this plan would destroy it; "
                    "remove prevent_destroy to allow it", rc.file, rc.line)
            reason = ("destroy requested" if opts.destroy else
                      _gone_reason(addr, rc, rs, self.cfg))
            changes[addr] = Change(addr, rs.type, rs.name, rs.provider, "delete", rs.attributes,
                                   None, reason, [], list(rs.dependencies),
                                   previous_address=moved_from.get(addr))
        moved.check_names(self.cfg, changes)
        ordered = sorted(changes.values(), key=lambda c: c.address)
        plan = Plan(state.lineage, state.serial, ordered, destroy=opts.destroy,
                    variables=self.saved_variables(opts.variables), targets=list(opts.targets),
                    replace=list(opts.replace), drift=drift or [])
        for name in self.cfg.module_vars:  # each module variable is typed and validated
            self.evaluation._local(name, 0)
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

    def _implicit_moves(self, state: State) -> dict[str, str]:
        """Terraform's implicit moves: a block that gains count takes over its recorded
        single instance as [0] (env.x -> env.x[0]); one that loses count takes [0] back.
        for_each has none (no key would be the obvious one)."""
        moves: dict[str, str] = {}
        for block, rc in self.cfg.resources.items():
            if rc.repeated == "count":
                old, new = block, f"{block}[0]"
            elif rc.repeated is None:
                old, new = f"{block}[0]", block
            else:
                continue
            if old in state.resources and new not in state.resources:
                moves[old] = new
        return moves

    def _keep_recorded(self, rc: ResourceConfig, addresses: list[str], state: State,
                       destroy: bool) -> None:
        for addr in addresses:
            self.planned[addr] = state.resources[addr].attributes
        if rc.repeated is not None:
            keys = [k for k in (_key_of(a) for a in addresses) if k is not None]
            self.instance_keys[rc.address] = sorted(keys, key=lambda k: (type(k) is str, k))
        elif destroy and rc.address not in self.planned:
            self.planned[rc.address] = {}

    def _dependencies(self, block: str) -> list[str]:
        """The instances a block's instances depend on (all of each block it refers to,
        as Terraform records them)."""
        out: list[str] = []
        for dep in self.graph.predecessors(block):
            rc = self.cfg.resources.get(dep)
            if rc is None or rc.repeated is None:
                out.append(dep)
            else:
                out += [rc.module + instance_address(rc.type, rc.label, k)
                        for k in self.instance_keys.get(dep, ())]
        return sorted(out)

    def _selected(self, state: State, opts: PlanOptions) -> tuple[set[str], set[str]] | None:
        """With -target: the blocks planned whole (a target without an index, and what
        targets depend on, or for -destroy what depends on them) and the instances named
        one by one; None plans everything."""
        if not opts.targets:
            return None
        g = self.graph.copy()
        for addr, rs in state.resources.items():
            for dep in rs.dependencies:
                g.add_edge(block_address(dep), block_address(addr))
        whole: set[str] = set()
        exact: set[str] = set()
        for t in opts.targets:
            b = block_address(t)
            (whole if t == b else exact).add(t)
            if b in g:
                # planning a target needs what it depends on; destroying it, what depends on it
                whole |= descendants(g, b) if opts.destroy else ancestors(g, b)
        return whole, exact

    def selected(self, addr: str) -> bool:
        """Whether this plan covers the resource instance at addr (see -target)."""
        if self._selection is None:
            return True
        whole, exact = self._selection
        return addr in exact or block_address(addr) in whole

    def _block_selected(self, block: str) -> bool:
        if self._selection is None:
            return True
        whole, exact = self._selection
        return block in whole or any(block_address(e) == block for e in exact)

    def _diff(self, rc: ResourceConfig, attrs: dict[str, Any], prior: ResourceState | None,
              provider: str, deps: list[str], opts: PlanOptions, replaced: set[str]) -> Change:
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
                    if any(r not in self.planned and r not in self.instance_keys
                           for r in o.refs if not r.startswith("local.")):
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


def _valid_attrs(type_: str) -> frozenset[str]:
    """The attributes a reference to a resource of type_ may read (not sensitive ones)."""
    valid = _VALID.get(type_)
    if valid is None:
        schema = RESOURCE_SCHEMAS[type_]
        valid = _VALID[type_] = (frozenset(schema.attrs) | frozenset(schema.blocks)) - {
            n for n, a in schema.attrs.items() if a.sensitive}
    return valid


_VALID: dict[str, frozenset[str]] = {}


def _key_of(address: str) -> Any:
    parts = parse_address(address)
    return parts[2] if parts else None


def _unknown_message(where: str, meta: str) -> str:
    """Terraform's "Invalid count / for_each argument" when it is known only after apply."""
    what = "how many instances" if meta == "count" else "which keys"
    return (f'{where}: the "{meta}" value depends on values known only after apply, so '
            f"rhplan cannot tell {what} to plan; build it from variables or locals, or "
            "apply what it depends on first with -target")


def drift_reason(reason: str, notes: list[str]) -> str:
    """The change's reason with what refresh found outside rhplan; a change with no
    reason of its own reads "found outside rhplan: …" (rendered in one pair of brackets)."""
    found = f"found outside rhplan: {'; '.join(notes)}"
    return f"{reason} ({found})" if reason else found


def _gone_reason(addr: str, rc: ResourceConfig | None, rs: ResourceState, cfg: Config
                 ) -> str:
    if (rc is None or rc.bare_default_of) and is_bare_env(addr, rs.attributes):
        cluster = rs.attributes["cluster"]  # config/default_env.py
        block = cfg.resources.get(block_address(cluster))
        if block is None or rc is not None:  # the cluster, or this instance of it, goes
            return f"{cluster}'s bare default env goes with it"
        return f"{cluster} {bare_replaced(block, cfg)}"
    if rc is None or addr == rc.address:
        return "no longer in the configuration"
    key = _key_of(addr)
    if rc.repeated == "count" and isinstance(key, int):
        return "its index is beyond count"
    if rc.repeated == "for_each" and isinstance(key, str):
        return "its key is no longer in for_each"
    return (f"{rc.address} now sets {rc.repeated}, so this address has no configuration"
            if rc.repeated else f"{rc.address} no longer sets count or for_each")


def _keep_name(inst: ResourceConfig, prior: ResourceState) -> ResourceConfig:
    """An instance keeps the on-host name it was made with, so a move never rebuilds:
    env.x moved to env.x[0] keeps "x"; env.x[0] moved back to env.x keeps x-0-HASH."""
    recorded = prior.attributes.get("name")
    if recorded == inst.name or not valid_name(recorded):
        return inst
    if inst.key is not None or recorded == instance_name(inst.name, 0) \
            or "name" not in inst.block.attrs:  # moved (block, state mv): name kept too
        return dataclasses.replace(inst, name=recorded, block_name=inst.label)
    return inst


def moved_state(state: State, moves: dict[str, str], in_place: bool = False) -> State:
    """The state with resources moved to new addresses (old -> new), and what refers to
    them (dependencies, an env's cluster / secrets / package reqs) following; a copy, or
    the state itself when in_place (apply records moves so)."""
    view = state if in_place else copy.copy(state)
    resources: dict[str, ResourceState] = {}
    for addr, rs in state.resources.items():
        new = moves.get(addr, addr)
        deps = [moves.get(d, d) for d in rs.dependencies]
        attrs = rs.attributes
        refs = _reference_attrs(rs.type)
        if any(attrs.get(n) for n in refs):
            attrs = {k: (_renamed(v, moves) if k in refs else v) for k, v in attrs.items()}
        if new != addr or deps != rs.dependencies or attrs is not rs.attributes:
            parts = parse_address(new)
            rs = dataclasses.replace(rs, address=new, dependencies=deps, attributes=attrs,
                                     name=parts[1] if parts else rs.name)
        resources[new] = rs
    view.resources = resources
    return view


def _reference_attrs(type_: str) -> frozenset[str]:
    """The attributes of a type that hold other resources' addresses (and `installed`,
    keyed by reqs entries, package.NAME among them)."""
    found = _REFERENCE_ATTRS.get(type_)
    if found is None:
        schema = RESOURCE_SCHEMAS.get(type_)
        names = {n for n, a in schema.attrs.items() if "ref(" in a.type or a.type == "list(req)"
                 } if schema else set()
        if names and schema and "installed" in schema.attrs:
            names.add("installed")
        found = _REFERENCE_ATTRS[type_] = frozenset(names)
    return found


_REFERENCE_ATTRS: dict[str, frozenset[str]] = {}


def _renamed(value: Any, moves: dict[str, str]) -> Any:
    if isinstance(value, str):
        return moves.get(value, value)
    if isinstance(value, list):
        return [_renamed(v, moves) for v in value]
    if isinstance(value, dict):
        return {moves.get(k, k): _renamed(v, moves) for k, v in value.items()}
    return value


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
