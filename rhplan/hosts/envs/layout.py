"""What an env is on its host: where its files are, the distributions it holds (as
read by the host scripts), and the installer to use (uv when the host has it, else the
env's own pip)."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection

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


@dataclass(frozen=True)
class EnvFacts:
    """What a refresh needs of an env: its distributions, and the values its PEP 508
    markers are evaluated against."""

    dists: dict[str, Installed]
    markers: dict[str, str]


@dataclass(frozen=True)
class InstallResult:
    changes: list[str]  # "name==version" added or changed, the requirement's own first
    own: Installed | None  # the requirement's own distribution, when it can be told
    # what the env holds after this install: the next install's "before" (one read of
    # the env per install, not two); only valid until something else changes the env
    after: Any = None


def _by_url(dists: Mapping[str, Installed], url: str) -> Installed | None:
    """The distribution installed from url (a folder, a git repository, a wheel)."""
    want = unquote(url).rstrip("/")
    for dist in dists.values():
        if dist.direct_url is not None and unquote(dist.direct_url).rstrip("/") == want:
            return dist
    return None


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


def installed_from(dists: Mapping[str, list[Any]]) -> dict[str, Installed]:
    """Installed values from what the host scripts print: name -> [version, url, commit]
    (older scripts printed [version, url])."""
    return {name: Installed(name, *fields) for name, fields in dists.items()}


# uv trusts the host's own certificate store (a host behind a TLS-inspecting proxy has
# its CA there, and an SSH session carries no SSL_CERT_FILE); pip reads its own config
UV_ENV = {"UV_SYSTEM_CERTS": "1"}
