"""Refreshing an env (resources/env.py's read): is its folder there, is its servlet the
one rhplan started, and is each reqs entry still met. An entry is checked itself
(present, in its specifier, from its folder or at its git commit) and so are the
distributions its install added; an entry that drifted is dropped from the refreshed
reqs, so the plan installs it again. Envs on the head are read with their cluster, in
its one command per host (rhplan.hosts.facts); an env on another node by its own command.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from rhplan.errors import ProviderError
from rhplan.hosts import envs, facts
from rhplan.provider import RunContext
from rhplan.resources import env_packages, env_servlet
from rhplan.state.model import ResourceState, State


def read(rs: ResourceState, ctx: RunContext, state: State
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
        conn, _ = env_servlet.connect(rs, ctx, state)
        seen = envs.read_env(conn, rs.attributes["path"])
        servlet = env_servlet.status(rs, conn, ctx, state) if seen is not None else {}
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
    ray = rs.private.get("ray")
    have = seen.dists.get("ray")
    if ray is not None and (have is None or have.version != ray):
        # the servlet's Ray (installed first, tracked apart from reqs): a link into the
        # cluster's shared Ray venv that no longer resolves reads as missing
        # (hostside/env_packages.py); the update installs it again and restarts the servlet
        rs.private["ray"] = env_packages.RAY_GONE
        rs.attributes["servlet"] = "stopped"
        notes.append(f"{rs.address}: the servlet's Ray is not in the env any more (a link "
                     "to the cluster's shared Ray venv that no longer resolves, or an "
                     "uninstall); apply installs it again and restarts the servlet")
    kept = []
    for raw in rs.attributes.get("reqs") or []:
        problems = _drift(raw, rs, seen.dists, seen.markers, ctx, state)
        if problems:
            notes.append(f"{rs.address}: {raw} drifted ({', '.join(problems)})")
        else:
            kept.append(raw)
    rs.attributes["reqs"] = kept
    return rs, notes


def _drift(raw: str, rs: ResourceState, now: dict[str, envs.Installed],
           markers: dict[str, str], ctx: RunContext, state: State) -> list[str]:
    """How one entry of reqs is not met: the requirement itself is checked (present,
    in its specifier; a folder's or git package's distribution, at its commit), and
    the dependencies its install added must still be there. What the env cannot tell
    (a URL's distribution) falls back on the versions its install recorded."""
    recorded = (rs.attributes.get("installed") or {}).get(raw, [])
    try:
        req = env_packages.requirement(raw, ctx, state)
    except (ValueError, ProviderError):
        req = None  # e.g. its folder is gone here: judged by the record alone
    own: list[str] | None = None
    if req is not None and req.kind == "reqs":
        own = _requirements_txt_drift(Path(req.target), now, markers)
    elif req is not None:
        own_name = recorded[0].partition("==")[0] if recorded else None
        host_req = dataclasses.replace(req, target=env_packages.host_target(req, rs, ctx, state))
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
