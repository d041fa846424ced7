"""How the aws provider reaches its instances over SSH (rhplan_ssh's HostAccess): a
new instance's host key must be one cloud-init printed to its console (only the
account can read it) unless the cluster says to trust the first key; proxy_command
gets %i, the instance id; Ray uses the instance's private address."""
from __future__ import annotations

import os
import time
from typing import Any

from rhplan.plugin import ProviderError
from rhplan_aws import console, ec2
from rhplan_aws.account import Account

# how long to wait for cloud-init to print a new instance's host keys to the console
CONSOLE_WAIT_SECONDS = float(os.environ.get("RHPLAN_AWS_CONSOLE_WAIT_SECONDS", "300"))


def instance_id(ip: str, private: dict) -> str | None:
    return next((i["id"] for i in private.get("instances") or [] if i["ip"] == ip), None)


class InstanceAccess:
    def __init__(self, account: Account) -> None:
        self.account = account
        self._console_prints: dict[str, frozenset[str]] = {}  # instance id -> fingerprints

    def proxy_command(self, ip: str, attrs: dict[str, Any], private: dict) -> str | None:
        cmd = (attrs.get("ssh") or {}).get("proxy_command")
        if not cmd:
            return None
        iid = instance_id(ip, private) or ""
        # %i: the instance id (SSM: aws ssm start-session --target %i ...); ids are
        # [a-z0-9-] only, so they are safe in the command line
        return cmd.replace("%%", "\0").replace("%i", iid).replace("\0", "%%")

    def node_ip_candidate(self, ip: str, private: dict) -> str:
        for inst in private.get("instances") or []:
            if inst["ip"] == ip:
                return inst.get("private_ip") or ip
        return ip

    def published_host_keys(self, ip: str, attrs: dict[str, Any], private: dict
                            ) -> dict[str, Any]:
        mode = (attrs.get("ssh") or {}).get("host_key_check") or "console_output"
        if mode != "console_output":
            return {}
        iid = instance_id(ip, private)
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
        client = self.account.client(attrs, private)
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
