"""Destroy leaves nothing behind, whatever state an earlier apply left the cluster in:
instances, security groups and key pairs of an aws cluster whose host setup failed
(moto), Ray heads whose folder vanished, servlets whose Ray is down, and the local
copies of Ray tokens. Real parts throughout: a moto server, the CLI in subprocesses,
real Ray on this machine."""
from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from motoserver import MotoServer, aws_env, free_port
from test_aws_provider import PROXY, leftovers, x86_image
from test_ssh_provider import hcl_str

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
          ssh {{
            user          = "nobody"
            private_key   = {hcl_str(str(key))}
            proxy_command = {hcl_str(proxy)}
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
