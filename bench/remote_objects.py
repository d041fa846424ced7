#!/usr/bin/env python3
"""Per-call cost of a remote object's method (`h.incr()`, issue 13 item 6) beside a call
by name (`s.call("os:getpid")`), on the route RHPLAN_SERVLET_ROUTE picks: wall time and
this process's CPU per call, median of 5 rounds of 200 calls.

    RHPLAN_SERVLET_ROUTE=direct python bench/remote_objects.py CHDIR ENV
    RHPLAN_SERVLET_ROUTE=ssh    python bench/remote_objects.py CHDIR ENV

CHDIR is an applied configuration's folder and ENV one of its envs (any cluster).
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import rhplan


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n


def main() -> None:
    chdir, env = sys.argv[1], sys.argv[2]
    s = rhplan.servlet(env, chdir=chdir)
    h = s.instance(Counter, name="bench-remote-objects")
    cases = {"s.call('os:getpid')": lambda: s.call("os:getpid"), "h.incr()": h.incr}
    route = os.environ.get("RHPLAN_SERVLET_ROUTE", "auto")
    try:
        for label, fn in cases.items():
            fn()
            walls, cpus = [], []
            for _ in range(5):
                w, c = time.perf_counter(), time.process_time()
                for _ in range(200):
                    fn()
                walls.append((time.perf_counter() - w) / 200)
                cpus.append((time.process_time() - c) / 200)
            print(f"{route:6} {label:22} wall {statistics.median(walls) * 1e6:7.0f} us  "
                  f"CPU here {statistics.median(cpus) * 1e6:5.0f} us")
    finally:
        h.delete()


if __name__ == "__main__":
    main()
