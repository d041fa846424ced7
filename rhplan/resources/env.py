"""env "NAME" { cluster, reqs, env_vars, secrets, setup_cmds }: a Python environment
on a cluster's head, built through the provider's connection.

Packages are tracked one by one: `installed` maps each entry of reqs to the
distributions installing it added (name==version), so a plan can add or remove a
single package and a refresh can tell which entry drifted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from rhplan import envs, facts, sync
from rhplan.config.evaluate import UNKNOWN
from rhplan.config.load import ResourceConfig
from rhplan.connection import Connection
from rhplan.errors import ConfigError, PartialFailure, ProviderError, RhplanError
from rhplan.names import NAME_RULE, valid_name
from rhplan.packages import Requirement, parse_requirement, tree_hash
from rhplan.provider import RunContext
from rhplan.resources.base import ResourceType
from rhplan.servlets import manage
from rhplan.state.model import ResourceState, State

# what a running servlet holds, by attribute: a change to any restarts it (an
# interpreter cannot reload upgraded modules, nor see a new environment)
_HELD = {"reqs": "packages", "sources": "packages", "env_vars": "environment",
         "secrets": "environment", "secrets_sha256": "environment", "compute": "resources"}


class EnvType(ResourceType):
    after_apply = ("installed", "servlet_pid")

    def replaced_with(self, attrs: dict[str, Any]) -> list[str]:
        # an env lives inside its cluster's folder: a new cluster means a new env
        return [attrs["cluster"]] if isinstance(attrs.get("cluster"), str) else []

    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if attrs.get("name") is None:
            attrs["name"] = rc.name
        _check_names(rc, attrs)
        if attrs.get("conda") is not None:
            raise ConfigError(f"env {rc.name!r}: conda envs are not supported yet; use pip "
                              "packages in a virtualenv (remove conda = ...)", rc.file,
                              rc.block.attrs["conda"].line)
        reqs_line = rc.block.attrs["reqs"].line if "reqs" in rc.block.attrs else rc.line
        sources: dict[str, Any] = {}
        seen: set[str] = set()
        for raw in attrs["reqs"]:
            if raw is UNKNOWN:
                continue
            if raw in seen:
                raise ConfigError(f"env {rc.name!r}: {raw!r} is listed twice in reqs; keep one",
                                  rc.file, reqs_line)
            seen.add(raw)
            if raw.startswith("package."):
                sources[raw] = planned.get(raw, {}).get("spec", UNKNOWN)
                continue
            try:
                req = _parsed(raw, ctx)
            except ValueError as exc:
                raise ConfigError(f"env {rc.name!r}: {exc}", rc.file, reqs_line) from None
            if req.kind == "conda":
                raise ConfigError(f"env {rc.name!r}: {raw!r} needs a conda env, which rhplan "
                                  "does not build yet; use a pip package", rc.file, reqs_line)
            if req.kind == "local":
                try:  # never hash (or later sync) a home folder or /
                    sync.check_sync_folder(Path(req.target))
                except RhplanError as exc:
                    raise ConfigError(f"env {rc.name!r}: {exc}", rc.file, reqs_line) from None
            if req.kind in ("local", "reqs"):
                # editing a local package (or requirements file) reinstalls it
                key = ("tree_hash", req.target)
                if key not in ctx.cache:
                    ctx.cache[key] = tree_hash(Path(req.target))
                sources[raw] = ctx.cache[key]
        attrs["sources"] = sources
        secret_hashes = [planned.get(s, {}).get("sha256", "") for s in attrs["secrets"]]
        attrs["secrets_sha256"] = hashlib.sha256(
            json.dumps(secret_hashes).encode()).hexdigest() if attrs["secrets"] else ""
        cluster = planned.get(attrs["cluster"], {})
        self._check_compute(rc, attrs, cluster, ctx)
        # a cluster whose Ray restarts in this apply (an in-place resize) takes the
        # servlet down with it: the plan shows it started again
        attrs["servlet"] = "restarting" if cluster.get("ray_status") == "restarting" \
            else "running"
        root = cluster.get("root_dir", UNKNOWN)
        if root is UNKNOWN:
            attrs["path"] = attrs["python"] = UNKNOWN
        else:
            attrs["path"] = f"{root}/envs/{attrs['name']}"
            attrs["python"] = f"{attrs['path']}/bin/python"
        return attrs

    def _check_compute(self, rc: ResourceConfig, attrs: dict[str, Any],
                       cluster: dict[str, Any], ctx: RunContext) -> None:
        """A servlet asking for more than its cluster has would wait forever in Ray, or
        be refused as unschedulable: refuse it while planning, counting what the
        cluster's other servlets hold. CPU and GPU are the cluster's `resources`; any
        other name must be one of its custom_resources (servlets run on the head, which
        offers what every node does)."""
        from rhplan.ray_head import resource_problem  # the one rule for resource names

        compute = attrs.get("compute") or {}
        if not compute:
            return
        line = rc.block.attrs["compute"].line if "compute" in rc.block.attrs else rc.line
        addr = attrs["cluster"]
        holders = ctx.allocations.setdefault(addr, {})
        holders.pop(rc.address, None)
        for key, amount in compute.items():
            if amount is UNKNOWN:
                continue
            problem = resource_problem(key, amount, builtin_ok=True)
            if problem:
                raise ConfigError(f"env {rc.name!r}: compute: {problem}", rc.file, line)
            builtin = key in ("CPU", "GPU")
            have = (cluster.get("resources") if builtin
                    else cluster.get("custom_resources"))
            if not isinstance(have, dict) or have.get(key, 0) is UNKNOWN:
                continue  # known once the cluster is (an ssh cluster's CPUs, a variable)
            if not builtin and key not in have:
                raise ConfigError(
                    f"env {rc.name!r} asks for compute {key} = {amount:g}, which {addr} does "
                    f"not offer, so Ray could never place its servlet; declare it on {addr}: "
                    f"custom_resources = {{ {key} = {max(amount, 1):g} }}", rc.file, line)
            total = have.get(key, 0)
            others = sum(h.get(key, 0) for h in holders.values())
            if others + amount > total:
                fix = (f"lower compute.{key} or use a bigger cluster" if builtin else
                       f"lower compute.{key} or raise custom_resources.{key} on {addr}")
                raise ConfigError(
                    f"env {rc.name!r} asks for {key} = {amount:g}, but {addr} has "
                    f"{total:g}" + (f" and its other servlets hold {others:g}" if others else "")
                    + f"; {fix}", rc.file, line)
        holders[rc.address] = dict(compute)

    def refine_update(self, before: dict[str, Any], after: dict[str, Any],
                      changed: list[str]) -> str:
        if "servlet" in changed:
            after["servlet_pid"] = UNKNOWN
            return "its servlet will be started"
        why = sorted({_HELD[k] for k in changed if k in _HELD})
        if why:
            after["servlet_pid"] = UNKNOWN
            return f"its servlet restarts to pick up the new {' and '.join(why)}"
        return ""

    # ---- apply -----------------------------------------------------------
    def _conn(self, rs: ResourceState, ctx: RunContext, state: State) -> tuple[Connection, dict]:
        cluster = state.resources.get(rs.attributes["cluster"])
        if cluster is None:
            raise ProviderError(f"{rs.address}: its cluster {rs.attributes['cluster']} is not in "
                                "the state; apply the cluster first")
        provider = ctx.provider(cluster.provider)
        return provider.connect(cluster.attributes, cluster.private, ctx), cluster.attributes

    def _requirement(self, raw: str, ctx: RunContext, state: State) -> Requirement:
        if raw.startswith("package."):
            pkg = state.resources.get(raw)
            if pkg is None:
                raise ProviderError(f"{raw} is not in the state; apply it first")
            return parse_requirement(pkg.attributes["spec"], ctx.config_dir)
        return parse_requirement(raw, ctx.config_dir)

    def _install(self, conn: Connection, path: str, raw: str, rs: ResourceState,
                 ctx: RunContext, state: State) -> list[str]:
        req = self._on_host(self._requirement(raw, ctx, state), rs, conn, ctx, state)
        return envs.install(conn, path, req)

    def _on_host(self, req: Requirement, rs: ResourceState, conn: Connection, ctx: RunContext,
                 state: State) -> Requirement:
        """Local folders live on this machine: on a remote cluster, sync them to the host
        first (only changed files travel) and install from there."""
        cluster = state.resources[rs.attributes["cluster"]]
        if getattr(ctx.provider(cluster.provider), "local_filesystem", False):
            return req
        if req.kind not in ("local", "reqs"):
            return req
        local = Path(req.target)
        tag = hashlib.sha256(str(local).encode()).hexdigest()[:10]
        remote = f"{cluster.attributes['root_dir']}/src/{local.name or 'root'}-{tag}"
        if req.kind == "local":
            sync.sync_folder(conn, local, remote)
        else:  # reqs:DIR needs only its requirements.txt
            conn.put_bytes((local / "requirements.txt").read_bytes(), f"{remote}/requirements.txt")
        return dataclasses.replace(req, target=remote)

    def _secrets(self, rs: ResourceState, ctx: RunContext) -> dict[str, str]:
        out: dict[str, str] = {}
        for addr in rs.attributes.get("secrets") or []:
            out.update(ctx.secret_values.get(addr, {}))
        return out

    def create(self, rs: ResourceState, ctx: RunContext, state: State) -> ResourceState:
        conn, cluster = self._conn(rs, ctx, state)
        manage.touch_activity(conn, cluster)
        a = rs.attributes
        envs.delete_env(conn, a["path"])  # leftovers of an interrupted create
        a["python"] = envs.create_venv(conn, a["path"], cluster.get("python") or "python3")
        installed: dict[str, list[str]] = {}
        for raw in a["reqs"]:
            installed[raw] = self._install(conn, a["path"], raw, rs, ctx, state)
        a["installed"] = installed
        envs.write_env_files(conn, a["path"], a["env_vars"], self._secrets(rs, ctx))
        envs.run_setup_cmds(conn, a["path"], a["setup_cmds"], self._secrets(rs, ctx))
        try:
            self._start_servlet(rs, conn, ctx, state)
        except manage.ServletNotStarted as exc:
            # the env is built: record it with its servlet stopped, so the next apply
            # starts the servlet and a destroy removes the folder (never left unrecorded)
            a["servlet"], a["servlet_pid"] = "stopped", None
            partial = PartialFailure(str(exc), a, rs.private)
            partial.resource_state = rs
            raise partial from None
        return rs

    def _start_servlet(self, rs: ResourceState, conn: Connection, ctx: RunContext,
                       state: State) -> None:
        """The servlet runs in the env's interpreter, which needs the cluster's Ray version."""
        cluster = state.resources[rs.attributes["cluster"]]
        version = cluster.attributes["ray_version"]
        if rs.private.get("ray") != version:
            envs.install(conn, rs.attributes["path"],
                         parse_requirement(f"pip:ray=={version}", ctx.config_dir))
            rs.private["ray"] = version
        info = manage.start_servlet(conn, cluster.attributes, cluster.private,
                                    rs.attributes["name"], rs.attributes["path"],
                                    rs.attributes["python"], rs.attributes.get("compute") or {})
        rs.attributes["servlet"] = "running"
        rs.attributes["servlet_pid"] = info["pid"]

    def read(self, rs: ResourceState, ctx: RunContext, state: State
             ) -> tuple[ResourceState | None, list[str]]:
        known = ctx.cache.get(("facts", rs.attributes["cluster"]))
        if known is not None and rs.address in known["envs"]:
            # read with the cluster, in its one command per host
            now = facts.installed(known["envs"][rs.address])
            servlet = {"alive": bool(known["servlets"].get(rs.address)),
                       "pid": rs.attributes.get("servlet_pid")}
            if state.resources[rs.attributes["cluster"]].attributes.get("ray_status") != "running":
                servlet = {"alive": False}
        else:
            conn, _ = self._conn(rs, ctx, state)
            now = envs.read_installed(conn, rs.attributes["path"])
            servlet = self._servlet_status(rs, conn, ctx, state) if now is not None else {}
        if now is None:
            return None, [f"{rs.address}: env folder {rs.attributes['path']} is gone"]
        notes = []
        if not servlet.get("alive"):
            rs.attributes["servlet"] = "stopped"
            notes.append(f"{rs.address}: its servlet is not running")
        elif servlet.get("pid") != rs.attributes.get("servlet_pid"):
            rs.attributes["servlet_pid"] = servlet.get("pid")
        kept = []
        for raw in rs.attributes.get("reqs") or []:
            missing = []
            for entry in (rs.attributes.get("installed") or {}).get(raw, []):
                name, _, version = entry.partition("==")
                have = now.get(name)
                if have is None:
                    missing.append(f"{name} missing")
                elif version and have.version != version:
                    missing.append(f"{name} is {have.version}, not {version}")
            if missing:
                notes.append(f"{rs.address}: {raw} drifted ({', '.join(missing)})")
            else:
                kept.append(raw)
        rs.attributes["reqs"] = kept
        return rs, notes

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
                ctx.cache[key] = manage.servlet_status(conn, cluster.attributes,
                                                       cluster.private, names)
            return ctx.cache[key].get(rs.attributes["name"], {"alive": False})

    def update(self, before: ResourceState, after: ResourceState, ctx: RunContext,
               state: State) -> ResourceState:
        conn, cluster = self._conn(after, ctx, state)
        manage.touch_activity(conn, cluster)
        b, a = before.attributes, after.attributes
        path = a["path"]
        installed: dict[str, list[str]] = dict(b.get("installed") or {})
        removed = [r for r in b.get("reqs", []) if r not in a["reqs"]]
        stale = [r for r in a["reqs"] if r in b.get("reqs", [])
                 and (b.get("sources") or {}).get(r) != (a.get("sources") or {}).get(r)]
        added = [r for r in a["reqs"] if r not in b.get("reqs", [])]
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
        for raw in [r for r in a["reqs"] if r in added or r in stale]:
            installed[raw] = self._install(conn, path, raw, after, ctx, state)
        for raw in list(installed):
            if raw not in a["reqs"]:
                installed.pop(raw)
        a["installed"] = installed
        if (b.get("env_vars") != a["env_vars"] or b.get("secrets_sha256") != a["secrets_sha256"]
                or b.get("secrets") != a["secrets"]):
            envs.write_env_files(conn, path, a["env_vars"], self._secrets(after, ctx))
        if b.get("setup_cmds") != a["setup_cmds"]:
            envs.run_setup_cmds(conn, path, a["setup_cmds"], self._secrets(after, ctx))
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

    def _stop_servlet(self, rs: ResourceState, conn: Connection, cluster: ResourceState
                      ) -> None:
        """Through Ray while it runs; else (down, or not answering) by the servlet's
        recorded process, proven to be it: a servlet never outlives its env."""
        ca = cluster.attributes
        if ca.get("ray_address") and ca.get("ray_status") == "running":
            try:
                manage.stop_servlets(conn, ca, cluster.private, [rs.attributes["name"]])
                return
            except ProviderError:
                pass  # its Ray does not answer: stop the process itself
        manage.stop_servlet_process(conn, ca, cluster.private, rs.attributes.get("servlet_pid"),
                                    rs.attributes["path"])


def _check_names(rc: ResourceConfig, attrs: dict[str, Any]) -> None:
    """The env's name is a folder under root_dir/envs and a Ray actor name: "../x" or
    "/abs" would put the env (and its deletion) outside, "a;b" or a newline would reach
    Ray's worker command line. Env var names and values are checked here too, so a bad
    one is refused with its file:line before anything is created."""
    for name, line in ((rc.name, rc.line), (attrs["name"], _line(rc, "name"))):
        if name is not UNKNOWN and not valid_name(name):
            raise ConfigError(f"env name {name!r} is not allowed: a name must "
                              f"{NAME_RULE}", rc.file, line)
    for key, value in (attrs.get("env_vars") or {}).items():
        if value is UNKNOWN:
            continue
        problem = envs.env_var_problem("env var", key, value)
        if problem:
            raise ConfigError(f"env {rc.name!r}: {problem}", rc.file, _line(rc, "env_vars"))


def _line(rc: ResourceConfig, attr: str) -> int:
    return rc.block.attrs[attr].line if attr in rc.block.attrs else rc.line


def _parsed(raw: str, ctx: RunContext) -> Requirement:
    """Package strings repeat across envs: parse each once per run (errors are not
    cached, so each env reports its own file:line)."""
    key = ("requirement", raw)
    req = ctx.cache.get(key)
    if req is None:
        req = ctx.cache[key] = parse_requirement(raw, ctx.config_dir)
    return req
