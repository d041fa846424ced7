"""The Ray head rhplan owns on a cluster: start, check, stop — through a Connection.

rhplan's Ray never collides with a Ray the user runs, nor lets other users of the
host in: it has its own temp dir (random, 0700, under the user's own 0700 folder,
checked before every use; hostside/ray_host.py), runs with umask 077, has its own free ports
and its own auth token (Ray 2.60 turns token auth on by itself, so
every process rhplan starts gets RAY_AUTH_MODE=token and the token's path
explicitly). It is stopped by the processes that belong to its temp dir (and their
children), never with `ray stop`, which would kill every Ray of the user.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rhplan import hostside
from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection

START_TIMEOUT = 120.0

# Custom Ray resources (`ray start --resources`): names a person would write (they
# travel as JSON on a command line and as Ray's own keys), none of Ray's built-in ones
_RESOURCE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_BUILTIN_RESOURCES = {"cpu": "resources.CPU / compute.CPU", "gpu": "resources.GPU / compute.GPU",
                      "memory": None, "object_store_memory": None}
MAX_RESOURCE_AMOUNT = 1e12  # Ray keeps amounts as fixed point in an int64


def resource_problem(name: object, amount: object, builtin_ok: bool = False) -> str | None:
    """Why `name = amount` cannot be a Ray resource request or offer, or None. With
    builtin_ok, CPU and GPU are accepted (an env's compute asks for them)."""
    if not isinstance(name, str) or not _RESOURCE_NAME.fullmatch(name):
        return (f"resource name {name!r} is not allowed: use a letter, then letters, digits, "
                "'_', '.' or '-' (at most 64)")
    if name.lower() in _BUILTIN_RESOURCES and not (builtin_ok and name in ("CPU", "GPU")):
        where = _BUILTIN_RESOURCES[name.lower()]
        return (f"{name!r} is one of Ray's own resources, not a custom one"
                + (f"; use {where}" if where else ""))
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        return f"{name} = {amount!r} is not a number"
    if not math.isfinite(amount) or amount < 0 or amount > MAX_RESOURCE_AMOUNT:
        return f"{name} = {amount:g} must be a number from 0 to {MAX_RESOURCE_AMOUNT:g}"
    return None


# Host-side code (rhplan/hostside/ray_host.py): the node's private temp dir and its
# processes. Host scripts that use owned_pids / raylet_up / gcs_up run after this text.
OWNED_PIDS_FN = hostside.script("ray_host").text
_HOST = hostside.script("ray_host", after="sys.exit(main())")


@dataclass(frozen=True)
class RayHead:
    address: str  # host:port of the GCS
    version: str
    temp_dir: str
    token_path: str
    single_node: bool = True

    def to_private(self) -> dict[str, Any]:
        return {"ray_temp_dir": self.temp_dir, "ray_token_path": self.token_path,
                "ray_single_node": self.single_node}


def ray_env(token_path: str, single_node: bool = True,
            tls: dict[str, str] | None = None) -> dict[str, str]:
    """What every process talking to rhplan's Ray needs (drivers included). tls: the
    paths of the process's certificate, key and the cluster's CA (multi-node clusters)."""
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": token_path,
        "RAY_USAGE_STATS_ENABLED": "0",
        # no Prometheus exporter: it answers without auth, on every interface of a node
        # that is not on loopback (issue 16); rhplan reads none of Ray's metrics
        "RAY_enable_metrics_collection": "0",
        # ray[default]'s dashboard head (started even with --include-dashboard=false)
        # serves its own metrics on 0.0.0.0:44227 whatever the above says; Ray 2.60 has
        # no switch for it, but a port that cannot be bound makes it log an error and
        # go on without that server (dashboard/head.py catches it)
        "DASHBOARD_METRIC_PORT": "65536",
    }
    if single_node:
        # keep a one-host Ray on its given address (loopback); with it, no second node
        # can join (see FIELD-NOTES), so multi-node clusters go without
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    elif tls:
        # between nodes every gRPC channel is mutual TLS with the cluster's CA: the
        # token in each call's metadata never crosses the network in cleartext
        env.update(RAY_USE_TLS="1", RAY_TLS_SERVER_CERT=tls["cert"],
                   RAY_TLS_SERVER_KEY=tls["key"], RAY_TLS_CA_CERT=tls["ca"])
    return env


def private_env(private: dict[str, Any], driver: bool = False) -> dict[str, str]:
    """The Ray settings for a process on the head (default) or a driver on this machine."""
    token = private.get("ray_driver_token_path") if driver else None
    tls = (private.get("ray_tls") or {}).get("driver" if driver else "head")
    return ray_env(token or private["ray_token_path"], private.get("ray_single_node", True),
                   tls)


def temp_dir_key(node: str) -> str:
    """The fixed part of a node's temp dir name (node: the cluster's root dir, or
    root@host for a worker): a new start finds the node's leftovers by it; the rest of
    the name is random (hostside/ray_host.py)."""
    return hashlib.sha256(node.encode()).hexdigest()[:8]


def legacy_temp_dir(node: str) -> str:
    """The shared, predictable temp dir older rhplan gave a node: still stopped and
    removed (when this user's) so clusters recorded with it upgrade cleanly."""
    return f"/tmp/rhplan-ray-{hashlib.sha256(node.encode()).hexdigest()[:12]}"


def _host(conn: Connection, python: str, what: str, *args: str) -> dict[str, Any]:
    """Run one ray_host.py command; a refusal is a one-line ProviderError."""
    return dict(hostside.run_json(conn, python, _HOST, *args, what=f"{what} on {conn.host}"))


def private_argv(argv: list[str]) -> list[str]:
    """argv run with umask 077: what a process of rhplan's Ray makes on the host (logs
    with what servlets print, sockets, spilled objects, a driver's event logs) is the
    user's alone; its children (workers, servlets, the gateway) inherit it."""
    return ["sh", "-c", 'umask 077 && exec "$@"', "sh", *argv]


def _fresh(conn: Connection, ray_python: str, node: str, token_path: str) -> dict[str, Any]:
    """One round trip before a node starts: stop what an earlier start of this node left
    (found by its temp dirs, and the cluster's token when given), remove those dirs and
    make a new private one ("temp_dir"); 8 free ports, the host's HOME and PATH, and
    the Ray version of ray_python (ray_host.py `fresh`)."""
    return _host(conn, ray_python, "making Ray's temp dir", "fresh", temp_dir_key(node),
                 legacy_temp_dir(node), token_path, "8")


def _node_argv(conn: Connection, ray_python: str, found: dict[str, Any], token_path: str,
               single_node: bool, node_ip: str, num_cpus: int, num_gpus: int,
               resources: dict[str, float] | None = None,
               tls: dict[str, str] | None = None) -> tuple[list[str], list[int]]:
    """`ray start` for one node, in a clean environment, on the free ports `found` (from
    _fresh); and the ports left for the caller (the head's GCS). `resources`: the node's
    custom resources. Ray binds its servers to the node's address: a single node's is
    127.0.0.1, so nothing of it listens beyond loopback; the nodes of a bigger cluster
    talk TLS."""
    if not single_node and not tls:
        raise ProviderError(f"Ray on {conn.host}: a multi-node cluster needs its TLS files")
    temp_dir = found["temp_dir"]
    nm, om, dash, agent_grpc, agent_http, metrics, rt_env, gcs = found["ports"]
    ray_bin = ray_python.rsplit("/", 1)[0] + "/ray"
    # A clean environment: Raylet hands its own to every worker, so whatever the shell
    # that ran apply holds (cloud keys, one env's secrets) would reach every servlet.
    clean = [f"HOME={found['home']}", f"PATH={found['path']}", "LANG=C.UTF-8",
             *[f"{k}={v}" for k, v in ray_env(token_path, single_node, tls).items()]]
    argv = [
        "env", "-i", *clean, ray_bin, "start", f"--node-ip-address={node_ip}",
        f"--temp-dir={temp_dir}", f"--dashboard-port={dash}",
        f"--node-manager-port={nm}", f"--object-manager-port={om}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--dashboard-agent-listen-port={agent_http}",
        f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={rt_env}",
        f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}", "--disable-usage-stats",
    ]
    if resources:
        for name, amount in resources.items():  # checked while planning; never trust it here
            problem = resource_problem(name, amount)
            if problem:
                raise ProviderError(f"custom resource on {conn.host}: {problem}")
        argv.append("--resources=" + json.dumps(resources, sort_keys=True))
    return argv, [gcs]


def _check(res: Any, conn: Connection, what: str) -> None:
    if not res.ok:
        tail = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise ProviderError(f"{what} on {conn.host} failed: {tail[0]}")


def start(conn: Connection, ray_python: str, root_dir: str, num_cpus: int, num_gpus: int = 0,
          node_ip: str = "127.0.0.1", single_node: bool = True,
          resources: dict[str, float] | None = None,
          tls: dict[str, str] | None = None) -> RayHead:
    """Start the head on this host (stopping a leftover one of the same cluster first),
    offering `resources` (custom Ray resources) besides its CPUs and GPUs. A single
    node runs on 127.0.0.1 whatever the host's address (callers come through SSH);
    a head that others join runs on node_ip with TLS (tls: its files' paths)."""
    return _start(conn, ray_python, root_dir, num_cpus, num_gpus, node_ip, single_node,
                  resources, tls, background=False)[0]


def start_background(conn: Connection, ray_python: str, root_dir: str, num_cpus: int,
                     num_gpus: int = 0, resources: dict[str, float] | None = None
                     ) -> tuple[RayHead, Future[None]]:
    """start() of a single-node head that returns once what its record needs is known
    (its temp dir, ports, token and Ray version: one round trip), while `ray start`
    itself (3-9 s) runs on: envs are built meanwhile. The Future is done when the head
    runs; it raises the start's ProviderError (after cleaning up what it started)."""
    head, ready = _start(conn, ray_python, root_dir, num_cpus, num_gpus, "127.0.0.1", True,
                         resources, None, background=True)
    assert ready is not None
    return head, ready


def _start(conn: Connection, ray_python: str, root_dir: str, num_cpus: int, num_gpus: int,
           node_ip: str, single_node: bool, resources: dict[str, float] | None,
           tls: dict[str, str] | None, background: bool
           ) -> tuple[RayHead, Future[None] | None]:
    if single_node:
        node_ip = "127.0.0.1"
    token_path = f"{root_dir}/ray/token"
    found = _fresh(conn, ray_python, root_dir, token_path)
    temp_dir = found["temp_dir"]
    conn.put_bytes(secrets.token_hex(32).encode(), token_path, mode=0o600)
    argv, (gcs,) = _node_argv(conn, ray_python, found, token_path, single_node, node_ip,
                              num_cpus, num_gpus, resources, tls)
    # --no-monitor: rhplan does not autoscale, and the monitor's Prometheus server
    # (ray[default]) binds every interface of a head that is not on loopback
    argv += ["--head", f"--port={gcs}", "--include-dashboard=false", "--no-monitor"]
    version = found.get("ray_version") or conn.run(
        [ray_python, "-I", "-c", "import ray; print(ray.__version__)"], timeout=60).stdout.strip()
    head = RayHead(f"{node_ip}:{gcs}", version, temp_dir, token_path, single_node)

    def launch() -> None:
        _check(_run_or_clean_up(conn, argv, ray_python, temp_dir, token_path), conn,
               "starting the Ray head")

    if background:
        return head, _STARTS.submit(launch)
    launch()
    return head, None


# `ray start`s left running by start(background=True). Its threads are not daemons: a
# process ends only after every start it began has finished (and cleaned up if it failed)
_STARTS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="rhplan-ray-start")


def join(conn: Connection, ray_python: str, head: RayHead, root_dir: str, token: bytes,
         node_ip: str, num_cpus: int, num_gpus: int = 0, host: str | None = None,
         resources: dict[str, float] | None = None,
         tls: dict[str, str] | None = None) -> str:
    """Start a worker node on this host and join it to head (same token). Its temp dir
    is its own, named by the host rhplan reached: test hosts (network namespaces, or
    emulated instances behind one sshd) share one filesystem and may share an address."""
    token_path = f"{root_dir}/ray/token"
    # only this node's own leftovers (by temp dir): matching by the cluster's token would
    # also catch the head's agents where hosts share a process table (test namespaces)
    found = _fresh(conn, ray_python, f"{root_dir}@{host or node_ip}", "")
    temp_dir = found["temp_dir"]
    conn.put_bytes(token, token_path, mode=0o600)
    argv, _ = _node_argv(conn, ray_python, found, token_path, False, node_ip, num_cpus,
                         num_gpus, resources, tls)
    argv += [f"--address={head.address}"]
    _check(_run_or_clean_up(conn, argv, ray_python, temp_dir, ""), conn,
           f"joining {node_ip} to the Ray head")
    return temp_dir


def _run_or_clean_up(conn: Connection, argv: list[str], ray_python: str, temp_dir: str,
                     token_path: str) -> Any:
    """Run `ray start`; if it fails (e.g. "node timed out during startup" on a loaded
    host) it leaves what it had started (log monitor, raylet...), which no state records
    and so no destroy would stop: stop this node's processes by its temp dir now."""
    res = conn.run(private_argv(argv), timeout=START_TIMEOUT)
    try:
        # Ray chmods its folders 0777 at node start (inside this user's 0700 folder):
        # take that back (a worker's start opens them again; the parent keeps others out)
        _host(conn, ray_python, "sealing Ray's temp dir", "seal", temp_dir)
    except ProviderError:
        if res.ok:  # a started node the state would not record: stop it, then say why
            try:
                stop(conn, ray_python, temp_dir, token_path)
            except ProviderError:
                pass
            raise
    if not res.ok:
        try:
            stop(conn, ray_python, temp_dir, token_path)
        except ProviderError:
            pass  # the start's own error is the one to report
    return res


def _status(conn: Connection, ray_python: str, temp_dir: str, port: int, token_path: str,
            host: str = "127.0.0.1") -> dict[str, Any]:
    """The node's pids, whether its head answers, and what is wrong with its temp dir
    ("problem": not this user's, a symlink, open to others), if anything."""
    return _host(conn, ray_python, "checking Ray", "status", temp_dir, str(port), token_path,
                 host)


def is_running(conn: Connection, ray_python: str, address: str, temp_dir: str,
               token_path: str) -> bool:
    host, _, port = address.rpartition(":")
    st = _status(conn, ray_python, temp_dir, int(port), token_path, host)
    if st["problem"]:
        raise ProviderError(f"Ray on {conn.host} is not used: {st['problem']}")
    return bool(st["pids"]) and st["gcs_up"]


def stop_worker(conn: Connection, ray_python: str, temp_dir: str) -> None:
    """Stop one worker node by its temp dir only (its processes and their children):
    matching by token would also catch the head's where hosts share a process table."""
    stop(conn, ray_python, temp_dir, "")


def stop(conn: Connection, ray_python: str, temp_dir: str, token_path: str,
         fallback_python: str | None = None) -> None:
    """Stop a node by its temp dir (and token). Its scripts need only the standard
    library: when ray_python is gone (rhplan's folder was removed under a running Ray),
    fallback_python runs them."""
    try:
        st = _status(conn, ray_python, temp_dir, 0, token_path)
    except ProviderError:
        if not fallback_python:
            raise
        ray_python = fallback_python
        st = _status(conn, ray_python, temp_dir, 0, token_path)
    if st["pids"]:  # this user's processes only, whatever the folder's state
        stop_pids(conn, ray_python, st["pids"])
    # removed only when it is still this user's private folder (checked on the host)
    _host(conn, ray_python, "removing Ray's temp dir", "remove", temp_dir)


def stop_pids(conn: Connection, ray_python: str, pids: list[int]) -> None:
    """SIGTERM the pids, then SIGKILL what is left (some Ray daemons ignore SIGTERM),
    waiting with a bound (ray_host.py `kill`)."""
    try:
        left = _host(conn, ray_python, "stopping Ray processes", "kill", *map(str, pids))["left"]
    except ProviderError as exc:
        raise ProviderError(f"could not stop Ray processes {pids} on {conn.host}: {exc}"
                            ) from None
    if left:
        raise ProviderError(f"could not stop Ray processes {pids} on {conn.host}: "
                            f"{left} still run after SIGKILL")


def running_pids(conn: Connection, ray_python: str, root_dir: str) -> list[int]:
    """The processes of rhplan's Ray head for root_dir on this host (what a new start of
    it would stop first): how import tells a cluster that runs rhplan's Ray."""
    found = _host(conn, ray_python, "looking for rhplan's Ray", "leftovers",
                  temp_dir_key(root_dir), legacy_temp_dir(root_dir), "")
    return [int(p) for p in found.get("pids") or []]
