"""env "NAME" { cluster, reqs, env_vars, secrets, setup_cmds, compute }: a Python
environment on one node of a cluster (the head, or the node its compute places it on:
rhplan/resources/placement.py, recorded as `node`), built through the provider's
connection to that host.

Packages are tracked one by one: `installed` maps each entry of reqs to the
distributions installing it added (name==version), so a plan can add or remove a
single package. A refresh checks each entry itself (present, in its specifier, from
its folder or git commit) and that what its install added is still there.

The servlet's Ray is installed first; every entry is then resolved together with
ray==X under the user's pins (ENV/rhplan/constraints.txt), so neither side is moved
silently: a conflict fails, naming both, before the entry installs anything.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rhplan import envs, facts, pyproject_reqs, sync, working_dir
from rhplan.config.evaluate import UNKNOWN
from rhplan.config.load import ResourceConfig
from rhplan.connection import Connection
from rhplan.errors import PartialFailure, ProviderError
from rhplan.lazy import lazy_module
from rhplan.packages import (
    REQUIREMENTS,
    Requirement,
    parse_requirement,
    pinned,
    reqs_file,
    unpinned,
)
from rhplan.provider import RunContext
from rhplan.resources import env_plan
from rhplan.resources.base import ResourceType
from rhplan.state.model import ResourceState, State

manage = lazy_module("rhplan.servlets.manage")  # imports paramiko: not needed to plan

# what a running servlet holds, by attribute: a change to any restarts it (an
# interpreter cannot reload upgraded modules, nor see a new environment)
_ENVIRONMENT = ("env_vars", "secrets", "secrets_sha256", "env_file_vars",
                "env_file_secret_keys", "env_file_sha256")
_HELD = {"reqs": "packages", "sources": "packages", "git_commits": "packages",
         "compute": "resources",
         "working_dir_remote": "working_dir",
         **{k: "environment" for k in _ENVIRONMENT}}


# what a restart by apply does to what its callers put into the servlet (host_script.py
# hands the store over through ENV/rhplan/objects.pickle), and what a replacement does
KEPT_ON_RESTART = ("its objects and instances are handed to the new one where they can be "
                   "pickled; apply names any lost")
LOST_ON_REPLACE = "its servlet's objects and instances are lost"


class EnvType(ResourceType):
    after_apply = ("installed", "servlet_pid")

    def replace_note(self) -> str:
        return LOST_ON_REPLACE  # a new env, often elsewhere: nothing is handed over

    def replaced_with(self, attrs: dict[str, Any]) -> list[str]:
        # an env lives inside its cluster's folder: a new cluster means a new env
        return [attrs["cluster"]] if isinstance(attrs.get("cluster"), str) else []

    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return env_plan.plan_values(rc, attrs, ctx, planned)  # resources/env_plan.py

    def _sync_working_dir(self, conn: Connection, rs: ResourceState, ctx: RunContext,
                          tell: bool = True) -> None:
        """Sync the working_dir to its copy on the host (only changed files travel) and
        tell the env's servlet where it is (ENV/rhplan/working_dir.json)."""
        a = rs.attributes
        remote = a.get("working_dir_remote")
        if not remote:
            return
        root = working_dir.resolve(a.get("working_dir"), ctx.config_dir)
        res = working_dir.sync_to(conn, root, remote, a.get("working_dir_max_mb") or
                                  working_dir.DEFAULT_MAX_MB,
                                  working_dir.cache_dir(ctx.config_dir),
                                  a.get("python") or "python3")  # the env's: always there
        a["working_dir_hash"] = res.tree_hash
        if tell:  # a re-sync to the same place: the servlet knows it already
            conn.put_bytes(json.dumps({"path": remote}).encode(),
                           posixpath.join(a["path"], "rhplan", "working_dir.json"))


    def replacement(self, before: dict[str, Any], after: dict[str, Any], changed: list[str],
                    ctx: RunContext) -> tuple[list[str], str]:
        # an env lives on its node's disk: another node means building it there
        if "node" in changed:
            return ["node"], (f"it moves to {after.get('node') or 'the head'} (from "
                              f"{before.get('node') or 'the head'}): built there, its servlet "
                              "started there")
        return [], ""

    def refine_update(self, before: dict[str, Any], after: dict[str, Any],
                      changed: list[str]) -> str:
        if "servlet" in changed:
            after["servlet_pid"] = UNKNOWN
            return "its servlet will be started"
        why = sorted({_HELD[k] for k in changed if k in _HELD})
        if why:
            after["servlet_pid"] = UNKNOWN
            return (f"its servlet restarts to pick up the new {' and '.join(why)}; "
                    f"{KEPT_ON_RESTART}")
        if "working_dir_hash" in changed:
            return ("code re-synced; its servlet keeps running and re-imports the changed "
                    "modules on the next call")
        return ""

    # ---- apply -----------------------------------------------------------
    def _conn(self, rs: ResourceState, ctx: RunContext, state: State, head: bool = False
              ) -> tuple[Connection, dict]:
        """A connection to the node the env lives on (its `node`, else the head); head:
        to the head whatever the env's node (Ray-wide questions, the autostop clock)."""
        cluster = state.resources.get(rs.attributes["cluster"])
        if cluster is None:
            raise ProviderError(f"{rs.address}: its cluster {rs.attributes['cluster']} is not in "
                                "the state; apply the cluster first")
        provider = ctx.provider(cluster.provider)
        node = rs.attributes.get("node")
        if node and not head:
            return provider.connect_host(node, cluster.attributes, cluster.provider_private,
                                         ctx), cluster.attributes
        return (provider.connect(cluster.attributes, cluster.provider_private, ctx),
                cluster.attributes)

    def _touch(self, rs: ResourceState, ctx: RunContext, state: State) -> None:
        """Work on an env counts as activity for the autostop watchdog on the head."""
        if state.resources[rs.attributes["cluster"]].attributes.get("autostop_mins"):
            conn, cluster = self._conn(rs, ctx, state, head=True)
            manage.touch_activity(conn, cluster)

    def _requirement(self, raw: str, ctx: RunContext, state: State) -> Requirement:
        if raw.startswith("package."):
            pkg = state.resources.get(raw)
            if pkg is None:
                raise ProviderError(f"{raw} is not in the state; apply it first")
            return parse_requirement(pkg.attributes["spec"], ctx.config_dir)
        return parse_requirement(raw, ctx.config_dir)

    def _install(self, conn: Connection, path: str, raw: str, rs: ResourceState,
                 ctx: RunContext, state: State, constraints: str, before: Any = None
                 ) -> tuple[list[str], Any]:
        """Install one entry resolved together with the servlet's Ray and under the
        user's pins: what either needs is never moved silently; a conflict fails here,
        naming both sides. A git package's installed commit is kept, for refresh.
        Returns what it changed and what the env holds now (the next one's `before`)."""
        req = self._on_host(self._at_commit(self._requirement(raw, ctx, state), rs), rs,
                            conn, ctx, state)
        res = envs.install_entry(conn, path, req, [self._ray_pin(rs, state)], constraints,
                                 before)
        commits = rs.private.setdefault("commits", {})
        if req.kind == "git" and res.own is not None and res.own.commit:
            commits[raw] = res.own.commit
        else:
            commits.pop(raw, None)
        return res.changes, res.after

    def _at_commit(self, req: Requirement, rs: ResourceState) -> Requirement:
        """A git package at its default branch installs the commit the plan resolved."""
        commit = (rs.attributes.get("git_commits") or {}).get(req.raw)
        return pinned(req, commit) if unpinned(req) and isinstance(commit, str) else req

    def _ray_pin(self, rs: ResourceState, state: State) -> str:
        return f"ray=={state.resources[rs.attributes['cluster']].attributes['ray_version']}"

    def _pins(self, raws: list[str], ctx: RunContext, state: State) -> list[str]:
        """The version pins among the entries, as constraint lines."""
        reqs = []
        for raw in raws:
            try:
                reqs.append(self._requirement(raw, ctx, state))
            except (ValueError, ProviderError):
                continue  # its own install reports it
        return envs.constraint_lines(reqs)

    def _pins_proven(self, rs: ResourceState, pins: list[str], ctx: RunContext,
                     state: State) -> bool:
        """Whether another env of rs's cluster, built with the cluster's Ray version as it
        is now, holds all these pins: they were installed together with that Ray, so
        they resolve together (a second env with the first one's packages)."""
        cluster = rs.attributes["cluster"]
        version = state.resources[cluster].attributes.get("ray_version")
        for other in list(state.resources.values()):
            a = other.attributes
            if (other.type != "env" or other.address == rs.address or a.get("cluster") != cluster
                    or other.private.get("ray") != version or not isinstance(
                        a.get("installed"), dict)):
                continue
            if set(pins) <= set(self._pins(a.get("reqs") or [], ctx, state)):
                return True
        return False

    def _constraints(self, conn: Connection, rs: ResourceState, ctx: RunContext,
                     state: State) -> str:
        """Write the env's pins (from its reqs as configured) for every install to obey."""
        return envs.write_constraints(conn, rs.attributes["path"],
                                      self._pins(rs.attributes["reqs"], ctx, state))

    def _ensure_ray(self, rs: ResourceState, conn: Connection, state: State,
                    constraints: str | None, ctx: RunContext | None = None) -> Any:
        """The servlet runs in the env's interpreter, which needs the cluster's Ray
        version; installed under the user's pins (a conflict fails, naming both).
        Returns what the env holds after installing it (None when it was there)."""
        cluster = state.resources[rs.attributes["cluster"]].attributes
        version = cluster["ray_version"]
        if rs.private.get("ray") == version:
            return None
        # a new env links the Ray venv's Ray package where it can (envs.install_entry)
        res = envs.install_entry(conn, rs.attributes["path"],
                                 parse_requirement(f"pip:ray=={version}", Path("/")), (),
                                 constraints, link_ray=(cluster["ray_python"], version)
                                 if cluster.get("ray_python") else None)
        rs.private["ray"] = version
        if cluster.get("ray_python") and res.after is not None:
            # the servlet's first `import ray` reads bytecode instead of compiling it
            # (Ray's and the dependencies it brought, where the source is the same file);
            # linked beside the next installs, and waited for before the servlet starts
            # (_start_servlet)
            seeding = threading.Thread(target=envs.seed_bytecode, daemon=True, args=(
                conn, rs.attributes["path"], res.after.site_packages, cluster["ray_python"],
                version))
            seeding.start()
            if ctx is None:
                seeding.join()
            else:
                with ctx.lock:
                    ctx.cache[("seeding", rs.address)] = seeding
        return res.after

    def _seeded(self, rs: ResourceState, ctx: RunContext) -> None:
        """Wait for the linking of Ray's bytecode that _ensure_ray left running."""
        with ctx.lock:
            seeding = ctx.cache.pop(("seeding", rs.address), None)
        if seeding is not None:
            seeding.join()

    def _on_host(self, req: Requirement, rs: ResourceState, conn: Connection, ctx: RunContext,
                 state: State) -> Requirement:
        """Local folders live on this machine: on a remote cluster, sync them to the host
        first (only changed files travel) and install from there. A reqs: folder whose
        requirements are a pyproject.toml is installed as `-r FOLDER/pyproject.toml`."""
        remote = self._host_target(req, rs, ctx, state)
        local = Path(req.target)
        toml = req.kind == "reqs" and reqs_file(local) == pyproject_reqs.NAME
        if remote != req.target:
            if req.kind == "local":
                sync.sync_folder(conn, local, remote)
            else:  # reqs:DIR needs only its requirements.txt (or pyproject.toml)
                name = reqs_file(local) or REQUIREMENTS
                conn.put_bytes((local / name).read_bytes(), f"{remote}/{name}")
        return dataclasses.replace(req, target=f"{remote}/{pyproject_reqs.NAME}" if toml
                                   else remote)

    def _host_target(self, req: Requirement, rs: ResourceState, ctx: RunContext,
                     state: State) -> str:
        """Where a requirement's folder is on the env's host (pure: nothing is synced)."""
        cluster = state.resources[rs.attributes["cluster"]]
        if ctx.provider(cluster.provider).capabilities.local_filesystem:
            return req.target
        if req.kind not in ("local", "reqs"):
            return req.target
        local = Path(req.target)
        tag = hashlib.sha256(str(local).encode()).hexdigest()[:10]
        return f"{cluster.attributes['root_dir']}/src/{local.name or 'root'}-{tag}"

    def _env_vars(self, rs: ResourceState) -> dict[str, str]:
        """What the env's processes see as env vars: its env files', then env_vars."""
        a = rs.attributes
        return {**(a.get("env_file_vars") or {}), **(a.get("env_vars") or {})}

    def _secrets(self, rs: ResourceState, ctx: RunContext) -> dict[str, str]:
        # a sensitive env_file's values (planned in this run), then the secret blocks'
        out: dict[str, str] = dict(ctx.secret_values.get(rs.address) or {})
        if rs.attributes.get("env_file_secret_keys") and not out:
            raise ProviderError(f"{rs.address}: the values of its sensitive env_file were not "
                                "read in this run; run rhplan plan or apply again")
        for addr in rs.attributes.get("secrets") or []:
            out.update(ctx.secret_values.get(addr, {}))
        return out

    def create(self, rs: ResourceState, ctx: RunContext, state: State) -> ResourceState:
        conn, cluster = self._conn(rs, ctx, state)
        self._touch(rs, ctx, state)
        a = rs.attributes
        a["python"] = envs.env_python(a["path"])
        # the driver that starts the servlet joins Ray while the env is made and built
        pending = self._pending_start(rs, conn, ctx, state)
        # and the working_dir is synced beside the installs (waited for before the setup
        # commands, which run in it)
        syncing = ThreadPoolExecutor(max_workers=1)
        try:
            # leftovers of an interrupted create removed, and the venv made: one command
            a["python"] = envs.make_env(conn, a["path"], cluster.get("python") or "python3",
                                        cluster.get("ray_python"))
            rs.private.pop("ray", None)
            rs.private["commits"] = {}
            synced = syncing.submit(self._sync_working_dir, conn, rs, ctx)
            pins = self._pins(a["reqs"], ctx, state)
            constraints = envs.write_constraints(conn, a["path"], pins)
            # the pins and the servlet's Ray are resolved together before anything is
            # installed: a pin Ray cannot live with is refused here, naming both sides. The
            # check only resolves (--dry-run), so it runs while Ray installs; its verdict is
            # read before any entry is. Pins another env of the cluster was built with, under
            # the same Ray, are proven already: not asked again.
            with ThreadPoolExecutor(max_workers=1) as pool:
                check = pool.submit(envs.check_resolvable, conn, a["path"],
                                    [self._ray_pin(rs, state)], constraints) \
                    if pins and not self._pins_proven(rs, pins, ctx, state) else None
                # Ray first, then each entry resolved with it under the pins of the entries so
                # far (the last one writes them all): each record says what that entry changed
                before = self._ensure_ray(rs, conn, state, None, ctx)
                why = check.result() if check else None
            if why:
                # Ray went in meanwhile: nothing of a refused env is left (nothing records it;
                # the sync's working_dir.json written into it first)
                synced.exception()
                self._seeded(rs, ctx)
                envs.delete_env(conn, a["path"])
                raise ProviderError(f"{rs.address}: its pinned packages cannot be installed with "
                                    f"the servlet's {self._ray_pin(rs, state)}: {why}; change "
                                    "or remove the pin")
            installed: dict[str, list[str]] = {}
            written = None
            for i, raw in enumerate(a["reqs"]):
                pins = self._pins(a["reqs"][: i + 1], ctx, state)
                if pins != written:
                    constraints, written = envs.write_constraints(conn, a["path"], pins), pins
                installed[raw], before = self._install(conn, a["path"], raw, rs, ctx, state,
                                                       constraints, before)
            a["installed"] = installed
            synced.result()
            envs.write_env_files(conn, a["path"], self._env_vars(rs), self._secrets(rs, ctx),
                                 fresh=True)
            envs.run_setup_cmds(conn, a["path"], a["setup_cmds"], self._secrets(rs, ctx),
                                a.get("working_dir_remote") or "")
        except BaseException:
            pending.cancel()
            raise
        finally:
            syncing.shutdown(wait=True)  # nothing is written after the create ends
        try:
            self._start_servlet(rs, conn, ctx, state, pending)
        except manage.ServletNotStarted as exc:
            # the env is built: record it with its servlet stopped, so the next apply
            # starts the servlet and a destroy removes the folder (never left unrecorded)
            a["servlet"], a["servlet_pid"] = "stopped", None
            rs.private.pop("servlet_identity", None)
            partial = PartialFailure(str(exc), a, rs.private)
            partial.resource_state = rs
            raise partial from None
        return rs

    def _servlet_args(self, rs: ResourceState, ctx: RunContext, state: State,
                      conn: Connection) -> tuple:
        """manage.start_servlet's arguments: started by a driver on the env's node, pinned
        to that node by its Ray address."""
        cluster = state.resources[rs.attributes["cluster"]]
        node = rs.attributes.get("node")
        node_ip = ctx.provider(cluster.provider).node(
            node, cluster.attributes, cluster.provider_private).address if node else ""
        return (conn, cluster.attributes,
                manage.node_private(cluster.attributes, cluster.private, node),
                rs.attributes["name"], rs.attributes["path"], rs.attributes["python"],
                rs.attributes.get("compute") or {}, node_ip)

    def _pending_start(self, rs: ResourceState, conn: Connection, ctx: RunContext,
                       state: State) -> manage.PendingStart:
        return manage.PendingStart(*self._servlet_args(rs, ctx, state, conn))

    def _start_servlet(self, rs: ResourceState, conn: Connection, ctx: RunContext,
                       state: State, pending: manage.PendingStart | None = None) -> None:
        """The servlet runs in the env's interpreter, with the cluster's Ray version (which
        create and update install first, under the user's pins). pending: its start,
        begun while the env was built (create)."""
        from rhplan.resources.cluster_ray import wait_for_ray
        cluster = state.resources[rs.attributes["cluster"]]
        self._seeded(rs, ctx)
        try:
            wait_for_ray(cluster, ctx)  # started while this env was built
        except ProviderError as exc:
            if pending is not None:
                pending.cancel()
            raise manage.ServletNotStarted(str(exc)) from None
        info = pending.start() if pending is not None else manage.start_servlet(
            *self._servlet_args(rs, ctx, state, conn))
        rs.attributes["servlet"] = "running"
        rs.attributes["servlet_pid"] = info["pid"]
        # who it is: callers trust only this actor and process (servlets/client.py)
        rs.private["servlet_identity"] = {k: info.get(k) for k in ("actor_id", "pid",
                                                                    "start_ticks")}

    def read(self, rs: ResourceState, ctx: RunContext, state: State
             ) -> tuple[ResourceState | None, list[str]]:
        known = ctx.cache.get(("facts", rs.attributes["cluster"]))
        if known is not None and rs.address in known["envs"] and not rs.attributes.get("node"):
            # read with the cluster, in its one command per host
            dists = facts.installed(known["envs"][rs.address])
            seen = None if dists is None else envs.EnvFacts(dists,
                                                              facts.markers(known, rs.address))
            servlet = {"alive": bool(known["servlets"].get(rs.address)),
                       "pid": rs.attributes.get("servlet_pid")}
            if state.resources[rs.attributes["cluster"]].attributes.get("ray_status") != "running":
                servlet = {"alive": False}
        else:
            conn, _ = self._conn(rs, ctx, state)
            seen = envs.read_env(conn, rs.attributes["path"])
            servlet = self._servlet_status(rs, conn, ctx, state) if seen is not None else {}
        if seen is None:
            return None, [f"{rs.address}: env folder {rs.attributes['path']} is gone"]
        notes = []
        if not servlet.get("alive"):
            rs.attributes["servlet"] = "stopped"
            notes.append(f"{rs.address}: its servlet is not running")
        elif not rs.private.get("servlet_identity"):
            # started by an older rhplan: callers have nothing to check it against
            rs.attributes["servlet"] = "stopped"
            notes.append(f"{rs.address}: its servlet has no identity recorded for callers to "
                         "check (started by an older rhplan); apply restarts it")
        elif servlet.get("pid") != rs.private["servlet_identity"].get("pid"):
            # alive, but not the process rhplan started (callers refuse it): apply restarts
            rs.attributes["servlet"] = "stopped"
            notes.append(f"{rs.address}: its servlet (pid {servlet.get('pid')}) is not the one "
                         "rhplan started; apply restarts it")
        elif servlet.get("pid") != rs.attributes.get("servlet_pid"):
            rs.attributes["servlet_pid"] = servlet.get("pid")
        kept = []
        for raw in rs.attributes.get("reqs") or []:
            problems = self._drift(raw, rs, seen.dists, seen.markers, ctx, state)
            if problems:
                notes.append(f"{rs.address}: {raw} drifted ({', '.join(problems)})")
            else:
                kept.append(raw)
        rs.attributes["reqs"] = kept
        return rs, notes

    def _drift(self, raw: str, rs: ResourceState, now: dict[str, envs.Installed],
               markers: dict[str, str], ctx: RunContext, state: State) -> list[str]:
        """How one entry of reqs is not met: the requirement itself is checked (present,
        in its specifier; a folder's or git package's distribution, at its commit), and
        the dependencies its install added must still be there. What the env cannot tell
        (a URL's distribution) falls back on the versions its install recorded."""
        recorded = (rs.attributes.get("installed") or {}).get(raw, [])
        try:
            req = self._requirement(raw, ctx, state)
        except (ValueError, ProviderError):
            req = None  # e.g. its folder is gone here: judged by the record alone
        own: list[str] | None = None
        if req is not None and req.kind == "reqs":
            own = _requirements_txt_drift(Path(req.target), now, markers)
        elif req is not None:
            own_name = recorded[0].partition("==")[0] if recorded else None
            host_req = dataclasses.replace(req, target=self._host_target(req, rs, ctx, state))
            own = envs.requirement_drift(host_req, now, markers,
                                         (rs.private.get("commits") or {}).get(raw), own_name)
        problems = list(own or [])
        for entry in recorded:
            name, _, version = entry.partition("==")
            have = now.get(name)
            if have is None:
                problem = f"{name} missing"
            elif own is None and version and have.version != version:
                problem = f"{name} is {have.version}, not {version}"
            else:
                continue
            if problem not in problems:
                problems.append(problem)
        return problems

    def _servlet_status(self, rs: ResourceState, conn: Connection, ctx: RunContext,
                        state: State) -> dict[str, Any]:
        """One command per cluster asks about every servlet recorded on it."""
        cluster_addr = rs.attributes["cluster"]
        cluster = state.resources.get(cluster_addr)
        if cluster is None or cluster.attributes.get("ray_status") != "running":
            return {"alive": False}
        with ctx.lock:
            key = ("servlets", cluster_addr)
            if key not in ctx.cache:
                names = [r.attributes["name"] for r in state.resources.values()
                         if r.type == "env" and r.attributes.get("cluster") == cluster_addr]
                conn, _ = self._conn(rs, ctx, state, head=True)  # Ray knows every node's
                ctx.cache[key] = manage.servlet_status(conn, cluster.attributes,
                                                       cluster.private, names)
            return ctx.cache[key].get(rs.attributes["name"], {"alive": False})

    def update(self, before: ResourceState, after: ResourceState, ctx: RunContext,
               state: State) -> ResourceState:
        conn, cluster = self._conn(after, ctx, state)
        self._touch(after, ctx, state)
        b, a = before.attributes, after.attributes
        path = a["path"]
        installed: dict[str, list[str]] = dict(b.get("installed") or {})
        removed = [r for r in b.get("reqs", []) if r not in a["reqs"]]
        stale = [r for r in a["reqs"] if r in b.get("reqs", [])
                 and any((b.get(k) or {}).get(r) != (a.get(k) or {}).get(r)
                         for k in ("sources", "git_commits"))]
        added = [r for r in a["reqs"] if r not in b.get("reqs", [])]
        if (b.get("working_dir_hash") != a.get("working_dir_hash")
                or b.get("working_dir_remote") != a.get("working_dir_remote")):
            # only changed files travel; the servlet re-imports them on its next call
            self._sync_working_dir(conn, after, ctx,
                                   tell=b.get("working_dir_remote") != a.get("working_dir_remote"))
            old = b.get("working_dir_remote")
            if old and old != a.get("working_dir_remote"):
                envs.delete_env(conn, old)
        constraints = self._constraints(conn, after, ctx, state)
        # a cluster whose Ray version changed: the new Ray first, so entries resolve with it
        self._ensure_ray(after, conn, state, constraints)
        # entries the refresh dropped (drift) are in installed but not in before.reqs
        for raw in removed:
            names = self._own_names(raw, installed, ctx, state)
            # a package another one still needs stays (only its reqs entry goes)
            keep = set(envs.still_required(conn, path, names))
            envs.uninstall(conn, path, [n for n in names if n not in keep])
            installed.pop(raw, None)
        for raw in stale:
            envs.uninstall(conn, path, self._own_names(raw, installed, ctx, state))
            installed.pop(raw, None)
        todo = [r for r in a["reqs"] if r in added or r in stale]
        done = [r for r in a["reqs"] if r not in todo]
        for i, raw in enumerate(todo):
            # under the pins installed so far (each record says what that entry changed)
            pins = self._pins(done + todo[: i + 1], ctx, state)
            constraints = envs.write_constraints(conn, path, pins)
            installed[raw], _ = self._install(conn, path, raw, after, ctx, state, constraints)
        for raw in list(installed):
            if raw not in a["reqs"]:
                installed.pop(raw)
        commits = after.private.get("commits") or {}
        for raw in [r for r in commits if r not in a["reqs"]]:
            commits.pop(raw)
        a["installed"] = installed
        if any(b.get(k) != a.get(k) for k in _ENVIRONMENT):
            envs.write_env_files(conn, path, self._env_vars(after), self._secrets(after, ctx))
        if b.get("setup_cmds") != a["setup_cmds"]:
            envs.run_setup_cmds(conn, path, a["setup_cmds"], self._secrets(after, ctx),
                                a.get("working_dir_remote") or "")
        if (b.get("servlet") != "running" or a.get("servlet") != "running"
                or any(b.get(k) != a.get(k) for k in _HELD)):
            self._start_servlet(after, conn, ctx, state)
        return after

    def _own_names(self, raw: str, installed: dict[str, list[str]], ctx: RunContext,
                   state: State) -> list[str]:
        """The distribution a package entry stands for: only it is uninstalled, never
        the dependencies it brought (another entry may need them)."""
        try:
            req = self._requirement(raw, ctx, state)
        except (ValueError, ProviderError):
            req = None
        if req is not None and req.name:
            return [req.name]
        others = {e.split("==")[0] for r, es in installed.items() if r != raw for e in es}
        return [e.split("==")[0] for e in installed.get(raw, [])
                if e.split("==")[0] not in others][:1]

    def delete(self, rs: ResourceState, ctx: RunContext, state: State) -> None:
        if rs.attributes["cluster"] not in state.resources:
            return  # its cluster is already gone, and the env folder with it
        conn, _ = self._conn(rs, ctx, state)
        self._stop_servlet(rs, conn, state.resources[rs.attributes["cluster"]])
        envs.delete_env(conn, rs.attributes["path"])
        if rs.attributes.get("working_dir_remote"):
            envs.delete_env(conn, rs.attributes["working_dir_remote"])  # its code copy

    def _stop_servlet(self, rs: ResourceState, conn: Connection, cluster: ResourceState
                      ) -> None:
        """Through Ray while it runs; else (down, or not answering) by the servlet's
        recorded process, proven to be it: a servlet never outlives its env."""
        ca = cluster.attributes
        private = manage.node_private(ca, cluster.private, rs.attributes.get("node"))
        if ca.get("ray_address") and ca.get("ray_status") == "running":
            try:
                manage.stop_servlets(conn, ca, private, [rs.attributes["name"]])
                return
            except ProviderError:
                pass  # its Ray does not answer: stop the process itself
        manage.stop_servlet_process(conn, ca, private, rs.attributes.get("servlet_pid"),
                                    rs.attributes["path"])


def _requirements_txt_drift(folder: Path, now: dict[str, envs.Installed],
                            markers: dict[str, str]) -> list[str] | None:
    """Each plain requirement of a reqs: folder's requirements.txt (as it is here), checked
    like a pip: entry; None if none is plain (options, URLs, paths)."""
    try:
        text = (folder / "requirements.txt").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    problems: list[str] | None = None
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")) or "://" in line or line.startswith((".", "/")):
            continue
        found = envs.spec_drift(line, now, markers)
        if found is not None:
            problems = (problems or []) + [p for p in found if p not in (problems or [])]
    return problems


