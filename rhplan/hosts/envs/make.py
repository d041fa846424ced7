"""Making and removing an env's folder: a virtualenv made anew (over what an
interrupted create left), never over someone else's files, never deleting the home
folder."""

from __future__ import annotations

import posixpath
import re

from rhplan import hostside
from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection
from rhplan.hosts.envs.layout import UV_ENV, _check_env_dir, find_uv
from rhplan.hosts.envs.output import _last_line, _run_checked

# Makes the env at $1 with the command after it (hostside/create_env.sh)
_CREATE_SCRIPT = hostside.shell("create_env").text


# Deletes $1, never the home folder or a parent of it (hostside/delete_env.sh)
_DELETE_SCRIPT = hostside.shell("delete_env", uses=("remove_dir",)).text


# A new env at $1 in one command, over what an interrupted create left there
# (hostside/fresh_env.sh)
_FRESH_SCRIPT = hostside.shell("fresh_env", uses=("remove_dir",)).text


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


def delete_env(conn: Connection, env_dir: str) -> None:
    """Delete the env folder; a missing folder is fine. Refuses / and home."""
    env_dir = _check_env_dir(env_dir)
    if env_dir == "/":
        raise ProviderError("refusing to delete / as an env folder")
    _run_checked(
        conn, ["sh", "-c", _DELETE_SCRIPT, "rhplan", env_dir], f"deleting env at {env_dir}"
    )
