"""moved and removed blocks (issue 14 item 3): refactoring without rebuilding.

Plan cases are data: (configuration applied before, configuration now) -> the action
and previous address planned for each instance. The state "applied before" is made
without any host (test_plan_cases.applied_state). Errors run through the CLI: one line,
file:line. One test applies for real (local cluster, real Ray, a real venv): a renamed
env keeps its venv and servlet.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from plan_case import applied_state, case_context

from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.plan.moved import moved_state
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.state.model import State
from rhplan.views.plan import render_plan

CLUSTER = 'cluster "c" {\n  provider = "local"\n}\n\n'


def env(name: str, extra: str = "", cluster: str = "c") -> str:
    return f'env "{name}" {{\n{extra}  cluster = cluster.{cluster}\n}}\n\n'


def moved(src: str, dst: str) -> str:
    return f"moved {{\n  from = {src}\n  to   = {dst}\n}}\n\n"


def removed(src: str, destroy: str = "false") -> str:
    return f"removed {{\n  from = {src}\n  lifecycle {{\n    destroy = {destroy}\n  }}\n}}\n\n"


def plan_of(directory: Path, text: str, state: State) -> Any:
    (directory / "main.hcl").write_text(text)
    cfg = load_config(directory)
    return Planner(cfg, case_context(directory), resolve_variables(cfg)).plan(state,
                                                                          PlanOptions())


def state_of(directory: Path, text: str) -> State:
    (directory / "main.hcl").write_text(text)
    return applied_state(directory)


A = CLUSTER + env("a")
COUNT2 = CLUSTER + env("x", "  count = 2\n")

# (before, now, {address: (action, previous_address)})
# cluster.c left without an env of its own gets its bare default env (config/default_env.py)
BARE = {"env.c_default": ("create", None)}
# as a cluster whose only env is repeated had (which of its instances would be the default?)
KEPT = {"env.c_default": ("no-op", None)}

CASES = [
    pytest.param(A, CLUSTER + env("b") + moved("env.a", "env.b"),
                 {"cluster.c": ("no-op", None), "env.b": ("no-op", "env.a")}, id="rename"),
    pytest.param(A, CLUSTER + env("c") + moved("env.a", "env.b") + moved("env.b", "env.c"),
                 {"cluster.c": ("no-op", None), "env.c": ("no-op", "env.a")}, id="chain"),
    pytest.param(A, CLUSTER + env("a", '  for_each = toset(["k"])\n')
                 + moved("env.a", 'env.a["k"]'),
                 {"cluster.c": ("no-op", None), 'env.a["k"]': ("no-op", "env.a"), **BARE},
                 id="into-a-for-each-key"),
    pytest.param(COUNT2, CLUSTER + env("y", "  count = 2\n") + moved("env.x", "env.y"),
                 {"cluster.c": ("no-op", None), "env.y[0]": ("no-op", "env.x[0]"),
                  "env.y[1]": ("no-op", "env.x[1]"), **KEPT}, id="whole-block-keys-kept"),
    pytest.param(A, 'cluster "d" {\n  provider = "local"\n}\n\n' + env("a", cluster="d")
                 + moved("cluster.c", "cluster.d"),
                 {"cluster.d": ("no-op", "cluster.c"), "env.a": ("no-op", None)},
                 id="cluster-rename-keeps-its-envs"),
    pytest.param(A, CLUSTER + moved("env.a", "env.b"),
                 {"cluster.c": ("no-op", None), "env.b": ("delete", "env.a"), **BARE},
                 id="moved-then-gone"),
    pytest.param(A, CLUSTER + env("b") + moved("env.z", "env.b"),
                 {"cluster.c": ("no-op", None), "env.a": ("delete", None),
                  "env.b": ("create", None)}, id="from-not-in-state-does-nothing"),
    pytest.param(A, CLUSTER + removed("env.a"),
                 {"cluster.c": ("no-op", None), "env.a": ("forget", None), **BARE},
                 id="removed-forgets"),
    pytest.param(COUNT2, CLUSTER + removed("env.x"),
                 {"cluster.c": ("no-op", None), "env.x[0]": ("forget", None),
                  "env.x[1]": ("forget", None), **KEPT}, id="removed-every-instance"),
    pytest.param(A, CLUSTER + removed("env.a", "true"),
                 {"cluster.c": ("no-op", None), "env.a": ("delete", None), **BARE},
                 id="removed-destroy-true"),
]


@pytest.mark.parametrize(("before", "now", "expected"), CASES)
def test_plan(tmp_path: Path, before: str, now: str, expected: dict[str, Any]) -> None:
    plan = plan_of(tmp_path, now, state_of(tmp_path, before))
    got = {c.address: (c.action, c.previous_address) for c in plan.changes}
    assert got == expected


def test_plan_text_says_moved_and_forget(tmp_path: Path) -> None:
    state = state_of(tmp_path, A + env("f"))
    text = render_plan(plan_of(tmp_path, CLUSTER + env("b") + moved("env.a", "env.b")
                               + removed("env.f"), state))
    assert "  # env.a has moved to env.b\n  # (nothing else changes)\n" in text, text
    assert ("  # env.f will no longer be managed by rhplan, but will not be destroyed\n"
            "  # (removed block at main.hcl:") in text, text
    # two envs before had a bare default env; env.b alone is the default now
    assert "Plan: 0 to add, 0 to change, 1 to destroy, 1 to forget." in text, text


def test_state_mv_keeps_the_on_host_name(tmp_path: Path) -> None:
    """env.a moved to env.b in the state (state mv) plans no change: the recorded name
    'a' (its folder, its servlet) is kept, since the block does not set name."""
    state = moved_state(state_of(tmp_path, A), {"env.a": "env.b"})
    plan = plan_of(tmp_path, CLUSTER + env("b"), state)
    assert {c.address: c.action for c in plan.changes} == {"cluster.c": "no-op",
                                                           "env.b": "no-op"}
    # setting name = ... says to rename it on the host: that rebuilds it
    plan = plan_of(tmp_path, CLUSTER + env("b", '  name = "b"\n'), state)
    assert plan.change("env.b").action == "replace"


ERRORS = [
    pytest.param(A + moved("env.a", "env.b"), "from = env.a",
                 ["env.a is still declared at main.hcl:5"], id="from-still-declared"),
    pytest.param(CLUSTER + env("b") + moved("env.a", "cluster.b"), "from = env.a",
                 ["cannot move env.a to cluster.b", "a move keeps the type"], id="type-mismatch"),
    pytest.param(CLUSTER + env("c") + moved("env.a", "env.b") + moved("env.b", "env.a"),
                 "from = env.a", ["moved blocks make a cycle: env.a -> env.b -> env.a"],
                 id="cycle"),
    pytest.param(CLUSTER + env("b") + "moved {\n  from = env.a\n}\n", "moved {",
                 ["a moved block needs to = ADDRESS"], id="moved-without-to"),
    pytest.param(CLUSTER + env("b") + "moved {\n  from = var.a\n  to = env.b\n}\n",
                 "from = var.a", ["from must be a resource address"], id="not-an-address"),
    pytest.param(A + removed("env.a"), "from = env.a",
                 ["removed: env.a is still declared at main.hcl:5"], id="removed-still-declared"),
    pytest.param(CLUSTER + "removed {\n  from = env.a\n}\n", "removed {",
                 ["removed needs lifecycle { destroy = false }"], id="removed-without-lifecycle"),
    pytest.param(CLUSTER + removed('env.a["k"]'), "from = env.a",
                 ["names one instance", "from = env.a)"], id="removed-an-instance"),
    pytest.param(CLUSTER + 'import {\n  to = env.z\n  id = "z"\n}\n', "import {",
                 ['import: env.z is not declared in the configuration; write its env "z"'],
                 id="import-undeclared"),
    pytest.param(A + 'import {\n  to = env.a\n  id = "a"\n}\n' * 2, "import {",
                 ["import: env.a is imported twice (also at main.hcl:9)"], id="import-twice"),
]


@pytest.mark.parametrize(("text", "marker", "words"), ERRORS)
def test_errors_name_file_and_line(tmp_path: Path, rhplan_in: Any, text: str, marker: str,
                                   words: list[str]) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True  # a state made without hosts: nothing to destroy
    rh.write(CLUSTER + env("a") + env("b"))
    rh.state_path.write_text(json.dumps(applied_state(rh.dir).to_json()))
    rh.write(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if marker in t)
    if "twice" in words[0]:
        line = len(text.splitlines()) - 3  # the second block
    for args in (("plan", "-refresh=false"), ("validate",)):
        msg = rh(*args).error_line()
        assert msg.startswith(f"Error: main.hcl:{line}: "), (args, msg)
        for w in words:
            assert w in msg, (w, msg)


def test_moving_onto_a_recorded_address_is_refused(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(CLUSTER + env("a") + env("b"))
    rh.state_path.write_text(json.dumps(applied_state(rh.dir).to_json()))
    rh.write(CLUSTER + env("b") + moved("env.a", "env.b"))
    msg = rh("plan", "-refresh=false").error_line()
    assert msg.startswith("Error: main.hcl:10: cannot move env.a to env.b: the state already "
                          "holds env.b"), msg


def test_a_new_env_cannot_take_a_kept_name(tmp_path: Path, rhplan_in: Any) -> None:
    """After state mv env.a env.b, env.b keeps the folder 'a': a new env "a" would share
    it, and is refused while planning."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(A)
    st = moved_state(applied_state(rh.dir), {"env.a": "env.b"})
    rh.state_path.write_text(json.dumps(st.to_json()))
    rh.write(CLUSTER + env("a") + env("b"))
    msg = rh("plan", "-refresh=false").error_line()
    assert msg.startswith("Error: main.hcl:5: env.a would be named 'a' on its hosts, the name "
                          "env.b already has"), msg


@pytest.mark.long  # its own real local cluster (20-30 s); the plan tests here run by default
def test_rename_and_forget_on_a_real_cluster(rh: Any) -> None:
    """A real apply: env "a" renamed to "b" with a moved block keeps its venv (same inode
    and mtime) and its servlet (same pid); a removed block then forgets it, leaving the
    folder in place."""
    rh.write(CLUSTER + env("a", "  reqs = []\n"))
    rh("apply", "-auto-approve").ok()
    venv = rh.env_dir("c", "a")
    before = os.stat(venv / "bin" / "python", follow_symlinks=False)
    pid = rh.resources()["env.a"]["attributes"]["servlet_pid"]
    rh.write(CLUSTER + env("b", "  reqs = []\n") + moved("env.a", "env.b"))
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 2 and "# env.a has moved to env.b" in res.stdout, res.stdout
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in res.stdout, res.stdout
    out = rh("apply", "-auto-approve").ok().stdout
    assert "0 added, 0 changed, 0 destroyed" in out, out
    recorded = rh.resources()["env.b"]["attributes"]
    assert recorded["name"] == "a" and recorded["servlet_pid"] == pid
    after = os.stat(venv / "bin" / "python", follow_symlinks=False)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "No changes." in rh("plan").ok().stdout  # a refresh finds the servlet alive
    rh.write(CLUSTER + removed("env.b"))
    out = rh("apply", "-auto-approve").ok().stdout
    # the cluster now declares no env, so its bare default env is made beside the forget
    assert "1 added, 0 changed, 0 destroyed" in out, out
    assert set(rh.resources()) == {"cluster.c", "env.c_default"} and venv.is_dir()
    rh("destroy", "-auto-approve").ok()


def test_saved_plan_applies_moves_and_forgets(tmp_path: Path, rhplan_in: Any) -> None:
    """A real apply of a saved plan (secrets need no host): the move and the forget are
    recorded; the secret is not written again."""
    rh = rhplan_in(tmp_path / "infra")
    rh.write('secret "s" {\n  values = { K = "v" }\n}\n\nsecret "f" {\n  values = { K = "w" }\n}\n')
    rh("apply", "-auto-approve").ok()
    rh.write('secret "t" {\n  values = { K = "v" }\n}\n\n' + moved("secret.s", "secret.t")
             + removed("secret.f"))
    rh("plan", "-out", "p.plan").ok()
    shown = rh("show", "p.plan").ok().stdout
    assert "# secret.s has moved to secret.t" in shown, shown
    data = json.loads(rh("show", "-json", "p.plan").ok().stdout)
    actions = {c["address"]: (c["change"]["actions"], c.get("previous_address"))
               for c in data["resource_changes"]}
    assert actions == {"secret.t": (["no-op"], "secret.s"), "secret.f": (["forget"], None)}
    out = rh("apply", "p.plan").ok().stdout
    assert "0 added, 0 changed, 0 destroyed" in out, out
    assert set(rh.resources()) == {"secret.t"}
    assert "No changes." in rh("plan").ok().stdout
    rh("destroy", "-auto-approve").ok()


# ---- moved across module boundaries (issue 14: refactoring into a module) ------------

MODULE_ENV = 'variable "cluster" {}\n\nenv "a" {\n  cluster = var.cluster\n}\n'


def call(meta: str = "") -> str:
    return f'module "m" {{\n  source  = "./modules/m"\n{meta}  cluster = cluster.c\n}}\n\n'


def with_module(directory: Path) -> Path:
    (directory / "modules/m").mkdir(parents=True, exist_ok=True)
    (directory / "modules/m/main.hcl").write_text(MODULE_ENV)
    return directory


MODULE_CASES = [
    pytest.param(A, CLUSTER + call() + moved("env.a", "module.m.env.a"),
                 {"cluster.c": ("no-op", None), "module.m.env.a": ("no-op", "env.a")},
                 id="into-a-module"),
    pytest.param(A, CLUSTER + call('  for_each = toset(["k"])\n')
                 + moved("env.a", 'module.m["k"].env.a'),
                 {"cluster.c": ("no-op", None), 'module.m["k"].env.a': ("no-op", "env.a")},
                 id="into-a-module-instance"),
    pytest.param(CLUSTER + call(), CLUSTER + call('  for_each = toset(["k"])\n')
                 + moved("module.m", 'module.m["k"]'),
                 {"cluster.c": ("no-op", None),
                  'module.m["k"].env.a': ("no-op", "module.m.env.a")},
                 id="whole-module-gets-for-each"),
    pytest.param(CLUSTER + call(), CLUSTER + call("  count   = 1\n"),
                 {"cluster.c": ("no-op", None),
                  "module.m[0].env.a": ("no-op", "module.m.env.a")},
                 id="count-added-to-a-module-moves-it-to-index-0"),
    pytest.param(CLUSTER + call("  count   = 1\n"), CLUSTER + call(),
                 {"cluster.c": ("no-op", None),
                  "module.m.env.a": ("no-op", "module.m[0].env.a")},
                 id="count-removed-moves-index-0-back"),
    pytest.param(CLUSTER + call(), CLUSTER + env("a") + moved("module.m.env.a", "env.a"),
                 {"cluster.c": ("no-op", None), "env.a": ("no-op", "module.m.env.a")},
                 id="out-of-a-module"),
]


@pytest.mark.parametrize(("before", "now", "expected"), MODULE_CASES)
def test_moved_across_modules(tmp_path: Path, before: str, now: str,
                              expected: dict[str, Any]) -> None:
    """The env keeps its recorded on-host name, so the move plans nothing to rebuild."""
    with_module(tmp_path)
    state = state_of(tmp_path, before)
    plan = plan_of(tmp_path, now, state)
    got = {c.address: (c.action, c.previous_address) for c in plan.changes}
    assert got == expected
    moved_env = next(c for c in plan.changes if c.address.endswith("env.a"))
    assert moved_env.after["name"] == next(iter(
        r.attributes["name"] for a, r in state.resources.items() if a.endswith("env.a")))


def test_moving_into_a_module_onto_a_recorded_address_is_refused(tmp_path: Path,
                                                                 rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    with_module(rh.dir)
    rh.write(CLUSTER + env("a") + call())
    rh.state_path.write_text(json.dumps(applied_state(rh.dir).to_json()))
    text = CLUSTER + call() + moved("env.a", "module.m.env.a")
    rh.write(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "from = env.a" in t)
    msg = rh("plan", "-refresh=false").error_line()
    assert msg.startswith(f"Error: main.hcl:{line}: cannot move env.a to module.m.env.a: the "
                          "state already holds module.m.env.a"), msg
