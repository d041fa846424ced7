"""count, for_each and dynamic blocks (issue 14 item 1).

Plan cases are data: (configuration applied before, configuration now, plan options)
-> the action planned for each instance address. The state "applied before" is made
without any host (test_plan_cases.applied_state). Errors run through the CLI: one line,
file:line. One test applies for real (local cluster, real Ray, real venvs).
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
from rhplan.config.values import UNKNOWN
from rhplan.errors import ConfigError
from rhplan.names import instance_name, parse_address
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.state.model import State
from rhplan.views.plan import render_plan

CLUSTER = 'cluster "c" {\n  provider = "local"\n  create_default_env = false\n}\n\n'


def envs(header: str, body: str = "") -> str:
    return CLUSTER + f'env "x" {{\n{header}\n  cluster = cluster.c\n{body}}}\n'


SET_AB = envs('  for_each = toset(["a", "b"])', "  env_vars = { KEY = each.key }\n")
SET_AC = envs('  for_each = toset(["a", "c"])', "  env_vars = { KEY = each.key }\n")
MAP = envs('  for_each = { a = "1", b = "2" }', "  env_vars = { V = each.value }\n")
MAP_B3 = envs('  for_each = { a = "1", b = "3" }', "  env_vars = { V = each.value }\n")
COUNT3 = envs("  count = 3", '  env_vars = { I = "${count.index}" }\n')
COUNT2 = envs("  count = 2", '  env_vars = { I = "${count.index}" }\n')
PLAIN = envs("")
COUNT1 = envs("  count = 1")


def plan_of(directory: Path, text: str, state: State | None = None, **opts: Any) -> Any:
    (directory / "main.hcl").write_text(text)
    cfg = load_config(directory)
    planner = Planner(cfg, case_context(directory), resolve_variables(cfg))
    return planner.plan(state or State.new(), PlanOptions(**opts))


def state_of(directory: Path, text: str) -> State:
    (directory / "main.hcl").write_text(text)
    return applied_state(directory)


PLAN_CASES = [
    pytest.param(None, SET_AB, {}, {"cluster.c": "create", 'env.x["a"]': "create",
                                    'env.x["b"]': "create"}, id="for-each-set-creates"),
    pytest.param(None, COUNT2, {}, {"cluster.c": "create", "env.x[0]": "create",
                                    "env.x[1]": "create"}, id="count-creates"),
    pytest.param(SET_AB, SET_AB, {}, {"cluster.c": "no-op", 'env.x["a"]': "no-op",
                                      'env.x["b"]': "no-op"}, id="for-each-no-change"),
    pytest.param(SET_AB, SET_AC, {}, {"cluster.c": "no-op", 'env.x["a"]': "no-op",
                                      'env.x["b"]': "delete", 'env.x["c"]': "create"},
                 id="for-each-one-key-changed"),
    pytest.param(MAP, MAP_B3, {}, {"cluster.c": "no-op", 'env.x["a"]': "no-op",
                                   'env.x["b"]': "update"}, id="for-each-one-value-changed"),
    pytest.param(COUNT3, COUNT2, {}, {"cluster.c": "no-op", "env.x[0]": "no-op",
                                      "env.x[1]": "no-op", "env.x[2]": "delete"},
                 id="count-decrease-removes-the-highest"),
    pytest.param(COUNT2, COUNT3, {}, {"cluster.c": "no-op", "env.x[0]": "no-op",
                                      "env.x[1]": "no-op", "env.x[2]": "create"},
                 id="count-increase-adds-one"),
    pytest.param(SET_AB, SET_AC, {"targets": ['env.x["c"]']},
                 {"cluster.c": "no-op", 'env.x["c"]': "create"}, id="target-one-instance"),
    pytest.param(SET_AB, SET_AB, {"targets": ["env.x['b']"]},
                 {"cluster.c": "no-op", 'env.x["b"]': "no-op"}, id="target-single-quotes"),
    pytest.param(SET_AB, SET_AC, {"targets": ["env.x"]},
                 {"cluster.c": "no-op", 'env.x["a"]': "no-op", 'env.x["b"]': "delete",
                  'env.x["c"]': "create"}, id="target-the-whole-block"),
    pytest.param(SET_AB, SET_AB, {"replace": ['env.x["b"]']},
                 {"cluster.c": "no-op", 'env.x["a"]': "no-op", 'env.x["b"]': "replace"},
                 id="replace-one-instance"),
    pytest.param(SET_AB, SET_AB, {"destroy": True, "targets": ['env.x["a"]']},
                 {'env.x["a"]': "delete"}, id="destroy-one-instance"),
    pytest.param(COUNT2, envs("  count = 0"), {}, {"cluster.c": "no-op", "env.x[0]": "delete",
                                                   "env.x[1]": "delete"}, id="count-zero"),
    # Terraform's implicit moves: env.x becomes env.x[0] (and back), nothing rebuilt
    pytest.param(PLAIN, COUNT1, {}, {"cluster.c": "no-op", "env.x[0]": "no-op"},
                 id="no-count-to-count-1"),
    pytest.param(PLAIN, envs("  count = 2"), {}, {"cluster.c": "no-op", "env.x[0]": "no-op",
                                                 "env.x[1]": "create"},
                 id="no-count-to-count-2"),
    pytest.param(envs("  count = 2"), PLAIN, {}, {"cluster.c": "no-op", "env.x": "no-op",
                                     "env.x[1]": "delete"}, id="count-2-to-no-count"),
]


@pytest.mark.parametrize(("before", "now", "opts", "expected"), PLAN_CASES)
def test_plan(tmp_path: Path, before: str | None, now: str, opts: dict[str, Any],
              expected: dict[str, str]) -> None:
    state = state_of(tmp_path, before) if before else None
    plan = plan_of(tmp_path, now, state, **opts)
    assert {c.address: c.action for c in plan.changes} == expected


def test_adding_count_moves_the_recorded_instance(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, COUNT1, state_of(tmp_path, PLAIN))
    moved = plan.change("env.x[0]")
    assert moved.previous_address == "env.x" and moved.after["name"] == "x"
    assert plan.has_changes  # the state must record the move
    shown = render_plan(plan)
    assert "# env.x has moved to env.x[0]" in shown
    assert "Plan: 0 to add, 0 to change, 0 to destroy." in shown
    # and back: env.x[0] becomes env.x again, keeping the name it was made with
    plan = plan_of(tmp_path, PLAIN, state_of(tmp_path, COUNT1))
    back = plan.change("env.x")
    assert back.previous_address == "env.x[0]" and back.action == "no-op"
    assert back.after["name"] == instance_name("x", 0)


def test_a_cluster_gaining_count_keeps_its_envs(tmp_path: Path) -> None:
    """cluster.c moves to cluster.c[0]; the env's recorded reference follows the move,
    so an env now written with cluster = cluster.c[0] is not rebuilt."""
    counted = CLUSTER.replace('  provider = "local"\n', '  count    = 1\n  provider = "local"\n')
    plan = plan_of(tmp_path, counted + 'env "e" {\n  cluster = cluster.c[0]\n}\n',
                   state_of(tmp_path, PLAIN.replace('env "x"', 'env "e"')))
    assert {c.address: (c.action, c.previous_address) for c in plan.changes} == {
        "cluster.c[0]": ("no-op", "cluster.c"), "env.e": ("no-op", None)}


def test_instances_are_named_by_key_and_read_each_and_count(tmp_path: Path) -> None:
    text = (CLUSTER
            + 'env "x" {\n  for_each = { gpu = "g", "two words" = "t" }\n'
              '  cluster  = cluster.c\n  env_vars = { K = each.key, V = each.value }\n}\n\n'
              'env "y" {\n  count    = 2\n  cluster  = cluster.c\n'
              '  env_vars = { I = "${count.index}", X = env.x["gpu"].name,\n'
              '               ALL = join(",", [for k, e in env.x : "${k}=${e.name}"]) }\n}\n\n'
              'output "ys" { value = env.y[*].name }\n'
              'output "y0" { value = env.y[0].name }\n'
              'output "xs" { value = values(env.x)[*].name }\n'
              'output "keys" { value = keys(env.x) }\n')
    plan = plan_of(tmp_path, text)
    after = {c.address: c.after for c in plan.changes}
    gpu = instance_name("x", "gpu")
    assert gpu.startswith("x-gpu-") and after['env.x["gpu"]']["name"] == gpu
    assert after['env.x["gpu"]']["env_vars"] == {"K": "gpu", "V": "g"}
    two = after['env.x["two words"]']
    assert two["name"].startswith("x-two-words-") and two["env_vars"]["V"] == "t"
    assert two["path"].endswith("/envs/" + two["name"])  # a folder name, whatever the key
    y1 = after["env.y[1]"]["env_vars"]
    assert y1["I"] == "1" and y1["X"] == gpu
    assert y1["ALL"] == f"gpu={gpu},two words={two['name']}"
    assert plan.output_changes["ys"]["after"] == [after["env.y[0]"]["name"],
                                                  after["env.y[1]"]["name"]]
    assert plan.output_changes["y0"]["after"] == after["env.y[0]"]["name"]
    assert plan.output_changes["xs"]["after"] == [gpu, two["name"]]
    assert plan.output_changes["keys"]["after"] == ["gpu", "two words"]
    # the instances of y depend on every instance of x, and on the cluster
    deps = next(c for c in plan.changes if c.address == "env.y[0]").dependencies
    assert deps == ["cluster.c", 'env.x["gpu"]', 'env.x["two words"]']
    text_plan = render_plan(plan, color=False)
    assert '# env.x["two words"] will be created' in text_plan
    assert '+ env "x" {' in text_plan


def test_counted_clusters_and_for_each_over_a_resource(tmp_path: Path) -> None:
    text = ('cluster "c" {\n  count    = 2\n  provider = "local"\n}\n\n'
            'env "x" {\n  count   = 2\n  cluster = cluster.c[count.index]\n}\n\n'
            'env "z" {\n  for_each = toset(["p"])\n  cluster  = cluster.c[1]\n}\n\n'
            'env "copy" {\n  for_each = env.z\n  cluster  = cluster.c[0]\n'
            '  env_vars = { OF = each.value.name }\n}\n')
    plan = plan_of(tmp_path, text)
    after = {c.address: c.after for c in plan.changes}
    assert after["env.x[1]"]["cluster"] == "cluster.c[1]"
    assert after["cluster.c[1]"]["name"] == instance_name("c", 1)
    assert after['env.copy["p"]']["env_vars"] == {"OF": after['env.z["p"]']["name"]}


def test_depends_on_an_instance(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, SET_AB + 'env "y" {\n  cluster    = cluster.c\n'
                                      '  depends_on = [env.x["a"]]\n}\n')
    assert plan.change("env.y").dependencies == ["cluster.c", 'env.x["a"]', 'env.x["b"]']


def test_validate_passes_a_count_known_only_after_apply(tmp_path: Path) -> None:
    """As terraform validate: no instances, and what refers to them is unknown."""
    text = (envs("  count = env.y.servlet_pid > 0 ? 2 : 1") + 'env "y" {\n  cluster = '
            'cluster.c\n}\n\nenv "z" {\n  cluster  = cluster.c\n'
            '  env_vars = { X = env.x[0].name }\n}\n')
    plan = plan_of(tmp_path, text, validate=True)
    assert sorted(c.address for c in plan.changes) == ["cluster.c", "env.y", "env.z"]
    assert plan.change("env.z").after["env_vars"]["X"] is UNKNOWN
    with pytest.raises(ConfigError, match="known only after apply"):
        plan_of(tmp_path, text)


def test_dynamic_nested_block_with_iterator(tmp_path: Path) -> None:
    def cluster(items: str) -> str:
        return ('variable "users" { default = ' + items + ' }\n\n'
                'cluster "c" {\n  provider = "ssh"\n  ips      = ["10.0.0.5"]\n'
                '  dynamic "ssh" {\n    for_each = var.users\n    iterator = u\n'
                '    content {\n      user        = u.value\n      private_key = "~/.ssh/id_x"\n'
                '      port        = 2200 + u.key\n    }\n'
                '  }\n}\n')
    plan = plan_of(tmp_path, cluster('["me"]'))
    ssh = plan.changes[0].after["ssh"]
    assert ssh["user"] == "me" and ssh["port"] == 2200
    # none: the block is left out (which an ssh cluster refuses)
    with pytest.raises(ConfigError, match="give ssh"):
        plan_of(tmp_path, cluster("[]"))


def test_state_keeps_instance_addresses(tmp_path: Path) -> None:
    state = state_of(tmp_path, SET_AB)
    again = State.from_json(json.loads(json.dumps(state.to_json())), "test")
    assert sorted(again.resources) == ["cluster.c", 'env.x["a"]', 'env.x["b"]']
    assert again.resources['env.x["a"]'].name == "x"
    assert parse_address('env.x["a"]') == ("env", "x", "a")
    assert parse_address("env.x[10]") == ("env", "x", 10)


def test_state_commands_take_instance_addresses(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True  # a state made without hosts: nothing to destroy
    state = state_of(rh.dir, envs("  count = 11"))
    rh.state_path.write_text(json.dumps(state.to_json()))
    listed = rh("state", "list", "env.x").ok().stdout.split()
    assert listed[:3] == ["env.x[0]", "env.x[1]", "env.x[2]"] and listed[-1] == "env.x[10]"
    shown = rh("state", "show", "env.x[3]").ok().stdout
    assert shown.startswith('# env.x[3]:\nenv "x" {') and instance_name("x", 3) in shown
    msg = rh("state", "show", "env.x").error_line()
    assert "env.x has 11 instances" in msg and "env.x[0]" in msg, msg
    assert "Removed env.x[10]" in rh("state", "rm", "env.x[10]").ok().stdout
    out = rh("state", "rm", "env.x").ok().stdout
    assert "Successfully removed 10 resource instance(s)." in out
    assert rh("state", "list").ok().stdout.split() == ["cluster.c"]


def test_an_env_instance_is_found_by_either_quoting(tmp_path: Path) -> None:
    """What rhplan.servlet and rhplan run look up (no Ray needed to find the record)."""
    from rhplan.env_lookup import find_env
    from rhplan.state.local import LocalBackend

    LocalBackend(tmp_path / "rhplan.state.json").write(state_of(tmp_path, SET_AB))
    for name in ('x["a"]', "x['a']", 'env.x["a"]'):
        env, cluster = find_env(name, tmp_path)
        assert env.address == 'env.x["a"]' and cluster.address == "cluster.c"


def test_state_mv_adopts_for_each_without_rebuilding(tmp_path: Path, rhplan_in: Any) -> None:
    """for_each has no implicit move: state mv env.x 'env.x["a"]' says which key the
    recorded env is, and the plan then keeps it (same on-host name, nothing rebuilt)."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True  # a state made without hosts: nothing to destroy
    state = state_of(rh.dir, PLAIN)
    rh.state_path.write_text(json.dumps(state.to_json()))
    rh.write(envs('  for_each = toset(["a"])'))
    assert 'env.x will be destroyed' in rh("plan", "-refresh=false").ok().stdout
    out = rh("state", "mv", "-dry-run", "env.x", "env.x['a']").ok().stdout
    assert out == 'Would move "env.x" to "env.x["a"]"\n', out
    assert rh("state", "rm", "-dry-run", "env.x").ok().stdout == "Would remove env.x\n"
    assert set(rh.resources()) == {"cluster.c", "env.x"}  # dry runs changed nothing
    out = rh("state", "mv", "env.x", 'env.x["a"]').ok().stdout
    assert "Successfully moved 1 object(s)." in out
    assert rh("plan", "-refresh=false").ok().stdout.startswith("No changes.")
    recorded = rh.resources()['env.x["a"]']
    assert recorded["name"] == "x" and recorded["attributes"]["name"] == "x"
    msg = rh("state", "mv", 'env.x["a"]', "cluster.x").error_line()
    assert "cannot move a env to a cluster address" in msg, msg


def test_show_json_gives_the_index(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(SET_AB)
    rh("plan", "-refresh=false", "-out", "p.plan").ok()
    data = json.loads(rh("show", "-json", "p.plan").ok().stdout)
    index = {r["address"]: r.get("index") for r in data["resource_changes"]}
    assert index == {"cluster.c": None, 'env.x["a"]': "a", 'env.x["b"]': "b"}


# ---- errors: one line, file:line, what to do ------------------------------------

ENV_Y = 'env "y" {\n  cluster = cluster.c\n}\n'

ERRORS = [
    pytest.param(envs('  count    = 2\n  for_each = toset(["a"])'), 'for_each =',
                 ['sets both "count" and "for_each"'], id="count-and-for-each"),
    pytest.param(envs('  for_each = ["a", "b"]'), 'for_each',
                 ["for_each must be a map or a set of strings", "toset("], id="for-each-list"),
    pytest.param(envs("  count = -1"), "count =", ["count must be zero or more"],
                 id="negative-count"),
    pytest.param(envs("  count = 1.5"), "count =", ["count must be a whole number"],
                 id="count-1.5"),
    pytest.param(envs('  for_each = "a"'), 'for_each', ["must be a map or a set of strings"],
                 id="for-each-string"),
    pytest.param(envs("", "  env_vars = { K = each.key }\n"), 'each.key',
                 ['"each" is used in env', "add for_each"], id="each-without-for-each"),
    pytest.param(envs("", '  env_vars = { I = "${count.index}" }\n'), 'count.index',
                 ['"count.index" is used in env', "add count"], id="count-without-count"),
    pytest.param(envs("  count = length(env.y.installed)") + ENV_Y, "count =",
                 ['"count" value depends on values known only after apply'],
                 id="count-unknown"),
    pytest.param(envs("  for_each = toset([tostring(env.y.servlet_pid)])") + ENV_Y,
                 "for_each", ['"for_each" value depends on values known only after apply'],
                 id="for-each-unknown"),
    pytest.param('variable "teams" {\n  sensitive = true\n  default   = { a = "1" }\n}\n'
                 + envs("  for_each = var.teams"), "for_each",
                 ["derived from a sensitive value (var.teams)", "nonsensitive"],
                 id="for-each-sensitive"),
    pytest.param(envs("  count = 2") + 'output "n" { value = env.x.name }\n', 'output "n"',
                 ['because env.x has "count" set', "env.x[count.index] or env.x[0]"],
                 id="attribute-of-counted-resource"),
    pytest.param(envs('  for_each = toset(["a"])')
                 + 'env "y" {\n  cluster  = cluster.c\n  env_vars = { N = env.x.name }\n}\n',
                 "N = env.x.name", ['because env.x has "for_each" set', 'env.x["KEY"]'],
                 id="attribute-of-for-each-resource"),
    pytest.param(envs('  for_each = toset(["a"])') + 'output "n" { value = env.x[*].name }\n',
                 'output "n"', ['env.x has "for_each" set, so it is a map',
                                "values(env.x)[*].name"], id="splat-of-for-each-resource"),
    pytest.param('cluster "c" {\n  count    = 2\n  provider = "local"\n}\n\n'
                 'env "x" {\n  cluster = cluster.c\n}\n', 'cluster = cluster.c',
                 ['because cluster.c has "count" set', "cluster.c[0]"],
                 id="reference-without-index"),
    pytest.param(envs('  count = 2\n  depends_on = []\n  lifecycle {\n    prevent_destroy = '
                      'true\n  }').replace("  cluster = cluster.c\n", '  cluster = cluster.c\n'
                                           '  dynamic "lifecycle" {\n    for_each = []\n'
                                           '    content {}\n  }\n'), 'dynamic "lifecycle"',
                 ["dynamic 'lifecycle'", "lifecycle cannot be dynamic"], id="dynamic-lifecycle"),
    pytest.param('cluster "c" {\n  provider = "local"\n  dynamic "ssh" {\n'
                 '    for_each = ["a", "b"]\n    content {\n      user = ssh.value\n    }\n'
                 '  }\n}\n', 'for_each', ["for_each gives 2 elements", "at most one"],
                 id="dynamic-two-ssh-blocks"),
    pytest.param('cluster "c" {\n  provider = "local"\n  dynamic "ssh" {\n'
                 '    for_each = ["a"]\n    content {\n      usr = ssh.value\n    }\n'
                 '  }\n}\n', 'usr =', ["unknown attribute 'usr' in ssh block"],
                 id="dynamic-unknown-attribute"),
]


# known only after apply: an error for plan; validate, as Terraform's, lets it pass
PLAN_ONLY = {"count-unknown", "for-each-unknown"}


@pytest.mark.parametrize(("text", "marker", "words"), ERRORS)
def test_errors_name_file_and_line(request: Any, tmp_path: Path, rhplan_in: Any, text: str,
                                   marker: str, words: list[str]) -> None:
    """marker: text on the line the error must name (its first line holding it)."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if marker in t)
    plan_only = request.node.callspec.id in PLAN_ONLY
    if plan_only:
        assert rh("validate").ok().stdout == "Success! The configuration is valid.\n"
    for args in (("validate",), ("plan", "-refresh=false"))[plan_only:]:
        msg = rh(*args).error_line()
        assert msg.startswith(f"Error: main.hcl:{line}: "), (args, msg)
        for w in words:
            assert w in msg, (args, w, msg)
    assert not rh.resources()


# ---- one real apply: two envs from for_each, one key changed, destroy -------------

REAL = """
cluster "c" {
  provider = "local"
}

env "w" {
  for_each = toset(["a", "b"])
  cluster  = cluster.c
  reqs     = []
  env_vars = { WHICH = each.key }
}

output "names" { value = { for k, e in env.w : k => e.name } }
"""

DRIVER = """
import json, os, sys
import rhplan

def which():
    return os.environ["WHICH"]

print("RESULT " + json.dumps([rhplan.servlet("w", chdir=sys.argv[1], key="a").call(which),
                              rhplan.servlet('w["b"]', chdir=sys.argv[1]).call(which)]))
"""


@pytest.mark.long  # its own real local cluster (20-30 s); the plan tests here run by default
def test_apply_for_each_change_one_key_destroy(tmp_path: Path, rh: Any) -> None:
    rh.write(REAL)
    rh("apply", "-auto-approve").ok()
    names = {k: instance_name("w", k) for k in ("a", "b", "c")}
    # with the bare default env every cluster gets (env.c_default)
    assert set(rh.resources()) == {"cluster.c", "env.c_default", 'env.w["a"]', 'env.w["b"]'}
    for k in ("a", "b"):
        assert rh.env_dir("c", names[k]).is_dir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    assert run_driver(driver, rh.dir, timeout=180) == ["a", "b"]
    # change one key: only that instance is planned
    rh.edit('toset(["a", "b"])', 'toset(["a", "c"])')
    shown = rh("plan", "-no-color").ok().stdout
    headers = [ln.strip() for ln in shown.splitlines() if ln.strip().startswith("# ")]
    assert headers == ['# env.w["b"] will be destroyed', "# (its key is no longer in for_each)",
                       '# env.w["c"] will be created'], shown
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in shown
    rh("apply", "-auto-approve").ok()
    assert set(rh.resources()) == {"cluster.c", "env.c_default", 'env.w["a"]', 'env.w["c"]'}
    assert not rh.env_dir("c", names["b"]).exists() and rh.env_dir("c", names["c"]).is_dir()
    assert "No changes." in rh("plan").ok().stdout
    rh("destroy", "-auto-approve").ok()
    assert rh.resources() == {}


def test_apply_records_the_implicit_move(tmp_path: Path, rhplan_in: Any) -> None:
    """A real apply (secrets need no host): adding count = 1 moves secret.s to
    secret.s[0] in the state, and nothing is written again."""
    rh = rhplan_in(tmp_path / "infra")
    rh.write('secret "s" {\n  values = { K = "v" }\n}\n')
    rh("apply", "-auto-approve").ok()
    rh.edit('secret "s" {\n', 'secret "s" {\n  count = 1\n')
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 2 and "# secret.s has moved to secret.s[0]" in res.stdout, res.stdout
    out = rh("apply", "-auto-approve").ok().stdout
    assert "0 added, 0 changed, 0 destroyed" in out, out
    assert set(rh.resources()) == {"secret.s[0]"}
    assert "No changes." in rh("plan").ok().stdout
    rh("destroy", "-auto-approve").ok()


def test_saved_plan_with_for_each_over_a_set_variable(tmp_path: Path, rhplan_in: Any) -> None:
    """A plan file keeps a set(string) variable as a JSON list; applying it reads the
    variable's type again, so for_each still gets a set (secrets: no host needed)."""
    rh = rhplan_in(tmp_path / "infra")
    rh.write('variable "names" {\n  type    = set(string)\n  default = ["b", "a"]\n}\n\n'
             'secret "s" {\n  for_each = var.names\n  values   = { K = each.key }\n}\n')
    rh("plan", "-out", "p.plan").ok()
    out = rh("apply", "p.plan").ok().stdout
    assert "Apply complete! Resources: 2 added" in out, out
    assert set(rh.resources()) == {'secret.s["a"]', 'secret.s["b"]'}
    rh("destroy", "-auto-approve").ok()
