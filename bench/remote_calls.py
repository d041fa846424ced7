#!/usr/bin/env python3
"""Remote servlet calls, side by side: direct Ray, rhplan's gateway over SSH, Ray Client.

Run (from the repository root, as root or a user sshd lets in, with the venv active):

    python bench/remote_calls.py                    # 1,000 calls, 10 x 10 MB, 3 s runs
    python bench/remote_calls.py --calls 3000 --objects 20 --seconds 5
    python bench/remote_calls.py --routes ssh,direct  # leave Ray Client out
    python bench/remote_calls.py --rounds 1           # single samples (quicker, noisier)
    python bench/remote_calls.py --routes direct,ssh --compare 4526350
                                       # the ssh route as of a git revision too, beside
    python bench/remote_calls.py --routes ssh --keep  # leave the cluster up: measure
                                       # again with the --measure line it prints
    python bench/remote_calls.py --routes ssh --pin-caller 0  # the caller on one CPU
                                       # (a diagnostic: docs/remote.md, run 14)

What it does
------------
1. Starts a private sshd on 127.0.0.1 (tests/support/sshd.py), and applies one ssh cluster
   on it (`provider = "ssh"`, the head is this machine reached over SSH, its own Ray
   head) with one env "bench" holding numpy (real uv venv, real Ray).
2. For each route, a fresh driver process (so only that route runs in it) calls
   `rhplan.servlet("bench")` and measures:
     first handle  rhplan.servlet() in a fresh process, import of rhplan included
                   (for ssh: --rounds times with the gateway stopped and its folder
                   removed, "cold", as at its first use after an apply, and --rounds + 1
                   times with it running)
     call          s.call(noop), noop defined in the driver (sent by value): median, p99
     put / get     a 10 MB float64 numpy array: median of --objects each
     1 thread      calls per second of one thread for --seconds
     8 threads     calls per second of 8 threads on one handle, and the ratio
     load average  the machine's 1-minute load average at the thread runs (min, max):
                   on 2 cores, anything above ~1 means neighbours share them
     CPU per call  process CPU time (/proc/PID/stat) per call during the 1- and
                   8-thread runs, of each process a call goes through (caller; servlet;
                   for ssh also the gateway and sshd's session processes): what the
                   neighbours' load skews less than calls per second, though batching
                   under 8 threads still varies with it
     SSH packets   (ssh) the caller's SSH packets sent and received per call in those
                   runs (paramiko's, counted in the driver): how many calls share one
   First handles and thread runs are measured --rounds times (thread runs alternated);
   the best counts, since other work on the machine only ever adds time. Every sample
   is printed (stderr), so the spread shows.
   Routes: direct (RHPLAN_SERVLET_ROUTE=direct: the driver joins the head's Ray),
   ssh (RHPLAN_SERVLET_ROUTE=ssh: rhplan's gateway through one SSH direct-tcpip
   channel), rayclient (a Ray Client server started on the head's loopback, its port
   forwarded with `ssh -L` by OpenSSH; the driver uses ray.init("ray://...")).
3. Prints one table with issue 12's targets for the ssh route beside the figures
   (call median <= 5 ms, p99 <= 20 ms, put/get <= 100 ms, first handle <= 1 s warm
   and cold, 8 threads >= 4x one thread), and PASS/FAIL.
4. Destroys the cluster (also on failure or Ctrl-C) and stops sshd.

The machine should be otherwise idle: figures taken while other work runs are noisy.
Exit status: 0 all targets met, 1 some missed, 2 setup or a measurement failed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from remote_calls_report import table, verdict
from remote_calls_setup import (
    ENV,
    ROOT,
    apply_cluster,
    compare,
    driver_python,
    ray_client,
    stop_gateway,
    teardown,
)

# --------------------------------------------------------------------------
# the driver: runs in its own process (`--measure DIR ROUTE`)
# --------------------------------------------------------------------------

def noop() -> None:
    return None


def _pct(ms: list[float], p: float) -> float:
    ms = sorted(ms)
    return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]


class _RayClientHandle:
    """The servlet through Ray Client (the other candidate design)."""

    def __init__(self, address: str, name: str):
        import ray
        ray.init(address=address, namespace="rhplan", logging_level="ERROR")
        self.ray = ray
        self.actor = ray.get_actor(name, namespace="rhplan")

    def call(self, fn: Any, *args: Any) -> Any:
        from ray import cloudpickle
        res = self.ray.get(self.actor.call.remote(cloudpickle.dumps((fn, args, {}))))
        return cloudpickle.loads(res[1])

    def put(self, key: str, obj: Any) -> None:
        self.ray.get(self.actor.put.remote(key, obj))

    def get(self, key: str) -> Any:
        return self.ray.get(self.actor.get.remote(key))


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def _processes(s: Any, route: str) -> dict[str, list[int]]:
    """The processes a call goes through (the head is this machine): their CPU time per
    call is what the neighbours' load skews least."""
    procs: dict[str, list[int]] = {"caller": [os.getpid()]}
    ident = getattr(s, "_identity", None) or {}
    if ident.get("pid"):
        procs["servlet"] = [int(ident["pid"])]
    gw = getattr(s, "_gateway", None)
    if route == "ssh" and gw is not None:
        procs["gateway"] = [int(gw.versions.get("pid") or 0)]
        sshd = int(os.environ.get("RHPLAN_BENCH_SSHD_PID") or 0)
        if sshd:
            sys.path.insert(0, str(ROOT / "tests" / "support"))
            from sshd import _descendants
            procs["sshd"] = _descendants(sshd)
    return procs


def _count_ssh_packets() -> dict[str, int]:
    """Counts of the SSH packets this process sends and receives from now on (paramiko's
    Packetizer): how many calls share a packet under concurrency."""
    from paramiko.packet import Packetizer
    counts = {"sent": 0, "received": 0}
    send, read = Packetizer.send_message, Packetizer.read_message

    def send_message(self: Any, data: Any) -> Any:
        counts["sent"] += 1
        return send(self, data)

    def read_message(self: Any) -> Any:
        counts["received"] += 1
        return read(self)

    Packetizer.send_message = send_message  # type: ignore[method-assign]
    Packetizer.read_message = read_message  # type: ignore[method-assign]
    return counts


def _cpu(procs: dict[str, list[int]]) -> dict[str, int]:
    return {k: sum(_cpu_ticks(p) for p in pids) for k, pids in procs.items()}


def _objects(s: Any, mb: float, objects: int) -> tuple[list[float], list[float], str | None]:
    """put and get of an mb MB numpy array, objects times each: (put ms, get ms, why they
    failed or None)."""
    import numpy as np
    arr = np.random.default_rng(0).random(int(mb * (1 << 20) / 8))
    puts: list[float] = []
    gets: list[float] = []
    try:
        for _ in range(objects):
            t = time.perf_counter()
            s.put("arr", arr)
            puts.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            back = s.get("arr")
            gets.append((time.perf_counter() - t) * 1e3)
            assert np.array_equal(back, arr)
    except Exception as exc:  # noqa: BLE001 - a route that cannot carry numpy is a finding
        return puts, gets, f"put/get of a numpy array failed: {type(exc).__name__}: " + (
            str(exc).strip().splitlines() or [""])[-1][:200]
    return puts, gets, None


def measure(directory: str, route: str, calls: int, objects: int, mb: float,
            seconds: float, rayclient: str, rounds: int = 1) -> dict[str, Any]:
    t0 = time.perf_counter()
    if route == "rayclient":
        s: Any = _RayClientHandle(rayclient, ENV)
    else:
        import rhplan
        s = rhplan.servlet(ENV, chdir=directory)
    first = time.perf_counter() - t0
    for _ in range(50):
        s.call(noop)
    lat = []
    for _ in range(calls):
        t = time.perf_counter()
        s.call(noop)
        lat.append((time.perf_counter() - t) * 1e3)
    procs = _processes(s, route) if route != "rayclient" else {}
    packets = _count_ssh_packets() if route == "ssh" else None
    per_packet: dict[str, list[float]] = {}
    hz = os.sysconf("SC_CLK_TCK")
    cpu_us: dict[int, dict[str, float]] = {}

    loads: list[float] = []  # the machine's 1-minute load average at each thread run

    def rate(threads: int) -> float:
        loads.append(os.getloadavg()[0])
        done = [0] * threads
        stop = time.perf_counter() + seconds

        def work(i: int) -> None:
            while time.perf_counter() < stop:
                s.call(noop)
                done[i] += 1

        ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        before = _cpu(procs)
        sent0, got0 = (packets["sent"], packets["received"]) if packets else (0, 0)
        start = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        took = time.perf_counter() - start
        after = _cpu(procs)
        n = max(1, sum(done))
        per = {k: (after[k] - before[k]) * 1e6 / hz / n for k in procs}
        if procs:
            per["total"] = sum(per.values())
            print(f"cpu us per call, {threads} thread(s), {n} calls: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in per.items()), file=sys.stderr)
            old = cpu_us.get(threads)
            if old is None or per["total"] < old["total"]:
                cpu_us[threads] = per
                if packets:
                    per_packet[str(threads)] = [round((packets["sent"] - sent0) / n, 2),
                                                round((packets["received"] - got0) / n, 2)]
        return sum(done) / took

    # alternated, best of each: on a shared machine, neighbours only ever take away
    ones, eights = [], []
    for _ in range(rounds):
        ones.append(rate(1))
        eights.append(rate(8))
    one, eight = max(ones), max(eights)
    # objects last: a route that fails them (Ray Client) may not recover
    puts, gets, put_error = _objects(s, mb, objects)

    out = {"first_handle_s": first, "call_median_ms": statistics.median(lat),
           "call_p99_ms": _pct(lat, 99), "one_thread_per_s": one,
           "eight_threads_per_s": eight, "threads_ratio": eight / one,
           "one_thread_rounds": [round(x) for x in ones],
           "eight_threads_rounds": [round(x) for x in eights],
           "load_min": min(loads), "load_max": max(loads),
           "cpu_us_per_call": {str(k): {p: round(v) for p, v in d.items()}
                               for k, d in cpu_us.items()}}
    if per_packet:  # of the run whose CPU per call is reported
        out["ssh_packets_per_call"] = per_packet
    if put_error:
        out["error"] = put_error
    elif puts:
        out.update(put_ms=statistics.median(puts), get_ms=statistics.median(gets))
    return out


def first_handle(directory: str) -> float:
    import rhplan
    t0 = time.perf_counter()
    rhplan.servlet(ENV, chdir=directory)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------
# the bench: sets up, runs drivers, prints, tears down
# --------------------------------------------------------------------------

def _driver(args: list[str], route: str, env_python: str,
            extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {**os.environ, "RHPLAN_SERVLET_ROUTE": route if route != "rayclient" else "ssh",
           **(extra_env or {})}
    proc = subprocess.run([env_python, __file__, *args], capture_output=True, text=True,
                          timeout=900, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"driver ({route}) failed:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument("--mb", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--routes", default="direct,ssh,rayclient")
    ap.add_argument("--measure", nargs=2, metavar=("DIR", "ROUTE"))
    ap.add_argument("--first-handle", metavar="DIR")
    ap.add_argument("--rayclient", default="")
    ap.add_argument("--compare", metavar="REV",
                    help="first run the ssh route with rhplan as of git revision REV (its "
                         "own cluster), and print it beside this run's")
    ap.add_argument("--json-out", metavar="FILE", help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true",
                    help="leave the cluster and sshd running (prints how to measure again)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="first handles and thread runs are measured this many times; the "
                         "best counts (all are printed)")
    ap.add_argument("--pin-caller", type=int, metavar="CPU",
                    help="run the measuring driver (the caller: its threads and paramiko's) "
                         "on this one CPU only, as `taskset -c CPU` would: a diagnostic, "
                         "see docs/remote.md run 14; rhplan never pins a caller itself")
    return ap.parse_args()


def _first_handles(route: str, infra: Path, root: Path, py: str, rounds: int
                   ) -> dict[str, Any]:
    """The ssh route's first handles, cold (gateway stopped) and warm, rounds times each."""
    cold, warm = [], []
    for _ in range(rounds):
        stop_gateway(root)  # the next caller starts it (and uploads it)
        cold.append(_driver(["--first-handle", str(infra)], route, py)["first_handle_s"])
        warm.append(_driver(["--first-handle", str(infra)], route, py)["first_handle_s"])
    return {"cold_first_handle_s": min(cold),
            "cold_first_handle_rounds": [round(x, 3) for x in cold],
            "first_handle_rounds": [round(x, 3) for x in warm]}


def main() -> int:
    args = _parse_args()
    if args.first_handle:
        print(json.dumps({"first_handle_s": first_handle(args.first_handle)}))
        return 0
    if args.measure:
        if args.pin_caller is not None:  # before any thread starts: they inherit it
            os.sched_setaffinity(0, {args.pin_caller})
        print(json.dumps(measure(args.measure[0], args.measure[1], args.calls, args.objects,
                                 args.mb, args.seconds, args.rayclient, args.rounds)))
        return 0

    before = compare(args.compare, sys.argv[1:]) if args.compare else None
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from sshd import SSHServer
    work = Path(tempfile.mkdtemp(prefix="rhplan-bench-remote-"))
    server = SSHServer(work / "sshd").start()
    os.environ["RHPLAN_BENCH_SSHD_PID"] = str(server._proc.pid if server._proc else 0)
    infra = work / "infra"
    code = 2
    forward = None
    try:
        infra, root = apply_cluster(work, server)
        routes = [r.strip() for r in args.routes.split(",") if r.strip()]
        py = driver_python(work, "rayclient" in routes)
        common = ["--calls", str(args.calls), "--objects", str(args.objects), "--mb",
                  str(args.mb), "--seconds", str(args.seconds), "--rounds", str(args.rounds)]
        if args.pin_caller is not None:
            common += ["--pin-caller", str(args.pin_caller)]
        results: dict[str, dict[str, Any]] = {}
        for route in routes:
            try:
                extra = _first_handles(route, infra, root, py, args.rounds) if (
                    route == "ssh") else {}
                rc_addr, rc_env = "", dict[str, str]()
                if route == "rayclient":
                    forward, rc_addr, rc_env = ray_client(infra, server)
                got = _driver(["--measure", str(infra), route, *common, "--rayclient",
                               rc_addr], route, py, rc_env)
                if "first_handle_rounds" in extra:  # the measuring driver's own is one more
                    extra["first_handle_rounds"].append(round(got["first_handle_s"], 3))
                    got["first_handle_s"] = min(extra["first_handle_rounds"])
                results[route] = {**got, **extra}
            except Exception as exc:  # noqa: BLE001 - a route that fails is a finding
                results[route] = {"error": str(exc).strip().splitlines()[-1][:300]}
            print(f"{route}: {json.dumps(results[route])}", file=sys.stderr)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results))
        print(table(results, before, args.compare or ""))
        if args.pin_caller is not None:
            print(f"(the caller was pinned to CPU {args.pin_caller}: --pin-caller)")
        if "call_median_ms" in results.get("ssh", {}):
            code = verdict(results["ssh"])
    finally:
        if forward is not None:
            forward.kill()
        if args.keep:
            print(f"kept: {work} (sshd pid {os.environ['RHPLAN_BENCH_SSHD_PID']}); measure "
                  f"again: RHPLAN_SERVLET_ROUTE=ssh RHPLAN_BENCH_SSHD_PID=... "
                  f"{work}/driver-venv/bin/python {__file__} --measure {infra} ssh",
                  file=sys.stderr)
        else:
            teardown(infra, server, work)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as exc:  # noqa: BLE001
        print(f"bench failed: {exc}", file=sys.stderr)
        sys.exit(2)
