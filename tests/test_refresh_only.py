"""-refresh-only (issue 14 item 8), Terraform's semantics: `plan -refresh-only` shows only
what changed outside rhplan in the recorded resources and plans no action;
`apply -refresh-only` (or a saved refresh-only plan) records what refresh read in the
state and changes no remote object.

A real EC2 cluster of three instances in moto (the test provider aws_launch_only: the
aws provider's EC2 side, hosts never contacted; moto's instances have no sshd), one
instance terminated outside rhplan, then another."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from aws_cluster import live, x86_image
from motoserver import MotoServer, aws_env


def _hcl(moto: MotoServer, ami: str, key: Path) -> str:
    return f"""
provider "aws" {{
  region       = "us-east-1"
  endpoint_url = "{moto.url}"
}}

cluster "pool" {{
  provider      = "aws_launch_only"
  instance_type = "m6i.large"
  num_instances = 3
  image_id      = "{ami}"
  allowed_cidrs = ["198.51.100.0/24"]
  ssh {{
    user           = "ubuntu"
    private_key    = "{key}"
    host_key_check = "trust_on_first_use"
  }}
}}
"""


def test_refresh_only_records_drift_and_changes_nothing(moto: MotoServer, tmp_path: Path,
                                                        rhplan_in: Any) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    rh.write(_hcl(moto, x86_image(moto), key))
    try:
        rh("apply", "-auto-approve").ok()
        lineage = rh.state()["lineage"]
        recorded = rh.resources()["cluster.pool"]["attributes"]
        assert len(live(moto, lineage)) == 3

        res = rh("plan", "-refresh-only", "-detailed-exitcode")
        assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
        assert "still matches the configuration" in res.stdout

        gone, ip = recorded["instance_ids"][1], recorded["ips"][1]
        moto.client("ec2").terminate_instances(InstanceIds=[gone])  # outside rhplan
        found = "terminated outside rhplan"

        stream = [json.loads(x) for x in rh("plan", "-json").ok().stdout.splitlines()]
        drifts = [(m["change"]["resource"]["addr"], m["change"]["action"], m["type"])
                  for m in stream if m["type"] in ("resource_drift", "planned_change")]
        assert drifts == [("cluster.pool", "update", "resource_drift"),
                          ("cluster.pool", "update", "planned_change")], drifts

        res = rh("plan", "-refresh-only", "-detailed-exitcode", "-out", "r.plan")
        assert res.returncode == 2, res.describe()
        out = res.stdout
        assert "# cluster.pool has changed" in out, out
        assert f'"{ip}" = "ready" -> "{found}"' in out, out  # the attribute diff of hosts
        assert "This is a refresh-only plan, so rhplan will not take any actions" in out
        assert "Plan:" not in out and "will be updated" not in out, out

        shown = json.loads(rh("show", "-json", "r.plan").ok().stdout)
        assert shown["resource_changes"] == []
        [planned] = shown["planned_values"]["root_module"]["resources"]  # what was read
        assert planned["address"] == "cluster.pool" and planned["values"]["hosts"][ip] == found
        [drift] = shown["resource_drift"]
        assert drift["address"] == "cluster.pool" and drift["change"]["actions"] == ["update"]
        assert drift["change"]["before"]["hosts"][ip] == "ready"
        assert drift["change"]["after"]["hosts"][ip] == found
        assert rh.resources()["cluster.pool"]["attributes"] == recorded  # a plan writes none

        # a normal plan would repair it; refresh-only records it and touches nothing
        assert "Plan: 0 to add, 1 to change" in rh("plan").ok().stdout
        out = rh("apply", "r.plan").ok().stdout
        assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed." in out, out
        now = rh.resources()["cluster.pool"]["attributes"]
        assert now == {**recorded, "hosts": {**recorded["hosts"], ip: found}}, now
        assert len(live(moto, lineage)) == 2  # no instance launched again
        res = rh("plan", "-refresh-only", "-detailed-exitcode")
        assert res.returncode == 0 and "No changes." in res.stdout, res.describe()

        # without a saved plan: apply -refresh-only asks, as apply does
        other = recorded["ips"][2]
        moto.client("ec2").terminate_instances(InstanceIds=[recorded["instance_ids"][2]])
        res = rh("apply", "-refresh-only", input="no\n")
        assert res.returncode == 1 and "Apply cancelled." in res.stdout, res.describe()
        assert rh.resources()["cluster.pool"]["attributes"]["hosts"][other] == "ready"
        out = rh("apply", "-refresh-only", "-auto-approve").ok().stdout
        assert f'"{other}" = "ready" -> "{found}"' in out, out
        assert "Apply complete! Resources: 0 added, 0 changed, 0 destroyed." in out, out
        assert rh.resources()["cluster.pool"]["attributes"]["hosts"][other] == found
        assert len(live(moto, lineage)) == 1
    finally:
        rh("destroy", "-auto-approve").ok()
    assert live(moto, lineage) == []


def test_refresh_only_takes_no_other_planning_mode(rh: Any) -> None:
    rh.keep = True
    rh.write('package "p" { git_url = "https://git.example.com/p.git" }\n')
    for args, words in ((("-destroy",), "-refresh-only and -destroy cannot be used together"),
                        (("-refresh=false",), "drop -refresh=false"),
                        (("-replace", "package.p"), "-replace cannot be used with")):
        line = rh("plan", "-refresh-only", *args).error_line()
        assert words in line, line
    line = rh("apply", "-refresh-only", "-destroy").error_line()  # apply checks the same
    assert "-refresh-only and -destroy cannot be used together" in line, line
