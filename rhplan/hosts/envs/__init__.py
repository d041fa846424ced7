"""Build and read Python environments ("envs") on a host through a Connection.

An env is a virtualenv in a folder on the host. Installs use `uv` when the
host has it, else the env's own pip. Every command is an argv list: package
strings, paths, env var values and secrets are passed as data, never pasted
into a shell line. The few fixed `sh -c` scripts (rhplan/hostside/*.sh) take user
data only as positional arguments ("$1"), which a shell never re-parses.

Local folders with packaging metadata are installed (not editable). Folders
without it are put on the env's path by a `rhplan-local-<name>-<hash>.pth`
file in site-packages; `read_installed` reports each such file as a
distribution of that name (version "0", direct_url "file://DIR"), so it shows
up in refresh and is removed by `uninstall` like any other.

One module per job; this package's names are the API:

    layout.py   where an env's files are, what it holds (Installed), which installer
    make.py     making (make_env, create_venv) and deleting an env's folder
    install.py  installing one entry (install_entry), uninstalling, Ray's bytecode
    pins.py     the user's pins as constraints; can they live with the servlet's Ray
    read.py     reading an env in one command (read_installed, read_env, still_required)
    drift.py    what a refresh checks: how a requirement is not met
    files.py    the env's vars and secrets files, its setup commands
    output.py   a failed installer's output as one line
"""

from __future__ import annotations

from rhplan.hosts.envs.drift import requirement_drift, spec_drift
from rhplan.hosts.envs.files import redact, run_setup_cmds, write_env_files
from rhplan.hosts.envs.install import (
    install,
    install_entry,
    seed_bytecode,
    uninstall,
)
from rhplan.hosts.envs.layout import (
    CONSTRAINTS_FILE,
    ENV_VARS_FILE,
    PTH_CONSTANTS,
    PTH_PREFIX,
    PTH_VERSION,
    SECRETS_FILE,
    UV_ENV,
    EnvFacts,
    Installed,
    InstallResult,
    env_python,
    env_var_problem,
    find_uv,
    installed_from,
    local_dist_name,
)
from rhplan.hosts.envs.make import create_venv, delete_env, make_env
from rhplan.hosts.envs.pins import check_resolvable, constraint_lines, write_constraints
from rhplan.hosts.envs.read import read_env, read_installed, still_required

__all__ = [
    "CONSTRAINTS_FILE",
    "ENV_VARS_FILE",
    "EnvFacts",
    "InstallResult",
    "Installed",
    "PTH_CONSTANTS",
    "PTH_PREFIX",
    "PTH_VERSION",
    "SECRETS_FILE",
    "UV_ENV",
    "check_resolvable",
    "constraint_lines",
    "create_venv",
    "delete_env",
    "env_python",
    "env_var_problem",
    "find_uv",
    "install",
    "install_entry",
    "installed_from",
    "local_dist_name",
    "make_env",
    "read_env",
    "read_installed",
    "redact",
    "requirement_drift",
    "run_setup_cmds",
    "seed_bytecode",
    "spec_drift",
    "still_required",
    "uninstall",
    "write_constraints",
    "write_env_files",
]
