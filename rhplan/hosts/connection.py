"""How rhplan reaches a host: run an argv, put and get files.

Every command is an argv list, never a shell string built from user data, so
package names, paths and values with `;`, `$( )`, quotes or newlines stay data.
An SSH connection implements the same protocol by sending `shlex.join(argv)`,
so nothing here may rely on being local (no Python objects cross the wire,
only argv, environment, stdin and files).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Exit codes a shell (and so an SSH session) gives for these cases; local runs
# report the same codes so callers handle both connections alike.
EXIT_TIMEOUT = 124
EXIT_NOT_FOUND = 127


@dataclass(frozen=True)
class CommandResult:
    """What one command did: its argv, exit code and decoded output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@runtime_checkable
class Connection(Protocol):
    """A host rhplan can run commands on and copy files to."""

    host: str

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run argv (no shell); env is merged onto the host's environment.

        A missing program gives returncode 127 and a timeout 124, as in a shell.
        """
        ...

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        """Write a file atomically (temp + rename), creating parent folders;
        the mode is set before the rename, so a secret is never readable by others."""
        ...

    def get_bytes(self, path: str) -> bytes:
        """Read a file; FileNotFoundError if it is absent."""
        ...

    def which(self, program: str) -> str | None:
        """The full path of a program on the host, or None."""
        ...


def _decode(data: bytes | None) -> str:
    # Tools print in the locale's encoding; a stray byte must not hide an error.
    return (data or b"").decode("utf-8", errors="replace")


class BaseConnection:
    """What every connection's run() does before its command reaches the host: argv
    made of strings, checked, and counted; then _run(args, env, cwd, stdin, timeout)."""

    host: str

    def __init__(self) -> None:
        # Tests count commands to check that reads stay cheap over SSH.
        self.commands_run = 0
        self._count_lock = threading.Lock()

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        """Connection.run: argv (no shell), env merged onto the host's environment."""
        args = [str(a) for a in argv]
        if not args:
            raise ValueError(f"{type(self).__name__}.run needs a non-empty argv")
        if any("\0" in a for a in args):
            raise ValueError("an argument contains a NUL byte, which no command can receive")
        with self._count_lock:
            self.commands_run += 1
        return self._run(args, env, cwd, stdin, timeout)

    def _run(self, args: list[str], env: Mapping[str, str] | None, cwd: str | None,
             stdin: bytes | None, timeout: float | None) -> CommandResult:
        raise NotImplementedError


class LocalConnection(BaseConnection):
    """This machine, through subprocesses."""

    host: str = "localhost"

    def _run(self, args: list[str], env: Mapping[str, str] | None, cwd: str | None,
             stdin: bytes | None, timeout: float | None) -> CommandResult:
        full_env = None if env is None else {**os.environ, **env}
        try:
            # start_new_session: a Ctrl-C at the terminal must not kill an
            # in-flight install; the apply loop decides when to stop.
            proc = subprocess.Popen(
                args,
                shell=False,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            # A missing cwd also lands here; say which one it was.
            if cwd is not None and not os.path.isdir(cwd):
                raise FileNotFoundError(f"no such directory: {cwd}") from exc
            return CommandResult(tuple(args), EXIT_NOT_FOUND, "", f"{args[0]}: command not found")
        except PermissionError:
            return CommandResult(tuple(args), 126, "", f"{args[0]}: permission denied")
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            # Kill the whole session: an installer's children must not linger.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            msg = _decode(err) + f"\ntimed out after {timeout:g} s"
            return CommandResult(tuple(args), EXIT_TIMEOUT, _decode(out), msg)
        return CommandResult(tuple(args), proc.returncode, _decode(out), _decode(err))

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        parent = os.path.dirname(path) or "."
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=".rhplan-tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def get_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def which(self, program: str) -> str | None:
        # The venv's own bin first: rhplan depends on uv, which lives there
        # even when that venv is not activated.
        if os.sep not in program:
            candidate = os.path.join(os.path.dirname(sys.executable), program)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        return shutil.which(program)
