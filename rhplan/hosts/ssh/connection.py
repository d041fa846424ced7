"""SSHConnection: one host reached over SSH, with the protocol of LocalConnection
(rhplan.hosts.connection): run, which, put_bytes, get_bytes, plus stream and open_tunnel.

One TCP connection per SSHConnection, shared by concurrent `run()` calls (one SSH
channel each) and one lazily opened SFTP session; it reconnects (verifying the host
key again) when the server went away. A command whose connection is lost raises
ConnectionLost (what it did on the host is unknown).
"""
from __future__ import annotations

import getpass
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, TypeVar, Unpack

from rhplan.errors import ConnectionLost, ProviderError
from rhplan.hosts.connection import EXIT_TIMEOUT, BaseConnection, CommandResult
from rhplan.hosts.ssh import channel, sftp
from rhplan.hosts.ssh._paramiko import Transport, paramiko
from rhplan.hosts.ssh.connect_errors import connect_error
from rhplan.hosts.ssh.hostkeys import (
    HostKeyChanged,
    HostKeyNotPublished,
    HostKeyUnknown,
    changed_error,
    checking_client,
    fingerprint_of,
    not_published_error,
    published_match,
)
from rhplan.hosts.ssh.keepalive import (
    AliveWatch,
    alive_settings,
    connect_timeout_default,
    lost_reason,
)
from rhplan.hosts.ssh.proxy import proxy_line, proxy_sock

T = TypeVar("T")

# OpenSSH's sshd allows 10 sessions per connection by default (MaxSessions);
# the SFTP session takes one, so at most 8 commands run at once per host and
# further run() calls wait for a free channel instead of being refused.
MAX_CONCURRENT_CHANNELS = 8


class SSHOptions(TypedDict, total=False):
    """How to reach a host and log in: the keyword arguments of SSHConnection and of
    rhplan.hosts.ssh.pool.get_connection (the port defaults to 22, the user to this one)."""

    port: int
    user: str | None
    private_key: str | None
    password: str | None
    known_hosts: str | None
    proxy_command: str | None
    recorded_fingerprint: str | None  # the host key's, as the state recorded it
    connect_timeout: float | None
    published: frozenset[str] | None  # fingerprints the host's key must be one of
    published_by: str  # who published them, for messages


class SSHConnection(BaseConnection):
    """A host reached over SSH; implements rhplan.hosts.connection.Connection."""

    def __init__(self, host: str, **options: Unpack[SSHOptions]) -> None:
        if paramiko is None:
            raise ProviderError(
                "SSH needs paramiko, which is not installed; run: pip install 'rhplan[ssh]'"
            )
        unknown = options.keys() - SSHOptions.__optional_keys__
        if unknown:
            raise TypeError(f"SSHConnection() got unexpected options: {sorted(unknown)}")
        private_key, known_hosts = options.get("private_key"), options.get("known_hosts")
        published, connect_timeout = options.get("published"), options.get("connect_timeout")
        self.host = host
        self.port = int(options.get("port", 22))
        self.user = options.get("user") or getpass.getuser()
        self.private_key = os.path.expanduser(private_key) if private_key else None
        self.password = options.get("password")
        self.known_hosts = os.path.expanduser(known_hosts) if known_hosts else None
        self.proxy_command = options.get("proxy_command")
        self.recorded_fingerprint = options.get("recorded_fingerprint")
        # fingerprints the host's key must be one of (first connect only), and who said so
        self.published = frozenset(published) if published is not None else None
        self.published_by = options.get("published_by") or "the fingerprints given"
        self.connect_timeout = (connect_timeout if connect_timeout is not None
                                else connect_timeout_default())
        self.alive_interval, self.alive_count_max = alive_settings()
        self._alive: AliveWatch | None = None
        # The fingerprint of the key the server showed; record it in the state.
        self.fingerprint: str | None = None
        # Commands run (BaseConnection counts them) and TCP connections made: what
        # `reads stay cheap` and `the connection is reused` are measured by.
        super().__init__()
        self.connects = 0
        self._connect_lock = threading.Lock()
        self._sftp_lock = threading.Lock()
        self._channels = threading.BoundedSemaphore(MAX_CONCURRENT_CHANNELS)
        self._client: Any = None
        self._sftp: Any = None
        self._pkey: Any = self._load_key() if self.private_key else None
        self._connect()

    # -- connecting ---------------------------------------------------------

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _load_key(self) -> Any:
        path = self.private_key
        assert path is not None
        if not os.path.exists(path):
            raise ProviderError(
                f"SSH private key {path} does not exist (for {self.user}@{self.where}); "
                "fix the path in the ssh block"
            )
        try:
            return paramiko.PKey.from_path(path)
        except paramiko.PasswordRequiredException:
            raise ProviderError(
                f"SSH private key {path} is protected by a passphrase, which rhplan cannot "
                "ask for; use a key without one for this host"
            ) from None
        except (paramiko.SSHException, ValueError, OSError) as exc:
            raise ProviderError(
                f"cannot read SSH private key {path}: {exc}; give an OpenSSH or PEM private key"
            ) from None

    def _changed_error(self, expected: str, got: str) -> ProviderError:
        return changed_error(self.where, expected, got)

    def _not_published_error(self, got: str) -> ProviderError:
        return not_published_error(self.where, got, self.published, self.published_by)

    def _connect(self) -> None:
        """Open (or reopen) the TCP connection; hold _connect_lock or be in __init__."""
        expected = self.recorded_fingerprint or self.fingerprint
        client = checking_client(self.known_hosts, expected, self.published, self.where)
        sock = (proxy_sock(proxy_line(self.proxy_command, self.host, self.port, self.user),
                           self.where) if self.proxy_command else None)
        started = time.monotonic()
        try:
            self._login(client, sock)
        except (OSError, EOFError, paramiko.SSHException, HostKeyChanged,
                HostKeyUnknown, HostKeyNotPublished) as exc:
            # classified before closing: closing stops a proxy command, whose own exit
            # status and words are part of the answer
            error = connect_error(self, exc, time.monotonic() - started, sock)
            client.close()
            if sock is not None:
                sock.close()
            raise error from None
        self._adopt(client, expected)

    def _login(self, client: Any, sock: Any) -> None:
        """TCP connect (or the proxy), the SSH greeting and key exchange, the login: each
        bounded by connect_timeout."""
        explicit = self._pkey is not None or self.password is not None
        client.connect(
            self.host,
            port=self.port,
            username=self.user,
            pkey=self._pkey,
            password=self.password,
            timeout=self.connect_timeout,
            banner_timeout=self.connect_timeout,
            auth_timeout=self.connect_timeout,
            channel_timeout=self.connect_timeout,
            # Without credentials, behave like ssh: agent and ~/.ssh/id_*.
            allow_agent=not explicit,
            look_for_keys=not explicit,
            sock=sock,
            transport_factory=Transport,
        )

    def _adopt(self, client: Any, expected: str | None) -> None:
        """Take a logged-in client as this connection's: check its host key, tune its
        socket, start its keepalive watch."""
        transport = client.get_transport()
        server_key = transport.get_remote_server_key()
        got = fingerprint_of(server_key)
        # Known keys skip the policy, so check the recorded fingerprint (and,
        # on a reconnect, the key first seen) here too.
        if expected is not None and got != expected:
            client.close()
            raise self._changed_error(expected, got)
        if (expected is None and self.published is not None
                and not published_match(server_key, self.published)):
            client.close()
            raise self._not_published_error(got)
        transport.set_keepalive(30)
        if isinstance(transport.sock, socket.socket):
            # Without it each channel open waits ~40 ms on Nagle + delayed ACK.
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fingerprint = got
        self._client = client
        self._sftp = None
        if self._alive is not None:
            self._alive.stop()
        try:
            self._alive = AliveWatch(transport, self.where, self.alive_interval,
                                     self.alive_count_max)
        except RuntimeError as exc:  # "can't start new thread"
            client.close()
            raise ProviderError(
                f"cannot watch the SSH connection to {self.where} ({exc}); this machine "
                "is out of threads or processes: stop what uses them and apply again"
            ) from None
        with self._count_lock:
            self.connects += 1

    def _transport(self) -> Any:
        with self._connect_lock:
            client = self._client
            if client is None:
                raise ProviderError(f"SSH connection to {self.where} was closed")
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                # The server went away (reboot, restart, idle kill): reconnect,
                # verifying the host key again.
                client.close()
                self._connect()
                transport = self._client.get_transport()
            return transport

    def _with_reconnect(self, op: Callable[[Any], T]) -> T:
        """Run op(transport); if the connection broke under it, reconnect once."""
        transport = self._transport()
        try:
            return op(transport)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if isinstance(exc, (FileNotFoundError, PermissionError)) or transport.is_active():
                raise
        return op(self._transport())

    def close(self) -> None:
        with self._connect_lock:
            if self._alive is not None:
                self._alive.stop()
                self._alive = None
            if self._sftp is not None:
                try:
                    self._sftp.close()
                except Exception:
                    pass
                self._sftp = None
            if self._client is not None:
                self._client.close()
                self._client = None
        from rhplan.hosts.ssh.pool import forget  # the pool holds connections: it comes after
        forget(self)

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SSHConnection({self.user}@{self.where})"

    # -- commands -----------------------------------------------------------

    def _exec(self, command: str) -> Any:
        return self._with_reconnect(
            lambda t: channel.exec_command(t, command, self.connect_timeout))

    def _run(self, args: list[str], env: Mapping[str, str] | None, cwd: str | None,
             stdin: bytes | None, timeout: float | None) -> CommandResult:
        command = channel.command_line(args, env, cwd, timeout)
        with self._channels:
            try:
                chan = self._exec(command)
            except paramiko.SSHException as exc:
                raise self._start_refused(exc, args) from None
            returncode, out, err, timed_out = channel.collect(chan, stdin, timeout)
        if returncode == channel.LOST:
            raise ConnectionLost(
                f"lost the SSH connection to {self.where} while running "
                f"{channel.what(args)} ({lost_reason(chan)}); it may or may not have "
                "finished there: check the host and the network or proxy to it, then "
                "apply again"
            )
        if timed_out:
            msg = err + f"\ntimed out after {timeout:g} s"
            return CommandResult(tuple(args), EXIT_TIMEOUT, out, msg)
        if (cwd is not None and returncode == 1 and not out
                and err.strip() == channel.NO_DIR_MARK):
            raise FileNotFoundError(f"no such directory on {self.where}: {cwd}")
        return CommandResult(tuple(args), returncode, out, err)

    def _start_refused(self, exc: Exception, args: list[str]) -> ProviderError:
        if "timeout" in str(exc).lower():
            return ProviderError(
                f"{self.where} did not answer within {self.connect_timeout:g} s when "
                f"asked to start {channel.what(args)}; the host, or the network or proxy "
                "to it, may be hung: check it and apply again"
            )
        return ProviderError(
            f"{self.where} refused to start a command ({exc}); check the host's sshd "
            "(MaxSessions, ForceCommand) and that it is up"
        )

    def which(self, program: str) -> str | None:
        # The program name reaches the shell only as "$1". `command -v` alone
        # would answer "echo" for a shell builtin; walk PATH for a real file.
        script = (
            'case $1 in */*) [ -f "$1" ] && [ -x "$1" ] && printf "%s\\n" "$1" && exit 0;'
            " exit 1;; esac; "
            'p=$(command -v -- "$1") || exit 1; '
            'case $p in /*) printf "%s\\n" "$p"; exit 0;; esac; '
            "IFS=:; for d in $PATH; do "
            '[ -f "$d/$1" ] && [ -x "$d/$1" ] && { printf "%s\\n" "$d/$1"; exit 0; }; '
            "done; exit 1"
        )
        result = self.run(["sh", "-c", script, "sh", program])
        path = result.stdout.strip()
        return path if result.returncode == 0 and path else None

    def stream(self, argv: Sequence[str], on_output: Callable[[int, bytes], None], *,
               cwd: str | None = None) -> int:
        """Run argv like run(), handing its output to on_output(1 or 2, bytes) as it
        comes; its exit code (ConnectionLost if the connection dies under it)."""
        command = channel.command_line([str(a) for a in argv], None, cwd, None)
        with self._channels:
            chan = self._exec(command)
            chan.shutdown_write()
            readers = [threading.Thread(target=channel.pump, args=(recv, fd, on_output),
                                        daemon=True)
                       for recv, fd in ((chan.recv, 1), (chan.recv_stderr, 2))]
            for t in readers:
                t.start()
            for t in readers:
                t.join()
            code = chan.recv_exit_status()
            chan.close()
        if code == -1 and channel.transport_died(chan.get_transport()):
            raise ConnectionLost(f"lost the SSH connection to {self.where} while running "
                                 f"{channel.what([str(a) for a in argv])} "
                                 f"({lost_reason(chan)})")
        return 255 if code == -1 else code

    def open_tunnel(self, host: str, port: int, window: int = 8 << 20) -> Any:
        """A direct-tcpip channel to host:port as the server sees it (e.g. a service on
        its loopback), on this connection, reconnecting first if it died; the open is
        bounded by the connect timeout. A wide window: large objects travel here."""
        def open_(transport: Any) -> Any:
            return transport.open_channel("direct-tcpip", (host, int(port)), ("127.0.0.1", 0),
                                          window_size=window, timeout=self.connect_timeout)
        try:
            return self._with_reconnect(open_)
        except paramiko.SSHException as exc:
            raise ProviderError(f"{self.where} refused a tunnel to {host}:{port} ({exc}); "
                                "check the host's sshd allows TCP forwarding "
                                "(AllowTcpForwarding)") from None

    # -- files --------------------------------------------------------------

    def _sftp_op(self, op: Callable[[Any], T]) -> T:
        def with_sftp(transport: Any) -> T:
            with self._sftp_lock:
                client = self._sftp
                if client is None or client.get_channel().get_transport() is not transport:
                    client = self._sftp = paramiko.SFTPClient.from_transport(transport)
                    if client is None:
                        raise paramiko.SSHException("the server refused an SFTP session")
                return op(client)

        # The SFTP session is one long-lived channel, outside the command budget.
        return self._with_reconnect(with_sftp)

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        try:
            self._sftp_op(lambda s: sftp.put(s, data, path, mode))
        except paramiko.SSHException as exc:
            raise ProviderError(f"cannot write {path} on {self.where}: {exc}") from None

    def get_bytes(self, path: str) -> bytes:
        try:
            return self._sftp_op(lambda s: sftp.get(s, path, self.where))
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file on {self.where}: {path}") from None
        except paramiko.SSHException as exc:
            raise ProviderError(f"cannot read {path} on {self.where}: {exc}") from None
