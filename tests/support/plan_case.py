"""What a plan case needs without any host (tests/plan_cases, and the planning tests
that build on them): a run context with a fixed digest key, and the state an apply of
a configuration would record, with what only apply learns filled in deterministically."""
from __future__ import annotations

from pathlib import Path

from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.config.values import UNKNOWN
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.provider import RunContext
from rhplan.state import digest
from rhplan.state.model import ResourceState, State

# the key of the cases' keyed secret digests: fixed, so golden files stay stable
DIGEST_KEY = bytes(range(32))

# what only an apply learns, with fixed values so golden files stay stable
AFTER_APPLY = {"ray_address": "127.0.0.1:6379", "ray_version": "2.60.0",
               "ray_python": "/opt/rhplan/bin/python", "servlet_pid": 4000}


def case_context(config_dir: Path) -> RunContext:
    ctx = RunContext(config_dir)
    digest.use_key(ctx, lambda: DIGEST_KEY)
    return ctx


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
