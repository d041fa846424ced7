"""Custom Ray resources (issue 11, item 4): a cluster offers them on every Ray node
(`custom_resources`, given to `ray start --resources`), an env asks for them with
`compute`, the plan refuses what the cluster does not offer (file:line and the fix), a
change restarts Ray in place, a servlet that cannot start says the real cause, and a
failed servlet start leaves its env recorded (never a folder outside the state).

Plan-time checks need no Ray. The rest walks one real local cluster (its own Ray head,
real uv venvs), applied by its fixture, in file order; its finalizer destroys it and
checks nothing is left.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from drivers import run_driver
from rayprocs import stop_leftovers, temp_dir_for

from rhplan.hosts.connection import LocalConnection
from rhplan.ray.servlets import manage

OFFERING = """
cluster "c" {
  provider         = "local"
  resources        = { CPU = 2, GPU = 0 }
  custom_resources = { my_accel = 2 }
  create_default_env = false
}

env "accel" {
  cluster = cluster.c
  reqs    = []
  compute = { my_accel = 1 }
}
"""

# a driver (a subprocess: the pytest process never imports Ray) calls into the servlet:
# what Ray gave it, and what the cluster offers
DRIVER = """
import json, sys
import rhplan

def probe():
    import ray
    return [ray.get_runtime_context().get_assigned_resources().get("my_accel"),
            ray.cluster_resources().get("my_accel")]

print("RESULT " + json.dumps(rhplan.servlet(sys.argv[2], chdir=sys.argv[1]).call(probe)))
"""


def line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


# --------------------------------------------------------------------------
# plan-time checks: no Ray needed
# --------------------------------------------------------------------------

def test_a_resource_the_cluster_does_not_offer_is_refused_at_plan_time(
        tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    path = rh.write(OFFERING.replace("  custom_resources = { my_accel = 2 }\n", ""))
    line = line_of(path, "compute = { my_accel = 1 }")
    for args in (("validate",), ("plan", "-refresh=false")):
        msg = rh(*args).error_line()
        assert f"main.hcl:{line}:" in msg, msg
        assert "my_accel = 1" in msg and "cluster.c does not offer" in msg, msg
        assert "declare it on cluster.c: custom_resources = { my_accel = 1 }" in msg, msg
    # offered, but less than asked: the fix names the cluster's setting
    path.write_text(OFFERING.replace("my_accel = 1", "my_accel = 3"))
    msg = rh("plan", "-refresh=false").error_line()
    assert f"main.hcl:{line_of(path, 'compute =')}:" in msg and "has 2" in msg, msg
    assert "raise custom_resources.my_accel on cluster.c" in msg, msg
    assert not rh.resources() and not rh.cluster_dir("c").exists()


@pytest.mark.parametrize("setting, expected", [
    ('custom_resources = { "a;b" = 1 }', "resource name 'a;b' is not allowed"),
    ('custom_resources = { "x\\"}, {\\"y" = 1 }', "is not allowed"),
    ('custom_resources = { "--head" = 1 }', "is not allowed"),
    ("custom_resources = { my_accel = -1 }", "must be a number from 0"),
    ("custom_resources = { my_accel = 1e300 }", "must be a number from 0"),
    ("custom_resources = { CPU = 4 }", "'CPU' is one of Ray's own resources"),
    ("custom_resources = { memory = 4 }", "'memory' is one of Ray's own resources"),
    ("resources = { CPU = 2, GPU = 0, my_accel = 1 }",
     "a custom Ray resource goes in custom_resources = { my_accel = 1 }"),
])
def test_bad_custom_resources_are_one_line_errors(tmp_path: Path, rhplan_in: Any,
                                                  setting: str, expected: str) -> None:
    rh = rhplan_in(tmp_path / "infra")
    path = rh.write(f'cluster "c" {{\n  provider = "local"\n  {setting}\n}}\n')
    msg = rh("validate").error_line()
    assert f"main.hcl:{line_of(path, setting)}:" in msg and expected in msg, msg


@pytest.mark.parametrize("compute, expected", [
    ('{ "a b" = 1 }', "resource name 'a b' is not allowed"),
    ("{ my_accel = -1 }", "must be a number from 0"),
    ("{ object_store_memory = 1 }", "one of Ray's own resources"),
])
def test_bad_compute_requests_are_one_line_errors(tmp_path: Path, rhplan_in: Any,
                                                  compute: str, expected: str) -> None:
    rh = rhplan_in(tmp_path / "infra")
    path = rh.write(OFFERING.replace("{ my_accel = 1 }", compute))
    msg = rh("validate").error_line()
    assert f"main.hcl:{line_of(path, 'compute =')}:" in msg and expected in msg, msg


SSH_PAIR = """
cluster "pair" {
  provider                 = "ssh"
  ips                      = ["10.0.0.5", "10.0.0.6"]
  custom_resources         = { my_accel = 2 }
  custom_resources_by_host = BY_HOST
  ssh {
    user = "me"
  }
}

env "accel" {
  cluster = cluster.pair
  reqs    = []
  compute = { my_accel = 3 }
}
"""


@pytest.mark.parametrize("by_host, expected", [
    # the head (the first of ips) offers 4: its servlets can have 3
    ('{ "10.0.0.5" = { my_accel = 4 } }', None),
    # only the worker offers more: the env is placed there (tests/test_placement.py)
    ('{ "10.0.0.6" = { my_accel = 4 } }', None),
    # neither node has 3: each one's offer is named
    ('{ "10.0.0.6" = { my_accel = 1 } }', "which no node of cluster.pair has free"),
    ('{ "10.0.0.7" = { my_accel = 4 } }',
     "custom_resources_by_host names '10.0.0.7', which is not in ips"),
    ('{ "10.0.0.6" = { "a b" = 1 } }', "resource name 'a b' is not allowed"),
    ('{ "10.0.0.6" = { GPU = 1 } }', "'GPU' is one of Ray's own resources"),
])
def test_per_host_custom_resources_at_plan_time(tmp_path: Path, rhplan_in: Any, by_host: str,
                                                expected: str | None) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.write(SSH_PAIR.replace("BY_HOST", by_host))
    res = rh("plan", "-refresh=false")
    if expected is None:
        assert res.returncode == 0 and "Plan: 2 to add" in res.stdout, res.describe()
        assert not rh.resources()
        return
    msg = res.error_line()
    assert "main.hcl:" in msg and expected in msg, msg


def test_per_host_custom_resources_need_listed_hosts(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    path = rh.write('cluster "c" {\n  provider = "local"\n'
                    '  custom_resources_by_host = { "127.0.0.1" = { my_accel = 1 } }\n}\n')
    msg = rh("validate").error_line()
    assert f"main.hcl:{line_of(path, 'custom_resources_by_host')}:" in msg, msg
    assert "needs the hosts listed in ips" in msg and "use custom_resources" in msg, msg


# --------------------------------------------------------------------------
# one real local cluster offering my_accel
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Any]:
    """OFFERING applied once for the module, here, so that any test of it runs alone
    (`-m long` too); the first apply's output is rh.log[0]. Destroyed at the end, and
    whatever the destroy did (or if the apply failed), the cluster's Ray processes still
    there are killed by pid and reported."""
    rh = rhplan_in(tmp_path_factory.mktemp("accel") / "infra")
    rh.write(OFFERING)
    root = rh.cluster_dir("c").absolute()
    destroyed = None
    try:
        rh("apply", "-auto-approve").ok()
        yield rh
    finally:
        try:
            destroyed = rh("destroy", "-auto-approve")
        finally:
            left = stop_leftovers([temp_dir_for(str(root))], root)
    assert destroyed.returncode == 0, destroyed.describe()
    assert not rh.resources() and not root.exists(), rh.resources()
    assert not left, f"Ray processes of the cluster outlived destroy: {left}"


def probe(rh: Any, env: str = "accel") -> list[float]:
    script = rh.dir.parent / "probe_driver.py"
    script.write_text(DRIVER)
    return run_driver(script, rh.dir, env)


def test_an_env_gets_a_custom_resource_the_cluster_offers(applied: Any) -> None:
    res = applied.log[0]  # the fixture's apply
    assert res.args[0] == "apply" and "Resources: 2 added" in res.stdout, res.describe()
    cluster = applied.resources()["cluster.c"]["attributes"]
    assert cluster["custom_resources"] == {"my_accel": 2}
    assert applied.resources()["env.accel"]["attributes"]["servlet"] == "running"
    # the servlet holds one of the head's two, and answers
    assert probe(applied) == [1.0, 2.0]


def test_changing_custom_resources_restarts_ray_in_place(applied: Any) -> None:
    applied.edit("custom_resources = { my_accel = 2 }", "custom_resources = { my_accel = 3 }")
    plan = applied("plan", "-detailed-exitcode")
    assert plan.returncode == 2, plan.describe()
    assert "cluster.c will be updated in-place" in plan.stdout, plan.stdout
    assert "its Ray head will be started again" in plan.stdout, plan.stdout
    assert "env.accel will be updated in-place" in plan.stdout, plan.stdout
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in plan.stdout, plan.stdout
    applied("apply", "-auto-approve").ok()
    assert applied.resources()["cluster.c"]["attributes"]["custom_resources"] == {"my_accel": 3}
    assert probe(applied) == [1.0, 3.0]
    converged = applied("plan", "-detailed-exitcode")
    assert converged.returncode == 0 and "No changes." in converged.stdout, converged.describe()


def _start(applied: Any, compute: dict[str, Any], python: str | None = None) -> str:
    """Ask the host script for a servlet the plan would refuse: what does it say?"""
    cluster = applied.resources()["cluster.c"]
    env = applied.resources()["env.accel"]["attributes"]
    with pytest.raises(manage.ServletNotStarted) as exc:
        manage.start_servlet(LocalConnection(), cluster["attributes"], cluster["private"]["ray"],
                             "probe_servlet", env["path"], python or env["python"], compute)
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def test_an_unschedulable_servlet_says_what_the_cluster_offers(applied: Any) -> None:
    msg = _start(applied, {"other_accel": 1})
    assert "Ray cannot place it" in msg and "other_accel = 1" in msg, msg
    assert "my_accel = 3" in msg and "custom_resources" in msg, msg
    assert "same Ray version" not in msg, msg


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_a_servlet_without_the_clusters_ray_says_so(applied: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # an interpreter without Ray: its worker dies at import and the actor stays pending
    bare = tmp_path / "bare"
    LocalConnection().run([sys.executable, "-m", "venv", "--without-pip", str(bare)],
                          timeout=60)
    monkeypatch.setenv("RHPLAN_SERVLET_TIMEOUT", "8")
    msg = _start(applied, {}, python=str(bare / "bin" / "python"))
    assert "cannot import ray" in msg and "same Ray version" in msg, msg
    assert "Ray cannot place it" not in msg, msg


def test_a_failed_servlet_start_leaves_the_env_recorded(applied: Any) -> None:
    applied.write(applied.dir.joinpath("main.hcl").read_text()
                  + '\nenv "late" {\n  cluster = cluster.c\n  reqs    = []\n}\n')
    # its servlet cannot answer in a millisecond: the start fails after the env is built
    res = applied("apply", "-auto-approve", env={"RHPLAN_SERVLET_TIMEOUT": "0.001"})
    assert res.returncode == 1, res.describe()
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(
        "Error: env.late: starting servlet 'late': servlet 'late' did not start: "), errors
    assert "same Ray version" not in errors[0], errors
    late = applied.resources()["env.late"]["attributes"]
    folder = Path(late["path"])
    assert late["servlet"] == "stopped" and folder.is_dir(), late
    plan = applied("plan", "-detailed-exitcode")
    assert plan.returncode == 2 and "its servlet will be started" in plan.stdout, plan.describe()
    applied("apply", "-auto-approve").ok()
    assert applied.resources()["env.late"]["attributes"]["servlet"] == "running"
    assert applied("run", "late", "--", "true").returncode == 0
    # removed from the configuration, it is destroyed with its folder
    applied.write(OFFERING.replace("my_accel = 2", "my_accel = 3"))
    applied("apply", "-auto-approve").ok()
    assert "env.late" not in applied.resources() and not folder.exists()


# Runs in the head's namespace with the cluster's Ray Python: my_accel on each live node.
# argv[2]: the head's Ray settings (token, TLS files) as JSON.
_NODE_RESOURCES = """
import json, os, sys
os.environ.update(json.loads(sys.argv[2]))
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print("NODES " + json.dumps({n["NodeManagerAddress"]: n["Resources"].get("my_accel")
                             for n in ray.nodes() if n["Alive"]}))
"""


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_every_node_of_a_two_host_cluster_offers_them(tmp_path: Path, rhplan_in: Any) -> None:
    """Head and worker each get `ray start --resources`, a host its own values where
    custom_resources_by_host gives them (two hosts in two network
    namespaces, reached over SSH, as test_ssh_provider's two-host test)."""
    from netns import TestNetwork, netns_available
    from ssh_cluster import (
        APPLY_TIMEOUT,
        DRIVER_TIMEOUT,
        cluster_hcl,
        destroy_and_check,
        hcl_str,
        provision_ray_venv,
    )

    from rhplan.ray.head import private_env
    reason = netns_available()
    if reason is not None:
        pytest.skip(f"network namespaces: {reason}")
    net = TestNetwork()
    try:
        a, b = net.add_host("a"), net.add_host("b")
        root = tmp_path / "root"
        provision_ray_venv(root)
        rh = rhplan_in(tmp_path / "infra")
        ssh = (f'  ssh {{\n    user        = "root"\n    private_key = '
               f"{hcl_str(net.client_key)}\n    known_hosts = {hcl_str(net.known_hosts)}\n  }}")
        # every node offers 2; the worker, by host, 5
        rh.write(cluster_hcl("duo", [a.address, b.address], root, ssh).replace(
            '  provider = "ssh"\n', '  provider = "ssh"\n  custom_resources = { my_accel = 2 }\n'
            f'  custom_resources_by_host = {{ "{b.address}" = {{ my_accel = 5 }} }}\n'))
        temp_dirs = [temp_dir_for(str(root))]
        try:
            rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
            c = rh.resources()["cluster.duo"]
            temp_dirs += list((c["private"]["ray"].get("ray_worker_temp_dirs") or {}).values())
            proc = a.run([str(root / "ray-venv" / "bin" / "python"), "-c", _NODE_RESOURCES,
                          c["attributes"]["ray_address"],
                          json.dumps(private_env(c["private"]["ray"]))],
                         timeout=DRIVER_TIMEOUT)
            nodes = [ln for ln in proc.stdout.splitlines() if ln.startswith("NODES ")]
            assert proc.returncode == 0 and nodes, f"{proc.stdout}\n{proc.stderr}"
            assert json.loads(nodes[0][6:]) == {a.address: 2.0, b.address: 5.0}
            res = rh("plan", "-detailed-exitcode")
            assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
        finally:
            destroy_and_check(rh, root, temp_dirs)
    finally:
        net.close()
