"""One SSHConnection per (host, port, user) for the whole process."""
from __future__ import annotations

import getpass
import os
import threading
from typing import Unpack

from rhplan.hosts.ssh.connection import SSHConnection, SSHOptions
from rhplan.registry import Registry

_pool: Registry[tuple[str, int, str], SSHConnection] = Registry()
_key_locks_lock = threading.Lock()
# One lock per (host, port, user): parallel apply steps for one host share one
# connection instead of racing to open several, while a slow host does not
# hold up connecting to the others.
_key_locks: dict[tuple[str, int, str], threading.Lock] = {}


def get_connection(host: str, **options: Unpack[SSHOptions]) -> SSHConnection:
    """The process's SSHConnection to user@host:port, connecting on first use.

    A later call with other credentials, known_hosts or proxy replaces the
    pooled connection; one with a recorded fingerprint that differs from the
    key the pooled connection verified is refused.
    """
    user = options.get("user") or getpass.getuser()
    key = (host, int(options.get("port", 22)), user)
    private_key, known_hosts = options.get("private_key"), options.get("known_hosts")
    settings = (
        os.path.expanduser(private_key) if private_key else None,
        options.get("password"),
        os.path.expanduser(known_hosts) if known_hosts else None,
        options.get("proxy_command"),
    )
    with _key_locks_lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        old = _pool.get(key)
        if old is not None and old._client is not None and settings == (
            old.private_key, old.password, old.known_hosts, old.proxy_command
        ):
            _check_pooled(old, options.get("recorded_fingerprint"), options.get("published"))
            return old
        new = SSHConnection(host, **options)
        if old is not None:
            old.close()  # also drops it from the pool
        _pool.put(key, new)
    return new


def _check_pooled(old: SSHConnection, recorded_fingerprint: str | None,
                  published: frozenset[str] | None) -> None:
    """A pooled connection serves a caller only with the key that caller expects."""
    if (recorded_fingerprint is not None and old.fingerprint is not None
            and recorded_fingerprint != old.fingerprint):
        raise old._changed_error(recorded_fingerprint, old.fingerprint)
    if (published is not None and old.fingerprint is not None
            and old.fingerprint not in published):
        raise old._not_published_error(old.fingerprint)


def pooled() -> list[SSHConnection]:
    """The connections the process holds now (tests and benchmarks count them, and
    what each ran)."""
    return _pool.values()


def forget(conn: SSHConnection) -> None:
    """Drop a closed connection from the pool."""
    _pool.forget(conn)


# Close every pooled connection (at exit, and between tests).
close_all = _pool.close_all
