"""Destroy leaves nothing behind, whatever state an earlier apply or the world left the
cluster in: instances, security groups and key pairs of an aws cluster whose host setup
failed (moto), rhplan's folder of an ssh setup that failed half-way, a cluster whose Ray
failed to start, Ray heads whose folder vanished (local and ssh), servlets whose Ray is
down, and the local copies of Ray tokens. A host that cannot be reached keeps its
cluster in the state with a one-line error. Real parts throughout: a moto server, a
real sshd on 127.0.0.1, the CLI in subprocesses, real Ray on this machine."""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from aws_cluster import PROXY, leftovers, x86_image
from conftest import poll_until
from motoserver import MotoServer, aws_env, free_port
from rayprocs import alive, cluster_processes, temp_dir_for, temp_dir_prefix
from ssh_cluster import cluster_hcl, hcl_str, provision_ray_venv, ssh_block, sshd_down
from sshd import SSHServer

APPLY_TIMEOUT = 300.0


def unreachable_aws_hcl(moto: MotoServer, tmp_path: Path, n: int = 2) -> str:
    """An aws cluster whose instances launch but cannot be reached: its proxy command
    leads to a port where nothing listens (an instance whose sshd never comes up)."""
    key = tmp_path / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True, timeout=30)
    proxy = shlex.join([sys.executable, PROXY, str(tmp_path / "proxy.log"), "%h", "%i",
                        str(free_port())])
    return textwrap.dedent(f"""
        provider "aws" {{
          region       = "us-east-1"
          endpoint_url = {hcl_str(moto.url)}
        }}
        cluster "rh-cpu" {{
          provider      = "aws"
          instance_type = "CPU:2+"
          num_instances = {n}
          image_id      = {hcl_str(x86_image(moto))}
          root_dir      = "/tmp/rhplan-never-reached"
          allowed_cidrs = ["198.51.100.0/24"]
          ssh {{
            user           = "nobody"
            private_key    = {hcl_str(str(key))}
            proxy_command  = {hcl_str(proxy)}
            host_key_check = "trust_on_first_use"  # moto's console shows no keys
          }}
        }}
    """)


def test_destroy_after_a_failed_host_setup_removes_every_aws_resource(
        moto: MotoServer, tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra", env={**aws_env(), "RHPLAN_AWS_SSH_WAIT_SECONDS": "1"})
    rh.keep = True  # nothing real is on this machine; the account is checked below
    rh.write(unreachable_aws_hcl(moto, tmp_path))
    res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
    assert res.returncode == 1, res.describe()
    lineage = rh.state()["lineage"]
    cluster = rh.resources()["cluster.rh-cpu"]
    assert len(cluster["attributes"]["instance_ids"]) == 2, cluster
    assert len(leftovers(moto, lineage)) == 4, leftovers(moto, lineage)  # 2 + group + key
    # a plan keeps the cluster, and offers to set its hosts up again
    plan = rh("plan", "-detailed-exitcode")
    assert plan.returncode == 2, plan.describe()
    assert "cluster.rh-cpu will be updated in-place" in plan.stdout, plan.stdout
    assert "cluster.rh-cpu" in rh.resources()
    res = rh("destroy", "-auto-approve", timeout=APPLY_TIMEOUT)
    assert res.returncode == 0, res.describe()
    assert "1 destroyed" in res.stdout, res.stdout
    assert leftovers(moto, lineage) == []
    assert rh.resources() == {}


# --- a local cluster and a real Ray ------------------------------------------------------

LOCAL_HCL = """
cluster "main" {
  provider = "local"
}

env "app" {
  cluster = cluster.main
  reqs    = ["pip:six==1.16.0"]
}
"""


def local_applied(rh: Any) -> tuple[Path, list[str], int, Path]:
    """Apply a local cluster with one env: (root, its Ray temp dirs, servlet pid, the
    local token copy)."""
    rh.write(LOCAL_HCL)
    rh("apply", "-auto-approve").ok()
    root = rh.cluster_dir("main")
    cluster = rh.resources()["cluster.main"]
    token = Path(cluster["private"]["ray"]["ray_driver_token_path"])
    assert token.is_file()
    pid = rh.resources()["env.app"]["attributes"]["servlet_pid"]
    assert alive(pid)
    return root, [temp_dir_for(str(root))], pid, token


def assert_nothing_left(rh: Any, root: Path, temp_dirs: list[str], servlet: int | None,
                        token: Path) -> None:
    """After destroy: no Ray process of the cluster, no servlet, no token, no state."""
    deadline = time.monotonic() + 20  # a killed process may take a moment to be reaped
    while (left := cluster_processes(temp_dirs, root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    problems = []
    if left:
        for pid in left:  # never leave a Ray behind: these pids are this cluster's only
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        problems.append(f"Ray processes outlived destroy: {left}")
    if servlet is not None and alive(servlet):
        problems.append(f"the servlet {servlet} outlived destroy")
    if token.exists():
        problems.append(f"the Ray token copy {token} is still there")
    if rh.resources():
        problems.append(f"state not empty: {sorted(rh.resources())}")
    assert not problems, "\n".join(problems)


def test_destroy_removes_the_local_ray_token(rh: Any) -> None:
    root, temp_dirs, servlet, token = local_applied(rh)
    rh("destroy", "-auto-approve").ok()
    assert_nothing_left(rh, root, temp_dirs, servlet, token)
    assert not token.parent.exists()  # no other cluster's token was in it


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_destroy_with_the_clusters_ray_down_stops_the_servlet_by_its_pid(rh: Any) -> None:
    root, temp_dirs, servlet, token = local_applied(rh)
    gcs = [pid for pid, cmd in cluster_processes(temp_dirs, root).items() if "gcs_server" in cmd]
    assert len(gcs) == 1, cluster_processes(temp_dirs, root)
    os.kill(gcs[0], signal.SIGKILL)
    poll_until(lambda: not alive(gcs[0]), timeout=10, what="the GCS to exit")
    res = rh("destroy", "-auto-approve")
    assert res.returncode == 0, res.describe()
    assert "2 destroyed" in res.stdout, res.stdout
    assert not rh.env_dir("main", "app").exists()
    assert_nothing_left(rh, root, temp_dirs, servlet, token)


def test_destroying_an_env_while_the_gcs_is_down_stops_its_servlet(rh: Any) -> None:
    """The GCS is gone (Raylet and the servlet live on for a while): destroying the env
    alone stops the servlet by its recorded pid and removes the env's folder."""
    root, temp_dirs, servlet, token = local_applied(rh)
    gcs = [pid for pid, cmd in cluster_processes(temp_dirs, root).items() if "gcs_server" in cmd]
    assert len(gcs) == 1, cluster_processes(temp_dirs, root)
    os.kill(gcs[0], signal.SIGKILL)
    poll_until(lambda: not alive(gcs[0]), timeout=10, what="the GCS to exit")
    assert alive(servlet), "the servlet went down with the GCS: nothing to prove here"
    res = rh("destroy", "-auto-approve", "-target", "env.app")
    assert res.returncode == 0, res.describe()
    assert "1 destroyed" in res.stdout, res.stdout
    assert not alive(servlet), "the servlet outlived its env"
    assert not rh.env_dir("main", "app").exists()
    assert set(rh.resources()) == {"cluster.main"}
    rh("destroy", "-auto-approve").ok()
    assert_nothing_left(rh, root, temp_dirs, servlet, token)


def test_destroy_with_the_raylet_gone_does_not_wait_for_ray(rh: Any) -> None:
    """A head whose Raylet died still answers on its GCS port, but no driver can connect
    (ray.init gives up after a minute): the refresh sees Ray down, destroy goes on."""
    root, temp_dirs, servlet, token = local_applied(rh)
    raylet = [pid for pid, cmd in cluster_processes(temp_dirs, root).items()
              if cmd.split(" ", 1)[0].endswith("/raylet")]
    assert len(raylet) == 1, cluster_processes(temp_dirs, root)
    os.kill(raylet[0], signal.SIGKILL)
    poll_until(lambda: not alive(raylet[0]), timeout=10, what="the raylet to exit")
    t0 = time.monotonic()
    res = rh("destroy", "-auto-approve")
    assert res.returncode == 0, res.describe()
    assert time.monotonic() - t0 < 45, f"destroy waited on a Ray that cannot answer\n{res.stdout}"
    assert "2 destroyed" in res.stdout, res.stdout
    assert_nothing_left(rh, root, temp_dirs, servlet, token)


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_a_local_cluster_whose_marker_vanished_is_repaired_or_destroyed(rh: Any) -> None:
    """Without its marker file a local cluster still runs Ray: the plan repairs it
    (never forgets it), and destroy stops its Ray and servlet."""
    root, temp_dirs, servlet, token = local_applied(rh)
    (root / ".rhplan-cluster").unlink()
    plan = rh("plan", "-detailed-exitcode")
    assert plan.returncode == 2, plan.describe()
    assert "# cluster.main will be updated in-place" in plan.stdout, plan.stdout
    assert "rhplan's folder is gone" in plan.stdout, plan.stdout
    assert "will be created" not in plan.stdout, plan.stdout
    rh("apply", "-auto-approve").ok()
    assert (root / ".rhplan-cluster").is_file()
    assert not alive(servlet), "the old servlet outlived the repair"
    assert "No changes." in rh("plan").ok().stdout
    servlet = rh.resources()["env.app"]["attributes"]["servlet_pid"]
    assert alive(servlet)
    (root / ".rhplan-cluster").unlink()
    res = rh("destroy", "-auto-approve")
    assert res.returncode == 0, res.describe()
    assert "2 destroyed" in res.stdout, res.stdout
    assert_nothing_left(rh, root, temp_dirs, servlet, token)


# --- an ssh host whose setup failed half-way -----------------------------------------------

def test_an_ssh_setup_that_failed_half_way_is_recorded_and_destroyed(
        server: SSHServer, tmp_path: Path, rhplan_in: Any) -> None:
    """The bootstrap made rhplan's folder, then failed (here: a broken Ray venv): the
    cluster is recorded, so destroy removes the folder; while the host cannot be reached,
    destroy says so and keeps the cluster, never reporting success."""
    rh = rhplan_in(tmp_path / "infra")
    root = tmp_path / "root"
    fake = root / "ray-venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'this Ray venv is broken' >&2\nexit 1\n")
    fake.chmod(0o755)
    rh.write(cluster_hcl("box", ["127.0.0.1"], root, ssh_block(server)))
    res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
    assert res.returncode == 1, res.describe()
    assert "this Ray venv is broken" in res.stdout, res.stdout
    a = rh.resources()["cluster.box"]["attributes"]
    assert a["hosts"]["127.0.0.1"].startswith("failed: setting up Ray"), a
    with sshd_down(server):
        res = rh("destroy", "-auto-approve")
        assert res.returncode == 1, res.describe()
        assert f"rhplan's folder {root} is left on 127.0.0.1" in res.stdout, res.stdout
        assert "run destroy again" in res.stdout, res.stdout
        assert "cluster.box" in rh.resources()
        assert (root / ".rhplan-cluster").is_file()
    rh("destroy", "-auto-approve").ok()
    assert not root.exists()
    assert rh.resources() == {}


def test_a_cluster_whose_ray_failed_to_start_is_recorded_and_destroyed(rh: Any) -> None:
    """The host is set up (here: rhplan's folder), then Ray cannot start (here: a file
    where a leftover temp dir of this cluster would be, which rhplan refuses to remove):
    the cluster is recorded with Ray stopped, so a plan starts it and destroy removes
    the folder."""
    rh.write('cluster "main" {\n  provider = "local"\n}\n')
    root = rh.cluster_dir("main")
    blocker = Path(temp_dir_prefix(str(root)) + "blocker")
    blocker.parent.mkdir(mode=0o700, exist_ok=True)
    blocker.write_text("not a folder\n")
    try:
        res = rh("apply", "-auto-approve")
        assert res.returncode == 1, res.describe()
        assert f"making Ray's temp dir on localhost: not removed: Ray's temp dir {blocker} " \
            "is not a folder" in res.stdout, res.stdout
        cluster = rh.resources()["cluster.main"]["attributes"]
        assert cluster["ray_status"] == "stopped", cluster
        plan = rh("plan", "-detailed-exitcode")
        assert plan.returncode == 2 and "cluster.main will be updated in-place" in plan.stdout, (
            plan.describe())
        res = rh("destroy", "-auto-approve")
        assert res.returncode == 0 and "1 destroyed" in res.stdout, res.describe()
        assert not root.exists()
        assert rh.resources() == {}
    finally:
        if blocker.is_file():
            blocker.unlink()


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_an_ssh_cluster_whose_folder_vanished_under_its_ray_is_repaired_or_destroyed(
        server: SSHServer, tmp_path: Path, rh: Any) -> None:
    """rhplan's folder (Ray venv, token, marker) is removed on the host while its Ray
    runs: the plan still reads the host and offers to set it up again; destroy stops
    that Ray by its temp dir, with the host's own python."""
    root = tmp_path / "root"
    provision_ray_venv(root)
    rh.write(cluster_hcl("box", ["127.0.0.1"], root, ssh_block(server)))
    rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
    temp_dirs = [temp_dir_for(str(root))]
    head = cluster_processes(temp_dirs, root)
    assert head
    token = Path(rh.resources()["cluster.box"]["private"]["ray"]["ray_driver_token_path"])
    shutil.rmtree(root)
    plan = rh("plan", "-detailed-exitcode")
    assert plan.returncode == 2, plan.describe()
    assert "# cluster.box will be updated in-place" in plan.stdout, plan.stdout
    assert "rhplan's folder is gone" in plan.stdout, plan.stdout
    res = rh("destroy", "-auto-approve", timeout=APPLY_TIMEOUT)
    assert res.returncode == 0 and "1 destroyed" in res.stdout, res.describe()
    assert_nothing_left(rh, root, temp_dirs, None, token)
    assert not any(alive(pid) for pid in head)
