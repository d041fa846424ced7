"""bench/remote_calls.py's report: issue 12's targets for the ssh route, the table of
every route's figures beside them (and a --compare revision's), and the verdict."""
from __future__ import annotations

from typing import Any

TARGETS = {"call_median_ms": 5.0, "call_p99_ms": 20.0, "put_ms": 100.0, "get_ms": 100.0,
           "first_handle_s": 1.0, "cold_first_handle_s": 1.0, "threads_ratio": 4.0}


def meets(key: str, value: float) -> bool:
    return value >= TARGETS[key] if key == "threads_ratio" else value <= TARGETS[key]


def table(results: dict[str, dict[str, Any]], before: dict[str, Any] | None = None,
           rev: str = "") -> str:
    rows = [("first handle (s)", "first_handle_s", "{:.3f}"),
            ("first handle, gateway cold (s)", "cold_first_handle_s", "{:.3f}"),
            ("call median (ms)", "call_median_ms", "{:.2f}"),
            ("call p99 (ms)", "call_p99_ms", "{:.2f}"),
            ("put 10 MB (ms)", "put_ms", "{:.1f}"), ("get 10 MB (ms)", "get_ms", "{:.1f}"),
            ("1 thread (calls/s)", "one_thread_per_s", "{:.0f}"),
            ("8 threads (calls/s)", "eight_threads_per_s", "{:.0f}"),
            ("8 threads / 1 thread", "threads_ratio", "{:.2f}"),
            ("CPU per call, 1 thread (us)", "cpu_1", "{:.0f}"),
            ("CPU per call, 8 threads (us)", "cpu_8", "{:.0f}"),
            ("load average, thread runs, min", "load_min", "{:.1f}"),
            ("load average, thread runs, max", "load_max", "{:.1f}")]
    for r in [*results.values(), before or {}]:  # all of a call's processes together
        for n in ("1", "8"):
            if "total" in r.get("cpu_us_per_call", {}).get(n, {}):
                r[f"cpu_{n}"] = r["cpu_us_per_call"][n]["total"]
    routes = list(results)
    out = [f"{'':32}" + "".join(f"{r:>11}" for r in routes)
           + (f"{'ssh ' + rev[:7]:>12}" if before else "") + "   ssh target"]
    for label, key, fmt in rows:
        cells = []
        for r in routes:
            v = results[r].get(key)
            cells.append(f"{fmt.format(v) if isinstance(v, (int, float)) else '-':>11}")
        if before:
            v = before.get(key)
            cells.append(f"{fmt.format(v) if isinstance(v, (int, float)) else '-':>12}")
        target = ""
        if key in TARGETS:
            v = results.get("ssh", {}).get(key)
            mark = "" if not isinstance(v, (int, float)) else (
                "  met" if meets(key, v) else "  MISSED")
            target = f"   {'>=' if key == 'threads_ratio' else '<='} {TARGETS[key]:g}{mark}"
        out.append(f"{label:32}" + "".join(cells) + target)
    for r, res in [*results.items(), *([(f"ssh {rev[:7]}", before)] if before else [])]:
        for n, per in sorted(res.get("cpu_us_per_call", {}).items()):
            out.append(f"{r}, {n} thread(s), CPU us per call: "
                       + ", ".join(f"{k} {v}" for k, v in per.items()))
        for n, (sent, got) in sorted(res.get("ssh_packets_per_call", {}).items()):
            out.append(f"{r}, {n} thread(s), the caller's SSH packets per call: sent {sent}, "
                       f"received {got}")
        if "error" in res:
            out.append(f"{r}: {res['error']}")
    return "\n".join(out)


def verdict(ssh: dict[str, Any]) -> int:
    """Prints the ssh route against issue 12's targets; the exit status."""
    missed = [k for k in TARGETS if k in ssh and not meets(k, ssh[k])]
    missed += [k for k in TARGETS if k not in ssh]
    print("ssh route vs issue 12 targets: " + ("PASS" if not missed else
          "FAIL (" + ", ".join(f"{k}={ssh.get(k, float('nan')):.3g} vs {TARGETS[k]}"
                               for k in missed)
          + ")"))
    return 1 if missed else 0
