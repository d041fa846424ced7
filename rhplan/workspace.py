"""A configuration directory with its state backend: the operations the commands
share (load, plan with or without refresh, apply a plan), kept out of the CLI."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rhplan import gitignore
from rhplan.config.decode import evaluate_providers, resolve_variables
from rhplan.config.load import Config, load_config
from rhplan.errors import ConfigError, RhplanError, StalePlanError
from rhplan.plan import imports
from rhplan.plan.model import Plan
from rhplan.plan.planner import (
    SENSITIVE_VARIABLE,
    Planner,
    PlanOptions,
    drift_changes,
    sensitive_digest,
)
from rhplan.plan.refresh import refresh
from rhplan.provider import RunContext
from rhplan.state import digest, workspaces
from rhplan.state.backend import Backend
from rhplan.state.local import LocalBackend
from rhplan.state.model import State

if TYPE_CHECKING:
    from rhplan.apply import ApplyResult


class Workspace:
    def __init__(self, directory: Path | str, cli_vars: Sequence[str] = (),
                 var_files: Sequence[str] = (), order: Sequence[str] | None = None,
                 values_needed: bool = True):
        self.dir = Path(directory).absolute()
        self.cfg: Config = load_config(self.dir)
        self.notes: list[str] = []  # for the user, printed after the plan
        if not values_needed:  # reading the state: which values are sensitive, not what
            from rhplan.config.evaluate import UNKNOWN
            self.variables: dict[str, Any] = {n: UNKNOWN for n in self.cfg.variables}
        else:
            # order: "var" / "var-file" for each -var / -var-file, as given (later wins)
            self.variables = resolve_variables(self.cfg, list(cli_vars), list(var_files),
                                               list(order) if order is not None else None,
                                               self.notes)
        self.name = workspaces.current(self.dir)  # the selected workspace
        self.backend = backend_for(self.cfg, self.name)
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
        if saved.workspace != self.name:
            raise StalePlanError(
                f"{source} was made in workspace {saved.workspace!r}, but the workspace in "
                f"use is {self.name!r}; run rhplan workspace select {saved.workspace}, or "
                "plan again here")
        current = self.backend.read()
        if saved.lineage != current.lineage and (current.resources or current.serial):
            raise StalePlanError(
                f"{source} was made for another state (lineage {saved.lineage}, the state is "
                f"{current.lineage}); run rhplan plan -out again")
        if saved.serial != current.serial:
            raise StalePlanError(
                f"{source} is stale: the state changed since it was made (serial {saved.serial}, "
                f"now {current.serial}); run rhplan plan -out again")
        if saved.state_digest != current.digest():
            raise _different_state(source, "the recorded state does not match the one it "
                                   f"was planned from, at the same serial {current.serial}")
        recorded = State.from_json(saved.prior_state, source, backup=None) \
            if saved.prior_state is not None else None
        opts = PlanOptions(destroy=saved.destroy, targets=list(saved.targets),
                           replace=list(saved.replace), refresh_only=saved.refresh_only)
        digest.use_key(self.ctx, self.backend.digest_key)
        self.variables = {**self.variables, **_typed_again(
            self.cfg, _saved_variables(saved, self.variables, source, self.ctx))}
        prior, drift = current, saved.drift
        if saved.refresh_changed and current.resources:
            self.ctx.lineage = current.lineage
            prior, drift = refresh(current, self.ctx, parallelism)
        plan, planner, state = self.make_plan(opts, do_refresh=False, state=prior)
        plan.drift = drift
        what = _first_difference(recorded, state)
        if what:
            raise _different_state(source, ("refreshing now finds " if saved.refresh_changed
                                            else "") + what)
        if _fingerprint(plan) != _fingerprint(saved):
            raise StalePlanError(
                f"{source} no longer matches the configuration (files, variables or secrets "
                "changed since it was made); run rhplan plan -out again")
        return plan, planner, state


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
    from rhplan.plan.planner import _strings
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


def _different_state(source: str, what: str) -> StalePlanError:
    return StalePlanError(f"the saved plan {source} was made from a different state ({what}); "
                          f"run rhplan plan -out {source} again")


def _first_difference(recorded: State | None, derived: State) -> str:
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


def _saved_variables(saved: Plan, given: dict[str, Any], source: str,
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


def _typed_again(cfg: Config, values: dict[str, Any]) -> dict[str, Any]:
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


def _fingerprint(plan: Plan) -> str:
    return json.dumps([[c.address, c.action, c.to_key()] for c in plan.changes], sort_keys=True,
                      default=str)


def backend_for(cfg: Config, workspace: str | None = None) -> Backend:
    """The backend the configuration's `rhplan { backend "TYPE" { ... } }` block names,
    holding the state of `workspace` (by default the selected one)."""
    name = workspace if workspace is not None else workspaces.current(cfg.dir)
    b = cfg.backend
    if b.type == "s3":
        return _s3_backend(cfg, name)
    if b.type != "local":
        raise ConfigError(f'backend "{b.type}" is not available; use "local" or "s3"',
                          b.file, b.line)
    path = Path(str(b.attrs.get("path", "rhplan.state.json")))
    path = workspaces.local_state_path(cfg.dir, path if path.is_absolute() else cfg.dir / path,
                                       name, _workspace_dir(cfg))
    if name != workspaces.DEFAULT:
        # made on first use, as Terraform's local backend does (TF_WORKSPACE in CI)
        path.parent.mkdir(parents=True, exist_ok=True)
    return LocalBackend(path)


def workspace_names(cfg: Config) -> list[str]:
    """Every workspace of the configuration's backend, "default" first."""
    if cfg.backend.type == "s3":
        backend = _s3_backend(cfg, workspaces.DEFAULT)
        prefix = _key_prefix(cfg)
        keys = backend.list_keys(prefix + "/")  # type: ignore[attr-defined]
        return workspaces.s3_names(keys, backend.key, prefix)  # type: ignore[attr-defined]
    return workspaces.local_names(cfg.dir, _workspace_dir(cfg))


def _workspace_dir(cfg: Config) -> str:
    """The local backend's workspace_dir (Terraform's name), rhplan.state.d by default."""
    b = cfg.backend
    value = b.attrs.get("workspace_dir", workspaces.LOCAL_DIR)
    if not isinstance(value, str) or not value.strip() or Path(value).is_absolute() \
            or ".." in Path(value).parts:
        raise ConfigError('backend "local" workspace_dir must be a folder inside the '
                          'configuration folder, like "rhplan.state.d"', b.file, b.line)
    return value


def _key_prefix(cfg: Config) -> str:
    """The S3 backend's workspace_key_prefix (Terraform's name), env: by default."""
    b = cfg.backend
    value = b.attrs.get("workspace_key_prefix", workspaces.S3_PREFIX)
    if not isinstance(value, str) or not value or value.startswith("/") \
            or value.endswith("/"):
        raise ConfigError('backend "s3" workspace_key_prefix must be a non-empty string '
                          'without a leading or trailing /, like "env:"', b.file, b.line)
    return value


def new_workspace(cfg: Config, name: str) -> None:
    """Create workspace NAME with an empty state (as Terraform does), and select it."""
    workspaces.check_name(name)
    if name in workspace_names(cfg):
        raise RhplanError(f'workspace "{name}" already exists; select it with rhplan '
                          f"workspace select {name}")
    backend = backend_for(cfg, name)
    with backend.locked("workspace new"):
        backend.write(State.new())
    workspaces.select(cfg.dir, name)


def delete_workspace(cfg: Config, name: str, force: bool) -> int:
    """Delete workspace NAME's state; refuses one that still tracks resources unless
    force. Returns how many resources were forgotten."""
    workspaces.check_name(name)
    if name == workspaces.DEFAULT:
        raise RhplanError('the default workspace cannot be deleted')
    if name not in workspace_names(cfg):
        raise RhplanError(f'workspace "{name}" does not exist; see rhplan workspace list')
    if name == workspaces.current(cfg.dir):
        raise RhplanError(f'workspace "{name}" is the one in use; select another '
                          "(rhplan workspace select default) and delete it then")
    backend = backend_for(cfg, name)
    with backend.locked("workspace delete"):
        tracked = sorted(backend.read().resources)
        if tracked and not force:
            shown = ", ".join(tracked[:5]) + (f" and {len(tracked) - 5} more"
                                              if len(tracked) > 5 else "")
            raise RhplanError(
                f'workspace "{name}" still tracks {len(tracked)} resource(s) ({shown}); run '
                "rhplan destroy in it first, or add -force to delete it and forget them "
                "(they keep running, unmanaged)")
        if isinstance(backend, LocalBackend):
            _remove_local_states(backend)
        else:
            backend.delete_state()  # type: ignore[attr-defined]
    if isinstance(backend, LocalBackend):
        import shutil
        shutil.rmtree(backend.path.parent, ignore_errors=True)  # lock files, digest key
    return len(tracked)


def _remove_local_states(backend: LocalBackend) -> None:
    for p in (backend.path, backend.backup_path, backend.digest_key_path):
        p.unlink(missing_ok=True)


def _s3_backend(cfg: Config, workspace: str = workspaces.DEFAULT) -> Backend:
    values = _s3_settings(cfg)
    from rhplan.state.s3 import S3Backend  # imports botocore: only when used
    key = workspaces.s3_key(str(values["key"]), workspace, _key_prefix(cfg))
    return S3Backend(str(values["bucket"]), key, region=values["region"],
                     endpoint_url=values["endpoint_url"], profile=values["profile"])


def check_backend(cfg: Config) -> None:
    """The backend block's settings, checked without reaching the backend (validate)."""
    if cfg.backend.type == "s3":
        _s3_settings(cfg)
        _key_prefix(cfg)
    elif cfg.backend.type == "local":
        _workspace_dir(cfg)
    else:
        backend_for(cfg)  # names the backends there are


def _s3_settings(cfg: Config) -> dict[str, str | None]:
    b = cfg.backend
    missing = [k for k in ("bucket", "key") if k not in b.attrs]
    if missing:
        raise ConfigError(f'backend "s3" needs {" and ".join(missing)}: write bucket = '
                          '"my-bucket" and key = "path/rhplan.state.json"', b.file, b.line)
    values: dict[str, str | None] = {}
    for k in ("bucket", "key", "region", "endpoint_url", "profile"):
        v = b.attrs.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            raise ConfigError(f'backend "s3" {k} must be a non-empty string', b.file, b.line)
        values[k] = v
    key = str(values["key"])
    if key.startswith("/") or key.endswith("/"):
        raise ConfigError(f'backend "s3" key {key!r} must name an object, like '
                          '"path/rhplan.state.json" (no leading or trailing /)', b.file, b.line)
    return values

