"""Runs ON a host, with its python3 (any 3.x): `probe_host.py [CANDIDATE]` prints its
Python version, home, CPUs, and the address Ray should use there: CANDIDATE if it is
one of the host's own (a LAN or VPC address), else the one SSH reached it at, else the
address of its default route (a host behind a proxy command is reached at 127.0.0.1,
which other nodes cannot use)."""
import json
import os
import socket
import sys


def own(ip):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


def default_route():
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def node_ip(cand):
    reached = (os.environ.get("SSH_CONNECTION") or "").split()[2:3]
    if cand and own(cand):
        return cand
    if reached and not reached[0].startswith("127.") and own(reached[0]):
        return reached[0]
    return default_route()


print(json.dumps({"version": list(sys.version_info[:3]), "home": os.path.expanduser("~"),
                  "cpus": os.cpu_count() or 1,
                  "node_ip": node_ip(sys.argv[1] if len(sys.argv) > 1 else "")}))
