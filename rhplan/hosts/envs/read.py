"""Reading an env: what it holds (distributions, rhplan's .pth folders, marker values)
in one command, and which of its distributions others still need."""

from __future__ import annotations

import json
import posixpath

from rhplan import hostside
from rhplan.errors import ProviderError
from rhplan.hosts.connection import CommandResult, Connection
from rhplan.hosts.envs.layout import (
    PTH_CONSTANTS,
    EnvFacts,
    Installed,
    _check_env_dir,
    _EnvInfo,
    env_python,
    installed_from,
)
from rhplan.hosts.envs.output import _last_line

# What an env holds, as one JSON line (run by the env's own interpreter)
_INSPECT = hostside.script("env_packages", before=PTH_CONSTANTS, after="report_env()")


def read_installed(conn: Connection, env_dir: str) -> dict[str, Installed] | None:
    """What is installed in the env, by canonical name; None if the env is gone.

    One command, so a refresh of many envs stays cheap over SSH.
    """
    info = _inspect(conn, _check_env_dir(env_dir))
    return None if info is None else info.dists


def read_env(conn: Connection, env_dir: str) -> EnvFacts | None:
    """The env's distributions and marker values, in one command; None if it is gone."""
    info = _inspect(conn, _check_env_dir(env_dir))
    return None if info is None else EnvFacts(info.dists, info.markers)


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
