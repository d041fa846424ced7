"""A default env per cluster (issue 13 item 3): `default_env = env.NAME` on the cluster
(also through a local), else the cluster's only env, else (no env, several, a repeated
one, or a repeated cluster) the bare env.C_default rhplan creates with it (env.C_default[K]
for cluster.C[K]), so `rhplan run -cluster NAME -- CMD` and `rhplan.servlet(cluster="NAME")`
(or `rhplan.servlet()` with one cluster) need no env name.

Plan-time checks and the resolution run without Ray; the real local applies (one cluster
going from no env to one, two, and a default_env; and two package-less envs with a
default_env) are `long`."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from drivers import run_driver
from plan_case import applied_state, case_context

from rhplan.config.default_env import is_bare_env
from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.env_lookup import default_env
from rhplan.errors import ConfigError, RhplanError
from rhplan.graph import build_graph
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.state.model import ResourceState, State

TWO_CLUSTERS = """
cluster "c" {
  provider    = "local"
  default_env = env.b
}

cluster "d" {
  provider = "local"
}

env "a" {
  cluster = cluster.c
}

env "b" {
  cluster = cluster.d
}
"""


def test_a_default_env_of_another_cluster_is_refused_with_file_and_line(rh: Any) -> None:
    rh.write(TWO_CLUSTERS)
    for cmd in (("validate",), ("plan",)):
        res = rh(*cmd)
        assert res.returncode == 1, res.describe()
        assert res.error_line() == (
            "Error: main.hcl:3: cluster 'c': default_env = env.b is an env of cluster.d, not "
            "of this cluster; name one of its own envs (env.a) or remove default_env"), \
            res.describe()
    rh.edit("default_env = env.b", 'default_env = "b"')
    res = rh("validate")
    assert res.returncode == 1 and "main.hcl:3" in res.error_line(), res.describe()
    for value in ("env.a.name", "cluster.d", "null"):  # not a plain env.NAME
        rh.edit('default_env = "b"', f"default_env = {value}")
        assert rh("validate").error_line() == (
            "Error: main.hcl:3: cluster 'c': default_env must name one env of this cluster, "
            "like default_env = env.NAME"), value
        rh.edit(f"default_env = {value}", 'default_env = "b"')
    rh.edit('default_env = "b"', "default_env = env.nope")
    res = rh("validate")
    assert res.returncode == 1 and "main.hcl:3" in res.error_line() \
        and "env.nope, which is not declared" in res.error_line(), res.describe()
    rh.write(TWO_CLUSTERS.replace("default_env = env.b", 'default_env = env.x["k"]') + """
env "x" {
  for_each = toset(["k"])
  cluster  = cluster.c
}
""")
    res = rh("validate")
    assert res.error_line() == (
        "Error: main.hcl:3: cluster 'c': default_env: env.x has for_each, and an env with "
        "count or for_each cannot be a cluster's default (yet); name an env without them"), \
        res.describe()
    assert not rh.state_path.exists()


def test_a_default_env_is_no_cycle_and_the_plan_shows_it(rh: Any) -> None:
    rh.write(TWO_CLUSTERS.replace("default_env = env.b", "default_env = env.a"))
    assert "Success!" in rh("validate").ok().stdout
    out = rh("plan", "-no-color").ok().stdout
    assert '+ default_env   = "env.a"' in out, out
    graph = rh("graph").ok().stdout
    # the env depends on its cluster; the cluster's default_env adds no edge back
    assert '"env.a" -> "cluster.c"' in graph and '"cluster.c" -> "env.a"' not in graph, graph


def _state(*resources: tuple[str, dict[str, Any]]) -> State:
    st = State(lineage="test")
    for addr, attrs in resources:
        type_, name = addr.split(".")
        st.resources[addr] = ResourceState(addr, type_, name, "local", attrs)
    return st


def test_the_default_env_is_the_declared_one_else_the_only_one() -> None:
    one = _state(("cluster.c", {"name": "c"}), ("env.x", {"cluster": "cluster.c"}))
    assert default_env(one, "c") == default_env(one, None) == "env.x"
    assert default_env(one, "cluster.c") == "env.x"
    two = _state(("cluster.c", {"name": "c", "default_env": "env.y"}),
                 ("env.x", {"cluster": "cluster.c"}), ("env.y", {"cluster": "cluster.c"}),
                 ("cluster.d", {"name": "d"}), ("env.z", {"cluster": "cluster.d"}))
    assert default_env(two, "c") == "env.y"
    assert default_env(two, "d") == "env.z"
    with pytest.raises(RhplanError, match=r"^2 clusters in the state of \. \(cluster\.c, "
                                          r"cluster\.d\); name the cluster"):
        default_env(two, None)
    two.resources["cluster.c"].attributes["default_env"] = None
    with pytest.raises(RhplanError) as err:
        default_env(two, "c")
    assert str(err.value) == ("cluster.c has 2 envs (env.x, env.y) and no default_env; set "
                              "default_env = env.NAME in its cluster block, or name the env")
    # the bare env rhplan made for a cluster without a default_env is its default
    two.resources["env.c_default"] = ResourceState("env.c_default", "env", "c_default",
                                                   "local", {"cluster": "cluster.c"})
    assert default_env(two, "c") == "env.c_default"
    bare = _state(("cluster.c", {"name": "c"}))
    with pytest.raises(RhplanError, match=r"^cluster\.c has no env; declare one"):
        default_env(bare, "c")
    with pytest.raises(RhplanError, match=r"^no cluster 'nope' in the state"):
        default_env(bare, "nope")


APPLIED = """
cluster "c" {
  provider    = "local"
  default_env = env.b
}

env "a" {
  cluster  = cluster.c
  env_vars = { WHICH = "a" }
}

env "b" {
  cluster  = cluster.c
  env_vars = { WHICH = "b" }
}
"""

DRIVER = """
import json, sys
import rhplan
by_cluster = rhplan.servlet(cluster="c", chdir=sys.argv[1])
only = rhplan.servlet(chdir=sys.argv[1])
print("RESULT " + json.dumps({"by_cluster": by_cluster.call("os:getenv", "WHICH"),
                              "only": only.call("os:getenv", "WHICH")}), flush=True)
"""


@pytest.mark.long  # its own real local cluster (20-30 s); the plan tests here run by default
def test_run_and_servlet_reach_the_clusters_default_env(tmp_path: Path, rh: Any) -> None:
    rh.write(APPLIED)
    assert "Apply complete! Resources: 3 added" in rh("apply", "-auto-approve").ok().stdout
    assert rh.resources()["cluster.c"]["attributes"]["default_env"] == "env.b"
    res = rh("run", "-cluster", "c", "--", "python", "-c",
             "import os, sys; print(os.environ['WHICH']); sys.exit(5)")
    assert (res.returncode, res.stdout) == (5, "b\n"), res.describe()
    res = rh("run", "a", "--", "python", "-c", "import os; print(os.environ['WHICH'])")
    assert (res.returncode, res.stdout) == (0, "a\n"), res.describe()
    res = rh("run", "-cluster", "nope", "--", "true")
    assert res.returncode == 1 and res.error_line().startswith(
        "Error: no cluster 'nope' in the state"), res.describe()
    status = rh("status").ok().stdout
    marked = [ln.split()[2] for ln in status.splitlines() if ln.endswith("(default env)")]
    assert marked == ["b"], status
    assert json.loads(rh("status", "-json").ok().stdout)[0]["default_env"] == "env.b"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    assert run_driver(script, rh.dir) == {"by_cluster": "b", "only": "b"}
    rh("destroy", "-auto-approve").ok()
    assert not rh.resources()


BARE = """
cluster "c" {
  provider = "local"
}
"""


def test_a_cluster_without_envs_plans_a_bare_default_env(rh: Any) -> None:
    rh.write(BARE + """
cluster "d" {
  provider = "local"
}

env "mine" {
  cluster = cluster.d
}
""")
    out = rh("plan", "-no-color").ok().stdout
    assert "  # env.c_default will be created\n  # (the default env of cluster.c, which " \
           "declares none: Python, Ray and the working_dir, no packages)\n" \
           '  + env "c_default" {\n      + cluster            = "cluster.c"\n' in out, out
    assert "env.d_default" not in out and "Plan: 4 to add," in out, out
    graph = rh("graph").ok().stdout
    assert '"env.c_default" -> "cluster.c"' in graph, graph
    # a default_env, or any env of its own (also through a local), means no bare env
    rh.write(BARE + """
env "x" {
  cluster = local.c
}

locals {
  c = cluster.c
}
""")
    out = rh("plan", "-no-color").ok().stdout
    assert "c_default" not in out and "Plan: 2 to add," in out, out
    rh.write(BARE.replace('"local"', '"local"\n  default_env = env.x') + """
env "x" {
  cluster = cluster.c
}
""")
    out = rh("plan", "-no-color").ok().stdout
    assert "c_default" not in out and "Plan: 2 to add," in out, out


def test_create_default_env_false_opts_a_cluster_out_of_its_bare_env(rh: Any) -> None:
    """A Ray cluster without servlets (e.g. for Ray jobs) needs no bare env."""
    rh.write(BARE.replace('"local"', '"local"\n  create_default_env = false'))
    out = rh("plan", "-no-color").ok().stdout
    assert "c_default" not in out and "Plan: 1 to add," in out, out
    rh.write(BARE.replace('"local"', '"local"\n  create_default_env = true'))
    out = rh("plan", "-no-color").ok().stdout
    assert "env.c_default will be created" in out and "Plan: 2 to add," in out, out
    # it decides which resources exist, so it is read before evaluation: a literal
    rh.write("variable \"bare\" {\n  default = false\n}\n"
             + BARE.replace('"local"', '"local"\n  create_default_env = var.bare'))
    assert rh("validate").error_line() == (
        "Error: main.hcl:7: cluster 'c': create_default_env decides whether the bare env "
        "exists before anything is evaluated; write true or false")


def test_a_bare_env_whose_name_is_taken_is_refused_with_file_and_line(rh: Any) -> None:
    rh.write(BARE + """
cluster "d" {
  provider = "local"
}

env "c_default" {
  cluster = cluster.d
}
""")
    res = rh("validate")
    assert res.returncode == 1 and res.error_line() == (
        "Error: main.hcl:1: cluster 'c' declares no env, so rhplan would give it a bare "
        "default env env.c_default, but main.hcl:9 declares an env of that name for another "
        "cluster; declare an env for cluster 'c' (or rename that env)"), res.describe()


def test_a_bare_env_whose_working_dir_is_refused_says_how_to_set_it(tmp_path: Path,
                                                                    rhplan_in: Any) -> None:
    home = tmp_path / "home"  # the configuration in the home folder: its default working_dir
    rh = rhplan_in(home, env={"HOME": str(home)})
    rh.write(BARE)
    res = rh("plan")
    assert res.returncode == 1 and res.error_line().startswith(
        "Error: main.hcl:1: env 'c_default': working_dir: refusing to sync "), res.describe()
    assert "home folder" in res.error_line() and res.error_line().endswith(
        " (env.c_default is the bare default env of cluster.c, which declares no env: "
        "declare one for it, with its working_dir)"), res.describe()
    project = tmp_path / "project"  # the declared envs sync a folder of their own
    project.mkdir()
    own = f'\n  working_dir = "{project}"'
    rh.write(TWO_ENVS.replace('env "a" {', 'env "a" {' + own)
             .replace('env "b" {', 'env "b" {' + own))
    res = rh("plan")
    assert res.returncode == 1 and res.error_line().endswith(
        " (env.c_default is the bare default env of cluster.c, which has 2 envs (env.a, "
        "env.b) and no default_env: set default_env = env.NAME (an env with its "
        "working_dir) or create_default_env = false)"), res.describe()


def test_a_modules_cluster_gets_its_bare_env_inside_the_module(rh: Any) -> None:
    rh.write(BARE, name="mod/main.hcl")
    rh.write('module "m" {\n  source = "./mod"\n}\n')
    out = rh("plan", "-no-color").ok().stdout
    assert "# module.m.env.c_default will be created" in out and \
        '+ cluster            = "module.m.cluster.c"' in out, out


def _plan(directory: Path, text: str, state: State | None = None) -> dict[str, Any]:
    """address -> (action, reason) of a plan of text over state (none: nothing applied)."""
    (directory / "main.hcl").write_text(text)
    cfg = load_config(directory)
    plan = Planner(cfg, case_context(directory), resolve_variables(cfg)).plan(
        state or State.new(), PlanOptions())
    return {c.address: (c.action, c.reason) for c in plan.changes}


def _applied(directory: Path, text: str) -> State:
    (directory / "main.hcl").write_text(text)
    return applied_state(directory)


WHAT = ": Python, Ray and the working_dir, no packages"
TWO_ENVS = BARE + 'env "a" {\n  cluster = cluster.c\n}\nenv "b" {\n  cluster = cluster.c\n}\n'


def test_several_envs_or_a_repeated_one_leave_the_bare_env_as_the_default(tmp_path: Path
                                                                          ) -> None:
    """No guess among several envs: the default is the bare env, as Runhouse's base env,
    until default_env names one; the plan says why it is there."""
    plan = _plan(tmp_path, TWO_ENVS)
    assert plan["env.c_default"] == ("create", "the default env of cluster.c, which has 2 "
                                     "envs (env.a, env.b) and no default_env" + WHAT), plan
    counted = BARE + 'env "x" {\n  count   = 2\n  cluster = cluster.c\n}\n'
    assert _plan(tmp_path, counted)["env.c_default"] == (
        "create", "the default env of cluster.c, which has only env.x, with count, and no "
        "default_env" + WHAT)
    # one env is the default; so is the one default_env names
    assert "env.c_default" not in _plan(tmp_path, BARE + 'env "a" {\n  cluster = cluster.c\n}\n')
    named = TWO_ENVS.replace('"local"', '"local"\n  default_env = env.b')
    assert sorted(_plan(tmp_path, named)) == ["cluster.c", "env.a", "env.b"]


def test_envs_a_repeated_module_call_brings_count_toward_the_bare_env(tmp_path: Path
                                                                     ) -> None:
    """One env of its own, more from a module called with for_each: the instances are
    known only after load, and then the cluster has several envs, so it gets the bare env
    (a plan once left it out, and planned a recorded one's deletion)."""
    team = tmp_path / "team"
    team.mkdir()
    (team / "main.hcl").write_text(
        'variable "cluster" {}\nenv "main" {\n  cluster = var.cluster\n}\n')
    calls = ('module "team" {\n  for_each = toset(KEYS)\n  source   = "./team"\n'
             '  cluster  = cluster.c\n}\n')
    own = BARE + 'env "lead" {\n  cluster = cluster.c\n}\n'
    plan = _plan(tmp_path, own + calls.replace("KEYS", '["nlp"]'))
    assert plan["env.c_default"] == ("create", "the default env of cluster.c, which has 2 "
                                     'envs (env.lead, module.team["nlp"].env.main) and no '
                                     "default_env" + WHAT), plan
    # no instance: env.lead alone is the default
    assert "env.c_default" not in _plan(tmp_path, own + calls.replace("KEYS", "[]"))


def test_declaring_a_default_env_later_plans_the_bare_envs_deletion(tmp_path: Path) -> None:
    state = _applied(tmp_path, TWO_ENVS)
    assert "env.c_default" in state.resources
    plan = _plan(tmp_path, TWO_ENVS.replace('"local"', '"local"\n  default_env = env.a'),
                 state)
    assert plan == {"cluster.c": ("update", "default_env changed"), "env.a": ("no-op", ""),
                    "env.b": ("no-op", ""), "env.c_default": (
                        "delete", "cluster.c now sets default_env, which replaces this bare "
                        "default env")}, plan
    plan = _plan(tmp_path, BARE + 'env "a" {\n  cluster = cluster.c\n}\n', state)
    assert plan["env.b"][0] == "delete" and plan["env.c_default"] == (
        "delete", "cluster.c now has one env, env.a, which is its default and replaces this "
        "bare default env"), plan
    plan = _plan(tmp_path, TWO_ENVS.replace('"local"', '"local"\n  create_default_env = false'),
                 state)
    assert plan["env.c_default"] == ("delete", "cluster.c sets create_default_env = false")
    # and the state's default is the bare env while it is there
    assert default_env(state, "c") == "env.c_default"


REPEATED = """
cluster "c" {
  count    = 2
  provider = "local"
}

cluster "e" {
  for_each = toset(["a", "b c"])
  provider = "local"
}
"""


def test_each_instance_of_a_repeated_cluster_gets_its_bare_env(tmp_path: Path) -> None:
    """env.C_default repeats as cluster.C does: instance K is the default env of
    cluster.C[K], addressed as any repeated resource is."""
    plan = _plan(tmp_path, REPEATED)
    for cluster, env in (("cluster.c[0]", "env.c_default[0]"),
                         ("cluster.c[1]", "env.c_default[1]"),
                         ('cluster.e["a"]', 'env.e_default["a"]'),
                         ('cluster.e["b c"]', 'env.e_default["b c"]')):
        assert plan[env] == ("create", f"the default env of {cluster}, which declares none"
                             + WHAT), plan
    state = _applied(tmp_path, REPEATED)
    assert state.resources['env.e_default["b c"]'].attributes["cluster"] == 'cluster.e["b c"]'
    assert default_env(state, "c[1]") == "env.c_default[1]"
    assert default_env(state, 'e["b c"]') == 'env.e_default["b c"]'
    plan = _plan(tmp_path, REPEATED.replace("count    = 2", "count    = 1"), state)
    assert plan["cluster.c[1]"][0] == "delete" and plan["env.c_default[1]"] == (
        "delete", "cluster.c[1]'s bare default env goes with it"), plan
    assert plan["env.c_default[0]"] == ("no-op", ""), plan
    # an env names one instance at most: every instance keeps its bare env
    one = REPEATED + 'env "x" {\n  cluster = cluster.c[0]\n}\n'
    assert _plan(tmp_path, one)["env.c_default[1]"] == (
        "create", "the default env of cluster.c[1], which has count, env.x among its "
        "instances and no default_env" + WHAT)


def test_a_recorded_bare_env_is_known_by_its_address_and_cluster() -> None:
    assert is_bare_env("env.c_default", {"cluster": "cluster.c"})
    assert is_bare_env("env.c_default[1]", {"cluster": "cluster.c[1]"})
    assert is_bare_env('env.c_default["a.cluster.b"]', {"cluster": 'cluster.c["a.cluster.b"]'})
    assert is_bare_env('module.m["k"].env.c_default', {"cluster": 'module.m["k"].cluster.c'})
    assert is_bare_env("module.m.env.c_default[0]", {"cluster": "module.m.cluster.c[0]"})
    assert is_bare_env('module.m["a.cluster.b"].module.n.env.c_default',
                       {"cluster": 'module.m["a.cluster.b"].module.n.cluster.c'})
    assert not is_bare_env("env.c_default[0]", {"cluster": "cluster.c[1]"})
    assert not is_bare_env("env.c_default", {"cluster": "cluster.d"})
    assert not is_bare_env("module.m.env.c_default", {"cluster": "cluster.c"})
    assert not is_bare_env("env.c_default", {"cluster": None})


LOCAL_DEFAULT = """
locals {
  main = local.chosen
  chosen = env.b
}

cluster "c" {
  provider    = "local"
  default_env = local.main
}

env "a" {
  cluster = cluster.c
}

env "b" {
  cluster = cluster.c
}
"""


def test_a_default_env_through_locals(tmp_path: Path, rh: Any) -> None:
    plan = _plan(tmp_path, LOCAL_DEFAULT)
    assert sorted(plan) == ["cluster.c", "env.a", "env.b"], plan  # no bare env
    state = _applied(tmp_path, LOCAL_DEFAULT)
    assert state.resources["cluster.c"].attributes["default_env"] == "env.b"
    graph = build_graph(load_config(tmp_path))  # the local adds no edge back: no cycle
    assert "env.b" not in set(graph.predecessors("cluster.c"))
    rh.write(LOCAL_DEFAULT.replace("chosen = env.b", 'chosen = "b"'))
    assert rh("validate").error_line() == (
        "Error: main.hcl:8: cluster 'c': default_env = local.main = local.chosen must name "
        "one env of this cluster, like default_env = env.NAME")
    (tmp_path / "main.hcl").write_text(LOCAL_DEFAULT.replace(
        'env "b" {\n  cluster = cluster.c', 'cluster "d" {\n  provider = "local"\n}\n\n'
        'env "b" {\n  cluster = cluster.d'))
    with pytest.raises(ConfigError) as err:
        build_graph(load_config(tmp_path))
    assert (err.value.line, str(err.value.message)) == (9, (
        "cluster 'c': default_env = local.main = local.chosen = env.b is an env of cluster.d, "
        "not of this cluster; name one of its own envs (env.a) or remove default_env"))


@pytest.mark.long  # its own real local cluster, five applies (~50 s idle)
def test_the_bare_env_is_the_default_until_one_env_or_a_default_env_replaces_it(
        tmp_path: Path, rh: Any) -> None:
    rh.write(BARE)
    assert "Resources: 2 added" in rh("apply", "-auto-approve").ok().stdout
    bare = rh.cluster_dir("c") / "envs" / "c_default"
    res = rh("run", "-cluster", "c", "--", "python", "-c",
             "import ray, sys; print(sys.prefix)")
    assert (res.returncode, res.stdout) == (0, f"{bare}\n"), res.describe()
    assert "(default env)" in rh("status").ok().stdout
    script = tmp_path / "driver.py"
    script.write_text("import json, sys, rhplan\nprint('RESULT ' + json.dumps(rhplan.servlet("
                      "cluster='c', chdir=sys.argv[1]).call('os:getcwd')))\n")
    assert run_driver(script, rh.dir) == f"{rh.cluster_dir('c')}/workdirs/c_default"
    main = BARE + '\nenv "main" {\n  cluster  = cluster.c\n  env_vars = { W = "m" }\n}\n'
    rh.write(main)
    out = rh("plan", "-no-color").ok().stdout
    assert "  # env.c_default will be destroyed\n  # (cluster.c now has one env, env.main, " \
           "which is its default and replaces this bare default env)" in out, out
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in out, out
    rh("apply", "-auto-approve").ok()
    assert not bare.exists()
    show = "import os, sys; print(os.environ.get('W'), sys.prefix)"
    res = rh("run", "-cluster", "c", "--", "python", "-c", show)
    assert (res.returncode, res.stdout) == (0, f"m {rh.env_dir('c', 'main')}\n"), res.describe()
    # a second env: no guess between the two, the bare env is the default again
    two = main + '\nenv "other" {\n  cluster = cluster.c\n}\n'
    rh.write(two)
    out = rh("plan", "-no-color").ok().stdout
    assert "  # env.c_default will be created\n  # (the default env of cluster.c, which has 2 " \
           "envs (env.main, env.other) and no default_env: Python, Ray and the working_dir, " \
           "no packages)" in out, out
    assert "Resources: 2 added, 0 changed, 0 destroyed" in rh("apply", "-auto-approve").ok().stdout
    res = rh("run", "-cluster", "c", "--", "python", "-c", show)
    assert (res.returncode, res.stdout) == (0, f"None {bare}\n"), res.describe()
    # default_env names one: the bare env goes, and -cluster reaches that env
    rh.write(two.replace('"local"', '"local"\n  default_env = env.main'))
    out = rh("plan", "-no-color").ok().stdout
    assert "  # env.c_default will be destroyed\n  # (cluster.c now sets default_env, which " \
           "replaces this bare default env)" in out, out
    assert "Plan: 0 to add, 1 to change, 1 to destroy." in out, out
    rh("apply", "-auto-approve").ok()
    assert not bare.exists()
    res = rh("run", "-cluster", "c", "--", "python", "-c", show)
    assert (res.returncode, res.stdout) == (0, f"m {rh.env_dir('c', 'main')}\n"), res.describe()
    rh.write(BARE)  # the envs go: the bare env comes back
    assert "Resources: 1 added, 1 changed, 2 destroyed" in rh("apply", "-auto-approve").ok().stdout
    rh("destroy", "-auto-approve").ok()
    assert not rh.resources() and not bare.exists()
