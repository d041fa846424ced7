#!/usr/bin/env python3
"""How long `rhplan fmt -check -recursive examples tests` takes (issue 14: <= 0.5 s).

Run (from the repository root, with the project's venv active):

    python bench/fmt_speed.py               # 7 runs, median
    python bench/fmt_speed.py --repeat 11

It copies examples/ and tests/ (their *.hcl and *.tfvars files only) into a temp dir,
so the checkout is never written, and measures:

  CLI cold   `rhplan fmt -check -recursive examples tests` with an empty parse cache
  CLI warm   the same with the cache filled (the usual case), median of --repeat runs,
             with each run's CPU seconds (what counts while other work shares the CPU)
  in-process formatting of every file in this interpreter (median), no parsing

PASS/FAIL: CLI warm <= 0.5 s. Exit code 3 from fmt -check (files not formatted) is
expected and fine here: the check still reads, parses and formats every file.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 0.5
ROOT = Path(__file__).resolve().parent.parent


def copy_tree(dst: Path) -> list[Path]:
    files = []
    for d in ("examples", "tests"):
        for p in sorted((ROOT / d).rglob("*")):
            if p.suffix in (".hcl", ".tfvars") and p.is_file() and "__pycache__" not in p.parts:
                target = dst / p.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, target)
                files.append(target)
    return files


def run(d: Path) -> tuple[float, float, int, str]:
    """(wall s, CPU s, exit code, output) of one CLI run."""
    cmd = [sys.executable, "-m", "rhplan.cli", f"-chdir={d}", "fmt", "-check", "-recursive",
           "examples", "tests"]
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        out.seek(0)
        text = out.read().decode(errors="replace")
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status), text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7, help="runs per warm figure (median)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rhplan-fmt-"))
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")  # this run's own parse cache
    try:
        files = copy_tree(tmp / "src")
        size = sum(p.stat().st_size for p in files)
        print(f"rhplan fmt benchmark (python {sys.version.split()[0]}, {os.cpu_count()} CPUs): "
              f"{len(files)} files, {size:,} bytes from examples/ and tests/")
        cold, cold_cpu, rc, out = run(tmp / "src")
        if rc not in (0, 3):
            sys.exit(f"FAIL: rhplan fmt -check exited {rc}:\n{out[:2000]}")
        warm = [run(tmp / "src") for _ in range(args.repeat)]
        walls = [w for w, _, _, _ in warm]
        cpus = [c for _, c, _, _ in warm]

        from rhplan.fmt import format_text
        texts = [(p.read_text(), p.name) for p in files]
        inproc = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            for text, name in texts:
                format_text(text, name)
            inproc.append(time.perf_counter() - t)

        print()
        print(f"  CLI fmt -check, cold (empty parse cache)   {cold:8.3f} s   "
              f"(CPU {cold_cpu:.3f} s)")
        print(f"  CLI fmt -check, warm (median)              {statistics.median(walls):8.3f} s   "
              f"(CPU {statistics.median(cpus):.3f} s) runs: "
              + ", ".join(f"{w:.3f}" for w in walls))
        print(f"  in-process format_text of all files        {statistics.median(inproc):8.3f} s")
        print(f"  files fmt -check lists as not formatted: {len(out.split()) if rc == 3 else 0}")
        print()
        warm_s = statistics.median(walls)
        ok = warm_s <= TARGET_SECONDS
        print(f"{'PASS' if ok else 'FAIL'}: warm rhplan fmt -check of {len(files)} files took "
              f"{warm_s:.3f}s (target <= {TARGET_SECONDS}s)")
        sys.exit(0 if ok else 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
