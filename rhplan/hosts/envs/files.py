"""An env's own files and commands: its env vars and secrets (ENV/rhplan/*.json) and
the user's setup commands run in it, with secret values kept out of messages."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping

from rhplan import hostside, secret_providers
from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection
from rhplan.hosts.envs.layout import (
    ENV_VARS_FILE,
    SECRETS_FILE,
    _check_env_dir,
    env_python,
    env_var_problem,
)
from rhplan.hosts.envs.output import _last_line

# One setup command in the env, with its vars and secrets (hostside/setup_runner.py)
_SETUP_RUNNER = hostside.script("setup_runner")


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
