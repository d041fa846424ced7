"""Faults at the boundaries: EC2 answers that are slow, wrong or lost, and SSH
connections that are reset or hang in the middle of a command.

For every fault the same contract is checked, against real parts only:
  1. the command ends within a bound (no wait is unbounded);
  2. it completes, or fails with one `Error: ADDRESS: ...` line per failed resource,
     exit code 1 and no traceback;
  3. the state is true to what happened: every recorded cluster's instances are the
     live ones EC2 (moto) has under the state's lineage tag and that cluster's address,
     and nothing unrecorded is left running; on a host, a resource is recorded only if
     it was finished;
  4. with the fault gone, one more apply finishes the job and a plan says no changes.

EC2: a real moto server process behind tests/support/faulty_http.py, two clusters per
configuration, the fault aimed at one operation in the middle of the apply. moto's
instances have no sshd, so these runs use the test provider aws_launch_only
(tests/plugins: the aws provider launches, tags and terminates, and never SSHes);
tests/test_aws_provider.py runs the whole chain. moto ignores ClientToken, so
the proxy answers a repeated token as EC2 does (see faulty_http.py).

SSH: a real sshd on 127.0.0.1 behind tests/support/faulty_tcp.py (the cluster's ssh port is
the proxy's), with keepalives every second (RHPLAN_SSH_ALIVE_INTERVAL=1, three missed
= dead) so a hang is detected in seconds. The fault is triggered when a setup command
of an env is known to be running on the host (it made its `started` file).

Figures: `RELIABILITY:` lines (pytest -s); the total at the end of the module.
"""
from __future__ import annotations

import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aws_cluster import leftovers, x86_image
from conftest import poll_until
from faulty_http import FORWARD, SERVER_ERROR, THROTTLE, FaultyProxy, Rule
from faulty_tcp import FaultyTCP
from motoserver import MotoServer, aws_env
from rayprocs import temp_dir_for
from ssh_cluster import (
    APPLY_TIMEOUT,
    cluster_hcl,
    destroy_and_check,
    hcl_str,
    provision_ray_venv,
    ssh_block,
)
from sshd import SSHServer, ensure_sshd_installed

pytest.importorskip("paramiko")

# A faulted command must end within this (the retry budget below is ~10 s of waiting)
FAULT_BOUND = 60.0
# A hung SSH connection is declared dead after 1 s x 3 missed keepalives
SSH_ALIVE = {"RHPLAN_SSH_ALIVE_INTERVAL": "1", "RHPLAN_SSH_ALIVE_COUNT_MAX": "3",
             "RHPLAN_SSH_CONNECT_TIMEOUT": "3"}
HANG_BOUND = 30.0  # from the hang to the failed apply's exit: 3 s + reconnects of 3 s


@dataclass
class Tally:
    """Fault cases run and survived in this module, printed at its end."""

    survived: list[str] = field(default_factory=list)
    run: list[str] = field(default_factory=list)

    def start(self, kind: str) -> None:
        self.run.append(kind)

    def ok(self, kind: str, detail: str) -> None:
        self.survived.append(kind)
        print(f"\nRELIABILITY: faults: {kind}: survived ({detail})")


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    t = Tally()
    yield t
    if t.run:
        print(f"\nRELIABILITY: faults survived={len(t.survived)} of {len(t.run)}"
              f" ({', '.join(k for k in t.run if k not in t.survived) or 'all'}"
              f"{' failed' if len(t.survived) < len(t.run) else ''})")


def error_lines(res: Any) -> list[str]:
    return [ln for ln in res.stdout.splitlines() if ln.startswith("Error: ")]


def check_outcome(res: Any, addresses: tuple[str, ...]) -> str:
    """Completed, or failed with one error line per failed resource (each naming it).
    Returns 'completed' or 'failed: ADDR, ...'."""
    assert "Traceback" not in res.output, res.describe()
    assert res.returncode in (0, 1), res.describe()
    if res.returncode == 0:
        assert not error_lines(res), res.describe()
        return "completed"
    errors = error_lines(res)
    if not errors:  # refused before any resource was touched (e.g. the refresh failed)
        return f"failed before applying: {res.error_line()}"
    failed = []
    for line in errors:
        addr = line[len("Error: "):].split(": ", 1)[0]
        assert addr in addresses, (line, res.describe())
        failed.append(addr)
    assert len(failed) == len(set(failed)), f"two error lines for one resource:\n{errors}"
    return "failed: " + ", ".join(sorted(failed))


# =====================================================================================
# EC2 behind a fault proxy
# =====================================================================================

CLUSTERS = ("cluster.a", "cluster.b")


@dataclass(frozen=True)
class AwsFault:
    kind: str  # the figure's name
    rules: Callable[[], list[Rule]]
    phase: str = "create"  # the command faulted: create (apply), update (apply), destroy
    expect: str = "either"  # completes | fails | either


AWS_FAULTS = [
    # answers slower than the read timeout (1.5 s): retried, the apply completes
    pytest.param(AwsFault(
        "ec2 slow DescribeInstances (past the read timeout, twice)",
        lambda: [Rule("DescribeInstances", FORWARD, 2, delay=3.0)], expect="completes"),
        marks=pytest.mark.long),
    # made, answer lost, the retry meets it: that cluster fails, the other is applied
    AwsFault("ec2 CreateSecurityGroup answer lost after it was made",
             lambda: [Rule("CreateSecurityGroup", None, 1, after_upstream=True)]),
    # EC2 launched, the answer was lost: the retry carries the same ClientToken
    pytest.param(AwsFault(
        "ec2 RunInstances answer lost after the launch",
        lambda: [Rule("RunInstances", None, 1, after_upstream=True)], expect="completes"),
        marks=pytest.mark.long),
    # steady 500s on the one read everything needs: bounded, nothing leaked
    pytest.param(AwsFault(
        "ec2 DescribeInstances 500 on every call",
        lambda: [Rule("DescribeInstances", SERVER_ERROR, -1)], expect="fails"),
        marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 ImportKeyPair answer lost after it was made",
        lambda: [Rule("ImportKeyPair", None, 1, after_upstream=True)]), marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 AuthorizeSecurityGroupIngress answer lost after it was made",
        lambda: [Rule("AuthorizeSecurityGroupIngress", None, 1, after_upstream=True)]),
        marks=pytest.mark.long),
    # EC2 launched on the first attempt; every answer came too late: the cluster fails
    # and its cleanup terminates what was launched. The next apply launches with the same
    # ClientToken (lineage, address, generation 0 again), and EC2 answers a known token
    # with the instances it launched first, now terminated: stuck until the token expires.
    pytest.param(AwsFault(
        "ec2 RunInstances slower than the read timeout on every attempt",
        lambda: [Rule("RunInstances", FORWARD, -1, delay=3.0, after_upstream=True)]),
        marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 RunInstances throttled 3 times",
        lambda: [Rule("RunInstances", THROTTLE, 3)], expect="completes"),
        marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 DescribeImages connection dropped on every call",
        lambda: [Rule("DescribeImages", None, -1)], expect="fails"), marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 CreateTags 500 on every call during a tag update",
        lambda: [Rule("CreateTags", SERVER_ERROR, -1)], phase="update", expect="fails"),
        marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 CreateTags answer lost after tagging, during a tag update",
        lambda: [Rule("CreateTags", None, 1, after_upstream=True)], phase="update"),
        marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 TerminateInstances connection dropped during destroy",
        lambda: [Rule("TerminateInstances", None, -1)], phase="destroy", expect="fails"),
        marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 TerminateInstances answer lost after terminating, during destroy",
        lambda: [Rule("TerminateInstances", None, 1, after_upstream=True)], phase="destroy"),
        marks=pytest.mark.long),
    pytest.param(AwsFault(
        "ec2 DescribeInstances slower than the read timeout on every call",
        lambda: [Rule("DescribeInstances", FORWARD, -1, delay=3.0)], expect="fails"),
        marks=pytest.mark.long),
]


@pytest.fixture(scope="module")
def ec2_proxy(moto: MotoServer) -> Iterator[FaultyProxy]:
    moto.client("ec2").describe_instances()  # moto sets EC2 up on its first call (~2 s)
    proxy = FaultyProxy(moto.url, client_tokens=True).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("fault-key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, capture_output=True, timeout=30)
    return key


def two_clusters_hcl(url: str, ami: str, key: Path, tag: str = "ml") -> str:
    out = textwrap.dedent(f"""
        provider "aws" {{
          region       = "us-east-1"
          endpoint_url = {hcl_str(url)}
        }}
    """)
    for name in ("a", "b"):
        out += textwrap.dedent(f"""
            cluster "{name}" {{
              provider      = "aws_launch_only"
              instance_type = "c5.large"
              num_instances = 2
              image_id      = {hcl_str(ami)}
              tags          = {{ team = "{tag if name == 'a' else 'ml'}" }}
              allowed_cidrs = ["198.51.100.0/24"]
              ssh {{
                user           = "ubuntu"
                private_key    = {hcl_str(str(key))}
                host_key_check = "trust_on_first_use"  # moto's console shows no keys
              }}
            }}
        """)
    return out


def live_by_address(moto: MotoServer, lineage: str) -> dict[str, list[str]]:
    """Instances EC2 has running (or starting) under the lineage, by their address tag."""
    out: dict[str, list[str]] = {}
    pages = moto.client("ec2").get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:rhplan:lineage", "Values": [lineage]}])
    for page in pages:
        for r in page["Reservations"]:
            for inst in r["Instances"]:
                if inst["State"]["Name"] in ("terminated", "shutting-down"):
                    continue
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags") or []}
                out.setdefault(tags.get("rhplan:address", "?"), []).append(inst["InstanceId"])
    return out


def state_is_true(rh: Any, moto: MotoServer) -> None:
    """Every recorded cluster's instances are exactly the live ones EC2 has for it, and
    no unrecorded cluster has live instances."""
    if not rh.state_path.exists():
        return
    state = rh.state()
    live = live_by_address(moto, state["lineage"])
    recorded = {r["address"]: r["attributes"].get("instance_ids") or []
                for r in state["resources"]}
    for addr in set(live) | set(recorded):
        assert sorted(live.get(addr, [])) == sorted(recorded.get(addr, [])), (
            f"{addr}: state records {recorded.get(addr)}, EC2 has {live.get(addr)}")


@pytest.mark.parametrize("fault", AWS_FAULTS, ids=lambda f: f.kind.replace(" ", "-"))
def test_ec2_fault(fault: AwsFault, moto: MotoServer, ec2_proxy: FaultyProxy, key_file: Path,
                   tmp_path: Path, rhplan_in: Any, tally: Tally) -> None:
    tally.start(fault.kind)
    rh = rhplan_in(tmp_path / "infra", env={
        **aws_env(), "RHPLAN_AWS_READ_TIMEOUT": "1.5",
        "RHPLAN_AWS_MAX_ATTEMPTS": "3", "RHPLAN_AWS_WAIT_SECONDS": "30"})
    rh.keep = True  # destroyed and checked below
    ami = x86_image(moto)
    rh.write(two_clusters_hcl(ec2_proxy.url, ami, key_file))
    ec2_proxy.rules[:] = []
    try:
        if fault.phase != "create":
            rh("apply", "-auto-approve").ok()
        if fault.phase == "update":
            rh.write(two_clusters_hcl(ec2_proxy.url, ami, key_file, tag="ml2"))
        command = ("destroy" if fault.phase == "destroy" else "apply", "-auto-approve")
        rules = fault.rules()
        ec2_proxy.rules[:] = rules
        t0 = time.monotonic()
        res = rh(*command, timeout=FAULT_BOUND + 30)
        took = time.monotonic() - t0
        ec2_proxy.rules[:] = []
        assert took < FAULT_BOUND, f"{fault.kind}: took {took:.1f} s\n{res.describe()}"
        assert all(r.hits for r in rules), f"the fault never fired: {rules}"
        outcome = check_outcome(res, CLUSTERS)
        if fault.expect != "either":
            assert outcome.startswith({"completes": "completed", "fails": "failed"}[
                fault.expect]), f"{fault.kind}: {outcome}\n{res.describe()}"
        state_is_true(rh, moto)
        # the fault is gone: one more run finishes the job
        if fault.phase == "destroy":
            rh("destroy", "-auto-approve").ok()
            assert not rh.resources()
        else:
            rh("apply", "-auto-approve").ok()
            plan = rh("plan", "-detailed-exitcode")
            assert plan.returncode == 0 and "No changes." in plan.stdout, plan.describe()
            assert set(rh.resources()) == set(CLUSTERS)
            state_is_true(rh, moto)
            live = live_by_address(moto, rh.state()["lineage"])
            assert all(len(live[a]) == 2 for a in CLUSTERS), live
        tally.ok(fault.kind, f"{outcome} in {took:.1f} s, fault fired "
                             f"{sum(r.hits for r in rules)}x, second run finished")
    finally:
        ec2_proxy.rules[:] = []
        lineage = rh.state()["lineage"] if rh.state_path.exists() else ""
        if rh.resources():
            rh("destroy", "-auto-approve").ok()
        if lineage:
            assert leftovers(moto, lineage) == []


# =====================================================================================
# SSH behind a fault proxy
# =====================================================================================

@dataclass
class Host:
    server: SSHServer
    proxy: FaultyTCP
    rh: Any
    root: Path

    @property
    def where(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Host]:
    """One ssh cluster reached through the fault proxy, applied once; each test adds an
    env to it and faults the connection while that env is being built."""
    ensure_sshd_installed()
    base = tmp_path_factory.mktemp("ssh-faults")
    root = base / "root"
    provision_ray_venv(root)  # Ray and uv, as rhplan's own bootstrap leaves a host
    with SSHServer(base / "sshd") as server:
        proxy = FaultyTCP(server.port).start()
        rh = rhplan_in(base / "infra", env=SSH_ALIVE)
        rh.keep = True  # destroyed and checked below
        # each test adds an env and takes it away again: no bare env to churn meanwhile
        rh.write(cluster_hcl("box", ["127.0.0.1"], root, ssh_block(server, port=proxy.port),
                             bare_env=False))
        h = Host(server, proxy, rh, root)
        try:
            rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
            yield h
        finally:
            proxy.heal()
            rh.release_all()
            destroy_and_check(rh, root, [temp_dir_for(str(root))])
            proxy.stop()


def env_hcl(name: str, setup: Sequence[str] = (), reqs: Sequence[str] = ()) -> str:
    def items(xs: Sequence[str]) -> str:
        return "[" + ", ".join(hcl_str(x) for x in xs) + "]"
    return (f'\nenv "{name}" {{\n  cluster    = cluster.box\n  setup_cmds = {items(setup)}\n'
            f"  reqs       = {items(reqs)}\n}}\n")


def fault_mid_env_build(h: Host, name: str, fault: Callable[[], None],
                        then: Sequence[str] = ()) -> tuple[Any, float]:
    """Add env NAME whose first setup command blocks (then runs `then`); once it runs on
    the host, apply the fault; return the apply's result and how long it took after
    the fault."""
    blocker, release, started = h.rh.blocker(name)
    h.rh.write(h.rh.dir.joinpath("main.hcl").read_text() + env_hcl(name, [blocker, *then]))
    cluster_before = h.rh.resources()["cluster.box"]
    bg = h.rh.start("apply", "-auto-approve", log_name=name)
    poll_until(lambda: started.exists() or not bg.running(), APPLY_TIMEOUT,
               f"setup command of env.{name} to start on the host")
    assert bg.running(), bg.text()
    fault()
    t0 = time.monotonic()
    res = bg.finish(timeout=HANG_BOUND + 30)
    took = time.monotonic() - t0
    release.touch()  # the blocked command on the host ends
    assert took < HANG_BOUND, f"the apply took {took:.1f} s after the fault:\n{res.stdout}"
    assert res.returncode == 1 and "Traceback" not in res.stdout, res.stdout
    # the state is true: the cluster as it was, the unfinished env not recorded
    assert h.rh.resources()["cluster.box"] == cluster_before
    assert f"env.{name}" not in h.rh.resources()
    return res, took


def finish_and_check(h: Host, name: str) -> float:
    """With the fault gone: one apply builds the env; a plan says no changes."""
    t0 = time.monotonic()
    h.rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    took = time.monotonic() - t0
    assert h.rh.resources()[f"env.{name}"]["attributes"]["servlet"] == "running"
    plan = h.rh("plan", "-detailed-exitcode")
    assert plan.returncode == 0 and "No changes." in plan.stdout, plan.describe()
    return took


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_ssh_reset_mid_command(host: Host, tally: Tally) -> None:
    kind = "ssh connection reset during an env's setup command"
    tally.start(kind)
    resets = host.proxy.resets
    # its second command outlives the dead-peer limit (3 s): keepalives are answered
    # while a command runs, so the second apply must not cut it
    res, took = fault_mid_env_build(host, "reset_env", host.proxy.reset_now, ["sleep 5"])
    errors = error_lines(res)
    assert len(errors) == 1, res.stdout
    # paramiko names the reset, or has closed the transport before it says why
    assert any(errors[0].startswith(
        f"Error: env.reset_env: lost the SSH connection to {host.where} while running "
        f"'python -I ...' ({why})") for why in ("connection reset by peer",
                                                  "the connection was closed or reset")), errors
    assert host.proxy.resets > resets
    second = finish_and_check(host, "reset_env")
    tally.ok(kind, f"failed in one line {took:.1f} s after the reset; second apply "
                   f"{second:.1f} s, its 5 s command not cut by the 3 s dead-peer limit")


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_ssh_hang_mid_command(host: Host, tally: Tally) -> None:
    kind = "ssh connection hung (black hole) during an env's setup command"
    tally.start(kind)
    res, took = fault_mid_env_build(host, "hang_env", host.proxy.hang)
    errors = error_lines(res)
    assert len(errors) == 1, res.stdout
    assert errors[0].startswith(
        f"Error: env.hang_env: lost the SSH connection to {host.where} while running "
        "'python -I ...' (no answer to SSH keepalives for 3 s"), errors
    # still hung: a plan cannot even connect, and says so in one line, in bounded time
    t0 = time.monotonic()
    line = host.rh("plan").error_line()
    plan_took = time.monotonic() - t0
    assert f"cannot reach {host.where}: connected, but no SSH greeting and key exchange " \
        "within 3 s" in line, line
    host.proxy.heal()
    second = finish_and_check(host, "hang_env")
    tally.ok(kind, f"failed in one line {took:.1f} s after the hang; plan while hung "
                   f"failed in {plan_took:.1f} s; second apply {second:.1f} s")


@pytest.mark.long
def test_ssh_reset_at_kill_points_converges(host: Host, tally: Tally) -> None:
    """Kill points: an env build's SSH connection is reset after a given share of the
    bytes a clean build carries to rhplan, wherever in the build that falls (connect,
    venv, installs, files, servlet). Each apply completes (a repeatable step retried on
    a new connection) or fails in one line with the env unrecorded; the next one
    finishes and a plan says no changes."""
    def add_env(name: str) -> None:
        host.rh.write(host.rh.dir.joinpath("main.hcl").read_text()
                      + env_hcl(name, reqs=["pip:six==1.16.0"]))

    first = host.proxy.connections
    add_env("kill_ref")
    host.rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    total = host.proxy.bytes_down(first)[0]  # the apply's one pooled connection
    shares = (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)
    converged = []
    for share in shares:
        kill_at = int(total * share)
        kind = f"ssh reset at {share:.0%} ({kill_at} of {total} bytes) of an env build"
        tally.start(kind)
        name = f"kill_{int(share * 100)}"
        add_env(name)
        cluster_before = host.rh.resources()["cluster.box"]
        resets = host.proxy.resets
        host.proxy.reset_after(kill_at)
        t0 = time.monotonic()
        res = host.rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
        took = time.monotonic() - t0
        host.proxy.heal()
        assert host.proxy.resets == resets + 1, f"{kind}: the apply ended before it"
        outcome = check_outcome(res, (f"env.{name}", "cluster.box"))
        assert host.rh.resources()["cluster.box"] == cluster_before
        if res.returncode == 1:  # true to what happened: the unfinished env not recorded
            assert f"env.{name}" not in host.rh.resources(), res.describe()
        second = finish_and_check(host, name)
        converged.append(kind)
        tally.ok(kind, f"{outcome} in {took:.1f} s; second apply {second:.1f} s")
    print(f"\nRELIABILITY: ssh kill points converged={len(converged)} of {len(shares)} "
          f"(a clean env build carries {total} bytes to rhplan)")


def test_ssh_settings_are_checked(host: Host) -> None:
    """A bad keepalive setting is a one-line error naming the variable, not a crash."""
    line = host.rh("plan", env={"RHPLAN_SSH_ALIVE_INTERVAL": "soon"}).error_line()
    assert "RHPLAN_SSH_ALIVE_INTERVAL='soon' is not a number" in line, line


def test_ssh_reset_during_the_handshake_is_one_line(host: Host, tally: Tally) -> None:
    """A reset while connecting (key exchange) is a one-line error naming the host,
    not click's bare "Aborted." (paramiko raises EOFError there)."""
    kind = "ssh connection reset during the handshake"
    tally.start(kind)
    state = host.rh.state_path.read_bytes()
    host.proxy.reset_after(500)  # the server's banner and key exchange offer are ~1.1 KB
    try:
        line = host.rh("plan").error_line()
    finally:
        host.proxy.heal()
    assert line.startswith("Error: refreshing cluster.box: cannot reach "
                           f"{host.where}: "), line
    assert host.rh.state_path.read_bytes() == state
    assert "No changes." in host.rh("plan").ok().stdout
    tally.ok(kind, f"one-line error ({line[-60:]!r}), state untouched, next plan fine")
