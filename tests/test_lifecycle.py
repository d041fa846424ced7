"""lifecycle that means what it says (issue 14 item 6): ignore_changes covers what is
derived from an ignored attribute, replace_triggered_by replaces, create_before_destroy
is honoured where the order cannot show and refused, in one line, where it would.

Plan cases are data: (configuration applied before, configuration now, options) -> the
action planned per address; the state "applied before" is made without any host.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_plan_cases import applied_state, case_context

from rhplan.config.decode import resolve_variables
from rhplan.config.load import load_config
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.state.model import State

CLUSTER = 'cluster "c" {\n  provider = "local"\n}\n\n'


def package(rev: str, life: str = "", url: str = "https://example.com/p.git") -> str:
    return (f'package "p" {{\n  git_url  = "{url}"\n  revision = "{rev}"\n{life}}}\n\n')


def env(life: str = "", name: str = "e", extra: str = "") -> str:
    return (f'env "{name}" {{\n  cluster = cluster.c\n  reqs    = [package.p]\n{extra}'
            f'{life}}}\n\n')


def life(body: str) -> str:
    return f"  lifecycle {{\n    {body}\n  }}\n"


def plan_of(directory: Path, text: str, state: State, **opts: Any) -> Any:
    (directory / "main.hcl").write_text(text)
    cfg = load_config(directory)
    return Planner(cfg, case_context(directory), resolve_variables(cfg)).plan(
        state, PlanOptions(**opts))


def state_of(directory: Path, text: str) -> State:
    (directory / "main.hcl").write_text(text)
    return applied_state(directory)


BASE = CLUSTER + package("v1") + env()
CASES = [
    pytest.param(BASE, CLUSTER + package("v2", life("ignore_changes = [revision]")) + env(),
                 {}, {"cluster.c": "no-op", "package.p": "no-op", "env.e": "no-op"},
                 id="ignored-revision-keeps-spec"),
    pytest.param(BASE, CLUSTER + package("v2", life("ignore_changes = all")) + env(),
                 {}, {"cluster.c": "no-op", "package.p": "no-op", "env.e": "no-op"},
                 id="ignore-all-keeps-spec"),
    pytest.param(BASE, CLUSTER + package("v2") + env(), {},
                 {"cluster.c": "no-op", "package.p": "update", "env.e": "update"},
                 id="not-ignored-updates"),
    pytest.param(BASE, CLUSTER + package("v2") + env(life("replace_triggered_by = [package.p]")),
                 {}, {"cluster.c": "no-op", "package.p": "update", "env.e": "replace"},
                 id="triggered-by-a-resource"),
    pytest.param(BASE, CLUSTER + package("v1") + env(life("replace_triggered_by = [package.p]")),
                 {}, {"cluster.c": "no-op", "package.p": "no-op", "env.e": "no-op"},
                 id="trigger-unchanged"),
    pytest.param(BASE, CLUSTER + package("v2")
                 + env(life("replace_triggered_by = [package.p.revision]")), {},
                 {"cluster.c": "no-op", "package.p": "update", "env.e": "replace"},
                 id="triggered-by-an-attribute"),
    pytest.param(BASE, CLUSTER + package("v1", url="https://example.com/q.git")
                 + env(life("replace_triggered_by = [package.p.revision]")), {},
                 {"cluster.c": "no-op", "package.p": "update", "env.e": "update"},
                 id="another-attribute-does-not-trigger"),
    pytest.param(BASE + env(name="w"), CLUSTER + package("v1") + env()
                 + env(name="w", extra='  env_vars = { A = "1" }\n',
                       life=life("replace_triggered_by = [env.e]")), {"replace": ["env.e"]},
                 {"cluster.c": "no-op", "package.p": "no-op", "env.e": "replace",
                  "env.w": "replace"}, id="triggered-by-a-replacement"),
    pytest.param(CLUSTER + 'secret "s" {\n  values = { K = "v" }\n}\n',
                 CLUSTER + 'secret "s" {\n  values = { K = "v" }\n'
                 + life("create_before_destroy = true") + "}\n", {"replace": ["secret.s"]},
                 {"cluster.c": "no-op", "secret.s": "replace"},
                 id="create-before-destroy-on-a-secret"),
]


@pytest.mark.parametrize(("before", "now", "opts", "expected"), CASES)
def test_plan(tmp_path: Path, before: str, now: str, opts: dict[str, Any],
              expected: dict[str, str]) -> None:
    plan = plan_of(tmp_path, now, state_of(tmp_path, before), **opts)
    assert {c.address: c.action for c in plan.changes} == expected


def test_trigger_reason_is_shown(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, CLUSTER + package("v2")
                   + env(life("replace_triggered_by = [package.p.revision]")),
                   state_of(tmp_path, BASE))
    assert plan.change("env.e").reason == "replace_triggered_by: package.p.revision changes"


ERRORS = [
    pytest.param(CLUSTER + package("v1") + env(life("create_before_destroy = true")),
                 ("-replace=env.e",), 'env "e"',
                 ["env.e must be replaced (replacement requested with -replace) and sets "
                  "lifecycle.create_before_destroy, which rhplan cannot honour for an env",
                  "on-host name 'e'", "remove create_before_destroy"], id="cbd-env-refused"),
    pytest.param(CLUSTER + package("v1") + env(life("replace_triggered_by = [var.x]")), (),
                 "replace_triggered_by", ["replace_triggered_by takes resources"],
                 id="trigger-not-a-resource"),
    pytest.param(CLUSTER + package("v1") + env(life("replace_triggered_by = [env.nope]")), (),
                 "replace_triggered_by", ["env.e refers to env.nope, which is not declared"],
                 id="trigger-undeclared"),
    pytest.param(CLUSTER + package("v1") + env(life('create_before_destroy = "yes"')), (),
                 "create_before_destroy", ["create_before_destroy must be true or false"],
                 id="cbd-not-a-bool"),
]


@pytest.mark.parametrize(("text", "args", "marker", "words"), ERRORS)
def test_errors_name_file_and_line(tmp_path: Path, rhplan_in: Any, text: str,
                                   args: tuple[str, ...], marker: str, words: list[str]) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True  # a state made without hosts: nothing to destroy
    rh.write(BASE)
    rh.state_path.write_text(json.dumps(applied_state(rh.dir).to_json()))
    rh.write(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if marker in t)
    msg = rh("plan", "-refresh=false", *args).error_line()
    assert msg.startswith(f"Error: main.hcl:{line}: "), msg
    for w in words:
        assert w in msg, (w, msg)
