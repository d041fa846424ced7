"""One command on one SSH session channel: the command line sent, opening the
channel, feeding stdin and draining its output with a bound.

Commands stay argv lists: each one is sent as one `shlex.join` string, always run
through `env --` (so argv[0] is a program, never shell syntax, and env values are
quoted like any other argument), so `;`, `$( )`, backticks, quotes and newlines in
user data arrive as data. The remote login shell only has to be POSIX.
"""
from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from rhplan.hosts.connection import EXIT_TIMEOUT
from rhplan.hosts.ssh._paramiko import paramiko

# A session open refused as "administratively prohibited" (1) or "connect failed" (2)
# is retried after these pauses (~3 s in all) before it is an error.
_CHANNEL_BUSY = (1, 2)
_CHANNEL_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
# After a command's own time is up, how long to wait for the remote
# `timeout` to kill it before closing the channel from this side.
_TIMEOUT_GRACE = 2.0
_CHUNK = 32768
NO_DIR_MARK = "rhplan-ssh: no such directory"
# collect()'s return code for "the connection died under the command"
LOST = -1000


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def command_line(argv: list[str], env: Mapping[str, str] | None, cwd: str | None,
                 timeout: float | None) -> str:
    """The shell line that runs argv (env assignments, in cwd, bounded by timeout)."""
    assignments = []
    for key, value in (env or {}).items():
        if not key or "=" in key or "\0" in key or "\0" in str(value):
            raise ValueError(f"invalid environment variable name or value: {key!r}")
        assignments.append(f"{key}={value}")
    # `env --` even without variables: argv[0] is then always a program
    # looked up in PATH (as with subprocess), never a shell keyword,
    # builtin or function, and a missing one exits 127.
    body = shlex.join(["env", "--", *assignments, *argv])
    if timeout is not None:
        seconds = f"{max(timeout, 0.001):.3f}"
        # coreutils' timeout SIGKILLs the command's whole process group,
        # so nothing is left running on the host (without it, the command
        # runs unbounded there and only our wait is cut short). Not `exec
        # timeout`: it kills its own group, itself included, and the
        # session would end with a bare signal; the shell reports 137.
        # The command's stderr goes through fd 3 so bash's own "Killed"
        # notice does not land in it.
        body = (
            "if command -v timeout >/dev/null 2>&1; then { timeout --signal=KILL "
            f"{seconds} {body} 2>&3 3>&-; }} 3>&2 2>/dev/null; else exec {body}; fi"
        )
    else:
        body = f"exec {body}"
    if cwd is not None:
        q = shlex.quote(cwd)
        body = (
            f"if [ ! -d {q} ]; then printf '%s\\n' '{NO_DIR_MARK}' >&2; exit 1; fi; "
            f"cd -- {q} && {body}"
        )
    return body


def exec_command(transport: Any, command: str, open_timeout: float) -> Any:
    """A new session channel running command."""
    chan = _open_session(transport, open_timeout)
    try:
        chan.exec_command(command)
    except BaseException:
        chan.close()
        raise
    return chan


def _open_session(transport: Any, open_timeout: float) -> Any:
    """A new session channel. sshd frees a session only once it has handled our
    close, so right after a burst of short commands it can still count them against
    MaxSessions and refuse the open; the command has not started then, so waiting a
    moment and asking again is safe (seen with 200 envs on 8 hosts)."""
    for delay in _CHANNEL_RETRY_DELAYS:
        try:
            return transport.open_session(timeout=open_timeout)
        except paramiko.SSHException as exc:
            # paramiko keeps one saved error per transport: with opens from several
            # threads, a refused one may see only "Unable to open channel."
            busy = (exc.code in _CHANNEL_BUSY if isinstance(exc, paramiko.ChannelException)
                    else str(exc) == "Unable to open channel.")
            if not busy or not transport.is_active():
                raise
        time.sleep(delay)
    return transport.open_session(timeout=open_timeout)


def _drain(recv: Callable[[int], bytes], sink: list[bytes]) -> None:
    try:
        while True:
            data = recv(_CHUNK)
            if not data:
                return
            sink.append(data)
    except (OSError, EOFError, paramiko.SSHException):
        return


def _feed(chan: Any, stdin: bytes | None) -> None:
    try:
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the command exited without reading all of it


def collect(chan: Any, stdin: bytes | None, timeout: float | None
            ) -> tuple[int, str, str, bool]:
    """Feed stdin and drain stdout and stderr at once (either could fill the shared
    SSH window and stall the other), bounded by the timeout: (exit code, stdout,
    stderr, timed out); exit code LOST when the connection died under the command."""
    start = time.monotonic()
    out: list[bytes] = []
    err: list[bytes] = []
    threads = [
        threading.Thread(target=_drain, args=(chan.recv, out), daemon=True),
        threading.Thread(target=_drain, args=(chan.recv_stderr, err), daemon=True),
    ]
    if stdin:
        threads.append(threading.Thread(target=_feed, args=(chan, stdin), daemon=True))
    else:
        _feed(chan, None)  # EOF right away, like stdin=DEVNULL
    for t in threads:
        t.start()

    deadline = None if timeout is None else start + timeout + _TIMEOUT_GRACE
    timed_out = False
    for t in threads[:2]:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            timed_out = True
            break
    if not timed_out:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not chan.status_event.wait(remaining):
            timed_out = True
    if timed_out:
        chan.close()  # wakes the readers; the remote process loses its channel
        for t in threads:
            t.join(1.0)
        returncode = EXIT_TIMEOUT
    else:
        returncode = chan.recv_exit_status()
        chan.close()
        if returncode == -1 and transport_died(chan.get_transport()):
            # no exit status because the connection itself is gone, not the command
            return LOST, decode(b"".join(out)), decode(b"".join(err)), False
        elapsed = time.monotonic() - start
        # coreutils `timeout --signal=KILL` gives 137 (128 + SIGKILL); -1 is
        # a session that ended by a signal without an exit status.
        if timeout is not None and returncode in (-1, 124, 137) and elapsed >= timeout:
            timed_out = True
            returncode = EXIT_TIMEOUT
        elif returncode == -1:
            # Killed by a signal, or sshd went away; ssh(1) says 255 too.
            returncode = 255
    return returncode, decode(b"".join(out)), decode(b"".join(err)), timed_out


def pump(recv: Callable[[int], bytes], fd: int, sink: Callable[[int, bytes], None]) -> None:
    """Hand what recv gives to sink(fd, data) until the end (stream())."""
    try:
        for data in iter(lambda: recv(_CHUNK), b""):
            sink(fd, data)
    except (OSError, EOFError, paramiko.SSHException):
        return


def what(args: list[str]) -> str:
    """The command, short, for an error message: its program (a path's last part: an
    env's interpreter path would fill the message) and first argument."""
    shown = shlex.join([args[0].rsplit("/", 1)[-1], *args[1:2]] if args else []) \
        + (" ..." if len(args) > 2 else "")
    return repr(shown if len(shown) <= 60 else shown[:57] + "...")


def transport_died(transport: Any) -> bool:
    """Whether the transport is dead; paramiko closes the channels a moment before it
    marks itself inactive, so give it that moment."""
    if transport is None:
        return True
    deadline = time.monotonic() + 0.5
    while transport.is_active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
