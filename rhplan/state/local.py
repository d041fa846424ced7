"""The local state backend: one JSON file, written atomically, locked with flock.

Locking uses flock(2) on PATH.lock rather than "create a file if absent": the
kernel drops a flock when its process dies, so a killed apply never leaves a
lock that blocks the next run. PATH.lock.info only says who holds it.
"""
from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from rhplan.errors import StateError, StateLockedError
from rhplan.state.model import RHPLAN_VERSION, State

# A force-unlock can swap PATH.lock for a new file between our open and flock;
# we retry on the new file this many times before giving up.
_LOCK_ATTEMPTS = 5


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # containers often run as a uid with no passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _fsync_dir(directory: Path) -> None:
    # Without this a crash can lose the rename itself, leaving the old file.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(
    path: Path, write: Callable[[IO[bytes]], object], mode: int | None = None
) -> None:
    """Call write(file) on a temp file beside `path`, fsync it, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class LockInfo:
    """Who holds a state lock, shown to whoever is kept waiting by it."""

    id: str
    who: str
    operation: str
    created: str  # ISO-8601 UTC
    path: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LockInfo:
        return cls(
            id=str(d["id"]),
            who=str(d["who"]),
            operation=str(d["operation"]),
            created=str(d["created"]),
            path=str(d["path"]),
        )


class LocalBackend:
    """State in a local JSON file at `path`, with PATH.backup and PATH.lock beside it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.backup_path = Path(f"{self.path}.backup")
        self.lock_path = Path(f"{self.path}.lock")
        self.lock_info_path = Path(f"{self.path}.lock.info")
        self._write_lock = threading.Lock()  # apply writes from worker threads
        self._lock_file: IO[bytes] | None = None
        self._held: LockInfo | None = None

    # -- state -------------------------------------------------------------

    def read(self) -> State:
        """The recorded state, or a fresh one if nothing was written yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return State.new()
        except OSError as err:
            raise StateError(f"{self.path}: cannot read state file: {err.strerror}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except json.JSONDecodeError as err:
            raise StateError(
                f"{self.path}: state file is not valid JSON (line {err.lineno}): "
                f"restore {self.backup_path} or fix it"
            ) from None
        except UnicodeDecodeError:
            raise StateError(
                f"{self.path}: state file is not UTF-8 text: restore {self.backup_path} or fix it"
            ) from None
        return State.from_json(data, source=str(self.path), copy_values=False)

    def write(self, state: State) -> None:
        """Bump state.serial and replace the file atomically, keeping the old one as .backup."""
        with self._write_lock:
            old_serial, old_version = state.serial, state.rhplan_version
            state.serial += 1
            state.rhplan_version = RHPLAN_VERSION  # the file records its latest writer
            payload = (json.dumps(state.to_json(), indent=2, sort_keys=False) + "\n").encode()
            try:
                mode: int | None = None
                if self.path.exists():
                    mode = self.path.stat().st_mode & 0o777  # keep the user's permissions
                    with self.path.open("rb") as current:
                        _atomic_write(
                            self.backup_path, lambda f: shutil.copyfileobj(current, f), mode
                        )
                _atomic_write(self.path, lambda f: f.write(payload), mode)
                _fsync_dir(self.path.parent)
            except OSError as err:
                # Leave the in-memory state as the file still is, so a retry is consistent.
                state.serial, state.rhplan_version = old_serial, old_version
                raise StateError(
                    f"{self.path}: cannot write state file: {err.strerror}; "
                    f"check that {self.path.parent} is writable and has free space"
                ) from err

    # -- locking -----------------------------------------------------------

    def lock(self, operation: str) -> LockInfo:
        """Take the state lock for `operation`, or raise StateLockedError at once.

        The lock lives in this backend's open file: keep the backend referenced
        until unlock(), since dropping it closes the file and frees the lock.
        """
        for _ in range(_LOCK_ATTEMPTS):
            f = open(self.lock_path, "a+b")  # noqa: SIM115 - held open until unlock()
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                raise self._locked_error() from None
            except BaseException:
                f.close()
                raise
            # force_unlock() may have unlinked the file we locked; then the lock
            # guards nothing, so try again on whatever file is there now.
            try:
                same = os.path.samestat(os.fstat(f.fileno()), os.stat(self.lock_path))
            except FileNotFoundError:
                same = False
            if not same:
                f.close()
                continue
            info = LockInfo(
                id=str(uuid.uuid4()),
                who=_who(),
                operation=operation,
                created=_now(),
                path=str(self.path),
            )
            try:
                self._write_lock_info(info)
            except BaseException:
                f.close()
                raise
            self._lock_file, self._held = f, info
            return info
        raise StateLockedError(
            f"state {self.path} is being force-unlocked repeatedly; try again later"
        )

    def unlock(self, lock_id: str) -> None:
        """Release a lock this backend took with lock()."""
        if self._held is None or self._held.id != lock_id:
            held = f"lock ID {self._held.id}" if self._held else "no lock"
            raise StateError(f"cannot unlock {self.path} with lock ID {lock_id}: we hold {held}")
        # Remove the info only if it is still ours: after a force-unlock it may
        # describe someone else's lock.
        with contextlib.suppress(StateError):
            current = self.lock_info()
            if current is not None and current.id == lock_id:
                self.lock_info_path.unlink(missing_ok=True)
        self._release()

    @contextlib.contextmanager
    def locked(self, operation: str) -> Iterator[LockInfo]:
        """Hold the state lock for the body of a `with` block."""
        info = self.lock(operation)
        try:
            yield info
        finally:
            self.unlock(info.id)

    def force_unlock(self, lock_id: str) -> None:
        """Break a lock whose holder is gone or hung; lock_id must match, as a safety check."""
        info = self.lock_info()
        if info is None:
            raise StateError(f"no lock is held on {self.path}")
        if info.id != lock_id:
            raise StateError(
                f"lock ID {lock_id} does not match the lock on {self.path}, which is "
                f"{info.id} (held by {info.who} for {info.operation}); check the ID"
            )
        self.lock_info_path.unlink(missing_ok=True)
        # Unlinking (not just emptying) PATH.lock means the next lock() creates a
        # new inode, which a hung holder's flock does not cover.
        self.lock_path.unlink(missing_ok=True)
        if self._held is not None and self._held.id == lock_id:
            self._release()

    def lock_info(self) -> LockInfo | None:
        """What PATH.lock.info says; it may describe a holder that has since died."""
        try:
            data = json.loads(self.lock_info_path.read_text(encoding="utf-8"))
            return LockInfo.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            raise StateError(
                f"{self.lock_info_path}: lock info is unreadable; if no rhplan is running, "
                f"delete it and {self.lock_path}"
            ) from None

    def _write_lock_info(self, info: LockInfo) -> None:
        # Atomic, so a contender never reads half an info file; this also
        # replaces info left by a holder that was killed.
        payload = json.dumps(info.to_json(), indent=2).encode()
        _atomic_write(self.lock_info_path, lambda w: w.write(payload))

    def _locked_error(self) -> StateLockedError:
        try:
            info = self.lock_info()
        except StateError:
            info = None
        if info is None:
            # The holder has taken the flock but not yet written who it is.
            return StateLockedError(
                f"state {self.path} is locked by another process; wait for it to finish, "
                f"or delete {self.lock_path} if no rhplan is running"
            )
        return StateLockedError(
            f"state {self.path} is locked by {info.who} ({info.operation} since "
            f"{info.created}, lock ID {info.id}); wait for it to finish, or run "
            f"`rhplan force-unlock {info.id}` if that process is gone"
        )

    def _release(self) -> None:
        f, self._lock_file, self._held = self._lock_file, None, None
        if f is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()
