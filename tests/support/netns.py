"""Test hosts as Linux network namespaces on a private bridge, each with its own sshd.

    with TestNetwork() as net:
        a, b = net.add_host("a"), net.add_host("b")
        conn = SSHConnection(a.address, port=a.port, user=a.user,
                             private_key=a.client_key, known_hosts=a.known_hosts)

Each host is a network namespace `rh<hex>` with `eth0` = 10.250.X.N/24 (a veth whose
other end `rhv<hex>` is a port of the bridge `rhbr<hex>`, 10.250.X.254/24, in the root
namespace) and a default route via the bridge, so Ray finds a node address. Hosts reach
each other and the root namespace (at the bridge address, and the root namespace reaches
every host address), nothing else: IPv4 forwarding is switched off on the bridge, so a
packet to any other address is dropped on this machine. Hosts share the file system
(same /tmp, same venvs) but not the network stack: each one has its own loopback and
ports (sshd listens on port 22 of each).

Everything created is recorded by a marker file /run/rhplan-netns/<name> naming the
process that owns it; `close()` (also run at exit) removes it all, and
`cleanup_stale()` removes what a crashed run left (only resources with a marker whose
owner is gone: never namespaces or links this module did not create). Needs root
(CAP_NET_ADMIN); `netns_available()` says why not, for a skip.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sshd import SSHD, SSHServer, _keygen, ensure_sshd_installed

MARK_DIR = Path("/run/rhplan-netns")
SUBNET_BASE = "10.250"
BRIDGE_HOST = 254  # the root namespace's address on every test network
KILL_TIMEOUT = 5.0
_IP_TIMEOUT = 30.0


# -- small helpers -------------------------------------------------------------------

def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` exited {proc.returncode}: "
                           f"{proc.stderr.strip()}")
    return proc


def _gone(proc: subprocess.CompletedProcess[str]) -> bool:
    """True when an `ip ... del` failed only because the thing is not there."""
    err = proc.stderr
    return proc.returncode == 0 or any(s in err for s in (
        "Cannot find device", "No such file or directory", "does not exist",
        "Cannot open network namespace", "No such device"))


def _write_sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of pid (to tell a live owner from a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    now = _proc_start_time(pid)
    return now is not None and now == start


def _mark(name: str, kind: str, **extra: Any) -> None:
    MARK_DIR.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    data = {"kind": kind, "pid": pid, "start": _proc_start_time(pid), **extra}
    tmp = MARK_DIR / f".{name}.tmp"
    tmp.write_text(json.dumps(data))
    tmp.replace(MARK_DIR / name)


def _unmark(name: str) -> None:
    (MARK_DIR / name).unlink(missing_ok=True)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One process at a time picks a subnet / sweeps stale resources."""
    MARK_DIR.mkdir(parents=True, exist_ok=True)
    with open(MARK_DIR / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def namespace_pids(namespace: str) -> list[int]:
    """Every live process whose network namespace is `namespace`."""
    proc = _ip("netns", "pids", namespace, check=False)
    if proc.returncode != 0:
        return []
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def kill_namespace(namespace: str, timeout: float = KILL_TIMEOUT) -> list[int]:
    """SIGKILL every process in `namespace` (again, for any forked meanwhile) until none
    is left or `timeout` passes; returns the pids still alive (empty on success)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in namespace_pids(namespace) if p != os.getpid()]
        if not pids:
            return []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return pids
        time.sleep(0.01)


def _delete_namespace(namespace: str) -> str | None:
    """Kill its processes and delete it; an error message, or None when it is gone."""
    left = kill_namespace(namespace)
    if left:
        return f"processes {left} in namespace {namespace} survived SIGKILL"
    proc = _ip("netns", "del", namespace, check=False)
    if not _gone(proc):
        return f"ip netns del {namespace}: {proc.stderr.strip()}"
    return None


def _delete_link(name: str) -> str | None:
    proc = _ip("link", "del", name, check=False)
    if not _gone(proc):
        return f"ip link del {name}: {proc.stderr.strip()}"
    return None


def _link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


# -- availability and stale cleanup -------------------------------------------------

_available: list[str | None] = []


def netns_available() -> str | None:
    """None when this process can create namespaces, bridges and veths (checked once by
    creating and deleting a probe of each), else why not, for pytest.skip."""
    if _available:
        return _available[0]
    reason = _probe()
    _available.append(reason)
    return reason


def _probe() -> str | None:
    if not os.path.isdir("/proc/sys/net"):
        return "no Linux network stack (/proc/sys/net is missing)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); running as uid " \
               f"{os.geteuid()}"
    tag = secrets.token_hex(3)
    ns, br, veth = f"rhp{tag}", f"rhpb{tag}", f"rhpv{tag}"
    steps = [("netns", "add", ns), ("link", "add", br, "type", "bridge"),
             ("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)]
    try:
        for name, kind in ((ns, "netns"), (br, "bridge"), (veth, "veth")):
            _mark(name, kind)
    except OSError as exc:
        return f"cannot write markers under {MARK_DIR}: {exc}"
    try:
        for step in steps:
            proc = _ip(*step, check=False)
            if proc.returncode != 0:
                return f"`ip {' '.join(step)}` failed: {proc.stderr.strip()}"
        return None
    finally:
        for name in (veth, br):
            if _delete_link(name) is None:
                _unmark(name)
        if _delete_namespace(ns) is None:
            _unmark(ns)


def _teardown_host(namespace: str, veth: str, root: Path,
                   children: list[subprocess.Popen[Any]]) -> list[str]:
    """Kill everything in the namespace, reap our children, delete the namespace and the
    veth, remove the folder; the errors (empty when all is gone)."""
    errors: list[str] = []
    err = _delete_namespace(namespace)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=KILL_TIMEOUT)
    children.clear()
    if err is not None:
        errors.append(err)
    else:
        _unmark(namespace)
    err = _delete_link(veth)
    if err is not None:
        errors.append(err)
    else:
        _unmark(veth)
    shutil.rmtree(root, ignore_errors=True)
    return errors


_KIND_ORDER = {"netns": 0, "veth": 1, "bridge": 2, "dir": 3}


def cleanup_stale() -> list[str]:
    """Remove what earlier runs of this module left behind when their process died
    without close(): namespaces (and their processes), veths, bridges and temp folders
    that have a marker under /run/rhplan-netns whose owner process is gone. Resources
    of live owners (other test runs going on now) are left alone. Returns the names
    removed."""
    if not MARK_DIR.is_dir():
        return []
    removed: list[str] = []
    with _locked():
        stale: list[tuple[str, dict[str, Any]]] = []
        for path in MARK_DIR.iterdir():
            if path.name.startswith("."):
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # half written by a live owner, or not ours
            if not _alive(int(data.get("pid", 0)), data.get("start")):
                stale.append((path.name, data))
        stale.sort(key=lambda item: _KIND_ORDER.get(str(item[1].get("kind")), 9))
        for name, data in stale:
            kind = data.get("kind")
            if kind == "netns":
                err = _delete_namespace(name)
            elif kind in ("veth", "bridge"):
                err = _delete_link(name)
            else:
                err = None
            folder = data.get("dir")
            if err is None and folder and folder.startswith(tempfile.gettempdir()):
                shutil.rmtree(folder, ignore_errors=True)
            if err is None:
                _unmark(name)
                removed.append(name)
    return removed


# -- hosts ----------------------------------------------------------------------------

class TestHost(SSHServer):
    """One namespace on a TestNetwork, with sshd on address:port (22) inside it.

    It is an SSHServer (tests/support/sshd.py) whose sshd runs in the namespace: same key
    material, `log_text()`, `accepted_logins()`, `regenerate_host_key()`,
    `stranger_key`. `client_key` is the network's key (every host of a network lets it
    in); `known_hosts` trusts this host only, the network's `known_hosts` all of them.
    """

    __test__ = False  # a helper, not a pytest test class

    def __init__(self, network: TestNetwork, name: str, namespace: str, address: str,
                 veth: str, root: Path, port: int = 22) -> None:
        self.name = name
        self.network = network
        self.namespace = namespace
        self.address = address
        self.veth = veth
        self._listen_port = port
        self._children: list[subprocess.Popen[Any]] = []
        super().__init__(root)
        self.host = address
        self.port = port
        self.user = "root"
        self.authorized_keys.write_text(Path(network.client_key + ".pub").read_text())
        self.client_key = network.client_key
        # no PyPI in a namespace: uv installs from its cache at once instead of waiting
        # on an index it cannot reach (a cluster's bare default env installs Ray)
        self.extra_config.append("SetEnv UV_OFFLINE=1")

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace]

    def __repr__(self) -> str:
        return f"TestHost({self.name!r}, {self.address}, netns={self.namespace})"

    # -- keys (known_hosts name is ADDR on port 22, [ADDR]:PORT otherwise) -------------

    def known_hosts_line(self) -> str:
        key_type, blob = self.host_key.with_name("host_key.pub").read_text().split()[:2]
        where = (self.address if self._listen_port == 22
                 else f"[{self.address}]:{self._listen_port}")
        return f"{where} {key_type} {blob}\n"

    def _host_key_changed(self) -> None:
        super()._host_key_changed()
        if self in self.network.hosts:
            self.network.write_known_hosts()

    # -- sshd inside the namespace ----------------------------------------------------

    def start(self) -> TestHost:
        if self._proc is not None:
            return self
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
        self._write_config()
        check = subprocess.run([SSHD, "-t", "-f", str(self.config)], capture_output=True,
                               text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"sshd rejects {self.config}: {check.stderr.strip()}")
        self._proc = subprocess.Popen(
            [*self.exec_prefix, SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._wait_ready()  # a TCP connect from the root namespace that gets the banner
        return self

    # stop() (inherited): stops sshd and the sessions it forked; start() brings it back.

    # -- commands in the namespace ----------------------------------------------------

    def run(self, argv: Sequence[str], *, timeout: float = 60.0, check: bool = False,
            input: str | None = None, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the namespace (as root, directly: not over SSH), text output."""
        return subprocess.run([*self.exec_prefix, *argv], capture_output=True, text=True,
                              timeout=timeout, check=check, env=env,
                              input=input if input is not None else "")

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start argv in the background inside the namespace (Popen keyword arguments
        pass through); it is killed and reaped by kill_all()/close()."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen([*self.exec_prefix, *argv], **kwargs)
        self._children.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Every process running in this host's namespace."""
        return namespace_pids(self.namespace)

    def kill_all(self, timeout: float = KILL_TIMEOUT) -> None:
        """SIGKILL every process in the namespace (sshd, sessions, whatever they
        started, popen() children), as pulling the plug would; start() brings sshd
        back."""
        self.stop()
        left = kill_namespace(self.namespace, timeout)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=timeout)
        self._children.clear()
        if left:
            raise RuntimeError(f"processes {left} in {self.namespace} survived SIGKILL")

    def set_link(self, up: bool) -> None:
        """Cut (False) or restore (True) this host's cable to the bridge."""
        _ip("link", "set", self.veth, "up" if up else "down")

    # -- teardown -----------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process of the host, delete its veth and namespace, and its folder."""
        errors: list[str] = []
        try:
            self.stop()
        except Exception as exc:  # noqa: BLE001 - keep tearing down
            errors.append(f"stopping sshd in {self.namespace}: {exc}")
        errors += _teardown_host(self.namespace, self.veth, self.root, self._children)
        if errors:
            raise RuntimeError("; ".join(errors))


# -- networks -------------------------------------------------------------------------

_OPEN: list[TestNetwork] = []
_OPEN_LOCK = threading.Lock()


class TestNetwork:
    """A bridge 10.250.X.254/24 in the root namespace; add_host() plugs in hosts."""

    __test__ = False  # a helper, not a pytest test class

    def __init__(self) -> None:
        reason = netns_available()
        if reason is not None:
            raise RuntimeError(f"network namespaces are not available: {reason}")
        ensure_sshd_installed()
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self.hosts: list[TestHost] = []
        self.closed = False
        self.root = Path(tempfile.mkdtemp(prefix="rhplan-netns-"))
        self.client_key = str(self.root / "client_key")
        self.known_hosts = str(self.root / "known_hosts")
        self.bridge = ""
        self.subnet = ""
        self.bridge_address = ""
        cleanup_stale()
        try:
            _keygen(Path(self.client_key), "rhplan-test-client")
            Path(self.known_hosts).write_text("")
            self._make_bridge()
        except BaseException:
            self.close()
            raise
        with _OPEN_LOCK:
            _OPEN.append(self)

    def _make_bridge(self) -> None:
        with _locked():
            third = self._free_subnet()
            for _ in range(20):
                name = f"rhbr{secrets.token_hex(2)}"
                if _link_exists(name):
                    continue
                _mark(name, "bridge", dir=str(self.root))
                proc = _ip("link", "add", name, "type", "bridge", check=False)
                if proc.returncode == 0:
                    break
                _unmark(name)
                if "File exists" not in proc.stderr:
                    raise RuntimeError(f"cannot create a bridge: {proc.stderr.strip()}")
            else:
                raise RuntimeError("no free bridge name after 20 tries")
            self.bridge = name
            self.subnet = f"{SUBNET_BASE}.{third}.0/24"
            self.bridge_address = f"{SUBNET_BASE}.{third}.{BRIDGE_HOST}"
            _ip("addr", "add", f"{self.bridge_address}/24", "dev", name)
        conf = f"/proc/sys/net/ipv4/conf/{name}/forwarding"
        _write_sysctl(conf, "0")  # hosts reach the root namespace, never beyond it
        with contextlib.suppress(OSError):
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
        _ip("link", "set", name, "up")

    @staticmethod
    def _free_subnet() -> int:
        """A third octet X such that 10.250.X.0/24 overlaps no address or route here."""
        used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
            m = re.search(r"\binet (\S+)", line)
            if m:
                used.append(ipaddress.ip_interface(m.group(1)).network)
        for line in _ip("-o", "-4", "route", "show", "table", "all").stdout.splitlines():
            dst = line.split()[0] if line.split() else ""
            if dst in ("default", "broadcast", "local", "unreachable", "prohibit",
                       "blackhole", "throw", "multicast", "nat", "anycast", "unicast"):
                dst = line.split()[1] if len(line.split()) > 1 else ""
            with contextlib.suppress(ValueError):
                net = ipaddress.ip_network(dst, strict=False)
                if net.prefixlen > 0:  # a default route covers everything: ignore it
                    used.append(net)
        candidates = list(range(256))
        random.shuffle(candidates)
        for third in candidates:
            net = ipaddress.ip_network(f"{SUBNET_BASE}.{third}.0/24")
            if not any(net.overlaps(u) for u in used):
                return third
        raise RuntimeError(f"no free /24 left in {SUBNET_BASE}.0.0/16")

    def add_host(self, name: str = "") -> TestHost:
        """A new namespace on this network, with its sshd up and answering."""
        with self._lock:
            if self.closed:
                raise RuntimeError("this TestNetwork is closed")
            index = len(self.hosts) + 1
            if index >= BRIDGE_HOST:
                raise RuntimeError("a test network holds at most 253 hosts")
            tag = secrets.token_hex(4)
            namespace, veth = f"rh{tag}", f"rhv{tag}"
            address = self.subnet.rsplit(".", 1)[0] + f".{index}"
            host_root = self.root / f"host{index}-{name or 'h'}"
            host_root.mkdir()
            _mark(namespace, "netns")
            _mark(veth, "veth")
            try:
                _ip("netns", "add", namespace)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0",
                    "netns", namespace)
                with contextlib.suppress(OSError):
                    _write_sysctl(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6", "1")
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", namespace, "link", "set", "lo", "up")
                _ip("-n", namespace, "link", "set", "eth0", "up")
                _ip("-n", namespace, "route", "add", "default", "via", self.bridge_address)
                host = TestHost(self, name or f"host{index}", namespace, address, veth,
                                host_root)
                self.hosts.append(host)
                host.start()
            except BaseException:
                if self.hosts and self.hosts[-1].namespace == namespace:
                    with contextlib.suppress(Exception):
                        self.hosts.pop().close()
                else:
                    _teardown_host(namespace, veth, host_root, [])
                raise
            self.write_known_hosts()
            return host

    def write_known_hosts(self) -> None:
        """Rewrite the network's known_hosts: one line per host."""
        Path(self.known_hosts).write_text("".join(h.known_hosts_line() for h in self.hosts))

    @property
    def addresses(self) -> list[str]:
        return [h.address for h in self.hosts]

    def close(self) -> None:
        """Kill every process in every host, delete namespaces, veths, the bridge and the
        temp folder. Safe to call twice; raises RuntimeError if something could not be
        removed (after trying everything)."""
        if os.getpid() != self._owner:
            return  # a forked child must not tear down its parent's network
        with self._lock:
            if self.closed:
                return
            self.closed = True
            hosts, self.hosts = self.hosts, []
        errors: list[str] = []
        for host in hosts:
            try:
                host.close()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                errors.append(f"{host.namespace}: {exc}")
        shutil.rmtree(self.root, ignore_errors=True)
        if self.bridge:
            err = _delete_link(self.bridge)
            if err is not None:
                errors.append(err)
            else:
                _unmark(self.bridge)
        with _OPEN_LOCK:
            if self in _OPEN:
                _OPEN.remove(self)
        if errors:
            raise RuntimeError("TestNetwork cleanup incomplete: " + "; ".join(errors))

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TestNetwork({self.bridge}, {self.subnet}, hosts={self.hosts})"


@atexit.register
def _close_all() -> None:
    with _OPEN_LOCK:
        networks = list(_OPEN)
    for net in networks:
        with contextlib.suppress(Exception):
            net.close()
