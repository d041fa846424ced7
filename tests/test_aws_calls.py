"""How many DescribeInstances calls each phase of an EC2 cluster makes: each one of a
1,000-instance cluster costs seconds on both ends (bench/aws_scale.py), so a change or a
destroy acts on the describe its own refresh made, and waits for termination by asking
only for the instances not terminated yet.

moto's instances have no sshd: these runs use the test provider aws_launch_only
(tests/plugins: the aws provider's EC2 side, launch, tag, terminate; never SSH), as
tests/test_faults.py does; tests/test_aws_provider.py runs the whole chain.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from motoserver import MotoServer, aws_env
from test_aws_provider import api_calls, x86_image

N = 12


def cluster_hcl(moto: MotoServer, ami: str, key: Path, team: str) -> str:
    return f"""
provider "aws" {{
  region       = "us-east-1"
  endpoint_url = "{moto.url}"
}}

cluster "big" {{
  provider      = "aws_launch_only"
  instance_type = "m6i.large"
  num_instances = {N}
  image_id      = "{ami}"
  tags          = {{ team = "{team}" }}
  allowed_cidrs = ["198.51.100.0/24"]
  ssh {{
    user           = "ubuntu"
    private_key    = "{key}"
    host_key_check = "trust_on_first_use"
  }}
}}
"""


def live(moto: MotoServer, lineage: str) -> list[dict[str, Any]]:
    pages = moto.client("ec2").get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:rhplan:lineage", "Values": [lineage]}])
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] != "terminated"]


def test_each_phase_describes_the_instances_once(moto: MotoServer, tmp_path: Path,
                                                 rhplan_in: Any) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ami = x86_image(moto)
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    logs = iter(tmp_path / f"api-{i}.log" for i in range(10))

    def run(*args: str) -> tuple[str, dict[str, int]]:
        log = next(logs)
        out = rh(*args, env={"RHPLAN_AWS_API_LOG": str(log)}).ok().stdout
        return out, api_calls(log)

    rh.write(cluster_hcl(moto, ami, key, "ml"))
    try:
        out, calls = run("apply", "-auto-approve")
        assert "Resources: 1 added" in out, out
        # one to find instances a killed apply launched, one for the launched ones' IPs
        assert calls["DescribeInstances"] == 2, calls
        lineage = rh.state()["lineage"]
        assert len(live(moto, lineage)) == N

        out, calls = run("plan")
        assert "No changes." in out and calls["DescribeInstances"] == 1, (out, calls)

        rh.write(cluster_hcl(moto, ami, key, "ml2"))
        out, calls = run("apply", "-auto-approve")
        assert "Resources: 0 added, 1 changed, 0 destroyed." in out, out
        # the refresh's describe serves the update too (it made three before)
        assert calls == {"DescribeInstances": 1, "DescribeSecurityGroups": 2,
                         "CreateTags": 1}, calls
        insts = live(moto, lineage)
        assert len(insts) == N and all(
            {t["Key"]: t["Value"] for t in i["Tags"]}["team"] == "ml2" for i in insts)
        attrs = rh.resources()["cluster.big"]["attributes"]
        assert sorted(attrs["instance_ids"]) == sorted(i["InstanceId"] for i in insts)
        out, calls = run("plan")
        assert "No changes." in out, out

        out, calls = run("destroy", "-auto-approve")
        assert "1 destroyed" in out, out
        # the refresh's, then the wait for termination (only the instances not yet gone)
        assert calls["DescribeInstances"] == 2 and calls["TerminateInstances"] == 1, calls
        assert live(moto, lineage) == []
        assert not rh.resources()
    finally:
        rh.keep = False
        if rh.resources():
            rh("destroy", "-auto-approve")
