"""What `rhplan status` and `rhplan run` need: live health of clusters and servlets,
and a command run inside an env — all through the provider's connection. The report
is data; its text is rhplan/views/status.py's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from rhplan import hostside
from rhplan.errors import ProviderError, RhplanError
from rhplan.hosts.connection import CommandResult, Connection
from rhplan.provider import RunContext
from rhplan.ray import head as ray_head
from rhplan.ray.servlets.transport import write_output
from rhplan.state.model import ResourceState, State


def cluster_status(state: State, chdir: str, parallelism: int = 10) -> list[dict[str, Any]]:
    ctx = RunContext(Path(chdir).absolute())
    clusters = sorted(a for a, r in state.resources.items() if r.type == "cluster")
    # each cluster's envs: name -> (folder, the node it is placed on; None: the head)
    envs: dict[str, dict[str, tuple[str, str | None]]] = {addr: {} for addr in clusters}
    for r in state.resources.values():
        if r.type == "env" and r.attributes.get("cluster") in envs:
            envs[r.attributes["cluster"]][r.attributes["name"]] = (
                str(r.attributes.get("path") or ""), r.attributes.get("node") or None)
    for addr in clusters:
        ctx.provider(state.resources[addr].provider)  # loaded once, before the threads
    # clusters are asked in parallel, and each cluster's nodes: one SSH command per node
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(clusters)))) as pool:
        return list(pool.map(lambda a: _one_cluster(a, state.resources[a], envs[a], ctx),
                             clusters))


# status_probe.py (standard library only) runs after ray_host.py's functions
_PROBE = hostside.Script("status_probe", ray_head.OWNED_PIDS_FN + "\n" + resources.files(
    "rhplan.ray.servlets").joinpath("status_probe.py").read_text())
PROBE_TIMEOUT = 30.0


def _probe(conn: Connection, a: dict[str, Any], p: dict[str, Any], envs: dict[str, str],
           worker_temp_dir: str = "", node: str = "") -> dict[str, Any]:
    """One command on a node (status_probe.py, standard library only): Ray's processes,
    its GCS (the head's, from a worker), its gateway (a worker's: node, its host) and
    each servlet placed there, from the process table, and the node's memory. No Ray
    driver."""
    host, _, port = str(a.get("ray_address") or ":0").rpartition(":")
    if worker_temp_dir:  # a worker finds its Ray by its temp dir and the node's token
        args = [worker_temp_dir, f"{a['root_dir']}/ray/token", host or "127.0.0.1",
                port or "0", f"{a['root_dir']}/ray", json.dumps(envs), node]
    else:
        args = [p["ray_temp_dir"], p.get("ray_token_path") or "", host or "127.0.0.1",
                port or "0", f"{a['root_dir']}/ray", json.dumps(envs)]
    what = f"reading the status of {conn.host}"
    error = ProviderError(f"{what} failed: no output")
    # rhplan's Ray Python first; the host's own when that venv is gone
    for python in dict.fromkeys(x for x in (a.get("ray_python"), a.get("python"), "python3")
                                if x):
        try:
            return dict(hostside.run_json(conn, python, _PROBE, *args, what=what,
                                          timeout=PROBE_TIMEOUT, via_stdin=True))
        except hostside.HostScriptError as exc:
            error = exc
            if exc.returncode not in (126, 127) and "No such file" not in exc.stderr:
                break
    raise error


def _one_cluster(addr: str, rs: ResourceState, envs: dict[str, tuple[str, str | None]],
                 ctx: RunContext) -> dict[str, Any]:
    """What `rhplan status` shows of one cluster, through its SSH endpoints alone: one
    connection and one command per node, the nodes in parallel, however many envs (no
    Ray driver, no gateway)."""
    a = rs.attributes
    ips = list(a.get("ips") or [])
    head = ips[0] if ips else "?"
    head_node = rs.private.get("ray_head_host") or head
    on: dict[str, dict[str, str]] = {ip: {} for ip in ips}  # node -> its envs' folders
    for name, (path, node) in envs.items():
        on.setdefault(node if node and node != head_node else head, {})[name] = path
    workers = rs.private.get("ray_worker_temp_dirs") or {}
    report: dict[str, Any] = {"address": addr, "provider": rs.provider, "ips": ips,
                              "servlets": [], "gateway": None, "nodes": []}
    ray: dict[str, Any] = {"status": "unknown", "address": a.get("ray_address"),
                           "version": a.get("ray_version")}
    recorded = bool(a.get("ray_address") and rs.private.get("ray_temp_dir"))

    def ask(ip: str) -> dict[str, Any] | ProviderError | None:
        if not recorded or (ip != head and not workers.get(ip)):
            return None  # no Ray recorded there: nothing to ask
        try:
            if ip == head:
                conn = ctx.provider(rs.provider).connect(a, rs.provider_private, ctx)
                return _probe(conn, a, rs.private, on.get(ip, {}))
            conn = ctx.provider(rs.provider).connect_host(ip, a, rs.provider_private, ctx)
            return _probe(conn, a, rs.private, on.get(ip, {}), workers[ip], ip)
        except ProviderError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, len(ips))) as pool:
        found = dict(zip(ips, pool.map(ask, ips), strict=True))
    head_up = False
    for ip in ips or [head]:
        r = found.get(ip)
        node: dict[str, Any] = {"ip": ip, "role": "head" if ip == head else "worker",
                                "memory": None, "servlets": []}
        if isinstance(r, ProviderError):
            node["ray"] = "unreachable"
            node["error"] = f"{ip} cannot be reached over SSH: {r}"
        elif r is None:
            node["ray"] = "stopped"
            why = (a.get("hosts") or {}).get(ip) or "not set up"
            node["error"] = ("no Ray head recorded; run rhplan apply" if ip == head else
                             f"its Ray has not joined ({why}); rhplan apply joins it")
        else:
            pids, gcs, raylet = r["ray"]["pids"], r["ray"]["gcs_up"], r["ray"]["raylet_up"]
            up = pids > 0 and gcs and raylet
            node["ray"] = "running" if up else "stopped"
            node["memory"] = r.get("memory")
            if not up:
                where = "the head" if ip == head else "the worker"
                node["error"] = (f"rhplan's Ray is not running on {where} {ip} (" + (
                    "no process of it" if not pids else
                    "its GCS does not answer" if ip == head and not gcs else
                    "the head's GCS is out of its reach" if not gcs else
                    "its raylet is gone") + "); rhplan apply starts it again")
            if ip == head:
                report["gateway"] = r.get("gateway")
            else:  # a worker's servlets are reached through a gateway of its own
                node["gateway"] = r.get("gateway")
        # a node that cannot be asked says nothing of its servlets: unknown, not dead
        unknown = {"alive": None} if node["ray"] == "unreachable" else {"alive": False}
        alive = r["servlets"] if isinstance(r, dict) and node["ray"] == "running" else {}
        for name in sorted(on.get(ip, {})):
            s = {"env": name, "node": ip, **alive.get(name, unknown)}
            node["servlets"].append(s)
            report["servlets"].append(s)
        if ip == head:
            head_up = node["ray"] == "running"
            ray["status"] = node["ray"]
            if node.get("error"):
                ray["error"] = (node["error"] if node["ray"] != "unreachable" else
                                f"the head {node['error']}")
        report["nodes"].append(node)
    if not head_up and ray["status"] == "unknown":
        ray["status"] = "stopped"
    report["ray"] = ray
    return report


# the env's files are read on the host by a fixed script; values never pass a shell
_IN_ENV = hostside.script("in_env").text


def _in_env(state: State, chdir: str, env_name: str, argv: list[str]
            ) -> tuple[Connection, list[str], str]:
    """The connection to the env's node (the head unless placed elsewhere), the argv
    that runs argv with the env's bin first on PATH, its env vars and secrets, and the
    folder it runs in: the env's synced working_dir, where its servlet runs (so a
    sibling module of the project imports the same way), else the env's folder."""
    from rhplan.env_lookup import find_env, host_connection
    env, cluster = find_env(env_name, chdir)
    # an env placed on a worker node lives there
    conn = host_connection(cluster, chdir, env.attributes.get("node") or "")
    path = env.attributes["path"]
    python = env.attributes["python"]
    if not os.path.isabs(python):
        raise RhplanError(f"{env.address}: no interpreter recorded; run rhplan apply")
    cwd = env.attributes.get("working_dir_remote") or path  # states from before working_dir
    return conn, [python, "-I", "-c", _IN_ENV, path, *argv], cwd


def run_in_env(state: State, chdir: str, env_name: str, argv: list[str]) -> CommandResult:
    """Run argv in the env (see _in_env); its output once it has finished."""
    conn, full, cwd = _in_env(state, chdir, env_name, argv)
    return conn.run(full, cwd=cwd)


def stream_in_env(state: State, chdir: str, env_name: str, argv: list[str],
                  on_output: Callable[[int, bytes], None] | None = None) -> int:
    """Run argv in the env (see _in_env) with its output written here (or handed to
    on_output) as it comes, over the provider's connection alone; its exit code."""
    conn, full, cwd = _in_env(state, chdir, env_name, argv)
    sink = on_output or write_output
    if hasattr(conn, "stream"):
        return int(conn.stream(full, sink, cwd=cwd))
    if on_output is None:  # this machine: the command writes to our stdout and stderr
        sys.stdout.flush()
        sys.stderr.flush()
        return subprocess.run(full, cwd=cwd, stdin=subprocess.DEVNULL, check=False).returncode
    res = conn.run(full, cwd=cwd)
    sink(1, res.stdout.encode())
    sink(2, res.stderr.encode())
    return res.returncode
