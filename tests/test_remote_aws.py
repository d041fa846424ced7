"""An aws (moto) cluster's whole lifecycle from a caller whose only ways out are the
EC2 API and the SSH proxy.

The caller runs in a network namespace of its own (`unshare --net`): its loopback
holds only a forwarder to the moto server (tests/support/remote_relay.py `inside`, as a laptop
reaches the AWS API), and the cluster's instance is reached through a `proxy_command`
in the aws provider's `%i` form that goes through a UNIX socket relay to the test sshd,
as SSM or a bastion would. From there: apply, plan (no changes), the servlet (call
with streamed output, put/get/keys/delete/status/run) on one SSH connection, `rhplan
status`, `rhplan run` (exit code passed through) and destroy. The head's Ray port is
shown unreachable from there. After destroy: the instance is terminated, the state is
empty, and nothing is left on either side (no process of the cluster, its gateway
included; no SSH session on the head's sshd; no proxy command on the caller's side).
"""
from __future__ import annotations

import json
import shlex
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from motoserver import MotoServer, aws_env
from netns_caller import (
    BASE_PY,
    HERE,
    Box,
    Relay,
    check_nothing_left,
    destroy_from,
    why_no_netns,
)
from ssh_cluster import provision_ray_venv
from sshd import SSHServer

pytest.importorskip("paramiko")


@pytest.fixture(scope="module")
def aws_box(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory,
            rhplan_in: Any) -> Iterator[Box]:
    why = why_no_netns()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("remote-aws")
    server = SSHServer(base / "sshd").start()
    relay = Relay(base / "relay.sock", server)
    relay.start()
    api = Relay(base / "api.sock", SimpleNamespace(host="127.0.0.1", port=moto.port))
    api.start()
    root = base / "cluster-root"
    provision_ray_venv(root)
    images = moto.client("ec2").describe_images()["Images"]
    ami = sorted(i["ImageId"] for i in images if i.get("Architecture") == "x86_64")[0]
    proxy = shlex.join([sys.executable, str(HERE / "remote_relay.py"), "connect",
                        str(relay.sock), "%h", "%i"])
    rh = rhplan_in(base / "infra", env=aws_env())
    rh.write(textwrap.dedent(f"""
        provider "aws" {{
          region       = "us-east-1"
          endpoint_url = {json.dumps(moto.url)}
        }}

        cluster "far" {{
          provider      = "aws"
          instance_type = "CPU:2+"
          num_instances = 1
          image_id      = {json.dumps(ami)}
          root_dir      = {json.dumps(str(root))}
          python        = {json.dumps(BASE_PY)}
          allowed_cidrs = ["198.51.100.0/24"]
          ssh {{
            user           = {json.dumps(server.user)}
            private_key    = {json.dumps(server.client_key)}
            proxy_command  = {json.dumps(proxy)}
            host_key_check = "trust_on_first_use"  # moto's console shows no keys
          }}
        }}

        env "remote" {{
          cluster  = cluster.far
          reqs     = ["pip:six==1.16.0"]
          env_vars = {{ WHERE = "ec2" }}
        }}
    """))
    scripts = base / "scripts"
    scripts.mkdir()
    # the namespace's loopback: 127.0.0.1:<moto's port> leads to moto, nothing else
    isolate = ["unshare", "--net", sys.executable, str(HERE / "remote_relay.py"), "inside",
               str(moto.port), str(api.sock), "--"]
    box = Box(rh, relay, root, scripts, server, isolate)
    try:  # apply, and destroy below, from the namespace too: the caller needs SSH only
        box.apply()
        yield box
    finally:
        down = destroy_from(box, "cluster.far")
        own = down.recorded.get("private", {}).get("provider", {})
        ids = [i["id"] for i in own.get("instances") or []]
        states = {i["InstanceId"]: i["State"]["Name"] for r in moto.client(
            "ec2").describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]} if ids else {}
        relay.kill()
        api.kill()
        server.close()
        check_nothing_left(box, down)
        assert ids and set(states.values()) == {"terminated"}, states


@pytest.mark.long  # 28 s; SSH-only calling runs by default in test_remote_ssh_only
def test_aws_cluster_through_its_proxy_only(aws_box: Box) -> None:
    cluster = aws_box.rh.resources()["cluster.far"]
    attrs = cluster["attributes"]
    emulated = set(attrs["ips"]) | {i.get("private_ip")
                                    for i in cluster["private"]["provider"]["instances"]}
    # Ray runs on this machine (behind the test sshd): its address is one of ours, never
    # an emulated instance's, so probing it below is safe
    assert attrs["ray_address"].rpartition(":")[0] not in emulated, (attrs, emulated)
    plan = aws_box.cli("plan", "-detailed-exitcode")  # EC2 read and SSH refresh, from there
    assert plan.returncode == 0, plan.stdout + plan.stderr
    logins = aws_box.server.accepted_logins()
    got = aws_box.drive(f"""
        host, _, port = {attrs["ray_address"]!r}.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            ray_reachable = True
        except OSError:
            ray_reachable = False
        s = rhplan.servlet("remote", chdir=CHDIR)
        def hello():
            import os
            print("hello from", os.environ["WHERE"], flush=True)
            return os.environ["WHERE"]
        s.put("k", [1, 2])
        results = []
        def many():
            for i in range(10):
                results.append(s.call("operator:add", i, 1))
        threads = [threading.Thread(target=many) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join(60)
        from rhplan.hosts import ssh
        from rhplan.ray.servlets import transport
        emit(route=s.route, ray_reachable=ray_reachable, where=s.call(hello),
             got=s.get("k"), keys=s.keys(), deleted=s.delete("k"),
             ran=s.run(["sh", "-c", "exit 4"])["returncode"], env=s.status()["env"],
             n=len(results), ssh_conns=len(ssh.pooled()), gateways=len(transport.gateways()))
    """)
    assert got["route"] == "ssh" and got["ray_reachable"] is False
    assert got["where"] == "ec2" and "hello from ec2" in got["_stdout"]
    assert got["got"] == [1, 2] and got["keys"] == ["k"] and got["deleted"] is True
    assert got["ran"] == 4 and got["env"] == "remote" and got["n"] == 40
    # one SSH connection (one login) for the whole process, all threads included
    assert got["ssh_conns"] == 1 and got["gateways"] == 1
    assert aws_box.server.accepted_logins() == logins + 1
    st = aws_box.cli("status")
    assert st.returncode == 0 and "servlet   alive" in st.stdout, st.stdout + st.stderr
    run = aws_box.cli("run", "remote", "--", "sh", "-c", "echo $WHERE; exit 9")
    assert run.returncode == 9 and run.stdout == "ec2\n", run.stdout + run.stderr
    # the proxy was given the instance id (%i), as an SSM proxy would be
    seen = Path(str(aws_box.relay.sock) + ".log").read_text().split()
    assert any(w.startswith("i-") for w in seen), seen
