"""Placement on any node (issue 13 item 7): an env's compute chooses the node of a
multi-node cluster its servlet runs on, and the env is built on that node.

Plan-time placement is pure (no host): which host an env lands on (`node` in the plan:
the first host of ips, head first, with the custom resources left over), a refusal
naming what each node offers (file:line), and a change of node planned as a
replacement. The real two-node cluster (two network namespaces with their own sshd,
real Ray with TLS between them) is further down.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from plan_case import applied_state, case_context

from rhplan.config.inputs import resolve_variables
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
  create_default_env       = false
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
    # "first" was on the worker (the head had none); now only the head offers it
    plan = plan_from(pair(0, 2, 2, 0), pair(2, 0, 2, 0), tmp_path)
    by = {c.address: c for c in plan.changes}
    first = by["env.first"]
    assert first.before["node"] == "10.0.0.6" and "node" not in first.after
    assert first.action == "replace" and first.replace_because == ["node"], first.reason
    assert first.reason == ("it moves to the head (from 10.0.0.6): built there, its "
                            "servlet started there; its servlet's objects and instances are "
                            "lost"), first.reason
    # an env whose placement stays is not rebuilt (Ray restarts in place for the new
    # custom_resources: its servlet starts again)
    assert by["env.plain"].action == "update", by["env.plain"].reason
    # and back: the same configuration twice plans nothing for it
    same = {c.address: c for c in plan_from(pair(0, 2, 2, 0), pair(0, 2, 2, 0),
                                            tmp_path / "same").changes}
    assert same["env.first"].action == "no-op", same["env.first"].reason


def test_an_env_planned_alone_keeps_its_node(tmp_path: Path) -> None:
    """-target plans one env without the others: what they hold where they are recorded
    still counts, so it is not moved onto a node they fill."""
    old = tmp_path / "c"
    old.mkdir()
    (old / "main.hcl").write_text(pair(2, 2, 2, 2))  # first on the head, second on 10.0.0.6
    state = applied_state(old)
    assert state.resources["env.second"].attributes["node"] == "10.0.0.6"
    cfg = load_config(old)
    plan = Planner(cfg, case_context(old), resolve_variables(cfg)).plan(
        state, PlanOptions(targets=["env.second"]))
    assert {c.address: c.action for c in plan.changes if c.type == "env"} == {
        "env.second": "no-op"}, [(c.address, c.reason) for c in plan.changes]
    # and an env that fits where it is stays there, though an earlier node has room now
    plan = plan_from(pair(2, 2, 2, 2), pair(4, 2, 2, 2), tmp_path / "room")
    second = {c.address: c for c in plan.changes}["env.second"]
    assert second.action != "replace", second.reason


def test_states_from_before_placement_plan_no_change(tmp_path: Path) -> None:
    """Envs recorded before item 7 have no `node`: on the head, where they stay."""
    plan = plan_from(pair(2, 2, 1, 1), pair(2, 2, 1, 1), tmp_path)
    assert {c.address: c.action for c in plan.changes if c.type == "env"} == {
        "env.plain": "no-op", "env.first": "no-op", "env.second": "no-op"}


# --------------------------------------------------------------------------
# a streamed call into a worker's servlet, asked by the head's gateway
# --------------------------------------------------------------------------

# servlet_output.py as a servlet runs it: a streamed call whose output file is on another
# host (the gateway's folder exists on the head only) still answers
STREAMED = """
import sys
sys.path.insert(0, sys.argv[1])
import servlet_output
def work():
    print("printed on the worker")
    return ("answer",)
sink = servlet_output.Sink(sys.argv[2])
print("RESULT", servlet_output.streamed_into(sink, work), file=sys.__stderr__)
"""


def test_a_streamed_call_whose_output_folder_is_on_another_host_still_answers(
        tmp_path: Path) -> None:
    import subprocess
    import sys

    from rhplan.ray.servlets import gateway
    folder = Path(gateway.__file__).resolve().parent
    out = tmp_path / "gateway-on-the-head" / "x.out"  # no such folder on this host
    proc = subprocess.run([sys.executable, "-c", STREAMED, str(folder), str(out)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "RESULT ('answer',)" in proc.stderr, proc.stderr
    assert not out.parent.exists()


# --------------------------------------------------------------------------
# a real two-node cluster: two network namespaces, each with its own sshd
# --------------------------------------------------------------------------

TWO_NODE_ENVS = """
env "near" {
  cluster = cluster.duo
  reqs    = []
}

env "far" {
  cluster = cluster.duo
  reqs    = []
  compute = { my_accel = 1 }
}
"""

# a driver on this machine: where each servlet runs (its network namespace and the
# address Ray gives its node), through the route RHPLAN_SERVLET_ROUTE names
WHERE = """
import json, sys
import rhplan

def where():
    import os, ray
    return [os.readlink("/proc/self/ns/net"), ray.util.get_node_ip_address()]

out = {}
for env in sys.argv[2:]:
    s = rhplan.servlet(env, chdir=sys.argv[1])
    out[env] = s.call(where)
print("WHERE " + json.dumps(out))
"""

# a Ray driver ON the head host (the direct Ray route): the named actor answers a run
DIRECT = """
import json, os, sys
os.environ.update(json.loads(sys.argv[2]))
import ray
ray.init(address=sys.argv[1], namespace="rhplan", logging_level="ERROR", log_to_driver=False)
actor = ray.get_actor(sys.argv[3], namespace="rhplan")
print("DIRECT " + json.dumps(ray.get(actor.run.remote("readlink /proc/self/ns/net"),
                                     timeout=60)))
"""


def where(rh: Any, route: str, *envs: str) -> dict[str, list[str]]:
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", WHERE, str(rh.dir), *envs],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**rh.env, "RHPLAN_SERVLET_ROUTE": route})
    found = [ln[6:] for ln in proc.stdout.splitlines() if ln.startswith("WHERE ")]
    assert proc.returncode == 0 and found, proc.stdout + proc.stderr
    return json.loads(found[0])


def assert_served_by_its_nodes_gateway(root: Path, node: str, private: dict[str, Any]
                                        ) -> None:
    from rhplan.ray.servlets import gateway_start

    def pid_of(folder: str) -> int | None:
        try:
            return int(json.loads(Path(folder, "gateway.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    worker = pid_of(gateway_start.gateway_dir(str(root), node))
    assert worker is not None, "no gateway runs on the worker node"
    argv = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
    # named by the worker's Ray temp dir: stopping that node's Ray stops it
    assert private["ray_worker_temp_dirs"][node].encode() in argv, argv
    # neither gateway joined Ray (its driver library loaded) to reach the servlet
    for who, pid in (("the worker's", worker), ("the head's",
                                                pid_of(gateway_start.gateway_dir(str(root))))):
        if pid is not None:
            assert "_raylet" not in Path(f"/proc/{pid}/maps").read_text(), \
                f"{who} gateway joined Ray"


def manage_gateway_dir(root: Path, node: str) -> str:
    from rhplan.ray.servlets import gateway_start
    return gateway_start.gateway_dir(str(root), node)


def status_nodes(rh: Any, code: int) -> dict[str, dict[str, Any]]:
    """`rhplan status` (exit `code`; its text printed, for the README) and its JSON, by
    node."""
    text = rh("status")
    assert text.returncode == code, text.describe()
    print("PLACEMENT status:\n" + text.stdout)
    res = rh("status", "-json")  # the report itself: exit 0 whatever it says
    assert res.returncode == 0, res.describe()
    return {n["ip"]: n for n in json.loads(res.stdout)[0]["nodes"]}


@pytest.mark.long  # two Ray nodes, two envs, a node killed and rejoined: minutes
def test_an_env_is_built_on_and_served_from_the_worker_its_compute_chooses(
        tmp_path: Path, rhplan_in: Any) -> None:
    from netns import TestNetwork, netns_available
    from rayprocs import cluster_processes, temp_dir_for
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
        for host in (a, b):  # no PyPI in there: uv installs from its cache, offline
            host.extra_config.append("SetEnv UV_OFFLINE=1")
            host.stop()
            host.start()
        netns = {h.address: h.run(["readlink", "/proc/self/ns/net"]).stdout.strip()
                 for h in (a, b)}
        root = tmp_path / "root"
        provision_ray_venv(root)
        rh = rhplan_in(tmp_path / "infra")
        ssh = (f'  ssh {{\n    user        = "root"\n    private_key = '
               f"{hcl_str(net.client_key)}\n    known_hosts = {hcl_str(net.known_hosts)}\n  }}")
        # only the worker offers my_accel
        rh.write(cluster_hcl("duo", [a.address, b.address], root, ssh).replace(
            '  provider = "ssh"\n', '  provider = "ssh"\n'
            f'  custom_resources_by_host = {{ "{b.address}" = {{ my_accel = 1 }} }}\n')
            + TWO_NODE_ENVS)
        temp_dirs = [temp_dir_for(str(root))]
        try:
            res = rh("plan", "-no-color").ok()
            # two envs, no default_env: the cluster's bare default env too, on the head
            assert nodes_of(res.stdout) == {"near": None, "far": b.address,
                                            "duo_default": None}, res.stdout
            print("PLACEMENT plan:\n" + res.stdout)
            t0 = time.monotonic()
            rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
            print(f"PLACEMENT: first apply of two nodes, two envs: "
                  f"{time.monotonic() - t0:.1f} s")
            c = rh.resources()["cluster.duo"]
            temp_dirs += list((c["private"]["ray"].get("ray_worker_temp_dirs") or {}).values())
            far = rh.resources()["env.far"]["attributes"]
            assert far["node"] == b.address and far["servlet"] == "running", far
            assert "node" not in rh.resources()["env.near"]["attributes"]
            # served from the worker: its namespace, its node address; near from the head
            expect = {"near": [netns[a.address], a.address], "far": [netns[b.address],
                                                                      b.address]}
            assert where(rh, "ssh", "near", "far") == expect
            # far through a gateway on its own node (its socket), not the head's through
            # Ray between the nodes: the head's gateway never loaded Ray
            assert_served_by_its_nodes_gateway(root, b.address, c["private"]["ray"])
            # the direct Ray route: a driver on the head calls the actor on the worker
            proc = a.run([str(root / "ray-venv" / "bin" / "python"), "-c", DIRECT,
                          c["attributes"]["ray_address"],
                          json.dumps(private_env(c["private"]["ray"])),
                          "far"], timeout=DRIVER_TIMEOUT)
            direct = [ln[7:] for ln in proc.stdout.splitlines() if ln.startswith("DIRECT ")]
            assert proc.returncode == 0 and direct, proc.stdout + proc.stderr
            assert json.loads(direct[0])["stdout"].strip() == netns[b.address]
            # built on the worker: `rhplan run` reaches the env on its own node
            ran = rh("run", "far", "--", "readlink", "/proc/self/ns/net").ok()
            assert ran.stdout.strip() == netns[b.address], ran.describe()
            res = rh("plan", "-detailed-exitcode")
            assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
            # status: each node's Ray, memory and servlets, one SSH command per node
            nodes = status_nodes(rh, 0)
            assert {ip: (n["role"], n["ray"], sorted(s["env"] for s in n["servlets"]),
                         all(s["alive"] for s in n["servlets"])) for ip, n in nodes.items()
                    } == {a.address: ("head", "running", ["duo_default", "near"], True),
                          b.address: ("worker", "running", ["far"], True)}, nodes
            for n in nodes.values():
                assert 0 < n["memory"]["used"] < n["memory"]["total"], n
            # the worker's own gateway (far is reached through it), as the test above found
            worker_gateway = json.loads(Path(manage_gateway_dir(root, b.address),
                                             "gateway.json").read_text())
            assert nodes[b.address]["gateway"]["pid"] == int(worker_gateway["pid"]), nodes
            # the worker's Ray dies: drift, repaired by the next apply
            worker_dir = c["private"]["ray"]["ray_worker_temp_dirs"][b.address]
            for pid in cluster_processes([worker_dir], tmp_path / "no-such-root"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            res = rh("plan", "-no-color", "-detailed-exitcode")
            assert res.returncode == 2, res.describe()
            assert f"node {b.address}'s Ray is down" in res.output, res.describe()
            assert "env.far: its servlet is not running" in res.output, res.describe()
            print("PLACEMENT drift:\n" + res.stdout)
            # meanwhile a caller of the worker's env is told so, promptly
            import subprocess
            import sys
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, "-c", WHERE, str(rh.dir), "far"],
                                  capture_output=True, text=True, timeout=300, check=False,
                                  env={**rh.env, "RHPLAN_SERVLET_ROUTE": "ssh"})
            took = time.monotonic() - t0
            last = (proc.stderr.strip().splitlines() or [""])[-1]
            print(f"PLACEMENT dead worker, caller: exit {proc.returncode} in {took:.1f} s: "
                  + last)
            assert proc.returncode != 0 and "servlet 'far' is not running" in last, last
            assert took < 30, took
            # its node's gateway answered without joining Ray (a driver there would
            # outlive the dead node's temp dir, which names that gateway)
            assert_served_by_its_nodes_gateway(root, b.address, c["private"]["ray"])
            nodes = status_nodes(rh, 1)  # status sees it too, and exits 1
            assert (nodes[a.address]["ray"], nodes[b.address]["ray"]) == ("running",
                                                                          "stopped"), nodes
            assert [s["alive"] for s in nodes[b.address]["servlets"]] == [False], nodes
            rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
            c = rh.resources()["cluster.duo"]
            temp_dirs += list((c["private"]["ray"].get("ray_worker_temp_dirs") or {}).values())
            assert c["attributes"]["hosts"][b.address] == "ready", c["attributes"]["hosts"]
            assert where(rh, "ssh", "far") == {"far": expect["far"]}
            nodes = status_nodes(rh, 0)
            assert nodes[b.address]["ray"] == "running" and all(
                s["alive"] for s in nodes[b.address]["servlets"]), nodes
            res = rh("plan", "-detailed-exitcode")
            assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
            # what the dead node left went when it joined again
            assert not Path(worker_dir).exists() and "ray_dead_worker_temp_dirs" not in c[
                "private"]["ray"], c["private"]
            # it dies again and the cluster is destroyed without a repair: destroy stops
            # what is left of it too (destroy_and_check: no process, no temp dir left)
            worker_dir = c["private"]["ray"]["ray_worker_temp_dirs"][b.address]
            for pid in cluster_processes([worker_dir], tmp_path / "no-such-root"):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            destroy_and_check(rh, root, temp_dirs)
    finally:
        try:
            net.close()
        except RuntimeError as exc:
            # as test_ssh_provider: a veth gone with its namespace may say "No such device"
            if any("No such device" not in part for part in str(exc).split("; ")):
                raise
