"""import (issue 14 item 3): adopt an env folder that exists on a cluster, with the
command (rhplan import ADDR ID) and with an import block, on a real local cluster
(real Ray, a real venv). Adopting rebuilds nothing: the venv stays (same inode); the
next apply only changes what differs from the configuration (the servlet is started
again under rhplan's identity).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

CLUSTER = 'cluster "c" {\n  provider = "local"\n}\n\n'
ENV = 'env "a" {\n  cluster  = cluster.c\n  reqs     = []\n  env_vars = { K = "v" }\n}\n\n'
IMPORT = 'import {\n  to = env.a\n  id = "a"\n}\n'


@pytest.mark.long  # its own real local cluster (20-30 s); the plan tests here run by default
def test_import_an_env_folder(rh: Any) -> None:
    rh.write(CLUSTER + ENV)
    rh("apply", "-auto-approve").ok()
    venv = rh.env_dir("c", "a")
    inode = os.stat(venv / "bin" / "python", follow_symlinks=False).st_ino

    # the command: forget it, adopt it again
    rh("state", "rm", "env.a").ok()
    out = rh("import", "env.a", "a").ok().stdout
    assert 'env.a: Importing from ID "a"...' in out and "Import complete" in out, out
    assert rh.resources()["env.a"]["attributes"]["path"] == str(venv)
    shown = rh("plan", "-no-color").ok().stdout
    assert "# env.a will be updated in-place" in shown, shown
    assert "0 to add, 1 to change, 0 to destroy" in shown, shown
    rh("apply", "-auto-approve").ok()
    assert "No changes." in rh("plan").ok().stdout
    assert os.stat(venv / "bin" / "python", follow_symlinks=False).st_ino == inode

    # mistakes: one line each
    msg = rh("import", "env.a", "a").error_line()
    assert msg == ("Error: import: env.a is already in the state; rhplan state rm it first to "
                   "import another object there"), msg
    rh("state", "rm", "env.a").ok()
    msg = rh("import", "env.a", "nope").error_line()
    assert msg.startswith("Error: import: there is no env folder ") and "nope" in msg, msg
    msg = rh("import", "env.b", "a").error_line()
    assert "import: env.b is not declared in the configuration" in msg, msg
    msg = rh("import", "cluster.c", "x").error_line()
    assert "already in the state" in msg, msg

    # an import block: the plan says so, apply records it
    rh.write(CLUSTER + ENV + IMPORT)
    shown = rh("plan", "-no-color").ok().stdout
    assert "# env.a will be updated in-place" in shown, shown
    assert '# (imported from id "a" by an import block)' in shown, shown
    assert "Plan: 1 to import, 0 to add, 1 to change, 0 to destroy." in shown, shown
    rh("apply", "-auto-approve").ok()
    assert "env.a" in rh.resources()
    assert "No changes." in rh("plan").ok().stdout  # the block stays harmless
    rh.write(CLUSTER + ENV + IMPORT.replace('"a"', '"gone"').replace("env.a", "env.b")
             + ENV.replace('"a"', '"b"'))
    msg = rh("plan").error_line()
    assert msg.startswith(f"Error: main.hcl:{(CLUSTER + ENV).count(chr(10)) + 1}: import: "
                          "there is no env folder"), msg
    rh("destroy", "-auto-approve").ok()


@pytest.mark.long  # 45 s; the local test covers the same adoption
def test_import_an_env_folder_over_ssh(tmp_path: Path, rhplan_in: Any) -> None:
    """The same adoption on an ssh cluster (real sshd on 127.0.0.1): the env folder is
    found and read over SSH, and the next apply keeps its venv; then the cluster itself,
    running rhplan's Ray, is adopted by its head's address (its Ray is started again by
    the next apply, the env's venv kept)."""
    from ssh_cluster import cluster_hcl, ssh_block
    from sshd import SSHServer, ensure_sshd_installed

    ensure_sshd_installed()
    with SSHServer() as server:
        rh = rhplan_in(tmp_path / "infra")
        root = tmp_path / "root"
        cluster = cluster_hcl("c", ["127.0.0.1"], root, ssh_block(server))
        rh.write(cluster + ENV)
        try:
            rh("apply", "-auto-approve").ok()
            venv = root / "envs" / "a"
            inode = os.stat(venv / "bin" / "python", follow_symlinks=False).st_ino
            rh("state", "rm", "env.a").ok()
            rh.write(cluster + ENV + IMPORT)
            shown = rh("plan", "-no-color").ok().stdout
            assert "Plan: 1 to import, 0 to add, 1 to change, 0 to destroy." in shown, shown
            rh("apply", "-auto-approve").ok()
            assert "No changes." in rh("plan").ok().stdout
            assert os.stat(venv / "bin" / "python", follow_symlinks=False).st_ino == inode

            # the cluster too: forgotten, then adopted by its head's address
            rh.write(cluster + ENV)
            rh("state", "rm", "env.a", "cluster.c").ok()
            msg = rh("import", "cluster.c", "10.0.0.9").error_line()
            assert "an ssh cluster's id is its head's address" in msg, msg
            out = rh("import", "cluster.c", "127.0.0.1").ok().stdout
            assert "cluster.c: Import complete" in out, out
            rh("import", "env.a", "a").ok()
            shown = rh("plan", "-no-color").ok().stdout
            assert "# cluster.c will be updated in-place" in shown, shown
            assert "0 to add, 2 to change, 0 to destroy" in shown, shown
            rh("apply", "-auto-approve").ok()
            assert "No changes." in rh("plan").ok().stdout
            assert os.stat(venv / "bin" / "python", follow_symlinks=False).st_ino == inode
        finally:
            rh("destroy", "-auto-approve")


@pytest.mark.long  # ~1-2 min: a Ray venv, a moto server and an sshd
def test_import_ec2_instances_by_tag(moto: Any, tmp_path: Path, rhplan_in: Any) -> None:
    """EC2 instances launched outside rhplan (moto) are adopted by tag: tagged as the
    cluster's, reached only through proxy_command to a local sshd, set up; nothing is
    launched, and the next apply starts Ray on them."""
    from aws_cluster import aws_hcl, x86_image
    from motoserver import aws_env
    from ssh_cluster import linked_ray_root, provision_ray_venv
    from sshd import SSHServer, ensure_sshd_installed

    ensure_sshd_installed()
    shared = tmp_path / "ray"
    provision_ray_venv(shared)
    root = linked_ray_root(shared / "ray-venv", tmp_path)
    ami = x86_image(moto)
    ec2 = moto.client("ec2")
    launched = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="m6i.large",
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                     {"Key": "pool", "Value": "adopt-me"}]}])
    ids = [i["InstanceId"] for i in launched["Instances"]]

    def live() -> set[str]:
        return {i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
                for i in r["Instances"]
                if i["State"]["Name"] not in ("terminated", "shutting-down")}

    before = live()
    with SSHServer() as server:
        rh = rhplan_in(tmp_path / "infra", env=aws_env())
        rh.write(aws_hcl(moto, server, root, tmp_path / "proxy.log", ami, n=1,
                         itype="m6i.large"))
        try:
            msg = rh("import", "cluster.rh-cpu", "tag:pool=nobody").error_line()
            assert "no running EC2 instance matches 'tag:pool=nobody'" in msg, msg
            rh("import", "cluster.rh-cpu", "tag:pool=adopt-me").ok()
            recorded = rh.resources()["cluster.rh-cpu"]["attributes"]
            assert recorded["instance_ids"] == ids, recorded
            shown = rh("plan", "-no-color").ok().stdout
            assert "# cluster.rh-cpu will be updated in-place" in shown, shown
            rh("apply", "-auto-approve").ok()
            assert "No changes." in rh("plan").ok().stdout
            assert live() == before  # nothing launched
        finally:
            out = rh("destroy", "-auto-approve")
    assert out.returncode == 0, out.describe()
    assert not live() & set(ids)  # destroy terminated the adopted instances
