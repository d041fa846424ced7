#!/usr/bin/env python3
"""Placement on any node (issue 13 item 7): an env on a worker node answers calls as
fast as one on the head. The sibling of bench/envs_parity.py, for the multi-node line.

Run as root (it makes two network namespaces, tests/support/netns.py), from the repository
root with the project's venv active:

    python bench/node_parity.py                  # 300 calls per env and route
    python bench/node_parity.py --calls 1000

What it does: two hosts (network namespaces on a bridge, each with its own sshd) form
one Ray cluster with TLS between the nodes (`rhplan apply`, ssh provider); env "near"
stays on the head, env "far" asks for a custom resource only the worker offers, so it
is built on and served from the worker. Then, per env, the median and 90th percentile
of a steady call, printed side by side, over both routes:
  - ssh: `rhplan.servlet(env).call(fn)` from this machine, through the SSH connection
    to the servlet's own node and the gateway there (a worker's servlet has its own
    gateway, on the worker; until 971bf6c the head's gateway reached it through Ray);
  - direct: a Ray driver on the head calling the named actor (`keys`, the smallest
    round trip).
and the ssh route's first handle and call per env, in seconds (near: the head's
gateway, started cold; far: an SSH connection to the worker and its gateway, cold).
Everything is destroyed at the end (also after a failure or Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))  # the tests' helpers (hosts, clusters)

RHPLAN = [sys.executable, "-m", "rhplan.cli"]

ENVS = """
env "near" {
  cluster = cluster.duo
  reqs    = []
}

env "far" {
  cluster = cluster.duo
  reqs    = []
  compute = { my_accel = 1 }
}
"""

# this machine, the ssh route: steady calls into each env's servlet
SSH_DRIVER = """
import json, statistics, sys, time
import rhplan

def fn():
    return 1

out, first = {}, {}
for env in sys.argv[3:]:
    t = time.perf_counter()
    s = rhplan.servlet(env, chdir=sys.argv[1])
    s.call(fn)
    first[env] = time.perf_counter() - t
    for _ in range(20):
        s.call(fn)
    times = []
    for _ in range(int(sys.argv[2])):
        t = time.perf_counter()
        s.call(fn)
        times.append(time.perf_counter() - t)
    out[env] = sorted(times)
print("TIMES " + json.dumps(out))
print("FIRST " + json.dumps(first))
"""

# on the head: a Ray driver calling each named actor directly
DIRECT_DRIVER = """
import json, os, sys, time
os.environ.update(json.loads(sys.argv[2]))
import ray
ray.init(address=sys.argv[1], namespace="rhplan", logging_level="ERROR", log_to_driver=False)
out = {}
for env in sys.argv[4:]:
    actor = ray.get_actor(env, namespace="rhplan")
    for _ in range(20):
        ray.get(actor.keys.remote())
    times = []
    for _ in range(int(sys.argv[3])):
        t = time.perf_counter()
        ray.get(actor.keys.remote())
        times.append(time.perf_counter() - t)
    out[env] = sorted(times)
print("TIMES " + json.dumps(out))
"""


def cli(folder: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*RHPLAN, *args], cwd=folder, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"rhplan {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def times_of(stdout: str) -> dict[str, list[float]]:
    lines = [ln[6:] for ln in stdout.splitlines() if ln.startswith("TIMES ")]
    if not lines:
        raise SystemExit(f"no timings:\n{stdout}")
    return json.loads(lines[0])


def pct(times: list[float], p: float) -> float:
    return times[min(len(times) - 1, int(len(times) * p))] * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    args = ap.parse_args()
    from netns import TestNetwork, netns_available
    from ssh_cluster import cluster_hcl, hcl_str, provision_ray_venv

    from rhplan.ray.head import private_env
    reason = netns_available()
    if reason is not None:
        print(f"SKIP: network namespaces unavailable: {reason}")
        return 2
    net = TestNetwork()
    tmp = Path(tempfile.mkdtemp(prefix="node-parity-"))
    infra = tmp / "infra"
    applied = False
    try:
        a, b = net.add_host("a"), net.add_host("b")
        for host in (a, b):  # no PyPI in there: uv installs from its cache, offline
            host.extra_config.append("SetEnv UV_OFFLINE=1")
            host.stop()
            host.start()
        root = tmp / "root"
        provision_ray_venv(root)
        infra.mkdir()
        ssh = (f'  ssh {{\n    user        = "root"\n    private_key = '
               f"{hcl_str(net.client_key)}\n    known_hosts = {hcl_str(net.known_hosts)}\n  }}")
        (infra / "main.hcl").write_text(cluster_hcl("duo", [a.address, b.address], root, ssh,
                                                    bare_env=False)
                                        .replace('  provider = "ssh"\n', '  provider = "ssh"\n'
                                                 f'  custom_resources_by_host = {{ "{b.address}"'
                                                 ' = { my_accel = 1 } }\n') + ENVS)
        t0 = time.monotonic()
        applied = True
        cli(infra, "apply", "-auto-approve")
        print(f"apply (2 nodes, 2 envs, one on each): {time.monotonic() - t0:.1f} s")
        state = {r["address"]: r for r in json.loads(
            (infra / "rhplan.state.json").read_text())["resources"]}
        far = state["env.far"]["attributes"]
        print(f"env.near on the head {a.address}; env.far on node {far.get('node')}")
        ssh_run = subprocess.run(
            [sys.executable, "-c", SSH_DRIVER, str(infra), str(args.calls), "near", "far"],
            capture_output=True, text=True, timeout=900, check=False,
            env={**os.environ, "RHPLAN_SERVLET_ROUTE": "ssh"}).stdout
        ssh_times = times_of(ssh_run)
        first = json.loads(next(ln[6:] for ln in ssh_run.splitlines()
                                if ln.startswith("FIRST ")))
        c = state["cluster.duo"]
        proc = a.run([str(root / "ray-venv" / "bin" / "python"), "-c", DIRECT_DRIVER,
                      c["attributes"]["ray_address"], json.dumps(private_env(c["private"]["ray"])),
                      str(args.calls), "near", "far"], timeout=900)
        direct_times = times_of(proc.stdout + proc.stderr)
        print(f"\nsteady call, {args.calls} per env and route (median / p90, ms):")
        print(f"  {'route':34s} {'near (head)':>16s} {'far (worker)':>16s}")
        for label, t in (("ssh: rhplan.servlet(env).call(fn)", ssh_times),
                         ("direct: Ray driver on the head", direct_times)):
            cells = [f"{pct(t[e], 0.5):6.2f} / {pct(t[e], 0.9):6.2f}" for e in ("near", "far")]
            print(f"  {label:34s} {cells[0]:>16s} {cells[1]:>16s}")
        # a worker env's first handle connects to its node and starts its gateway there
        print(f"  {'ssh: first handle + call (s)':34s} {first['near']:16.2f} "
              f"{first['far']:16.2f}")
        return 0
    finally:
        if applied:
            subprocess.run([*RHPLAN, "destroy", "-auto-approve"], cwd=infra,
                           capture_output=True, text=True, timeout=600, check=False)
        net.close()


if __name__ == "__main__":
    sys.exit(main())
