"""The local state backend: one JSON file, written atomically, locked with flock.

Locking uses flock(2) on PATH.lock rather than "create a file if absent": the
kernel drops a flock when its process dies, so a killed apply never leaves a
lock that blocks the next run. PATH.lock.info only says who holds it; info left
behind by a killed holder on this machine is cleared with a notice (taking the
flock is the kernel's proof that its holder is gone), while info written on
another machine or before a reboot waits for `rhplan force-unlock ID`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from rhplan.errors import StateError, StateLockedError
from rhplan.state import digest, lockwait
from rhplan.state.lockinfo import (
    LockInfo,
    check_id,
    check_ours,
    cleared_notice,
    locked_error_message,
    print_notice,
)
from rhplan.state.model import RHPLAN_VERSION, State, parse_state

__all__ = ["LocalBackend"]

# A force-unlock can swap PATH.lock for a new file between our open and flock;
# we retry on the new file this many times before giving up.
_LOCK_ATTEMPTS = 5
# A holder writes who it is right after taking the flock (and removes it just before
# letting go): a contender that finds the flock taken but no current info tries
# again for this long, so that it can name the holder or take the lock.
_NAME_WAIT = 2.0


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


# The key of the state's keyed digests, beside the state (rhplan's own folder, which
# users keep out of version control along with the Ray tokens in it).
DIGEST_KEY = ".rhplan/digest.key"


class LocalBackend:
    """State in a local JSON file at `path`, with PATH.backup and PATH.lock beside it,
    and the digest key in .rhplan/digest.key of the same folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.backup_path = Path(f"{self.path}.backup")
        self.lock_path = Path(f"{self.path}.lock")
        self.lock_info_path = Path(f"{self.path}.lock.info")
        self.digest_key_path = self.path.parent / DIGEST_KEY
        self._unsaved_key: bytes | None = None  # made by digest_key(), not stored yet
        self._write_lock = threading.Lock()  # apply writes from worker threads
        self._lock_file: IO[bytes] | None = None
        self._held: LockInfo | None = None
        self.notify: Callable[[str], None] = print_notice  # a cleared stale lock is told here

    # -- state -------------------------------------------------------------

    def read(self) -> State:
        """The recorded state, or a fresh one if nothing was written yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return State.new()
        except OSError as err:
            raise StateError(f"{self.path}: cannot read state file: {err.strerror}") from None
        # Every way the bytes can be wrong is one line naming PATH.backup.
        return parse_state(raw, str(self.path))  # names str(self.path) + ".backup"

    def write(self, state: State) -> None:
        """Bump state.serial and replace the file atomically, keeping the old one as .backup."""
        self.store_digest_key()  # never a state holding digests under a key not stored
        with self._write_lock:
            old_serial, old_version = state.serial, state.rhplan_version
            state.serial += 1
            state.rhplan_version = RHPLAN_VERSION  # the file records its latest writer
            payload = state.dumps()
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

    def digest_key(self) -> bytes:
        """The stored digest key; if there is none yet, a new one this backend keeps in
        memory until store_digest_key(), so a command that fails leaves nothing behind."""
        if self._unsaved_key is not None:
            return self._unsaved_key
        path = self.digest_key_path
        try:
            return digest.decode_key(path.read_bytes(), str(path))
        except FileNotFoundError:
            self._unsaved_key = digest.new_key()
            return self._unsaved_key
        except OSError as err:
            raise StateError(f"{path}: cannot read the digest key: {err.strerror}") from None

    def store_digest_key(self) -> None:
        """Store the key digest_key() made, once the plan that used it succeeded: written
        whole (0600) to a temp file, then hard-linked into place, which fails if another
        rhplan stored one first (then what this one digested must not be kept)."""
        key, path = self._unsaved_key, self.digest_key_path
        if key is None:
            return
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".digest.key.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:  # mkstemp makes it 0600
                    f.write(digest.encode_key(key))
                    f.flush()
                    os.fsync(f.fileno())
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                os.unlink(tmp)
            _fsync_dir(path.parent)
            stored = path.read_bytes()
        except OSError as err:
            raise StateError(f"{path}: cannot create the digest key: {err.strerror}; check "
                             f"that {path.parent} is writable") from None
        self._unsaved_key = None
        if digest.decode_key(stored, str(path)) != key:
            raise StateError(f"{path}: another rhplan stored a digest key while this one "
                             "ran, so its digests cannot be kept; nothing was written: run "
                             "the command again")

    # -- locking -----------------------------------------------------------

    def lock(self, operation: str) -> LockInfo:
        """Take the state lock for `operation`, or raise StateLockedError naming its holder.

        The lock lives in this backend's open file: keep the backend referenced
        until unlock(), since dropping it closes the file and frees the lock.
        """
        deadline = time.monotonic() + _NAME_WAIT
        swaps = 0
        while True:
            f = open(self.lock_path, "a+b")  # noqa: SIM115 - held open until unlock()
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._current_holder()
                if holder is None and time.monotonic() < deadline:
                    f.close()
                    time.sleep(0.05)  # the holder is between its flock and its info
                    continue
                error = (StateLockedError(locked_error_message(str(self.path), holder))
                         if holder else self._unnamed_locked_error(f))
                f.close()
                raise error from None
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
                swaps += 1
                if swaps >= _LOCK_ATTEMPTS:
                    raise StateLockedError(
                        f"state {self.path} is being force-unlocked repeatedly; try again later")
                continue
            try:
                info = self._take_over(operation)
            except BaseException:
                f.close()  # closing the file lets go of the flock
                raise
            self._lock_file, self._held = f, info
            return info

    def _take_over(self, operation: str) -> LockInfo:
        """With the flock held: record ourselves as the holder, clearing info a killed
        holder left behind, or refuse info that this machine cannot vouch for."""
        leftover = self.lock_info()
        if leftover is not None and not leftover.same_kernel():
            # Written on another machine (a shared folder, whose flocks may not
            # reach it), before a reboot, or by an rhplan that did not record it:
            # our flock proves nothing about that holder.
            raise StateLockedError(locked_error_message(str(self.path), leftover))
        info = LockInfo.new(operation, str(self.path))
        self._write_lock_info(info)
        if leftover is not None:
            self.notify(cleared_notice(
                leftover, "that process is gone" if leftover.gone()
                else "the kernel shows that it no longer holds it"))
        return info

    def _current_holder(self) -> LockInfo | None:
        """The lock info, unless it is unreadable or provably left by a dead process
        (then the process holding the flock has not written its own yet)."""
        try:
            info = self.lock_info()
        except StateError:
            return None
        return None if info is None or info.gone() else info

    def _unnamed_locked_error(self, f: IO[bytes]) -> StateLockedError:
        pid = _flock_holder_pid(f)
        holder = f"process {pid}" if pid else "another process"
        return StateLockedError(
            f"state {self.path} is locked by {holder}, which has not recorded who it is in "
            f"{self.lock_info_path}; wait for it to finish (it holds a flock on "
            f"{self.lock_path}: never delete that file while it runs)")

    def unlock(self, lock_id: str) -> None:
        """Release a lock this backend took with lock()."""
        check_ours(self._held, lock_id, str(self.path))
        # Remove the info only if it is still ours: after a force-unlock it may
        # describe someone else's lock.
        with contextlib.suppress(StateError):
            current = self.lock_info()
            if current is not None and current.id == lock_id:
                self.lock_info_path.unlink(missing_ok=True)
        self._release()

    def locked(self, operation: str) -> AbstractContextManager[LockInfo]:
        """Hold the state lock for the body of a `with` block (waiting for it up to
        -lock-timeout: rhplan/state/lockwait.py)."""
        return lockwait.holding(lambda: self.lock(operation), self.unlock)

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Break a lock whose holder is gone or hung; lock_id must match, as a safety check.
        Returns the lock it removed."""
        info = check_id(self.lock_info(), lock_id, str(self.path))
        self.lock_info_path.unlink(missing_ok=True)
        # Unlinking (not just emptying) PATH.lock means the next lock() creates a
        # new inode, which a hung holder's flock does not cover.
        self.lock_path.unlink(missing_ok=True)
        if self._held is not None and self._held.id == lock_id:
            self._release()
        return info

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

    def _release(self) -> None:
        f, self._lock_file, self._held = self._lock_file, None, None
        if f is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()


def _flock_holder_pid(f: IO[bytes]) -> int | None:
    """The pid holding a flock on f's file, from /proc/locks (Linux), if visible."""
    st = os.fstat(f.fileno())
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                # "1: FLOCK  ADVISORY  WRITE 4242 00:2e:1234 0 EOF"; waiters have "->"
                parts = line.split()
                if "->" not in parts and "FLOCK" in parts and dev in parts:
                    pid = parts[parts.index(dev) - 1]
                    return int(pid) if pid.isdigit() and pid != "0" else None
    except OSError:
        pass
    return None
