"""Why a connect failed: one line each, with where, what happened and the fix.

Host keys and the login first (the server answered); then a proxy command that
exited (its own words); then what the network did: refused, reset or closed, timed
out (only when the time was really spent), unknown name.
"""
from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any

from rhplan.errors import ProviderError
from rhplan.hosts.ssh._paramiko import paramiko
from rhplan.hosts.ssh.hostkeys import (
    HostKeyChanged,
    HostKeyNotPublished,
    HostKeyUnknown,
    changed_error,
    fingerprint_of,
    not_published_error,
)
from rhplan.hosts.ssh.proxy import proxy_exit, proxy_line

if TYPE_CHECKING:
    from rhplan.hosts.ssh.connection import SSHConnection


def connect_error(conn: SSHConnection, exc: BaseException, elapsed: float, sock: Any
                  ) -> ProviderError:
    """Classify a failed connect of conn (see the module's docstring)."""
    if isinstance(exc, HostKeyChanged):
        return changed_error(conn.where, exc.expected, exc.got)
    if isinstance(exc, HostKeyNotPublished):
        return not_published_error(conn.where, exc.got, conn.published, conn.published_by)
    if isinstance(exc, paramiko.BadHostKeyException):
        return changed_error(conn.where, fingerprint_of(exc.expected_key),
                             fingerprint_of(exc.key))
    if isinstance(exc, HostKeyUnknown):
        return ProviderError(
            f"host {conn.where} is not in known_hosts file {conn.known_hosts} (it offers "
            f"{exc.got}); add its key (ssh-keyscan -p {conn.port} {conn.host}) after "
            "checking that fingerprint"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return _auth_error(conn, exc)
    proxy = proxy_exit(sock) if sock is not None else None
    if proxy is not None:
        status, said = proxy
        line = proxy_line(conn.proxy_command or "", conn.host, conn.port, conn.user)
        return ProviderError(
            f"cannot reach {conn.where}: proxy command {line!r} exited "
            f"(status {status}) {_after(elapsed)}: {said or 'it printed nothing'}; run it "
            "by hand to see why, and fix proxy_command in the ssh block"
        )
    return ProviderError(f"cannot reach {conn.where}: {_network_problem(conn, exc, elapsed)}")


def _auth_error(conn: SSHConnection, exc: BaseException) -> ProviderError:
    if conn.private_key:
        how = f"key {conn.private_key} ({fingerprint_of(conn._pkey)})"
    else:
        how = "a password" if conn.password else "the agent and default keys"
    return ProviderError(
        f"{conn.where} refused to log in {conn.user!r} with {how} ({exc}); check the "
        f"user, and that the public key is in ~{conn.user}/.ssh/authorized_keys there"
    )


def _network_problem(conn: SSHConnection, exc: BaseException, elapsed: float) -> str:
    """What the network did, and the fix, for everything but keys and logins."""
    port, limit = conn.port, conn.connect_timeout
    fix_not_ssh = (f"sshd may be refusing new connections (MaxStartups), a firewall or "
                   f"proxy may be cutting it, or port {port} is not an SSH server")
    if isinstance(exc, socket.gaierror):
        return f"unknown host name ({exc.strerror}); check the address and its DNS"
    refused = _refused(exc)
    if refused is not None:
        if refused:
            return (f"connection refused (nothing listens on port {port}); check the "
                    "host and port, and that sshd runs there")
        return (f"{_oserror_text(exc)}; check the address, the network and that the "
                "host is up")
    reset = _reset_kind(exc)
    if reset is not None:
        return (f"the connection was {reset} by the peer during the SSH handshake, "
                f"{_after(elapsed)}; {fix_not_ssh}")
    timed_out = elapsed >= limit * 0.9
    if isinstance(exc, TimeoutError) and timed_out:
        return (f"no TCP answer within {limit:g} s; check the address, the "
                "security group / firewall and that the host is up "
                "(RHPLAN_SSH_CONNECT_TIMEOUT sets the wait)")
    if isinstance(exc, paramiko.SSHException) and timed_out:
        # TCP connected but the greeting or key exchange did not finish in time
        # (paramiko says "No existing session" when its key exchange timed out)
        return (f"connected, but no SSH greeting and key exchange within "
                f"{limit:g} s; check that port {port} is an SSH "
                "server and that the host (and the proxy command, if any) is not hung "
                "(RHPLAN_SSH_CONNECT_TIMEOUT sets the wait)")
    if isinstance(exc, OSError):
        return (f"{_oserror_text(exc)} {_after(elapsed)}; check the address, the firewall "
                "and that the host is up")
    return f"the SSH handshake failed {_after(elapsed)} ({_exc_text(exc)}); {fix_not_ssh}"


def _causes(exc: BaseException) -> list[BaseException]:
    """exc and what it was raised from or while handling (paramiko wraps socket errors)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 5:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _refused(exc: BaseException) -> bool | None:
    """True: the port refused the connection; False: the address was unreachable; None:
    neither (TCP got further, or something else failed)."""
    if isinstance(exc, ConnectionRefusedError):
        return True
    if paramiko is not None and isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return all(getattr(e, "errno", None) == errno.ECONNREFUSED
                   for e in exc.errors.values())
    return None


def _reset_kind(exc: BaseException) -> str | None:
    """"reset" (an RST) or "closed" (a FIN) if the peer ended the connection under us."""
    for e in _causes(exc):
        if isinstance(e, (ConnectionResetError, ConnectionAbortedError)):
            return "reset"
        if isinstance(e, (EOFError, BrokenPipeError)):
            return "closed"
    return None


def _oserror_text(exc: BaseException) -> str:
    if paramiko is not None and isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        exc = next(iter(exc.errors.values()), exc)
    text = getattr(exc, "strerror", None) or _exc_text(exc)
    return text[:1].lower() + text[1:]


def _exc_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _after(elapsed: float) -> str:
    return f"after {elapsed:.1f} s"
