"""Which launch made an instance, read from its ClientToken (instances.adopt): the next
launch skips every generation whose token EC2 already knows (live or terminated: EC2
answers a spent token with that launch's instances), and a killed apply's instances are
adopted in launch order. Instances carry no rhplan:generation tag any more (each tag
costs moto a walk of every tag per instance it renders); an older rhplan's tag is still
read. Against the real moto server: its DescribeInstances returns each ClientToken.
"""
from __future__ import annotations

import pytest
from aws_cluster import x86_image
from motoserver import MotoServer, aws_env


def test_adopt_orders_orphans_and_skips_spent_generations_by_client_token(
        moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from rhplan_aws import ec2, instances
    from rhplan_aws.account import Account, client_token

    for k, v in aws_env({}).items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(k, raising=False)
    lineage, addr = "generations-by-token", "cluster.gens"
    client = ec2.client("us-east-1", None, moto.url)
    ami = x86_image(moto)

    def launch(count: int, gen: int | None, extra_tags: dict[str, str] | None = None,
               token: str | None = None) -> list[str]:
        tags = {ec2.LINEAGE_TAG: lineage, ec2.ADDRESS_TAG: addr, **(extra_tags or {})}
        return [i["InstanceId"] for i in client.run_instances(
            ImageId=ami, InstanceType="t3.micro", MinCount=count, MaxCount=count,
            ClientToken=token or client_token(lineage, addr, gen or 0),
            TagSpecifications=[{"ResourceType": "instance", "Tags": ec2.tag_list(tags)}]
        )["Instances"]]

    # launched in this order, numbered out of it: generation 1 first, then 0
    gen1 = launch(1, 1)
    gen0 = launch(2, 0)
    # an older rhplan's launch: the number as a tag (its token is not ours to compute)
    old2 = launch(1, None, {ec2.GENERATION_TAG: "2"}, token="older-rhplan-token")
    # generation 3 launched and was cleaned up: its token is spent all the same
    gone3 = launch(1, 3)
    client.terminate_instances(InstanceIds=gone3)
    every = gen1 + gen0 + old2 + gone3
    account = Account(lambda: None)
    private = {"lineage": lineage, "endpoint_url": moto.url, "region": "us-east-1",
               "generation": 0}
    attrs = {"name": "gens", "region": "us-east-1"}
    try:
        found = instances.adopt(account, attrs, private)
        order = [i["InstanceId"] for i in found]
        assert sorted(order[:2]) == sorted(gen0) and order[2:] == gen1 + old2
        assert private["generation"] == 4  # 0-3 are spent (3 by a terminated instance)
        by_id = {i["InstanceId"]: i for i in found}
        assert ec2.GENERATION_TAG not in ec2.tag_dict(by_id[gen0[0]])

        # what rhplan launches itself carries no generation tag, and the token of its
        # generation, which the next adopt counts as spent
        private["key_name"] = client.create_key_pair(KeyName=lineage)["KeyName"]
        private["security_group_id"] = client.create_security_group(
            GroupName=lineage, Description="test_aws_generations")["GroupId"]
        launched = instances.launch(account, client, dict(
            attrs, image_id=ami, resolved_instance_type="t3.micro", tags_all={"team": "ml"}),
            private, 1, image={"RootDeviceName": "/dev/sda1"})
        every += [i["InstanceId"] for i in launched]
        tags = ec2.tag_dict(launched[0])
        assert tags == {"Name": "rhplan-gens", "team": "ml", ec2.LINEAGE_TAG: lineage,
                        ec2.ADDRESS_TAG: addr}
        assert launched[0]["ClientToken"] == client_token(lineage, addr, 4)
        assert private["generation"] == 5
        private["generation"] = 4  # as if the state write after the launch was lost
        assert instances.adopt(account, attrs, private)[-1]["InstanceId"] == \
            launched[0]["InstanceId"]
        assert private["generation"] == 5
    finally:
        client.terminate_instances(InstanceIds=every)
        client.delete_key_pair(KeyName=lineage)
        if private.get("security_group_id"):
            client.delete_security_group(GroupId=private["security_group_id"])

