#!/usr/bin/env python3
"""First-apply benchmark: where the seconds of a first `rhplan apply` go (issue 17 item 3).

Run (from the repository root, with the project's venv active; the ssh part needs
/usr/sbin/sshd, which tests/support/sshd.py installs with apt when missing):

    python bench/first_apply.py                    # local and ssh
    python bench/first_apply.py --only local       # or --only ssh
    python bench/first_apply.py --dir /tmp/rhplan-bench-first --keep

What it does, for `local` (examples/local as it is) and `ssh` (examples/static on a
throwaway sshd on 127.0.0.1, its reqs and the local package folder it names):
1. warm-up: `apply` then `destroy` (not measured: it fills uv's cache, as a user's
   earlier work would; the targets are for a warm uv cache);
2. cold: `apply` from nothing (after that destroy: no Ray, no root_dir, no envs);
3. second env: a second env with the first one's reqs added (second.hcl) and
   `apply` again, on the running cluster (whose block names the first env its
   default_env, so no bare default env comes along);
4. `destroy` (also after a failure), and the sshd is stopped.
Every measured apply is a fresh CLI process whose connection calls are timed
(LocalConnection / SSHConnection run and put_bytes, wrapped pass-through) and put in
phases by what they run:

    cluster up     the cluster step, from "Creating..." to "Creation complete"
    env venv       making the env's virtualenv (and removing leftovers first)
    installs       everything else of the env before its servlet (uv, reading the
                   env's packages, syncing folders, env files)
    servlet start  starting the servlet (host_script start), and before it the wait
                   for a Ray head that started in the background ("ray wait" in --json);
                   a start whose driver began with the env (it joins Ray during the
                   installs) counts from rhplan's "go" to the servlet's answer
    total          the CLI process, start to exit (the target's measure)
    cpu            CPU seconds of the CLI and the commands it waited for (not Ray's
                   daemons): steadier than wall time on a shared machine

Phases may overlap (steps run in parallel), so they need not add up to the total.
Targets (issue 17): cold <= 10 s, second env <= 3 s, for both. Prints PASS/FAIL per
line; exit 0 when all pass, 1 when one misses, 2 when setting up or an apply failed.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

TARGETS = {"cold": 10.0, "second env": 3.0}
TIMEOUT = 900.0

# A CLI run with every connection call timed; one `PHASES {json}` line at the end.
TIMED = r"""
import json, sys, threading, time
T0 = time.perf_counter()
from rhplan.hosts import connection
from rhplan.hosts import ssh
calls, steps = [], {}
def kind(name, args):
    if name == "put_bytes":
        return "go" if "/rhplan/servlet-go-" in str(args[1]) else "installs"
    argv = [str(a) for a in args[0]]
    text = " ".join(argv)
    if "host_script" in text and " start " in f" {text} ":
        return "servlet"
    if ("venv" in argv and "/envs/" in text) or "refusing to delete" in text:
        return "venv"
    return "other"
def what(name, args):  # a short line saying what the call ran, for --trace
    if name == "put_bytes":
        return f"put {args[1]}"
    return " ".join(a if len(a) < 60 else a[:25].replace("\n", " ") + "..."
                    for a in map(str, args[0]))[:200]
def wrap(cls, name):
    orig = getattr(cls, name)
    def timed(self, *args, **kw):
        t = time.perf_counter()
        try:
            return orig(self, *args, **kw)
        finally:
            calls.append([kind(name, args), t - T0, time.perf_counter() - T0,
                          what(name, args)])
    setattr(cls, name, timed)
for cls in (connection.LocalConnection, ssh.SSHConnection):
    wrap(cls, "run")
    wrap(cls, "put_bytes")
from rhplan import apply as apply_mod
orig_execute = apply_mod.Applier._execute
def execute(self, step):
    t = time.perf_counter()
    try:
        return orig_execute(self, step)
    finally:
        steps[step.address] = [t - T0, time.perf_counter() - T0]
apply_mod.Applier._execute = execute
from rhplan.resources import cluster as cluster_mod
orig_wait = getattr(cluster_mod, "wait_for_ray", None)  # not in rhplan before issue 17
def wait_for_ray(*args, **kw):  # a servlet waiting for a Ray head started in the background
    t = time.perf_counter()
    try:
        return orig_wait(*args, **kw)
    finally:
        calls.append(["ray wait", t - T0, time.perf_counter() - T0, "wait_for_ray"])
if orig_wait is not None:
    cluster_mod.wait_for_ray = wait_for_ray
from rhplan.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
sys.stdout.flush()
print("PHASES " + json.dumps({"exit": code, "total": time.perf_counter() - T0,
                              "calls": calls, "steps": steps}))
"""


class BenchError(Exception):
    pass


def cli(directory: Path, *args: str, timed: bool = False) -> dict[str, Any]:
    argv = [sys.executable, "-c", TIMED] if timed else [sys.executable, "-m", "rhplan.cli"]
    t, cpu = time.perf_counter(), _children_cpu()
    res = subprocess.run([*argv, f"-chdir={directory}", *args], capture_output=True,
                         text=True, timeout=TIMEOUT)
    wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
    if res.returncode != 0:
        raise BenchError(f"rhplan {' '.join(args)} in {directory} exited {res.returncode}:\n"
                         f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    if not timed:
        return {"wall": wall}
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("PHASES ")][-1]
    data = json.loads(line[len("PHASES "):])
    data["wall"], data["cpu"] = wall, cpu
    return data


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the CLI and what it waited for:
    uv, ray start, the servlet's driver; not Ray's daemons, which `ray start` detaches)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def phases(run: dict[str, Any], env: str) -> dict[str, float]:
    """Seconds per phase of one timed apply (see the module docstring)."""
    steps = run["steps"]
    cluster = next((v for k, v in steps.items() if k.startswith("cluster.")), None)
    e0, e1 = steps[env]
    mine = [c for c in run["calls"] if e0 <= c[1] <= e1]

    def span(kinds: tuple[str, ...]) -> float:
        return sum(c[2] - c[1] for c in mine if c[0] in kinds)

    venv, servlet, wait = span(("venv",)), span(("servlet",)), span(("ray wait",))
    go = [c for c in mine if c[0] == "go"]
    if go:  # the servlet's driver began with the env (PendingStart): from "go" on
        servlet = max(c[2] for c in mine if c[0] == "servlet") - go[0][1]
    return {"cluster up": (cluster[1] - cluster[0]) if cluster else 0.0,
            "env venv": venv, "installs": max(0.0, (e1 - e0) - venv - servlet - wait),
            "ray wait": wait, "servlet start": servlet + wait, "total": run["wall"],
            "cpu": run["cpu"]}


TRACE = False


def trace(run: dict[str, Any], name: str) -> None:
    if TRACE:
        print(f"  host calls of {name} (start s, seconds, kind, what):")
        for kind, t0, t1, what in sorted(run["calls"], key=lambda c: c[1]):
            print(f"  {t0:7.2f} {t1 - t0:6.2f}  {kind:<9} {what}")


def add_second(directory: Path, cluster: str, reqs: list[str]) -> None:
    """A second env with the first one's reqs (written out: the same packages again)."""
    (directory / "second.hcl").write_text(
        f'env "second" {{\n  cluster = {cluster}\n  reqs    = {json.dumps(reqs)}\n}}\n')


def name_default_env(main: Path, cluster: str, env: str) -> None:
    """The cluster names its default env (as a user with several envs does): else a
    second env brings the cluster's bare default env along (issue 13: a cluster with
    several envs and no default_env gets one), a third env built in the same apply."""
    label = cluster.split(".", 1)[1]
    text = main.read_text()
    opening = f'cluster "{label}" {{\n'
    if opening not in text:
        raise BenchError(f"{main}: no cluster {label!r} block to name its default env in")
    main.write_text(text.replace(opening, f"{opening}  default_env = env.{env}\n", 1))


def scenario(name: str, directory: Path, var_args: list[str], env: str, cluster: str,
             reqs: list[str], results: dict[str, dict[str, float]]) -> None:
    (directory / "second.hcl").unlink(missing_ok=True)
    name_default_env(directory / "main.hcl", cluster, env)
    print(f"[{name}] warm-up apply + destroy (fills uv's cache; not measured)", flush=True)
    cli(directory, "apply", "-auto-approve", *var_args)
    cli(directory, "destroy", "-auto-approve", *var_args)
    try:
        print(f"[{name}] cold apply", flush=True)
        run = cli(directory, "apply", "-auto-approve", *var_args, timed=True)
        trace(run, f"{name} cold")
        results[f"{name} cold"] = phases(run, f"env.{env}")
        add_second(directory, cluster, reqs)
        print(f"[{name}] second env", flush=True)
        run = cli(directory, "apply", "-auto-approve", *var_args, timed=True)
        trace(run, f"{name} second env")
        results[f"{name} second env"] = phases(run, "env.second")
    finally:
        cli(directory, "destroy", "-auto-approve", *var_args)
        (directory / "second.hcl").unlink(missing_ok=True)


def run_local(base: Path, results: dict[str, dict[str, float]]) -> None:
    directory = base / "local"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(REPO / "examples" / "local", directory,
                    ignore=shutil.ignore_patterns(".rhplan", "*.state.json*"))
    scenario("local", directory, [], "np_env", "cluster.laptop",
             ["pip:numpy==2.2.6", "idna==3.7", "./src/greet"], results)


def run_ssh(base: Path, results: dict[str, dict[str, float]]) -> None:
    from sshd import SSHServer

    directory = base / "static"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(base / "local", ignore_errors=True)
    shutil.copytree(REPO / "examples" / "local", base / "local",
                    ignore=shutil.ignore_patterns(".rhplan", "*.state.json*"))
    directory.mkdir(parents=True)
    shutil.copy(REPO / "examples" / "static" / "main.hcl", directory / "main.hcl")
    with SSHServer(base / "sshd") as srv:
        srv.start()
        root = f"{base}/hosts/onprem"
        values = {"ips": [srv.host], "user": srv.user, "port": srv.port,
                  "private_key": srv.client_key, "known_hosts": srv.known_hosts,
                  "root_dir": root}
        (directory / "host.json").write_text(json.dumps(values))
        scenario("ssh", directory, ["-var-file=host.json"], "remote", "cluster.onprem",
                 ["pip:six==1.16.0", "../local/src/greet"], results)


def table(results: dict[str, dict[str, float]]) -> bool:
    cols = ["cluster up", "env venv", "installs", "servlet start", "total", "cpu"]
    print(f"\n{'run':<18}" + "".join(f"{c:>14}" for c in cols) + f"{'target':>9}  result")
    ok = True
    for name, ph in results.items():
        target = TARGETS["second env" if name.endswith("second env") else "cold"]
        passed = ph["total"] <= target
        ok &= passed
        print(f"{name:<18}" + "".join(f"{ph.get(c, 0.0):>13.2f}s" for c in cols)
              + f"{target:>8.0f}s  {'PASS' if passed else 'FAIL'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["local", "ssh"])
    ap.add_argument("--dir", help="work here (default: a temp folder, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep --dir afterwards")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--trace", action="store_true",
                    help="also print every host call of the measured applies (start, "
                         "seconds, what it ran)")
    args = ap.parse_args()
    global TRACE
    TRACE = args.trace
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="rhplan-first-"))
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    try:
        if args.only in (None, "local"):
            run_local(base, results)
        if args.only in (None, "ssh"):
            run_ssh(base, results)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        table(results)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    ok = table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
