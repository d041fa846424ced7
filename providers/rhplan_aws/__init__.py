"""The `aws` provider: EC2 instances (boto3), then set up over SSH like the ssh provider.

    provider "aws" { region = "us-east-1" }
    cluster "rh-cpu" {
      provider      = "aws"
      instance_type = "CPU:2+"            # or "m6i.large", "A10G:1", ...
      num_instances = 2                   # the first is the Ray head
      image_id      = "ami-..."
      ssh { user = "ubuntu"  private_key = "~/.ssh/id_ed25519" }
    }

What rhplan creates in the account (instances, one security group and one key pair per
cluster) is tagged with the state's lineage and the cluster's address, so a refresh is
one filtered describe for every cluster at once, and a re-apply after a crash finds
and adopts instances it launched but never recorded. Launches carry a ClientToken
derived from lineage, address and a generation number, so a retried launch cannot
create duplicates on EC2.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import threading
import time
from typing import Any

from rhplan_ssh import SSHProvider

from rhplan import ray_head
from rhplan.config.evaluate import UNKNOWN
from rhplan.errors import ConfigError, PartialFailure, ProviderError
from rhplan.provider import RunContext
from rhplan_aws import caller_address, catalog, console, ec2

_NOT_FOR_AWS = ("ips",)
# attributes whose change replaces the cluster's instances (EC2 cannot change them)
_REPLACES = {
    "image_id": "image_id cannot be changed on a running instance",
    "region": "instances cannot move to another region",
    "disk_size": "the root volume is made at launch",
    "use_spot": "an instance cannot switch between spot and on-demand",
}
# how long to wait for sshd on a fresh instance (cloud-init takes ~30 s)
SSH_WAIT_SECONDS = float(os.environ.get("RHPLAN_AWS_SSH_WAIT_SECONDS", "300"))
# how long to wait for cloud-init to print a new instance's host keys to the console
CONSOLE_WAIT_SECONDS = float(os.environ.get("RHPLAN_AWS_CONSOLE_WAIT_SECONDS", "300"))
# how old the refresh's describe may be for apply to act on it (see _adopt)
ADOPT_REUSE_SECONDS = 30.0
HOST_KEY_CHECKS = {"console_output": "verified from console output",
                   "trust_on_first_use": "trusted on first use"}


def _skip_host_setup() -> bool:
    # Test hook for bench/aws_scale.py only: launch and tag instances but never SSH to
    # them (moto's instances have no sshd). Not a user setting: it is not in the schema.
    return os.environ.get("RHPLAN_TEST_SKIP_HOST_SETUP") == "1"


class AWSProvider(SSHProvider):
    name = "aws"
    grows = True  # workers are added to a running head (num_instances 2 -> 3)

    def __init__(self) -> None:
        super().__init__()
        self.skip_host_setup = _skip_host_setup()
        self._describe_lock = threading.Lock()
        self._console_prints: dict[str, frozenset[str]] = {}  # instance id -> fingerprints

    # ---- planning -------------------------------------------------------------
    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: RunContext, file: str,
                     line: int) -> dict[str, Any]:
        self._ctx = ctx
        for key in _NOT_FOR_AWS:
            if attrs.get(key) is not None:
                raise ConfigError(f"cluster {name!r}: {key} are chosen by EC2 for provider "
                                  "\"aws\"; remove it (read them as cluster.NAME.ips)", file, line)
        spec = attrs.get("instance_type") or "CPU:2+"
        try:
            # shorthand picks x86_64 types: images are x86_64 unless said otherwise
            itype = catalog.resolve(str(spec), arch="x86_64")
        except catalog.UnknownInstanceType as exc:
            raise ConfigError(f"cluster {name!r}: {exc}", file, line) from None
        n = attrs.get("num_instances")
        if n is None or int(n) != n or n < 1:
            raise ConfigError(f"cluster {name!r}: num_instances must be a whole number of at "
                              "least 1", file, line)
        if not attrs.get("image_id"):
            raise ConfigError(f"cluster {name!r}: give image_id = \"ami-...\" (an image with "
                              "python3 3.9+ and sshd, e.g. Ubuntu 22.04 for your region)",
                              file, line)
        ssh = attrs.get("ssh") or {}
        if not ssh.get("private_key"):
            raise ConfigError(f"cluster {name!r}: give ssh {{ user = \"ubuntu\" private_key = "
                              "\"~/.ssh/id_ed25519\" }: rhplan makes the instances' key pair "
                              "from its public key", file, line)
        for port in attrs.get("open_ports") or []:
            if not (isinstance(port, (int, float)) and int(port) == port and 0 < port < 65536):
                raise ConfigError(f"cluster {name!r}: open_ports holds {port!r}, not a TCP port",
                                  file, line)
        root = attrs.get("root_dir")
        if root is not None and root is not UNKNOWN and not str(root).startswith("/"):
            raise ConfigError(f"cluster {name!r}: root_dir must be an absolute path on the "
                              "instances (or left out: ~/.rhplan/clusters/NAME)", file, line)
        pcfg = ctx.provider_configs.get("aws") or {}
        attrs["allowed_cidrs"] = _allowed_cidrs(name, attrs.get("allowed_cidrs"), pcfg, file,
                                                line)
        attrs["ingress"] = (UNKNOWN if attrs["allowed_cidrs"] is UNKNOWN
                            else rules_text(wanted_rules(attrs)))
        attrs["host_keys"] = _host_keys(name, ssh, file, line)
        attrs["region"] = (attrs.get("region") or pcfg.get("region")
                           or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
                           or "us-east-1")
        attrs["num_instances"] = int(n)
        attrs["resolved_instance_type"] = itype.name
        attrs["cost_per_hour"] = catalog.hourly_cost(itype, int(n))
        attrs["tags_all"] = {**(pcfg.get("default_tags") or {}), **(attrs.get("tags") or {})}
        if not attrs.get("resources"):
            attrs["resources"] = {"CPU": itype.vcpus * int(n), "GPU": itype.gpus * int(n)}
        for k in ("ips", "instance_ids", "hosts"):
            attrs[k] = UNKNOWN
        if root is None:
            attrs["root_dir"] = UNKNOWN
        return attrs

    def settle(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        """What the plan wants of what exists: every recorded instance running and set up
        (a stopped or terminated one is repaired), the same instances unless they must
        change."""
        same_count = before.get("num_instances") == after.get("num_instances")
        relaunch = any(before.get(k) != after.get(k) for k in _REPLACES)
        resized = before.get("resolved_instance_type") != after.get("resolved_instance_type")
        recorded = before.get("hosts") or {}
        if after.get("hosts") is UNKNOWN and same_count and not relaunch:
            after["hosts"] = {ip: "ready" for ip in recorded}
        if same_count and not relaunch and not resized and all(
                v == "ready" for v in recorded.values()):
            for k in ("ips", "instance_ids"):
                if after.get(k) is UNKNOWN and k in before:
                    after[k] = before[k]
        if resized and not relaunch and not catalog_resize_refused(before, after):
            after["ray_status"] = "restarting"  # instances stop and start: Ray with them
        if after.get("root_dir") is UNKNOWN and before.get("root_dir"):
            after["root_dir"] = before["root_dir"]

    def replacement(self, before: dict[str, Any], after: dict[str, Any], changed: list[str]
                    ) -> tuple[list[str], str]:
        forces, why = self._replacement(before, after, changed)
        if not forces and ("ingress" in changed or "allowed_cidrs" in changed):
            rules = ("the security group's rules change in place (instances and Ray are "
                     "left alone)")
            why = f"{why}; {rules}" if why else rules
        return forces, why

    def _replacement(self, before: dict[str, Any], after: dict[str, Any], changed: list[str]
                     ) -> tuple[list[str], str]:
        forces = [k for k in _REPLACES if k in changed]
        if forces:
            return forces, "; ".join(_REPLACES[k] for k in forces)
        old, new = before.get("resolved_instance_type"), after.get("resolved_instance_type")
        if old and new and old != new:
            why_not = catalog_resize_refused(before, after)
            if why_not:
                return ["instance_type"], why_not
            return [], (f"instance_type {old} -> {new}: EC2 resizes in place; each instance is "
                        "stopped, modified and started again (its public IP may change, Ray "
                        "and the servlets restart)")
        if "num_instances" in changed:
            b, a = before.get("num_instances") or 0, after.get("num_instances") or 0
            if a > b:
                return [], f"launches {a - b} instance(s) and joins them to the Ray cluster"
            return [], f"removes the last {b - a} worker(s) from Ray and terminates them"
        hosts = before.get("hosts") or {}
        broken = sorted(ip for ip, s in hosts.items() if s != "ready")
        if broken:
            return [], "repairs " + ", ".join(f"{ip} ({hosts[ip]})" for ip in broken)
        return [], ""

    # ---- AWS plumbing ------------------------------------------------------------
    def _where(self, attrs: dict[str, Any], private: dict) -> tuple[str, str | None, str | None]:
        """(region, profile, endpoint) from the provider block, else as recorded (so a
        cluster removed from the configuration can still be destroyed)."""
        pcfg = (self._ctx.provider_configs.get("aws") if self._ctx else None) or {}
        region = attrs.get("region") or private.get("region") or "us-east-1"
        profile = pcfg.get("profile") if pcfg else private.get("profile")
        endpoint = pcfg.get("endpoint_url") if pcfg else private.get("endpoint_url")
        return str(region), profile, endpoint

    def _ec2(self, attrs: dict[str, Any], private: dict) -> Any:
        region, profile, endpoint = self._where(attrs, private)
        private.update(region=region, profile=profile, endpoint_url=endpoint)
        return ec2.client(region, profile, endpoint)

    def _lineage(self, private: dict) -> str:
        lineage = (self._ctx.lineage if self._ctx else "") or private.get("lineage") or ""
        if not lineage:
            raise ProviderError("no state lineage to tag instances with (internal error)")
        private["lineage"] = lineage
        return lineage

    def _address(self, attrs: dict[str, Any]) -> str:
        return f"cluster.{attrs.get('name')}"

    def _owned(self, attrs: dict[str, Any], private: dict, max_age: float | None = None,
               gone_too: bool = False) -> list[dict[str, Any]]:
        """This cluster's instances that are not terminated (all of them with gone_too),
        from the one describe of the state's whole lineage (shared by every cluster in
        this run, if made at most max_age seconds ago when given)."""
        client = self._ec2(attrs, private)
        lineage = self._lineage(private)
        key = ("aws-instances", private["region"], private.get("endpoint_url"), lineage)
        ctx = self._ctx
        with self._describe_lock:
            made, found = (ctx.cache.get(key) if ctx is not None else None) or (0.0, None)
            if found is not None and max_age is not None and \
                    time.monotonic() - made > max_age:
                found = None
            if found is None:
                found = ec2.describe_lineage(client, lineage)
                if ctx is not None:
                    ctx.cache[key] = (time.monotonic(), found)
        addr = self._address(attrs)
        return [i for i in found if ec2.tag_dict(i).get(ec2.ADDRESS_TAG) == addr
                and (gone_too or i["State"]["Name"] not in ("terminated", "shutting-down"))]

    def _forget_describe(self) -> None:
        if self._ctx is not None:
            with self._describe_lock:
                for k in [k for k in self._ctx.cache if isinstance(k, tuple)
                          and k[:1] == ("aws-instances",)]:
                    del self._ctx.cache[k]

    def _token(self, lineage: str, address: str, generation: int) -> str:
        digest = hashlib.sha256(f"{lineage}\0{address}\0{generation}".encode()).hexdigest()
        return f"rhplan-{digest[:40]}"  # EC2 allows 64 ASCII characters

    def _tags(self, attrs: dict[str, Any], lineage: str, generation: int) -> dict[str, str]:
        tags = dict(attrs.get("tags_all") or {})
        tags.setdefault("Name", f"rhplan-{attrs.get('name')}")
        tags.update({ec2.LINEAGE_TAG: lineage, ec2.ADDRESS_TAG: self._address(attrs),
                     ec2.GENERATION_TAG: str(generation)})
        return tags

    def _ensure_key_pair(self, client: Any, attrs: dict[str, Any], private: dict,
                         lineage: str) -> str:
        name = f"rhplan-{lineage[:8]}-{attrs.get('name')}"
        public = _public_key((attrs.get("ssh") or {}).get("private_key"))
        existing = client.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])
        if existing.get("KeyPairs"):
            ec2.call(client.delete_key_pair, f"replacing key pair {name}", KeyName=name)
        ec2.call(client.import_key_pair, f"importing key pair {name}", KeyName=name,
                 PublicKeyMaterial=public.encode(),
                 TagSpecifications=[{"ResourceType": "key-pair", "Tags": ec2.tag_list(
                     self._tags(attrs, lineage, 0))}])
        private["key_name"] = name
        return name

    def _ensure_security_group(self, client: Any, attrs: dict[str, Any], private: dict,
                               lineage: str) -> str:
        """One security group per cluster: SSH, the cluster's open_ports, and everything
        between its own instances (Ray's nodes talk on many ports)."""
        name = f"rhplan-{lineage[:8]}-{attrs.get('name')}"
        found = ec2.call(client.describe_security_groups, "finding the security group",
                         Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]
        if found:  # made by an apply that was killed: take it over
            gid = found[0]["GroupId"]
            perms = found[0].get("IpPermissions") or []
        else:
            gid = ec2.call(client.create_security_group, f"creating security group {name}",
                           GroupName=name, Description=f"rhplan cluster {attrs.get('name')}",
                           TagSpecifications=[{"ResourceType": "security-group", "Tags":
                                               ec2.tag_list(self._tags(attrs, lineage, 0))}]
                           )["GroupId"]
            perms = []
        private["security_group_id"] = gid
        # killed between CreateSecurityGroup and AuthorizeSecurityGroupIngress, a group
        # lets nothing in: the sync adds whatever is missing
        self._sync_rules(client, attrs, private, perms)
        return gid

    def _groups(self, attrs: dict[str, Any], private: dict) -> dict[str, dict[str, Any]]:
        """Every security group of the state's lineage, by id: one describe shared by every
        cluster of this run (refresh reads each cluster's rules from it)."""
        client = self._ec2(attrs, private)
        lineage = self._lineage(private)
        key = ("aws-groups", private["region"], private.get("endpoint_url"), lineage)
        ctx = self._ctx
        with self._describe_lock:
            found = None if ctx is None else ctx.cache.get(key)
            if found is None:
                found = {g["GroupId"]: g for g in ec2.call(
                    client.describe_security_groups, "describing security groups",
                    Filters=[{"Name": f"tag:{ec2.LINEAGE_TAG}", "Values": [lineage]}]
                )["SecurityGroups"]}
                if ctx is not None:
                    ctx.cache[key] = found
        return found

    def _sync_rules(self, client: Any, attrs: dict[str, Any], private: dict,
                    perms: list[dict[str, Any]] | None = None) -> None:
        """Make the group's inbound rules exactly what allowed_cidrs and open_ports say:
        add what is missing, revoke what is not wanted (0.0.0.0/0 added by hand, a CIDR
        taken out of allowed_cidrs, a closed port). The instances are not touched."""
        gid = private["security_group_id"]
        if perms is None:
            groups = ec2.call(client.describe_security_groups, f"reading security group {gid}",
                              GroupIds=[gid])["SecurityGroups"]
            perms = groups[0].get("IpPermissions") or [] if groups else []
        have = found_rules(perms, gid)
        want = wanted_rules(attrs)
        add, drop = sorted(want - have, key=_rule_order), sorted(have - want, key=_rule_order)
        if add:
            ec2.call(client.authorize_security_group_ingress, "opening "
                     + ", ".join(rule_text(r) for r in add), GroupId=gid,
                     IpPermissions=[_permission(r, gid) for r in add])
        if drop:
            ec2.call(client.revoke_security_group_ingress, "closing "
                     + ", ".join(rule_text(r) for r in drop), GroupId=gid,
                     IpPermissions=[_permission(r, gid) for r in drop])
        private.pop("open_ports", None)  # recorded by older versions; the group is the truth
        if self._ctx is not None:  # the shared describe no longer tells the truth
            with self._describe_lock:
                for k in [k for k in self._ctx.cache if isinstance(k, tuple)
                          and k[:1] == ("aws-groups",)]:
                    del self._ctx.cache[k]

    # ---- host keys: published in the console output ---------------------------------
    def _published_host_keys(self, ip: str, attrs: dict[str, Any], private: dict
                             ) -> dict[str, Any]:
        """A new instance's host key must be one cloud-init printed to its console (only
        the account can read it) unless the cluster says to trust the first key."""
        mode = (attrs.get("ssh") or {}).get("host_key_check") or "console_output"
        if mode != "console_output":
            return {}
        iid = next((i["id"] for i in private.get("instances") or [] if i["ip"] == ip), None)
        if iid is None:
            raise ProviderError(f"{ip} is not one of the cluster's recorded instances, so "
                                "its host key cannot be checked against a console output")
        prints = self._console_fingerprints(iid, attrs, private)
        return {"published": prints, "published_by": f"the console output of {iid}"}

    def _console_fingerprints(self, iid: str, attrs: dict[str, Any], private: dict
                              ) -> frozenset[str]:
        """The host key fingerprints in iid's console output, waiting (bounded) for
        cloud-init to print them at the end of the first boot."""
        known = self._console_prints.get(iid)
        if known:
            return known
        client = self._ec2(attrs, private)
        deadline = time.monotonic() + CONSOLE_WAIT_SECONDS
        delay = 1.0
        while True:
            prints = console.host_key_fingerprints(_console_text(client, iid))
            if prints:
                self._console_prints[iid] = prints
                return prints
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"the console output of {iid} shows no SSH host key fingerprints after "
                    f"{CONSOLE_WAIT_SECONDS:g} s (cloud-init prints them at the end of the "
                    "first boot; an image without cloud-init, or an EC2 emulator, prints "
                    "none), so its host key cannot be verified; set ssh { host_key_check = "
                    "\"trust_on_first_use\" } to accept the first key it shows (the plan "
                    "then says so), or give ssh.known_hosts")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 10.0)

    def _launch(self, client: Any, attrs: dict[str, Any], private: dict, count: int,
                image: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Launch count instances in one call. A crash after it is caught by the next
        apply: it finds them by their tags (see _adopt) before launching anything."""
        lineage = self._lineage(private)
        generation = int(private.get("generation") or 0)
        image = image or self._image(client, attrs, private)
        kwargs: dict[str, Any] = dict(
            ImageId=attrs["image_id"], InstanceType=attrs["resolved_instance_type"],
            MinCount=count, MaxCount=count, KeyName=private["key_name"],
            SecurityGroupIds=[private["security_group_id"]],
            ClientToken=self._token(lineage, self._address(attrs), generation),
            # autostop shuts the head down; EC2 then stops (not terminates) it
            InstanceInitiatedShutdownBehavior="stop",
            TagSpecifications=[{"ResourceType": "instance", "Tags": ec2.tag_list(
                self._tags(attrs, lineage, generation))}])
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
                           f"{self._address(attrs)}", **kwargs)
        finally:
            # even a launch that failed may have launched (an answer lost or too late):
            # what is described next must be asked of EC2 again
            self._forget_describe()
        private["generation"] = generation + 1
        return list(res["Instances"])

    def _image(self, client: Any, attrs: dict[str, Any], private: dict) -> dict[str, Any]:
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

    def _adopt(self, attrs: dict[str, Any], private: dict) -> list[dict[str, Any]]:
        """Instances of this cluster that exist but are not recorded (an apply that was
        killed after launching them): recorded ones first, then by launch order. The
        describe is the one this run's refresh made, if any (under the state lock nothing
        else launches into this lineage, and this run's launches and terminations drop
        it), so a change to 1,000 instances describes them once, not twice. Only a
        recent one: an apply that waited at its prompt describes again."""
        every = self._owned(attrs, private, max_age=ADOPT_REUSE_SECONDS, gone_too=True)
        owned = [i for i in every if i["State"]["Name"] not in ("terminated", "shutting-down")]
        recorded = [i["id"] for i in private.get("instances") or []]
        known = {i["InstanceId"]: i for i in owned}
        orphans = sorted((i for i in owned if i["InstanceId"] not in recorded),
                         key=_launch_order)
        # The next launch must not reuse a token that already launched instances, live or
        # not: EC2 answers a spent token with the instances it launched then, even
        # terminated ones (a launch whose answers were lost and that was cleaned up).
        gens = [int(ec2.tag_dict(i).get(ec2.GENERATION_TAG, "0")) for i in every
                if i["InstanceId"] not in recorded]
        if gens:
            private["generation"] = max(int(private.get("generation") or 0), max(gens) + 1)
        return [known[i] for i in recorded if i in known] + orphans

    def _record(self, attrs: dict[str, Any], private: dict, instances: list[dict[str, Any]]
                ) -> None:
        private["instances"] = [{"id": i["InstanceId"], "ip": ec2.address_of(i),
                                 "private_ip": i.get("PrivateIpAddress"),
                                 "type": i.get("InstanceType")} for i in instances]
        attrs["instance_ids"] = [i["id"] for i in private["instances"]]
        attrs["ips"] = [i["ip"] for i in private["instances"]]

    # ---- lifecycle ------------------------------------------------------------------
    def create(self, attrs: dict[str, Any], ctx: RunContext) -> tuple[dict[str, Any], dict]:
        self._ctx = ctx
        private: dict[str, Any] = {}
        client = self._ec2(attrs, private)
        lineage = self._lineage(private)
        image = self._image(client, attrs, private)  # a bad image fails before anything
        self._ensure_key_pair(client, attrs, private, lineage)
        try:
            self._ensure_security_group(client, attrs, private, lineage)
            instances = self._adopt(attrs, private)
            extra = instances[attrs["num_instances"]:]
            instances = instances[:attrs["num_instances"]]
            if extra:
                self._terminate(client, [i["InstanceId"] for i in extra])
            missing = attrs["num_instances"] - len(instances)
            if missing > 0:  # all or nothing: EC2 launches MinCount or none
                instances += self._launch(client, attrs, private, missing, image)
        except ProviderError:
            # nothing runs yet: take back the key pair and security group made above
            try:
                self.delete(attrs, private, ctx)
            except ProviderError:
                pass
            raise
        return self._bring_up(client, attrs, private, instances, set())

    def _bring_up(self, client: Any, attrs: dict[str, Any], private: dict,
                  instances: list[dict[str, Any]], known_ips: set[str],
                  restarted: frozenset[str] = frozenset()) -> tuple[dict[str, Any], dict]:
        """Wait until every instance runs with an IP, record them, set up the new hosts
        over SSH. `instances` are as last described, except those restarted since."""
        ids = [i["InstanceId"] for i in instances]
        if not restarted and all(i["State"]["Name"] == "running" and (
                i.get("PublicIpAddress") or i.get("PrivateIpAddress")) for i in instances):
            running = instances  # as just described: no need to ask again
        else:
            running = ec2.wait_for(client, ids, {"running"},
                                   f"starting {self._address(attrs)}", need_ip=True)
        self._record(attrs, private, running)
        old_hosts = attrs.get("hosts") if isinstance(attrs.get("hosts"), dict) else {}
        attrs["hosts"] = {ip: old_hosts.get(ip, "new") for ip in attrs["ips"]}
        if self.skip_host_setup:
            attrs["hosts"] = {ip: "ready" for ip in attrs["ips"]}
            attrs["root_dir"] = attrs["root_dir"] if attrs.get("root_dir") not in (
                None, UNKNOWN) else "/skipped"
            return attrs, private
        todo = [ip for ip in attrs["ips"] if ip not in known_ips
                or attrs["hosts"].get(ip) != "ready"]
        try:
            self._wait_for_ssh(attrs, private, todo)
            return self._setup(attrs, private, todo) if todo else (attrs, private)
        except PartialFailure:
            raise
        except ProviderError as exc:
            # the instances exist and cost money: record them, mark the hosts failed
            for ip in todo:
                if attrs["hosts"].get(ip) != "ready":
                    attrs["hosts"][ip] = f"failed: {exc}"
            attrs["hosts"][attrs["ips"][0]] = f"failed: {exc}"
            raise PartialFailure(f"{exc}; the instances are recorded, apply again to set them "
                                 "up", attrs, private) from None

    def _wait_for_ssh(self, attrs: dict[str, Any], private: dict, ips: list[str]) -> None:
        """A fresh instance answers SSH once cloud-init is done: retry connecting."""
        deadline = time.monotonic() + SSH_WAIT_SECONDS
        for ip in ips:
            delay = 1.0
            while True:
                try:
                    self._connect(ip, attrs, private)
                    break
                except ProviderError as exc:
                    # a wrong host key or a refused login will not get better by waiting
                    if time.monotonic() > deadline or not _transient(str(exc)):
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)

    def _node_ip_candidate(self, ip: str, private: dict) -> str:
        for inst in private.get("instances") or []:
            if inst["ip"] == ip:
                return inst.get("private_ip") or ip
        return ip

    def _proxy_command(self, ip: str, attrs: dict[str, Any], private: dict) -> str | None:
        cmd = (attrs.get("ssh") or {}).get("proxy_command")
        if not cmd:
            return None
        iid = next((i["id"] for i in private.get("instances") or [] if i["ip"] == ip), "")
        # %i: the instance id (SSM: aws ssm start-session --target %i ...); ids are
        # [a-z0-9-] only, so they are safe in the command line
        return cmd.replace("%%", "\0").replace("%i", iid).replace("\0", "%%")

    def read(self, attrs: dict[str, Any], private: dict, ctx: RunContext
             ) -> dict[str, Any] | None:
        """The cluster's instances as EC2 reports them, from the one describe shared by
        every cluster of the state: gone, stopped, resized or retagged shows as drift."""
        self._ctx = ctx
        owned = {i["InstanceId"]: i for i in self._owned(attrs, private)}
        recorded = private.get("instances") or []
        if not any(i["id"] in owned for i in recorded):
            return None
        hosts = dict(attrs.get("hosts") or {})
        for rec in recorded:
            inst = owned.get(rec["id"])
            state = inst["State"]["Name"] if inst else "terminated"
            if state in ("stopped", "stopping"):
                hosts[rec["ip"]] = f"{state} outside rhplan"
            elif state == "terminated":
                hosts[rec["ip"]] = "terminated outside rhplan"
        attrs["hosts"] = hosts
        live = [owned[r["id"]] for r in recorded if r["id"] in owned]
        types = sorted({i["InstanceType"] for i in live})
        if types and types != [attrs.get("resolved_instance_type")]:
            attrs["resolved_instance_type"] = ",".join(types)
        tags = {}
        for inst in live:
            t = {k: v for k, v in ec2.tag_dict(inst).items() if k not in ec2.RHPLAN_TAGS}
            if "Name" not in (attrs.get("tags_all") or {}):
                t.pop("Name", None)  # rhplan's default Name tag is not the user's
            if t != attrs.get("tags_all"):
                tags = t
                break
        else:
            tags = attrs.get("tags_all") or {}
        attrs["tags_all"] = tags
        gid = private.get("security_group_id")
        if gid:
            group = self._groups(attrs, private).get(gid)
            attrs["ingress"] = rules_text(found_rules(
                (group or {}).get("IpPermissions") or [], gid)) if group else []
        if any(s != "ready" for s in hosts.values()) and hosts.get(attrs["ips"][0]) != "ready":
            attrs["ray_status"] = "stopped"
        return attrs

    def leftovers(self, attrs: dict[str, Any], private: dict, ctx: RunContext) -> list[str]:
        """What of a cluster whose instances are all gone still exists in the account:
        a destroy killed after TerminateInstances leaves its security group and key
        pair, which only a recorded cluster can delete (read() found it gone)."""
        self._ctx = ctx
        client = self._ec2(attrs, private)
        left = []
        gid = private.get("security_group_id")
        if gid and ec2.call(client.describe_security_groups, "finding the security group",
                            Filters=[{"Name": "group-id", "Values": [gid]}]
                            )["SecurityGroups"]:
            left.append(f"security group {gid}")
        name = private.get("key_name")
        if name and ec2.call(client.describe_key_pairs, "finding the key pair",
                             Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]:
            left.append(f"key pair {name}")
        return left

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: RunContext) -> tuple[dict[str, Any], dict]:
        self._ctx = ctx
        client = self._ec2(after, private)
        attrs = dict(after, hosts=dict(before.get("hosts") or {}),
                     root_dir=before.get("root_dir") if after.get("root_dir") in (
                         None, UNKNOWN) else after["root_dir"],
                     ray_python=before.get("ray_python"), ips=before.get("ips"),
                     instance_ids=before.get("instance_ids"))
        ids = [i["id"] for i in private.get("instances") or []]
        if before.get("tags_all") != attrs.get("tags_all") and ids:
            self._retag(client, before.get("tags_all") or {}, attrs.get("tags_all") or {}, ids)
        if private.get("security_group_id"):
            self._sync_rules(client, attrs, private)
        instances = self._adopt(attrs, private)
        old_ip = {r["id"]: r["ip"] for r in private.get("instances") or []}
        live = {i["InstanceId"] for i in instances}
        # terminated outside rhplan: its Ray node went with it
        workers = private.get("ray_worker_temp_dirs") or {}
        for iid in [i for i in old_ip if i not in live]:
            workers.pop(old_ip[iid], None)
        restarted: list[str] = []
        # stopped outside rhplan (or by autostop): start them again
        stopped = [i["InstanceId"] for i in instances
                   if i["State"]["Name"] in ("stopped", "stopping")]
        if stopped:
            ec2.wait_until(client, stopped, {"stopped"}, "waiting for instances to stop")
            ec2.call(client.start_instances, "starting stopped instances", InstanceIds=stopped)
            restarted += stopped
        # resize in place: stop, modify each, start
        want_type = attrs["resolved_instance_type"]
        wrong = [i["InstanceId"] for i in instances if i.get("InstanceType") != want_type]
        if wrong:
            self._resize(client, wrong, want_type)
            restarted += [i for i in wrong if i not in restarted]
        n = attrs["num_instances"]
        extra, instances = instances[n:], instances[:n]
        if extra:
            self._retire(client, attrs, private, extra)
        missing = n - len(instances)
        if missing > 0:
            instances += self._launch(client, attrs, private, missing)
        head_restarted = bool(instances) and instances[0]["InstanceId"] in restarted
        # a started instance has a new public IP, no Ray, and must be set up again
        ready = {ip for ip, st in (before.get("hosts") or {}).items() if st == "ready"}
        known = ready - {old_ip.get(i) for i in restarted}
        attrs, private = self._bring_up(client, attrs, private, instances, known,
                                        frozenset(restarted))
        self._forget_workers(attrs, private, [(i, old_ip[i]) for i in restarted if i in old_ip])
        if head_restarted:
            attrs["ray_status"] = "stopped"  # the cluster type starts Ray again
        return attrs, private

    def _forget_workers(self, attrs: dict[str, Any], private: dict,
                        moved: list[tuple[str, str]]) -> None:
        """Workers whose instance restarted rejoin Ray: drop their old node (gone with the
        restart on a real instance; stopped by its temp dir, where it is now, in case it
        is not)."""
        workers = dict(private.get("ray_worker_temp_dirs") or {})
        now = {r["id"]: r["ip"] for r in private.get("instances") or []}
        for iid, ip in moved:
            temp_dir = workers.pop(ip, None)
            if temp_dir and attrs.get("ray_python") and iid in now:
                try:
                    conn = self._connect(now[iid], attrs, private)
                    ray_head.stop_worker(conn, attrs["ray_python"], temp_dir)
                except ProviderError:
                    pass
        private["ray_worker_temp_dirs"] = workers

    def _retag(self, client: Any, old: dict[str, str], new: dict[str, str], ids: list[str]
               ) -> None:
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        gone = [k for k in old if k not in new]
        if changed:
            ec2.call(client.create_tags, "tagging instances", Resources=ids,
                     Tags=ec2.tag_list(changed))
        if gone:
            ec2.call(client.delete_tags, "untagging instances", Resources=ids,
                     Tags=[{"Key": k} for k in gone])

    def _resize(self, client: Any, ids: list[str], itype: str) -> None:
        ec2.call(client.stop_instances, "stopping instances to resize them", InstanceIds=ids)
        ec2.wait_until(client, ids, {"stopped"}, "stopping instances to resize them")
        for iid in ids:  # EC2 modifies one instance per call
            ec2.call(client.modify_instance_attribute, f"resizing {iid} to {itype}",
                     InstanceId=iid, InstanceType={"Value": itype})
        ec2.call(client.start_instances, "starting resized instances", InstanceIds=ids)

    def _retire(self, client: Any, attrs: dict[str, Any], private: dict,
                extra: list[dict[str, Any]]) -> None:
        """Scale down: the last workers leave Ray first (so the head sees them go), then
        are terminated in one call."""
        workers = dict(private.get("ray_worker_temp_dirs") or {})
        for inst in extra:
            ip = ec2.address_of(inst)
            temp_dir = workers.pop(ip, None)
            if temp_dir and attrs.get("ray_python") and not self.skip_host_setup:
                try:
                    conn = self._connect(ip, attrs, private)
                    ray_head.stop_worker(conn, attrs["ray_python"], temp_dir)
                except ProviderError:
                    pass  # unreachable: terminating it takes Ray down with it
            (attrs.get("hosts") or {}).pop(ip, None)
        private["ray_worker_temp_dirs"] = workers
        self._terminate(client, [i["InstanceId"] for i in extra])

    def _terminate(self, client: Any, ids: list[str]) -> None:
        if ids:
            try:
                ec2.call(client.terminate_instances, f"terminating {len(ids)} instance(s)",
                         InstanceIds=ids)
            finally:
                self._forget_describe()

    def delete(self, attrs: dict[str, Any], private: dict, ctx: RunContext) -> None:
        """Terminate every instance of the cluster (recorded or adopted), then its
        security group and key pair: nothing rhplan made is left in the account."""
        self._ctx = ctx
        client = self._ec2(attrs, private)
        ids = [i["InstanceId"] for i in self._adopt(attrs, private)]
        if ids:
            self._terminate(client, ids)
            ec2.wait_until(client, ids, {"terminated"}, f"terminating {self._address(attrs)}")
        # every instance is gone, and whatever ran on it (Ray) with it
        attrs["hosts"] = dict.fromkeys(attrs.get("ips") or [], "terminated by destroy")
        gid = private.get("security_group_id")
        if gid:
            self._delete_group(client, gid)
        if private.get("key_name"):
            ec2.call(client.delete_key_pair, "deleting the key pair", KeyName=private["key_name"])

    def _delete_group(self, client: Any, gid: str) -> None:
        # EC2 refuses while a terminating instance still holds the group: retry a while
        deadline = time.monotonic() + ec2.WAIT_SECONDS
        while True:
            try:
                ec2.call(client.delete_security_group, f"deleting security group {gid}",
                         GroupId=gid)
                return
            except ProviderError as exc:
                if "InvalidGroup.NotFound" in str(exc):
                    return
                if "DependencyViolation" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(2)


def catalog_resize_refused(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """Why EC2 cannot resize before's instances to after's type in place, or None."""
    try:
        return catalog.resize_in_place(catalog.resolve(before["resolved_instance_type"]),
                                       catalog.resolve(after["resolved_instance_type"]))
    except (catalog.UnknownInstanceType, KeyError, TypeError):
        return "the recorded instance type is not one rhplan knows"


# An inbound rule as a value: (protocol, from port, to port, source). The source is a
# CIDR block, or "self" for the cluster's own group (Ray's nodes talk on many ports).
Rule = tuple[str, int, int, str]


def wanted_rules(attrs: dict[str, Any]) -> set[Rule]:
    """SSH and every open port from each allowed CIDR, and anything between the
    cluster's own instances."""
    ports = sorted({22} | {int(p) for p in attrs.get("open_ports") or []})
    cidrs = attrs.get("allowed_cidrs") or []
    return {("tcp", p, p, c) for p in ports for c in cidrs} | {("-1", -1, -1, "self")}


def found_rules(perms: list[dict[str, Any]], gid: str) -> set[Rule]:
    out: set[Rule] = set()
    for p in perms:
        proto = str(p.get("IpProtocol"))
        lo, hi = (-1, -1) if proto == "-1" else (int(p.get("FromPort", -1)),
                                                  int(p.get("ToPort", -1)))
        out |= {(proto, lo, hi, r["CidrIp"]) for r in p.get("IpRanges") or []}
        out |= {(proto, lo, hi, r["CidrIpv6"]) for r in p.get("Ipv6Ranges") or []}
        out |= {(proto, lo, hi, "self" if g.get("GroupId") == gid else str(g.get("GroupId")))
                for g in p.get("UserIdGroupPairs") or []}
        out |= {(proto, lo, hi, str(pl.get("PrefixListId"))) for pl in p.get("PrefixListIds")
                or []}
    return out


def rule_text(rule: Rule) -> str:
    proto, lo, hi, source = rule
    what = ("all traffic" if proto == "-1" else f"{proto}/{lo}" if lo == hi
            else f"{proto}/{lo}-{hi}")
    return f"{what} from {'the cluster itself' if source == 'self' else source}"


def _rule_order(rule: Rule) -> tuple[bool, int, str, str]:
    return rule[0] == "-1", rule[1], rule[0], rule[3]


def rules_text(rules: set[Rule]) -> list[str]:
    return [rule_text(r) for r in sorted(rules, key=_rule_order)]


def _permission(rule: Rule, gid: str) -> dict[str, Any]:
    proto, lo, hi, source = rule
    perm: dict[str, Any] = {"IpProtocol": proto}
    if proto != "-1":
        perm.update(FromPort=lo, ToPort=hi)
    if source == "self" or source.startswith("sg-"):
        perm["UserIdGroupPairs"] = [{"GroupId": gid if source == "self" else source}]
    elif source.startswith("pl-"):
        perm["PrefixListIds"] = [{"PrefixListId": source}]
    elif ":" in source:
        perm["Ipv6Ranges"] = [{"CidrIpv6": source}]
    else:
        perm["IpRanges"] = [{"CidrIp": source}]
    return perm


def _allowed_cidrs(name: str, given: Any, pcfg: dict[str, Any], file: str, line: int) -> Any:
    """allowed_cidrs as written (each checked, written the canonical way), else this
    machine's public address; without one, the plan refuses to guess."""
    if given is UNKNOWN:
        return UNKNOWN
    if given is None:
        url = pcfg.get("public_ip_url")
        address, why = caller_address.public_address(url)
        if address is None:
            shown = caller_address.DEFAULT_URL if url is None else url
            raise ConfigError(
                f"cluster {name!r}: allowed_cidrs is not set and this machine's public "
                f"address could not be found ({shown or 'no lookup'}: {why}); write "
                "allowed_cidrs = [\"YOUR.PUBLIC.IP/32\"] (who may reach SSH and open_ports), "
                "or [] to let nothing in from outside (reach the instances through "
                "ssh.proxy_command)", file, line)
        return [caller_address.single_host_cidr(address)]
    out = []
    for cidr in given:
        try:
            net = ipaddress.ip_network(str(cidr), strict=True)
        except ValueError:
            try:
                loose = ipaddress.ip_network(str(cidr), strict=False)
            except ValueError:
                raise ConfigError(f"cluster {name!r}: allowed_cidrs holds {cidr!r}, not a CIDR "
                                  "block; write e.g. \"203.0.113.7/32\"", file, line) from None
            host = str(cidr).split("/", 1)[0]
            raise ConfigError(f"cluster {name!r}: allowed_cidrs holds {cidr!r}, whose address "
                              f"has bits set past the prefix; write \"{loose}\" for the "
                              f"network or \"{host}/{loose.max_prefixlen}\" for the one "
                              "address", file, line) from None
        if str(net) not in out:
            out.append(str(net))
    return out


def _host_keys(name: str, ssh: dict[str, Any], file: str, line: int) -> str:
    """What the plan says about new instances' host keys."""
    check = ssh.get("host_key_check")
    if check is not None and check not in HOST_KEY_CHECKS:
        raise ConfigError(f"cluster {name!r}: ssh.host_key_check is {check!r}; write "
                          "\"console_output\" (verify against the fingerprints in the "
                          "instance's console output) or \"trust_on_first_use\"", file, line)
    if ssh.get("known_hosts"):
        return f"checked against known_hosts {ssh['known_hosts']}"
    return HOST_KEY_CHECKS[check or "console_output"]


def _console_text(client: Any, iid: str) -> str:
    """The console output: the latest (Nitro instances), else the buffered copy."""
    try:
        res = ec2.call(client.get_console_output, f"reading the console output of {iid}",
                       InstanceId=iid, Latest=True)
    except ProviderError as exc:
        if "Unsupported" not in str(exc):
            raise
        res = ec2.call(client.get_console_output, f"reading the console output of {iid}",
                       InstanceId=iid)
    return str(res.get("Output") or "")


def _launch_order(inst: dict[str, Any]) -> tuple[int, int, str]:
    gen = int(ec2.tag_dict(inst).get(ec2.GENERATION_TAG, "0"))
    return gen, int(inst.get("AmiLaunchIndex") or 0), inst["InstanceId"]


def _transient(message: str) -> bool:
    m = message.lower()
    return any(w in m for w in ("refused", "timed out", "timeout", "unreachable",
                                "no route", "reset", "closed", "banner"))


def _public_key(private_key: str | None) -> str:
    """The OpenSSH public key for the key pair: KEY.pub beside it, else derived."""
    if not private_key:
        raise ProviderError("ssh.private_key is required for an aws cluster")
    path = os.path.expanduser(private_key)
    pub = path + ".pub"
    if os.path.exists(pub):
        with open(pub) as fh:
            return fh.read().strip()
    import paramiko
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            key = cls.from_private_key_file(path)
            return f"{key.get_name()} {key.get_base64()} rhplan"
        except (paramiko.SSHException, ValueError):
            continue
        except OSError as exc:
            raise ProviderError(f"cannot read ssh private_key {private_key}: {exc.strerror}"
                                ) from None
    raise ProviderError(f"ssh private_key {private_key} is not an OpenSSH private key "
                        "rhplan can read (ed25519, ecdsa or rsa, without a passphrase)")


__all__ = ["AWSProvider"]
