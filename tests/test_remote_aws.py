"""An aws (moto) cluster called from a caller whose only way out is the SSH proxy.

The cluster is launched through a real moto server; its instance is reached through
a `proxy_command` in the aws provider's `%i` form that goes through a UNIX socket
relay (tests/remote_relay.py) to the test sshd, as SSM or a bastion would. The callers
run under `unshare --net`: no moto, no Ray port, only the proxy. They use the servlet
(call with streamed output, put/get/keys/delete/status/run), `rhplan status` and
`rhplan run` (exit code passed through).
"""
from __future__ import annotations

import json
import shlex
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from motoserver import MotoServer, aws_env
from sshd import SSHServer
from test_remote_ssh_only import (
    APPLY_TIMEOUT,
    BASE_PY,
    HERE,
    Box,
    Relay,
    _provision_ray_venv,
    _unshare_ok,
)

pytest.importorskip("paramiko")


@pytest.fixture(scope="module")
def aws_box(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory,
            rhplan_in: Any) -> Iterator[Box]:
    why = _unshare_ok()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("remote-aws")
    server = SSHServer(base / "sshd").start()
    relay = Relay(base / "relay.sock", server)
    relay.start()
    root = base / "cluster-root"
    _provision_ray_venv(root)
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
          ssh {{
            user          = {json.dumps(server.user)}
            private_key   = {json.dumps(server.client_key)}
            proxy_command = {json.dumps(proxy)}
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
    try:
        rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
        yield Box(rh, relay, root, scripts, server)
    finally:
        if relay.proc is None:
            relay.start()
        res = rh("destroy", "-auto-approve", timeout=300)
        relay.kill()
        server.close()
        assert res.returncode == 0, res.describe()


def test_aws_cluster_through_its_proxy_only(aws_box: Box) -> None:
    attrs = aws_box.rh.resources()["cluster.far"]["attributes"]
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
        emit(route=s.route, ray_reachable=ray_reachable, where=s.call(hello),
             got=s.get("k"), keys=s.keys(), deleted=s.delete("k"),
             ran=s.run(["sh", "-c", "exit 4"])["returncode"], env=s.status()["env"])
    """)
    assert got["route"] == "ssh" and got["ray_reachable"] is False
    assert got["where"] == "ec2" and "hello from ec2" in got["_stdout"]
    assert got["got"] == [1, 2] and got["keys"] == ["k"] and got["deleted"] is True
    assert got["ran"] == 4 and got["env"] == "remote"
    st = aws_box.cli("status")
    assert st.returncode == 0 and "servlet   alive" in st.stdout, st.stdout + st.stderr
    run = aws_box.cli("run", "remote", "--", "sh", "-c", "echo $WHERE; exit 9")
    assert run.returncode == 9 and run.stdout == "ec2\n", run.stdout + run.stderr
    # the proxy was given the instance id (%i), as an SSM proxy would be
    seen = Path(str(aws_box.relay.sock) + ".log").read_text().split()
    assert any(w.startswith("i-") for w in seen), seen
