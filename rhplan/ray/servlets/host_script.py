"""Runs ON a cluster's head, in the Python that runs Ray there: start, stop and check
env servlets. It imports only the standard library and Ray, because rhplan is not
installed on hosts; rhplan copies this file, with the host-side modules of the servlet
(servlet_wire.SERVLET_MODULES), next to the cluster's envs and runs it through the
connection (so local and SSH hosts share one path).

The servlet itself is servlet_env.py's EnvServlet, which Ray (cloudpickle) sends to the
env's interpreter by value, with the modules it uses: the env needs Ray, not these
files.

    python host_script.py start  ADDRESS NAME ENV_DIR PY_EXECUTABLE RESOURCES_JSON
    python host_script.py stop   ADDRESS NAME...
    python host_script.py status ADDRESS NAME...

Every command prints one JSON line. Every wait on Ray is bounded.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time

# uploaded beside this file (manage.py)
from servlet_env import EnvServlet
from servlet_server import READY_TIMEOUT, SERVLET_CONCURRENCY
from servlet_wire import SERVLET_MODULES, process_start_ticks

NAMESPACE = "rhplan"
SNAPSHOT_TIMEOUT = 60.0  # a servlet being replaced gets this long to write its store
STARTED_FILE = "rhplan/servlet_actor_id"  # in the env dir: the actor start() made last


def _gcs_reachable(address: str, timeout: float = 5.0) -> bool:
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except OSError:
        return False


def _connect(address: str):
    # ray.init retries a dead address for ever: check the GCS answers first
    if not _gcs_reachable(address):
        raise SystemExit(json.dumps({"error": f"Ray at {address} is not answering; "
                                     "rhplan plan shows whether the cluster needs starting"}))
    import ray

    ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR",
             log_to_driver=False, configure_logging=False)
    return ray


def _actor(ray, name: str):
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def start(address: str, name: str, env_dir: str, py_executable: str, resources: str,
          node_ip: str = "", go_file: str = "") -> dict:
    """node_ip: the Ray node address of the node the env was built on (placed there by
    the plan); "" for the node this driver runs on (the head). go_file: start only when
    it says "go" (see _await_go)."""
    ray = _await_go(address, go_file) if go_file else _connect(address)
    res = json.loads(resources)
    asked = dict(res)
    old = _actor(ray, name)
    kept = None
    if old is not None:
        kept = _snapshot(ray, old, env_dir)
        ray.kill(old, no_restart=True)
        deadline = time.time() + READY_TIMEOUT
        while _actor(ray, name) is not None and time.time() < deadline:
            time.sleep(0.05)
    opts = {
        "name": name, "namespace": NAMESPACE, "lifetime": "detached",
        # Ray makes the whole thread pool up front: 1000 meant ~1,024 threads (pids) per
        # servlet, so ~25 servlets filled a host's pid_max; 32 concurrent calls is plenty
        "max_concurrency": SERVLET_CONCURRENCY,
        "num_cpus": res.pop("CPU", 0), "num_gpus": res.pop("GPU", 0),
        # Ray pastes py_executable into `bash -c "exec PY_EXECUTABLE ..."` unquoted (it
        # may be "<command> <args>"): quoted, an env path with a space, ';' or "$(...)"
        # (from root_dir or the config folder) stays one path and never runs as shell
        "runtime_env": {"py_executable": shlex.quote(py_executable)},
    }
    if res:
        opts["resources"] = res
    # the env lives on its node's disk: keep its servlet on that node, whatever other
    # nodes the cluster has (a driver on a worker's host may still be given the head's
    # raylet by Ray, so the node is found by its address, not taken from the driver)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    node_id = _node_id(ray, node_ip)
    opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    # the env's interpreter has none of the host-side modules on its path: EnvServlet
    # and what it uses of them travel by value
    from ray import cloudpickle

    for module in SERVLET_MODULES:
        cloudpickle.register_pickle_by_value(sys.modules[module])
    actor = ray.remote(EnvServlet).options(**opts).remote(name, env_dir, address)
    try:
        info = ray.get(actor.ready.remote(), timeout=READY_TIMEOUT)
    except Exception as exc:
        ray.kill(actor, no_restart=True)
        why = _why_not_started(ray, exc, asked, py_executable, node_id,
                               f"node {node_ip}" if node_ip else "the head node")
        raise SystemExit(json.dumps({"error": f"servlet {name!r} did not start: {why}"})) from None
    # who this servlet is, recorded in the state: callers trust only this actor (Ray
    # gives ids, nobody picks one) and, on its socket, only this process (pid and start
    # time: a pid alone is reused)
    info["actor_id"] = actor._actor_id.hex()
    _write_started(env_dir, info["actor_id"])
    if kept is not None:  # what the servlet it replaced could not write, and why
        info["restored"]["lost"].update(kept.get("lost") or {})
        if kept.get("error"):
            info["restored"]["lost"]["*"] = kept["error"]
    info["start_ticks"] = process_start_ticks(info["pid"])
    return info


GO_TIMEOUT = float(os.environ.get("RHPLAN_SERVLET_GO_TIMEOUT", "3600"))


def _await_go(address: str, go_file: str):
    """Started while its env is still being built (manage.PendingStart): join Ray as
    soon as it answers (a driver's Ray import and connection, ~1 s, then overlap the
    env's installs), and go on once go_file appears: "go" starts the servlet, anything
    else leaves, and so does a removed env. Leaves as well when rhplan's command is gone
    (its parent changed, or nobody reads its output) or after GO_TIMEOUT s, saying
    {"expired": ...} so rhplan starts it the usual way."""
    parent, deadline, ray = os.getppid(), time.time() + GO_TIMEOUT, None
    env = os.path.dirname(os.path.dirname(go_file))
    while not os.path.exists(go_file):
        if os.getppid() != parent or _unread():
            os._exit(0)  # nobody to answer; and no Ray shutdown to wait for
        if not os.path.isdir(env):  # removed (a refused env): no servlet for it
            print(json.dumps({"cancelled": True}))
            raise SystemExit(0)
        if time.time() > deadline:
            print(json.dumps({"expired": "the servlet's start was not confirmed in time"}))
            raise SystemExit(0)
        if ray is None and _gcs_reachable(address, timeout=0.2):
            ray = _connect(address)
        time.sleep(0.01)
    with open(go_file, encoding="utf-8") as fh:
        said = fh.read().strip()
    os.remove(go_file)
    if said != "go":
        print(json.dumps({"cancelled": True}))
        raise SystemExit(0)
    return ray or _connect(address)


def _unread() -> bool:
    """Nobody reads this process's output any more: the rhplan that runs it is gone
    (its pipe closed; over SSH the login shell between them may live on)."""
    import select

    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))


def _write_started(env_dir: str, actor_id: str) -> None:
    path = os.path.join(env_dir, STARTED_FILE)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(actor_id)
        os.replace(tmp, path)
    except OSError:
        pass  # the next start keeps no objects, and says so


def _snapshot(ray, old, env_dir: str) -> dict:
    """Ask the servlet being replaced to write its store for its successor: only the
    actor this script started last for the env (an impostor under its name is asked
    nothing); bounded: one that does not answer in time loses its objects, and start
    says so."""
    try:
        with open(os.path.join(env_dir, STARTED_FILE), encoding="utf-8") as fh:
            ours = fh.read().strip()
    except OSError:
        ours = ""
    if not ours:
        return {"error": "its servlet was started by an older rhplan: the objects it held, "
                         "if any, were not kept"}
    if old._actor_id.hex() != ours:
        return {"error": "the actor under the servlet's name is not the one rhplan "
                         "started: nothing was asked of it"}
    try:
        kept = ray.get(old.snapshot.remote(), timeout=SNAPSHOT_TIMEOUT)
        return kept if isinstance(kept, dict) else {"error": "its objects could not be kept"}
    except Exception as exc:  # noqa: BLE001 - dead, hung or failed: its objects are lost
        return {"error": f"its objects could not be kept ({type(exc).__name__})"}


def _node_id(ray, node_ip: str) -> str:
    """The id of the live Ray node at node_ip (this driver's own node when "")."""
    if not node_ip:
        return ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("Alive") and node.get("NodeManagerAddress") == node_ip:
            return node["NodeID"]
    raise SystemExit(json.dumps({"error": f"no live Ray node at {node_ip}: its Ray is down "
                                 "or has not joined; rhplan plan shows it as drift and rhplan "
                                 "apply joins it again"}))


def _why_not_started(ray, exc: Exception, asked: dict, py_executable: str, node: str,
                     where: str = "the head node") -> str:
    """The real cause of a failed servlet start, in one phrase with its fix: Ray cannot
    place it (what it asks for against what the head offers and has free), the env's
    interpreter lacks the cluster's Ray version, or it died or did not answer."""
    kind = type(exc).__name__
    wanted = {k: v for k, v in asked.items() if v}
    try:
        from ray._private.state import state
        total = state.total_resources_per_node().get(node, {})
        free = state.available_resources_per_node().get(node, {})
    except Exception:  # a private API: without it, say what is known
        total, free = {}, {}
    offered = {k: v for k, v in total.items() if k == "CPU" or k == "GPU" or not (
        k.startswith("node:") or k.endswith("memory") or k.startswith("accelerator_type"))}
    missing = [k for k, v in wanted.items() if total and total.get(k, 0) < v]
    if missing or kind == "ActorUnschedulableError":
        return (f"Ray cannot place it ({kind}): it asks for {_fmt(wanted)}, {where} "
                f"offers {_fmt(offered)}; offer it on the cluster (custom_resources, or more "
                "CPU/GPU) or lower the env's compute")
    busy = [k for k, v in wanted.items() if free and free.get(k, 0) < v]
    mismatch = _ray_mismatch(ray.__version__, py_executable)
    if mismatch:
        return f"{mismatch}; the env needs the same Ray version as the cluster"
    if busy:
        return (f"Ray cannot place it within {READY_TIMEOUT:g} s: it asks for {_fmt(wanted)}, "
                f"{where} has {_fmt({k: free.get(k, 0) for k in busy})} free of "
                f"{_fmt({k: total.get(k, 0) for k in busy})} (other actors hold the rest); "
                "lower the env's compute or free them")
    if kind == "GetTimeoutError":
        return (f"it did not answer within {READY_TIMEOUT:g} s; the head's Ray logs "
                "(raylet.err, worker logs) under its temp dir say why")
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"its process failed at start ({kind}: {first})"


def _ray_mismatch(version: str, py_executable: str) -> str:
    """Why the env's interpreter cannot run a Ray worker of this cluster, or ''."""
    try:
        p = subprocess.run([py_executable, "-I", "-c", "import ray; print(ray.__version__)"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the env's interpreter {py_executable} cannot run ({type(exc).__name__})"
    if p.returncode != 0:
        return f"the env's interpreter {py_executable} cannot import ray (cluster: Ray {version})"
    have = p.stdout.strip()
    return "" if have == version else f"the env has Ray {have}, the cluster Ray {version}"


def _fmt(res: dict) -> str:
    return "{" + ", ".join(f"{k} = {v:g}" for k, v in sorted(res.items())) + "}"


def stop(address: str, *names: str) -> dict:
    ray = _connect(address)
    out = {}
    for name in names:
        a = _actor(ray, name)
        if a is not None:
            ray.kill(a, no_restart=True)
        out[name] = a is not None
    return out


def status(address: str, *names: str) -> dict:
    ray = _connect(address)
    out = {}
    for name in names:
        a = _actor(ray, name)
        if a is None:
            out[name] = {"alive": False}
            continue
        try:
            info = ray.get(a.ready.remote(), timeout=10)
            out[name] = {"alive": True, "pid": info["pid"],
                         "uptime": time.time() - info["started"]}
        except Exception as exc:
            out[name] = {"alive": False, "error": type(exc).__name__}
    return out


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    result = {"start": start, "stop": stop, "status": status}[command](*args)
    print(json.dumps(result))
