"""What a refresh checks: how one requirement is not met by what an env holds."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from urllib.parse import unquote

from rhplan.hosts.envs.layout import Installed, _by_url, _file_url, local_dist_name
from rhplan.packages import Requirement, split_git


def requirement_drift(req: Requirement, dists: Mapping[str, Installed],
                      markers: Mapping[str, str] | None = None, commit: str | None = None,
                      own_name: str | None = None) -> list[str] | None:
    """How one requirement is not met in an env, as short phrases ("idna missing",
    "idna is 3.6, not >=3.7"); [] when it is met; None when the env's distributions
    cannot tell (the caller falls back on what installing it recorded).

    req.target is where the requirement lives on the env's host (a synced folder's
    path there); commit is the git commit installed for a git package at apply;
    own_name the distribution its install reported, to name it when it is gone.
    """
    if req.kind == "pip" and req.name:
        return spec_drift(req.target, dists, markers)
    if req.kind == "pip" and req.target.startswith("/"):
        return [] if _by_url(dists, _file_url(req.target)) else None
    if req.kind == "local":
        if local_dist_name(req.target) in dists or _by_url(dists, _file_url(req.target)):
            return []
        return [_elsewhere(dists, own_name) or
                f"{own_name or posixpath.basename(req.target.rstrip('/'))} missing"]
    if req.kind == "git":
        url, revision = split_git(req.target)
        own = _by_url(dists, url)
        if own is None:
            return [_elsewhere(dists, own_name or req.name) or
                    f"{own_name or req.name or url} missing"]
        want = revision if revision and re.fullmatch(r"[0-9a-f]{40}", revision) else commit
        if want and own.commit and own.commit != want:
            return [f"{own.name} is at commit {own.commit[:12]}, not {want[:12]}"]
        return []
    return None


def spec_drift(spec: str, dists: Mapping[str, Installed],
               markers: Mapping[str, str] | None = None) -> list[str] | None:
    """requirement_drift for one PEP 508 requirement string; None if it is not one."""
    # imported here: packaging costs ~20 ms of every start (its regexes), and only a
    # refresh of an env with pip reqs comes here
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PipRequirement
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion

    try:
        parsed = PipRequirement(spec)
    except InvalidRequirement:
        return None
    if parsed.marker is not None and not parsed.marker.evaluate({**(markers or {}), "extra": ""}):
        return []  # not for this interpreter: the installer skipped it too
    name = canonicalize_name(parsed.name)
    have = dists.get(name)
    if have is None:
        return [f"{name} missing"]
    try:
        ok = parsed.specifier.contains(have.version, prereleases=True)
    except InvalidVersion:
        ok = not parsed.specifier
    return [] if ok else [f"{name} is {have.version}, not {parsed.specifier}"]


def _elsewhere(dists: Mapping[str, Installed], name: str | None) -> str | None:
    """A distribution of that name installed from somewhere else, said so."""
    have = dists.get(name) if name else None
    if have is None:
        return None
    return f"{name} {have.version} is installed from {unquote(have.direct_url or 'an index')}"
