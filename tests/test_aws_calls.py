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

import pytest
from aws_cluster import api_calls, live, x86_image
from motoserver import MotoServer, aws_env

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
        # one to find instances a killed apply launched (their ids by tag: none, then
        # the tag-filtered describe, so a failing DescribeInstances fails before the
        # launch), one to wait for the launched ones to run (asking only for those not
        # running yet: moto's run at once, and its launch answer holds their IPs, so
        # none is described in full again)
        assert calls["DescribeTags"] == 1 and calls["DescribeInstances"] == 2, calls
        lineage = rh.state()["lineage"]
        assert len(live(moto, lineage)) == N

        out, calls = run("plan")
        assert "No changes." in out, out
        # the state's instance ids (by tag), then those instances
        assert calls["DescribeTags"] == 1 and calls["DescribeInstances"] == 1, calls

        rh.write(cluster_hcl(moto, ami, key, "ml2"))
        out, calls = run("apply", "-auto-approve")
        assert "Resources: 0 added, 1 changed, 0 destroyed." in out, out
        # the refresh's describes serve the update too: its instances (it made three
        # before) and its security group's rules (two)
        assert calls == {"DescribeTags": 1, "DescribeInstances": 1,
                         "DescribeSecurityGroups": 1, "CreateTags": 1}, calls
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


def test_waiting_for_a_launch_describes_only_what_it_does_not_know(
        moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """wait_running polls for the instances not running yet (moto's run at once: an
    empty answer) and describes in full only those whose address is not known for
    good: none when the launch answer holds public IPs, all of them when it holds
    only private ones (as EC2's does) or when they were started again (new IPs)."""
    from rhplan_aws import ec2

    for k, v in aws_env({}).items():  # moto's fake credentials, no profile
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(k, raising=False)
    client = ec2.client("us-east-1", None, moto.url)
    described: list[int] = []  # instances in each DescribeInstances answer

    def count(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "DescribeInstances":
            described.append(sum(len(r["Instances"]) for r in parsed["Reservations"]))

    launched = client.run_instances(ImageId=x86_image(moto), InstanceType="t3.micro",
                                    MinCount=3, MaxCount=3)["Instances"]
    ids = [i["InstanceId"] for i in launched]
    client.meta.events.register("after-call.ec2.DescribeInstances", count)
    try:
        assert all(i["State"]["Name"] == "pending" and i.get("PublicIpAddress")
                   for i in launched)
        running = ec2.wait_running(client, launched, "starting")
        assert [i["InstanceId"] for i in running] == ids and described == [0]

        described.clear()  # EC2's launch answer: no public IP yet
        private_only = [{k: v for k, v in i.items() if k != "PublicIpAddress"}
                        for i in launched]
        running = ec2.wait_running(client, private_only, "starting")
        assert described == [0, 3] and all(i["PublicIpAddress"] for i in running)
        assert all(i["State"]["Name"] == "running" for i in running)

        described.clear()  # started again: asked anyway
        ec2.wait_running(client, running, "starting", stale=ids[:1])
        assert described == [0, 1]
    finally:
        client.meta.events.unregister("after-call.ec2.DescribeInstances", count)
        client.terminate_instances(InstanceIds=ids)


def test_the_fast_parser_reads_what_botocore_reads(moto: MotoServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """ec2_parse.FastEC2Parser, on moto's answers to the calls it reads (a launch of
    tagged instances with a disk, a describe, the tags) and one it leaves to botocore,
    makes the very dicts botocore's EC2 parser makes; an error answer reads the same."""
    from botocore.exceptions import ClientError
    from botocore.parsers import EC2QueryParser
    from rhplan_aws import ec2
    from rhplan_aws.ec2_parse import FastEC2Parser

    for k, v in aws_env({}).items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(k, raising=False)
    client = ec2.client("us-east-1", None, moto.url)
    answers: list[tuple[Any, dict[str, Any]]] = []

    def keep(operation_model: Any, response_dict: dict[str, Any], **_: Any) -> None:
        answers.append((operation_model, dict(response_dict)))

    client.meta.events.register("before-parse.ec2.*", keep)
    tags = [{"Key": "rhplan:lineage", "Value": "parser-test"}, {"Key": "team", "Value": ""}]
    try:
        ids = [i["InstanceId"] for i in client.run_instances(
            ImageId=x86_image(moto), InstanceType="t3.micro", MinCount=3, MaxCount=3,
            BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 9}}],
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"]]
        client.describe_instances(InstanceIds=ids)
        client.describe_tags(Filters=[{"Name": "resource-id", "Values": ids}])
        client.describe_security_groups()
        with pytest.raises(ClientError):
            client.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    finally:
        client.meta.events.unregister("before-parse.ec2.*", keep)
    assert len(answers) == 5
    for model, response in answers:
        parser = FastEC2Parser(timestamp_parser=str)
        # the three big answers are read by the compiled form, not handed back
        assert (parser._handler(model.output_shape) is not None) == (model.name in (
            "RunInstances", "DescribeInstances", "DescribeTags")), model.name
        fast = parser.parse(response, model.output_shape)
        slow = EC2QueryParser(timestamp_parser=str).parse(response, model.output_shape)
        assert fast == slow, model.name
    client.terminate_instances(InstanceIds=ids)


def test_a_lineage_instance_gone_between_its_tags_and_its_describe(
        moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """describe_lineage lists the ids by tag, then describes them: an id EC2 no longer
    knows by then (a terminated instance it forgot) fails that describe, and the
    tag-filtered describe answers instead."""
    from rhplan_aws import ec2

    for k, v in aws_env({}).items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(k, raising=False)
    client = ec2.client("us-east-1", None, moto.url)
    tag = [{"Key": ec2.LINEAGE_TAG, "Value": "gone-between"}]
    ids = [i["InstanceId"] for i in client.run_instances(
        ImageId=x86_image(moto), InstanceType="t3.micro", MinCount=2, MaxCount=2,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tag}])["Instances"]]
    try:
        assert sorted(i["InstanceId"] for i in ec2.describe_lineage(client, "gone-between")
                      ) == sorted(ids)
        monkeypatch.setattr(ec2, "lineage_ids", lambda c, lineage: [*ids, "i-0feedc0ffee000000"])
        assert sorted(i["InstanceId"] for i in ec2.describe_lineage(client, "gone-between")
                      ) == sorted(ids)
        # the fallback asks by the lineage's tag, not for the listed ids
        assert ec2.describe_lineage(client, "no-such-lineage") == []
    finally:
        client.terminate_instances(InstanceIds=ids)
