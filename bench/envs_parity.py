#!/usr/bin/env python3
"""Envs as Runhouse users know them (issue 13): what a code edit costs.

Run (from the repository root, with the project's venv active; needs /usr/sbin/sshd,
which tests/support/sshd.py installs with apt when missing):

    python bench/envs_parity.py                 # 2,000 files, 5 repeats
    python bench/envs_parity.py --files 500 --repeat 3

What it measures
----------------
1. re-sync of a working_dir of --files Python files after editing ONE of them, the way
   apply does it (rhplan/working_dir.py: hash the folder, read the host's manifest,
   send what changed, write the manifest): to a real sshd on 127.0.0.1 (tests/support/sshd.py)
   and to this machine (LocalConnection). Printed: median wall time, the hashing part
   of it, files sent, and the round trips to the host (commands + SFTP reads/writes,
   counted by a pass-through wrapper). Target: <= 1 s.
2. a call into a freshly synced module: a local cluster (its own Ray head, a uv venv,
   a servlet) whose working_dir is the same kind of folder; a driver process holds
   `rhplan.servlet("e")`, then per repeat: edit mylib.py, `rhplan apply` (a subprocess,
   timed: it re-syncs one file and keeps the servlet), and time the first `call(fn)`
   after it (fn imports mylib, which the servlet re-imports) against a steady call.
   Target: the first call <= 10 ms.
The cluster is destroyed at the end (also after a failure or Ctrl-C).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

RHPLAN = [sys.executable, "-m", "rhplan.cli"]


class Counted:
    """A Connection that counts what reaches the host (pass-through)."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.trips = conn, 0
        self.host = getattr(conn, "host", "local")

    def run(self, *a: Any, **k: Any) -> Any:
        self.trips += 1
        return self.conn.run(*a, **k)

    def put_bytes(self, *a: Any, **k: Any) -> Any:
        self.trips += 1
        return self.conn.put_bytes(*a, **k)

    def get_bytes(self, *a: Any, **k: Any) -> Any:
        self.trips += 1
        return self.conn.get_bytes(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def make_project(root: Path, files: int) -> None:
    per = 50
    for i in range(files - 1):
        pkg = root / f"pkg{i // per:03d}"
        pkg.mkdir(parents=True, exist_ok=True)
        (pkg / f"mod{i % per:02d}.py").write_text(f"X = {i}\n" + "# padding\n" * 20)
    (root / "mylib.py").write_text("VALUE = 0\n")


def bench_sync(root: Path, conn: Any, remote: str, repeat: int, cache: Path
               ) -> dict[str, Any]:
    from rhplan import working_dir

    counted = Counted(conn)
    first = time.perf_counter()
    res = working_dir.sync_to(counted, root, remote, working_dir.DEFAULT_MAX_MB, cache)
    first = time.perf_counter() - first
    walls, hashes, trips, sent = [], [], [], []
    for n in range(1, repeat + 1):
        (root / "mylib.py").write_text(f"VALUE = {n}\n")
        counted.trips = 0
        t0 = time.perf_counter()
        working_dir.scan(root, working_dir.DEFAULT_MAX_MB)  # the plan's part
        t1 = time.perf_counter()
        res = working_dir.sync_to(counted, root, remote, working_dir.DEFAULT_MAX_MB, cache)
        walls.append(time.perf_counter() - t0)
        hashes.append(t1 - t0)
        trips.append(counted.trips)
        sent.append(res.files_sent)
    return {"first": first, "total": res.files_total, "wall": statistics.median(walls),
            "hash": statistics.median(hashes), "trips": max(trips), "sent": max(sent)}


def bench_calls(base: Path, files: int, repeat: int) -> dict[str, Any]:
    project = base / "calls"
    project.mkdir()
    make_project(project, files)
    (project / "main.hcl").write_text(textwrap.dedent("""
        cluster "c" {
          provider = "local"
        }
        env "e" {
          cluster = cluster.c
        }
    """))
    env = {**os.environ, "NO_COLOR": "1", "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE",
                                                                          "token")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def cli(*args: str) -> float:
        t0 = time.perf_counter()
        p = subprocess.run([*RHPLAN, f"-chdir={project}", *args], capture_output=True,
                           text=True, env=env, timeout=600, check=False)
        if p.returncode != 0:
            raise SystemExit(f"rhplan {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
        return time.perf_counter() - t0

    driver = base / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import json, subprocess, sys, time
        import rhplan
        def fn():
            import mylib
            return mylib.VALUE
        s = rhplan.servlet("e", chdir={str(project)!r})
        for _ in range(20):
            s.call(fn)
        steady = []
        for _ in range(50):
            t0 = time.perf_counter(); s.call(fn); steady.append(time.perf_counter() - t0)
        first, applies = [], []
        for n in range(1, {repeat} + 1):
            open({str(project / "mylib.py")!r}, "w").write(f"VALUE = {{n * 100}}\\n")
            t0 = time.perf_counter()
            p = subprocess.run({RHPLAN!r} + ["-chdir={project}", "apply", "-auto-approve"],
                               capture_output=True, text=True)
            applies.append(time.perf_counter() - t0)
            assert p.returncode == 0, p.stdout + p.stderr
            t0 = time.perf_counter(); got = s.call(fn); first.append(time.perf_counter() - t0)
            assert got == n * 100, got
        steady.sort(); first.sort(); applies.sort()
        print("RESULT " + json.dumps({{"steady": steady[len(steady) // 2],
              "first": first[len(first) // 2], "first_max": first[-1],
              "apply": applies[len(applies) // 2]}}))
    """))
    apply_s = cli("apply", "-auto-approve")
    try:
        p = subprocess.run([sys.executable, str(driver)], capture_output=True, text=True,
                           env=env, timeout=900, check=False)
        lines = [ln[7:] for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            raise SystemExit(f"driver failed:\n{p.stdout}\n{p.stderr}")
        out = json.loads(lines[0])
        out["first_apply"] = apply_s
        return out
    finally:
        cli("destroy", "-auto-approve")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from sshd import SSHServer

    from rhplan.hosts.connection import LocalConnection
    from rhplan.hosts.ssh.connection import SSHConnection

    ok = True
    with tempfile.TemporaryDirectory(prefix="rhplan-bench-envs-") as tmp:
        base = Path(tmp)
        project = base / "project"
        project.mkdir()
        make_project(project, args.files)
        rows = []
        with SSHServer() as srv:
            conn = SSHConnection(srv.host, port=srv.port, user=srv.user,
                                 private_key=srv.client_key, known_hosts=srv.known_hosts)
            rows.append(("ssh 127.0.0.1", bench_sync(project, conn, str(base / "remote-ssh"),
                                                     args.repeat, base / "cache-ssh")))
            conn.close()
        rows.append(("local", bench_sync(project, LocalConnection(), str(base / "remote-local"),
                                         args.repeat, base / "cache-local")))
        print(f"\nre-sync of a {args.files}-file working_dir after editing one file "
              f"(median of {args.repeat}):")
        for name, r in rows:
            print(f"  {name:14s} first sync {r['first']:.3f} s ({r['total']} files); "
                  f"re-sync {r['wall']:.3f} s (hashing {r['hash']:.3f} s), "
                  f"{r['sent']} file sent, {r['trips']} round trips to the host")
            ok &= r["wall"] <= 1.0 and r["sent"] == 1
        c = bench_calls(base, args.files, args.repeat)
        print(f"\na call into a freshly synced module (local cluster, {args.files} files; "
              f"median of {args.repeat}):")
        print(f"  rhplan apply after the edit (CLI process, plan + re-sync) {c['apply']:.3f} s"
              f"  (first apply {c['first_apply']:.1f} s)")
        print(f"  first call after the sync {c['first'] * 1e3:.2f} ms (max "
              f"{c['first_max'] * 1e3:.2f} ms); steady call {c['steady'] * 1e3:.2f} ms")
        ok &= c["first"] <= 0.010
    print(("PASS" if ok else "FAIL") + ": re-sync <= 1 s sending 1 file; first call after "
          "a sync <= 10 ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
