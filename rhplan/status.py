"""What `rhplan status` and `rhplan run` need: live health of clusters and servlets,
and a command run inside an env — all through the provider's connection."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rhplan import ray_head
from rhplan.connection import CommandResult, Connection
from rhplan.errors import ProviderError, RhplanError
from rhplan.provider import RunContext
from rhplan.servlets import manage
from rhplan.servlets.transport import write_output
from rhplan.state.model import ResourceState, State


def cluster_status(state: State, chdir: str, parallelism: int = 10) -> list[dict[str, Any]]:
    ctx = RunContext(Path(chdir).absolute())
    clusters = sorted(a for a, r in state.resources.items() if r.type == "cluster")
    envs: dict[str, list[str]] = {addr: [] for addr in clusters}
    for r in state.resources.values():
        if r.type == "env" and r.attributes.get("cluster") in envs:
            envs[r.attributes["cluster"]].append(r.attributes["name"])
    for addr in clusters:
        ctx.provider(state.resources[addr].provider)  # loaded once, before the threads
    # Clusters are asked in parallel: each costs a Ray driver start on its head (~1-4 s);
    # 8 one-host clusters took 19-21 s one after the other, 6-8 s like this (bench/load.py)
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(clusters)))) as pool:
        return list(pool.map(lambda a: _one_cluster(a, state.resources[a], sorted(envs[a]),
                                                    ctx), clusters))


def _one_cluster(addr: str, rs: ResourceState, envs: list[str], ctx: RunContext
                 ) -> dict[str, Any]:
    a = rs.attributes
    report: dict[str, Any] = {"address": addr, "provider": rs.provider,
                              "ips": a.get("ips") or [], "servlets": []}
    ray = {"status": "unknown", "address": a.get("ray_address"),
           "version": a.get("ray_version")}
    servlets: dict[str, Any] = {}
    try:
        conn = ctx.provider(rs.provider).connect(a, rs.private, ctx)
        running = bool(a.get("ray_address")) and ray_head.is_running(
            conn, a["ray_python"], a["ray_address"], rs.private["ray_temp_dir"],
            rs.private["ray_token_path"])
        ray["status"] = "running" if running else "stopped"
        if running and envs:
            servlets = manage.servlet_status(conn, a, rs.private, envs)
    except (ProviderError, KeyError) as exc:
        ray["status"] = "unreachable"
        ray["error"] = str(exc)
    report["ray"] = ray
    for name in envs:
        s = servlets.get(name, {"alive": False})
        report["servlets"].append({"env": name, **s})
    return report


# the env's files are read on the host by a fixed script; values never pass a shell
_IN_ENV = (
    'import json, os, sys\n'
    'env_dir = sys.argv[1]\n'
    'for f in ("env_vars.json", "secrets.json"):\n'
    '    p = os.path.join(env_dir, "rhplan", f)\n'
    '    if os.path.exists(p):\n'
    '        os.environ.update({k: str(v) for k, v in json.load(open(p)).items()})\n'
    'os.environ["VIRTUAL_ENV"] = env_dir\n'
    'os.environ["PATH"] = os.path.join(env_dir, "bin") + os.pathsep + os.environ["PATH"]\n'
    'try:\n'
    '    os.execvp(sys.argv[2], sys.argv[2:])\n'
    'except FileNotFoundError:\n'
    '    sys.stderr.write(f"{sys.argv[2]}: command not found\\n"); sys.exit(127)\n'
)


def _in_env(state: State, chdir: str, env_name: str, argv: list[str]
            ) -> tuple[Connection, list[str], str]:
    """The env's host connection, and the argv that runs argv in the env's folder with
    its bin first on PATH, its env vars and secrets."""
    from rhplan.servlets.client import find_env
    env, cluster = find_env(env_name, chdir)
    ctx = RunContext(Path(chdir).absolute())
    conn = ctx.provider(cluster.provider).connect(cluster.attributes, cluster.private, ctx)
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
