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
from plan_case import applied_state, case_context

from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.state.model import State
from rhplan.views.plan import render_plan

CASES = Path(__file__).parent / "plan_cases"
UPDATE = os.environ.get("RHPLAN_UPDATE_GOLDEN") == "1"


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
