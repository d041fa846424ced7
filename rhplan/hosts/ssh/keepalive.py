"""How long to wait for a host, and the watch that declares a silent peer dead.

RHPLAN_SSH_CONNECT_TIMEOUT bounds connecting, the banner, the key exchange and the
login (default 15 s); a connection whose peer goes silent is dead after
RHPLAN_SSH_ALIVE_INTERVAL x RHPLAN_SSH_ALIVE_COUNT_MAX seconds (default 15 x 3)
without an answer to keepalives that want one (OpenSSH's ServerAliveInterval /
ServerAliveCountMax).
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from rhplan.errors import ProviderError
from rhplan.hosts.ssh._paramiko import paramiko

# OpenSSH's own keepalive request; servers answer it (with a failure: fine, an answer)
_KEEPALIVE_REQUEST = "keepalive@openssh.com"


def _setting(name: str, default: float, minimum: float) -> float:
    """A number from the environment; a bad value is a one-line error naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also refuses nan
        raise ProviderError(f"{name}={raw!r} is not a number of at least {minimum:g}; "
                            f"unset it for the default ({default:g})")
    return value


def connect_timeout_default() -> float:
    return _setting("RHPLAN_SSH_CONNECT_TIMEOUT", 15.0, 0.1)


def alive_settings() -> tuple[float, int]:
    """(seconds between keepalives, unanswered keepalives before the peer is dead)."""
    interval = _setting("RHPLAN_SSH_ALIVE_INTERVAL", 15.0, 0.1)
    count = int(_setting("RHPLAN_SSH_ALIVE_COUNT_MAX", 3, 1))
    return interval, count


class AliveWatch:
    """Sends a keepalive that wants a reply every `interval` seconds; when `count_max`
    intervals pass with the last one unanswered, closes the transport, which wakes
    every wait on it (command output, exit status, SFTP) instead of leaving them
    blocked on a silent peer forever. paramiko's own set_keepalive() asks for no
    reply, so it keeps a NAT entry open but cannot tell a dead peer, and its
    global_request(wait=True) waits without a bound; so this sends the request itself
    and waits on the event paramiko sets when any answer comes. One thread per
    connection, started at connect: no thread is started later (a machine out of
    threads must not quietly turn off the watch)."""

    def __init__(self, transport: Any, where: str, interval: float, count_max: int):
        self.transport = transport
        self.where = where
        self.interval = interval
        self.count_max = count_max
        self.dead_reason: str | None = None
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name=f"rhplan-ssh-alive {where}",
                         daemon=True).start()
        _watches[transport] = self

    def _ask(self) -> threading.Event:
        """Send keepalive@openssh.com with want-reply; the event is set on the answer
        (REQUEST_SUCCESS or REQUEST_FAILURE both count: the peer is there)."""
        answered = threading.Event()
        self.transport.completion_event = answered
        m = paramiko.Message()
        m.add_byte(paramiko.common.cMSG_GLOBAL_REQUEST)
        m.add_string(_KEEPALIVE_REQUEST)
        m.add_boolean(True)
        self.transport._send_user_message(m)
        return answered

    def _loop(self) -> None:
        answered: threading.Event | None = None
        misses = 0
        while not self._stop.wait(self.interval):
            if not self.transport.is_active():
                return
            if answered is not None and not answered.is_set():
                misses += 1
                if misses < self.count_max:
                    continue
                silent = self.interval * self.count_max
                self.dead_reason = (f"no answer to SSH keepalives for {silent:g} s; "
                                    "a slow link may need a larger "
                                    "RHPLAN_SSH_ALIVE_INTERVAL or _COUNT_MAX")
                self.transport.close()
                return
            misses = 0
            try:
                answered = self._ask()
            except Exception:
                # the transport died while sending: its own thread reports that
                continue

    def stop(self) -> None:
        self._stop.set()


# the keepalive watch of each live transport, for the reason a connection was lost
_watches: weakref.WeakKeyDictionary[Any, AliveWatch] = weakref.WeakKeyDictionary()


def lost_reason(chan: Any) -> str:
    """Why the connection under chan died, as well as it is known."""
    transport = chan.get_transport()
    watch = _watches.get(transport) if transport is not None else None
    if watch is not None and watch.dead_reason:
        return watch.dead_reason
    exc = transport.get_exception() if transport is not None else None
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return "the connection was closed or reset"
