"""Who holds a state lock, and when rhplan may prove that holder is gone.

A lock records its holder's host name, boot id, pid namespace, pid and process
start time besides the readable `who`. A lock found on this host and boot, in
this pid namespace, whose pid no longer runs (or now belongs to a process that
started at another time) was left by a process that is gone: the backends clear
such a lock with a one-line notice. Anything else — another host, another boot,
or lock info written before these fields existed — is never guessed about: it
waits for its holder or for `rhplan force-unlock ID`.
"""
from __future__ import annotations

import getpass
import os
import socket
import sys
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from rhplan.errors import StateError

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # containers often run as a uid with no passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def boot_id() -> str | None:
    """This kernel's random id for the current boot (shared by its containers)."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on; None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            raw = f.read()
    except OSError:
        return None
    # field 2 is "(comm)", and comm may itself hold spaces or parentheses
    return raw.rpartition(")")[2].split()


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class LockInfo:
    """Who holds a state lock, shown to whoever is kept waiting by it.

    The last five fields are None in lock info written by rhplan before they
    existed, and for a holder without /proc; such a lock is never auto-cleared.
    """

    id: str
    who: str
    operation: str
    created: str  # ISO-8601 UTC
    path: str
    host: str | None = None
    boot_id: str | None = None
    pid_ns: str | None = None
    pid: int | None = None
    start_time: int | None = None  # /proc/PID/stat field 22

    @classmethod
    def new(cls, operation: str, path: str) -> LockInfo:
        """A lock for `operation` held by this process."""
        pid = os.getpid()
        return cls(id=str(uuid.uuid4()), who=who(), operation=operation, created=now(),
                   path=path, host=socket.gethostname(), boot_id=boot_id(),
                   pid_ns=pid_namespace(), pid=pid, start_time=process_start_time(pid))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LockInfo:
        def text(key: str) -> str | None:
            v = d.get(key)
            return v if isinstance(v, str) and v else None

        def number(key: str) -> int | None:
            v = d.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        return cls(
            id=str(d["id"]),
            who=str(d["who"]),
            operation=str(d["operation"]),
            created=str(d["created"]),
            path=str(d["path"]),
            host=text("host"),
            boot_id=text("boot_id"),
            pid_ns=text("pid_ns"),
            pid=number("pid"),
            start_time=number("start_time"),
        )

    def describe(self) -> str:
        return f"{self.who} ({self.operation} since {self.created}, lock ID {self.id})"

    def same_kernel(self) -> bool:
        """Written on this machine since its last boot (so a flock here covers it)."""
        mine = boot_id()
        if mine is None:  # no /proc (not Linux): the host name is all there is to go by
            return self.boot_id is None and self.host == socket.gethostname()
        return self.boot_id == mine

    def gone(self) -> bool:
        """True only with proof that the holding process no longer runs."""
        if None in (self.host, self.pid_ns, self.pid, self.start_time):
            return False
        if not (self.same_kernel() and self.host == socket.gethostname()
                and self.pid_ns == pid_namespace()):
            return False  # another machine, boot or container: we cannot see its processes
        assert self.pid is not None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # it runs, as another user
        fields = _stat_fields(self.pid)
        if fields is None:
            return False  # hidden from us (hidepid): it may be the holder
        if fields[0] in ("Z", "X"):
            return True  # a dead process its parent has not reaped yet holds nothing
        return process_start_time(self.pid) != self.start_time  # the pid was reused


def locked_error_message(where: str, info: LockInfo) -> str:
    # One wording for every backend, so a user sees the same message whatever the backend.
    return (f"state {where} is locked by {info.describe()}; wait for it to finish, or run "
            f"`rhplan force-unlock {info.id}` if that process is gone")


def check_ours(held: LockInfo | None, lock_id: str, where: str) -> None:
    """unlock(lock_id) releases only the lock this backend itself holds."""
    if held is None or held.id != lock_id:
        what = f"lock ID {held.id}" if held else "no lock"
        raise StateError(f"cannot unlock {where} with lock ID {lock_id}: we hold {what}")


def check_id(info: LockInfo | None, lock_id: str, where: str) -> LockInfo:
    """force-unlock ID breaks only the lock with that ID: the lock found, if it has it."""
    if info is None:
        raise StateError(f"no lock is held on {where}")
    if info.id != lock_id:
        raise StateError(
            f"lock ID {lock_id} does not match the lock on {where}, which is "
            f"{info.id} (held by {info.who} for {info.operation}); check the ID"
        )
    return info


def cleared_notice(info: LockInfo, why: str = "that process is gone") -> str:
    return f"Note: cleared the lock of {info.describe()}: {why}"


def print_notice(line: str) -> None:
    """Where the backends report a lock they cleared: one line on stderr."""
    print(line, file=sys.stderr, flush=True)
