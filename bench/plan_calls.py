#!/usr/bin/env python3
"""Function calls of one warm load and one no-change plan: a figure machine load does not
move, for comparing two trees on a shared machine (time figures there are noise).

    python bench/plan_scale.py --dir /tmp/ps              # generates DIR and its state
    PYTHONPATH=/path/to/tree-a python bench/plan_calls.py /tmp/ps
    PYTHONPATH=/path/to/tree-b python bench/plan_calls.py /tmp/ps

(plan_scale.py --dir leaves the configuration and state in DIR; run it once.)
"""
from __future__ import annotations

import cProfile
import io
import pstats
import sys
from pathlib import Path

from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.provider import RunContext
from rhplan.state.local import LocalBackend


def main() -> None:
    d = Path(sys.argv[1])
    state = LocalBackend(d / "rhplan.state.json").read()
    cfg = load_config(d)  # fills the parse cache; the next plan is warm
    Planner(cfg, RunContext(d), resolve_variables(cfg)).plan(state, PlanOptions())
    load = cProfile.Profile()
    load.enable()
    cfg = load_config(d)
    load.disable()
    variables = resolve_variables(cfg)
    plan = cProfile.Profile()
    plan.enable()
    result = Planner(cfg, RunContext(d), variables).plan(state, PlanOptions())
    plan.disable()
    for what, prof in (("load", load), ("plan", plan)):
        calls = pstats.Stats(prof, stream=io.StringIO()).total_calls  # type: ignore[attr-defined]
        print(f"{what}: {calls:,} function calls")
    print(f"({len(result.changes):,} resource instances planned)")


if __name__ == "__main__":
    main()
