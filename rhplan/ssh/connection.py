"""Reach a host over SSH (paramiko) through the same protocol as LocalConnection.

Commands stay argv lists: each one is sent as one `shlex.join` string, always
run through `env --` (so argv[0] is a program, never shell syntax, and env
values are quoted like any other argument), so `;`, `$( )`, backticks, quotes
and newlines in user data arrive as data. The remote login shell only has to be
POSIX (sh, bash, dash, zsh).

Host keys are never accepted silently: with a known_hosts file the key must be
in it; with `published` fingerprints (a cloud's console output lists them) the key
must be one of them, checked during the key exchange, before any login; otherwise
the first key seen is trusted and exposed as `fingerprint` ("SHA256:...", as
OpenSSH prints it) for the caller to record, and a recorded fingerprint that no
longer matches is refused.

One TCP connection per SSHConnection, shared by concurrent `run()` calls (one
SSH channel each) and one lazily opened SFTP session; `get_connection()` keeps
one SSHConnection per (host, port, user) for the whole process.

No wait is unbounded: connecting, the banner, the key exchange and the login each
have RHPLAN_SSH_CONNECT_TIMEOUT seconds (default 15), and a connection whose peer
goes silent (a hung proxy or bastion, a dead NAT entry, a frozen host) is declared
dead after RHPLAN_SSH_ALIVE_INTERVAL x RHPLAN_SSH_ALIVE_COUNT_MAX seconds (default
15 x 3) without an answer to keepalives that want one, as OpenSSH's
ServerAliveInterval / ServerAliveCountMax do. sshd answers them while a command
runs, so a package install of many minutes is never cut. A command whose
connection is lost raises ConnectionLost (what it did on the host is unknown).
"""

from __future__ import annotations

import atexit
import base64
import errno
import getpass
import hashlib
import logging
import os
import posixpath
import secrets
import select
import shlex
import signal
import socket
import stat
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from rhplan.connection import EXIT_TIMEOUT, CommandResult
from rhplan.errors import ConnectionLost, ProviderError

try:
    import paramiko
except ImportError:  # pragma: no cover - the "ssh" extra is not installed
    paramiko = None

# paramiko logs connection failures with tracebacks at ERROR level; without a
# handler Python's last-resort handler would print them under our one-line
# error. Applications that configure logging still see them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

T = TypeVar("T")

# OpenSSH's sshd allows 10 sessions per connection by default (MaxSessions);
# the SFTP session takes one, so at most 8 commands run at once per host and
# further run() calls wait for a free channel instead of being refused.
MAX_CONCURRENT_CHANNELS = 8
# A session open refused as "administratively prohibited" (1) or "connect failed" (2)
# is retried after these pauses (~3 s in all) before it is an error.
_CHANNEL_BUSY = (1, 2)
_CHANNEL_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
# After a command's own time is up, how long to wait for the remote
# `timeout` to kill it before closing the channel from this side.
_TIMEOUT_GRACE = 2.0
_CHUNK = 32768
_NO_DIR_MARK = "rhplan-ssh: no such directory"
# OpenSSH's own keepalive request; servers answer it (with a failure: fine, an answer)
_KEEPALIVE_REQUEST = "keepalive@openssh.com"
# _collect's return code for "the connection died under the command"
_LOST = -1000


if paramiko is not None:
    class _Transport(paramiko.Transport):
        """paramiko's transport, AES-GCM first: one C call per packet where its default
        (aes128-ctr, then a separate HMAC) costs ~30% more of the caller's CPU per
        packet (docs/remote.md: 10 MB sent 30 -> 21 ms of CPU, a small round trip
        117 -> 88 us). A server without GCM gets paramiko's usual order."""

        _preferred_ciphers = tuple(sorted(paramiko.Transport._preferred_ciphers,
                                          key=lambda c: "-gcm@" not in c))


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


class _AliveWatch:
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


def fingerprint_of(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko key: 'SHA256:<base64, no padding>'."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def md5_fingerprint_of(key: Any) -> str:
    """The older form ssh-keygen printed (and old cloud-init images still do):
    'MD5:aa:bb:...'."""
    digest = hashlib.md5(key.asbytes(), usedforsecurity=False).hexdigest()
    return "MD5:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _published_match(key: Any, published: frozenset[str]) -> bool:
    return fingerprint_of(key) in published or md5_fingerprint_of(key) in published


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class _HostKeyChanged(Exception):
    def __init__(self, expected: str, got: str):
        super().__init__(f"expected {expected}, got {got}")
        self.expected = expected
        self.got = got


class _HostKeyUnknown(Exception):
    def __init__(self, got: str):
        super().__init__(got)
        self.got = got


class _HostKeyNotPublished(Exception):
    def __init__(self, got: str):
        super().__init__(got)
        self.got = got


if paramiko is not None:

    class _FingerprintPolicy(paramiko.MissingHostKeyPolicy):
        """Trust on first use: accept any key when nothing was recorded, else
        only the recorded fingerprint. Only used without a known_hosts file."""

        def __init__(self, expected: str | None, published: frozenset[str] | None = None):
            self.expected = expected
            self.published = published

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            got = fingerprint_of(key)
            if self.expected is not None and got != self.expected:
                raise _HostKeyChanged(self.expected, got)
            if self.published is not None and not _published_match(key, self.published):
                raise _HostKeyNotPublished(got)

    class _RejectUnknown(paramiko.RejectPolicy):
        """paramiko's RejectPolicy, raising something we can tell apart."""

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise _HostKeyUnknown(fingerprint_of(key))

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


def _proxy_exit(sock: Any) -> tuple[int, str] | None:
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
    lines = [ln.strip() for ln in _decode(said).splitlines() if ln.strip()]
    return status, (lines[-1][:300] if lines else "")


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


# the keepalive watch of each live transport, for the reason a connection was lost
_watches: weakref.WeakKeyDictionary[Any, _AliveWatch] = weakref.WeakKeyDictionary()


class SSHConnection:
    """A host reached over SSH; implements rhplan.connection.Connection."""

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        user: str | None = None,
        private_key: str | None = None,
        password: str | None = None,
        known_hosts: str | None = None,
        proxy_command: str | None = None,
        recorded_fingerprint: str | None = None,
        connect_timeout: float | None = None,
        published: frozenset[str] | None = None,
        published_by: str = "",
    ) -> None:
        if paramiko is None:
            raise ProviderError(
                "SSH needs paramiko, which is not installed; run: pip install 'rhplan[ssh]'"
            )
        self.host = host
        self.port = int(port)
        self.user = user or getpass.getuser()
        self.private_key = os.path.expanduser(private_key) if private_key else None
        self.password = password
        self.known_hosts = os.path.expanduser(known_hosts) if known_hosts else None
        self.proxy_command = proxy_command
        self.recorded_fingerprint = recorded_fingerprint
        # fingerprints the host's key must be one of (first connect only), and who said so
        self.published = frozenset(published) if published is not None else None
        self.published_by = published_by or "the fingerprints given"
        self.connect_timeout = (connect_timeout if connect_timeout is not None
                                else connect_timeout_default())
        self.alive_interval, self.alive_count_max = alive_settings()
        self._alive: _AliveWatch | None = None
        # The fingerprint of the key the server showed; record it in the state.
        self.fingerprint: str | None = None
        # Tests count commands to check that reads stay cheap over SSH, and
        # TCP connections to check that they are reused.
        self.commands_run = 0
        self.connects = 0
        self._count_lock = threading.Lock()
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
        return ProviderError(
            f"host key of {self.where} changed (expected {expected}, got {got}); if the host "
            "was rebuilt on purpose, update known_hosts / remove its recorded fingerprint "
            "from the state; otherwise someone may be intercepting the connection"
        )

    def _not_published_error(self, got: str) -> ProviderError:
        listed = ", ".join(sorted(self.published or ())) or "none"
        return ProviderError(
            f"host key of {self.where} ({got}) is not one of those {self.published_by} "
            f"lists ({listed}); someone may be intercepting the connection, or the "
            "instance was rebuilt: nothing was recorded and no login was tried"
        )

    def _connect(self) -> None:
        """Open (or reopen) the TCP connection; hold _connect_lock or be in __init__."""
        # Only the file we were given: never the user's ~/.ssh/known_hosts
        # behind the caller's back.
        expected = self.recorded_fingerprint or self.fingerprint
        client = self._new_client(expected)
        sock = self._proxy_sock()
        started = time.monotonic()
        try:
            self._login(client, sock)
        except (OSError, EOFError, paramiko.SSHException, _HostKeyChanged,
                _HostKeyUnknown, _HostKeyNotPublished) as exc:
            # classified before closing: closing stops a proxy command, whose own exit
            # status and words are part of the answer
            error = self._connect_error(exc, time.monotonic() - started, sock)
            client.close()
            if sock is not None:
                sock.close()
            raise error from None
        self._adopt(client, expected)

    def _new_client(self, expected: str | None) -> Any:
        """A client that checks host keys: against known_hosts if given, else the
        recorded fingerprint (trust on first use when there is none)."""
        client = paramiko.SSHClient()
        if self.known_hosts is None:
            # published fingerprints matter until a key is verified (then it is expected)
            published = self.published if expected is None else None
            client.set_missing_host_key_policy(_FingerprintPolicy(expected, published))
            return client
        try:
            client.load_host_keys(self.known_hosts)
        except FileNotFoundError:
            raise ProviderError(
                f"known_hosts file {self.known_hosts} does not exist (for {self.where}); "
                "fix the path or create it with ssh-keyscan"
            ) from None
        except (OSError, paramiko.SSHException) as exc:
            raise ProviderError(
                f"cannot read known_hosts file {self.known_hosts} (for {self.where}): {exc}"
            ) from None
        client.set_missing_host_key_policy(_RejectUnknown())
        return client

    def _proxy_line(self) -> str:
        """proxy_command with OpenSSH's %h %p %r %% filled in."""
        assert self.proxy_command is not None
        return (
            self.proxy_command.replace("%%", "\0")
            .replace("%h", self.host)
            .replace("%p", str(self.port))
            .replace("%r", self.user)
            .replace("\0", "%")
        )

    def _proxy_sock(self) -> Any:
        if not self.proxy_command:
            return None
        cmd = self._proxy_line()
        try:
            return _Proxy(cmd)
        except Exception as exc:  # ProxyCommand raises bare OSErrors and its own
            raise ProviderError(
                f"cannot start proxy command {cmd!r} for {self.where}: {exc}; fix "
                "proxy_command in the ssh block"
            ) from None

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
            transport_factory=_Transport,
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
                and not _published_match(server_key, self.published)):
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
            self._alive = _AliveWatch(transport, self.where, self.alive_interval,
                                      self.alive_count_max)
        except RuntimeError as exc:  # "can't start new thread"
            client.close()
            raise ProviderError(
                f"cannot watch the SSH connection to {self.where} ({exc}); this machine "
                "is out of threads or processes: stop what uses them and apply again"
            ) from None
        _watches[transport] = self._alive
        with self._count_lock:
            self.connects += 1

    # -- why a connect failed: one line each, with where, what happened and the fix --

    def _connect_error(self, exc: BaseException, elapsed: float, sock: Any) -> ProviderError:
        """Classify a failed connect. Host keys and the login first (the server
        answered); then a proxy command that exited (its own words); then what the
        network did: refused, reset or closed, timed out (only when the time was
        really spent), unknown name."""
        if isinstance(exc, _HostKeyChanged):
            return self._changed_error(exc.expected, exc.got)
        if isinstance(exc, _HostKeyNotPublished):
            return self._not_published_error(exc.got)
        if isinstance(exc, paramiko.BadHostKeyException):
            return self._changed_error(fingerprint_of(exc.expected_key), fingerprint_of(exc.key))
        if isinstance(exc, _HostKeyUnknown):
            return ProviderError(
                f"host {self.where} is not in known_hosts file {self.known_hosts} (it offers "
                f"{exc.got}); add its key (ssh-keyscan -p {self.port} {self.host}) after "
                "checking that fingerprint"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return self._auth_error(exc)
        proxy = _proxy_exit(sock) if sock is not None else None
        if proxy is not None:
            status, said = proxy
            return ProviderError(
                f"cannot reach {self.where}: proxy command {self._proxy_line()!r} exited "
                f"(status {status}) {_after(elapsed)}: {said or 'it printed nothing'}; run it "
                "by hand to see why, and fix proxy_command in the ssh block"
            )
        return ProviderError(f"cannot reach {self.where}: {self._network_problem(exc, elapsed)}")

    def _auth_error(self, exc: BaseException) -> ProviderError:
        if self.private_key:
            how = f"key {self.private_key} ({fingerprint_of(self._pkey)})"
        else:
            how = "a password" if self.password else "the agent and default keys"
        return ProviderError(
            f"{self.where} refused to log in {self.user!r} with {how} ({exc}); check the "
            f"user, and that the public key is in ~{self.user}/.ssh/authorized_keys there"
        )

    def _network_problem(self, exc: BaseException, elapsed: float) -> str:
        """What the network did, and the fix, for everything but keys and logins."""
        fix_not_ssh = (f"sshd may be refusing new connections (MaxStartups), a firewall or "
                       f"proxy may be cutting it, or port {self.port} is not an SSH server")
        if isinstance(exc, socket.gaierror):
            return f"unknown host name ({exc.strerror}); check the address and its DNS"
        refused = _refused(exc)
        if refused is not None:
            if refused:
                return (f"connection refused (nothing listens on port {self.port}); check the "
                        "host and port, and that sshd runs there")
            return (f"{_oserror_text(exc)}; check the address, the network and that the "
                    "host is up")
        reset = _reset_kind(exc)
        if reset is not None:
            return (f"the connection was {reset} by the peer during the SSH handshake, "
                    f"{_after(elapsed)}; {fix_not_ssh}")
        timed_out = elapsed >= self.connect_timeout * 0.9
        if isinstance(exc, TimeoutError) and timed_out:
            return (f"no TCP answer within {self.connect_timeout:g} s; check the address, the "
                    "security group / firewall and that the host is up "
                    "(RHPLAN_SSH_CONNECT_TIMEOUT sets the wait)")
        if isinstance(exc, paramiko.SSHException) and timed_out:
            # TCP connected but the greeting or key exchange did not finish in time
            # (paramiko says "No existing session" when its key exchange timed out)
            return (f"connected, but no SSH greeting and key exchange within "
                    f"{self.connect_timeout:g} s; check that port {self.port} is an SSH "
                    "server and that the host (and the proxy command, if any) is not hung "
                    "(RHPLAN_SSH_CONNECT_TIMEOUT sets the wait)")
        if isinstance(exc, OSError):
            return (f"{_oserror_text(exc)} {_after(elapsed)}; check the address, the firewall "
                    "and that the host is up")
        return f"the SSH handshake failed {_after(elapsed)} ({_exc_text(exc)}); {fix_not_ssh}"

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
        _forget(self)

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SSHConnection({self.user}@{self.where})"

    # -- commands -----------------------------------------------------------

    def _command_line(
        self, argv: list[str], env: Mapping[str, str] | None, cwd: str | None,
        timeout: float | None,
    ) -> str:
        assignments = []
        for key, value in (env or {}).items():
            if not key or "=" in key or "\0" in key or "\0" in str(value):
                raise ValueError(f"invalid environment variable name or value: {key!r}")
            assignments.append(f"{key}={value}")
        # `env --` even without variables: argv[0] is then always a program
        # looked up in PATH (as with subprocess), never a shell keyword,
        # builtin or function, and a missing one exits 127.
        body = shlex.join(["env", "--", *assignments, *argv])
        if timeout is not None:
            seconds = f"{max(timeout, 0.001):.3f}"
            # coreutils' timeout SIGKILLs the command's whole process group,
            # so nothing is left running on the host (without it, the command
            # runs unbounded there and only our wait is cut short). Not `exec
            # timeout`: it kills its own group, itself included, and the
            # session would end with a bare signal; the shell reports 137.
            # The command's stderr goes through fd 3 so bash's own "Killed"
            # notice does not land in it.
            body = (
                "if command -v timeout >/dev/null 2>&1; then { timeout --signal=KILL "
                f"{seconds} {body} 2>&3 3>&-; }} 3>&2 2>/dev/null; else exec {body}; fi"
            )
        else:
            body = f"exec {body}"
        if cwd is not None:
            q = shlex.quote(cwd)
            body = (
                f"if [ ! -d {q} ]; then printf '%s\\n' '{_NO_DIR_MARK}' >&2; exit 1; fi; "
                f"cd -- {q} && {body}"
            )
        return body

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
    ) -> CommandResult:
        args = [str(a) for a in argv]
        if not args:
            raise ValueError("SSHConnection.run needs a non-empty argv")
        if any("\0" in a for a in args):
            raise ValueError("an argument contains a NUL byte, which no command can receive")
        command = self._command_line(args, env, cwd, timeout)
        with self._count_lock:
            self.commands_run += 1
        with self._channels:
            try:
                chan = self._with_reconnect(lambda t: self._exec(t, command))
            except paramiko.SSHException as exc:
                if "timeout" in str(exc).lower():
                    raise ProviderError(
                        f"{self.where} did not answer within {self.connect_timeout:g} s when "
                        f"asked to start {_what(args)}; the host, or the network or proxy "
                        "to it, may be hung: check it and apply again"
                    ) from None
                raise ProviderError(
                    f"{self.where} refused to start a command ({exc}); check the host's sshd "
                    "(MaxSessions, ForceCommand) and that it is up"
                ) from None
            returncode, out, err, timed_out = self._collect(chan, stdin, timeout)
        if returncode == _LOST:
            raise ConnectionLost(
                f"lost the SSH connection to {self.where} while running {_what(args)} "
                f"({self._lost_reason(chan)}); it may or may not have finished there: check "
                "the host and the network or proxy to it, then apply again"
            )
        if timed_out:
            msg = err + f"\ntimed out after {timeout:g} s"
            return CommandResult(tuple(args), EXIT_TIMEOUT, out, msg)
        if cwd is not None and returncode == 1 and not out and err.strip() == _NO_DIR_MARK:
            raise FileNotFoundError(f"no such directory on {self.where}: {cwd}")
        return CommandResult(tuple(args), returncode, out, err)

    def _exec(self, transport: Any, command: str) -> Any:
        chan = self._open_session(transport)
        try:
            chan.exec_command(command)
        except BaseException:
            chan.close()
            raise
        return chan

    def _open_session(self, transport: Any) -> Any:
        """A new session channel. sshd frees a session only once it has handled our
        close, so right after a burst of short commands it can still count them against
        MaxSessions and refuse the open; the command has not started then, so waiting a
        moment and asking again is safe (seen with 200 envs on 8 hosts)."""
        for delay in _CHANNEL_RETRY_DELAYS:
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except paramiko.SSHException as exc:
                # paramiko keeps one saved error per transport: with opens from several
                # threads, a refused one may see only "Unable to open channel."
                busy = (exc.code in _CHANNEL_BUSY if isinstance(exc, paramiko.ChannelException)
                        else str(exc) == "Unable to open channel.")
                if not busy or not transport.is_active():
                    raise
            time.sleep(delay)
        return transport.open_session(timeout=self.connect_timeout)

    def _collect(
        self, chan: Any, stdin: bytes | None, timeout: float | None
    ) -> tuple[int, str, str, bool]:
        """Feed stdin and drain stdout and stderr at once (either could fill the
        shared SSH window and stall the other), bounded by the timeout."""
        start = time.monotonic()
        out: list[bytes] = []
        err: list[bytes] = []

        def drain(recv: Callable[[int], bytes], sink: list[bytes]) -> None:
            try:
                while True:
                    data = recv(_CHUNK)
                    if not data:
                        return
                    sink.append(data)
            except (OSError, EOFError, paramiko.SSHException):
                return

        def feed() -> None:
            try:
                if stdin:
                    chan.sendall(stdin)
                chan.shutdown_write()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the command exited without reading all of it

        threads = [
            threading.Thread(target=drain, args=(chan.recv, out), daemon=True),
            threading.Thread(target=drain, args=(chan.recv_stderr, err), daemon=True),
        ]
        if stdin:
            threads.append(threading.Thread(target=feed, daemon=True))
        else:
            feed()  # EOF right away, like stdin=DEVNULL
        for t in threads:
            t.start()

        deadline = None if timeout is None else start + timeout + _TIMEOUT_GRACE
        timed_out = False
        for t in threads[:2]:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                timed_out = True
                break
        if not timed_out:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not chan.status_event.wait(remaining):
                timed_out = True
        if timed_out:
            chan.close()  # wakes the readers; the remote process loses its channel
            for t in threads:
                t.join(1.0)
            returncode = EXIT_TIMEOUT
        else:
            returncode = chan.recv_exit_status()
            chan.close()
            if returncode == -1 and _transport_died(chan.get_transport()):
                # no exit status because the connection itself is gone, not the command
                return _LOST, _decode(b"".join(out)), _decode(b"".join(err)), False
            elapsed = time.monotonic() - start
            # coreutils `timeout --signal=KILL` gives 137 (128 + SIGKILL); -1 is
            # a session that ended by a signal without an exit status.
            if timeout is not None and returncode in (-1, 124, 137) and elapsed >= timeout:
                timed_out = True
                returncode = EXIT_TIMEOUT
            elif returncode == -1:
                # Killed by a signal, or sshd went away; ssh(1) says 255 too.
                returncode = 255
        return returncode, _decode(b"".join(out)), _decode(b"".join(err)), timed_out

    def _lost_reason(self, chan: Any) -> str:
        transport = chan.get_transport()
        watch = _watches.get(transport) if transport is not None else None
        if watch is not None and watch.dead_reason:
            return watch.dead_reason
        exc = transport.get_exception() if transport is not None else None
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror.lower()
        return "the connection was closed or reset"

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

    # -- files --------------------------------------------------------------

    def _sftp_op(self, op: Callable[[Any], T]) -> T:
        def with_sftp(transport: Any) -> T:
            with self._sftp_lock:
                sftp = self._sftp
                if sftp is None or sftp.get_channel().get_transport() is not transport:
                    sftp = self._sftp = paramiko.SFTPClient.from_transport(transport)
                    if sftp is None:
                        raise paramiko.SSHException("the server refused an SFTP session")
                return op(sftp)

        # The SFTP session is one long-lived channel, outside the command budget.
        return self._with_reconnect(with_sftp)

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        parent = posixpath.dirname(path) or "."

        def put(sftp: Any) -> None:
            _sftp_makedirs(sftp, parent)
            tmp = posixpath.join(parent, f".rhplan-tmp-{secrets.token_hex(8)}")
            f = sftp.open(tmp, "wx")  # O_EXCL
            try:
                try:
                    f.chmod(0o600)  # nobody else reads it while we write it
                    f.set_pipelined(True)
                    f.write(data)
                    f.chmod(mode)
                finally:
                    f.close()
                try:
                    sftp.posix_rename(tmp, path)
                except OSError:
                    # A server without posix-rename@openssh.com: plain rename
                    # refuses to overwrite, so remove the old file first.
                    try:
                        sftp.remove(path)
                    except FileNotFoundError:
                        pass
                    sftp.rename(tmp, path)
            except BaseException:
                try:
                    sftp.remove(tmp)
                except Exception:
                    pass
                raise

        try:
            self._sftp_op(put)
        except paramiko.SSHException as exc:
            raise ProviderError(f"cannot write {path} on {self.where}: {exc}") from None

    def get_bytes(self, path: str) -> bytes:
        def get(sftp: Any) -> bytes:
            attrs = sftp.stat(path)
            if stat.S_ISDIR(attrs.st_mode or 0):
                raise IsADirectoryError(f"{path} on {self.where} is a directory")
            with sftp.open(path, "rb") as f:
                f.prefetch(attrs.st_size)
                return bytes(f.read())

        try:
            return self._sftp_op(get)
        except FileNotFoundError:
            raise FileNotFoundError(f"no such file on {self.where}: {path}") from None
        except paramiko.SSHException as exc:
            raise ProviderError(f"cannot read {path} on {self.where}: {exc}") from None

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

    def stream(self, argv: Sequence[str], on_output: Callable[[int, bytes], None], *,
               cwd: str | None = None) -> int:
        """Run argv like run(), handing its output to on_output(1 or 2, bytes) as it
        comes; its exit code (ConnectionLost if the connection dies under it)."""
        command = self._command_line([str(a) for a in argv], None, cwd, None)
        with self._channels:
            chan = self._with_reconnect(lambda t: self._exec(t, command))
            chan.shutdown_write()
            readers = [threading.Thread(target=_pump, args=(recv, fd, on_output), daemon=True)
                       for recv, fd in ((chan.recv, 1), (chan.recv_stderr, 2))]
            for t in readers:
                t.start()
            for t in readers:
                t.join()
            code = chan.recv_exit_status()
            chan.close()
        if code == -1 and _transport_died(chan.get_transport()):
            raise ConnectionLost(f"lost the SSH connection to {self.where} while running "
                                 f"{_what([str(a) for a in argv])} ({self._lost_reason(chan)})")
        return 255 if code == -1 else code


def _pump(recv: Callable[[int], bytes], fd: int, sink: Callable[[int, bytes], None]) -> None:
    try:
        for data in iter(lambda: recv(_CHUNK), b""):
            sink(fd, data)
    except (OSError, EOFError, paramiko.SSHException):
        return


def _what(args: list[str]) -> str:
    """The command, short, for an error message: its program and first argument."""
    shown = shlex.join(args[:2]) + (" ..." if len(args) > 2 else "")
    return repr(shown if len(shown) <= 60 else shown[:57] + "...")


def _transport_died(transport: Any) -> bool:
    """Whether the transport is dead; paramiko closes the channels a moment before it
    marks itself inactive, so give it that moment."""
    if transport is None:
        return True
    deadline = time.monotonic() + 0.5
    while transport.is_active():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _sftp_makedirs(sftp: Any, folder: str) -> None:
    """mkdir -p over SFTP."""
    missing = []
    current = folder
    while current not in ("", "/", "."):
        try:
            if stat.S_ISDIR(sftp.stat(current).st_mode or 0):
                break
            raise NotADirectoryError(f"{current} exists and is not a directory")
        except FileNotFoundError:
            missing.append(current)
            current = posixpath.dirname(current)
    for d in reversed(missing):
        try:
            sftp.mkdir(d)
        except OSError:
            # Someone else (another thread) made it meanwhile: fine if it is a folder.
            if not stat.S_ISDIR(sftp.stat(d).st_mode or 0):
                raise


# -- one connection per host, per process --------------------------------------

_pool: dict[tuple[str, int, str], SSHConnection] = {}
_pool_lock = threading.Lock()
# One lock per (host, port, user): parallel apply steps for one host share one
# connection instead of racing to open several, while a slow host does not
# hold up connecting to the others.
_key_locks: dict[tuple[str, int, str], threading.Lock] = {}


def get_connection(
    host: str,
    *,
    port: int = 22,
    user: str | None = None,
    private_key: str | None = None,
    password: str | None = None,
    known_hosts: str | None = None,
    proxy_command: str | None = None,
    recorded_fingerprint: str | None = None,
    connect_timeout: float | None = None,
    published: frozenset[str] | None = None,
    published_by: str = "",
) -> SSHConnection:
    """The process's SSHConnection to user@host:port, connecting on first use.

    A later call with other credentials, known_hosts or proxy replaces the
    pooled connection; one with a recorded fingerprint that differs from the
    key the pooled connection verified is refused.
    """
    user = user or getpass.getuser()
    key = (host, int(port), user)
    settings = (
        os.path.expanduser(private_key) if private_key else None,
        password,
        os.path.expanduser(known_hosts) if known_hosts else None,
        proxy_command,
    )
    with _pool_lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _pool_lock:
            old = _pool.get(key)
        if old is not None and old._client is not None and settings == (
            old.private_key, old.password, old.known_hosts, old.proxy_command
        ):
            if (
                recorded_fingerprint is not None
                and old.fingerprint is not None
                and recorded_fingerprint != old.fingerprint
            ):
                raise old._changed_error(recorded_fingerprint, old.fingerprint)
            if (published is not None and old.fingerprint is not None
                    and old.fingerprint not in published):
                raise old._not_published_error(old.fingerprint)
            return old
        new = SSHConnection(
            host,
            port=port,
            user=user,
            private_key=private_key,
            password=password,
            known_hosts=known_hosts,
            proxy_command=proxy_command,
            recorded_fingerprint=recorded_fingerprint,
            connect_timeout=connect_timeout,
            published=published,
            published_by=published_by,
        )
        if old is not None:
            old.close()  # also drops it from the pool
        with _pool_lock:
            _pool[key] = new
    return new


def _forget(conn: SSHConnection) -> None:
    with _pool_lock:
        for key, pooled in list(_pool.items()):
            if pooled is conn:
                del _pool[key]


def close_all() -> None:
    """Close every pooled connection (at exit, and between tests)."""
    with _pool_lock:
        conns = list(_pool.values())
        _pool.clear()
    for conn in conns:
        conn.close()


atexit.register(close_all)
