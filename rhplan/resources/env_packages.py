"""An env's packages (resources/env.py's create and update, env_refresh.py's drift):
each reqs entry resolved from the state and the configuration (package.X, the commit
the plan resolved for a git package, a local folder synced to the host first), the
version pins among the entries written as constraints, the servlet's Ray installed
before any entry, and one entry installed resolved together with that Ray.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
from pathlib import Path
from typing import Any

from rhplan import pyproject_reqs
from rhplan.errors import ProviderError
from rhplan.hosts import envs, sync
from rhplan.hosts.connection import Connection
from rhplan.packages import (
    REQUIREMENTS,
    Requirement,
    parse_requirement,
    pinned,
    reqs_file,
    unpinned,
)
from rhplan.provider import RunContext
from rhplan.state.model import ResourceState, State

# private["ray"] of an env whose refresh found the servlet's Ray missing (env_refresh.py):
# the next update installs it again
RAY_GONE = "gone"


def requirement(raw: str, ctx: RunContext, state: State) -> Requirement:
    """One reqs entry parsed (a package.X entry: that package's spec, from the state)."""
    if raw.startswith("package."):
        pkg = state.resources.get(raw)
        if pkg is None:
            raise ProviderError(f"{raw} is not in the state; apply it first")
        return parse_requirement(pkg.attributes["spec"], ctx.config_dir)
    return parse_requirement(raw, ctx.config_dir)


def install_one(conn: Connection, path: str, raw: str, rs: ResourceState,
                ctx: RunContext, state: State, constraints: str, before: Any = None
               ) -> tuple[list[str], Any]:
    """Install one entry resolved together with the servlet's Ray and under the
    user's pins: what either needs is never moved silently; a conflict fails here,
    naming both sides. A git package's installed commit is kept, for refresh.
    Returns what it changed and what the env holds now (the next one's `before`)."""
    req = on_host(at_commit(requirement(raw, ctx, state), rs), rs, conn, ctx, state)
    res = envs.install_entry(conn, path, req, [ray_pin(rs, state)], constraints, before)
    commits = rs.private.setdefault("commits", {})
    if req.kind == "git" and res.own is not None and res.own.commit:
        commits[raw] = res.own.commit
    else:
        commits.pop(raw, None)
    return res.changes, res.after


def at_commit(req: Requirement, rs: ResourceState) -> Requirement:
    """A git package at its default branch installs the commit the plan resolved."""
    commit = (rs.attributes.get("git_commits") or {}).get(req.raw)
    return pinned(req, commit) if unpinned(req) and isinstance(commit, str) else req


def ray_pin(rs: ResourceState, state: State) -> str:
    return f"ray=={state.resources[rs.attributes['cluster']].attributes['ray_version']}"


def pin_lines(raws: list[str], ctx: RunContext, state: State) -> list[str]:
    """The version pins among the entries, as constraint lines."""
    reqs = []
    for raw in raws:
        try:
            reqs.append(requirement(raw, ctx, state))
        except (ValueError, ProviderError):
            continue  # its own install reports it
    return envs.constraint_lines(reqs)


def pins_proven(rs: ResourceState, pins: list[str], ctx: RunContext,
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
        if set(pins) <= set(pin_lines(a.get("reqs") or [], ctx, state)):
            return True
    return False


def write_pins(conn: Connection, rs: ResourceState, ctx: RunContext,
               state: State) -> str:
    """Write the env's pins (from its reqs as configured) for every install to obey."""
    return envs.write_constraints(conn, rs.attributes["path"],
                                  pin_lines(rs.attributes["reqs"], ctx, state))


def ensure_ray(rs: ResourceState, conn: Connection, state: State,
               constraints: str | None, ctx: RunContext | None = None) -> Any:
    """The servlet runs in the env's interpreter, which needs the cluster's Ray
    version; installed under the user's pins (a conflict fails, naming both).
    Returns what the env holds after installing it (None when it was there)."""
    cluster = state.resources[rs.attributes["cluster"]].attributes
    version = cluster["ray_version"]
    if rs.private.get("ray") == version:
        return None
    if rs.private.get("ray") == RAY_GONE:
        # its dist-info (and a link that no longer resolves) are still there: the install
        # would find Ray installed and do nothing
        envs.uninstall(conn, rs.attributes["path"], ["ray"])
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


def wait_seeded(rs: ResourceState, ctx: RunContext) -> None:
    """Wait for the linking of Ray's bytecode that ensure_ray left running."""
    with ctx.lock:
        seeding = ctx.cache.pop(("seeding", rs.address), None)
    if seeding is not None:
        seeding.join()


def on_host(req: Requirement, rs: ResourceState, conn: Connection, ctx: RunContext,
            state: State) -> Requirement:
    """Local folders live on this machine: on a remote cluster, sync them to the host
    first (only changed files travel) and install from there. A reqs: folder whose
    requirements are a pyproject.toml is installed as `-r FOLDER/pyproject.toml`."""
    remote = host_target(req, rs, ctx, state)
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


def host_target(req: Requirement, rs: ResourceState, ctx: RunContext,
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


def own_names(raw: str, installed: dict[str, list[str]], ctx: RunContext,
              state: State) -> list[str]:
    """The distribution a package entry stands for: only it is uninstalled, never
    the dependencies it brought (another entry may need them)."""
    try:
        req = requirement(raw, ctx, state)
    except (ValueError, ProviderError):
        req = None
    if req is not None and req.name:
        return [req.name]
    others = {e.split("==")[0] for r, es in installed.items() if r != raw for e in es}
    return [e.split("==")[0] for e in installed.get(raw, [])
            if e.split("==")[0] not in others][:1]
