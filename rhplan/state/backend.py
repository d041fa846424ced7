"""What every state backend offers: read and write the state, and lock it.

LocalBackend (a file beside the configuration) and S3Backend (an object in a
bucket) both satisfy this Protocol; the commands only ever see a Backend.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from rhplan.state.lockinfo import LockInfo
from rhplan.state.model import State


@runtime_checkable
class Backend(Protocol):
    # Told one line when lock() clears a lock whose holder is provably gone
    # (stderr by default).
    notify: Callable[[str], None]

    def read(self) -> State:
        """The recorded state, or State.new() if nothing was written yet."""
        ...

    def write(self, state: State) -> None:
        """Bump state.serial and store it, keeping the previous state as a backup."""
        ...

    def digest_key(self) -> bytes:
        """The key of the keyed digests of secret values in this state
        (rhplan.state.digest), kept beside the state but never in it. If there is none
        yet, a new one, kept in memory until store_digest_key()."""
        ...

    def store_digest_key(self) -> None:
        """Store the key digest_key() made (nothing if it read a stored one), once the
        plan that used it succeeded: atomically and only if there still is none, else a
        StateError (of two first runs, one stores its key, the other runs again)."""
        ...

    def lock(self, operation: str) -> LockInfo:
        """Take the state lock, or raise StateLockedError naming its holder. A lock
        left by a process proven gone (LockInfo.gone) is cleared, with a notice."""
        ...

    def unlock(self, lock_id: str) -> None:
        """Release a lock this backend took with lock()."""
        ...

    def locked(self, operation: str) -> AbstractContextManager[LockInfo]:
        """Hold the state lock for the body of a `with` block."""
        ...

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Break a lock whose holder is gone; lock_id must match the lock's ID.
        Returns the lock it removed."""
        ...

    def lock_info(self) -> LockInfo | None:
        """Who holds the lock, if anyone."""
        ...
