"""AWSProvider: the aws cluster's lifecycle. EC2 work is done by account.py (where,
lineage, shared describes), network.py (key pair, security group), instances.py and
plan.py; the hosts are reached and set up by rhplan_ssh's SSHHosts, composed with
this provider's InstanceAccess (hostkeys.py)."""
from __future__ import annotations

import os
import time
from typing import Any

from rhplan_ssh import SSHHostHooks, SSHHosts

from rhplan.plugin import (
    UNKNOWN,
    Capabilities,
    ClusterRecord,
    PartialFailure,
    Provider,
    ProviderContext,
    ProviderError,
)
from rhplan_aws import ec2, instances, network, plan
from rhplan_aws.account import Account, address
from rhplan_aws.hostkeys import InstanceAccess

# how long to wait for sshd on a fresh instance (cloud-init takes ~30 s)
SSH_WAIT_SECONDS = float(os.environ.get("RHPLAN_AWS_SSH_WAIT_SECONDS", "300"))


class AWSProvider(SSHHostHooks, Provider):
    name = "aws"
    capabilities = Capabilities(grows=True)  # workers join a running head (2 -> 3)

    def __init__(self) -> None:
        self._account = Account(lambda: self._hosts.ctx)
        self._hosts = SSHHosts(InstanceAccess(self._account))

    # ---- planning (plan.py) ----------------------------------------------------------
    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: ProviderContext, file: str,
                     line: int) -> dict[str, Any]:
        self._use(ctx)
        return plan.plan_cluster(name, attrs, ctx.provider_configs.get("aws") or {}, file,
                                 line)

    def settle(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        plan.settle(before, after)

    def replacement(self, before: dict[str, Any], after: dict[str, Any], changed: list[str]
                    ) -> tuple[list[str], str]:
        return plan.replacement(before, after, changed)

    def _use(self, ctx: ProviderContext) -> None:
        self._hosts.ctx = ctx  # the account reads it too (Account's ctx_of)


    # ---- lifecycle ------------------------------------------------------------------
    def create(self, attrs: dict[str, Any], ctx: ProviderContext) -> ClusterRecord:
        self._use(ctx)
        private: dict[str, Any] = {}
        account = self._account
        client = account.client(attrs, private)
        lineage = account.lineage(private)
        image = instances.checked_image(client, attrs, private)  # fails before anything
        network.ensure_key_pair(account, client, attrs, private, lineage)
        try:
            network.ensure_security_group(account, client, attrs, private, lineage)
            found = instances.adopt(account, attrs, private)
            extra, found = found[attrs["num_instances"]:], found[:attrs["num_instances"]]
            if extra:
                instances.terminate(account, client, [i["InstanceId"] for i in extra])
            missing = attrs["num_instances"] - len(found)
            if missing > 0:  # all or nothing: EC2 launches MinCount or none
                found += instances.launch(account, client, attrs, private, missing, image)
        except ProviderError:
            # nothing runs yet: take back the key pair and security group made above
            try:
                self.delete(attrs, private, ctx)
            except ProviderError:
                pass
            raise
        return ClusterRecord(*self._bring_up(client, attrs, private, found, set()))

    def import_cluster(self, attrs: dict[str, Any], id_: str, ctx: ProviderContext
                       ) -> ClusterRecord:
        """Adopt running EC2 instances, by id (`i-1,i-2`) or by tag (`tag:KEY=VALUE`):
        they are tagged as this cluster's, then create() finds them as its own (as it
        adopts the instances of a killed apply) and sets them up over SSH; nothing is
        launched. The count must be num_instances."""
        self._use(ctx)
        private: dict[str, Any] = {}
        client = self._account.client(attrs, private)
        lineage = self._account.lineage(private)
        live = ("pending", "running")
        if id_.startswith("tag:"):
            key, eq, value = id_[4:].partition("=")
            if not key or not eq:
                raise ProviderError(f"{id_!r}: write tag:KEY=VALUE, or instance ids i-1,i-2")
            pages = client.get_paginator("describe_instances").paginate(Filters=[
                {"Name": f"tag:{key}", "Values": [value]},
                {"Name": "instance-state-name", "Values": list(live)}])
            found = [i for page in ec2.call(lambda: list(pages), "describing instances")
                     for r in page["Reservations"] for i in r["Instances"]]
        else:
            found = ec2.describe_ids(client, [i for i in id_.split(",") if i], live)
        if not found:
            raise ProviderError(f"no running EC2 instance matches {id_!r} in "
                                f"{private.get('region')}; check the ids or the tag")
        owner = {ec2.tag_dict(i).get(ec2.LINEAGE_TAG) for i in found} - {None, lineage}
        if owner:
            raise ProviderError(f"{id_!r}: the instances belong to another rhplan state "
                                f"(lineage {sorted(owner)[0]}); import them there")
        if len(found) != attrs["num_instances"]:
            raise ProviderError(f"{id_!r} matches {len(found)} instance(s), and the cluster "
                                f"has num_instances = {attrs['num_instances']}; make them agree")
        ids = [i["InstanceId"] for i in found]
        ec2.call(client.create_tags, "tagging the instances", Resources=ids,
                 Tags=ec2.tag_list({ec2.LINEAGE_TAG: lineage, ec2.ADDRESS_TAG: address(attrs)}))
        ctx.cache.pop(("aws-instances", private["region"], private.get("endpoint_url"),
                       lineage), None)  # describe again: they are this cluster's now
        return self.create(attrs, ctx)

    def _bring_up(self, client: Any, attrs: dict[str, Any], private: dict,
                  launched: list[dict[str, Any]], known_ips: set[str],
                  restarted: frozenset[str] = frozenset()) -> tuple[dict[str, Any], dict]:
        """Wait until every instance runs with an IP, record them, set up the new hosts
        over SSH. `launched` are as last described, except those restarted since."""
        if not restarted and all(i["State"]["Name"] == "running" and (
                i.get("PublicIpAddress") or i.get("PrivateIpAddress")) for i in launched):
            running = launched  # as just described: no need to ask again
        else:
            running = ec2.wait_running(client, launched, f"starting {address(attrs)}",
                                       stale=restarted)
        instances.record(attrs, private, running)
        old = attrs.get("hosts")
        old_hosts: dict[str, str] = old if isinstance(old, dict) else {}
        attrs["hosts"] = {ip: old_hosts.get(ip, "new") for ip in attrs["ips"]}
        todo = [ip for ip in attrs["ips"] if ip not in known_ips
                or attrs["hosts"].get(ip) != "ready"]
        return self._set_up_hosts(attrs, private, todo)

    def _set_up_hosts(self, attrs: dict[str, Any], private: dict, todo: list[str]
                      ) -> tuple[dict[str, Any], dict]:
        """Reach the new (or not yet ready) instances over SSH and set them up."""
        try:
            self._wait_for_ssh(attrs, private, todo)
            return self._hosts.setup(attrs, private, todo) if todo else (attrs, private)
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
                    self._hosts.connect_to(ip, attrs, private)
                    break
                except ProviderError as exc:
                    # a wrong host key or a refused login will not get better by waiting
                    if time.monotonic() > deadline or not _transient(str(exc)):
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 10.0)

    def read(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
             ) -> dict[str, Any] | None:
        """The cluster's instances as EC2 reports them, from the one describe shared by
        every cluster of the state: gone, stopped, resized or retagged shows as drift."""
        self._use(ctx)
        owned = {i["InstanceId"]: i for i in self._account.owned(attrs, private)}
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
        attrs["tags_all"] = _live_tags(attrs, live)
        gid = private.get("security_group_id")
        if gid:
            group = self._account.groups(attrs, private).get(gid)
            attrs["ingress"] = network.rules_text(network.found_rules(
                (group or {}).get("IpPermissions") or [], gid)) if group else []
        if any(s != "ready" for s in hosts.values()) and hosts.get(attrs["ips"][0]) != "ready":
            attrs["ray_status"] = "stopped"
        return attrs

    def leftovers(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> list[str]:
        """What of a cluster whose instances are all gone still exists in the account:
        a destroy killed after TerminateInstances leaves its security group and key
        pair, which only a recorded cluster can delete (read() found it gone)."""
        self._use(ctx)
        return network.leftovers(self._account.client(attrs, private), private)

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: ProviderContext) -> ClusterRecord:
        self._use(ctx)
        account = self._account
        client = account.client(after, private)
        attrs = dict(after, hosts=dict(before.get("hosts") or {}),
                     root_dir=before.get("root_dir") if after.get("root_dir") in (
                         None, UNKNOWN) else after["root_dir"],
                     ray_python=before.get("ray_python"), ips=before.get("ips"),
                     instance_ids=before.get("instance_ids"))
        ids = [i["id"] for i in private.get("instances") or []]
        if before.get("tags_all") != attrs.get("tags_all") and ids:
            instances.retag(client, before.get("tags_all") or {}, attrs.get("tags_all") or {},
                            ids)
        gid = private.get("security_group_id")
        if gid:
            # the group as this run's refresh read it, if recent (as adopt's instances)
            group = account.groups(attrs, private, instances.ADOPT_REUSE_SECONDS).get(gid)
            network.sync_rules(account, client, attrs, private,
                               None if group is None else group.get("IpPermissions") or [])
        found = instances.adopt(account, attrs, private)
        old_ip = {r["id"]: r["ip"] for r in private.get("instances") or []}
        restarted = _restart(client, found, attrs["resolved_instance_type"])
        n = attrs["num_instances"]
        extra, found = found[n:], found[:n]
        if extra:
            self._retire(client, attrs, private, extra)
        missing = n - len(found)
        if missing > 0:
            found += instances.launch(account, client, attrs, private, missing)
        head_restarted = bool(found) and found[0]["InstanceId"] in restarted
        # a started instance has a new public IP, no Ray, and must be set up again
        ready = {ip for ip, st in (before.get("hosts") or {}).items() if st == "ready"}
        known = ready - {old_ip.get(i) for i in restarted}
        attrs, private = self._bring_up(client, attrs, private, found, known,
                                        frozenset(restarted))
        if head_restarted:
            attrs["ray_status"] = "stopped"  # the cluster type starts Ray again
        return ClusterRecord(attrs, private)

    def leaving(self, before: dict[str, Any], after: dict[str, Any], private: dict,
                ctx: ProviderContext) -> list[str]:
        """The instances update() will terminate (the last ones, scaling down), restart
        (stopped, or of another type: resized) or found terminated outside rhplan, from
        the describe update() then reuses (adopt's)."""
        self._use(ctx)
        attrs = dict(after, ips=before.get("ips"), instance_ids=before.get("instance_ids"))
        found = instances.adopt(self._account, attrs, private)
        live = {i["InstanceId"] for i in found}
        # where each was reached (a stopped instance has no public address any more)
        recorded = {r["id"]: r["ip"] for r in private.get("instances") or []}
        gone = [ip for iid, ip in recorded.items() if iid not in live]
        want = after.get("resolved_instance_type")
        restarting = [i for i in found if i["State"]["Name"] in ("stopped", "stopping")
                      or i.get("InstanceType") != want]
        retiring = found[after["num_instances"]:]
        return list(dict.fromkeys(gone + [recorded.get(i["InstanceId"]) or ec2.address_of(i)
                                          for i in restarting + retiring]))

    def moved(self, before: dict[str, Any], before_private: dict, after: dict[str, Any],
              after_private: dict) -> dict[str, str]:
        """Instances reached at a new address after update() (started again: a new
        public IP), by instance id."""
        now = {r["id"]: r["ip"] for r in after_private.get("instances") or []}
        return {r["ip"]: now[r["id"]] for r in before_private.get("instances") or []
                if r["id"] in now and now[r["id"]] != r["ip"]}

    def _retire(self, client: Any, attrs: dict[str, Any], private: dict,
                extra: list[dict[str, Any]]) -> None:
        """Scale down: the last instances are terminated in one call (the core stopped
        their Ray nodes first: leaving())."""
        for inst in extra:
            (attrs.get("hosts") or {}).pop(ec2.address_of(inst), None)
        instances.terminate(self._account, client, [i["InstanceId"] for i in extra])

    def delete(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> None:
        """Terminate every instance of the cluster (recorded or adopted), then its
        security group and key pair: nothing rhplan made is left in the account."""
        self._use(ctx)
        client = self._account.client(attrs, private)
        ids = [i["InstanceId"] for i in instances.adopt(self._account, attrs, private)]
        if ids:
            instances.terminate(self._account, client, ids)
            ec2.wait_until(client, ids, {"terminated"}, f"terminating {address(attrs)}")
        # every instance is gone, and whatever ran on it (Ray) with it
        attrs["hosts"] = dict.fromkeys(attrs.get("ips") or [], "terminated by destroy")
        gid = private.get("security_group_id")
        if gid:
            network.delete_group(client, gid)
        if private.get("key_name"):
            ec2.call(client.delete_key_pair, "deleting the key pair", KeyName=private["key_name"])


def _restart(client: Any, found: list[dict[str, Any]], want_type: str) -> list[str]:
    """Start instances stopped outside rhplan (or by autostop), resize those of another
    type in place (stop, modify each, start): the ids restarted."""
    restarted: list[str] = []
    stopped = [i["InstanceId"] for i in found if i["State"]["Name"] in ("stopped", "stopping")]
    if stopped:
        ec2.wait_until(client, stopped, {"stopped"}, "waiting for instances to stop")
        ec2.call(client.start_instances, "starting stopped instances", InstanceIds=stopped)
        restarted += stopped
    wrong = [i["InstanceId"] for i in found if i.get("InstanceType") != want_type]
    if wrong:
        instances.resize(client, wrong, want_type)
        restarted += [i for i in wrong if i not in restarted]
    return restarted


def _live_tags(attrs: dict[str, Any], live: list[dict[str, Any]]) -> dict[str, str]:
    """The user's tags as the instances carry them (the first that differs: drift)."""
    for inst in live:
        t = {k: v for k, v in ec2.tag_dict(inst).items() if k not in ec2.RHPLAN_TAGS}
        if "Name" not in (attrs.get("tags_all") or {}):
            t.pop("Name", None)  # rhplan's default Name tag is not the user's
        if t != attrs.get("tags_all"):
            return t
    return dict(attrs.get("tags_all") or {})


def _transient(message: str) -> bool:
    m = message.lower()
    return any(w in m for w in ("refused", "timed out", "timeout", "unreachable",
                                "no route", "reset", "closed", "banner"))
