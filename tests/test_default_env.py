"""A default env per cluster (issue 13 item 3): `default_env = env.NAME` on the cluster,
else the cluster's only env, so `rhplan run -cluster NAME -- CMD` and
`rhplan.servlet(cluster="NAME")` (or `rhplan.servlet()` with one cluster) need no env name.

Plan-time checks and the resolution run without Ray; one real local apply (two
package-less envs) runs a command and calls a servlet through the default, then destroys."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rhplan.errors import RhplanError
from rhplan.servlets.client import default_env
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
    proc = subprocess.run([sys.executable, str(script), str(rh.dir)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    assert json.loads(line[len("RESULT "):]) == {"by_cluster": "b", "only": "b"}, proc.stdout
    rh("destroy", "-auto-approve").ok()
    assert not rh.resources()
