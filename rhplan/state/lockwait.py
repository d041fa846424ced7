"""-lock-timeout=DURATION (Terraform's flag): a command that finds the state locked waits
up to DURATION for the lock instead of failing at once. Both backends take the lock
through acquire(), so the local file and the S3 lock object wait the same way.

The CLI sets the duration once per command (set_timeout); the default, 0s, fails at
once as before."""
from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator

from rhplan.errors import StateError, StateLockedError
from rhplan.state.lockinfo import LockInfo, print_notice

_timeout = 0.0
_given = "0s"  # as the user wrote it, for messages
_notice: Callable[[str], None] | None = None  # set_notice

# Go's time.ParseDuration, as Terraform reads -lock-timeout: 1h2m3.5s, 500ms
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")

# how long between two tries: short at first (a plan holds it for a second), then 1 s
_FIRST_PAUSE, _LONGEST_PAUSE = 0.05, 1.0


def parse_duration(text: str) -> float:
    """Seconds of a duration such as 30s, 5m, 1m30s, 500ms or 0; ValueError otherwise."""
    text = text.strip()
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m or 1m30s")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def set_timeout(text: str) -> None:
    """Once per command (its -lock-timeout); the notice goes back to stderr until a
    -json UI takes it (set_notice)."""
    global _timeout, _given, _notice
    _timeout, _given, _notice = parse_duration(text), text, None


def set_notice(say: Callable[[str], None] | None) -> None:
    """Where the one "waiting for the lock" line goes: -json makes it a JSON message on
    stdout (rhplan/views/json_ui.py); None: stderr."""
    global _notice
    _notice = say


def timeout() -> float:
    return _timeout


def acquire(take: Callable[[], LockInfo], say: Callable[[str], None] | None = None
            ) -> LockInfo:
    """take() until it succeeds or the lock timeout runs out; the last StateLockedError,
    saying how long it waited, if it never does."""
    deadline = time.monotonic() + _timeout
    pause = _FIRST_PAUSE
    told = False
    while True:
        try:
            return take()
        except StateLockedError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                if _timeout <= 0:
                    raise
                raise StateLockedError(f"{exc} (still locked after -lock-timeout={_given})"
                                       ) from None
            if not told:  # once: a person (or a test) can see that it waits, and for whom
                tell = say or _notice or print_notice
                tell(f"Acquiring the state lock (waiting up to {_given}): "
                     f"{str(exc).partition('; ')[0]}")
                told = True
            time.sleep(min(pause, left))  # rhplan's own wait, bounded by the deadline
            pause = min(pause * 2, _LONGEST_PAUSE)


@contextlib.contextmanager
def holding(take: Callable[[], LockInfo], unlock: Callable[[str], None]) -> Iterator[LockInfo]:
    """Both backends' locked(): the lock taken through acquire() for the body of a `with`
    block, then released. If the body fails, its error is the one reported: a lock that
    cannot be released then shows up, with its ID, at the next run."""
    info = acquire(take)
    try:
        yield info
    except BaseException:
        with contextlib.suppress(StateError):
            unlock(info.id)
        raise
    unlock(info.id)
