"""`aws_launch_only`: the aws provider's EC2 side (launch, tag, resize, terminate, the
security group and key pair), its hosts never contacted. moto's instances have no
sshd: the tests and benchmarks that measure EC2 calls (tests/test_aws_calls.py,
test_faults.py, test_crash.py, bench/aws_scale.py) use it in place of provider "aws"
(the `provider "aws" { ... }` block still configures it). It declares
Capabilities(runs_ray=False), so the core starts no Ray and contacts no host; it is a
test provider, found by entry point, never part of rhplan.
"""
from __future__ import annotations

from typing import Any

from rhplan_aws import AWSProvider

from rhplan.plugin import UNKNOWN, Capabilities


class AWSLaunchOnly(AWSProvider):
    name = "aws_launch_only"
    capabilities = Capabilities(grows=True, runs_ray=False)

    def _set_up_hosts(self, attrs: dict[str, Any], private: dict, todo: list[str]
                      ) -> tuple[dict[str, Any], dict]:
        """Every launched instance counts as set up; nothing is reached over SSH."""
        attrs["hosts"] = {ip: "ready" for ip in attrs["ips"]}
        if attrs.get("root_dir") in (None, UNKNOWN):
            attrs["root_dir"] = "/skipped"
        return attrs, private
