"""The planner as pure data: recorded state + configuration → expected plan.

Each folder under tests/plan_cases/ is one case:
  main.hcl        the configuration being planned (modules/: the local modules it calls)
  state.json      the recorded state (or before.hcl: the configuration a previous
                  apply used, turned into a state without touching any host)
  flags.json      optional PlanOptions: {"destroy": true, "targets": [...], "replace": [...]}
  expected.txt    the rendered plan (golden file)
  expected.json   optional: {"address": "action", ...} checked against the plan

Adding a case is adding a folder. Regenerate golden files after a deliberate change with
RHPLAN_UPDATE_GOLDEN=1 pytest tests/test_plan_cases.py, then review the diff as text.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from rhplan.config.decode import resolve_variables
from rhplan.config.evaluate import UNKNOWN
from rhplan.config.load import load_config
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.plan.render import render_plan
from rhplan.provider import RunContext
from rhplan.state import digest
from rhplan.state.model import ResourceState, State

CASES = Path(__file__).parent / "plan_cases"
UPDATE = os.environ.get("RHPLAN_UPDATE_GOLDEN") == "1"


# the key of the cases' keyed secret digests: fixed, so golden files stay stable
DIGEST_KEY = bytes(range(32))


def case_context(config_dir: Path) -> RunContext:
    ctx = RunContext(config_dir)
    digest.use_key(ctx, lambda: DIGEST_KEY)
    return ctx


# what only an apply learns, with fixed values so golden files stay stable
AFTER_APPLY = {"ray_address": "127.0.0.1:6379", "ray_version": "2.60.0",
               "ray_python": "/opt/rhplan/bin/python", "servlet_pid": 4000}


def applied_state(config_dir: Path) -> State:
    """The state an apply of config_dir would record, made without any host:
    planned attributes, with what only apply knows filled in deterministically."""
    cfg = load_config(config_dir)
    planner = Planner(cfg, case_context(config_dir), resolve_variables(cfg))
    plan = planner.plan(State.new(), PlanOptions())
    state = State(lineage="00000000-0000-4000-8000-000000000000", serial=1)
    for i, c in enumerate(plan.changes):
        attrs = dict(c.after or {})
        if c.type == "env":
            attrs["installed"] = {r: [r.split(":")[-1]] for r in attrs["reqs"]}
        for name, value in AFTER_APPLY.items():
            if attrs.get(name) is UNKNOWN:
                attrs[name] = value + i if isinstance(value, int) else value
        assert all(v is not UNKNOWN for v in attrs.values()), c.address
        state.resources[c.address] = ResourceState(c.address, c.type, c.name, c.provider,
                                                    attrs, c.dependencies)
    return state


def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if (p / "main.hcl").exists())


@pytest.mark.parametrize("name", case_names())
def test_plan_case(name: str, tmp_path: Path) -> None:
    case = CASES / name
    work = tmp_path / name
    work.mkdir()
    shutil.copy(case / "main.hcl", work / "main.hcl")
    if (case / "modules").is_dir():  # the local modules main.hcl calls
        shutil.copytree(case / "modules", work / "modules")
    if (case / "state.json").exists():
        state = State.from_json(json.loads((case / "state.json").read_text()), "state.json")
    elif (case / "before.hcl").exists():
        before = tmp_path / "before"
        before.mkdir()
        shutil.copy(case / "before.hcl", before / "main.hcl")
        state = applied_state(before)
        (case / "state.json").write_text(json.dumps(state.to_json(), indent=2) + "\n")
    else:
        state = State.new()
    flags = json.loads((case / "flags.json").read_text()) if (case / "flags.json").exists() else {}
    cfg = load_config(work)
    planner = Planner(cfg, case_context(work), resolve_variables(cfg))
    plan = planner.plan(state, PlanOptions(**flags))
    text = render_plan(plan, color=False)
    golden = case / "expected.txt"
    if UPDATE or not golden.exists():
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered plan of {name} differs from {golden}"
    if (case / "expected.json").exists():
        want = json.loads((case / "expected.json").read_text())
        got = {c.address: c.action for c in plan.changes}
        assert got == want
