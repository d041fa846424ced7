"""Real OpenSSH servers on 127.0.0.1 for tests, each with its own keys and config.

    with SSHServer() as server:
        conn = SSHConnection("127.0.0.1", port=server.port, user=server.user,
                             private_key=server.client_key, known_hosts=server.known_hosts)

Everything lives in a private temporary folder: the system sshd, /etc/ssh and
~/.ssh are never read or written (sshd is started with its own config file,
host key, authorized_keys and pid file). `python tests/support/sshd.py relay HOST PORT`
is a tiny TCP relay on stdin/stdout, for testing proxy commands.
"""
from __future__ import annotations

import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
READY_TIMEOUT = 10.0


def ensure_sshd_installed() -> None:
    """Install openssh-server with apt if /usr/sbin/sshd is missing (apt does not start it)."""
    if os.path.exists(SSHD):
        return
    if shutil.which("apt-get") is None:
        raise RuntimeError(
            f"{SSHD} is missing and apt-get is not available; install OpenSSH's sshd"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"],
    ):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(f"{SSHD} is missing and `{shlex.join(cmd)}` failed: {exc}") from exc
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(
                f"{SSHD} is missing and `{shlex.join(cmd)}` exited {proc.returncode}: "
                + " | ".join(tail)
                + " (install openssh-server by hand, as root)"
            )
    if not os.path.exists(SSHD):
        raise RuntimeError(f"openssh-server was installed but {SSHD} is still missing")


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True, timeout=30,
    )


def _fingerprint(pub: Path) -> str:
    # OpenSSH's own rendering, so tests compare against ssh-keygen, not our code.
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout
    return out.split()[1]


def _descendants(pid: int) -> list[int]:
    """Every live process below pid (sshd forks one child per connection and
    each calls setsid, so a process group kill would miss them)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: the ppid follows the last ')'.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class SSHServer:
    """One private sshd on 127.0.0.1:port that lets the current user in with client_key."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        ensure_sshd_installed()
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="rhplan-sshd-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.host_key = self.root / "host_key"
        self.client_key = str(self.root / "client_key")
        # A key pair the server does not know, for refused-login tests.
        self.stranger_key = str(self.root / "stranger_key")
        self.authorized_keys = self.root / "authorized_keys"
        self.known_hosts = str(self.root / "known_hosts")
        self.config = self.root / "sshd_config"
        self.log = self.root / "sshd.log"
        self.pid_file = self.root / "sshd.pid"
        self.host_key_fingerprint = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self.extra_config: list[str] = []  # more sshd_config lines, set before start()

        _keygen(self.host_key, "rhplan-test-host")
        _keygen(Path(self.client_key), "rhplan-test-client")
        _keygen(Path(self.stranger_key), "rhplan-test-stranger")
        self.authorized_keys.write_text(Path(self.client_key + ".pub").read_text())
        self._host_key_changed()

    # -- keys ---------------------------------------------------------------

    def _host_key_changed(self) -> None:
        self.host_key_fingerprint = _fingerprint(self.host_key.with_name("host_key.pub"))
        self.write_known_hosts(self.known_hosts)

    def known_hosts_line(self) -> str:
        key_type, blob = self.host_key.with_name("host_key.pub").read_text().split()[:2]
        return f"[{self.host}]:{self.port} {key_type} {blob}\n"

    def write_known_hosts(self, path: str | os.PathLike[str]) -> None:
        """A known_hosts file trusting the current host key (self.known_hosts is one)."""
        Path(path).write_text(self.known_hosts_line())

    def regenerate_host_key(self) -> None:
        """A new host key, as if the host were rebuilt (or impersonated); restarts sshd
        (dropping open connections) and rewrites self.known_hosts for the new key."""
        _keygen(self.host_key, "rhplan-test-host")
        self._host_key_changed()
        if self._proc is not None:
            self.stop()
            self.start()

    # -- process ------------------------------------------------------------

    def _write_config(self) -> None:
        self.config.write_text(
            "\n".join([
                f"ListenAddress {self.host}",
                f"Port {self.port}",
                f"HostKey {self.host_key}",
                f"PidFile {self.pid_file}",
                f"AuthorizedKeysFile {self.authorized_keys}",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin yes",
                "UseDNS no",
                "LogLevel VERBOSE",
                *self.extra_config,
                "",
            ])
        )

    def start(self) -> SSHServer:
        if self._proc is not None:
            return self
        try:
            os.makedirs("/run/sshd", exist_ok=True)  # "Missing privilege separation directory"
        except PermissionError as exc:
            if not os.path.isdir("/run/sshd"):
                raise RuntimeError("sshd needs /run/sshd; create it as root") from exc
        self._write_config()
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True,
                               text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"sshd rejects {self.config}: {check.stderr.strip()}")
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"sshd exited at start; its log says: {self.log_text()[-800:]}")
            try:
                # Ready means it answers with its banner, not just a bound port.
                with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                    if s.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"sshd did not answer on {self.host}:{self.port} within {READY_TIMEOUT:g} s; "
                    f"its log says: {self.log_text()[-800:]}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the listener and every session it forked (as a reboot would)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        sessions = _descendants(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- inspection ---------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def accepted_logins(self) -> int:
        """How many logins sshd accepted so far (one per TCP connection that authenticated)."""
        return self.log_text().count("Accepted publickey for ")

    def relay_command(self) -> str:
        """A ProxyCommand that reaches this server through a local relay process."""
        return shlex.join([sys.executable, os.path.abspath(__file__), "relay", "%h", "%p"])


def _relay(host: str, port: int) -> None:
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)

    def upstream() -> None:
        while True:
            data = os.read(0, 65536)
            if not data:
                sock.shutdown(socket.SHUT_WR)
                return
            sock.sendall(data)

    threading.Thread(target=upstream, daemon=True).start()
    while True:
        data = sock.recv(65536)
        if not data:
            return
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "relay":
        _relay(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: python tests/support/sshd.py relay HOST PORT")
