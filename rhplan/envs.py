"""Build and read Python environments ("envs") on a host through a Connection.

An env is a virtualenv in a folder on the host. Installs use `uv` when the
host has it, else the env's own pip. Every command is an argv list: package
strings, paths, env var values and secrets are passed as data, never pasted
into a shell line. The few fixed `sh -c` scripts below take user data only as
positional arguments ("$1"), which a shell never re-parses.

Local folders with packaging metadata are installed (not editable). Folders
without it are put on the env's path by a `rhplan-local-<name>-<hash>.pth`
file in site-packages; `read_installed` reports each such file as a
distribution of that name (version "0", direct_url "file://DIR"), so it shows
up in refresh and is removed by `uninstall` like any other.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as PipRequirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion

from rhplan import hostside, secret_providers
from rhplan.connection import CommandResult, Connection
from rhplan.errors import ProviderError
from rhplan.packages import Requirement, split_git

# Prefix of the .pth files rhplan writes; read_installed finds them by it.
PTH_PREFIX = "rhplan-local-"
# The version reported for a folder put on the path (it has no version).
PTH_VERSION = "0"
# Files rhplan keeps inside an env, next to bin/ and lib/.
ENV_VARS_FILE = "rhplan/env_vars.json"
SECRETS_FILE = "rhplan/secrets.json"
# The user's version pins, given to every install in the env as constraints, so that
# installing one package (or Ray) can never move another one's pin.
CONSTRAINTS_FILE = "rhplan/constraints.txt"

_DIST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")



def env_var_problem(label: str, key: object, value: object) -> str | None:
    """Why KEY=VALUE cannot be put in a process environment, or None. Never quotes the
    value: it may be a secret."""
    if not isinstance(key, str) or not key or "=" in key or "\0" in key:
        return (f"{label} name {key!r} cannot be set in an environment (no '=', no NUL, "
                f"not empty); use letters, digits and underscores")
    if not isinstance(value, str) or "\0" in value:
        return f"the value of {label} {key!r} must be text without NUL characters"
    return None


@dataclass(frozen=True)
class Installed:
    """One distribution in an env."""

    name: str  # canonical name
    version: str
    direct_url: str | None  # direct_url.json "url" (local folders, git, URLs)
    commit: str | None = None  # direct_url.json vcs_info.commit_id (git installs)


# The host scripts that read an env (hostside/env_packages.py) learn from here which
# .pth files are rhplan's and the version those report.
PTH_CONSTANTS = f"PTH_PREFIX = {PTH_PREFIX!r}\nPTH_VERSION = {PTH_VERSION!r}\n"
# What an env holds, as one JSON line (run by the env's own interpreter)
_INSPECT = hostside.script("env_packages", before=PTH_CONSTANTS, after="report_env()")
# An install, then, when it worked, the read of the env (hostside/env_install.py)
_INSTALL_THEN_READ = hostside.script(
    "env_install", uses=("env_packages",), before=PTH_CONSTANTS,
    after="report_after(run_install(sys.argv[1], sys.argv[2:]))")
# A local package folder, from a wheel cached per content (uv rebuilds a folder on every
# install: 1.5-3 s per env), then the read
_LOCAL_WHEEL = hostside.script("local_wheel", uses=("env_packages", "env_install"),
                               before=PTH_CONSTANTS, after="report_after(main())")
# The same, also reading the env first (the first line printed): one command where an
# install that knows nothing of the env yet needed two
_READ_INSTALL_READ = hostside.script(
    "env_install", uses=("env_packages",), before=PTH_CONSTANTS,
    after="report_env()\nreport_after(run_install(sys.argv[1], sys.argv[2:]))")
# Ray's install into a new env: the Ray venv's `ray` folder linked in first where it can
# be (hostside/ray_link.py), then the install (Ray's dependencies only, then), read before
# and after
_READ_LINK_RAY_INSTALL_READ = hostside.script(
    "ray_link", uses=("env_packages", "env_install"), before=PTH_CONSTANTS,
    after="report_env()\nLINKED = link_ray(sys.argv[1], sys.argv[2])\n"
          "RC = run_install(sys.argv[3], sys.argv[4:])\n"
          "if RC and LINKED:\n    unlink_ray(sys.argv[2])\nreport_after(RC)")
_READ_LOCAL_WHEEL = hostside.script("local_wheel", uses=("env_packages", "env_install"),
                                    before=PTH_CONSTANTS,
                                    after="report_env()\nreport_after(main())")

# Makes the env at $1 with the command after it ("$@" DIR), in one command: an env
# already there is replaced (--clear), an empty folder filled, anything else refused
# (exit 97), so a typo in a path cannot wipe someone's files.
_CREATE_SCRIPT = r"""
d=$1
shift
if [ -f "$d/pyvenv.cfg" ]; then exec "$@" --clear "$d"
elif [ -d "$d" ] && [ -z "$(ls -A -- "$d")" ]; then exec "$@" "$d"
elif [ -e "$d" ] || [ -L "$d" ]; then echo "rhplan: busy" >&2; exit 97
else exec "$@" "$d"
fi
"""

# Says whether a local folder is a Python project: "package", "plain" or "missing".
_PROBE_LOCAL_SCRIPT = r"""
d=$1
if [ ! -d "$d" ]; then echo missing
elif [ -f "$d/pyproject.toml" ] || [ -f "$d/setup.py" ] || [ -f "$d/setup.cfg" ]; then echo package
else echo plain
fi
"""

# Removes the folder $d unless it is the home folder or one of its parents; checked on
# the host itself because only the host knows its $HOME. An installer a killed apply
# left behind may still be writing into the folder for a few seconds ("Directory not
# empty"): try again until it is done, 15 s at most. Exits 3 when refused, with rm's
# status when the last try fails; else the script goes on.
_REMOVE_D = r"""
h=${HOME%/}
if [ -n "$h" ]; then
  case "$h/" in
    "$d"/*) echo "refusing to delete $d: it holds the home folder $h" >&2; exit 3 ;;
  esac
fi
i=0
until rm -rf -- "$d" 2>/dev/null && [ ! -e "$d" ]; do
  i=$((i + 1))
  if [ "$i" -ge 75 ]; then rm -rf -- "$d" || exit; break; fi
  sleep 0.2
done
"""

# Deletes $1 (as _REMOVE_D does).
_DELETE_SCRIPT = "\nd=$1" + _REMOVE_D

# A new env at $1 in one command (one SSH round trip where there were three: the uv to
# use, the delete, the venv): whatever an interrupted create left there is removed as
# _REMOVE_D removes it (never the home folder or a parent of it), then $2, the uv,
# makes the venv with the arguments after it. Exit 98, having touched nothing, when $2
# is not an executable there.
_FRESH_SCRIPT = """
d=$1 uv=$2
shift 2
[ -f "$uv" ] && [ -x "$uv" ] || exit 98""" + _REMOVE_D + """exec "$uv" venv "$@" "$d"
"""

# One setup command in the env, with its vars and secrets (hostside/setup_runner.py)
_SETUP_RUNNER = hostside.script("setup_runner")


@dataclass(frozen=True)
class _EnvInfo:
    dists: dict[str, Installed]
    site_packages: str
    pth_files: dict[str, str]  # pseudo-distribution name -> .pth path
    markers: dict[str, str]  # what PEP 508 markers are evaluated against in this env


def env_python(env_dir: str) -> str:
    """The path of an env's interpreter on its host."""
    return posixpath.join(_check_env_dir(env_dir), "bin", "python")


def local_dist_name(folder: str) -> str:
    """The name under which a folder put on the path (by .pth) is reported.

    Readable from the folder's name, unique by a hash of its full path.
    """
    base = re.sub(r"[^a-z0-9]+", "-", posixpath.basename(folder.rstrip("/")).lower())
    base = base.strip("-")[:40] or "dir"
    digest = hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{PTH_PREFIX}{base}-{digest}"


def create_venv(conn: Connection, env_dir: str, python: str = "python3") -> str:
    """Create (or re-create) a virtualenv at env_dir; returns its python path.

    With uv, python may be an executable or a version ("3.11"); pip is not
    seeded, since uv installs into the env from outside. Without uv, the
    stdlib venv module is used and seeds pip, the env's only installer then.
    An existing env at env_dir is replaced; any other non-empty folder is
    refused, so a typo in a path cannot wipe someone's files.
    """
    env_dir = _check_env_dir(env_dir)
    uv = find_uv(conn)
    if uv:
        argv = [uv, "venv", "--python", python]
    else:
        exe = f"python{python}" if re.fullmatch(r"\d+(\.\d+)*", python) else python
        argv = [exe, "-m", "venv"]
    # the look at the folder and the venv: one command (one SSH round trip)
    res = conn.run(["sh", "-c", _CREATE_SCRIPT, "rhplan", env_dir, *argv], env=UV_ENV)
    if res.returncode == 97 and "rhplan: busy" in res.stderr:
        raise ProviderError(
            f"cannot create an env at {env_dir} on {conn.host}: something that is not a "
            f"Python env is already there; remove it or choose another folder"
        )
    if not res.ok:
        raise ProviderError(f"creating env at {env_dir} failed: {_last_line(res)}")
    return posixpath.join(env_dir, "bin", "python")


def make_env(conn: Connection, env_dir: str, python: str = "python3",
             ray_python: str | None = None) -> str:
    """A new, empty env at env_dir, whatever an interrupted create left there (as
    delete_env then create_venv); returns its python path. One command when the uv to
    use is known: found before on this connection, else the one beside the cluster's Ray
    interpreter ray_python (rhplan's uv lives in its Ray venv on an SSH host, and beside
    rhplan's own interpreter on this machine, where which() looks first too). Otherwise
    (no uv there) the three steps, as before."""
    env_dir = _check_env_dir(env_dir)
    if env_dir == "/":
        raise ProviderError("refusing to delete / as an env folder")
    uv = getattr(conn, "_rhplan_uv", None) or (
        posixpath.join(posixpath.dirname(ray_python), "uv") if ray_python else None)
    if uv:
        res = conn.run(["sh", "-c", _FRESH_SCRIPT, "rhplan", env_dir, uv, "--python", python],
                       env=UV_ENV)
        if res.ok:
            try:
                conn._rhplan_uv = uv  # type: ignore[attr-defined]
            except AttributeError:
                pass
            return posixpath.join(env_dir, "bin", "python")
        if res.returncode == 3:
            raise ProviderError(f"deleting env at {env_dir} failed: {_last_line(res)}")
        if res.returncode != 98:
            raise ProviderError(f"creating env at {env_dir} failed: {_last_line(res)}")
    delete_env(conn, env_dir)
    return create_venv(conn, env_dir, python)


def read_installed(conn: Connection, env_dir: str) -> dict[str, Installed] | None:
    """What is installed in the env, by canonical name; None if the env is gone.

    One command, so a refresh of many envs stays cheap over SSH.
    """
    info = _inspect(conn, _check_env_dir(env_dir))
    return None if info is None else info.dists


@dataclass(frozen=True)
class EnvFacts:
    """What a refresh needs of an env: its distributions, and the values its PEP 508
    markers are evaluated against."""

    dists: dict[str, Installed]
    markers: dict[str, str]


def read_env(conn: Connection, env_dir: str) -> EnvFacts | None:
    """The env's distributions and marker values, in one command; None if it is gone."""
    info = _inspect(conn, _check_env_dir(env_dir))
    return None if info is None else EnvFacts(info.dists, info.markers)


@dataclass(frozen=True)
class InstallResult:
    changes: list[str]  # "name==version" added or changed, the requirement's own first
    own: Installed | None  # the requirement's own distribution, when it can be told
    # what the env holds after this install: the next install's "before" (one read of
    # the env per install, not two); only valid until something else changes the env
    after: Any = None


def install(conn: Connection, env_dir: str, req: Requirement, with_reqs: Sequence[str] = (),
            constraints: str | None = None) -> list[str]:
    """Install one requirement into the env.

    Returns "name==version" for each distribution it added or changed, the
    requirement's own distribution first when it can be told (by name, or by
    URL for a local folder or git package; a folder reinstalled at the same version
    counts as changed), then the dependencies it brought, sorted. For a remote host,
    reqs/local targets must already be synced to req.target there.

    with_reqs are resolved together with it (the servlet's "ray==X": a requirement
    that Ray's own requirements exclude fails to resolve instead of breaking Ray);
    constraints is the path of a constraints file on the host (the user's pins).
    """
    return install_entry(conn, env_dir, req, with_reqs, constraints).changes


def install_entry(conn: Connection, env_dir: str, req: Requirement,
                  with_reqs: Sequence[str] = (), constraints: str | None = None,
                  before: Any = None, link_ray: tuple[str, str] | None = None
                  ) -> InstallResult:
    """install(), also telling which distribution is the requirement's own. before: the
    `after` of the previous install into this env, when nothing changed it since.
    link_ray: (the cluster's Ray interpreter, Ray's version) for Ray's own install into
    an env not read yet: its Ray venv's `ray` folder is linked in first where that is
    safe (hostside/ray_link.py), and the install adds only Ray's dependencies."""
    env_dir = _check_env_dir(env_dir)
    what = f"installing {req.raw!r} into env at {env_dir}"
    if req.kind == "conda":
        raise ProviderError(
            f"{what} failed: conda packages need a conda env; rhplan builds virtualenvs, "
            f"so write the package as 'pip:NAME' or remove it"
        )
    if req.target.startswith("-"):
        # Would be read as an installer option, not a package.
        raise ProviderError(f"{what} failed: {req.target!r} is not a package")

    gone = f"{what} failed: there is no env there; create it first"
    local_url = None
    if req.kind == "reqs":  # a folder's requirements.txt, or a pyproject.toml itself
        targets = ["-r", req.target if req.target.endswith(".toml")
                   else posixpath.join(req.target, "requirements.txt")]
    elif req.kind == "local":
        # with uv, the wheel script below looks at the folder itself (one command)
        kind = "package" if find_uv(conn) and not req.args else _run_checked(
            conn, ["sh", "-c", _PROBE_LOCAL_SCRIPT, "rhplan", req.target], what
        ).stdout.strip()
        if kind != "package":
            return _local_folder(conn, env_dir, req, kind,
                                 before or _inspect_or_fail(conn, env_dir, what, gone), what)
        local_url = _file_url(req.target)
        targets = [local_url]
    elif req.kind == "git":
        targets = [req.target]
        local_url = split_git(req.target)[0]  # how direct_url.json names a git install
    elif req.kind == "pip":
        if req.target.startswith("/"):
            # uv reads a bare path as a requirement, so ";" in it would be a
            # marker; a file:// URL keeps every character data.
            local_url = _file_url(req.target)
            targets = [local_url]
        else:
            targets = [req.target]
    else:
        raise ProviderError(f"{what} failed: unknown package kind {req.kind!r}")

    with_reqs = [] if _replaces_index(req.args) else list(with_reqs)
    limits = ["-c", constraints] if constraints else []
    uv = find_uv(conn)
    read_first = before is None  # what the env holds before: read by the same command
    if req.kind == "local" and uv and not req.args:
        # from a wheel built once per content of the folder (hostside/local_wheel.py),
        # resolved from uv's cache first as an exact pin is
        script, args = (_READ_LOCAL_WHEEL if read_first else _LOCAL_WHEEL).text, [
            req.target, local_url, uv]
    else:
        script, args = (_READ_INSTALL_READ if read_first else _INSTALL_THEN_READ).text, [
            "offline-first" if uv and _exact(req) else "online",
            *_installer(conn, env_dir, "install"), *targets, *req.args]
        if link_ray and uv and read_first:
            script, args = _READ_LINK_RAY_INSTALL_READ.text, [*link_ray, *args]
    # the install and the read of what the env then holds: one command, not two
    res = conn.run([env_python(env_dir), "-I", "-c", script, *args, *with_reqs, *limits],
                   env=UV_ENV)
    if res.returncode in (126, 127):  # no interpreter: the env (or its base Python) is gone
        raise ProviderError(gone)
    if read_first:
        before = _first_info(res)
        if before is None:
            raise ProviderError(f"{what} failed: {_last_line(res)}")
    said = _LOCAL_KINDS.get(res.returncode) if req.kind == "local" else None
    if said and f'{{"local": "{said}"}}' in res.stdout:  # no package there after all
        return _local_folder(conn, env_dir, req, said, before, what)
    if not res.ok:
        raise ProviderError(f"{what} failed: {_last_line(res)}")
    after = _read_info(res, conn, env_dir)
    if after is None:
        raise ProviderError(f"{what} failed: the env disappeared during the install")
    own = after.dists.get(req.name) if req.name else None
    if own is None and local_url is not None:
        own = _by_url(after.dists, local_url)
    return InstallResult(_changes(before, after, req.name, local_url), own, after)


# What hostside/local_wheel.py exits with for a folder it does not install
_LOCAL_KINDS = {95: "plain", 96: "missing"}


def _local_folder(conn: Connection, env_dir: str, req: Requirement, kind: str,
                  before: _EnvInfo, what: str) -> InstallResult:
    """A local folder that is no package: missing (an error), or plain (put on the
    env's path by a .pth file)."""
    if kind == "missing":
        raise ProviderError(f"{what} failed: the folder {req.target} is not on {conn.host}")
    _write_pth(conn, before, req.target, what)
    after = _inspect_or_fail(conn, env_dir, what)
    name = local_dist_name(req.target)
    return InstallResult(_changes(before, after, name, None), after.dists.get(name), after)


# Ray's compiled bytecode (and its dependencies') linked into an env (hostside/seed_bytecode.py)
_SEED_BYTECODE = hostside.script("seed_bytecode")


def seed_bytecode(conn: Connection, env_dir: str, site_packages: str, ray_python: str,
                  ray_version: str) -> None:
    """Give a new env the compiled bytecode of its Ray and of the packages Ray brought
    from the cluster's Ray venv, where the env has the same files (see
    _SEED_BYTECODE). Only a speed-up: a failure changes nothing and is ignored."""
    _check_env_dir(env_dir)
    conn.run([ray_python, "-I", "-c", _SEED_BYTECODE.text, site_packages, ray_version],
             timeout=120)


def _exact(req: Requirement) -> bool:
    """One exact version of a package from its index (name==V): uv's cache, filled by the
    first env, can answer it without the index."""
    if req.kind != "pip" or not req.name or req.args:
        return False
    try:
        spec = PipRequirement(req.target)
    except InvalidRequirement:
        return False
    pins = list(spec.specifier)
    return not spec.url and len(pins) == 1 and (
        pins[0].operator == "===" or (pins[0].operator == "==" and "*" not in pins[0].version))


def _replaces_index(args: Sequence[str]) -> bool:
    """An entry installed from another index only (torch's) cannot bring Ray's packages
    along: it is installed alone, still under the pins."""
    return any(a in ("-i", "--index-url", "--no-index") or a.startswith("--index-url=")
               for a in args)


def constraint_lines(reqs: Iterable[Requirement]) -> list[str]:
    """The pins among reqs as constraint lines: a name with a version specifier, and its
    marker (constraints take no URLs, no extras)."""
    lines = []
    for req in reqs:
        if req.kind != "pip" or not req.name:
            continue
        try:
            spec = PipRequirement(req.target)
        except InvalidRequirement:
            continue
        if spec.url or not spec.specifier:
            continue
        lines.append(f"{spec.name}{spec.specifier}" + (f"; {spec.marker}" if spec.marker else ""))
    return lines


def write_constraints(conn: Connection, env_dir: str, lines: Sequence[str]) -> str:
    """Write ENV/rhplan/constraints.txt; returns its path on the host for
    install(constraints=)."""
    path = posixpath.join(_check_env_dir(env_dir), CONSTRAINTS_FILE)
    try:
        conn.put_bytes("".join(f"{line}\n" for line in lines).encode("utf-8"), path)
    except OSError as exc:
        raise ProviderError(f"writing {CONSTRAINTS_FILE} of env at {env_dir} on {conn.host} "
                            f"failed: {exc}") from None
    return path


def check_resolvable(conn: Connection, env_dir: str, targets: Sequence[str],
                     constraints: str | None) -> str | None:
    """Why targets cannot be installed together under the constraints (the resolver's
    reason, naming both sides), or None. Resolves only (--dry-run): nothing is installed."""
    env_dir = _check_env_dir(env_dir)
    limits = ["-c", constraints] if constraints else []
    argv = [*_installer(conn, env_dir, "install"), "--dry-run", *targets, *limits]
    if find_uv(conn) and conn.run([*argv, "--offline"], env=UV_ENV).ok:
        return None  # resolved from uv's cache alone (see _run_install)
    res = conn.run(argv, env=UV_ENV)
    return None if res.ok else _last_line(res)


# --- what a refresh checks ---------------------------------------------------------


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


def _by_url(dists: Mapping[str, Installed], url: str) -> Installed | None:
    """The distribution installed from url (a folder, a git repository, a wheel)."""
    want = unquote(url).rstrip("/")
    for dist in dists.values():
        if dist.direct_url is not None and unquote(dist.direct_url).rstrip("/") == want:
            return dist
    return None


# Which names another distribution of the env still needs (hostside/still_required.py)
_REQUIRED_SCRIPT = hostside.script("still_required")


def still_required(conn: Connection, env_dir: str, names: list[str]) -> list[str]:
    """The names among `names` that another distribution in the env depends on."""
    env_dir = _check_env_dir(env_dir)
    if not names:
        return []
    res = conn.run([env_python(env_dir), "-I", "-c", _REQUIRED_SCRIPT.text, *names],
                   timeout=120)
    if not res.ok:
        return list(names)  # cannot tell: keep them all rather than break the env
    return json.loads(res.stdout)


def uninstall(conn: Connection, env_dir: str, names: list[str]) -> None:
    """Uninstall distributions by name; names not installed are skipped.

    Names reported for folders on the path (rhplan-local-...) remove their .pth.
    """
    env_dir = _check_env_dir(env_dir)
    if not names:
        return
    bad = [n for n in names if not _DIST_NAME.match(n)]
    if bad:
        raise ProviderError(f"cannot uninstall {bad[0]!r}: it is not a distribution name")
    what = f"uninstalling {', '.join(names)} from env at {env_dir}"
    info = _inspect(conn, env_dir)
    if info is None:
        return  # the env is gone, and its packages with it
    wanted = {_canonical(n) for n in names}
    pth = sorted(info.pth_files[n] for n in wanted if n in info.pth_files)
    dists = sorted(n for n in wanted if n in info.dists and n not in info.pth_files)
    if pth:
        _run_checked(conn, ["rm", "-f", "--", *pth], what)
    if dists:
        _run_checked(conn, [*_installer(conn, env_dir, "uninstall"), *dists], what)


def write_env_files(
    conn: Connection, env_dir: str, env_vars: Mapping[str, str], secrets: Mapping[str, str],
    fresh: bool = False,
) -> None:
    """Write ENV/rhplan/env_vars.json (0644) and ENV/rhplan/secrets.json (0600).

    Values are never put in a message: an error names the key only. fresh: the env was
    just made (make_env), so it has no credential files to clear: without provider
    secrets, nothing is run on the host (the files are written, no command).
    """
    env_dir = _check_env_dir(env_dir)
    # provider secrets' credential files (0600) first; secrets.json points at them
    if not fresh or any(secret_providers.is_file_key(k) for k in secrets):
        secrets = secret_providers.place(conn, env_dir, secrets)
    for label, values, path, mode in (
        ("env var", env_vars, ENV_VARS_FILE, 0o644),
        ("secret", secrets, SECRETS_FILE, 0o600),
    ):
        for key, value in values.items():
            problem = env_var_problem(label, key, value)
            if problem:
                raise ProviderError(problem)
        data = json.dumps(dict(values), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        try:
            conn.put_bytes(data.encode("utf-8"), posixpath.join(env_dir, path), mode)
        except OSError as exc:
            # The OS message names the path and the reason, never the content.
            raise ProviderError(
                f"writing {path} of env at {env_dir} on {conn.host} failed: {exc}"
            ) from None


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """text with every secret value (as is, JSON- or repr-escaped) replaced: a failed
    command's output may hold one (a setup command that read ENV/rhplan/secrets.json),
    and error messages end up in terminals and CI logs."""
    for value in sorted(secrets.values(), key=len, reverse=True):
        if len(value) < 4:
            continue  # too short to tell from ordinary text
        forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1]}
        # a message quotes one line of output: each line of a multi-line value counts
        forms |= {line for line in value.splitlines() if len(line.strip()) >= 8}
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "(sensitive value)")
    return text


def run_setup_cmds(
    conn: Connection, env_dir: str, cmds: list[str], secrets: Mapping[str, str] | None = None,
    cwd: str = "",
) -> None:
    """Run user-written shell commands (Runhouse setup_cmds) in order, in the env.

    Each runs as its own bash script with the env's bin first on PATH, VIRTUAL_ENV set,
    and the env's env vars and secrets (from the files write_env_files wrote) in its
    environment, in cwd when given (the env's working_dir); the first failure stops the
    rest. Its error names the last line of the command's output, with the env's secret
    values redacted.
    """
    env_dir = _check_env_dir(env_dir)
    for i, cmd in enumerate(cmds, 1):
        res = conn.run([env_python(env_dir), "-I", "-c", _SETUP_RUNNER.text, env_dir, cwd, cmd,
                        ENV_VARS_FILE, SECRETS_FILE])
        if not res.ok:
            first = cmd.strip().splitlines()[0] if cmd.strip() else ""
            shown = first if len(first) <= 60 else first[:57] + "..."
            why = _last_line(res) if (res.stderr or res.stdout).strip() else ""
            raise ProviderError(redact(
                f"setup command {i} of env at {env_dir} ({shown!r}) failed with exit code "
                f"{res.returncode}" + (f": {why}" if why else ""), secrets or {}
            ))


def delete_env(conn: Connection, env_dir: str) -> None:
    """Delete the env folder; a missing folder is fine. Refuses / and home."""
    env_dir = _check_env_dir(env_dir)
    if env_dir == "/":
        raise ProviderError("refusing to delete / as an env folder")
    _run_checked(
        conn, ["sh", "-c", _DELETE_SCRIPT, "rhplan", env_dir], f"deleting env at {env_dir}"
    )


# --- helpers -----------------------------------------------------------------


def _check_env_dir(env_dir: str) -> str:
    # Relative paths would depend on the remote login folder, and "~" is not
    # expanded in argv: only absolute paths mean the same thing everywhere.
    if not isinstance(env_dir, str) or not env_dir.startswith("/") or "\0" in env_dir:
        raise ProviderError(f"env folder {env_dir!r} must be an absolute path")
    return posixpath.normpath(env_dir)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _file_url(path: str) -> str:
    return "file://" + quote(path)


def find_uv(conn: Connection) -> str | None:
    """uv on the host, looked up until found, then remembered on the connection (over
    SSH each look is a round trip; rhplan's own uv lives in its Ray venv)."""
    found = getattr(conn, "_rhplan_uv", None)
    if found is None:
        found = conn.which("uv")
        if found:
            try:
                conn._rhplan_uv = found  # type: ignore[attr-defined]
            except AttributeError:
                pass
    return found


def _installer(conn: Connection, env_dir: str, verb: str) -> list[str]:
    python = posixpath.join(env_dir, "bin", "python")
    uv = find_uv(conn)
    if uv:
        return [uv, "pip", verb, "--python", python]
    flags = ["-y"] if verb == "uninstall" else []
    return [python, "-m", "pip", verb, "--disable-pip-version-check", *flags]


def _inspect(conn: Connection, env_dir: str) -> _EnvInfo | None:
    python = posixpath.join(env_dir, "bin", "python")
    return _read_info(conn.run([python, "-I", "-c", _INSPECT.text]), conn, env_dir)


def _read_info(res: CommandResult, conn: Connection, env_dir: str) -> _EnvInfo | None:
    """The env's packages from report_env's line (the last one printed)."""
    if res.returncode in (126, 127):
        return None  # no interpreter: the env (or its base Python) is gone
    if not res.ok:
        raise ProviderError(
            f"reading the packages of env at {env_dir} on {conn.host} failed: {_last_line(res)}"
        )
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    try:
        data = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise ProviderError(
            f"reading the packages of env at {env_dir} on {conn.host} failed: "
            f"its python printed no package list"
        ) from None
    return _EnvInfo(installed_from(data["dists"]), data["site_packages"], data["pth"],
                    data.get("markers") or {})


def installed_from(dists: Mapping[str, list[Any]]) -> dict[str, Installed]:
    """Installed values from what the host scripts print: name -> [version, url, commit]
    (older scripts printed [version, url])."""
    return {name: Installed(name, *fields) for name, fields in dists.items()}


def _inspect_or_fail(conn: Connection, env_dir: str, what: str, gone: str = "") -> _EnvInfo:
    info = _inspect(conn, env_dir)
    if info is None:
        raise ProviderError(gone or f"{what} failed: the env disappeared during the install")
    return info


def _first_info(res: CommandResult) -> _EnvInfo | None:
    """The env as report_env printed it before an install (the first such line of a
    command that read, installed and read again); None if it printed none."""
    for line in res.stdout.splitlines():
        if line.startswith('{"site_packages"'):
            try:
                data = json.loads(line)
            except ValueError:
                return None
            return _EnvInfo(installed_from(data["dists"]), data["site_packages"],
                            data["pth"], data.get("markers") or {})
    return None


def _write_pth(conn: Connection, info: _EnvInfo, folder: str, what: str) -> None:
    # site.py reads one path per line and *executes* lines starting with
    # "import": a newline in the path could smuggle code in, so refuse it.
    if "\n" in folder or "\r" in folder or folder != folder.strip():
        raise ProviderError(
            f"{what} failed: the folder path has a line break or edge spaces, which a .pth "
            f"file cannot hold; rename the folder, or add a pyproject.toml to install it"
        )
    name = local_dist_name(folder)
    body = f"{folder}\n# put on sys.path by rhplan; uninstall {name} to remove\n"
    try:
        conn.put_bytes(body.encode("utf-8"), posixpath.join(info.site_packages, name + ".pth"))
    except OSError as exc:
        raise ProviderError(f"{what} failed: {exc}") from None


def _changes(
    before: _EnvInfo, after: _EnvInfo, own_name: str | None, own_url: str | None
) -> list[str]:
    """name==version of what changed, the requirement's own distribution first.

    The own one is found by name (pip specs) or by its file:// URL (local
    folders), and counts as changed even at the same version: it was rebuilt.
    """
    own: list[str] = []
    deps: list[str] = []
    for name, dist in sorted(after.dists.items()):
        is_own = name == own_name or (
            own_url is not None
            and dist.direct_url is not None
            and unquote(dist.direct_url) == unquote(own_url)
        )
        if is_own and own_url is not None:
            own.append(f"{name}=={dist.version}")
        elif before.dists.get(name) != dist:
            (own if is_own else deps).append(f"{name}=={dist.version}")
    return own + deps


def _last_line(res: CommandResult) -> str:
    """The line of a failed command's output that says what went wrong.

    uv prints "error: ..." then "cause: ..." lines (the last cause is the
    root), sometimes followed by the failing tool's own output under
    "[stderr]" or "--- stderr"; pip prints "ERROR: ..." or, for a failed
    build, the tool's output closed by "[end of output]". The tool's last line
    is usually the real reason, so it is added to the message.
    """
    lines = [line.strip() for line in (res.stderr or res.stdout).splitlines() if line.strip()]
    conflict = _pip_conflict([line.strip() for line in f"{res.stdout}\n{res.stderr}".splitlines()
                              if line.strip()])
    if conflict:
        return conflict
    main_at = next(
        (i for i in range(len(lines) - 1, -1, -1) if lines[i].lower().startswith(_MAIN)), None
    )
    if main_at is None:
        rest = [line for line in lines if not _noise(line)]
        return _clip(rest[-1]) if rest else f"exit code {res.returncode}"
    main = lines[main_at].split(":", 1)[1].strip()
    detail = None
    after = lines[main_at + 1 :]
    if any(line in _OUTPUT_MARKERS for line in after):
        tool = [line for line in after if line not in _OUTPUT_MARKERS and not _noise(line)]
        detail = tool[-1] if tool else None
        if main.startswith("process didn't exit successfully") and main_at > 0:
            # The command line itself is noise next to its own error message.
            main = lines[main_at - 1].split(":", 1)[1].strip()
    elif "[end of output]" in lines:
        end = len(lines) - 1 - lines[::-1].index("[end of output]")
        detail = lines[end - 1] if end > 0 else None
        crossed = [line for line in lines if line.startswith("×")]
        if crossed:
            main = crossed[-1].lstrip("× ").strip()
    if detail and detail not in main:
        return _clip(f"{main.rstrip('.')}: {detail}")
    return _clip(main)


def _pip_conflict(lines: list[str]) -> str | None:
    """pip's resolver conflict, which it prints over several lines ("The conflict is
    caused by:" then one line per side), as one line naming both sides."""
    if "The conflict is caused by:" not in lines:
        return None
    at = lines.index("The conflict is caused by:")
    sides = []
    for line in lines[at + 1:]:
        if line.startswith(("To fix", "ERROR:", "Additionally")):
            break
        sides.append(line)
    head = next((ln.split(":", 1)[1].strip() for ln in lines
                 if ln.startswith("ERROR: Cannot install")), "conflicting dependencies")
    return _clip(f"{head.rstrip('.')}: {'; '.join(sides)}")


_MAIN = ("cause:", "error:")
_OUTPUT_MARKERS = {"[stderr]", "[stdout]", "--- stderr", "--- stdout"}


def _noise(line: str) -> bool:
    low = line.lower()
    return low.startswith(("hint:", "help:", "note:", "warning:", "[notice]")) or set(line) <= set(
        "^~ |"
    )


def _clip(line: str, limit: int = 300) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."


# uv trusts the host's own certificate store (a host behind a TLS-inspecting proxy has
# its CA there, and an SSH session carries no SSL_CERT_FILE); pip reads its own config
UV_ENV = {"UV_SYSTEM_CERTS": "1"}


def _run_checked(conn: Connection, argv: list[str], what: str) -> CommandResult:
    res = conn.run(argv, env=UV_ENV)
    if not res.ok:
        raise ProviderError(f"{what} failed: {_last_line(res)}")
    return res
