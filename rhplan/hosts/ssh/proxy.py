"""proxy_command: OpenSSH's ProxyCommand (a bastion, SSM, a test's forwarder), with
a socket's end of file and the command's own words when it fails."""
from __future__ import annotations

import os
import select
import signal
import subprocess
from typing import Any

from rhplan.errors import ProviderError
from rhplan.hosts.ssh._paramiko import paramiko

if paramiko is not None:
    class _Proxy(paramiko.ProxyCommand):
        """paramiko's ProxyCommand, with a socket's end of file: its recv() spins until
        the timeout once the command's output ends, so a proxy command that exited
        looked like a silent host for RHPLAN_SSH_CONNECT_TIMEOUT seconds. And close()
        leaves a command that has exited alone (and reaps it, for its exit status)."""

        def recv(self, size: int) -> bytes:
            out = self.process.stdout
            try:
                ready, _, _ = select.select([out], [], [], self.timeout)
                if not ready:
                    raise TimeoutError()
                return os.read(out.fileno(), size)  # b"" at the end, as a socket
            except TimeoutError:
                raise  # paramiko's packetizer waits on, or gives up at its own deadline
            except OSError as exc:
                raise paramiko.ProxyCommandFailure(" ".join(self.cmd), exc.strerror) from exc

        def close(self) -> None:
            if self.process.poll() is None:
                try:
                    os.kill(self.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def proxy_line(command: str, host: str, port: int, user: str) -> str:
    """proxy_command with OpenSSH's %h %p %r %% filled in."""
    return (
        command.replace("%%", "\0")
        .replace("%h", host)
        .replace("%p", str(port))
        .replace("%r", user)
        .replace("\0", "%")
    )


def proxy_sock(cmd: str, where: str) -> Any:
    """The running proxy command, as the socket the SSH client talks through."""
    try:
        return _Proxy(cmd)
    except Exception as exc:  # ProxyCommand raises bare OSErrors and its own
        raise ProviderError(
            f"cannot start proxy command {cmd!r} for {where}: {exc}; fix "
            "proxy_command in the ssh block"
        ) from None


def proxy_exit(sock: Any) -> tuple[int, str] | None:
    """(exit status, last line of its stderr) of a proxy command that failed during the
    connect; None if it still runs, was stopped by a signal (ours), or exited 0 (its
    connection ended: what the network did is the answer, as without a proxy)."""
    process = getattr(sock, "process", None)
    if process is None:
        return None
    try:
        status = process.wait(timeout=1.0)  # the command may be exiting just now
    except subprocess.TimeoutExpired:
        return None
    if status <= 0:
        return None
    said = b""
    try:
        fd = process.stderr.fileno()
        os.set_blocking(fd, False)  # a child of the command may still hold it open
        said = os.read(fd, 65536)
    except (OSError, ValueError, TypeError):
        pass
    text = said.decode("utf-8", errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return status, (lines[-1][:300] if lines else "")
