#!/usr/bin/env python3
"""What Ray's TLS (multi-node clusters, issue 16) costs a call to a Ray actor, as a
servlet call on the direct route is one.

Run (from the repository root, with the project's venv active):

    python bench/tls_calls.py                  # 1,000 calls per mode, 1 MB put/get x 20
    python bench/tls_calls.py --calls 5000

Starts two Ray heads on this machine with rhplan's own code (rhplan.ray.head.start,
LocalConnection): a one-host head (loopback, no TLS) and a head ready for other
nodes on the host's address, with the cluster CA and node certificate rhplan.tls
makes. (Both stay on this machine: the difference is TLS, not the network.) For each,
a fresh driver process (with the matching settings, as rhplan.servlet's direct route
sets them) starts one actor and measures, after 50
warm-up calls: a method round trip (median, p90, p99) and a 1 MB bytes argument
round trip. Prints a table; stops both heads by their temp dirs.

The SSH route is not affected: its gateway reaches servlets on the head through a UNIX
socket, not Ray's network. A one-host cluster runs on loopback without TLS.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rhplan import ray_head, tls  # noqa: E402
from rhplan.hosts.connection import LocalConnection  # noqa: E402

DRIVER = r"""
import json, os, statistics, sys, time
os.environ.update(json.loads(sys.argv[2]))
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=0)
class Echo:
    def ping(self, x=None):
        return x
a = Echo.remote()
ray.get(a.ping.remote())
for _ in range(50):
    ray.get(a.ping.remote())
def timed(n, arg=None):
    out = []
    for _ in range(n):
        t = time.perf_counter(); ray.get(a.ping.remote(arg)); out.append(time.perf_counter() - t)
    return sorted(out)
calls = timed(int(sys.argv[3]))
blob = timed(20, b"x" * 1_000_000)
q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] * 1000
print("RESULT " + json.dumps({"median": q(calls, .5), "p90": q(calls, .9), "p99": q(calls, .99),
                              "mb_median": q(blob, .5)}))
"""


def host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.255.255.255", 1))
        return str(s.getsockname()[0])


def run(mode: str, calls: int, work: Path) -> dict:
    conn = LocalConnection()
    root = work / mode
    ip = host_address()
    files = None
    if mode == "tls":
        ca = tls.make_ca("bench")
        files, _ = tls.put_node(conn, str(root), ip, [ip], ca, None)
    head = None
    try:
        # plain: a one-host head (127.0.0.1; traffic to the host's own address takes
        # the loopback device too); tls: a head ready for other nodes, with TLS
        head = ray_head.start(conn, sys.executable, str(root), 2, node_ip=ip,
                              single_node=files is None, tls=files)
        env = ray_head.ray_env(head.token_path, files is None, files)
        proc = subprocess.run([sys.executable, "-c", DRIVER, head.address, json.dumps(env),
                               str(calls)], capture_output=True, text=True, timeout=600)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if not lines:
            raise SystemExit(f"{mode}: driver failed:\n{proc.stderr[-3000:]}")
        return json.loads(lines[0][7:])
    finally:
        if head is not None:
            ray_head.stop(conn, sys.executable, head.temp_dir, head.token_path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rhplan-tls-bench-") as d:
        t0 = time.monotonic()
        res = {m: run(m, args.calls, Path(d)) for m in ("plain", "tls")}
    print(f"\nRay actor round trips, plain: one-host head, TLS: head for many ({args.calls} calls, "
          f"load {os.getloadavg()[0]:.1f}, {time.monotonic() - t0:.0f} s)")
    print(f"{'':12}{'plain':>10}{'TLS':>10}{'ratio':>8}")
    for k, label in (("median", "call median"), ("p90", "call p90"), ("p99", "call p99"),
                     ("mb_median", "1 MB arg")):
        p, t = res["plain"][k], res["tls"][k]
        print(f"{label:12}{p:>8.2f}ms{t:>8.2f}ms{t / p:>8.2f}")
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    main()
