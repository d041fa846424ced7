"""What lets the instances be reached: one key pair and one security group per cluster,
and the group's inbound rules kept exactly as allowed_cidrs and open_ports say."""
from __future__ import annotations

import os
import time
from typing import Any

from rhplan.plugin import ProviderError
from rhplan_aws import ec2
from rhplan_aws.account import Account

# An inbound rule as a value: (protocol, from port, to port, source). The source is a
# CIDR block, or "self" for the cluster's own group (Ray's nodes talk on many ports).
Rule = tuple[str, int, int, str]


def ensure_key_pair(account: Account, client: Any, attrs: dict[str, Any], private: dict,
                    lineage: str) -> str:
    name = f"rhplan-{lineage[:8]}-{attrs.get('name')}"
    public = public_key((attrs.get("ssh") or {}).get("private_key"))
    existing = client.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])
    if existing.get("KeyPairs"):
        ec2.call(client.delete_key_pair, f"replacing key pair {name}", KeyName=name)
    ec2.call(client.import_key_pair, f"importing key pair {name}", KeyName=name,
             PublicKeyMaterial=public.encode(),
             TagSpecifications=[{"ResourceType": "key-pair", "Tags": ec2.tag_list(
                 account.tags(attrs, lineage))}])
    private["key_name"] = name
    return name


def ensure_security_group(account: Account, client: Any, attrs: dict[str, Any],
                          private: dict, lineage: str) -> str:
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
                                           ec2.tag_list(account.tags(attrs, lineage))}]
                       )["GroupId"]
        perms = []
    private["security_group_id"] = gid
    # killed between CreateSecurityGroup and AuthorizeSecurityGroupIngress, a group
    # lets nothing in: the sync adds whatever is missing
    sync_rules(account, client, attrs, private, perms)
    return gid


def sync_rules(account: Account, client: Any, attrs: dict[str, Any], private: dict,
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
    account.forget("aws-groups")  # the shared describe no longer tells the truth


def delete_group(client: Any, gid: str) -> None:
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


def leftovers(client: Any, private: dict) -> list[str]:
    """The cluster's security group and key pair, if they still exist."""
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


def public_key(private_key: str | None) -> str:
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
