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

This module is the env's resource type: its plan-time hooks and the steps of create,
update and delete. Beside it: env_plan.py (its planned values), env_packages.py (each
entry resolved and installed, the pins, Ray first), env_servlet.py (the connection to
its node, its servlet) and env_refresh.py (read: what drifted).
"""
from __future__ import annotations

import json
import posixpath
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rhplan import working_dir
from rhplan.config.model import ResourceConfig
from rhplan.config.values import UNKNOWN
from rhplan.errors import PartialFailure, ProviderError
from rhplan.hosts import envs
from rhplan.hosts.connection import Connection
from rhplan.lazy import lazy_module
from rhplan.provider import RunContext
from rhplan.resources import env_packages, env_plan, env_refresh, env_servlet
from rhplan.resources.base import ResourceType
from rhplan.state.model import ResourceState, State

manage = lazy_module("rhplan.ray.servlets.manage")  # imports paramiko: not needed to plan

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
        conn, cluster = env_servlet.connect(rs, ctx, state)
        env_servlet.touch(rs, ctx, state)
        a = rs.attributes
        a["python"] = envs.env_python(a["path"])
        # the driver that starts the servlet joins Ray while the env is made and built
        pending = env_servlet.pending_start(rs, conn, ctx, state)
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
            pins = env_packages.pin_lines(a["reqs"], ctx, state)
            constraints = envs.write_constraints(conn, a["path"], pins)
            # the pins and the servlet's Ray are resolved together before anything is
            # installed: a pin Ray cannot live with is refused here, naming both sides. The
            # check only resolves (--dry-run), so it runs while Ray installs; its verdict is
            # read before any entry is. Pins another env of the cluster was built with, under
            # the same Ray, are proven already: not asked again.
            with ThreadPoolExecutor(max_workers=1) as pool:
                check = pool.submit(envs.check_resolvable, conn, a["path"],
                                    [env_packages.ray_pin(rs, state)], constraints) \
                    if pins and not env_packages.pins_proven(rs, pins, ctx, state) else None
                # Ray first, then each entry resolved with it under the pins of the entries so
                # far (the last one writes them all): each record says what that entry changed
                before = env_packages.ensure_ray(rs, conn, state, None, ctx)
                why = check.result() if check else None
            if why:
                # Ray went in meanwhile: nothing of a refused env is left (nothing records it;
                # the sync's working_dir.json written into it first)
                synced.exception()
                env_packages.wait_seeded(rs, ctx)
                envs.delete_env(conn, a["path"])
                raise ProviderError(f"{rs.address}: its pinned packages cannot be installed with "
                                    f"the servlet's {env_packages.ray_pin(rs, state)}: {why}; "
                                    "change or remove the pin")
            installed: dict[str, list[str]] = {}
            written = None
            for i, raw in enumerate(a["reqs"]):
                pins = env_packages.pin_lines(a["reqs"][: i + 1], ctx, state)
                if pins != written:
                    constraints, written = envs.write_constraints(conn, a["path"], pins), pins
                installed[raw], before = env_packages.install_one(
                    conn, a["path"], raw, rs, ctx, state, constraints, before)
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
            env_servlet.start(rs, conn, ctx, state, pending)
        except manage.ServletNotStarted as exc:
            # the env is built: record it with its servlet stopped, so the next apply
            # starts the servlet and a destroy removes the folder (never left unrecorded)
            a["servlet"], a["servlet_pid"] = "stopped", None
            rs.private.pop("servlet_identity", None)
            partial = PartialFailure(str(exc), a, rs.private)
            partial.resource_state = rs
            raise partial from None
        return rs

    def update(self, before: ResourceState, after: ResourceState, ctx: RunContext,
               state: State) -> ResourceState:
        conn, cluster = env_servlet.connect(after, ctx, state)
        env_servlet.touch(after, ctx, state)
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
        constraints = env_packages.write_pins(conn, after, ctx, state)
        # a cluster whose Ray version changed: the new Ray first, so entries resolve with it
        env_packages.ensure_ray(after, conn, state, constraints)
        # entries the refresh dropped (drift) are in installed but not in before.reqs
        for raw in removed:
            names = env_packages.own_names(raw, installed, ctx, state)
            # a package another one still needs stays (only its reqs entry goes)
            keep = set(envs.still_required(conn, path, names))
            envs.uninstall(conn, path, [n for n in names if n not in keep])
            installed.pop(raw, None)
        for raw in stale:
            envs.uninstall(conn, path, env_packages.own_names(raw, installed, ctx, state))
            installed.pop(raw, None)
        todo = [r for r in a["reqs"] if r in added or r in stale]
        done = [r for r in a["reqs"] if r not in todo]
        for i, raw in enumerate(todo):
            # under the pins installed so far (each record says what that entry changed)
            pins = env_packages.pin_lines(done + todo[: i + 1], ctx, state)
            constraints = envs.write_constraints(conn, path, pins)
            installed[raw], _ = env_packages.install_one(conn, path, raw, after, ctx, state,
                                                         constraints)
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
            env_servlet.start(after, conn, ctx, state)
        return after

    def delete(self, rs: ResourceState, ctx: RunContext, state: State) -> None:
        if rs.attributes["cluster"] not in state.resources:
            return  # its cluster is already gone, and the env folder with it
        conn, _ = env_servlet.connect(rs, ctx, state)
        env_servlet.stop(rs, conn, state.resources[rs.attributes["cluster"]])
        envs.delete_env(conn, rs.attributes["path"])
        if rs.attributes.get("working_dir_remote"):
            envs.delete_env(conn, rs.attributes["working_dir_remote"])  # its code copy

    def read(self, rs: ResourceState, ctx: RunContext, state: State
             ) -> tuple[ResourceState | None, list[str]]:
        return env_refresh.read(rs, ctx, state)  # resources/env_refresh.py
