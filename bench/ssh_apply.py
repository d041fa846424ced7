#!/usr/bin/env python3
"""SSH plan/apply benchmark: what does a no-change plan cost per host over SSH?

Run (from the repository root, with the project's venv active; needs /usr/sbin/sshd,
which tests/support/sshd.py installs with apt when missing, and PyPI for the first apply):

    python bench/ssh_apply.py                     # N = 1, 4, 8 hosts, 3 repeats each
    python bench/ssh_apply.py --hosts 1,2 --repeat 5
    python bench/ssh_apply.py --dir /tmp/rhplan-bench-ssh    # keep files there

What it does, for each N
------------------------
1. Starts N real OpenSSH servers on 127.0.0.1 (tests/support/sshd.py), each on its own port.
   An ssh cluster's hosts share one `ssh { port }`, so the configuration holds N
   one-host clusters `h0`..`hN-1` (one per sshd, each with its own root_dir, Ray head
   and one small env `e0`..: six==1.16.0 and a servlet) in ONE configuration.
   Each root_dir gets its Ray venv (this venv's Ray, and uv) made with uv beforehand
   (tests/support/ssh_cluster.provision_ray_venv: as rhplan's own bootstrap leaves a
   host, so the first apply installs no uv), and `python` names this venv's base
   interpreter.
2. `rhplan apply -auto-approve` once (not measured; its time is printed).
3. Measures, --repeat times each, every run a fresh CLI process (as a user runs it)
   with every remote operation counted in that process: `SSHConnection.run` and the
   SFTP calls are wrapped (pass-through) and the connection pool's `commands_run` and
   `connects` are read at the end (see COUNTER):
     plan     `rhplan plan -detailed-exitcode`, which must say "No changes."
     apply    `rhplan apply -auto-approve` with a no-op change: `autostop_command` of
              every cluster set to a new value, without autostop_mins (so no watchdog
              runs: the update costs one stop-watchdog command on each head)
              (checked: the plan must be exactly N in-place cluster updates and nothing
              else; if it is not, `apply` with no change is measured instead, and said
              so). Not autostop_mins: that starts a watchdog on the head whose default
              command shuts the machine down. (open_ports, used before, is the aws
              provider's setting: an ssh cluster refuses it.)
   and prints, per operation, the median wall time of the CLI process, the median time
   inside `main()`, and per host: commands, SFTP transfers and TCP connections.
4. Checks the target: a no-change plan costs at most one round trip (command or SFTP
   transfer) per host; prints PASS/FAIL with the measured counts.
5. Destroys everything with `rhplan destroy -auto-approve` (in a finally, also after a
   failure or Ctrl-C), checks that no process of those clusters' Ray is left (killing
   any by pid, and reporting it), and stops the sshds.

Exit status: 0 when the target is met for every N, 1 when it is missed, 2 when setting
up, measuring or destroying failed.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

from rayprocs import cluster_processes, temp_dir_for  # noqa: E402
from ssh_cluster import provision_ray_venv  # noqa: E402
from sshd import SSHServer, ensure_sshd_installed  # noqa: E402

RHPLAN = [sys.executable, "-m", "rhplan.cli"]
# Ray refuses a driver whose Python differs from the cluster's even in the patch level,
# and `python3` over SSH depends on the login shell: name this venv's interpreter.
BASE_PY = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
APPLY_TIMEOUT = 1200.0
RUN_TIMEOUT = 300.0
TARGET_ROUND_TRIPS = 1

# A CLI run with every remote operation counted; one `COUNT {json}` line at the end.
COUNTER = r"""
import json, sys, time
from rhplan.hosts import ssh
from rhplan.cli import main
commands, sftp, log = {}, {}, []
run, put, get = ssh.SSHConnection.run, ssh.SSHConnection.put_bytes, ssh.SSHConnection.get_bytes
def bump(d, where):
    d[where] = d.get(where, 0) + 1
def counted_run(self, argv, **kw):
    bump(commands, self.where)
    log.append([self.where, " ".join(str(a) for a in argv)[:100]])
    return run(self, argv, **kw)
def counted_put(self, *a, **kw):
    bump(sftp, self.where)
    log.append([self.where, "sftp put " + str(a[1] if len(a) > 1 else kw.get("path"))])
    return put(self, *a, **kw)
def counted_get(self, *a, **kw):
    bump(sftp, self.where)
    log.append([self.where, "sftp get " + str(a[0] if a else kw.get("path"))])
    return get(self, *a, **kw)
ssh.SSHConnection.run = counted_run
ssh.SSHConnection.put_bytes = counted_put
ssh.SSHConnection.get_bytes = counted_get
code, t0 = 0, time.perf_counter()
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
seconds = time.perf_counter() - t0
pool = {c.where: [c.commands_run, c.connects] for c in ssh.pooled()}
sys.stdout.flush()
print("COUNT " + json.dumps({"exit": code, "seconds": seconds, "commands": commands,
                             "sftp": sftp, "pool": pool, "log": log}))
"""


class BenchError(Exception):
    pass


def hcl(n: int, servers: list[SSHServer], base: Path, mark: int | None) -> str:
    out = []
    for i, srv in enumerate(servers[:n]):
        change = f'\n  autostop_command = "echo {mark}"' if mark is not None else ""
        out.append(f"""
cluster "h{i}" {{
  provider = "ssh"
  ips      = ["127.0.0.1"]
  root_dir = "{base / f"root{i}"}"
  python   = "{BASE_PY}"{change}
  ssh {{
    user        = "{srv.user}"
    private_key = "{srv.client_key}"
    port        = {srv.port}
  }}
}}

env "e{i}" {{
  cluster = cluster.h{i}
  reqs    = ["pip:six==1.16.0"]
}}
""")
    return "".join(out)


def cli(directory: Path, *args: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([*RHPLAN, f"-chdir={directory}", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, input="", check=False)


def counted(directory: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "NO_COLOR": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", COUNTER, f"-chdir={directory}", *args],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env,
                          input="", check=False)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("COUNT ")]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"rhplan {' '.join(args)} crashed:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(lines[-1][len("COUNT "):])
    data["wall"] = wall
    data["output"] = proc.stdout.replace(lines[-1], "") + proc.stderr
    return data


def ray_processes(roots: list[Path]) -> dict[int, str]:
    """Live processes of these clusters' Rays (by temp dir or token), nobody else's."""
    found = {}
    for root in roots:
        found.update(cluster_processes([temp_dir_for(str(root))], root))
    return found


def per_host(runs: list[dict[str, Any]], key: str, hosts: list[str]) -> tuple[int, int]:
    """(min, max) over hosts and runs of one count."""
    values = []
    for r in runs:
        for h in hosts:
            if key == "connects":
                values.append((r["pool"].get(h) or [0, 0])[1])
            else:
                values.append(r[key].get(h, 0))
    return min(values), max(values)


def measure(n: int, base: Path, repeat: int) -> dict[str, Any]:
    servers = [SSHServer(base / f"sshd{i}").start() for i in range(n)]
    directory = base / "infra"
    directory.mkdir(parents=True, exist_ok=True)
    roots = [base / f"root{i}" for i in range(n)]
    hosts = [f"127.0.0.1:{s.port}" for s in servers]
    result: dict[str, Any] = {"n": n}
    try:
        for root in roots:
            try:
                provision_ray_venv(root)
            except AssertionError as exc:  # the support module's check: a set-up failure
                raise BenchError(str(exc)) from None
        (directory / "main.hcl").write_text(hcl(n, servers, base, None))
        t0 = time.perf_counter()
        proc = cli(directory, "apply", "-auto-approve", timeout=APPLY_TIMEOUT)
        result["first_apply"] = time.perf_counter() - t0
        if proc.returncode != 0:
            raise BenchError(f"first apply failed:\n{proc.stdout[-3000:]}\n{proc.stderr}")

        plans = []
        for _ in range(repeat):
            r = counted(directory, "plan", "-detailed-exitcode")
            if r["exit"] != 0 or "No changes." not in r["output"]:
                raise BenchError(f"the plan is not a no-change plan:\n{r['output'][-3000:]}")
            plans.append(r)

        # the no-op change: autostop_command without autostop_mins (no watchdog runs)
        applies, mode = [], "autostop_command changed (no watchdog: one stop command a head)"
        (directory / "main.hcl").write_text(hcl(n, servers, base, 8000))
        check = cli(directory, "plan", "-detailed-exitcode")
        if f"Plan: 0 to add, {n} to change, 0 to destroy." not in check.stdout or \
                check.stdout.count("will be updated in-place") != n or \
                any(f"# env.e{i} " in check.stdout for i in range(n)):
            mode = "no change at all (autostop_command is not an in-place change here)"
            (directory / "main.hcl").write_text(hcl(n, servers, base, None))
        for k in range(repeat):
            if mode.startswith("autostop_command"):
                (directory / "main.hcl").write_text(hcl(n, servers, base, 8001 + k))
            r = counted(directory, "apply", "-auto-approve")
            if r["exit"] != 0:
                raise BenchError(f"apply failed:\n{r['output'][-3000:]}")
            if mode.startswith("autostop_command") and f"{n} changed" not in r["output"]:
                raise BenchError(f"the no-op apply did not change {n}:\n{r['output'][-3000:]}")
            applies.append(r)
        result["apply_mode"] = mode
        for name, runs in (("plan", plans), ("apply", applies)):
            result[name] = {
                "wall": statistics.median(r["wall"] for r in runs),
                "main": statistics.median(r["seconds"] for r in runs),
                "commands": per_host(runs, "commands", hosts),
                "sftp": per_host(runs, "sftp", hosts),
                "connects": per_host(runs, "connects", hosts),
                "total_commands": statistics.median(sum(r["commands"].values())
                                                    for r in runs),
            }
        result["log"] = {"plan": plans[-1]["log"], "apply": applies[-1]["log"]}
        # the wrapper and the pool saw the same commands
        for r in plans + applies:
            pool = {h: c for h, (c, _) in r["pool"].items()}
            if pool != r["commands"]:
                raise BenchError(f"pool counts {pool} differ from wrapped runs {r['commands']}")
        return result
    finally:
        problems = []
        if (directory / "rhplan.state.json").exists():
            proc = cli(directory, "destroy", "-auto-approve", timeout=APPLY_TIMEOUT)
            if proc.returncode != 0:
                problems.append(f"destroy failed:\n{proc.stdout[-3000:]}\n{proc.stderr}")
        deadline = time.monotonic() + 20
        left = ray_processes(roots)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = ray_processes(roots)
        for pid in left:  # only these clusters' processes
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if left:
            problems.append(f"Ray processes outlived destroy (killed): {left}")
        for srv in servers:
            srv.close()
        if problems:
            raise BenchError("\n".join(problems))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", default="1,4,8", help="comma-separated host counts")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    ap.add_argument("--dir", help="keep files here (default: a temp dir, removed)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also list the remote operations of the last plan and apply")
    args = ap.parse_args()
    sizes = [int(x) for x in args.hosts.split(",") if x.strip()]
    ensure_sshd_installed()
    top = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="rhplan-bench-ssh-"))
    results = []
    try:
        for n in sizes:
            print(f"N = {n}: starting {n} sshd(s), applying {n} cluster(s) ...", flush=True)
            r = measure(n, top / f"n{n}", args.repeat)
            results.append(r)
            print(f"  first apply (not measured): {r['first_apply']:.1f} s", flush=True)
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 2
    finally:
        if not args.dir:
            shutil.rmtree(top, ignore_errors=True)

    print("\n  N  operation  CLI wall s  main() s  commands/host  sftp/host  "
          "connects/host  commands total")
    for r in results:
        for name in ("plan", "apply"):
            m = r[name]
            span = lambda t: f"{t[0]}" if t[0] == t[1] else f"{t[0]}-{t[1]}"  # noqa: E731
            print(f"{r['n']:>3}  {name:<9}  {m['wall']:>10.2f}  {m['main']:>8.2f}  "
                  f"{span(m['commands']):>13}  {span(m['sftp']):>9}  "
                  f"{span(m['connects']):>13}  {m['total_commands']:>14g}")
    if args.verbose:
        for r in results:
            for name in ("plan", "apply"):
                print(f"\nN={r['n']} {name}: remote operations of the last run")
                for where, what in r["log"][name]:
                    print(f"  {where}  {what!r}")
    print(f"\napply = {results[0]['apply_mode'] if results else '-'}; medians of "
          f"{args.repeat} runs; per-host counts are min-max over hosts and runs")
    ok = True
    for r in results:
        trips = r["plan"]["commands"][1] + r["plan"]["sftp"][1]
        met = trips <= TARGET_ROUND_TRIPS
        ok &= met
        print(f"{'PASS' if met else 'FAIL'}: N={r['n']}: a no-change plan costs at most "
              f"{trips} round trip(s) per host (target <= {TARGET_ROUND_TRIPS}; "
              f"{r['plan']['commands'][1]} command(s) + {r['plan']['sftp'][1]} SFTP, "
              f"plus {r['plan']['connects'][1]} SSH connection(s))")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
