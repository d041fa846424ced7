"""The aws provider end to end: a real moto server process (tests/support/motoserver.py) is the
EC2 endpoint, and every "instance" it launches is reached through a proxy command
(tests/support/aws_proxy.py, standing where SSM or a bastion stands in a real setup) that leads
to a real sshd on 127.0.0.1. So the whole chain runs: boto3 over HTTP launches and tags
instances, rhplan reaches them over SSH, bootstraps Ray, forms one Ray cluster, builds
the env with uv and starts its servlet.

What cannot be real here: the instances share this machine (one filesystem, one
process table), so their Ray nodes all run here; and moto ignores ClientToken, so
"no duplicate after a crash" is proven by rhplan adopting what its tags say it made.

The module applies ONE fleet (a two-instance cluster with one env) and walks it in file
order: read-only checks, then scaling up and down, then drift. Its finalizer destroys
it and checks that nothing rhplan created is left in the account or on the machine.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cluster import ALLOWED, api_calls, aws_hcl, leftovers, x86_image
from conftest import poll_until
from motoserver import MotoServer, aws_env
from rayprocs import cluster_processes, stop_leftovers, temp_dir_for
from ssh_cluster import (
    APPLY_TIMEOUT,
    DRIVER_TIMEOUT,
    NUMPY,
    PRELUDE,
    linked_ray_root,
)
from sshd import SSHServer, _descendants

ENV_HCL = f"""
env "np_env" {{
  cluster = cluster.rh-cpu
  reqs    = ["pip:{NUMPY}"]
}}
"""


@dataclass
class Fleet:
    moto: MotoServer
    server: SSHServer
    rh: Any
    root: Path
    proxy_log: Path
    ami: str
    scripts: Path

    def state(self) -> dict[str, Any]:
        return self.rh.state()

    def lineage(self) -> str:
        return self.state()["lineage"]

    def cluster(self) -> dict[str, Any]:
        return self.rh.resources()["cluster.rh-cpu"]

    def instances(self, live_only: bool = True) -> list[dict[str, Any]]:
        ec2 = self.moto.client("ec2")
        out = []
        for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "tag:rhplan:lineage", "Values": [self.lineage()]}]):
            for r in page["Reservations"]:
                out += r["Instances"]
        if live_only:
            out = [i for i in out if i["State"]["Name"] not in ("terminated", "shutting-down")]
        return out

    def temp_dirs(self) -> list[str]:
        ips = self.cluster()["attributes"]["ips"] if "cluster.rh-cpu" in self.rh.resources() \
            else []
        return [temp_dir_for(str(self.root))] + [temp_dir_for(f"{self.root}@{ip}")
                                                 for ip in ips]

    def drive(self, body: str) -> dict[str, Any]:
        script = self.scripts / f"driver_{uuid.uuid4().hex[:8]}.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        proc = subprocess.run([sys.executable, str(script), str(self.rh.dir)],
                              capture_output=True, text=True, timeout=DRIVER_TIMEOUT,
                              env=aws_env(), check=False)
        report = f"driver {script} -> exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert proc.returncode == 0, report
        results = [ln[7:] for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        assert len(results) == 1, report
        return json.loads(results[0])

    def ray_nodes(self) -> int:
        return self.drive("""
            s = rhplan.servlet("np_env", chdir=CHDIR)
            def alive_nodes():
                import ray
                return len([n for n in ray.nodes() if n["Alive"]])
            emit(nodes=s.call(alive_nodes))
        """)["nodes"]

    def servlet_pid(self) -> int:
        return self.rh.resources()["env.np_env"]["attributes"]["servlet_pid"]


def destroy_and_check(rh: Any, moto: MotoServer, temp_dirs: list[str], root: Path) -> None:
    lineage = rh.state()["lineage"] if rh.state_path.exists() else ""
    res = rh("destroy", "-auto-approve", timeout=APPLY_TIMEOUT)
    left = stop_leftovers(temp_dirs, root)  # killed by pid, then reported
    problems = [] if res.returncode == 0 else [res.describe()]
    if left:
        problems.append(f"Ray processes outlived destroy: {left}")
    if lineage:
        problems += leftovers(moto, lineage)
    if rh.resources():
        problems.append(f"state not empty: {sorted(rh.resources())}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def ray_root(ray_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root_dir of its own per cluster (its Ray is told apart by it) with Ray in it."""
    return linked_ray_root(ray_venv, tmp_path_factory.mktemp("aws-root"))


@pytest.fixture(scope="module")
def fleet(moto: MotoServer, server: SSHServer, ray_venv: Path,
          tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("aws-fleet")
    ray_root = linked_ray_root(ray_venv, base)
    rh = rhplan_in(base / "infra", env=aws_env())
    rh.keep = True  # destroyed and checked below
    (base / "scripts").mkdir()
    f = Fleet(moto, server, rh, ray_root, base / "proxy.log", x86_image(moto), base / "scripts")
    rh.write(aws_hcl(moto, server, ray_root, f.proxy_log, f.ami) + ENV_HCL)
    dirs: list[str] = []
    try:
        rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
        dirs = f.temp_dirs()
        yield f
    finally:
        destroy_and_check(rh, moto, sorted(set(dirs + f.temp_dirs())), ray_root)


# --- planning, no apply ----------------------------------------------------------------

def test_plan_shows_the_resolved_type_and_its_cost(moto: MotoServer, server: SSHServer,
                                                   tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    rh.write(aws_hcl(moto, server, tmp_path / "root", tmp_path / "p.log", x86_image(moto)))
    out = rh("plan").ok().stdout
    assert '+ resolved_instance_type = "c5.large"' in out, out
    assert "+ cost_per_hour          = 0.17" in out, out
    assert "Cost: +$0.1700/hour ($0.0000 -> $0.1700 per hour" in out, out


def test_plan_refuses_bad_aws_settings_in_one_line(moto: MotoServer, server: SSHServer,
                                                   tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    good = aws_hcl(moto, server, tmp_path / "root", tmp_path / "p.log", "ami-12345678")
    for old, new, words in [
        ('"CPU:2+"', '"A100:3"', "A100 comes in 8"),
        ('"CPU:2+"', '"m9x.large"', "did you mean"),
        ("num_instances = 2", "num_instances = 0", "num_instances must be"),
        ('  image_id      = "ami-12345678"\n', "", "give image_id"),
        ("open_ports    = [8080]", "open_ports    = [70000]", "not a TCP port"),
        ('endpoint_url = ', 'secret_key = "x"\n  endpoint_url = ', "has no attribute"),
    ]:
        assert old in good, old
        rh.write(good.replace(old, new))
        line = rh("plan").error_line()
        assert words in line and "main.hcl:" in line, line


# --- the fleet: two instances, one Ray cluster, one env ----------------------------------

def test_apply_launches_tagged_instances_reached_through_the_proxy(fleet: Fleet) -> None:
    insts = fleet.instances()
    assert len(insts) == 2 and {i["State"]["Name"] for i in insts} == {"running"}
    assert {i["InstanceType"] for i in insts} == {"c5.large"}
    for inst in insts:
        tags = {t["Key"]: t["Value"] for t in inst["Tags"]}
        assert tags["rhplan:lineage"] == fleet.lineage()
        assert tags["rhplan:address"] == "cluster.rh-cpu"
        assert tags["team"] == "ml" and tags["owner"] == "rhplan-tests"
        assert inst["KeyName"].startswith("rhplan-")
    a = fleet.cluster()["attributes"]
    assert a["instance_ids"] == sorted(a["instance_ids"], key=a["instance_ids"].index)
    assert set(a["instance_ids"]) == {i["InstanceId"] for i in insts}
    assert a["hosts"] == {ip: "ready" for ip in a["ips"]}
    assert a["cost_per_hour"] == 0.17 and a["resources"] == {"CPU": 4, "GPU": 0}
    # %h and %i reached the proxy as each instance's address and id
    seen = {tuple(line.split()) for line in fleet.proxy_log.read_text().splitlines()}
    for inst in insts:
        assert (inst["PublicIpAddress"], inst["InstanceId"]) in seen, seen
    ec2 = fleet.moto.client("ec2")
    groups = [g for g in ec2.describe_security_groups()["SecurityGroups"]
              if g["GroupName"].startswith(f"rhplan-{fleet.lineage()[:8]}")]
    assert len(groups) == 1
    ports = {p.get("FromPort") for p in groups[0]["IpPermissions"]}
    assert {22, 8080} <= ports
    # only allowed_cidrs may reach SSH and open_ports: nothing is open to the world
    sources = {(p.get("FromPort"), r["CidrIp"]) for p in groups[0]["IpPermissions"]
               for r in p.get("IpRanges", [])}
    assert sources == {(22, ALLOWED), (8080, ALLOWED)}, sources
    assert a["ingress"] == [f"tcp/22 from {ALLOWED}", f"tcp/8080 from {ALLOWED}",
                            "all traffic from the cluster itself"]
    assert a["host_keys"] == "trusted on first use"
    # no credential of any kind reached the state
    text = fleet.rh.state_path.read_text()
    assert "testing" not in text and "SecretAccessKey" not in text


def test_np_sum_on_the_servlet_of_a_two_node_ray_cluster(fleet: Fleet) -> None:
    got = fleet.drive("""
        s = rhplan.servlet("np_env", chdir=CHDIR)
        def np_sum(a, b):
            import numpy as np
            return int(np.sum([a, b]))
        emit(sum=s.call(np_sum, 2, 3))
    """)
    assert got == {"sum": 5}
    assert fleet.ray_nodes() == 2


def test_no_change_plan_is_one_describe_call(fleet: Fleet, tmp_path: Path) -> None:
    log = tmp_path / "api.log"
    out = fleet.rh("plan", env={"RHPLAN_AWS_API_LOG": str(log)}).ok().stdout
    assert "No changes." in out, out
    # the state's instance ids, those instances, every security group's rules
    assert api_calls(log) == {"DescribeTags": 1, "DescribeInstances": 1,
                              "DescribeSecurityGroups": 1}


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_scale_up_launches_one_and_joins_it(fleet: Fleet) -> None:
    pid = fleet.servlet_pid()
    fleet.rh.edit("num_instances = 2", "num_instances = 3")
    out = fleet.rh("plan").ok().stdout
    assert "launches 1 instance(s) and joins them to the Ray cluster" in out, out
    assert "num_instances          = 2 -> 3" in out, out
    assert "Cost: +$0.0850/hour ($0.1700 -> $0.2550 per hour" in out, out
    fleet.rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    assert len(fleet.instances()) == 3
    assert fleet.ray_nodes() == 3
    assert fleet.servlet_pid() == pid  # the head and its servlet were left alone


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_scale_down_removes_the_last_worker(fleet: Fleet) -> None:
    before = fleet.cluster()["attributes"]["instance_ids"]
    fleet.rh.edit("num_instances = 3", "num_instances = 2")
    out = fleet.rh("plan").ok().stdout
    assert "removes the last 1 worker(s) from Ray and terminates them" in out, out
    fleet.rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    live = {i["InstanceId"] for i in fleet.instances()}
    assert live == set(before[:2])
    assert fleet.cluster()["attributes"]["instance_ids"] == before[:2]
    assert fleet.ray_nodes() == 2


def test_resize_is_planned_in_place_or_as_replacement(fleet: Fleet) -> None:
    fleet.rh.edit('"CPU:2+"', '"c5.xlarge"')
    out = fleet.rh("plan").ok().stdout
    assert "cluster.rh-cpu will be updated in-place" in out, out
    assert "instance_type c5.large -> c5.xlarge: EC2 resizes in place" in out, out
    fleet.rh.edit('"c5.xlarge"', '"c7g.large"')
    out = fleet.rh("plan").ok().stdout
    assert "cluster.rh-cpu must be replaced" in out, out
    assert "c5.large is x86_64 and c7g.large is arm64" in out, out
    fleet.rh.edit('"c7g.large"', '"CPU:2+"')
    fleet.rh.edit(f'"{fleet.ami}"', '"ami-0123456789abcdef0"')
    out = fleet.rh("plan").ok().stdout
    assert "image_id cannot be changed on a running instance" in out, out
    fleet.rh.edit('"ami-0123456789abcdef0"', f'"{fleet.ami}"')
    assert "No changes." in fleet.rh("plan").ok().stdout


def test_drift_is_shown_and_repaired(fleet: Fleet) -> None:
    ec2 = fleet.moto.client("ec2")
    ids = fleet.cluster()["attributes"]["instance_ids"]
    ec2.stop_instances(InstanceIds=[ids[1]])
    ec2.create_tags(Resources=[ids[0]], Tags=[{"Key": "team", "Value": "someone-else"}])
    out = fleet.rh("plan").ok().stdout
    assert "Objects have changed outside of rhplan" in out, out
    assert "stopped outside rhplan" in out, out
    assert '"team": "someone-else"' in out, out
    fleet.rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    insts = fleet.instances()
    assert {i["State"]["Name"] for i in insts} == {"running"} and len(insts) == 2
    assert all({t["Key"]: t["Value"] for t in i["Tags"]}["team"] == "ml" for i in insts)
    assert fleet.ray_nodes() == 2
    assert "No changes." in fleet.rh("plan").ok().stdout


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_a_worker_terminated_outside_is_replaced(fleet: Fleet) -> None:
    a = fleet.cluster()["attributes"]
    ids = a["instance_ids"]
    fleet.moto.client("ec2").terminate_instances(InstanceIds=[ids[1]])
    # what terminating a real instance does to the Ray node on it: its processes (by
    # temp dir only, not the head's) and everything they started
    node = list(cluster_processes([temp_dir_for(f"{fleet.root}@{a['ips'][1]}")],
                                  Path("/no-token")))
    for pid in node + [d for p in node for d in _descendants(p)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    out = fleet.rh("plan").ok().stdout
    assert "terminated outside rhplan" in out and "repairs" in out, out
    fleet.rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    now = fleet.cluster()["attributes"]["instance_ids"]
    assert now[0] == ids[0] and now[1] != ids[1] and len(now) == 2
    assert {i["InstanceId"] for i in fleet.instances()} == set(now)
    # Ray notices the killed node by its missed health checks
    poll_until(lambda: fleet.ray_nodes() == 2, 90, "Ray to count two live nodes")


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_throttling_is_retried_and_a_broken_endpoint_fails_in_one_line(fleet: Fleet) -> None:
    from faulty_http import SERVER_ERROR, THROTTLE, FaultyProxy, Rule
    proxy = FaultyProxy(fleet.moto.url, [Rule("DescribeInstances", THROTTLE, 3)]).start()
    try:
        fleet.rh.edit(fleet.moto.url, proxy.url)
        out = fleet.rh("plan").ok().stdout
        assert "No changes." in out and proxy.rules[0].hits == 3, out
        proxy.rules[:] = [Rule("DescribeInstances", SERVER_ERROR, -1)]
        started = time.monotonic()
        line = fleet.rh("plan", env={"RHPLAN_AWS_MAX_ATTEMPTS": "3"}).error_line()
        assert "InternalError" in line and "cluster.rh-cpu" in line, line
        assert time.monotonic() - started < 60
        proxy.rules[:] = [Rule("DescribeInstances", None, -1)]  # connection dropped
        line = fleet.rh("plan", env={"RHPLAN_AWS_MAX_ATTEMPTS": "2"}).error_line()
        assert "describing instances" in line, line
    finally:
        fleet.rh.edit(proxy.url, fleet.moto.url)
        proxy.stop()
    assert "No changes." in fleet.rh("plan").ok().stdout


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_resize_in_place_keeps_the_instances_and_restarts_the_servlet(fleet: Fleet) -> None:
    ids = fleet.cluster()["attributes"]["instance_ids"]
    fleet.rh.edit('"CPU:2+"', '"c5.xlarge"')
    out = fleet.rh("plan").ok().stdout
    assert "its servlet will be started" in out, out
    fleet.rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    insts = fleet.instances()
    assert {i["InstanceId"] for i in insts} == set(ids)
    assert {i["InstanceType"] for i in insts} == {"c5.xlarge"}
    assert fleet.cluster()["attributes"]["cost_per_hour"] == 0.34
    assert fleet.ray_nodes() == 2
    assert "No changes." in fleet.rh("plan").ok().stdout


# --- failures --------------------------------------------------------------------------

@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_a_bad_image_fails_its_cluster_and_leaves_the_other_applied(
        moto: MotoServer, server: SSHServer, ray_root: Path, tmp_path: Path,
        rh: Any) -> None:
    # conftest's rh: a failure before the destroy below still destroys and stops its Ray
    rh.env = aws_env(rh.env)
    good = aws_hcl(moto, server, ray_root, tmp_path / "p.log", x86_image(moto), name="good", n=1)
    bad = aws_hcl(moto, server, ray_root, tmp_path / "p.log", "ami-00000bad", name="bad", n=1,
                  provider=False)
    rh.write(good + bad)
    res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
    assert res.returncode == 1, res.describe()
    assert "InvalidAMIID.NotFound" in res.output and "Traceback" not in res.output, res.describe()
    assert "cluster.good" in rh.resources() and "cluster.bad" not in rh.resources()
    lineage = rh.state()["lineage"]
    rh.write(good)
    destroy_and_check(rh, moto, [temp_dir_for(str(ray_root))], ray_root)
    assert leftovers(moto, lineage) == []


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_a_killed_apply_is_adopted_not_duplicated(moto: MotoServer, server: SSHServer,
                                                  ray_root: Path, tmp_path: Path,
                                                  rh: Any) -> None:
    rh.env = aws_env(rh.env)  # conftest's rh: a failure half-way still destroys, stops Ray
    rh.write(aws_hcl(moto, server, ray_root, tmp_path / "p.log", x86_image(moto), n=2))
    bg = rh.start("apply", "-auto-approve")
    ec2 = moto.client("ec2")
    deadline = time.monotonic() + 60
    launched: list[str] = []
    while time.monotonic() < deadline and not launched:
        if rh.state_path.exists():
            lineage = rh.state()["lineage"]
            res = ec2.describe_instances(Filters=[{"Name": "tag:rhplan:lineage",
                                                   "Values": [lineage]}])
            launched = [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]
        time.sleep(0.05)
    os.kill(bg.pid, signal.SIGKILL)
    bg.finish()
    assert len(launched) == 2, "the apply never launched"
    assert "cluster.rh-cpu" not in rh.resources()  # killed before it was recorded
    rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    a = rh.resources()["cluster.rh-cpu"]["attributes"]
    assert sorted(a["instance_ids"]) == sorted(launched)
    lineage = rh.state()["lineage"]
    live = [i for r in ec2.describe_instances(Filters=[{"Name": "tag:rhplan:lineage",
                                                        "Values": [lineage]}])["Reservations"]
            for i in r["Instances"] if i["State"]["Name"] != "terminated"]
    assert len(live) == 2
    destroy_and_check(rh, moto, [temp_dir_for(str(ray_root))] +
                      [temp_dir_for(f"{ray_root}@{ip}") for ip in a["ips"]], ray_root)
