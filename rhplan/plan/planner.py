"""The planner: configuration + (refreshed) state in, Plan out. It walks the blocks in
dependency order, evaluates each instance (count / for_each: plan/repetition.py), diffs
it against the state (plan/diff.py), applies moves (plan/moved.py), imports and
lifecycle rules, plans the deletion of what is no longer configured, and the outputs
(plan/outputs.py); -target and -replace are plan/targets.py's. No host is touched
here except through the resource types' read() during refresh, a separate step."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rhplan.config.decode import Evaluation
from rhplan.config.default_env import bare_cluster_of, bare_reason
from rhplan.config.evaluate import (
    UNKNOWN,
    EvalError,
    InstanceMap,
    Instances,
    ResourceValue,
    is_known,
)
from rhplan.config.model import Config, ResourceConfig
from rhplan.config.schema import RESOURCE_SCHEMAS
from rhplan.errors import ConfigError
from rhplan.graph import build_graph, topological_order
from rhplan.names import (
    block_address,
    instance_address,
    instance_name,
    valid_name,
)
from rhplan.plan import imports, lifecycle, moved, targets
from rhplan.plan.diff import Differ, drift_reason, gone_reason, key_of
from rhplan.plan.model import Change, Plan
from rhplan.plan.moved import moved_state
from rhplan.plan.outputs import output_changes
from rhplan.plan.repetition import repetition
from rhplan.plan.sensitive import saved_variables, sensitive_digest, upgrade_digests
from rhplan.provider import RunContext
from rhplan.resources import TYPES
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


__all__ = ["PlanOptions", "Planner"]


class Planner:
    def __init__(self, cfg: Config, ctx: RunContext, variables: dict[str, Any]):
        if cfg.repeated_modules:  # module count / for_each instances
            from rhplan.config.module_repeat import expand_repeated
            expand_repeated(cfg, variables, ctx.workspace)
        self.cfg = cfg
        self.ctx = ctx
        self.graph = build_graph(cfg)
        self.planned: dict[str, dict[str, Any]] = {}
        self.evaluation = Evaluation(cfg, variables, self._resolve, ctx.workspace)
        # secrets whose recorded plain digest this plan replaced: address -> plain digest
        self._plain_digests: dict[str, str] = {}
        # each resource's diff; it remembers the secrets whose digest changed only as far
        # as can be told (made with another key)
        self.differ = Differ(ctx)
        # repetition: each block's instances' keys (None for a block without count or
        # for_each), and each planned instance's own configuration
        self.instance_keys: dict[str, list[Any]] = {}
        self.configs: dict[str, ResourceConfig] = {}
        self._selection: targets.Selection | None = None  # -target (plan/targets.py)
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
        pairs = repetition(rc, self.evaluation, self._validating)
        if pairs is None:  # validate: known only after apply
            self._unknown.add(rc.address)
            return out
        for key, bindings in pairs:
            out.append(dataclasses.replace(
                rc, name=instance_name(rc.name, key), key=key, block_name=rc.label,
                bindings=bindings, instance=rc.module + instance_address(rc.type, rc.label, key)))
        return out


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
        opts.targets, opts.replace = targets.check_requested(opts.targets, opts.replace,
                                                             self.cfg, state)
        if opts.refresh_only:  # Terraform's refresh-only mode: nothing to undo the drift
            return Plan(state.lineage, state.serial, [], variables=self.saved_variables(
                opts.variables), targets=list(opts.targets), drift=drift or [],
                refresh_only=True)
        if not opts.validate and self.cfg.module_errors:  # a module's count / for_each
            raise self.cfg.module_errors[0]  # unknown at plan (config/module_repeat.py)
        self._selection = targets.select(self.graph, state, opts.targets, opts.destroy)
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
        changes = self._plan_configured(state, opts, drift or [], moved_from)
        for addr in opts.targets + opts.replace:
            if addr not in self.configs and addr not in state.resources \
                    and addr not in self.cfg.resources:
                raise ConfigError(f"{addr} is not a resource instance in the configuration or "
                                  "state; check the key (see rhplan state list)")
        self._plan_gone(state, opts, changes, moved_from)
        moved.check_names(self.cfg, changes)
        ordered = sorted(changes.values(), key=lambda c: c.address)
        plan = Plan(state.lineage, state.serial, ordered, destroy=opts.destroy,
                    variables=self.saved_variables(opts.variables), targets=list(opts.targets),
                    replace=list(opts.replace), drift=drift or [])
        for name in self.cfg.module_vars:  # each module variable is typed and validated
            self.evaluation._local(name, 0)
        plan.output_changes = output_changes(
            self.cfg, self.evaluation, lambda r: r in self.planned or r in self.instance_keys,
            state, opts.destroy)
        return plan

    def _plan_configured(self, state: State, opts: PlanOptions, drift: list[dict[str, str]],
                         moved_from: dict[str, str]) -> dict[str, Change]:
        """Each configured block's instances, in dependency order: planned against what is
        recorded, or (outside -target, destroying) kept as recorded."""
        recorded: dict[str, list[str]] = {}  # block address -> its recorded instances
        for addr in state.resources:
            b = addr if addr[-1] != "]" else block_address(addr)
            recorded.setdefault(b, []).append(addr)
        changes: dict[str, Change] = {}
        replaced: set[str] = set()
        for block in topological_order(self.graph):
            rc = self.cfg.resources[block]
            if opts.destroy or (self._selection is not None
                                and not self._selection.covers_block(block)):
                # outside -target (or destroying): keep what is recorded, so references
                # still resolve
                self._keep_recorded(rc, recorded.get(block, []), state, opts.destroy)
                continue
            instances = [rc] if rc.repeated is None else self.expand(rc)
            if rc.repeated is not None:
                self.instance_keys[block] = [i.key for i in instances]
            deps = self._dependencies(block)
            for inst in instances:
                self._plan_instance(inst, state, deps, opts, drift, moved_from, changes,
                                    replaced)
        return changes

    def _plan_instance(self, inst: ResourceConfig, state: State, deps: list[str],
                       opts: PlanOptions, drift: list[dict[str, str]],
                       moved_from: dict[str, str], changes: dict[str, Change],
                       replaced: set[str]) -> None:
        """One instance's change into `changes`, unless it is not planned (another
        instance is targeted; a bare env on a cluster without Ray)."""
        addr = inst.address
        prior = state.resources.get(addr)
        # a bare default env depends on its cluster alone (config/default_env.py)
        if inst.bare_default_of and self.planned.get(bare_cluster_of(inst), {}).get(
                "ray_status") == "skipped":
            return  # no Ray on its cluster: nothing to build a bare env in
        if prior is not None and prior.attributes.get("name") != inst.name:
            inst = _keep_name(inst, prior)
        self.configs[addr] = inst
        if self._selection is not None and not self.selected(addr):
            # -target names another instance
            if prior is not None:
                self.planned[addr] = prior.attributes
            return
        attrs = self.desired(inst, lifecycle.ignored_values(inst, prior))
        if prior is not None:
            upgrade_digests(inst, attrs, prior, state, self.ctx, self._plain_digests)
        provider = self.provider_of(inst, attrs)
        change = self.differ.diff(inst, attrs, prior, provider, deps, opts, replaced)
        lifecycle.shape(inst, change, attrs, changes, self.desired)
        change.deposed = lifecycle.deposed_names(prior)
        notes = [d["message"].removeprefix(f"{addr}: ") for d in drift
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

    def _plan_gone(self, state: State, opts: PlanOptions, changes: dict[str, Change],
                   moved_from: dict[str, str]) -> None:
        """Resources recorded but no longer configured (or all of them, for -destroy)."""
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
                      gone_reason(addr, rc, rs, self.cfg))
            changes[addr] = Change(addr, rs.type, rs.name, rs.provider, "delete", rs.attributes,
                                   None, reason, [], list(rs.dependencies),
                                   previous_address=moved_from.get(addr))

    def saved_variables(self, variables: dict[str, Any]) -> dict[str, Any]:
        """The variables as a saved plan keeps them (plan/sensitive.py)."""
        return saved_variables(self.cfg, self.ctx, variables)

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

    def selected(self, addr: str) -> bool:
        """Whether this plan covers the resource instance at addr (see -target)."""
        return self._selection is None or self._selection.covers(addr)

    def _keep_recorded(self, rc: ResourceConfig, addresses: list[str], state: State,
                       destroy: bool) -> None:
        for addr in addresses:
            self.planned[addr] = state.resources[addr].attributes
        if rc.repeated is not None:
            keys = [k for k in (key_of(a) for a in addresses) if k is not None]
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

def _valid_attrs(type_: str) -> frozenset[str]:
    """The attributes a reference to a resource of type_ may read (not sensitive ones)."""
    valid = _VALID.get(type_)
    if valid is None:
        schema = RESOURCE_SCHEMAS[type_]
        valid = _VALID[type_] = (frozenset(schema.attrs) | frozenset(schema.blocks)) - {
            n for n, a in schema.attrs.items() if a.sensitive}
    return valid


_VALID: dict[str, frozenset[str]] = {}


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


