#!/usr/bin/env python3
"""Load benchmark for rhplan: many envs on many SSH hosts, and a plan of many resources.

Run (from the repository root, with the project's venv):

    python bench/load.py                          # both parts at the issue's sizes:
                                                  # 200 envs on 8 hosts; 5,000 resources
    python bench/load.py apply --hosts 2 --envs-per-host 8
    python bench/load.py plan --resources 5000
    python bench/load.py apply --dir /tmp/rhplan-load   # keep the files for a look

Part `apply`: N envs across H SSH hosts, applied and destroyed for real
------------------------------------------------------------------------
1. Starts H private sshd's on 127.0.0.1 (tests/support/sshd.py); each is one host and its own
   `cluster` (provider "ssh", its own root_dir, Ray head and connection pool). Each
   root_dir gets its Ray venv beforehand with uv, as on an image with Ray
   (tests/support/ssh_cluster.provision_ray_venv). Envs live on a cluster's head, so the
   configuration holds H clusters of E envs (`h0e00`..), each env light but real: a uv
   venv with six==1.16.0 and the cluster's Ray, and its own servlet (a Ray actor in the
   env's interpreter).
2. `rhplan apply -auto-approve -target=cluster.h0 ...` with --cluster-parallelism (2):
   the Ray heads first, two at a time (8 `ray start` at once on this one 2-core machine
   time out in Ray's node start-up wait; 8 real hosts would not share a CPU); then ONE
   `rhplan apply -auto-approve` of all the envs (--cluster-parallelism 0: one apply of
   everything). Each: wall time, the CLI process's peak RSS (wait4's ru_maxrss: the
   process itself, not its children) and the machine's lowest MemAvailable meanwhile.
3. Nothing dropped: the state records exactly H clusters and H*E envs, every env with a
   servlet_pid; in every cluster a driver process calls EVERY servlet
   (`rhplan.servlet(name).call(...)`) and gets back that servlet's pid (= the recorded
   one) and the env's own sys.prefix; `rhplan status` says every servlet is alive; and a
   second `rhplan plan -detailed-exitcode` (with refresh: one command per host) says
   "No changes." (timed, peak RSS).
4. Memory of what runs on the hosts: each servlet's RSS and PSS (smaps_rollup), each
   cluster's Ray processes (by its temp dir and token, tests/support/rayprocs.py).
5. `rhplan destroy -auto-approve` (timed), then the hosts are clean: state empty, no
   root_dir, no Ray temp dir, no process of those clusters (anything left is killed by
   pid and reported as a failure). The sshd's stop. Runs in a finally.

Part `plan`: a plan of R recorded resources
-------------------------------------------
Reuses bench/plan_scale.py's generator and state builder (the state a previous apply
would have left; nothing is installed):
  a. R resources = C local clusters + (R - C - 2) envs + 1 secret + 1 package;
     `rhplan plan -refresh=false -detailed-exitcode`: must exit 0 ("No changes."), and
     `plan -refresh=false -json` must list every one of the R resources as a no-op.
  b. the same with a few changes (1 env added, 3 envs' env_vars edited, 1 env removed):
     exit 2, "Plan: 1 to add, 3 to change, 1 to destroy.", and -json accounts for
     R + 1 resources: 4,995 no-ops at R = 5,000, and exactly the five changed ones.
  c. refresh on: clusters and envs are read on their hosts, so a generated state of
     local clusters cannot refresh to itself without R real venvs. Refresh is cheap for
     resources rhplan keeps only in the state: R secrets and packages (half each),
     `rhplan plan -detailed-exitcode` with the default refresh; must exit 0.
Each is a fresh CLI process (imports included) with the parse cache warm (the first
run fills it: also printed), wall time and peak RSS (ru_maxrss).

Output: a table per part, `RELIABILITY: load ...` lines with the figures, and PASS/FAIL
against the targets (TARGETS below). Exit status 0 = every target met, 1 = a target
missed, 2 = something broke (setup, a dropped resource, a failed command, a leftover
process).

All "hosts" share this machine: before applying, the script checks there is memory AND
thread room for the fleet (room_for). Every thread takes a pid and pid_max here is
32,768. A servlet holds its Ray actor's whole thread pool (SERVLET_CONCURRENCY in
rhplan/ray/servlets/servlet_server.py) plus ~24 threads: with the old max_concurrency of 1000
that was ~1,024 threads per servlet, so ~25 servlets exhausted the machine; at 32 it is
~56, and 200 servlets fit. Measured with one actor per setting on an rhplan head:
max_concurrency 1 -> 22 threads, 16 -> 38, 100 -> 122, 1000 -> 1,022 (RSS 78 -> 88 MiB).

Measured here (2 cores, 23 GiB, other test runs sharing the machine, load 7-20):
    python bench/load.py apply --hosts 8 --envs-per-host 2     # 4m42s wall
      clusters 70 s, 16 envs 101 s (6.3 s/env), CLI peak RSS 62-66 MiB for every
      command, no-change plan with refresh 5.9 s, status 13.5 s, destroy 40 s; 16/16
      servlets answered; servlet 93 MiB RSS / 56 MiB PSS / 1,024 threads; 8 heads'
      other processes 2.4 GiB PSS; machine -4.5 GiB at the peak; nothing left after.
    python bench/load.py apply --hosts 2 --envs-per-host 8     # 3m10s wall, load ~22
      one apply of 2 clusters + 16 envs 116 s (7.2 s/env), CLI peak RSS 66 MiB.
    python bench/load.py plan                                  # 1m31s wall, load ~8
      5,000 resources: no-op 4.2 s (1.1 s on an idle machine), cold parse 16 s (5.7 s),
      -json 5.8 s, with changes 4.5 s, refresh on 1.8 s (0.55 s); peak RSS 178 MiB,
      298 MiB for -json (the CLI's json.dumps(indent=2) builds the whole text in
      chunks: streaming with json.dump peaks at 134 MiB, measured in-process).
So for 200 envs on 8 hosts the CLI's own memory stays flat (62-66 MiB from 3 to 16
envs: the apply keeps one state and one connection per host), and the hosts need
~56 MiB PSS per servlet: 200 envs ~11 GiB + 8 heads ~2.4 GiB.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))  # the tests' helpers (hosts, clusters)
sys.path.insert(0, str(REPO / "bench"))

import plan_scale  # noqa: E402  (the generator and state builder of the plan benchmark)
from rayprocs import cluster_processes, temp_dir_for  # noqa: E402  (Ray's random temp dirs)
from ssh_cluster import (  # noqa: E402  (how tests make ssh hosts and clusters)
    cluster_hcl,
    provision_ray_venv,
    ssh_block,
)
from sshd import SSHServer, ensure_sshd_installed  # noqa: E402

RHPLAN = [sys.executable, "-m", "rhplan.cli"]

# Targets, from the measured runs above (2-core machine shared with other test runs):
#  - apply's own memory: 62-66 MiB whatever the number of envs (3, 8, 16); 400 MiB
#    stays under the 5,000-resource plan's and would catch a per-env leak (a Ray
#    driver, a connection or a copy of the state per env: ~1 MiB each at 200 envs);
#  - per env: a uv venv, two uv installs and a servlet start, 5-7 s under load on 2
#    cores (parallel); 10 s catches steps that stop running in parallel;
#  - 5,000 resources: 1.1 s idle, 4-8 s loaded; 15 s keeps the margin of a loaded
#    machine and still catches a step that grows faster than the resources;
#    memory 178 MiB (298 with -json): 400 MiB.
TARGETS = {
    "apply_rss_mb": 400.0,
    "apply_s_per_env": 10.0,
    "replan_s": 30.0,
    "plan_s": 15.0,
    "plan_rss_mb": 400.0,
}
# What the hosts need, from the measured runs above: a servlet ~56 MiB PSS (93 RSS),
# a Ray head's own processes ~0.3 GiB; the apply refuses to start below this plus 2 GiB
# for everything else on the machine (other users' tests run here too).
SERVLET_NEED_MB = 60.0
HEAD_NEED_MB = 350.0
SPARE_MB = 2048.0
# Threads, which all take a pid from the one pid_max all "hosts" here share: a Ray head
# ~200 (gcs, raylet, agents), a servlet its pool + RAY_OWN_THREADS; leave 8,000 to others.
RAY_OWN_THREADS = 30
HEAD_THREADS = 250
SPARE_THREADS = 8000
APPLY_TIMEOUT = 3600.0
CLI_TIMEOUT = 600.0
DRIVER_TIMEOUT = 600.0
LOG_DIR: Path | None = None  # every CLI run's output is kept here (under --dir)


class BenchError(Exception):
    """Something broke (not a missed target): exit 2."""


# --------------------------------------------------------------------------
# running the CLI and measuring memory
# --------------------------------------------------------------------------

@dataclass
class Run:
    args: tuple[str, ...]
    returncode: int
    output: str
    seconds: float
    peak_rss_mb: float  # the CLI process itself (ru_maxrss)
    min_available_mb: float  # the machine's lowest MemAvailable while it ran

    def describe(self) -> str:
        return f"rhplan {' '.join(self.args)} -> exit {self.returncode}\n{self.output[-4000:]}"


def mem_available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cli(directory: Path, *args: str, timeout: float = CLI_TIMEOUT,
        env: dict[str, str] | None = None) -> Run:
    """One `rhplan` CLI process, as a user runs it: wall time, its own peak RSS (wait4)
    and the machine's lowest available memory meanwhile."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    lowest = [mem_available_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.25):
            lowest[0] = min(lowest[0], mem_available_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*RHPLAN, f"-chdir={directory}", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, start_new_session=True)
        sampler.start()
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            done.set()
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if LOG_DIR is not None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        name = f"{len(list(LOG_DIR.iterdir())):02d}-" + "_".join(
            a.strip("-").split("=")[0] for a in args)
        (LOG_DIR / f"{name}.log").write_text(text)
    if proc.returncode == -signal.SIGKILL:
        raise BenchError(f"rhplan {' '.join(args)} did not finish within {timeout:.0f} s:\n"
                         f"{text[-4000:]}")
    if "Traceback" in text:
        raise BenchError(f"rhplan {' '.join(args)} printed a traceback:\n{text[-4000:]}")
    return Run(tuple(args), proc.returncode, text, seconds, usage.ru_maxrss / 1024,
               lowest[0])


def process_memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MiB; PSS splits shared pages among their users, so
    PSS sums are what a set of processes really costs the machine."""
    rss = pss = 0.0
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
    return rss, pss


# --------------------------------------------------------------------------
# part 1: N envs on H SSH hosts
# --------------------------------------------------------------------------


def provision_host(root: Path, with_uv: bool = True) -> None:
    """ROOT/ray-venv as rhplan's own bootstrap leaves it on a host: the driver's Ray and
    uv (tests/support/ssh_cluster.provision_ray_venv). with_uv=False takes uv out again,
    for the fallback: the bootstrap then tries to pip-install uv from PyPI, and envs are
    built with `python -m venv` + pip if it cannot (measured 57 s per env under load,
    against 15 s with uv)."""
    provision_ray_venv(root)
    if not with_uv:
        (root / "ray-venv" / "bin" / "uv").unlink()


def servlet_threads() -> int:
    """Threads one servlet process holds: Ray starts a threaded actor's whole pool at
    once (max_concurrency: SERVLET_CONCURRENCY in rhplan/ray/servlets/servlet_server.py) plus
    ~24 of its own."""
    src = (REPO / "rhplan" / "ray" / "servlets" / "servlet_server.py").read_text()
    m = re.search(r"^SERVLET_CONCURRENCY = (\d+)", src, re.M)
    return (int(m.group(1)) if m else 1) + RAY_OWN_THREADS


def threads_now() -> int:
    n = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                n += len(os.listdir(f"/proc/{entry}/task"))
    return n


def room_for(hosts: int, envs: int) -> str:
    """Why this machine cannot hold the fleet now ("" when it can): memory, and threads
    (every thread takes a pid; all "hosts" here share this machine's pid_max)."""
    need = envs * SERVLET_NEED_MB + hosts * HEAD_NEED_MB + SPARE_MB
    have = mem_available_mb()
    if have < need:
        return (f"{envs} servlets on {hosts} hosts need about {need / 1024:.1f} GiB and "
                f"{have / 1024:.1f} GiB is available; use fewer envs or wait")
    with open("/proc/sys/kernel/pid_max") as f:
        limit = int(f.read())
    with open("/proc/sys/kernel/threads-max") as f:
        limit = min(limit, int(f.read()))
    want = envs * servlet_threads() + hosts * HEAD_THREADS + SPARE_THREADS
    free = limit - threads_now()
    if free < want:
        return (f"{envs} servlets need about {want:,} threads ({servlet_threads():,} each: "
                f"SERVLET_CONCURRENCY in rhplan/ray/servlets/servlet_server.py) and this "
                f"machine has room for {free:,} more (pid_max/threads-max {limit:,}); "
                "use fewer envs")
    return ""


def env_name(host: int, j: int) -> str:
    return f"h{host}e{j:02d}"


def fleet_hcl(servers: list[SSHServer], roots: list[Path], envs_per_host: int) -> str:
    out = []
    for i, (srv, root) in enumerate(zip(servers, roots, strict=True)):
        out.append(cluster_hcl(f"h{i}", ["127.0.0.1"], root, ssh_block(srv), bare_env=False))
        for j in range(envs_per_host):
            out.append(f'env "{env_name(i, j)}" {{\n  cluster = cluster.h{i}\n'
                       f'  reqs    = ["pip:six==1.16.0"]\n'
                       f'  env_vars = {{ SLOT = "{i}-{j}" }}\n}}\n')
    return "\n".join(out)


# Joins one cluster's Ray and calls every named servlet: its pid and sys.prefix, and an
# env var only that env has. One `RESULT {json}` line.
DRIVER = r"""
import json, sys
import rhplan
chdir, names = sys.argv[1], json.loads(sys.argv[2])

def where():
    import os, sys
    return [os.getpid(), sys.prefix, os.environ.get("SLOT")]

out = {}
for name in names:
    out[name] = rhplan.servlet(name, chdir=chdir).call(where)
print("RESULT " + json.dumps(out), flush=True)
"""


def call_every_servlet(directory: Path, names: list[str]) -> dict[str, list[Any]]:
    try:
        proc = subprocess.run([sys.executable, "-c", DRIVER, str(directory), json.dumps(names)],
                              capture_output=True, text=True, timeout=DRIVER_TIMEOUT,
                              check=False, env={**os.environ, "NO_COLOR": "1"})
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"calling servlets {names[:3]}... timed out: {exc.stderr!r}") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or len(lines) != 1:
        raise BenchError(f"the driver for {names[:3]}... failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[0][len("RESULT "):])


@dataclass
class ApplyFigures:
    hosts: int
    envs: int
    parallelism: int
    available_before_mb: float = 0.0
    clusters: Run | None = None  # the clusters' own apply, when they go first
    apply: Run | None = None
    replan: Run | None = None
    status: Run | None = None
    destroy: Run | None = None
    calls_ok: int = 0
    calls_seconds: float = 0.0
    servlet_rss_mb: list[float] = field(default_factory=list)
    servlet_pss_mb: list[float] = field(default_factory=list)
    servlet_threads: list[int] = field(default_factory=list)
    ray_pss_mb: float = 0.0  # every Ray process of the clusters but the servlets
    available_after_mb: float = 0.0
    leftovers: dict[int, str] = field(default_factory=dict)


def check_applied(d: Path, figs: ApplyFigures, roots: list[Path]) -> list[str]:
    """No resource dropped: the state, a call to every servlet, status. Returns the
    servlet pids."""
    state = json.loads((d / "rhplan.state.json").read_text())
    resources = {r["address"]: r for r in state["resources"]}
    hosts, per = figs.hosts, figs.envs // figs.hosts
    want = {f"cluster.h{i}" for i in range(hosts)} | {
        f"env.{env_name(i, j)}" for i in range(hosts) for j in range(per)}
    if set(resources) != want:
        raise BenchError(f"the state does not hold exactly the {len(want)} resources: missing "
                         f"{sorted(want - set(resources))[:10]}, extra "
                         f"{sorted(set(resources) - want)[:10]}")
    pids: dict[str, int] = {}
    for addr, r in resources.items():
        a = r["attributes"]
        if r["type"] == "cluster" and a.get("ray_status") != "running":
            raise BenchError(f"{addr}: ray_status {a.get('ray_status')!r} after apply")
        if r["type"] == "env":
            if not isinstance(a.get("servlet_pid"), int) or a.get("servlet") != "running":
                raise BenchError(f"{addr}: no running servlet recorded: {a}")
            pids[a["name"]] = a["servlet_pid"]

    t0 = time.perf_counter()
    for i in range(hosts):
        names = [env_name(i, j) for j in range(per)]
        got = call_every_servlet(d, names)
        for j, name in enumerate(names):
            pid, prefix, slot = got.get(name) or [None, None, None]
            path = f"{roots[i]}/envs/{name}"
            if (pid, prefix, slot) != (pids[name], path, f"{i}-{j}"):
                raise BenchError(f"servlet {name} answered {got.get(name)}, expected "
                                 f"{[pids[name], path, f'{i}-{j}']}")
            figs.calls_ok += 1
    figs.calls_seconds = time.perf_counter() - t0

    figs.status = cli(d, "status", "-json")
    if figs.status.returncode != 0:
        raise BenchError(f"status after apply:\n{figs.status.describe()}")
    report = json.loads(figs.status.output)
    dead = [s["env"] for c in report for s in c["servlets"] if not s.get("alive")]
    seen = sum(len(c["servlets"]) for c in report)
    if dead or seen != figs.envs or len(report) != hosts:
        raise BenchError(f"status: {seen} servlets over {len(report)} clusters, dead {dead}")

    for pid in pids.values():
        rss, pss = process_memory_mb(pid)
        figs.servlet_rss_mb.append(rss)
        figs.servlet_pss_mb.append(pss)
        with contextlib.suppress(OSError):
            figs.servlet_threads.append(len(os.listdir(f"/proc/{pid}/task")))
    ray_pids: set[int] = set()
    for root in roots:
        ray_pids |= set(cluster_processes([temp_dir_for(str(root))], root))
    figs.ray_pss_mb = sum(process_memory_mb(p)[1] for p in ray_pids - set(pids.values()))
    return list(pids.values())


def run_apply(base: Path, hosts: int, envs_per_host: int, parallelism: int,
              log: Any = print, with_uv: bool = True, cluster_parallelism: int = 2
              ) -> ApplyFigures:
    ensure_sshd_installed()
    figs = ApplyFigures(hosts, hosts * envs_per_host, parallelism)
    if problem := room_for(hosts, figs.envs):
        raise BenchError(problem)
    d = base / "infra"
    d.mkdir(parents=True, exist_ok=True)
    roots = [base / f"root{i}" for i in range(hosts)]
    temp_dirs = [temp_dir_for(str(r)) for r in roots]
    servers: list[SSHServer] = []
    problems: list[str] = []
    finished = False
    try:
        for i in range(hosts):
            servers.append(SSHServer(base / f"sshd{i}").start())
        t0 = time.perf_counter()
        for root in roots:
            provision_host(root, with_uv)
        log(f"  {hosts} sshd(s) up, Ray venvs provisioned in "
            f"{time.perf_counter() - t0:.1f} s; applying {hosts} clusters and "
            f"{figs.envs} envs (parallelism {parallelism}) ...")
        (d / "main.hcl").write_text(fleet_hcl(servers, roots, envs_per_host))
        figs.available_before_mb = mem_available_mb()
        added = hosts + figs.envs
        if cluster_parallelism:
            # Ray heads first, a few at a time: 8 `ray start` at once on one 2-core
            # machine time out in Ray's own node start-up wait (8 real hosts would not
            # share a CPU); then one apply of every env
            figs.clusters = cli(d, "apply", "-auto-approve",
                                f"-parallelism={cluster_parallelism}",
                                *[f"-target=cluster.h{i}" for i in range(hosts)],
                                timeout=APPLY_TIMEOUT)
            if figs.clusters.returncode != 0 or f"Resources: {hosts} added" not in \
                    figs.clusters.output:
                raise BenchError(f"applying the clusters failed:\n{figs.clusters.describe()}")
            added = figs.envs
        figs.apply = cli(d, "apply", "-auto-approve", f"-parallelism={parallelism}",
                         timeout=APPLY_TIMEOUT)
        want = f"Apply complete! Resources: {added} added, 0 changed, 0 destroyed."
        if figs.apply.returncode != 0 or want not in figs.apply.output:
            raise BenchError(f"apply failed:\n{figs.apply.describe()}")
        log(f"  applied in {figs.apply.seconds:.0f} s; checking every servlet ...")
        check_applied(d, figs, roots)
        figs.replan = cli(d, "plan", "-detailed-exitcode")
        if figs.replan.returncode != 0 or "No changes." not in figs.replan.output:
            raise BenchError(f"the plan after apply is not a no-change plan:\n"
                             f"{figs.replan.describe()}")
        finished = True
        return figs
    finally:
        if (d / "rhplan.state.json").exists():
            try:  # whatever happens here, the checks and kills below must still run
                figs.destroy = cli(d, "destroy", "-auto-approve",
                                   f"-parallelism={parallelism}", timeout=APPLY_TIMEOUT)
                if figs.destroy.returncode != 0:
                    problems.append(f"destroy failed:\n{figs.destroy.describe()}")
            except BenchError as exc:
                problems.append(str(exc))
            with contextlib.suppress(OSError, ValueError):
                left = json.loads((d / "rhplan.state.json").read_text())["resources"]
                if left:
                    problems.append(f"state not empty after destroy: "
                                    f"{[r['address'] for r in left][:10]}")
        deadline = time.monotonic() + 30
        left = {}
        while time.monotonic() < deadline:
            left = {}
            for root, td in zip(roots, temp_dirs, strict=True):
                left.update(cluster_processes([td], root))
            # (servlets are found by their token above; a recorded pid alone may by now
            # belong to another process: pids wrap around at pid_max)
            if not left:
                break
            time.sleep(0.2)
        for pid in left:  # only these clusters' processes, never anybody else's
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        figs.leftovers = left
        if left:
            problems.append(f"processes of the clusters outlived destroy (killed): "
                            f"{dict(list(left.items())[:10])}")
        for path in (*roots, *map(Path, temp_dirs)):
            if path.exists():
                problems.append(f"{path} is still there after destroy")
        for srv in servers:
            srv.close()
        figs.available_after_mb = mem_available_mb()
        if problems and finished:
            raise BenchError("\n".join(problems))
        for p in problems:  # already failing: say what was left too
            log(f"  also: {p}")


# (met, what, is_a_timing): timings are figures of this machine's load at the time;
# the other targets (memory, nothing dropped) hold on any machine
Verdict = tuple[bool, str, bool]


def report_apply(f: ApplyFigures) -> list[Verdict]:
    assert f.apply and f.replan and f.destroy and f.status
    n = len(f.servlet_pss_mb) or 1
    rss_avg = sum(f.servlet_rss_mb) / n
    pss_avg = sum(f.servlet_pss_mb) / n
    used = f.available_before_mb - f.apply.min_available_mb
    print(f"\napply of {f.envs} envs on {f.hosts} SSH hosts "
          f"({f.envs // f.hosts} per host, parallelism {f.parallelism})")
    print(f"  {'step':<28}{'wall s':>9}{'CLI peak RSS MiB':>18}")
    if f.clusters:
        print(f"  {'apply clusters first':<28}{f.clusters.seconds:>9.1f}"
              f"{f.clusters.peak_rss_mb:>18.0f}")
    for name, r in ((f"apply ({f.envs} envs)" if f.clusters else "apply", f.apply),
                    ("plan (refresh, no change)", f.replan),
                    ("status -json", f.status), ("destroy", f.destroy)):
        print(f"  {name:<28}{r.seconds:>9.1f}{r.peak_rss_mb:>18.0f}")
    print(f"  calls: {f.calls_ok}/{f.envs} servlets answered with their pid, env and env var "
          f"({f.calls_seconds:.1f} s, one driver per host)")
    print(f"  on the hosts: servlet RSS avg {rss_avg:.0f} MiB (max "
          f"{max(f.servlet_rss_mb, default=0):.0f}), PSS avg {pss_avg:.0f} MiB, all "
          f"{f.envs} servlets {sum(f.servlet_pss_mb) / 1024:.2f} GiB PSS; the {f.hosts} Ray "
          f"heads' other processes {f.ray_pss_mb / 1024:.2f} GiB PSS; threads per servlet "
          f"{max(f.servlet_threads, default=0)}")
    print(f"  machine: MemAvailable {f.available_before_mb / 1024:.1f} GiB before, lowest "
          f"during apply {f.apply.min_available_mb / 1024:.1f} GiB (-{used / 1024:.1f} GiB), "
          f"{f.available_after_mb / 1024:.1f} GiB after destroy; leftovers: "
          f"{len(f.leftovers)}")
    print(f"RELIABILITY: load apply envs={f.envs} hosts={f.hosts} "
          f"clusters_s={f.clusters.seconds if f.clusters else 0:.0f} "
          f"apply_s={f.apply.seconds:.0f} s_per_env={f.apply.seconds / f.envs:.2f} "
          f"apply_peak_rss_mb={f.apply.peak_rss_mb:.0f} replan_s={f.replan.seconds:.1f} "
          f"replan_peak_rss_mb={f.replan.peak_rss_mb:.0f} destroy_s={f.destroy.seconds:.0f} "
          f"servlets_answered={f.calls_ok}/{f.envs} servlet_rss_mb={rss_avg:.0f} "
          f"servlet_pss_mb={pss_avg:.0f} "
          f"servlet_threads={max(f.servlet_threads, default=0)} "
          f"machine_used_gb={used / 1024:.1f} dropped=0 "
          f"leftover_processes={len(f.leftovers)}")
    per_env = f.apply.seconds / f.envs
    return [
        (f.apply.peak_rss_mb < TARGETS["apply_rss_mb"],
         f"apply of {f.envs} envs: CLI peak RSS {f.apply.peak_rss_mb:.0f} MiB "
         f"(target < {TARGETS['apply_rss_mb']:.0f})", False),
        (per_env < TARGETS["apply_s_per_env"],
         f"apply of {f.envs} envs: {f.apply.seconds:.0f} s = {per_env:.2f} s per env "
         f"(target < {TARGETS['apply_s_per_env']:.0f})", True),
        (f.replan.seconds < TARGETS["replan_s"],
         f"no-change plan (refresh) of {f.envs + f.hosts} live resources: "
         f"{f.replan.seconds:.1f} s (target < {TARGETS['replan_s']:.0f})", True),
        (f.calls_ok == f.envs, f"no resource dropped: {f.envs + f.hosts} in the state, "
                               f"{f.calls_ok}/{f.envs} servlets answered, none left after "
                               "destroy", False),
    ]


# --------------------------------------------------------------------------
# part 2: a plan of R recorded resources
# --------------------------------------------------------------------------

@dataclass
class PlanFigures:
    resources: int
    hcl_lines: int = 0
    state_mb: float = 0.0
    first: Run | None = None  # cold parse cache
    noop: Run | None = None
    noop_json: Run | None = None
    changed: Run | None = None
    changed_json: Run | None = None
    refresh_resources: int = 0
    refresh: Run | None = None
    actions: dict[str, dict[str, int]] = field(default_factory=dict)


def _json_actions(d: Path, stream: Run, env: dict[str, str]) -> tuple[dict[str, int], list[str]]:
    """Each resource's actions, from `show -json` of the same plan saved (Terraform's plan
    representation lists the no-ops too); the streamed `plan -json` must name exactly
    the resources that change."""
    cli(d, "plan", "-refresh=false", "-out", "load.plan", env=env)
    data = json.loads(cli(d, "show", "-json", "load.plan", env=env).output)
    counts: dict[str, int] = {}
    changed = []
    for rc in data["resource_changes"]:
        key = "+".join(rc["change"]["actions"])
        counts[key] = counts.get(key, 0) + 1
        if key != "no-op":
            changed.append(rc["address"])
    streamed = sorted(m["change"]["resource"]["addr"] for m in map(
        json.loads, stream.output.splitlines()) if m["type"] == "planned_change")
    if streamed != sorted(changed):
        raise BenchError(f"plan -json streamed changes to {streamed}, the saved plan {changed}")
    return counts, sorted(changed)


def _edit_for_changes(d: Path, n_envs: int) -> list[str]:
    """1 env added, 3 envs' env_vars edited, the last env (nobody depends on a later
    one) removed; returns the addresses that must change."""
    last = f"e{n_envs - 1:04d}"
    edited = [f"e{k:04d}" for k in (1, n_envs // 2, n_envs - 2)]
    removed = False
    for path in sorted(d.glob("envs_*.hcl")):
        text = path.read_text()
        for name in edited:
            text = text.replace(f'ENV_NAME  = "{name}"', f'ENV_NAME  = "{name}-edited"')
        new, k = re.subn(rf'\nenv "{last}" \{{\n.*?\n\}}\n', "\n", text, flags=re.S)
        removed |= k == 1
        path.write_text(new)
    if not removed:
        raise BenchError(f"could not remove env {last} from the generated files")
    (d / "extra.hcl").write_text('env "added" {\n  cluster = cluster.c00\n'
                                 '  reqs    = ["pip:six==1.16.0"]\n}\n')
    return sorted(["env.added", f"env.{last}", *[f"env.{e}" for e in edited]])


def _state_only_config(d: Path, n: int) -> None:
    """n resources rhplan keeps only in the state (half secrets, half packages)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / plan_scale.MARKER).write_text("generated by bench/load.py\n")
    lines = ['rhplan {\n  backend "local" { path = "rhplan.state.json" }\n}\n']
    for i in range(n):
        if i % 2:
            lines.append(f'secret "s{i:05d}" {{\n  values = {{ TOKEN = "t-{i}", '
                         f'USER = "u-{i % 7}" }}\n}}\n')
        else:
            lines.append(f'package "p{i:05d}" {{\n  git_url  = '
                         f'"https://git.example.com/team/lib{i}.git"\n'
                         f'  revision = "v{i % 13}.0"\n}}\n')
    (d / "main.hcl").write_text("\n".join(lines))


def run_plan(base: Path, resources: int, log: Any = print) -> PlanFigures:
    figs = PlanFigures(resources)
    clusters = max(1, min(50, resources // 100))
    n_envs = resources - clusters - 2  # + 1 secret + 1 package in plan_scale's main.hcl
    if n_envs < 10:
        raise BenchError("--resources must be at least 20")
    d = base / "plan"
    cache = {"XDG_CACHE_HOME": str(base / "cache")}  # this run's own parse cache
    os.environ.update(cache)  # build_state parses in this process
    g = plan_scale.generate(d, n_envs, clusters)
    figs.hcl_lines = g["lines"]
    log(f"  generated {g['lines']:,} lines of HCL: {clusters} clusters, {n_envs:,} envs, "
        f"1 secret, 1 package; building the recorded state ...")
    s = plan_scale.build_state(d)
    if s["creates"] != resources:
        raise BenchError(f"the generated configuration has {s['creates']} resources, "
                         f"not {resources}")
    figs.state_mb = s["state_bytes"] / 2**20

    shutil.rmtree(base / "cache", ignore_errors=True)  # the first CLI run parses cold
    figs.first = cli(d, "plan", "-refresh=false", "-detailed-exitcode", env=cache)
    figs.noop = cli(d, "plan", "-refresh=false", "-detailed-exitcode", env=cache)
    for r in (figs.first, figs.noop):
        if r.returncode != 0 or "No changes." not in r.output:
            raise BenchError(f"not a no-change plan:\n{r.describe()}")
    figs.noop_json = cli(d, "plan", "-refresh=false", "-json", env=cache)
    counts, changed = _json_actions(d, figs.noop_json, cache)
    figs.actions["no change"] = counts
    if counts != {"no-op": resources} or changed:
        raise BenchError(f"-json of the no-change plan accounts for {counts}, not "
                         f"{resources} no-ops")

    want = _edit_for_changes(d, n_envs)
    # the edited files are parsed again once (the cache is by content): not measured
    cli(d, "plan", "-refresh=false", "-detailed-exitcode", env=cache)
    figs.changed = cli(d, "plan", "-refresh=false", "-detailed-exitcode", env=cache)
    if figs.changed.returncode != 2 or \
            "Plan: 1 to add, 3 to change, 1 to destroy." not in figs.changed.output:
        raise BenchError(f"the plan with changes is not 1 add, 3 change, 1 destroy:\n"
                         f"{figs.changed.describe()}")
    figs.changed_json = cli(d, "plan", "-refresh=false", "-json", env=cache)
    counts, changed = _json_actions(d, figs.changed_json, cache)
    figs.actions["a few changes"] = counts
    if changed != want or sum(counts.values()) != resources + 1 or \
            counts.get("no-op") != resources - 4:
        raise BenchError(f"-json of the plan with changes: {counts}, changed {changed}; "
                         f"expected {resources - 4} no-ops and {want}")

    r = base / "refresh"
    _state_only_config(r, resources)
    s = plan_scale.build_state(r)
    figs.refresh_resources = s["creates"]
    cli(r, "plan", "-detailed-exitcode", env=cache)  # fills the parse cache
    figs.refresh = cli(r, "plan", "-detailed-exitcode", env=cache)
    if figs.refresh.returncode != 0 or "No changes." not in figs.refresh.output:
        raise BenchError(f"the refreshed plan of {resources} state-only resources is not a "
                         f"no-change plan:\n{figs.refresh.describe()}")
    return figs


def report_plan(f: PlanFigures) -> list[Verdict]:
    assert f.first and f.noop and f.noop_json and f.changed and f.changed_json and f.refresh
    print(f"\nplan of {f.resources:,} recorded resources ({f.hcl_lines:,} lines of HCL, "
          f"state {f.state_mb:.1f} MiB)")
    print(f"  {'plan':<52}{'wall s':>8}{'peak RSS MiB':>14}")
    rows = (("-refresh=false, no change, parse cache cold", f.first),
            ("-refresh=false, no change", f.noop),
            ("-refresh=false -json, no change", f.noop_json),
            ("-refresh=false, 1 add / 3 change / 1 destroy", f.changed),
            ("-refresh=false -json, with those changes", f.changed_json),
            (f"refresh on, {f.refresh_resources:,} secrets+packages", f.refresh))
    for name, r in rows:
        print(f"  {name:<52}{r.seconds:>8.2f}{r.peak_rss_mb:>14.0f}")
    for what, counts in f.actions.items():
        print(f"  -json, {what}: " + ", ".join(f"{v:,} {k}" for k, v in sorted(counts.items())))
    worst_s = max(r.seconds for _, r in rows[1:])
    worst_rss = max(r.peak_rss_mb for _, r in rows)
    print(f"RELIABILITY: load plan resources={f.resources} noop_s={f.noop.seconds:.2f} "
          f"noop_cold_s={f.first.seconds:.2f} changes_s={f.changed.seconds:.2f} "
          f"json_s={f.noop_json.seconds:.2f} refresh_s={f.refresh.seconds:.2f} "
          f"peak_rss_mb={worst_rss:.0f} accounted={sum(f.actions['no change'].values())}/"
          f"{f.resources} dropped=0")
    return [
        (worst_s < TARGETS["plan_s"],
         f"plan of {f.resources:,} resources (warm parse cache): slowest {worst_s:.2f} s "
         f"(target < {TARGETS['plan_s']:.0f})", True),
        (worst_rss < TARGETS["plan_rss_mb"],
         f"plan of {f.resources:,} resources: peak RSS {worst_rss:.0f} MiB "
         f"(target < {TARGETS['plan_rss_mb']:.0f})", False),
        (True, f"plan accounts for all {f.resources:,} resources (every one a no-op, then "
               f"exactly the 5 changed)", False),
    ]


# --------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", nargs="?", choices=("all", "apply", "plan"), default="all")
    ap.add_argument("--hosts", type=int, default=8, help="SSH hosts (clusters); default 8")
    ap.add_argument("--envs-per-host", type=int, default=25, help="default 25 (200 envs)")
    ap.add_argument("--parallelism", type=int, default=10, help="apply's -parallelism")
    ap.add_argument("--resources", type=int, default=5000, help="recorded resources to plan")
    ap.add_argument("--dir", help="work here and keep the files (default: a temp dir)")
    ap.add_argument("--cluster-parallelism", type=int, default=2,
                    help="apply the clusters first, this many at a time (0: one apply of "
                         "clusters and envs together)")
    ap.add_argument("--no-uv-on-hosts", action="store_true",
                    help="hosts' Ray venv without uv: envs are built with venv + pip")
    args = ap.parse_args(argv)
    base = Path(args.dir).absolute() if args.dir else Path(
        tempfile.mkdtemp(prefix="rhplan-load-"))
    if args.dir:
        global LOG_DIR
        LOG_DIR = base / "logs"
    print(f"rhplan load benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"MemAvailable {mem_available_mb() / 1024:.1f} GiB); dir {base}", flush=True)
    verdicts: list[Verdict] = []
    try:
        if args.part in ("all", "plan"):
            print(f"plan: {args.resources:,} recorded resources", flush=True)
            verdicts += report_plan(run_plan(base, args.resources))
        if args.part in ("all", "apply"):
            print(f"apply: {args.hosts} hosts x {args.envs_per_host} envs", flush=True)
            verdicts += report_apply(run_apply(base, args.hosts, args.envs_per_host,
                                               args.parallelism,
                                               with_uv=not args.no_uv_on_hosts,
                                               cluster_parallelism=args.cluster_parallelism))
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 2
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    print()
    for ok, what, _ in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return 0 if all(ok for ok, _, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
