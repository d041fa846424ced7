"""Test hosts in network namespaces (netns.py): reachable over real SSH from the root
namespace, reachable from each other, isolated from the rest, and gone after close().

All traffic stays on this machine: between the root namespace and the test bridge's
10.250.X.0/24, which only the namespaces created here use.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import MARK_DIR, TestHost, TestNetwork, cleanup_stale, netns_available

pytest.importorskip("paramiko")

from rhplan.hosts.ssh import SSHConnection  # noqa: E402 - after the paramiko check

HERE = Path(__file__).resolve().parent / "support"


def _require_netns() -> None:
    reason = netns_available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must be able to create network namespaces: {reason}")
    pytest.skip(f"network namespaces unavailable: {reason}")


@pytest.fixture(scope="module")
def net() -> Iterator[TestNetwork]:
    _require_netns()
    with TestNetwork() as network:
        network.add_host("a")
        network.add_host("b")
        yield network


def ssh_to(host: TestHost, known_hosts: str | None = None) -> SSHConnection:
    return SSHConnection(host.address, port=host.port, user=host.user,
                         private_key=host.client_key,
                         known_hosts=known_hosts or host.known_hosts, connect_timeout=5)


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# A bounded TCP server: binds ADDR:0, prints its port, answers each of `count`
# connections with "hello from ADDR", then exits (or after 20 s without a client).
SERVER = textwrap.dedent("""\
    import socket, sys
    addr, count = sys.argv[1], int(sys.argv[2])
    srv = socket.socket()
    srv.bind((addr, 0))
    srv.listen(8)
    srv.settimeout(20)
    print(srv.getsockname()[1], flush=True)
    for _ in range(count):
        conn, _peer = srv.accept()
        with conn:
            conn.sendall(b"hello from " + addr.encode())
""")

# Connects to HOST PORT and prints the first bytes it gets.
CLIENT = ("import socket, sys; "
          "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); "
          "print(s.recv(64).decode(errors='replace'))")


def test_ssh_into_each_host_shows_its_own_address(net: TestNetwork) -> None:
    a, b = net.hosts
    assert a.address != b.address
    assert a.namespace != b.namespace
    for me, other in ((a, b), (b, a)):
        with ssh_to(me) as conn:
            res = conn.run(["ip", "-o", "-4", "addr"])
        assert res.ok, res
        assert f"inet {me.address}/24" in res.stdout
        assert other.address not in res.stdout
        assert "192.0.2" not in res.stdout and net.bridge_address not in res.stdout
        # The same key works with the network-wide known_hosts (one ssh block, all ips).
        with ssh_to(me, known_hosts=net.known_hosts) as conn:
            assert conn.run(["true"]).ok
            assert conn.fingerprint == me.host_key_fingerprint
    assert a.user == "root" and a.port == 22
    assert a.accepted_logins() >= 2


def test_hosts_reach_each_other_and_root_namespace(net: TestNetwork) -> None:
    a, b = net.hosts
    res = a.run([sys.executable, "-c", CLIENT, b.address, str(b.port)], timeout=20)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("SSH-2.0-"), res.stdout
    # Each namespace has its own loopback: nothing listens on 127.0.0.1:22 in B...
    res = b.run([sys.executable, "-c", CLIENT, "127.0.0.1", str(b.port)], timeout=20)
    assert res.returncode != 0 and "ConnectionRefused" in res.stderr
    # ...and it routes only via the bridge, which forwards nothing further.
    route = a.run(["ip", "-4", "route"]).stdout
    assert f"default via {net.bridge_address} dev eth0" in route
    forwarding = Path(f"/proc/sys/net/ipv4/conf/{net.bridge}/forwarding").read_text()
    assert forwarding.strip() == "0"


def test_server_in_one_host_reachable_from_other_host_and_root(net: TestNetwork) -> None:
    a, b = net.hosts
    server = a.popen([sys.executable, "-c", SERVER, a.address, "2"],
                     stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        assert server.pid in a.pids() and server.pid not in b.pids()
        res = b.run([sys.executable, "-c", CLIENT, a.address, str(port)], timeout=20)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == f"hello from {a.address}"
        with socket.create_connection((a.address, port), timeout=5) as s:
            assert s.recv(64) == f"hello from {a.address}".encode()
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


def test_close_removes_every_namespace_link_process_and_folder() -> None:
    _require_netns()
    net = TestNetwork()
    try:
        hosts = [net.add_host("x"), net.add_host("y")]
        # A process started over SSH that outlives its session (as a Ray node does)...
        with ssh_to(hosts[0]) as conn:
            res = conn.run(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & "
                                        "echo $!"])
        assert res.ok, res
        orphan = int(res.stdout)
        # ...and one started directly in the namespace.
        child = hosts[1].popen(["sleep", "300"])
        pids = {pid for h in hosts for pid in h.pids()}
        assert orphan in pids and child.pid in pids
        created = {net.bridge, *(h.veth for h in hosts)}
        namespaces = {h.namespace for h in hosts}
        assert created <= _links() and namespaces <= _namespaces()
        assert all((MARK_DIR / n).exists() for n in created | namespaces)
        folder = net.root
    finally:
        t0 = time.monotonic()
        net.close()
        took = time.monotonic() - t0
    assert took < 5, f"close() took {took:.1f} s"
    assert child.poll() is not None  # killed and reaped
    assert not [p for p in pids if _running(p)]
    # Only our own names are checked: other test runs may add theirs meanwhile.
    assert not (created & _links())
    assert not (namespaces & _namespaces())
    assert not any((MARK_DIR / n).exists() for n in created | namespaces)
    assert not folder.exists()
    net.close()  # twice is fine


def test_cleanup_stale_removes_what_a_crashed_run_left(net: TestNetwork) -> None:
    # A run that dies without close() or atexit (os._exit, as a SIGKILL would).
    crash = textwrap.dedent("""\
        import json, os, sys
        sys.path.insert(0, sys.argv[1])
        from netns import TestNetwork
        net = TestNetwork()
        h = net.add_host("crash")
        print(json.dumps({"bridge": net.bridge, "veth": h.veth, "ns": h.namespace,
                          "root": str(net.root), "pids": h.pids()}), flush=True)
        os._exit(0)
    """)
    proc = subprocess.run([sys.executable, "-c", crash, str(HERE)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    left = json.loads(proc.stdout)
    assert left["ns"] in _namespaces() and {left["bridge"], left["veth"]} <= _links()
    assert any(_running(p) for p in left["pids"])  # its sshd outlived it

    removed = cleanup_stale()

    # (Checked by absence: a concurrent test run's own sweep may have taken them first.)
    assert left["ns"] not in _namespaces()
    assert not ({left["bridge"], left["veth"]} & _links())
    assert not [p for p in left["pids"] if _running(p)]
    assert not Path(left["root"]).exists()
    # The live network of this process was left alone.
    assert net.bridge not in removed and net.bridge in _links()
    assert {h.namespace for h in net.hosts} <= _namespaces()
    with ssh_to(net.hosts[0]) as conn:
        assert conn.run(["true"]).ok
