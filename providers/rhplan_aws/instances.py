"""The cluster's EC2 instances: launched in one call (with a ClientToken, tagged with
the state's lineage and the cluster's address), adopted when an apply that launched
them was killed, recorded, retagged, resized in place and terminated.

Launches are numbered (private["generation"]); an instance's ClientToken, which EC2
returns with it, names its launch (lineage, address, generation): adopt skips the
generations whose token is spent and orders orphans by it. Instances launched by an
older rhplan also carry the number as a tag (rhplan:generation), read as a fallback."""
from __future__ import annotations

from typing import Any

from rhplan.plugin import ProviderError
from rhplan_aws import catalog, ec2
from rhplan_aws.account import Account, address, client_token

# how old the refresh's describe may be for apply to act on it (see adopt)
ADOPT_REUSE_SECONDS = 30.0


def launch(account: Account, client: Any, attrs: dict[str, Any], private: dict, count: int,
           image: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Launch count instances in one call. A crash after it is caught by the next
    apply: it finds them by their tags (see adopt) before launching anything."""
    lineage = account.lineage(private)
    generation = int(private.get("generation") or 0)
    image = image or checked_image(client, attrs, private)
    kwargs: dict[str, Any] = dict(
        ImageId=attrs["image_id"], InstanceType=attrs["resolved_instance_type"],
        MinCount=count, MaxCount=count, KeyName=private["key_name"],
        SecurityGroupIds=[private["security_group_id"]],
        ClientToken=client_token(lineage, address(attrs), generation),
        # autostop shuts the head down; EC2 then stops (not terminates) it
        InstanceInitiatedShutdownBehavior="stop",
        TagSpecifications=[{"ResourceType": "instance", "Tags": ec2.tag_list(
            account.tags(attrs, lineage))}])
    if attrs.get("disk_size"):
        kwargs["BlockDeviceMappings"] = [{
            "DeviceName": image.get("RootDeviceName") or "/dev/sda1",
            "Ebs": {"VolumeSize": int(attrs["disk_size"]), "VolumeType": "gp3",
                    "DeleteOnTermination": True}}]
    if attrs.get("use_spot"):
        kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
    try:
        res = ec2.call(client.run_instances, f"launching {count} "
                       f"{attrs['resolved_instance_type']} instance(s) of "
                       f"{address(attrs)}", **kwargs)
    finally:
        # even a launch that failed may have launched (an answer lost or too late):
        # what is described next must be asked of EC2 again
        account.forget("aws-instances")
    private["generation"] = generation + 1
    return list(res["Instances"])


def checked_image(client: Any, attrs: dict[str, Any], private: dict) -> dict[str, Any]:
    """The image, checked once: it exists and fits the instance type's architecture."""
    images = ec2.call(client.describe_images, f"image {attrs['image_id']}",
                      ImageIds=[attrs["image_id"]])["Images"]
    if not images:
        raise ProviderError(f"image {attrs['image_id']}: InvalidAMIID.NotFound: no such "
                            f"image in {private.get('region')}")
    image = images[0]
    itype = catalog.resolve(attrs["resolved_instance_type"])
    arch = image.get("Architecture")
    if arch and arch != itype.arch:
        raise ProviderError(f"image {attrs['image_id']} is {arch} but "
                            f"{itype.name} is {itype.arch}; pick an image for {itype.arch}")
    return image


def adopt(account: Account, attrs: dict[str, Any], private: dict) -> list[dict[str, Any]]:
    """Instances of this cluster that exist but are not recorded (an apply that was
    killed after launching them): recorded ones first, then by launch order. The
    describe is the one this run's refresh made, if any (under the state lock nothing
    else launches into this lineage, and this run's launches and terminations drop
    it), so a change to 1,000 instances describes them once, not twice. Only a
    recent one: an apply that waited at its prompt describes again."""
    every = account.owned(attrs, private, max_age=ADOPT_REUSE_SECONDS, gone_too=True)
    owned = [i for i in every if i["State"]["Name"] not in ("terminated", "shutting-down")]
    recorded = [i["id"] for i in private.get("instances") or []]
    known = {i["InstanceId"]: i for i in owned}
    orphans = [i for i in owned if i["InstanceId"] not in recorded]
    # The next launch must not reuse a token that already launched instances, live or
    # not: EC2 answers a spent token with the instances it launched then, even
    # terminated ones (a launch whose answers were lost and that was cleaned up).
    lineage, addr = account.lineage(private), address(attrs)
    spent = {i.get("ClientToken") for i in every} | {
        client_token(lineage, addr, g) for g in _generation_tags(every)}
    gen = int(private.get("generation") or 0)
    while client_token(lineage, addr, gen) in spent:
        gen += 1
    private["generation"] = gen
    of = generations(lineage, addr, gen + len(spent))
    orphans.sort(key=lambda i: (generation_of(i, of), int(i.get("AmiLaunchIndex") or 0),
                                i["InstanceId"]))
    return [known[i] for i in recorded if i in known] + orphans


def record(attrs: dict[str, Any], private: dict, instances: list[dict[str, Any]]) -> None:
    private["instances"] = [{"id": i["InstanceId"], "ip": ec2.address_of(i),
                             "private_ip": i.get("PrivateIpAddress"),
                             "type": i.get("InstanceType")} for i in instances]
    attrs["instance_ids"] = [i["id"] for i in private["instances"]]
    attrs["ips"] = [i["ip"] for i in private["instances"]]


def retag(client: Any, old: dict[str, str], new: dict[str, str], ids: list[str]) -> None:
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    gone = [k for k in old if k not in new]
    if changed:
        ec2.call(client.create_tags, "tagging instances", Resources=ids,
                 Tags=ec2.tag_list(changed))
    if gone:
        ec2.call(client.delete_tags, "untagging instances", Resources=ids,
                 Tags=[{"Key": k} for k in gone])


def resize(client: Any, ids: list[str], itype: str) -> None:
    ec2.call(client.stop_instances, "stopping instances to resize them", InstanceIds=ids)
    ec2.wait_until(client, ids, {"stopped"}, "stopping instances to resize them")
    for iid in ids:  # EC2 modifies one instance per call
        ec2.call(client.modify_instance_attribute, f"resizing {iid} to {itype}",
                 InstanceId=iid, InstanceType={"Value": itype})
    ec2.call(client.start_instances, "starting resized instances", InstanceIds=ids)


def terminate(account: Account, client: Any, ids: list[str]) -> None:
    if ids:
        try:
            ec2.call(client.terminate_instances, f"terminating {len(ids)} instance(s)",
                     InstanceIds=ids)
        finally:
            account.forget("aws-instances")


def generations(lineage: str, addr: str, upto: int) -> dict[str, int]:
    """The ClientToken of each launch of the cluster up to generation `upto`."""
    return {client_token(lineage, addr, g): g for g in range(upto + 1)}


def generation_of(inst: dict[str, Any], of: dict[str, int]) -> int:
    """Which launch of the cluster made the instance: by its ClientToken, else by an
    older rhplan's generation tag, else 0 (imported: launched outside rhplan)."""
    gen = of.get(inst.get("ClientToken") or "")
    return gen if gen is not None else int(ec2.tag_dict(inst).get(ec2.GENERATION_TAG, "0"))


def _generation_tags(insts: list[dict[str, Any]]) -> set[int]:
    # instances launched by an older rhplan, which tagged the generation
    return {int(t) for i in insts if (t := ec2.tag_dict(i).get(ec2.GENERATION_TAG))}
