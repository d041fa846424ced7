"""Code that runs ON hosts, and the one way rhplan runs it.

Every other .py file in this folder is a host script: standard library only (rhplan
is not installed on hosts), never imported here, read as text and run by a host's
Python as `python -I -c TEXT ARGS...` (or from stdin). Arguments travel as argv
(JSON for anything structured), never pasted into the text or a shell. A script
prints one JSON line last; a refusal is `{"error": ONE LINE}` with a non-zero exit.

    env_install.py an install in an env, then what the env holds (one command)
    env_packages.py what an env holds (distributions, rhplan's .pth folders, markers)
    facts.py      refresh's one read of a host (after ray_host.py and env_packages.py)
    gateway_boot.py write the gateway's files unless there, then run it (one command)
    in_env.py     exec a command inside an env (its vars, secrets, bin on PATH)
    local_wheel.py install a local package folder from a wheel built once per content
    probe_host.py Python version, home, CPUs and the address Ray should use
    quick_exit.py run host_script.py and leave without Ray's driver shutdown
    ray_host.py   a Ray node's private temp dir, its processes, killing them
    ray_link.py   a new env's Ray as a link to the shared Ray venv's (before its install)
    ray_venv.py   rhplan's Ray venv on a host (a link to a shared one per Ray/Python)
    seed_bytecode.py Ray's compiled bytecode linked into an env with the same Ray
    setup_runner.py one of an env's setup_cmds, with its vars and secrets
    servlet_proof.py is a pid still an env's servlet (after ray_host.py)
    stop_watchdog.py stop a node's autostop watchdog
    still_required.py which distributions of an env others still need
    sync_apply.py one batch of a working_dir sync (files on stdin; rhplan/hosts/sync.py)

The few shell scripts (*.sh, run as `sh -c TEXT NAME ARGS`, loaded by shell()):

    create_env.sh / fresh_env.sh / delete_env.sh  make, remake, delete an env's folder
                  (the last two with remove_dir.sh's remove_d: never $HOME or a parent)
    probe_local.sh is a local folder a Python project ("package", "plain", "missing")
    cancel_start.sh send a pending servlet start away (servlets/manage.py)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from rhplan.errors import ProviderError
from rhplan.hosts.connection import CommandResult, Connection


@dataclass(frozen=True)
class Script:
    """The text a host's Python runs: one host script, after the ones it uses."""

    name: str
    text: str


@cache
def _text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.py").read_text()


def script(name: str, uses: tuple[str, ...] = (), before: str = "", after: str = "") -> Script:
    """Host script NAME, run after the scripts it uses (their functions defined first)
    and `before` (helpers still kept as text elsewhere); `after` ends it."""
    parts = [_text(u) for u in uses] + [before, _text(name), after]
    return Script(name, "\n".join(p for p in parts if p))


@cache
def _shell_text(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.sh").read_text()


def shell(name: str, uses: tuple[str, ...] = ()) -> Script:
    """Shell script NAME.sh, after the fragments it uses (remove_dir.sh: their functions
    defined first). Run as `sh -c TEXT NAME ARGS...`: user data only ever as "$1"...,
    which a shell never re-parses."""
    return Script(name, "\n".join([*(_shell_text(u) for u in uses), _shell_text(name)]))


class HostScriptError(ProviderError):
    """A host script failed or refused; returncode and stderr let a caller tell a
    missing interpreter (127) from the script's own answer."""

    def __init__(self, message: str, returncode: int, stderr: str):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def run_json(conn: Connection, python: str, script: Script, *args: str, what: str,
             timeout: float = 60.0, env: dict[str, str] | None = None,
             via_stdin: bool = False) -> Any:
    """Run script with argv `args` by `python` on conn's host; its last JSON line.
    `what` names the step for errors ("checking Ray on HOST"): a refusal reads
    "WHAT: ERROR", any other failure "WHAT failed: LAST STDERR LINE"."""
    if via_stdin:
        res = conn.run([python, "-I", "-", *args], stdin=script.text.encode(), env=env,
                       timeout=timeout)
    else:
        res = conn.run([python, "-I", "-c", script.text, *args], env=env, timeout=timeout)
    return answer(res, what)


def answer(res: CommandResult, what: str) -> Any:
    """The JSON answer of a host script's run (see run_json), or its error."""
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    data = json.loads(lines[-1]) if lines else None
    if isinstance(data, dict) and "error" in data:
        raise HostScriptError(f"{what}: {data['error']}", res.returncode, res.stderr)
    if not res.ok or data is None:
        said = (res.stderr.strip() or res.stdout.strip()).splitlines()
        raise HostScriptError(f"{what} failed: {said[-1] if said else 'no output'}",
                              res.returncode, res.stderr)
    return data
