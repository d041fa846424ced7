"""Modules (issue 14 item 2): module "m" { source = "./modules/x" ... }.

Plan cases are data: (files written in a tmp dir, plan options) -> the action planned
for each address, and what a few attributes become. Errors run through the CLI: one
line, file:line. One test applies for real (local cluster, real Ray, real venv).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from drivers import run_driver
from plan_case import applied_state, case_context

from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.errors import ConfigError
from rhplan.names import parse_address
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.state.model import State

ROOT = """
cluster "c" {
  provider = "local"
  create_default_env = false
}

module "pool" {
  source  = "./modules/pool"
  cluster = cluster.c
  size    = 2
}

env "x" {
  cluster  = cluster.c
  reqs     = []
  env_vars = { FIRST = module.pool.first }
}

output "pool_names" { value = module.pool.names }
"""

POOL = """
variable "cluster" {}
variable "size" {
  type    = number
  default = 1
  validation {
    condition     = var.size < 5
    error_message = "At most 4 envs in a pool."
  }
}
variable "label" { default = "gpu" }

locals { tag = "${var.label}-${var.size}" }

env "x" {
  count    = var.size
  cluster  = var.cluster
  reqs     = []
  env_vars = { TAG = local.tag, I = "${count.index}", HERE = path.module }
}

module "inner" {
  source  = "../inner"
  cluster = var.cluster
}

output "first" { value = env.x[0].name }
output "names" { value = concat(env.x[*].name, [module.inner.name]) }
"""

INNER = """
variable "cluster" {}

env "x" {
  cluster = var.cluster
  reqs    = []
}

output "name" { value = env.x.name }
"""

FILES = {"main.hcl": ROOT, "modules/pool/main.hcl": POOL, "modules/inner/main.hcl": INNER}
ALL = ["cluster.c", "env.x", "module.pool.env.x[0]", "module.pool.env.x[1]",
       "module.pool.module.inner.env.x"]


def write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text.lstrip("\n"))


def plan_of(directory: Path, files: dict[str, str], state: State | None = None,
            **opts: Any) -> Any:
    write(directory, files)
    cfg = load_config(directory)
    planner = Planner(cfg, case_context(directory), resolve_variables(cfg))
    return planner.plan(state or State.new(), PlanOptions(**opts))


def with_(**changes: str) -> dict[str, str]:
    """FILES with some text replaced: with_(main="size    = 2=>size    = 3")."""
    out = dict(FILES)
    for key, edit in changes.items():
        name = {"main": "main.hcl", "pool": "modules/pool/main.hcl",
                "inner": "modules/inner/main.hcl"}[key]
        old, new = edit.split("=>")
        assert old in out[name], old
        out[name] = out[name].replace(old, new)
    return out


PLAN_CASES = [
    pytest.param(None, FILES, {}, dict.fromkeys(ALL, "create"), id="nested-module-creates"),
    pytest.param(FILES, FILES, {}, dict.fromkeys(ALL, "no-op"), id="applied-no-changes"),
    pytest.param(FILES, with_(main="size    = 2=>size    = 3"), {},
                 {**dict.fromkeys(ALL, "no-op"), "module.pool.env.x[2]": "create",
                  "module.pool.env.x[0]": "update", "module.pool.env.x[1]": "update"},
                 id="module-variable-changes-its-resources"),
    pytest.param(FILES, with_(main="size    = 2=>size    = 3"),
                 {"targets": ["module.pool.module.inner"]},
                 {"cluster.c": "no-op", "module.pool.module.inner.env.x": "no-op"},
                 id="target-nested-module"),
    pytest.param(None, FILES, {"targets": ["module.pool"]},
                 {"cluster.c": "create", "module.pool.env.x[0]": "create",
                  "module.pool.env.x[1]": "create",
                  "module.pool.module.inner.env.x": "create"}, id="target-module-all-inside"),
    pytest.param(FILES, with_(main="  size    = 2\n=>"), {},
                 {**dict.fromkeys(ALL, "no-op"), "module.pool.env.x[0]": "update",
                  "module.pool.env.x[1]": "delete"}, id="module-variable-default"),
    pytest.param(FILES, with_(inner="reqs    = []=>reqs    = []\n  env_vars = { A = \"1\" }"),
                 {}, {**dict.fromkeys(ALL, "no-op"),
                      "module.pool.module.inner.env.x": "update"}, id="edit-a-module-file"),
]


@pytest.mark.parametrize(("before", "now", "opts", "want"), PLAN_CASES)
def test_plan(tmp_path: Path, before: dict[str, str] | None, now: dict[str, str],
              opts: dict[str, Any], want: dict[str, str]) -> None:
    state = None
    if before is not None:  # the same folder: paths on the local cluster stay the same
        write(tmp_path, before)
        state = applied_state(tmp_path)
    plan = plan_of(tmp_path, now, state, **opts)
    got = {c.address: c.action for c in plan.changes}
    assert got == want


def test_references_inside_a_module_are_its_own(tmp_path: Path) -> None:
    """The root's env.x and the module's env.x are apart: addresses, on-host names,
    variables, locals, path.module, outputs read by the caller."""
    plan = plan_of(tmp_path, FILES)
    after = {c.address: c.after for c in plan.changes}
    names = {a: after[a]["name"] for a in ALL[1:]}
    assert names["env.x"] == "x" and len(set(names.values())) == 4, names
    m0 = after["module.pool.env.x[0]"]
    assert m0["env_vars"] == {"TAG": "gpu-2", "I": "0",
                              "HERE": str((tmp_path / "modules/pool").resolve())}
    assert after["env.x"]["env_vars"] == {"FIRST": m0["name"]}
    assert plan.output_changes["pool_names"]["after"] == [
        names["module.pool.env.x[0]"], names["module.pool.env.x[1]"],
        names["module.pool.module.inner.env.x"]]
    # the module's resources come after what its variables read
    assert "cluster.c" in next(c for c in plan.changes
                               if c.address == "module.pool.module.inner.env.x").dependencies


def test_a_module_declares_its_own_cluster_and_envs(tmp_path: Path) -> None:
    """An env inside a module names the module's own cluster (cluster.c there is
    module.m.cluster.c): the cluster reference checks the address past the module path."""
    plan = plan_of(tmp_path, {
        "main.hcl": 'module "m" {\n  source = "./modules/pool"\n}\n',
        "modules/pool/main.hcl": 'cluster "c" {\n  provider = "local"\n}\n'
                                 'env "e" {\n  cluster = cluster.c\n  reqs    = []\n}\n'})
    after = {c.address: c.after for c in plan.changes}
    assert after["module.m.env.e"]["cluster"] == "module.m.cluster.c"
    assert "module.m.cluster.c" in next(c for c in plan.changes
                                        if c.address == "module.m.env.e").dependencies


def test_a_null_argument_for_a_non_nullable_variable_takes_its_default(tmp_path: Path) -> None:
    pool = POOL.replace('variable "label" { default = "gpu" }',
                        'variable "label" {\n  default  = "gpu"\n  nullable = false\n}')
    files = {**FILES, "modules/pool/main.hcl": pool,
             "main.hcl": ROOT.replace("size    = 2", "size    = 2\n  label   = null")}
    plan = plan_of(tmp_path, files)
    after = {c.address: c.after for c in plan.changes}
    assert after["module.pool.env.x[1]"]["env_vars"]["TAG"] == "gpu-2"


def test_replace_triggered_by_inside_a_module(tmp_path: Path) -> None:
    inner = INNER.replace("  reqs    = []\n", "  reqs    = []\n}\n\nenv \"y\" {\n"
                          "  cluster = var.cluster\n  reqs    = []\n"
                          "  lifecycle {\n    replace_triggered_by = [env.x]\n  }\n")
    before = {**FILES, "modules/inner/main.hcl": inner}
    write(tmp_path, before)
    state = applied_state(tmp_path)
    now = {**before, "modules/inner/main.hcl": inner.replace(
        "env \"x\" {\n  cluster = var.cluster\n  reqs    = []\n",
        "env \"x\" {\n  cluster = var.cluster\n  reqs    = []\n  env_vars = { A = \"1\" }\n")}
    plan = plan_of(tmp_path, now, state)
    got = {c.address: c.action for c in plan.changes if c.action != "no-op"}
    assert got == {"module.pool.module.inner.env.x": "update",
                   "module.pool.module.inner.env.y": "replace"}


def test_plan_json_gives_the_module_address(tmp_path: Path) -> None:
    from rhplan.plan.tfjson import resource_change

    plan = plan_of(tmp_path, FILES)
    got = {c.address: resource_change(c, plan, set()).get("module_address")
           for c in plan.changes}
    assert got == {"cluster.c": None, "env.x": None, "module.pool.env.x[0]": "module.pool",
                   "module.pool.env.x[1]": "module.pool",
                   "module.pool.module.inner.env.x": "module.pool.module.inner"}


def test_a_sensitive_module_variable_stays_sensitive(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    inner = INNER.replace('variable "cluster" {}', 'variable "cluster" {}\n'
                          'variable "token" {\n  sensitive = true\n  default   = "hunter2"\n}')
    inner = inner.replace("  reqs    = []\n", "  reqs    = []\n  env_vars = { T = var.token }\n")
    write(rh.dir, {**FILES, "modules/inner/main.hcl": inner})
    shown = rh("plan", "-refresh=false", "-no-color").ok().stdout
    assert '"T" = (sensitive value)' in shown and "hunter2" not in shown, shown
    (rh.dir / "main.hcl").write_text(ROOT + 'output "t" { value = module.pool.token }\n')
    pool = POOL + 'output "token" { value = module.inner.token }\n'
    write(rh.dir, {"modules/pool/main.hcl": pool, "modules/inner/main.hcl": inner +
                   'output "token" {\n  value     = var.token\n  sensitive = true\n}\n'})
    msg = rh("plan", "-refresh=false").error_line()
    assert "output 't' refers to sensitive values" in msg and "add sensitive = true" in msg, msg


def test_state_keeps_module_addresses(tmp_path: Path) -> None:
    write(tmp_path, FILES)
    state = applied_state(tmp_path)
    again = State.from_json(json.loads(json.dumps(state.to_json())), "test")
    assert sorted(again.resources) == ALL
    assert parse_address("module.pool.env.x[1]") == ("module.pool.env", "x", 1)


def test_state_commands_take_module_addresses(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True  # a state made without hosts: nothing to destroy
    write(rh.dir, FILES)
    rh.state_path.write_text(json.dumps(applied_state(rh.dir).to_json()))
    assert rh("state", "list").ok().stdout.split() == ALL
    assert rh("state", "list", "module.pool.module.inner").ok().stdout.split() == ALL[-1:]
    shown = rh("state", "show", "module.pool.env.x[1]").ok().stdout
    assert shown.startswith('# module.pool.env.x[1]:\nenv "x" {'), shown
    out = rh("state", "mv", "module.pool.module.inner.env.x", "env.moved").ok().stdout
    assert 'Move "module.pool.module.inner.env.x" to "env.moved"' in out
    out = rh("state", "rm", "module.pool").ok().stdout
    assert "Successfully removed 2 resource instance(s)." in out
    assert rh("state", "list").ok().stdout.split() == ["cluster.c", "env.moved", "env.x"]


# (files besides FILES, the file and text the error's line holds, words it must say)
ERRORS = [
    pytest.param({"main.hcl": 'module "m" {\n  source = "./modules/nope"\n}\n'},
                 "main.hcl", "source", ["source folder './modules/nope' does not exist"],
                 id="missing-source-dir"),
    pytest.param({"main.hcl": 'module "m" {\n  source = "git::https://example.com/m.git"\n}\n'},
                 "main.hcl", "source", ["is not a local path", "local folders only"],
                 id="git-source"),
    pytest.param({"main.hcl": ROOT.replace("  cluster = cluster.c\n  size", "  size")},
                 "main.hcl", 'module "pool"', ["needs a value for variable 'cluster'",
                                               "modules/pool/main.hcl:1"],
                 id="missing-required-variable"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", "size    = 2\n  sise = 3")},
                 "main.hcl", "sise", ["module 'pool' has no variable 'sise'"],
                 id="unknown-argument"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", "size    = 9")},
                 "modules/pool/main.hcl", "condition", ["At most 4 envs in a pool."],
                 id="module-variable-validation"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", 'size    = "two"')},
                 "main.hcl", "size", ["a number is required"], id="module-variable-type"),
    pytest.param({"modules/inner/main.hcl": INNER + 'module "again" {\n  source = "../pool"\n'
                  '  cluster = var.cluster\n}\n'},
                 "modules/inner/main.hcl", 'module "again"',
                 ["a module cannot include itself", "modules/pool -> modules/inner -> "
                  "modules/pool"], id="module-cycle"),
    pytest.param({"modules/inner/main.hcl": INNER.replace("env.x.name", "env.y.name")},
                 "modules/inner/main.hcl", "output", ["refers to env.y", "does not declare"],
                 id="output-refers-to-nothing"),
    pytest.param({"modules/inner/main.hcl": INNER.replace("var.cluster", "cluster.c")},
                 "modules/inner/main.hcl", "cluster.c", ["env.x refers to cluster.c",
                                                         "this module does not declare"],
                 id="module-resource-refers-to-the-callers"),
    pytest.param({"modules/inner/main.hcl": INNER + 'import {\n  to = env.x\n'
                  '  id = "x"\n}\n'}, "modules/inner/main.hcl", "import {",
                 ["import block may only be in the root configuration",
                  "module.inner.TYPE.NAME"], id="import-inside-a-module-refused"),
    pytest.param({"main.hcl": ROOT.replace("module.pool.first", "module.pool.frist")},
                 "main.hcl", "frist", ["module.pool has no output 'frist'"],
                 id="unknown-module-output"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", "size    = 2\n  count   = 2")},
                 "main.hcl", "module.pool.first", ["module.pool sets count, so it is a list",
                                                   "module.pool[0].first"],
                 id="repeated-module-read-without-index"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", "size    = 2\n  count   = 2\n"
                                           '  for_each = toset(["a"])')},
                 "main.hcl", "for_each", ['sets both "count" and "for_each"'],
                 id="module-count-and-for-each"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", 'size    = 2\n  for_each = ["a"]')},
                 "main.hcl", "for_each", ["for_each must be a map or a set of strings",
                                          "toset([...])"], id="module-for-each-list"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", "size    = 2\n  for_each = "
                                           "{ for t in [\"a\", \"a\"] : t => t }")},
                 "main.hcl", "for_each", ["two elements produce the key 'a'"],
                 id="module-for-each-duplicate-keys"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", "size    = 2\n  for_each = "
                                           "toset([cluster.c.name])")},
                 "main.hcl", "for_each", ["reads cluster.c", "known only after apply",
                                          "variables, locals and literals"],
                 id="module-for-each-from-a-resource"),
    pytest.param({"main.hcl": ROOT.replace("size    = 2", "size    = each.value")},
                 "main.hcl", "each.value", ['"each" is used in module \'pool\'',
                                            "add for_each"], id="each-without-for-each"),
    pytest.param({"modules/pool/main.hcl": POOL.replace(
        'source  = "../inner"', 'source  = "../inner"\n  count   = 1')},
                 "modules/pool/main.hcl", "count   = 1", ["inside a module is not supported yet"],
                 id="repeated-call-inside-a-module-refused"),
]


@pytest.mark.parametrize(("files", "where", "marker", "words"), ERRORS)
def test_errors_name_file_and_line(tmp_path: Path, rhplan_in: Any, files: dict[str, str],
                                   where: str, marker: str, words: list[str]) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    every = {**FILES, **files}
    write(rh.dir, every)
    text = every[where].lstrip("\n")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if marker in t)
    for args in (("validate",), ("plan", "-refresh=false")):
        msg = rh(*args).error_line()
        assert msg.startswith(f"Error: {where}:{line}: "), (args, msg)
        for w in words:
            assert w in msg, (args, w, msg)
    assert not rh.resources()


# ---- one real apply: envs inside a module call and a for_each instance of one, reached by
# their addresses, destroyed

REAL_ROOT = """
cluster "c" {
  provider = "local"
  create_default_env = false
}

module "team" {
  source  = "./modules/team"
  cluster = cluster.c
  team    = "nlp"
}

module "each" {
  for_each = toset(["cv"])
  source   = "./modules/team"
  cluster  = cluster.c
  team     = each.key
}

env "w" {
  cluster  = cluster.c
  reqs     = []
  env_vars = { WHICH = "root" }
}

output "team_env" { value = module.team.env_name }
"""

REAL_TEAM = """
variable "cluster" {}
variable "team" { type = string }

env "w" {
  cluster  = var.cluster
  reqs     = []
  env_vars = { WHICH = var.team }
}

output "env_name" { value = env.w.name }
"""

DRIVER = """
import json, os, sys
import rhplan

def which():
    return os.environ["WHICH"]

print("RESULT " + json.dumps([rhplan.servlet("module.team.env.w", chdir=sys.argv[1]).call(which),
                              rhplan.servlet("w", chdir=sys.argv[1]).call(which),
                              rhplan.servlet('module.each["cv"].env.w',
                                             chdir=sys.argv[1]).call(which)]))
"""


@pytest.mark.long  # its own real local cluster (20-30 s); the plan tests here run by default
def test_apply_an_env_inside_a_module(tmp_path: Path, rh: Any) -> None:
    write(rh.dir, {"main.hcl": REAL_ROOT, "modules/team/main.hcl": REAL_TEAM})
    out = rh("apply", "-auto-approve").ok().stdout
    assert set(rh.resources()) == {"cluster.c", "env.w", "module.team.env.w",
                                   'module.each["cv"].env.w'}
    name = rh.resources()["module.team.env.w"]["attributes"]["name"]
    each = rh.resources()['module.each["cv"].env.w']["attributes"]["name"]
    assert name != "w" and f'team_env = "{name}"' in out, out
    assert rh.env_dir("c", name).is_dir() and rh.env_dir("c", "w").is_dir()
    assert each not in (name, "w") and rh.env_dir("c", each).is_dir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    assert run_driver(driver, rh.dir, timeout=180) == ["nlp", "root", "cv"]
    assert "No changes." in rh("plan").ok().stdout
    rh("destroy", "-auto-approve").ok()
    assert rh.resources() == {} and not rh.env_dir("c", name).exists()
    assert not rh.env_dir("c", each).exists()


# ---- count / for_each on a module call (issue 14 item 2) -----------------------------

REPEATED = """
variable "teams" {
  default = { nlp = 1, cv = 2 }
}

cluster "c" {
  provider = "local"
  create_default_env = false
}

module "team" {
  for_each = var.teams
  source   = "./modules/team"
  cluster  = cluster.c
  team     = each.key
  size     = each.value
}

module "spare" {
  count   = 2
  source  = "./modules/team"
  cluster = cluster.c
  team    = "spare-${count.index}"
}

env "x" {
  cluster  = cluster.c
  reqs     = []
  env_vars = { NLP = module.team["nlp"].first, SPARE = module.spare[1].first,
               ALL = join(",", [for k, t in module.team : t.first]) }
}

output "firsts" { value = { for k, t in module.team : k => t.first } }
"""

TEAM = """
variable "cluster" {}
variable "team" { type = string }
variable "size" { default = 1 }

env "w" {
  count    = var.size
  cluster  = var.cluster
  reqs     = []
  env_vars = { TEAM = var.team }
}

output "first" { value = env.w[0].name }
"""

REPEATED_FILES = {"main.hcl": REPEATED, "modules/team/main.hcl": TEAM}
REPEATED_ALL = ["cluster.c", "env.x", 'module.spare[0].env.w[0]', 'module.spare[1].env.w[0]',
                'module.team["cv"].env.w[0]', 'module.team["cv"].env.w[1]',
                'module.team["nlp"].env.w[0]']


def test_module_for_each_and_count_make_instances(tmp_path: Path) -> None:
    """Each instance is the module flattened under module.m["k"] / module.m[i], with
    each.* / count.index bound in its arguments; the caller reads module.m["k"].OUT and
    module.m as a map; every instance has its own on-host names."""
    plan = plan_of(tmp_path, REPEATED_FILES)
    after = {c.address: c.after for c in plan.changes}
    assert sorted(after) == REPEATED_ALL
    assert after['module.team["cv"].env.w[1]']["env_vars"] == {"TEAM": "cv"}
    assert after["module.spare[1].env.w[0]"]["env_vars"] == {"TEAM": "spare-1"}
    names = [after[a]["name"] for a in REPEATED_ALL[1:]]
    assert len(set(names)) == len(names), names
    nlp = after['module.team["nlp"].env.w[0]']["name"]
    cv = after['module.team["cv"].env.w[0]']["name"]
    assert after["env.x"]["env_vars"] == {
        "NLP": nlp, "SPARE": after["module.spare[1].env.w[0]"]["name"], "ALL": f"{cv},{nlp}"}
    assert plan.output_changes["firsts"]["after"] == {"cv": cv, "nlp": nlp}
    assert 'module.team["nlp"].env.w[0]' in next(
        c for c in plan.changes if c.address == "env.x").dependencies


REPEATED_CASES = [
    pytest.param(REPEATED_FILES, {**REPEATED_FILES, "main.hcl": REPEATED.replace(
        "nlp = 1, cv = 2", "nlp = 2, cv = 2")}, {},
        {'module.team["nlp"].env.w[1]': "create"}, id="one-key-changes-only-its-instance"),
    pytest.param(REPEATED_FILES, {**REPEATED_FILES, "main.hcl": REPEATED.replace(
        "nlp = 1, cv = 2", "nlp = 1")}, {},
        {'module.team["cv"].env.w[0]': "delete", 'module.team["cv"].env.w[1]': "delete",
         "env.x": "update"}, id="a-key-removed"),
    pytest.param(REPEATED_FILES, {**REPEATED_FILES, "main.hcl": REPEATED.replace(
        "nlp = 1, cv = 2", "nlp = 2, cv = 3")}, {"targets": ['module.team["cv"]']},
        {'module.team["cv"].env.w[2]': "create"}, id="target-one-module-instance"),
    pytest.param(REPEATED_FILES, {**REPEATED_FILES, "main.hcl": REPEATED.replace(
        '"spare-${count.index}"', '"extra-${count.index}"')},
        {"targets": ["module.spare[1].env.w[0]"]},
        {"module.spare[1].env.w[0]": "update"}, id="target-a-resource-in-an-instance"),
]


@pytest.mark.parametrize(("before", "now", "opts", "want"), REPEATED_CASES)
def test_repeated_module_plans(tmp_path: Path, before: dict[str, str] | None,
                               now: dict[str, str], opts: dict[str, Any],
                               want: dict[str, str]) -> None:
    state = None
    if before is not None:
        write(tmp_path, before)
        state = applied_state(tmp_path)
    plan = plan_of(tmp_path, now, state, **opts)
    got = {c.address: c.action for c in plan.changes if c.action != "no-op"}
    if before is None:
        got = {c.address: c.action for c in plan.changes}
    assert got == want


def test_repeated_module_addresses_in_state_commands(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True  # a state made without hosts: nothing to destroy
    write(rh.dir, REPEATED_FILES)
    rh.state_path.write_text(json.dumps(applied_state(rh.dir).to_json()))
    assert rh("state", "list").ok().stdout.split() == REPEATED_ALL
    assert rh("state", "list", 'module.team["cv"]').ok().stdout.split() == REPEATED_ALL[4:6]
    shown = rh("state", "show", 'module.team["nlp"].env.w[0]').ok().stdout
    assert shown.startswith('# module.team["nlp"].env.w[0]:\nenv "w" {'), shown
    out = rh("state", "rm", "module.spare[0]").ok().stdout
    assert "Successfully removed 1 resource instance(s)." in out
    assert parse_address('module.team["a.]b"].env.w[1]') == ('module.team["a.]b"].env', "w", 1)
    # a shell's quoting habit: ['key'] means ["key"], for the module's key too
    shown = rh("state", "show", "module.team['nlp'].env.w[0]").ok().stdout
    assert shown.startswith('# module.team["nlp"].env.w[0]:'), shown


def test_unknown_module_for_each_passes_validate_and_stops_plan(tmp_path: Path,
                                                                  rhplan_in: Any) -> None:
    """validate needs no variable values (Terraform's rule): the instances are unknown
    there; plan without the value refuses with the call's file:line."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    write(rh.dir, {**REPEATED_FILES, "main.hcl": REPEATED.replace(
        "  default = { nlp = 1, cv = 2 }\n", "")})
    assert "Success!" in rh("validate").ok().stdout
    msg = rh("plan", "-refresh=false").error_line()
    assert msg.startswith("Error: "), msg
    assert "teams" in msg, msg


def test_show_json_configuration_has_module_calls(tmp_path: Path) -> None:
    """configuration.root_module.module_calls: each call once (not once per instance),
    with its source, arguments and count / for_each as written, nested calls inside."""
    from rhplan.config.tfjson import configuration_json
    from rhplan.plan.tfjson import resource_change

    write(tmp_path, REPEATED_FILES)
    cfg = load_config(tmp_path)
    planner = Planner(cfg, case_context(tmp_path), resolve_variables(cfg))
    plan = planner.plan(State.new(), PlanOptions())
    calls = configuration_json(cfg)["root_module"]["module_calls"]
    team = calls["team"]
    assert team["source"] == "./modules/team"
    assert team["for_each_expression"] == {"references": ["var.teams"]}
    assert team["expressions"]["team"] == {"references": ["each.key"]}
    assert [r["address"] for r in team["module"]["resources"]] == ["env.w"]
    assert calls["spare"]["count_expression"] == {"constant_value": 2}
    change = next(c for c in plan.changes if c.address == 'module.team["cv"].env.w[1]')
    got = resource_change(change, plan, set())
    assert (got["module_address"], got["name"], got["index"]) == ('module.team["cv"]', "w", 1)
    # a plain call, with a nested one
    write(tmp_path / "plain", FILES)
    calls = configuration_json(load_config(tmp_path / "plain"))["root_module"]["module_calls"]
    assert calls["pool"]["source"] == "./modules/pool"
    assert calls["pool"]["expressions"]["size"] == {"constant_value": 2}
    assert calls["pool"]["module"]["module_calls"]["inner"]["source"] == "../inner"


def test_moved_and_removed_blocks_inside_a_module(tmp_path: Path) -> None:
    """A module's own moved / removed blocks, written with its addresses, act on each
    call's (and each instance's) resources."""
    team = TEAM.replace('env "w" {', 'env "main" {').replace("env.w[0]", "env.main[0]")
    write(tmp_path, REPEATED_FILES)
    state = applied_state(tmp_path)
    now = {**REPEATED_FILES, "modules/team/main.hcl": team + 'moved {\n  from = env.w\n'
           '  to   = env.main\n}\n'}
    plan = plan_of(tmp_path, now, state)
    got = {c.address: (c.action, c.previous_address) for c in plan.changes
           if c.previous_address}
    assert got == {a.replace(".w[", ".main["): ("no-op", a) for a in REPEATED_ALL[2:]}
    now = {**REPEATED_FILES, "modules/team/main.hcl": TEAM.replace(
        "output \"first\" { value = env.w[0].name }", 'output "first" { value = "none" }')
        .replace('env "w"', 'removed {\n  from = env.w\n  lifecycle {\n    destroy = false\n'
                 '  }\n}\n\nenv "unused"').replace("count    = var.size\n", "")}
    plan = plan_of(tmp_path, now, state)
    forgot = sorted(c.address for c in plan.changes if c.action == "forget")
    assert forgot == REPEATED_ALL[2:]


def test_odd_keys_and_no_instances(tmp_path: Path) -> None:
    """A key with a space, slash and quote is an address in JSON's string syntax and a
    valid on-host name; for_each = {} and count = 0 make no instances, and the caller's
    module.m is an empty map / list."""
    main = REPEATED.replace('default = { nlp = 1, cv = 2 }', 'default = { "a b/c\\"q" = 1 }')
    main = main.replace('NLP = module.team["nlp"].first, ', "")
    plan = plan_of(tmp_path, {**REPEATED_FILES, "main.hcl": main})
    change = next(c for c in plan.changes if c.address.startswith("module.team"))
    assert change.address == 'module.team["a b/c\\"q"].env.w[0]'
    assert parse_address(change.address) == ('module.team["a b/c\\"q"].env', "w", 0)
    assert change.after["name"].startswith("w-team-a-b-c-q-"), change.after["name"]
    empty = REPEATED.replace('default = { nlp = 1, cv = 2 }', "default = {}").replace(
        'NLP = module.team["nlp"].first, SPARE = module.spare[1].first,',
        "N = length(module.spare),").replace("count   = 2", "count   = 0")
    plan = plan_of(tmp_path, {**REPEATED_FILES, "main.hcl": empty})
    assert sorted(c.address for c in plan.changes) == ["cluster.c", "env.x"]
    assert plan.change("env.x").after["env_vars"] == {"N": "0", "ALL": ""}
    assert plan.output_changes["firsts"]["after"] == {}


def test_depends_on_a_module_call_or_instance(tmp_path: Path) -> None:
    """depends_on = [module.m] waits for everything inside the call (every instance of a
    repeated one); module.m["k"] for one instance; an undeclared module is an error."""
    main = REPEATED.replace('  reqs     = []\n  env_vars = { NLP',
                            '  reqs     = []\n  depends_on = [module.spare, module.team["cv"]]\n'
                            '  env_vars = { NLP')
    plan = plan_of(tmp_path, {**REPEATED_FILES, "main.hcl": main})
    deps = set(plan.change("env.x").dependencies)
    assert {"module.spare[0].env.w[0]", "module.spare[1].env.w[0]",
            'module.team["cv"].env.w[0]', 'module.team["cv"].env.w[1]'} <= deps, deps
    plain = ROOT.replace("  reqs     = []\n  env_vars = { FIRST",
                         "  reqs     = []\n  depends_on = [module.pool]\n  env_vars = { FIRST")
    plan = plan_of(tmp_path, {**FILES, "main.hcl": plain})
    assert "module.pool.module.inner.env.x" in plan.change("env.x").dependencies
    with pytest.raises(ConfigError, match="depends_on names module.nope, which is not declared"):
        plan_of(tmp_path, {**FILES, "main.hcl": plain.replace("[module.pool]", "[module.nope]")})
