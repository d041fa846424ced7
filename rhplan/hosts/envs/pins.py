"""The user's version pins as constraints every install in an env obeys, and the dry
run that says whether they can live with the servlet's Ray."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence

from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection
from rhplan.hosts.envs.layout import CONSTRAINTS_FILE, UV_ENV, _check_env_dir, _installer, find_uv
from rhplan.hosts.envs.output import _last_line
from rhplan.packages import Requirement


def constraint_lines(reqs: Iterable[Requirement]) -> list[str]:
    """The pins among reqs as constraint lines: a name with a version specifier, and its
    marker (constraints take no URLs, no extras)."""
    # imported here: packaging costs ~20 ms of every start, and only apply comes here
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PipRequirement

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
