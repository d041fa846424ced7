"""Planning an env block (resources/env.py's EnvType.plan_values): its values as the
plan shows them, and every refusal with its file:line before anything is created (names,
conda, a listed-twice entry, a pin the servlet's Ray cannot live with, env_file values,
a working_dir too big; compute the cluster cannot give is env_compute.py's). Pure but
for reading the user's files (tree hashes, env files) and a git default branch's commit,
each once per run (ctx.cache)."""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

# packaging costs ~20 ms of every start (its regexes): imported where a pip req is checked
if TYPE_CHECKING:
    from packaging.requirements import Requirement as PipRequirement

from rhplan import env_files, pyproject_reqs, working_dir
from rhplan.config.default_env import bare_hint
from rhplan.config.model import ResourceConfig
from rhplan.config.values import UNKNOWN
from rhplan.errors import ConfigError, RhplanError
from rhplan.hosts import envs, sync
from rhplan.names import NAME_RULE, valid_name
from rhplan.packages import (
    REQUIREMENTS,
    Requirement,
    parse_requirement,
    reqs_file,
    resolve_head,
    tree_hash,
    unpinned,
)
from rhplan.provider import RunContext
from rhplan.resources import env_compute
from rhplan.state import digest


def plan_values(rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The env's planned values (attrs, completed), refusing a bad block with its
    file:line."""
    if attrs.get("name") is None:
        attrs["name"] = rc.name
    _check_names(rc, attrs)
    _plan_env_files(rc, attrs, ctx)
    if attrs.get("conda") is not None:
        raise ConfigError(f"env {rc.name!r}: conda envs are not supported yet: rhplan "
                          "builds virtualenvs with uv and does not install conda on hosts; "
                          "use pip packages in a virtualenv (remove conda = ...)", rc.file,
                          rc.block.attrs["conda"].line)
    reqs_line = rc.block.attrs["reqs"].line if "reqs" in rc.block.attrs else rc.line
    cluster = planned.get(attrs["cluster"], {})
    _plan_working_dir(rc, attrs, ctx, cluster)
    sources, commits = _plan_reqs(rc, attrs, ctx, planned, reqs_line)
    attrs["sources"] = sources
    # shown in the plan (sources is not): a new upstream commit reads as one
    attrs["git_commits"] = commits or None
    _check_pins(rc, attrs, planned.get(attrs["cluster"], {}), ctx, reqs_line)
    secret_hashes = [planned.get(s, {}).get("sha256", "") for s in attrs["secrets"]]
    attrs["secrets_sha256"] = hashlib.sha256(
        json.dumps(secret_hashes).encode()).hexdigest() if attrs["secrets"] else ""
    env_compute.check(rc, attrs, cluster, ctx)
    with ctx.lock:  # its cluster may start Ray in the background: a servlet waits
        ctx.cache[("servlets_wait_for", attrs["cluster"])] = True
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


def _plan_reqs(rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
               planned: dict[str, dict[str, Any]], reqs_line: int
               ) -> tuple[dict[str, Any], dict[str, str]]:
    """Each entry of reqs checked, and what makes a change to it show in the plan: a
    package block's spec, a local folder's (or requirements file's) content hash, an
    unpinned git package's default-branch commit. Returns (sources, git commits)."""
    sources: dict[str, Any] = {}
    commits: dict[str, str] = {}  # unpinned git entries: the default branch's commit
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
                              "cannot build yet (it builds virtualenvs with uv and does not "
                              "install conda on hosts); use a pip package", rc.file,
                              reqs_line)
        if unpinned(req):
            # the default branch: its commit now, so a new upstream commit is a change
            # (not while validating: validate reaches nothing outside this machine)
            key = ("git_head", req.target)
            if ctx.cache.get("validating"):
                commits[raw] = UNKNOWN
                continue
            if key not in ctx.cache:
                try:
                    ctx.cache[key] = resolve_head(req)
                except ValueError as exc:
                    raise ConfigError(f"env {rc.name!r}: {exc}", rc.file, reqs_line
                                      ) from None
            commits[raw] = ctx.cache[key]
        if req.kind == "local":
            try:  # never hash (or later sync) a home folder or /
                sync.check_sync_folder(Path(req.target))
            except RhplanError as exc:
                raise ConfigError(f"env {rc.name!r}: {exc}", rc.file, reqs_line) from None
        if req.kind in ("local", "reqs"):
            # editing a local package (or requirements file) reinstalls it; a reqs:
            # folder is only its requirements.txt or pyproject.toml (its other files
            # are no package)
            path = Path(req.target) / (reqs_file(Path(req.target)) or REQUIREMENTS) \
                if req.kind == "reqs" else Path(req.target)
            key = ("tree_hash", str(path))
            if key not in ctx.cache:
                ctx.cache[key] = tree_hash(path)
            sources[raw] = ctx.cache[key]
    return sources, commits


def _plan_working_dir(rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                      cluster: dict[str, Any]) -> None:
    """The working_dir's content hash (a change re-syncs it; the servlet keeps running
    and re-imports what changed), where it goes on the host, and its requirements.txt
    (else its pyproject.toml's [project] dependencies) as a `reqs:` entry (as
    Runhouse's reqs:./ does). Refused here, before anything is
    synced: /, a home folder, a symlink loop, more than working_dir_max_mb."""
    value = attrs.get("working_dir")
    max_mb = attrs.get("working_dir_max_mb")
    max_mb = working_dir.DEFAULT_MAX_MB if max_mb is None else max_mb
    line = _line(rc, "working_dir" if "working_dir" in rc.block.attrs
                 else "working_dir_max_mb")
    if value is UNKNOWN or max_mb is UNKNOWN:
        attrs["working_dir_hash"] = attrs["working_dir_remote"] = UNKNOWN
        return
    if not isinstance(max_mb, (int, float)) or max_mb <= 0:
        raise ConfigError(f"env {rc.name!r}: working_dir_max_mb must be a positive number "
                          f"of MiB, e.g. 500", rc.file, _line(rc, "working_dir_max_mb"))
    root = working_dir.resolve(value, ctx.config_dir)
    key = ("working_dir", str(root), max_mb)
    if key not in ctx.cache:
        try:
            ctx.cache[key] = working_dir.scan(root, max_mb)
        except ConfigError as exc:
            # a bare default env has no block to set working_dir in: say where it is
            bare = f" ({bare_hint(rc)})" if rc.bare_default_of else ""
            raise ConfigError(f"env {rc.name!r}: working_dir: {exc.message}{bare}",
                              rc.file, line) from None
    attrs["working_dir_hash"] = ctx.cache[key][0]
    croot = cluster.get("root_dir", UNKNOWN)
    attrs["working_dir_remote"] = UNKNOWN if croot is UNKNOWN or attrs.get(
        "name") is UNKNOWN else f"{croot}/workdirs/{attrs['name']}"
    try:
        installs = reqs_file(root) is not None
    except pyproject_reqs.PyprojectError as exc:  # pointed at the file itself
        raise ConfigError(f"env {rc.name!r}: working_dir {root}: {exc}",
                          os.path.relpath(root / pyproject_reqs.NAME, ctx.config_dir)
                          if exc.line else rc.file, exc.line or line) from None
    if installs:
        real = root.resolve()
        have = [r for r in attrs["reqs"] if isinstance(r, str)
                and _reqs_target(r, ctx) == str(real)]
        if not have:
            rel = os.path.relpath(real, Path(ctx.config_dir).resolve())
            attrs["reqs"] = [*attrs["reqs"], "reqs:./" if rel == "." else f"reqs:{rel}"]


def _plan_env_files(rc: ResourceConfig, attrs: dict[str, Any],
                    ctx: RunContext) -> None:
    """env_file: plain values join the plan (env_vars win over them); a sensitive
    file's values stay in memory for apply, the plan holding its keys and a keyed
    digest, so editing the file is a planned update that never shows a value."""
    line = _line(rc, "env_file")
    spec = attrs.get("env_file")
    if spec is None:  # left unset (null): states from before env_file plan no change
        return
    env_vars = attrs.get("env_vars") or {}
    if spec is UNKNOWN or any(v is UNKNOWN for v in (spec if isinstance(spec, list)
                                                     else [spec])):
        attrs["env_file_vars"] = attrs["env_file_secret_keys"] = UNKNOWN
        attrs["env_file_sha256"] = UNKNOWN
        return
    try:
        files = env_files.parse_spec(spec, ctx.config_dir)
    except ValueError as exc:
        raise ConfigError(f"env {rc.name!r}: {exc}", rc.file, line) from None
    try:
        found = env_files.read(files, env_vars)
    except ConfigError as exc:
        if exc.line:  # a bad line: the .env file's own file:line
            raise
        raise ConfigError(f"env {rc.name!r}: {exc.message}", rc.file, line) from None
    for label, values in (("env var", found.plain), ("secret", found.sensitive)):
        for key, value in values.items():
            problem = envs.env_var_problem(label, key, value)
            if problem:
                raise ConfigError(f"env {rc.name!r}: env_file: {problem}", rc.file, line)
    attrs["env_file_vars"] = found.plain
    attrs["env_file_secret_keys"] = sorted(found.sensitive)
    attrs["env_file_sha256"] = digest.digest(ctx, found.sensitive) \
        if found.sensitive else ""
    with ctx.lock:  # apply writes them into secrets.json; never into the state
        ctx.secret_values[rc.address] = found.sensitive


def _check_pins(rc: ResourceConfig, attrs: dict[str, Any], cluster: dict[str, Any],
                ctx: RunContext, line: int) -> None:
    """A pin the servlet's Ray cannot live with would fail the apply (or, installed
    anyway, break the servlet): refuse it while planning, when Ray's own requirements
    say so for certain. Every provider runs rhplan's own Ray version on a new cluster;
    its requirements are read from this machine's Ray metadata. Ranges are left to the
    resolver at apply, which sees the whole dependency tree."""
    version = cluster.get("ray_version")
    version = version if isinstance(version, str) else _local_ray_version()
    for raw in attrs["reqs"]:
        if raw is UNKNOWN or raw.startswith("package."):
            continue
        req = _parsed(raw, ctx)
        if req.kind != "pip" or not req.name:
            continue
        key = ("pin_conflict", req.name, req.target, version)  # pins repeat across envs
        if key not in ctx.cache:
            # Ray's requirements are read (~300 parsed) only when a pip req needs them
            ctx.cache[key] = _pin_verdict(req.name, req.target, version,
                                          _ray_requires(version, ctx))
        why = ctx.cache[key]
        if why:
            raise ConfigError(f"env {rc.name!r}: {raw!r} conflicts with the servlet's Ray: "
                              f"{why}; pin a version both accept, or remove the pin",
                              rc.file, line)


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


@functools.cache
def _local_ray_version() -> str | None:
    try:
        return importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return None


def _ray_requires(version: str | None, ctx: RunContext) -> list[PipRequirement]:
    """What ray==version itself requires (no extras), from this machine's Ray metadata
    when it is that version; [] when unknown."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PipRequirement

    key = ("ray_requires", version)
    if key not in ctx.cache:
        needs = []
        if version is not None and version == _local_ray_version():
            for line in importlib.metadata.requires("ray") or []:
                try:
                    req = PipRequirement(line)
                except InvalidRequirement:
                    continue
                if req.marker is None or req.marker.evaluate({"extra": ""}):
                    needs.append(req)
        ctx.cache[key] = needs
    return ctx.cache[key]


def _pin_verdict(name: str, target: str, ray_version: str | None,
                 ray_needs: list[PipRequirement]) -> str | None:
    """_pin_conflict of one requirement string (None if it does not parse, or its marker
    leaves it out here)."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PipRequirement

    try:
        spec = PipRequirement(target)
    except InvalidRequirement:
        return None
    if spec.marker is not None and not spec.marker.evaluate({"extra": ""}):
        return None
    return _pin_conflict(name, spec, ray_version, ray_needs)


def _pin_conflict(name: str, spec: PipRequirement, ray_version: str | None,
                  ray_needs: list[PipRequirement]) -> str | None:
    """Why a user's requirement cannot be installed beside ray==ray_version, when that is
    certain: a ray version the cluster does not run, or an exact pin Ray's specifier
    excludes. None otherwise."""
    if name == "ray":
        if ray_version and spec.specifier and not spec.specifier.contains(
                ray_version, prereleases=True):
            return f"the cluster runs ray {ray_version}"
        return None
    pins = [s.version for s in spec.specifier if s.operator in ("==", "===")
            and not s.version.endswith(".*")]
    from packaging.utils import canonicalize_name

    for need in ray_needs:
        if canonicalize_name(need.name) != name or not need.specifier:
            continue
        for pin in pins:
            if not need.specifier.contains(pin, prereleases=True):
                return f"ray {ray_version} requires {need.name}{need.specifier}"
    return None


def _reqs_target(raw: str, ctx: RunContext) -> str | None:
    """The folder of a reqs: entry ("reqs:DIR", "requirements.txt"), else None."""
    if raw.startswith("package."):
        return None
    try:
        req = _parsed(raw, ctx)
    except ValueError:
        return None
    return req.target if req.kind == "reqs" else None


def _parsed(raw: str, ctx: RunContext) -> Requirement:
    """Package strings repeat across envs: parse each once per run (errors are not
    cached, so each env reports its own file:line)."""
    key = ("requirement", raw)
    req = ctx.cache.get(key)
    if req is None:
        req = ctx.cache[key] = parse_requirement(raw, ctx.config_dir)
    return req
