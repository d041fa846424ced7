"""When apply's changes to the state reach the backend: a step that acted outside the
state (a host, a cloud) is written before it counts as done; one that only records
something is batched, written at most WRITE_INTERVAL later (StateRecorder)."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rhplan.resources import TYPES
from rhplan.resources.base import ResourceType
from rhplan.state.backend import Backend
from rhplan.state.model import State

# The longest a finished state-only step waits to be written: a few writes per second
# at most while such steps pour in.
WRITE_INTERVAL = 0.5


def changes_world(type_name: str, op: str) -> bool:
    """Whether this type's `op` (create | update | delete) acts outside the state: a
    type that keeps the base class's method only records its attributes."""
    return getattr(type(TYPES[type_name]), op) is not getattr(ResourceType, op)


class StateRecorder:
    """Changes to the state in memory, and when they reach the backend.

    record(..., durable=True) returns only once a write that includes the change has
    finished (one write may carry several steps that finished together); otherwise
    the change is written by the first write at least WRITE_INTERVAL after the last,
    or by flush() at the end."""

    def __init__(self, state: State, backend: Backend, lock: threading.Lock,
                 interval: float = WRITE_INTERVAL):
        self.state = state
        self.backend = backend
        self.lock = lock  # the Applier's: held while the state changes or is written
        self.interval = interval
        self.writes = 0
        self._changes = 0  # changes made in memory so far
        self._written = 0  # changes the last finished write included
        self._last_write = time.monotonic()

    def record(self, change: Callable[[State], None], durable: bool) -> None:
        with self.lock:
            change(self.state)
            self._changes += 1
            mine = self._changes
            if not durable and time.monotonic() - self._last_write < self.interval:
                return
        self._write_including(mine)

    def flush(self) -> None:
        """Write whatever is not written yet."""
        with self.lock:
            mine = self._changes
        self._write_including(mine)

    def _write_including(self, mine: int) -> None:
        with self.lock:
            if self._written >= mine:
                return  # a write that started after our change already finished
            upto = self._changes
            self.backend.write(self.state)
            self._written = upto
            self._last_write = time.monotonic()
            self.writes += 1
