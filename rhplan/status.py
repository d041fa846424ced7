"""What `rhplan status` and `rhplan run` need: live health of clusters and servlets,
and a command run inside an env — all through the provider's connection."""
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

from rhplan import hostside, ray_head
from rhplan.connection import CommandResult, Connection
from rhplan.errors import ProviderError, RhplanError
from rhplan.provider import RunContext
from rhplan.servlets.transport import write_output
from rhplan.state.model import ResourceState, State


def cluster_status(state: State, chdir: str, parallelism: int = 10) -> list[dict[str, Any]]:
    ctx = RunContext(Path(chdir).absolute())
    clusters = sorted(a for a, r in state.resources.items() if r.type == "cluster")
    envs: dict[str, dict[str, str]] = {addr: {} for addr in clusters}
    for r in state.resources.values():
        if r.type == "env" and r.attributes.get("cluster") in envs:
            envs[r.attributes["cluster"]][r.attributes["name"]] = str(
                r.attributes.get("path") or "")
    for addr in clusters:
        ctx.provider(state.resources[addr].provider)  # loaded once, before the threads
    # clusters are asked in parallel: each costs an SSH connection and one command
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(clusters)))) as pool:
        return list(pool.map(lambda a: _one_cluster(a, state.resources[a], envs[a], ctx),
                             clusters))


# status_probe.py (standard library only) runs after ray_host.py's functions
_PROBE = hostside.Script("status_probe", ray_head.OWNED_PIDS_FN + "\n" + resources.files(
    "rhplan.servlets").joinpath("status_probe.py").read_text())
PROBE_TIMEOUT = 30.0


def _probe(conn: Connection, a: dict[str, Any], p: dict[str, Any], envs: dict[str, str]
           ) -> dict[str, Any]:
    """One command on the head (status_probe.py, standard library only): Ray's processes,
    its GCS, the gateway and each servlet, from the process table. No Ray driver."""
    host, _, port = str(a.get("ray_address") or ":0").rpartition(":")
    args = [p["ray_temp_dir"], p.get("ray_token_path") or "", host or "127.0.0.1",
            port or "0", f"{a['root_dir']}/ray", json.dumps(envs)]
    what = f"reading the head's status on {conn.host}"
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


def _one_cluster(addr: str, rs: ResourceState, envs: dict[str, str], ctx: RunContext
                 ) -> dict[str, Any]:
    """What `rhplan status` shows of one cluster, through its SSH endpoint alone: one
    connection and one command, however many envs (no Ray driver, no gateway)."""
    a = rs.attributes
    report: dict[str, Any] = {"address": addr, "provider": rs.provider,
                              "ips": a.get("ips") or [], "servlets": []}
    ray: dict[str, Any] = {"status": "unknown", "address": a.get("ray_address"),
                           "version": a.get("ray_version")}
    servlets: dict[str, Any] = {}
    report["gateway"] = None
    head = (a.get("ips") or ["?"])[0]
    try:
        if not a.get("ray_address") or not rs.private.get("ray_temp_dir"):
            raise KeyError("ray_address")
        conn = ctx.provider(rs.provider).connect(a, rs.private, ctx)
        found = _probe(conn, a, rs.private, envs)
        up = found["ray"]["pids"] > 0 and found["ray"]["gcs_up"] and found["ray"]["raylet_up"]
        ray["status"] = "running" if up else "stopped"
        if not up:
            ray["error"] = (f"rhplan's Ray is not running on the head {head} (" + (
                "no process of it" if not found["ray"]["pids"] else
                "its GCS does not answer" if not found["ray"]["gcs_up"] else
                "its raylet is gone") + "); rhplan apply starts it again")
        servlets = found["servlets"] if up else {}
        report["gateway"] = found.get("gateway")
    except KeyError:
        ray["status"] = "stopped"
        ray["error"] = "no Ray head recorded; run rhplan apply"
    except ProviderError as exc:
        ray["status"] = "unreachable"
        ray["error"] = f"the head {head} cannot be reached over SSH: {exc}"
    report["ray"] = ray
    # a head that cannot be asked says nothing of its servlets: unknown, not dead
    unknown = {"alive": None} if ray["status"] == "unreachable" else {"alive": False}
    for name in sorted(envs):
        s = servlets.get(name, unknown)
        report["servlets"].append({"env": name, **s})
    return report


# the env's files are read on the host by a fixed script; values never pass a shell
_IN_ENV = hostside.script("in_env").text


def _in_env(state: State, chdir: str, env_name: str, argv: list[str]
            ) -> tuple[Connection, list[str], str]:
    """The connection to the env's node (the head unless placed elsewhere), and the
    argv that runs argv in the env's folder with its bin first on PATH, its env vars
    and secrets."""
    from rhplan.servlets.client import find_env
    env, cluster = find_env(env_name, chdir)
    ctx = RunContext(Path(chdir).absolute())
    provider = ctx.provider(cluster.provider)
    node = env.attributes.get("node")  # an env placed on a worker node lives there
    conn = (provider.connect_host(node, cluster.attributes, cluster.private, ctx) if node
            else provider.connect(cluster.attributes, cluster.private, ctx))
    path = env.attributes["path"]
    python = env.attributes["python"]
    if not os.path.isabs(python):
        raise RhplanError(f"{env.address}: no interpreter recorded; run rhplan apply")
    return conn, [python, "-I", "-c", _IN_ENV, path, *argv], path


def run_in_env(state: State, chdir: str, env_name: str, argv: list[str]) -> CommandResult:
    """Run argv in the env (see _in_env); its output once it has finished."""
    conn, full, path = _in_env(state, chdir, env_name, argv)
    return conn.run(full, cwd=path)


def stream_in_env(state: State, chdir: str, env_name: str, argv: list[str],
                  on_output: Callable[[int, bytes], None] | None = None) -> int:
    """Run argv in the env (see _in_env) with its output written here (or handed to
    on_output) as it comes, over the provider's connection alone; its exit code."""
    conn, full, path = _in_env(state, chdir, env_name, argv)
    sink = on_output or write_output
    if hasattr(conn, "stream"):
        return int(conn.stream(full, sink, cwd=path))
    if on_output is None:  # this machine: the command writes to our stdout and stderr
        sys.stdout.flush()
        sys.stderr.flush()
        return subprocess.run(full, cwd=path, stdin=subprocess.DEVNULL, check=False).returncode
    res = conn.run(full, cwd=path)
    sink(1, res.stdout.encode())
    sink(2, res.stderr.encode())
    return res.returncode
