"""Installing into an env, one entry at a time (each command installs, then reads what
the env holds), and uninstalling: pip specs, local folders (from a wheel built once per
content, or put on the path by a .pth file), git packages, requirements files, and the
cluster's Ray (linked from its shared Ray venv where that is safe)."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from rhplan import hostside
from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection
from rhplan.hosts.envs.layout import (
    _DIST_NAME,
    PTH_CONSTANTS,
    UV_ENV,
    InstallResult,
    _by_url,
    _canonical,
    _check_env_dir,
    _EnvInfo,
    _file_url,
    _installer,
    env_python,
    find_uv,
    local_dist_name,
)
from rhplan.hosts.envs.output import _last_line, _run_checked
from rhplan.hosts.envs.read import _first_info, _inspect, _inspect_or_fail, _read_info
from rhplan.packages import Requirement, split_git

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


# Says whether a local folder is a Python project (hostside/probe_local.sh)
_PROBE_LOCAL_SCRIPT = hostside.shell("probe_local").text


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
    targets, local_url, not_package = _targets(conn, req, what)
    if not_package:
        return _local_folder(conn, env_dir, req, not_package,
                             before or _inspect_or_fail(conn, env_dir, what, gone), what)

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


def _targets(conn: Connection, req: Requirement, what: str
             ) -> tuple[list[str], str | None, str | None]:
    """The installer's arguments for req; the URL its distribution records (a local
    folder's, a git repository's, a path's), to tell which is its own; and, for a local
    folder that is no Python project, its kind instead ("plain" or "missing")."""
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
            return [], None, kind
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
    return targets, local_url, None


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
    try:
        conn.run([ray_python, "-I", "-c", _SEED_BYTECODE.text, site_packages, ray_version],
                 timeout=120)
    except ProviderError:
        # it runs in a thread of its own: a lost connection must not end up as a thread's
        # traceback on the user's screen; the env's next command on it reports the loss
        pass


def _exact(req: Requirement) -> bool:
    """One exact version of a package from its index (name==V): uv's cache, filled by the
    first env, can answer it without the index."""
    if req.kind != "pip" or not req.name or req.args:
        return False
    # imported here: packaging costs ~20 ms of every start, and only apply comes here
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PipRequirement

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
