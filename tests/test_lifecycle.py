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
from plan_case import applied_state, case_context

from rhplan.config.inputs import resolve_variables
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
                  "env.w": "replace", "env.c_default": "no-op"},  # two envs: a bare default
                 id="triggered-by-a-replacement"),
    pytest.param(CLUSTER + 'secret "s" {\n  values = { K = "v" }\n}\n',
                 CLUSTER + 'secret "s" {\n  values = { K = "v" }\n'
                 + life("create_before_destroy = true") + "}\n", {"replace": ["secret.s"]},
                 {"cluster.c": "no-op", "env.c_default": "no-op", "secret.s": "replace"},
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
    pytest.param(CLUSTER + package("v1") + env(life("create_before_destroy = true"),
                                               extra='  name    = "e"\n'),
                 ("-replace=env.e",), 'env "e"',
                 ["env.e must be replaced (replacement requested with -replace; its "
                  "servlet's objects and instances are lost) and sets "
                  "lifecycle.create_before_destroy, but also name = 'e'",
                  "remove name (rhplan then picks a new one) or create_before_destroy"],
                 id="cbd-env-with-a-name-refused"),
    pytest.param('cluster "c" {\n  provider = "local"\n' + life("create_before_destroy = true")
                 + "}\n\n" + package("v1") + env(), ("-replace=cluster.c",), 'cluster "c"',
                 ["cluster.c must be replaced", "which rhplan cannot honour for a cluster"],
                 id="cbd-cluster-refused"),
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


def test_create_before_destroy_plans_a_new_name(tmp_path: Path) -> None:
    from rhplan.plan.lifecycle import replacement_name

    state = state_of(tmp_path, BASE)
    plan = plan_of(tmp_path, CLUSTER + package("v1") + env(life("create_before_destroy = true")),
                   state, replace=["env.e"])
    c = plan.change("env.e")
    cfg = load_config(tmp_path)
    new = replacement_name(cfg.resources["env.e"], "e")
    assert c.action == "replace" and c.after["name"] == new and new.startswith("e-")
    assert c.after["path"].endswith(f"/envs/{new}")
    assert c.reason.endswith(f"; create_before_destroy: the replacement is built as {new!r}, "
                             "then 'e' is destroyed")


@pytest.mark.long  # its own real local cluster (20-30 s); the plan tests here run by default
def test_create_before_destroy_on_a_real_cluster(rh: Any) -> None:
    """A real apply: the replacement env and its servlet are up before the old env is
    destroyed (apply's own order of messages), under a new folder; the old folder goes."""
    rh.write(CLUSTER + 'env "e" {\n  cluster = cluster.c\n  reqs    = []\n'
             + life("create_before_destroy = true") + "}\n")
    rh("apply", "-auto-approve").ok()
    old = rh.env_dir("c", "e")
    out = rh("apply", "-auto-approve", "-replace=env.e").ok().stdout
    new = rh.resources()["env.e"]["attributes"]["name"]
    assert new.startswith("e-"), new
    created = out.index("env.e: Creation complete")
    destroying = out.index("env.e (deposed object 'e'): Destroying...")
    assert created < destroying, out
    assert "Resources: 1 added, 0 changed, 1 destroyed." in out, out
    assert not old.exists() and rh.env_dir("c", new).is_dir()
    assert "deposed" not in rh.resources()["env.e"]["private"]
    assert "No changes." in rh("plan").ok().stdout

    # an apply stopped between the two leaves the old object recorded beside the new
    # one (made here by hand from a second env): the next plan and apply destroy it
    rh.write(CLUSTER + 'env "e" {\n  cluster = cluster.c\n  reqs    = []\n'
             + life("create_before_destroy = true") + "}\n\n"
             + 'env "f" {\n  cluster = cluster.c\n  reqs    = []\n}\n')
    rh("apply", "-auto-approve").ok()
    data = json.loads(rh.state_path.read_text())
    entries = {r["address"]: r for r in data["resources"]} if isinstance(
        data["resources"], list) else data["resources"]
    f = entries.pop("env.f")
    entries["env.e"]["private"]["deposed"] = [f]
    data["resources"] = list(entries.values()) if isinstance(data["resources"], list) \
        else entries
    rh.state_path.write_text(json.dumps(data))
    rh.write(CLUSTER + 'env "e" {\n  cluster = cluster.c\n  reqs    = []\n'
             + life("create_before_destroy = true") + "}\n")
    shown = rh("plan", "-no-color").ok().stdout
    assert "# env.e (deposed object 'f') will be destroyed" in shown, shown
    # env "f" made the cluster's bare default env (two envs, no default_env); with one
    # env again it goes too (README "A default env per cluster")
    assert "# env.c_default will be destroyed" in shown, shown
    assert "Plan: 0 to add, 0 to change, 2 to destroy." in shown, shown
    out = rh("apply", "-auto-approve").ok().stdout
    assert "env.e (deposed object 'f'): Destruction complete" in out, out
    assert not rh.env_dir("c", "f").exists()
    assert "deposed" not in rh.resources()["env.e"]["private"]
    assert "No changes." in rh("plan").ok().stdout
    rh("destroy", "-auto-approve").ok()
