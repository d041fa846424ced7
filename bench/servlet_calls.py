#!/usr/bin/env python3
"""Servlet round-trip benchmark: how long does one call through an env servlet take?

Run (from the repository root, with the project's venv active):

    python bench/servlet_calls.py                        # 1,000 calls, 20 x 10 MB put/get
    python bench/servlet_calls.py --calls 5000 --objects 50 --mb 10
    python bench/servlet_calls.py --dir /tmp/rhplan-bench-servlet   # keep files there

What it does
------------
1. Writes a configuration into a temp dir (or --dir): one local cluster
   (`provider = "local"`, its own Ray head) and one env "bench" with numpy, and runs
   `rhplan apply -auto-approve` on it (real uv venv, real numpy from PyPI, real Ray).
2. Starts a driver process (a fresh interpreter, so only this measurement runs in
   it): this venv's Python if it has numpy, otherwise a small uv venv holding numpy
   that also sees this venv's packages (rhplan, Ray) through a .pth file. The driver
   calls `rhplan.servlet("bench", chdir=DIR)` and measures, after 50 warm-up calls:
     call(fn)     `s.call(noop)`, noop a trivial function defined in the driver (sent
                  by value, as users' functions are), --calls times: median, p90, p99
     call(name)   `s.call("operator:add", 1, 2)` (imported in the env), same stats
     keys()       `s.keys()`, a bare actor method: the floor under the two above
     put          `s.put("arr", a)`, a a float64 numpy array of --mb MB, --objects
                  times: median (and MB/s)
     get          `s.get("arr")`, the same, checked equal to what was put
   and prints one JSON line, which this script turns into a table.
3. Prints PASS/FAIL against the target: median call(fn) round trip < 5 ms.
4. Destroys everything with `rhplan destroy -auto-approve` (also when a step fails or
   on Ctrl-C, in a finally) and checks no process of that cluster's Ray is left.

Exit status: 0 when the target is met, 1 when it is missed, 2 when setting up,
measuring or destroying failed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_MS = 5.0
NUMPY = "numpy==2.4.6"
ENV = "bench"
HCL = f"""
cluster "bench" {{
  provider = "local"
}}

env "{ENV}" {{
  cluster = cluster.bench
  reqs    = ["pip:{NUMPY}"]
}}
"""
RHPLAN = [sys.executable, "-m", "rhplan.cli"]


# --------------------------------------------------------------------------
# the driver: runs in its own process (`--measure DIR`)
# --------------------------------------------------------------------------

def noop() -> None:
    return None


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1e3 for s in seconds)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"n": len(ms), "median": statistics.median(ms), "p90": q[89], "p99": q[98],
            "min": ms[0], "max": ms[-1]}


def measure(directory: str, calls: int, objects: int, mb: float) -> dict[str, Any]:
    import rhplan  # sets Ray's settings before Ray is imported: import nothing of Ray first

    t0 = time.perf_counter()
    s = rhplan.servlet(ENV, chdir=directory)
    connect = time.perf_counter() - t0
    import numpy as np

    def timed(fn: Any, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return out

    timed(lambda: s.call(noop), 50)  # warm-up: first calls pay imports on both sides
    results: dict[str, Any] = {"connect_ms": connect * 1e3}
    results["call(fn)"] = _stats(timed(lambda: s.call(noop), calls))
    assert s.call("operator:add", 1, 2) == 3
    results["call(name)"] = _stats(timed(lambda: s.call("operator:add", 1, 2), calls))
    results["keys()"] = _stats(timed(s.keys, calls))

    arr = np.random.default_rng(0).random(int(mb * 2**20) // 8)
    s.put("arr", arr)  # warm-up
    s.get("arr")
    puts, gets, back = [], [], None
    for _ in range(objects):
        t = time.perf_counter()
        s.put("arr", arr)
        puts.append(time.perf_counter() - t)
        t = time.perf_counter()
        back = s.get("arr")
        gets.append(time.perf_counter() - t)
    assert back is not None and np.array_equal(back, arr), "get returned another array"
    s.delete("arr")
    results["put"] = _stats(puts)
    results["get"] = _stats(gets)
    results["bytes"] = arr.nbytes
    import ray
    results["versions"] = {"python": sys.version.split()[0], "ray": ray.__version__,
                           "numpy": np.__version__, "cpus": os.cpu_count()}
    results["servlet"] = {k: v for k, v in s.status().items() if k in ("env", "pid", "python")}
    return results


# --------------------------------------------------------------------------
# the harness: config, apply, driver, report, destroy
# --------------------------------------------------------------------------

def rhplan(directory: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([*RHPLAN, f"-chdir={directory}", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
                          check=False)


def must(proc: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def driver_python(workdir: Path) -> str:
    """This interpreter if it has numpy; otherwise a uv venv with numpy on top of it."""
    probe = subprocess.run([sys.executable, "-c", "import numpy"], capture_output=True,
                           timeout=60, check=False)
    if probe.returncode == 0:
        return sys.executable
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise RuntimeError("numpy is not installed here and uv is not found to make a "
                           "driver venv; pip install numpy, or install uv")
    venv = workdir / "driver-venv"
    must(subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)],
                        capture_output=True, text=True, timeout=300, check=False), "uv venv")
    must(subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                         NUMPY], capture_output=True, text=True, timeout=600, check=False),
         f"uv pip install {NUMPY}")
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
        / "site-packages"
    ours = sysconfig.get_paths()["purelib"]
    (site / "zz_rhplan_driver.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return str(venv / "bin" / "python")


def leftover_processes(directory: Path) -> list[int]:
    """Live processes of this benchmark's cluster Ray (by its temp dir or token path)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
    from rayprocs import temp_dir_for  # the random temp dir rhplan made for this root
    root = (directory / ".rhplan" / "clusters" / "bench").absolute()
    temp_dir = temp_dir_for(str(root)).encode()
    token = f"RAY_AUTH_TOKEN_PATH={root}/ray/token".encode()
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rfind(b")") + 2:].split()[0] == b"Z":
                continue
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{p}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if temp_dir in cmd or token in environ:
            found.append(int(p))
    return found


def report(r: dict[str, Any], mb: float) -> bool:
    v = r["versions"]
    print(f"\nrhplan servlet round trips  (python {v['python']}, ray {v['ray']}, "
          f"numpy {v['numpy']}, {v['cpus']} CPUs)")
    print(f"servlet {r['servlet']['env']!r} pid {r['servlet']['pid']}, "
          f"driver connect {r['connect_ms']:.0f} ms\n")
    print(f"{'operation':<26}{'n':>6}{'median ms':>11}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print("-" * 70)
    for key, label in (("call(fn)", "call(noop)  by value"),
                       ("call(name)", 'call("operator:add")'),
                       ("keys()", "keys()  bare method")):
        s = r[key]
        print(f"{label:<26}{s['n']:>6}{s['median']:>11.3f}{s['p90']:>9.3f}{s['p99']:>9.3f}"
              f"{s['max']:>9.3f}")
    size = r["bytes"] / 2**20
    for key in ("put", "get"):
        s = r[key]
        rate = size / (s["median"] / 1e3)
        label = f"{key} {size:.0f} MB ndarray"
        print(f"{label:<26}{s['n']:>6}{s['median']:>11.2f}{s['p90']:>9.2f}{'':>9}"
              f"{s['max']:>9.2f}   ({rate:,.0f} MB/s)")
    ok = r["call(fn)"]["median"] < TARGET_MS
    print(f"\n{'PASS' if ok else 'FAIL'}: median call round trip "
          f"{r['call(fn)']['median']:.3f} ms (target < {TARGET_MS:g} ms)")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=1000, help="calls per call benchmark")
    ap.add_argument("--objects", type=int, default=20, help="put/get repetitions")
    ap.add_argument("--mb", type=float, default=10.0, help="size of the put/get array, MB")
    ap.add_argument("--dir", help="configuration folder (default: a new temp dir, removed)")
    ap.add_argument("--measure", metavar="DIR", help=argparse.SUPPRESS)  # the driver side
    args = ap.parse_args()

    if args.measure:
        print(json.dumps(measure(args.measure, args.calls, args.objects, args.mb)), flush=True)
        return 0

    workdir = Path(args.dir or tempfile.mkdtemp(prefix="rhplan-bench-servlet-")).absolute()
    directory = workdir / "infra"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.hcl").write_text(HCL.lstrip())
    status = 2
    try:
        t = time.perf_counter()
        must(rhplan(directory, "apply", "-auto-approve", timeout=900), "rhplan apply")
        print(f"applied {directory} (cluster + env with {NUMPY}) in "
              f"{time.perf_counter() - t:.1f} s")
        python = driver_python(workdir)
        proc = must(subprocess.run([python, __file__, "--measure", str(directory),
                                    "--calls", str(args.calls), "--objects", str(args.objects),
                                    "--mb", str(args.mb)], capture_output=True, text=True,
                                   timeout=900, check=False), "the measuring driver")
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"the driver printed no result:\n{proc.stdout}\n{proc.stderr}")
        status = 0 if report(json.loads(lines[-1]), args.mb) else 1
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        status = 2
    finally:
        t = time.perf_counter()
        try:
            res = rhplan(directory, "destroy", "-auto-approve", timeout=300)
            destroyed = res.returncode == 0
            if not destroyed:
                print(f"error: rhplan destroy failed (exit {res.returncode}):\n"
                      f"{res.stdout}\n{res.stderr}", file=sys.stderr)
        except subprocess.TimeoutExpired:
            destroyed = False
            print("error: rhplan destroy did not finish within 300 s", file=sys.stderr)
        left = leftover_processes(directory)
        if left:
            destroyed = False
            print(f"error: processes of the benchmark's Ray outlived destroy: {left}",
                  file=sys.stderr)
        if destroyed:
            print(f"destroyed in {time.perf_counter() - t:.1f} s")
            if not args.dir:
                shutil.rmtree(workdir, ignore_errors=True)
        else:
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
