#!/usr/bin/env python3
"""How long `rhplan validate` of one cluster + 200 envs takes, and what it imports.

Run (from the repository root, with the project's venv active):

    python bench/validate_speed.py              # 200 envs, 7 runs per figure
    python bench/validate_speed.py --envs 200 --repeat 11
    python bench/validate_speed.py --bytecode   # CLI runs may cache bytecode (a private folder)

It writes the configuration into a temp dir (one `cluster` with provider "local", N
`env` blocks with reqs, env_vars and var/local interpolation) and measures:

  CLI cold   `rhplan validate` with an empty parse cache (process start to exit)
  CLI warm   the same with the cache filled, median of --repeat runs
  in-process load + plan of an empty state in this interpreter, imports done (median)
  start-up   `rhplan --help` and `rhplan plan -refresh=false` (same config, no state)

and, in a fresh interpreter, which heavy libraries the validate path imported (none of
Ray, paramiko, boto3, networkx, cryptography is needed). PASS/FAIL: CLI warm <= 0.3 s.

Figures depend on whether Python may cache bytecode: with PYTHONDONTWRITEBYTECODE=1 and
a venv installed without compiled files (uv's default), every start compiles every
module it imports from source; the script says which case it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 0.3
HEAVY = ("ray", "paramiko", "boto3", "botocore", "networkx", "cryptography", "invoke",
         "lark", "hcl2")


def generate(d: Path, n_envs: int) -> None:
    lines = [
        'variable "team" { default = "ml-platform" }',
        "locals {",
        '  numpy = "1.26.4"',
        "}",
        "",
        'cluster "main" {',
        '  provider      = "local"',
        "}",
        "",
    ]
    for i in range(n_envs):
        lines += [
            f'env "e{i:03d}" {{',
            "  cluster = cluster.main",
            "  reqs = [",
            '    "pip:numpy==${local.numpy}",',
            '    "pip:requests==2.31.0",',
            '    "six==1.16.0",',
            "  ]",
            "  env_vars = {",
            "    TEAM  = var.team",
            f'    SHARD = "{i % 8}"',
            "  }",
            "}",
            "",
        ]
    (d / "main.hcl").write_text("\n".join(lines))


CPU: dict[tuple[str, ...], list[float]] = {}  # CPU seconds of each CLI run, by command


def cli(d: Path, *args: str) -> tuple[float, int, str]:
    """(wall seconds, exit code, output) of one run; its CPU seconds go to CPU."""
    cmd = [sys.executable, "-m", "rhplan.cli", f"-chdir={d}", *args]
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own rusage
        elapsed = time.perf_counter() - t
        out.seek(0)
        text = out.read().decode(errors="replace")
    CPU.setdefault(args, []).append(usage.ru_utime + usage.ru_stime)
    return elapsed, os.waitstatus_to_exitcode(status), text


def median_cli(d: Path, repeat: int, *args: str) -> tuple[float, list[float]]:
    runs = []
    CPU.pop(args, None)
    for _ in range(repeat):
        t, rc, out = cli(d, *args)
        if rc != 0:
            sys.exit(f"FAIL: rhplan {' '.join(args)} exited {rc}:\n{out[:2000]}")
        runs.append(t)
    return statistics.median(runs), runs


def cpu(*args: str) -> str:
    return f"(CPU {statistics.median(CPU[args]):.3f} s)"


_PROBE = """
import json, sys, time
t = time.perf_counter()
from rhplan.cli import execute
code = execute(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(%r)))
print("\\n" + json.dumps({"code": code, "heavy": heavy, "modules": len(sys.modules)}))
"""


def imported(d: Path, *args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", _PROBE % json.dumps(HEAVY), f"-chdir={d}", *args],
                       capture_output=True, text=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def in_process(d: Path, repeat: int) -> float:
    from rhplan.plan.planner import PlanOptions
    from rhplan.state.model import State
    from rhplan.workspace import Workspace

    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        Workspace(d).planner().plan(State.new(), PlanOptions())
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=7, help="runs per warm figure (median)")
    ap.add_argument("--bytecode", action="store_true",
                    help="let the CLI runs cache bytecode (in a private temp folder, through "
                         "PYTHONPYCACHEPREFIX) even if PYTHONDONTWRITEBYTECODE is set")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rhplan-validate-"))
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")  # this run's own parse cache
    d = tmp / "config"
    d.mkdir()
    if args.bytecode:  # a user's usual set-up: compiled once, then read at every start
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    try:
        generate(d, args.envs)
        import rhplan
        pyc = args.bytecode or any(Path(rhplan.__file__).parent.glob("__pycache__/*.pyc"))
        print(f"rhplan validate benchmark (python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs): 1 cluster + {args.envs} envs in {d}")
        print(f"bytecode: PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
              f", rhplan .pyc files present: {'yes' if pyc else 'no'}"
              + (" (--bytecode: cached in a private folder)" if args.bytecode else "")
              + ("" if pyc else " (every start compiles what it imports)"), flush=True)

        if args.bytecode:
            cli(d, "--help")  # compiles the CLI's modules once, before anything is timed
            shutil.rmtree(tmp / "cache", ignore_errors=True)
        cold, rc, out = cli(d, "validate")
        cold_cpu = CPU.pop(("validate",))[0]
        if rc != 0:
            sys.exit(f"FAIL: rhplan validate exited {rc}:\n{out[:2000]}")
        warm, runs = median_cli(d, args.repeat, "validate")
        help_t, _ = median_cli(d, args.repeat, "--help")
        plan_t, _ = median_cli(d, args.repeat, "plan", "-refresh=false")
        inproc = in_process(d, args.repeat)
        probe = imported(d, "validate")
        probe_plan = imported(d, "plan", "-refresh=false")

        print()
        rows = [
            ("CLI rhplan validate, cold (empty parse cache)", cold, f"(CPU {cold_cpu:.3f} s)"),
            ("CLI rhplan validate, warm (median)", warm,
             cpu("validate") + " runs: " + ", ".join(f"{t:.3f}" for t in runs)),
            ("in-process load + plan (median)", inproc, ""),
            ("CLI rhplan --help (median)", help_t, cpu("--help")),
            ("CLI rhplan plan -refresh=false (median)", plan_t, cpu("plan", "-refresh=false")),
        ]
        for what, seconds, extra in rows:
            print(f"  {what:<48}{seconds:>8.3f} s   {extra}")
        print(f"  modules imported by validate: {probe['modules']}; heavy ones: "
              f"{', '.join(probe['heavy']) or 'none'}")
        print(f"  heavy modules imported by plan -refresh=false: "
              f"{', '.join(probe_plan['heavy']) or 'none'}")
        print()
        ok = warm <= TARGET_SECONDS
        print(f"{'PASS' if ok else 'FAIL'}: warm rhplan validate of 1 cluster + {args.envs} envs "
              f"took {warm:.3f}s (target <= {TARGET_SECONDS}s)")
        sys.exit(0 if ok else 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
