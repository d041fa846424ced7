"""What the aws provider plans: the checks of a cluster block, the values it adds
(resolved type, cost, allowed_cidrs, ingress rules, host key checks), and how a change
to recorded instances is carried out (in place, resized, or replaced) and why."""
from __future__ import annotations

import ipaddress
import os
from typing import Any

from rhplan.plugin import UNKNOWN, ConfigError
from rhplan_aws import caller_address, catalog
from rhplan_aws.network import rules_text, wanted_rules

_NOT_FOR_AWS = ("ips",)
# attributes whose change replaces the cluster's instances (EC2 cannot change them)
_REPLACES = {
    "image_id": "image_id cannot be changed on a running instance",
    "region": "instances cannot move to another region",
    "disk_size": "the root volume is made at launch",
    "use_spot": "an instance cannot switch between spot and on-demand",
}
HOST_KEY_CHECKS = {"console_output": "verified from console output",
                   "trust_on_first_use": "trusted on first use"}


def plan_cluster(name: str, attrs: dict[str, Any], pcfg: dict[str, Any], file: str,
                 line: int) -> dict[str, Any]:
    """The cluster block checked, with what the plan knows before any instance exists."""
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



def settle(before: dict[str, Any], after: dict[str, Any]) -> None:
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

def replacement(before: dict[str, Any], after: dict[str, Any], changed: list[str]
                ) -> tuple[list[str], str]:
    forces, why = _replacement(before, after, changed)
    if not forces and ("ingress" in changed or "allowed_cidrs" in changed):
        rules = ("the security group's rules change in place (instances and Ray are "
                 "left alone)")
        why = f"{why}; {rules}" if why else rules
    return forces, why

def _replacement(before: dict[str, Any], after: dict[str, Any], changed: list[str]
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

def catalog_resize_refused(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """Why EC2 cannot resize before's instances to after's type in place, or None."""
    try:
        return catalog.resize_in_place(catalog.resolve(before["resolved_instance_type"]),
                                       catalog.resolve(after["resolved_instance_type"]))
    except (catalog.UnknownInstanceType, KeyError, TypeError):
        return "the recorded instance type is not one rhplan knows"


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


