"""A ProxyCommand for emulated EC2 instances: `aws_proxy.py LOG IP ID PORT`.

moto launches instances that exist only on paper; this is the SSM/bastion hop of a real
setup, and what it leads to is the test sshd on 127.0.0.1:PORT. It logs the IP and
instance id rhplan substituted for %h and %i, so tests can check which "instance"
rhplan meant to reach.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sshd import _relay  # noqa: E402

if __name__ == "__main__":
    log, ip, iid, port = sys.argv[1:5]
    with open(log, "a") as fh:
        fh.write(f"{ip} {iid}\n")
    _relay("127.0.0.1", int(port))
