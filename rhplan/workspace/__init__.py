"""A configuration folder with its state backend: what the commands do, kept out of the
CLI (rhplan/cli.py parses options, calls one method here and prints through
rhplan/views/). Workspace loads the configuration with its variables and providers
and owns plan (with or without refresh), apply, refresh, import and saved plans;
StateWorkspace (state_ops.py), which it extends, the commands that only read or edit
the recorded state (state, output, status, run, force-unlock, the workspace commands).
backends.py says where the state lives, saved_plan.py what a saved plan must still
match, apply_run.py the steps of `apply` and `destroy`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rhplan import gitignore
from rhplan.config.decode import evaluate_providers
from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.config.model import Config
from rhplan.errors import ConfigError, RhplanError, StalePlanError
from rhplan.plan import imports
from rhplan.plan.diff import drift_changes
from rhplan.plan.model import Plan
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.plan.refresh import refresh
from rhplan.provider import RunContext
from rhplan.state import digest, workspaces
from rhplan.state.model import State
from rhplan.workspace.backends import (
    backend_for,
    check_backend,
    delete_workspace,
    new_workspace,
    workspace_names,
)
from rhplan.workspace.state_ops import StateWorkspace

if TYPE_CHECKING:
    from rhplan.apply import ApplyResult
    from rhplan.state.model import ResourceState
    from rhplan.workspace.apply_run import ApplyOutcome, ApplyRequest, ApplyView

__all__ = ["Workspace", "StateWorkspace", "validate", "plan_options", "sensitive_paths",
           "backend_for", "check_backend", "workspace_names", "new_workspace",
           "delete_workspace"]


class Workspace(StateWorkspace):
    def __init__(self, directory: Path | str, cli_vars: Sequence[str] = (),
                 var_files: Sequence[str] = (), order: Sequence[str] | None = None,
                 values_needed: bool = True):
        super().__init__(directory)
        self.cfg: Config = load_config(self.dir)  # type: ignore[misc]
        self.notes: list[str] = []  # for the user, printed after the plan
        if not values_needed:  # reading the state: which values are sensitive, not what
            from rhplan.config.values import UNKNOWN
            self.variables: dict[str, Any] = {n: UNKNOWN for n in self.cfg.variables}
        else:
            # order: "var" / "var-file" for each -var / -var-file, as given (later wins)
            self.variables = resolve_variables(self.cfg, list(cli_vars), list(var_files),
                                               list(order) if order is not None else None,
                                               self.notes)
        self.name = workspaces.current(self.dir)  # type: ignore[misc]
        self.backend = backend_for(self.cfg, self.name)  # type: ignore[misc]
        self.ctx = RunContext(self.dir)
        self.ctx.workspace = self.name
        self.ctx.provider_configs = evaluate_providers(self.cfg, self.variables, self.name)

    def planner(self) -> Planner:
        return Planner(self.cfg, self.ctx, self.variables)

    def make_plan(self, opts: PlanOptions, do_refresh: bool = True, parallelism: int = 10,
                  state: State | None = None, saving: bool = False
                  ) -> tuple[Plan, Planner, State]:
        """Plan against the recorded state (refreshed first unless told not to).
        The caller holds the lock. Only a plan being saved (saving) records the digest
        of the state it was made from: it costs ~0.3 s per 2,000 resources."""
        # before anything is written under .rhplan/ (and before local packages in this
        # folder are hashed, so the entry is in their first hash too)
        note = gitignore.ensure_ignored(self.dir)
        if note:
            self.notes.append(note)
        state = state if state is not None else self.backend.read()
        self.ctx.lineage = state.lineage
        digest.use_key(self.ctx, self.backend.digest_key)  # secrets' digests: keyed
        refreshing = do_refresh and bool(state.resources)
        read = state.digest() if saving or refreshing else ""
        drift: list[dict[str, str]] = []
        refresh_changed = False
        before_refresh = state
        if refreshing:
            state, drift = refresh(state, self.ctx, parallelism)
            refresh_changed = state.digest() != read  # before the planner upgrades digests
        planner = self.planner()
        opts.variables = self.variables
        imported = imports.adopt_blocks(self.cfg, self.ctx, state, planner.evaluation.evaluate,
                                        planner.desired
                                        ) if self.cfg.imports and not (
            opts.destroy or opts.refresh_only) else {}
        plan = planner.plan(state, opts, drift)
        plan.drifted = drift_changes(before_refresh, state) if refreshing else []
        if plan.drifted:  # what the configuration derives from sensitive values stays hidden
            hidden = self.state_sensitive_paths(state)
            for d in plan.drifted:
                d.sensitive = hidden.get(d.address, [])
        plan.timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if saving:  # show -json PLANFILE shows the configuration it was made from
            from rhplan.config.tfjson import configuration_json
            plan.configuration = configuration_json(self.cfg)
        for c in plan.changes:  # import blocks: adopted into the state apply records
            c.imported_id = imported.get(c.address)
        for c in plan.changes:  # shown as (sensitive value), as Terraform does
            c.sensitive = sensitive_paths(planner.evaluation.sensitive_attrs.get(c.address, []),
                                          c.after)
        if any(c.action == "delete" and c.address in self.cfg.resources for c in plan.changes):
            recorded = self.state_sensitive_paths(state)  # not evaluated by a destroy plan
            for c in plan.changes:
                if c.action == "delete":
                    c.sensitive = recorded.get(c.address, [])
        self.backend.store_digest_key()  # a new key is kept once a plan made with it stands
        from rhplan.state.model import RHPLAN_VERSION
        plan.rhplan_version = RHPLAN_VERSION
        plan.state_digest, plan.refresh_changed = read, refresh_changed
        plan.workspace = self.name
        return plan, planner, state

    def state_sensitive_paths(self, state: State) -> dict[str, list[str]]:
        """Which recorded attributes the configuration derives from sensitive values
        (for `show`): each resource block evaluated against the recorded values of the
        others, nothing planned and no host reached."""
        from rhplan.graph import topological_order
        try:
            planner = self.planner()
        except ConfigError:
            return {}  # a configuration with a cycle: its plan says so; the state shows
        planner.planned = {a: r.attributes for a, r in state.resources.items()}
        out: dict[str, list[str]] = {}
        for addr in topological_order(planner.graph):
            try:
                planner.evaluation.resource(self.cfg.resources[addr])
            except ConfigError:
                continue  # shown as recorded; a plan reports the error
            recorded = state.resources.get(addr)
            marked = planner.evaluation.sensitive_attrs.get(addr, [])
            if recorded is not None and marked:
                out[addr] = sensitive_paths(marked, recorded.attributes)
        return out

    def apply(self, plan: Plan, planner: Planner, refreshed: State, parallelism: int,
              out: Callable[[str], None], progress_every: float = 10.0) -> ApplyResult:
        """Apply plan, starting from the refreshed state it was made against. The caller
        holds the lock."""
        current = self.backend.read()
        refreshed.serial = current.serial
        refreshed.lineage = current.lineage
        self.ctx.lineage = current.lineage
        if not current.serial:
            # a first apply records its lineage before anything is created: what a
            # killed apply launched is tagged with it and found again by the next one
            self.backend.write(current)
            refreshed.serial = current.serial
        from rhplan.apply import Applier  # the apply machinery: only when applying
        return Applier(plan, planner, refreshed, self.backend, self.ctx, parallelism, out,
                       progress_every).run()

    def save_refreshed(self, refreshed: State) -> None:
        """An apply with nothing to change still records what its refresh found (a
        cluster gone outside rhplan), as Terraform does; otherwise the state would list
        it forever and every destroy would say "No changes". The caller holds the lock."""
        current = self.backend.read()
        if refreshed.to_json()["resources"] != current.to_json()["resources"]:
            refreshed.serial, refreshed.lineage = current.serial, current.lineage
            self.backend.write(refreshed)

    def replan_saved(self, saved: Plan, source: str, parallelism: int = 10
                     ) -> tuple[Plan, Planner, State]:
        """Check a saved plan still fits, and rebuild its in-memory parts (secret values,
        the evaluator) by planning again. What it is applied to is derived here, never
        taken from the file: the backend's state (which must be the one the plan was made
        from), refreshed again if the plan's refresh changed it; the file's prior_state
        must match that, else someone edited it or the world moved on."""
        from rhplan.workspace.saved_plan import (  # only for apply PLANFILE
            check_recorded,
            different_state,
            fingerprint,
            first_difference,
            saved_variables,
            typed_again,
        )
        current = check_recorded(saved, source, self.name, self.backend)
        recorded = State.from_json(saved.prior_state, source, backup=None) \
            if saved.prior_state is not None else None
        opts = PlanOptions(destroy=saved.destroy, targets=list(saved.targets),
                           replace=list(saved.replace), refresh_only=saved.refresh_only)
        digest.use_key(self.ctx, self.backend.digest_key)
        self.variables = {**self.variables, **typed_again(
            self.cfg, saved_variables(saved, self.variables, source, self.ctx))}
        prior, drift = current, saved.drift
        if saved.refresh_changed and current.resources:
            self.ctx.lineage = current.lineage
            prior, drift = refresh(current, self.ctx, parallelism)
        plan, planner, state = self.make_plan(opts, do_refresh=False, state=prior)
        plan.drift = drift
        what = first_difference(recorded, state)
        if what:
            raise different_state(source, ("refreshing now finds " if saved.refresh_changed
                                            else "") + what)
        if fingerprint(plan) != fingerprint(saved):
            raise StalePlanError(
                f"{source} no longer matches the configuration (files, variables or secrets "
                "changed since it was made); run rhplan plan -out again")
        return plan, planner, state


    @classmethod
    def for_reading(cls, directory: Path | str) -> Workspace:
        """For `show` and `state show`: which recorded values the configuration derives
        from sensitive ones, without variable values (each is unknown)."""
        return cls(directory, values_needed=False)

    def state_view(self) -> tuple[State, dict[str, list[str]]]:
        """The recorded state and, per address, its attributes shown as (sensitive value)."""
        state = self.backend.read()
        return state, self.state_sensitive_paths(state)

    def instance_view(self, address: str) -> tuple[ResourceState, list[str]]:
        """`state show ADDRESS`: the one recorded instance ADDRESS names (else an error
        saying why) and its attributes shown as (sensitive value)."""
        from rhplan.workspace.state_ops import one_instance
        state, hidden = self.state_view()
        found = one_instance(state, address)
        return state.resources[found], hidden.get(found, [])

    def plan_changes(self, opts: PlanOptions, do_refresh: bool = True, parallelism: int = 10,
                     saving: bool = False) -> tuple[Plan, State]:
        """`plan`: make_plan under the lock; the plan and the (refreshed) state it was
        made against, which a saved plan records."""
        with self.backend.locked("plan"):
            plan, _, refreshed = self.make_plan(opts, do_refresh, parallelism, saving=saving)
        return plan, refreshed

    def save_plan(self, plan: Plan, refreshed: State, out: str) -> None:
        """plan -out: the plan file, with the state apply starts from (0600: it holds
        the prior state and secret digests)."""
        from rhplan.plan.model import save_plan
        plan.prior_state = refreshed.to_json()  # what apply starts from
        save_plan(self.out_file(out), plan, out)

    def replan_file(self, name: str, parallelism: int = 10
                    ) -> tuple[Plan, Plan, Planner, State]:
        """apply PLANFILE: the saved plan and the same plan made again here (see
        replan_saved), with its planner and the state it applies to. The caller holds
        the lock."""
        saved = self.saved_plan(name)
        return (saved, *self.replan_saved(saved, name, parallelism))

    def apply_changes(self, request: ApplyRequest, view: ApplyView) -> ApplyOutcome:
        """`apply` and `destroy`, under the lock: plan (or take a saved plan), show it,
        ask, apply; rhplan/workspace/apply_run.py."""
        from rhplan.workspace.apply_run import run_apply
        return run_apply(self, request, view)

    def refresh_state(self, parallelism: int = 10) -> Refreshed:
        """`refresh`: read every recorded resource and, under the lock, record what
        changed outside rhplan."""
        with self.backend.locked("refresh"):
            state = self.backend.read()
            fresh, drift = refresh(state, self.ctx, parallelism)
            updated = fresh.to_json()["resources"] != state.to_json()["resources"]
            if updated:
                self.backend.write(fresh)
        return Refreshed(state, fresh, drift, updated)

    def import_resource(self, address: str, id_: str, starting: Callable[[], None]
                        ) -> ResourceState:
        """`import ADDRESS ID`: adopt an existing object into the state, under the lock;
        nothing on the host changes. `starting` is called once the state is read."""
        with self.backend.locked("import"):
            state = self.backend.read()
            self.ctx.lineage = state.lineage
            digest.use_key(self.ctx, self.backend.digest_key)
            starting()
            rs = imports.adopt(self.cfg, self.ctx, state, address, id_,
                               desired=self.planner().desired)
            state.resources[rs.address] = rs
            self.backend.write(state)
        return rs


class Refreshed:
    """What `refresh` found: the state before and after, the drift notes, and whether
    the state was written."""

    def __init__(self, before: State, after: State, drift: list[dict[str, str]],
                 updated: bool):
        self.before, self.after, self.drift, self.updated = before, after, drift, updated

    def gone(self) -> set[str]:
        return set(self.before.resources) - set(self.after.resources)

    def providers(self) -> dict[str, str]:
        return {a: r.provider for a, r in self.before.resources.items()}


def plan_options(destroy: bool = False, targets: Sequence[str] = (), replace: Sequence[str] = (),
                 refresh_only: bool = False, refreshing: bool = True) -> PlanOptions:
    """The planning mode the flags ask for; Terraform's refresh-only mode takes no other."""
    if refresh_only:
        if destroy:
            raise RhplanError("-refresh-only and -destroy cannot be used together: a "
                              "refresh-only plan changes nothing; drop one of them")
        if not refreshing:
            raise RhplanError("-refresh-only with -refresh=false has nothing to do; drop "
                              "-refresh=false")
        if replace:
            raise RhplanError("-replace cannot be used with -refresh-only, which replaces "
                              "nothing; drop one of them")
    return PlanOptions(destroy, list(targets), list(replace), refresh_only=refresh_only)


def validate(directory: Path | str, cli_vars: Sequence[str] = (), var_files: Sequence[str] = (),
             order: Sequence[str] | None = None) -> list[str]:
    """Terraform's validate: the configuration checked on its own (syntax, schemas, types,
    references, cycles, count / for_each), needing no variable values or secrets. A
    variable without a value is unknown; no state, backend or provider is reached, and
    nothing is read from the environment but given variables. Returns notes (warnings)."""
    d = Path(directory).absolute()
    cfg = load_config(d)
    check_backend(cfg)
    notes: list[str] = []
    variables = resolve_variables(cfg, list(cli_vars), list(var_files),
                                  list(order) if order is not None else None, notes,
                                  missing_unknown=True)
    ctx = RunContext(d)
    ctx.workspace = workspaces.current(d)
    ctx.provider_configs = evaluate_providers(cfg, variables, ctx.workspace)
    planner = Planner(cfg, ctx, variables)
    planner.evaluation.validating = True
    planner.plan(State.new(), PlanOptions(validate=True))
    return notes


def sensitive_paths(marked: list[str], after: dict[str, Any] | None) -> list[str]:
    """The marked attribute paths of a resource, and the attributes the resource type
    worked out from them (a package's spec holds its git_url): any attribute whose
    text holds a sensitive string is sensitive too."""
    if not marked or not after:
        return list(marked)
    from rhplan.plan.sensitive import _strings
    secrets: list[str] = []
    for path in marked:
        name, _, key = path.partition(".")
        value = after.get(name)
        if key and isinstance(value, dict):
            value = value.get(key)
        secrets += [t for t in _strings(value) if len(t) >= 4]
    out = list(marked)
    seen = {p.partition(".")[0] for p in marked}
    for name, value in after.items():
        if name not in seen and any(sec in t for t in _strings(value) for sec in secrets):
            out.append(name)
    return out
