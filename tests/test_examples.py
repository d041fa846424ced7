"""The examples as their READMEs walk them, with the real helper scripts.

examples/static/local_sshd.py and examples/aws/local_moto.py start real servers (sshd,
moto) and must leave nothing behind on any stop signal; the static and aws walk-throughs
run their README commands (apply, call, destroy) on a copy of examples/, so a user's own
runs in the checkout are never touched. In the aws dry run every "instance" is reached
through local_moto.py's proxy command: nothing connects to moto's made-up addresses.
"""
from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Rhplan, poll_until
from motoserver import aws_env
from rayprocs import alive, cluster_processes, temp_dir_for
from sshd import _descendants, ensure_sshd_installed

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
LOCAL_SSHD = EXAMPLES / "static" / "local_sshd.py"
LOCAL_MOTO = EXAMPLES / "aws" / "local_moto.py"
HELPER_TIMEOUT = 60.0
APPLY_TIMEOUT = 600.0  # a first apply installs Ray into the host's venv (uv, cached)


@pytest.fixture(scope="module", autouse=True)
def _sshd() -> None:
    ensure_sshd_installed()


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of examples/ (what the walk-throughs write stays in the test's folder)."""
    dst = tmp_path / "examples"
    shutil.copytree(EXAMPLES, dst, ignore=shutil.ignore_patterns(
        ".rhplan", "*.state.json*", "*.json", "*.pid", "__pycache__", "*.egg-info",
        "local_*.py"))
    return dst


def helper(script: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=HELPER_TIMEOUT, env=env, check=False)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def listeners(port: int) -> list[str]:
    """The command lines of the processes listening on TCP port (any address). After a
    server stops, another test may take its port at once: tests check who listens."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                             .decode(errors="replace"))
        except OSError:
            continue
    return found


def still_served(port: int, marker: str) -> list[str]:
    """Listeners on port whose command line carries marker (ours, not a newcomer's)."""
    return [c for c in listeners(port) if marker in c]


def gone(pids: list[int]) -> list[int]:
    """The pids of the list still alive (empty: all gone)."""
    return [p for p in pids if alive(p)]


def pid_of(var_file: Path) -> int:
    return int(var_file.with_suffix(".pid").read_text())


# --- local_sshd.py: every way it is stopped leaves nothing ---------------------------------

@pytest.mark.parametrize("signame, ignored_at_start", [
    ("SIGTERM", False), ("SIGINT", False), ("SIGHUP", False),
    # `cmd &` in a script starts cmd with SIGINT ignored; Ctrl-C must still stop it
    ("SIGINT", True),
])
def test_local_sshd_stops_sshd_and_removes_its_files_on_a_signal(
        tmp_path: Path, signame: str, ignored_at_start: bool) -> None:
    var_file = tmp_path / "host.json"

    def ignore_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen(
        [sys.executable, str(LOCAL_SSHD), "--var-file", str(var_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=ignore_sigint if ignored_at_start else None)
    try:
        poll_until(lambda: var_file.exists() or proc.poll() is not None, HELPER_TIMEOUT,
                   "local_sshd.py to write its var file")
        assert proc.poll() is None, proc.communicate()[0]
        values = json.loads(var_file.read_text())
        key_dir = Path(values["private_key"]).parent
        assert port_open(values["port"]) and key_dir.is_dir()
        assert still_served(values["port"], str(key_dir))  # the check below can see it
        # a connection makes sshd fork a session: it must go too
        with socket.create_connection(("127.0.0.1", values["port"]), timeout=5) as s:
            assert s.recv(64).startswith(b"SSH-2.0-")
            children = poll_until(lambda: len(_descendants(proc.pid)) >= 2 and
                                  _descendants(proc.pid), 30, "sshd to fork a session")
            proc.send_signal(getattr(signal, signame))
            out = proc.communicate(timeout=HELPER_TIMEOUT)[0].decode()
        expected = 0 if signame == "SIGINT" else 128 + getattr(signal, signame)
        assert proc.returncode == expected, out
        assert not gone(children), f"outlived {signame}: {gone(children)}\n{out}"
        assert not still_served(values["port"], str(key_dir))
        assert not key_dir.exists(), f"{key_dir} (private key) is left"
        assert not var_file.exists() and not var_file.with_suffix(".pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_local_sshd_background_returns_once_ready_and_stop_cleans_up(tmp_path: Path) -> None:
    var_file = tmp_path / "host.json"
    res = helper(LOCAL_SSHD, "--background", "--var-file", str(var_file))
    try:
        assert res.returncode == 0 and "sshd on 127.0.0.1:" in res.stdout, res
        assert "--stop" in res.stdout, res.stdout
        pid = pid_of(var_file)
        values = json.loads(var_file.read_text())
        # ready when it returns: no wait needed before the next command
        assert port_open(values["port"])
        assert os.getsid(pid) == pid  # its own session: closing the terminal does not matter
        children = _descendants(pid)
        again = helper(LOCAL_SSHD, "--background", "--var-file", str(var_file))
        assert again.returncode == 0 and f"already running (pid {pid})" in again.stdout, again
        stop = helper(LOCAL_SSHD, "--stop", "--var-file", str(var_file))
        assert stop.returncode == 0 and f"stopped pid {pid}" in stop.stdout, stop
        assert not gone([pid, *children])
        assert not still_served(values["port"], str(Path(values["private_key"]).parent))
        assert not Path(values["private_key"]).parent.exists()
        assert not var_file.exists()
        assert "nothing is running" in helper(LOCAL_SSHD, "--stop", "--var-file",
                                              str(var_file)).stdout
    finally:
        helper(LOCAL_SSHD, "--stop", "--force", "--var-file", str(var_file))


def test_local_sshd_root_dir_differs_per_checkout_and_names_the_user(tmp_path: Path) -> None:
    roots = []
    for name in ("alice-clone", "bob-clone"):
        var_file = tmp_path / name / "host.json"
        var_file.parent.mkdir()
        try:
            assert helper(LOCAL_SSHD, "--background", "--var-file", str(var_file)).returncode == 0
            roots.append(json.loads(var_file.read_text())["root_dir"])
        finally:
            helper(LOCAL_SSHD, "--stop", "--force", "--var-file", str(var_file))
    assert roots[0] != roots[1], roots
    for root in roots:
        assert root.startswith(f"{Path.home()}/.rhplan/clusters/onprem-{getpass.getuser()}-")


def test_a_missing_variable_names_var_file(examples: Path) -> None:
    line = Rhplan(examples / "static")("plan").error_line()
    assert "main.hcl:" in line and "variable 'ips' has no value" in line, line
    for hint in ("-var ips=", "-var-file=", "RHPLAN_VAR_ips"):
        assert hint in line, line


def test_the_examples_are_in_fmt_layout() -> None:
    """Users copy the examples: they are in `rhplan fmt`'s canonical layout (as a CI job
    running `rhplan fmt -check -recursive` on an infra repo would require)."""
    r = Rhplan(EXAMPLES)("fmt", "-check", "-recursive")
    assert r.returncode == 0, r.describe()


# --- the static walk-through: README's commands, destroy included --------------------------

@pytest.mark.long  # ~1-2 min: the host's Ray venv is built from scratch (venv, uv, Ray)
def test_static_walkthrough_applies_runs_and_destroys(examples: Path) -> None:
    static = examples / "static"
    var_file = static / "host.json"
    rh = Rhplan(static)
    res = helper(LOCAL_SSHD, "--background", "--var-file", str(var_file))
    assert res.returncode == 0, res
    root = json.loads(var_file.read_text())["root_dir"]
    try:
        rh("apply", "-var-file=host.json", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
        assert rh.resources()["cluster.onprem"]["attributes"]["root_dir"] == root
        out = rh("run", "remote", "--", "python", "-c",
                 "import os, greet; print(greet.hello(os.environ['WHERE']))").ok().stdout
        assert "hello, onprem" in out, out
        assert "alive" in rh("status").ok().stdout
        assert rh("plan", "-var-file=host.json", "-detailed-exitcode").returncode == 0
        refused = helper(LOCAL_SSHD, "--stop", "--var-file", str(var_file))
        assert refused.returncode == 1 and "destroy -var-file=host.json" in refused.stderr, \
            refused
        temps = [temp_dir_for(root), temp_dir_for(f"{root}@127.0.0.1")]
        rh("destroy", "-var-file=host.json", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
        assert not rh.resources()
        poll_until(lambda: not cluster_processes(temps, Path(root)), 30,
                   "the cluster's Ray processes to end")
    finally:
        if rh.resources():
            rh("destroy", "-var-file=host.json", "-auto-approve", timeout=APPLY_TIMEOUT)
        assert helper(LOCAL_SSHD, "--stop", "--var-file", str(var_file)).returncode == 0


# --- the aws dry run: moto + local sshd, reached only through proxy_command ---------------

@pytest.fixture
def dry_run(examples: Path) -> Iterator[dict[str, Any]]:
    var_file = examples / "aws" / "moto.json"
    res = helper(LOCAL_MOTO, "--background", "--var-file", str(var_file), env=aws_env())
    assert res.returncode == 0 and "moto on http://127.0.0.1:" in res.stdout, res
    values = json.loads(var_file.read_text())
    values["pid"] = pid_of(var_file)
    try:
        yield values
    finally:
        stop = helper(LOCAL_MOTO, "--stop", "--force", "--var-file", str(var_file))
        assert stop.returncode == 0, stop
        assert not Path(values["root_dir"]).parent.exists()
        assert not alive(values["pid"])


def owned_in_moto(endpoint: str, lineage: str) -> list[str]:
    """What the run made in moto that still exists (instances not terminated, its
    security group, its key pair)."""
    import boto3
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    left = [f"instance {i['InstanceId']}" for r in ec2.describe_instances(Filters=[
        {"Name": "tag:rhplan:lineage", "Values": [lineage]}])["Reservations"]
        for i in r["Instances"] if i["State"]["Name"] != "terminated"]
    left += [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]
             if g["GroupName"].startswith(f"rhplan-{lineage[:8]}")]
    left += [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]
             if k["KeyName"].startswith(f"rhplan-{lineage[:8]}")]
    return left


def test_local_moto_var_file_plans_and_a_signal_stops_both_servers(examples: Path) -> None:
    """The default run's share of the dry run: the var file fits main.hcl, and SIGTERM
    stops moto and sshd and removes the temp folder (keys, the hosts' root_dir)."""
    var_file = examples / "aws" / "moto.json"
    proc = subprocess.Popen([sys.executable, str(LOCAL_MOTO), "--var-file", str(var_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=aws_env(), start_new_session=True)
    try:
        poll_until(lambda: var_file.exists() or proc.poll() is not None, HELPER_TIMEOUT,
                   "local_moto.py to write its var file")
        assert proc.poll() is None, proc.communicate()[0]
        values = json.loads(var_file.read_text())
        moto_port = int(values["endpoint_url"].rsplit(":", 1)[1])
        ssh_port = int(values["proxy_command"].split()[-2])
        children = _descendants(proc.pid)
        assert port_open(moto_port) and port_open(ssh_port) and len(children) >= 2
        assert still_served(moto_port, "moto.server")
        out = Rhplan(examples / "aws", env=aws_env())("plan", "-var-file=moto.json").ok().stdout
        assert '+ resolved_instance_type = "c5.large"' in out, out
        assert f'"proxy_command" = "{values["proxy_command"]}"' in out, out
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=HELPER_TIMEOUT)[0].decode()
        assert proc.returncode == 128 + signal.SIGTERM, log
        assert not gone(children), log
        assert not still_served(moto_port, "moto.server")
        assert not still_served(ssh_port, str(Path(values["root_dir"]).parent))
        assert not Path(values["root_dir"]).parent.exists() and not var_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.long  # ~1-2 min: two hosts' Ray venvs are built from scratch, then Ray and an env
def test_aws_dry_run_walkthrough_launches_calls_and_destroys(
        examples: Path, dry_run: dict[str, Any]) -> None:
    aws = examples / "aws"
    rh = Rhplan(aws, env=aws_env())
    root = dry_run["root_dir"]
    try:
        rh("apply", "-var-file=moto.json", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
        cluster = rh.resources()["cluster.rh-cpu"]["attributes"]
        assert cluster["hosts"] == {ip: "ready" for ip in cluster["ips"]}
        # each instance was reached through the proxy, which names the instance rhplan
        # meant and never dials its (made-up) address
        proxied = Path(root).parent.joinpath("proxy.log").read_text().split("\n")
        for iid, ip in zip(cluster["instance_ids"], cluster["ips"], strict=True):
            assert f"{iid} {ip}" in proxied, proxied
        call = subprocess.run([sys.executable, str(aws / "np_sum.py")], capture_output=True,
                              text=True, timeout=120, env=aws_env(), check=False)
        assert call.returncode == 0 and "np_sum(2, 3) = 5" in call.stdout, call
        assert rh("plan", "-var-file=moto.json", "-detailed-exitcode").returncode == 0
        lineage = rh.state()["lineage"]
        temps = [temp_dir_for(root)] + [temp_dir_for(f"{root}@{ip}") for ip in cluster["ips"]]
        rh("destroy", "-var-file=moto.json", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
        assert not rh.resources()
        assert owned_in_moto(dry_run["endpoint_url"], lineage) == []
        poll_until(lambda: not cluster_processes(temps, Path(root)), 30,
                   "the cluster's Ray processes to end")
    finally:
        if rh.resources():
            rh("destroy", "-var-file=moto.json", "-auto-approve", timeout=APPLY_TIMEOUT)
