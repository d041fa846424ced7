"""Crash consistency across providers: `rhplan apply` and `destroy` killed with SIGKILL
at many points (after each state write, mid launch, mid package install, during Ray's
bootstrap, at an SSH login), then run again: they must converge, with nothing
duplicated or orphaned (Ray heads and servlets by process, EC2 instances, security
groups and key pairs by the lineage tag), the state file always loadable, and the
killed run's lock named and cleared only by the documented ways. See crash_harness.py.

The default run takes a few representative points per provider, chained on one
configuration (create -> converge -> change -> converge -> destroy), to stay within
about 90 s; `pytest -m long tests/test_crash.py -s` sweeps every state write and
every EC2 call from a fresh start each time. Each test prints one line per kill point
and `RELIABILITY: crash <provider>: kill points tried=N converged=N`; CRASH_DEBUG=1
also prints each re-run's output.
"""
from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_cluster import aws_hcl, x86_image
from crash_harness import (
    KillPoint,
    Scenario,
    Verdict,
    after_api_call,
    after_api_op,
    after_write,
    count_events,
    figures,
    hung,
    process_appears,
    run_kill_point,
    ssh_login,
    sweep_creates,
)
from motoserver import MotoServer, aws_env
from rayprocs import temp_dir_prefix
from ssh_cluster import cluster_hcl, linked_ray_root, ssh_block
from sshd import SSHServer

SMALL_REQ = "six==1.16.0"
ADDED_REQ = "idna==3.7"


def env_hcl(cluster: str, reqs: list[str]) -> str:
    items = ", ".join(f'"{r}"' for r in reqs)
    return f'\nenv "app" {{\n  cluster = cluster.{cluster}\n  reqs    = [{items}]\n}}\n'


def local_hcl(reqs: list[str]) -> str:
    return 'cluster "main" {\n  provider = "local"\n}\n' + env_hcl("main", reqs)


def report(provider: str, verdicts: list[Verdict]) -> None:
    print(figures(provider, verdicts))
    bad = [v.line() for v in verdicts if not v.converged]
    assert not bad, "\n".join(bad)


def bootstrap(sc: Scenario) -> KillPoint:
    """`ray start` of this cluster's head is running."""
    return process_appears("ray start (bootstrap)", "start",
                           f"--temp-dir={temp_dir_prefix(str(sc.root))}")


def installing(sc: Scenario, req: str) -> KillPoint:
    """A pip/uv install of `req` into the scenario's env is running."""
    return process_appears(f"install of {req}", "install", f"{sc.root}/envs/app", req)


def servlet_starting(sc: Scenario) -> KillPoint:
    return process_appears("servlet start", "host_script", "start", f"{sc.root}/envs/app")


COMMANDS = {"create": ("apply", "-auto-approve"), "add": ("apply", "-auto-approve"),
            "apply": ("apply", "-auto-approve"), "destroy": ("destroy", "-auto-approve")}


def chain(sc: Scenario, steps: list[tuple[str, KillPoint]]) -> list[Verdict]:
    """Kill points one after another on one configuration: each step is the command
    ("create"/"add"/"destroy") a point interrupts; every re-run converges first."""
    verdicts = []
    for step, point in steps:
        if step == "add":
            sc.rh.edit(f'"{SMALL_REQ}"]', f'"{SMALL_REQ}", "{ADDED_REQ}"]')
        killed, _, then = step.partition(">")  # "destroy>apply": killed, then the other
        sc.command, sc.then = COMMANDS[killed], COMMANDS[then] if then else None
        v = run_kill_point(sc, point)
        v.point = f"{step}: {v.point}"
        verdicts.append(v)
        print(v.line(), flush=True)
        if os.environ.get("CRASH_DEBUG"):
            print(v.rerun_output)
    return verdicts


# --------------------------------------------------------------------------
# local
# --------------------------------------------------------------------------

@pytest.fixture
def local(rh: Any) -> Scenario:
    rh.write(local_hcl([SMALL_REQ]))
    return Scenario("local", rh, rh.cluster_dir("main"), envs=("app",))


@pytest.mark.long  # a sample of test_crash_local_sweep's kill points; test_crash_aws is default
def test_crash_local(local: Scenario) -> None:
    sc = local
    verdicts = chain(sc, [("create", bootstrap(sc)), ("add", installing(sc, ADDED_REQ)),
                          ("destroy", after_write(1))])
    report("local", verdicts)


@pytest.mark.long
def test_crash_local_sweep(local: Scenario) -> None:
    """Every state write of a first apply, Ray's bootstrap, the package install and the
    servlet start; then a package added (killed mid install) and every write of a
    destroy."""
    sc = local
    verdicts = sweep_creates(sc, lambda writes, _: [after_write(k) for k in range(1, writes + 1)]
                             + [bootstrap(sc), installing(sc, SMALL_REQ), servlet_starting(sc)])
    sc.rh("apply", "-auto-approve").ok()
    verdicts += chain(sc, [("add", installing(sc, ADDED_REQ)), ("destroy", after_write(1))])
    sc.rh("apply", "-auto-approve").ok()
    verdicts += chain(sc, [("destroy", after_write(2))])
    sc.rh("apply", "-auto-approve").ok()
    verdicts += chain(sc, [("destroy", hung(after_write(1)))])  # a live holder's flock
    report("local", verdicts)


# --------------------------------------------------------------------------
# ssh (a real sshd on 127.0.0.1)
# --------------------------------------------------------------------------

@pytest.fixture
def ssh(rh: Any, server: SSHServer, ray_venv: Path, tmp_path: Path) -> Iterator[Scenario]:
    root = linked_ray_root(ray_venv, tmp_path)
    rh.write(cluster_hcl("main", ["127.0.0.1"], root, ssh_block(server))
             + env_hcl("main", [SMALL_REQ]))
    yield Scenario("ssh", rh, root, envs=("app",))
    if rh.resources():  # now, while this module's sshd still runs
        rh("destroy", "-auto-approve", timeout=300)


# long: the SSH host's env build is the slowest part of the default run (~60 s), and
# the same kill points are in test_crash_ssh_sweep
@pytest.mark.long
def test_crash_ssh(ssh: Scenario) -> None:
    sc = ssh
    verdicts = chain(sc, [("create", bootstrap(sc)), ("add", installing(sc, ADDED_REQ))])
    report("ssh", verdicts)


@pytest.mark.long
def test_crash_ssh_sweep(ssh: Scenario, server: SSHServer) -> None:
    """Every state write of a first apply, its SSH login, Ray's bootstrap over
    SSH, the package install and the servlet start; then a package added and a destroy."""
    sc = ssh
    verdicts = sweep_creates(sc, lambda writes, _: [after_write(k) for k in range(1, writes + 1)]
                             # one pooled SSH connection per run: one login to kill at
                             + [ssh_login(server, 1), bootstrap(sc),
                                installing(sc, SMALL_REQ), servlet_starting(sc)])
    sc.rh("apply", "-auto-approve").ok()
    verdicts += chain(sc, [("add", installing(sc, ADDED_REQ)), ("destroy", after_write(1))])
    report("ssh", verdicts)


# --------------------------------------------------------------------------
# aws (a real moto server; state in its S3, whose lock outlives a killed process)
# --------------------------------------------------------------------------

def s3_backend(moto: MotoServer, bucket: str) -> str:
    moto.client("s3").create_bucket(Bucket=bucket)
    return textwrap.dedent(f"""
        rhplan {{
          backend "s3" {{
            bucket       = "{bucket}"
            key          = "crash/rhplan.state.json"
            region       = "us-east-1"
            endpoint_url = "{moto.url}"
          }}
        }}
    """)


def aws_scenario(moto: MotoServer, server: SSHServer, rh: Any, root: Path, tmp: Path,
                 n: int, hosts: bool) -> Scenario:
    bucket = f"crash-{tmp.name.lower().replace('_', '-')[-40:]}"
    cluster = aws_hcl(moto, server, root, tmp / "proxy.log", x86_image(moto), name="main", n=n)
    if not hosts:  # launch and tag only (tests/plugins): the EC2 side of a crash, in seconds
        cluster = cluster.replace('provider      = "aws"', 'provider      = "aws_launch_only"')
    rh.write(s3_backend(moto, bucket) + cluster + (env_hcl("main", [SMALL_REQ]) if hosts else ""))
    return Scenario("aws" if hosts else "aws (no host set-up)", rh, root,
                    envs=("app",) if hosts else (), moto=moto, instances=n,
                    skip_hosts=not hosts, driver_env=aws_env())


@pytest.fixture
def aws_rh(rh: Any) -> Iterator[Any]:
    """The CLI with moto's fake credentials; what a failed test leaves applied (its
    state is in moto's S3, which the shared clean-up does not read) is destroyed here."""
    rh.env = aws_env(rh.env)
    yield rh
    res = rh("state", "list", timeout=120)
    if res.returncode == 0 and res.stdout.strip():
        rh("destroy", "-auto-approve", timeout=600)


def test_crash_aws(moto: MotoServer, server: SSHServer, aws_rh: Any, tmp_path: Path) -> None:
    sc = aws_scenario(moto, server, aws_rh, tmp_path / "root", tmp_path, n=2, hosts=False)
    verdicts = chain(sc, [("create", after_api_op("AuthorizeSecurityGroupIngress")),
                          ("destroy", after_api_op("TerminateInstances", returned=True)),
                          ("create", after_api_op("RunInstances", returned=True))])
    report("aws", verdicts)


@pytest.mark.long
def test_crash_aws_leftovers_and_locks(moto: MotoServer, server: SSHServer, aws_rh: Any,
                                       tmp_path: Path) -> None:
    """A destroy killed once its instances are gone, then an apply (the cluster is
    repaired from what is left, not orphaned); a destroy frozen mid-way (its S3 lock is
    refused to the next run until force-unlock); the state-write kill points."""
    sc = aws_scenario(moto, server, aws_rh, tmp_path / "root", tmp_path, n=2, hosts=False)
    verdicts = chain(sc, [("create", after_write(1)),
                          ("destroy>apply", after_api_op("TerminateInstances", returned=True)),
                          ("destroy", hung(after_api_op("TerminateInstances"))),
                          ("create", after_api_op("ImportKeyPair", returned=True)),
                          ("destroy", after_api_op("DeleteSecurityGroup", returned=True))])
    report("aws (no host set-up)", verdicts)


@pytest.mark.long
def test_crash_aws_sweep(moto: MotoServer, server: SSHServer, aws_rh: Any, ray_venv: Path,
                         tmp_path: Path) -> None:
    """Two instances set up over SSH (Ray on both, a servlet): every state write and
    every EC2/S3 call of a first apply, Ray's bootstrap and the package install; then
    every EC2 call of a destroy."""
    root = linked_ray_root(ray_venv, tmp_path)
    sc = aws_scenario(moto, server, aws_rh, root, tmp_path, n=2, hosts=True)
    verdicts = sweep_creates(sc, lambda writes, calls: [after_write(k)
                                                        for k in range(1, writes + 1)]
                             + [after_api_call(k) for k in range(1, len(calls) + 1)]
                             + [bootstrap(sc), installing(sc, SMALL_REQ)])
    sc.rh("apply", "-auto-approve").ok()
    sc.command = ("destroy", "-auto-approve")
    _, calls = count_events(sc)
    for k in range(1, len(calls) + 1):
        sc.rh("apply", "-auto-approve").ok()
        verdicts += chain(sc, [("destroy", after_api_call(k))])
    report("aws", verdicts)
