"""An aws cluster in the tests, on the moto server (conftest's `moto`) and reached
through PROXY to the test sshd: its HCL, an image moto knows, what rhplan left in the
account, and the EC2 calls a command made (RHPLAN_AWS_API_LOG)."""
from __future__ import annotations

import shlex
import sys
import textwrap
from pathlib import Path
from typing import Any

from motoserver import MotoServer
from ssh_cluster import BASE_PY, hcl_str
from sshd import SSHServer

# the ProxyCommand that reaches an emulated instance: the test sshd, never its address
PROXY = str(Path(__file__).parent / "aws_proxy.py")
# who the tests' security groups let in (a documentation range: moto's instances are
# never reached over the network, only through PROXY)
ALLOWED = "198.51.100.0/24"


def x86_image(moto: MotoServer) -> str:
    images = moto.client("ec2").describe_images()["Images"]
    return sorted(i["ImageId"] for i in images if i.get("Architecture") == "x86_64")[0]


def aws_hcl(moto: MotoServer, server: SSHServer, root: Path, proxy_log: Path, ami: str,
            name: str = "rh-cpu", n: int = 2, itype: str = "CPU:2+", extra: str = "",
            provider: bool = True) -> str:
    proxy = shlex.join([sys.executable, PROXY, str(proxy_log), "%h", "%i", str(server.port)])
    head = textwrap.dedent(f"""
        provider "aws" {{
          region       = "us-east-1"
          endpoint_url = {hcl_str(moto.url)}
          default_tags = {{ team = "ml" }}
        }}
    """) if provider else ""
    # these tests are about instances, not servlets: a cluster without an env of the
    # test's gets no bare default env (one venv with Ray per apply saved)
    bare = "" if "env " in extra else "create_default_env = false"
    return head + textwrap.dedent(f"""
        cluster "{name}" {{
          provider      = "aws"
          instance_type = {hcl_str(itype)}
          num_instances = {n}
          image_id      = {hcl_str(ami)}
          open_ports    = [8080]
          allowed_cidrs = ["{ALLOWED}"]
          root_dir      = {hcl_str(str(root))}
          python        = {hcl_str(BASE_PY)}
          tags          = {{ owner = "rhplan-tests" }}
          {bare}
          ssh {{
            user          = {hcl_str(server.user)}
            private_key   = {hcl_str(server.client_key)}
            proxy_command = {hcl_str(proxy)}
            # moto's console output is a fixed boot log without host keys
            host_key_check = "trust_on_first_use"
          }}
        }}
    """) + extra


def leftovers(moto: MotoServer, lineage: str) -> list[str]:
    """What rhplan made under this lineage that still exists in the account."""
    ec2 = moto.client("ec2")
    left = []
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:rhplan:lineage", "Values": [lineage]}]):
        for r in page["Reservations"]:
            left += [f"instance {i['InstanceId']} ({i['State']['Name']})" for i in r["Instances"]
                     if i["State"]["Name"] != "terminated"]
    for g in ec2.describe_security_groups()["SecurityGroups"]:
        if g["GroupName"].startswith(f"rhplan-{lineage[:8]}"):
            left.append(f"security group {g['GroupId']} {g['GroupName']}")
    for k in ec2.describe_key_pairs()["KeyPairs"]:
        if k["KeyName"].startswith(f"rhplan-{lineage[:8]}"):
            left.append(f"key pair {k['KeyName']}")
    return left


def live(moto: MotoServer, lineage: str) -> list[dict[str, Any]]:
    """The instances of this lineage that are not terminated."""
    pages = moto.client("ec2").get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:rhplan:lineage", "Values": [lineage]}])
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"]


def api_calls(log: Path) -> dict[str, int]:
    """EC2 calls by name, as RHPLAN_AWS_API_LOG wrote them."""
    counts: dict[str, int] = {}
    for line in log.read_text().split() if log.exists() else []:
        counts[line] = counts.get(line, 0) + 1
    return counts
