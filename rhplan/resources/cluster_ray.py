"""Ray on a cluster's hosts: the head on the first host, the others joined to it (with
TLS between nodes when there are several), the local copy of its token, and stopping
it all at destroy. ClusterType (resources/cluster.py) calls these at create, update
and delete; an env waits here for a head started in the background."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rhplan.errors import PartialFailure, ProviderError
from rhplan.lazy import lazy_module
from rhplan.provider import ProviderHooks, RunContext
from rhplan.ray import head as ray_head
from rhplan.state.model import ResourceState

if TYPE_CHECKING:
    from rhplan.tls import Pair

# imported on first use: paramiko and cryptography are not needed to plan (~0.45 s)
manage = lazy_module("rhplan.ray.servlets.manage")
tls = lazy_module("rhplan.tls")

# what autostop runs on an idle head unless the cluster says otherwise
DEFAULT_AUTOSTOP = "sudo -n shutdown -h now"


def _hosts(rs: ResourceState, ctx: RunContext) -> list[tuple[str, Any]]:
    return ctx.provider(rs.provider).hosts(rs.attributes, rs.provider_private, ctx)

def start_ray(rs: ResourceState, ctx: RunContext) -> None:
    """The head on the first host; every other ready host joins it, in parallel."""
    provider = ctx.provider(rs.provider)
    a = rs.attributes
    if not runs_ray(provider):
        a["ray_status"] = "skipped"
        a.update(ray_address=None, ray_version=None, ray_python=None)
        return
    hosts = _hosts(rs, ctx)
    head_ip, conn = hosts[0]
    a["ray_python"] = provider.ray_python(conn, a, rs.provider_private, ctx)
    resources = a.get("resources") or {}
    node = provider.node(head_ip, a, rs.provider_private)
    # one host: Ray on its loopback only (callers come through SSH); more hosts: on
    # the hosts' addresses, with TLS between them (a provider that adds hosts later
    # starts the head again when it first does)
    single = len(a.get("ips") or [head_ip]) == 1
    ca = None if single else tls_ca(rs, ctx, conn, new_ok=True)
    num_cpus = int(node.cpus if node.cpus is not None else resources.get("CPU", 1))
    ready = None
    if single and not a.get("autostop_mins") and ctx.cache.get(
            ("servlets_wait_for", rs.address)):
        # an env of this apply waits for it before its servlet starts (wait_for_ray):
        # Ray starts while the env is built
        head, ready = ray_head.start_background(conn, a["ray_python"], a["root_dir"],
                                                num_cpus, int(resources.get("GPU", 0)),
                                                resources=node_resources(a, head_ip))
    else:
        head = ray_head.start(conn, a["ray_python"], a["root_dir"], num_cpus,
                              int(resources.get("GPU", 0)),
                              node_ip=node.address, single_node=single,
                              resources=node_resources(a, head_ip),
                              tls=tls_node(rs, conn, head_ip, node.address, ca,
                                                 head=True)
                              if ca else None)
    a["ray_address"], a["ray_version"], a["ray_status"] = head.address, head.version, "running"
    rs.private.update(head.to_private())
    rs.private["ray_head_host"] = head_ip
    token = conn.get_bytes(head.token_path)
    # drivers on this machine (rhplan.servlet) need the token too: a local copy
    local = ctx.config_dir / ".rhplan" / "ray-tokens" / f"{a.get('name', 'cluster')}.token"
    local.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(token)
    rs.private["ray_driver_token_path"] = str(local)
    rs.private["ray_worker_temp_dirs"] = {}
    if ready is not None:
        with ctx.lock:
            ctx.cache[("ray_starting", rs.address)] = ready
        return  # one host, no watchdog: nothing else needs Ray running
    if a.get("autostop_mins"):
        manage.start_watchdog(conn, a, rs.private, a["autostop_mins"],
                              a.get("autostop_command") or DEFAULT_AUTOSTOP)
    join_workers(rs, ctx, head, token, hosts[1:], ca)

def tls_ca(rs: ResourceState, ctx: RunContext, head_conn: Any, new_ok: bool
            ) -> Pair:
    """The cluster's CA (made on its first multi-node start, kept in the state and
    0600 here and on the head; a replaced cluster starts without one), and this
    machine's driver certificate for the direct route."""
    a, p = rs.attributes, rs.private
    name = a.get("name", "cluster")
    here = tls.local_dir(ctx.config_dir, name)
    record = dict(p.get("ray_tls") or {})
    ca = tls.cluster_ca(record, here, head_conn, a["root_dir"], name, new_ok)
    if record.get("ca_cert") != ca.cert.decode():
        record = {"nodes": {}}  # a new CA: every node gets a new certificate
    head_ip = ctx.provider(rs.provider).node(a["ips"][0], a, rs.provider_private).address
    me = tls.caller_address(head_ip)
    record.update(ca_cert=ca.cert.decode(), dir=str(here),
                  driver=tls.driver_files(ca, here, [me] if me else []))
    p["ray_tls"] = record
    return ca

def tls_node(rs: ResourceState, conn: Any, ip: str, node_ip: str, ca: Pair,
              head: bool = False) -> dict[str, str]:
    """One node's certificate and key on its host (for its Ray address and the
    address rhplan reached it at); their paths."""
    record = rs.private["ray_tls"]
    # and the address Ray may advertise instead of a loopback node address
    own = tls.own_address(conn, rs.attributes["ray_python"])
    paths, cert = tls.put_node(conn, rs.attributes["root_dir"], ip,
                               list(dict.fromkeys([node_ip, ip, *own])), ca,
                               record["nodes"].get(ip))
    record["nodes"][ip] = cert
    if head:
        record["head"] = paths
    return paths

def join_workers(rs: ResourceState, ctx: RunContext, head: ray_head.RayHead,
                  token: bytes, hosts: list[tuple[str, Any]],
                  ca: Pair | None = None) -> None:
    """Join hosts to the running head, in parallel; a host that fails is recorded."""
    provider = ctx.provider(rs.provider)
    a = rs.attributes
    failed: dict[str, str] = {}
    workers: dict[str, str] = dict(rs.private.get("ray_worker_temp_dirs") or {})
    dead: dict[str, str] = dict(rs.private.get("ray_dead_worker_temp_dirs") or {})

    def join(host: tuple[str, Any]) -> None:
        ip, c = host
        own = rs.provider_private
        node = provider.node(ip, a, own)
        try:
            if dead.get(ip):  # the node's Ray that died: its leftovers go first
                ray_head.stop_worker(c, provider.ray_python(c, a, own, ctx), dead.pop(ip))
            workers[ip] = ray_head.join(c, provider.ray_python(c, a, own, ctx), head,
                                        a["root_dir"], token, node.address,
                                        int(node.cpus if node.cpus is not None else 1),
                                        host=ip, resources=node_resources(a, ip),
                                        tls=tls_node(rs, c, ip, node.address, ca)
                                        if ca else None)
        except ProviderError as exc:
            failed[ip] = str(exc)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        list(pool.map(join, hosts))
    rs.private["ray_worker_temp_dirs"] = workers
    if dead:
        rs.private["ray_dead_worker_temp_dirs"] = dead
    else:
        rs.private.pop("ray_dead_worker_temp_dirs", None)
    if failed:
        a["hosts"] = {**(a.get("hosts") or {}),
                      **{ip: f"failed: {msg}" for ip, msg in failed.items()}}
        exc = PartialFailure(f"hosts {', '.join(sorted(failed))} could not join Ray: "
                             f"{'; '.join(failed.values())}", a, rs.provider_private)
        exc.resource_state = rs
        raise exc

def join_new_hosts(rs: ResourceState, ctx: RunContext) -> None:
    """Hosts that are ready but not yet in Ray (added, or set up again) join the
    running head; the head and its servlets are left alone."""
    p = rs.private
    head = ray_head.RayHead(rs.attributes["ray_address"], rs.attributes["ray_version"],
                            p["ray_temp_dir"], p["ray_token_path"],
                            p.get("ray_single_node", True))
    hosts = _hosts(rs, ctx)
    joined = p.get("ray_worker_temp_dirs") or {}
    new = [(ip, c) for ip, c in hosts[1:] if ip not in joined]
    if new:
        token = hosts[0][1].get_bytes(head.token_path)
        ca = tls_ca(rs, ctx, hosts[0][1], new_ok=False)
        join_workers(rs, ctx, head, token, new, ca)

def stop_ray(rs: ResourceState, ctx: RunContext) -> dict[str, str]:
    """Stop the head and every worker node rhplan started, by their temp dirs, in
    parallel; {host: why} for the hosts where that failed. Hosts that are gone (a
    terminated or stopped instance) run nothing and are skipped."""
    a, p = rs.attributes, rs.private
    if not p.get("ray_temp_dir") or not a.get("ray_python"):
        return {}
    head = p.get("ray_head_host") or (a.get("ips") or [None])[0]
    # (host, temp dir, token path): workers only by their temp dir, since matching by
    # token would also catch the head's processes where hosts share a process table
    nodes = [(ip, wdir, "") for ip, wdir in (p.get("ray_worker_temp_dirs") or {}).items()]
    # and what is left of worker nodes whose Ray died (refresh, _dead_workers)
    nodes += [(ip, wdir, "") for ip, wdir in (p.get("ray_dead_worker_temp_dirs") or {}
                                              ).items()]
    nodes.append((head, p["ray_temp_dir"], p["ray_token_path"]))
    hosts = a.get("hosts") or {}
    nodes = [n for n in nodes if not host_gone(hosts.get(n[0]))]
    provider = ctx.provider(rs.provider)
    failed: dict[str, str] = {}

    def stop(node: tuple[str, str, str]) -> None:
        ip, temp_dir, token = node
        try:
            conn = provider.connect_host(ip, a, rs.provider_private, ctx)
            # rhplan's Ray venv may be gone with its folder: the scripts need only the
            # standard library, so the host's own python does as well
            ray_head.stop(conn, a["ray_python"], temp_dir, token,
                          fallback_python=a.get("python") or "python3")
        except ProviderError as exc:
            failed[ip] = str(exc)

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        list(pool.map(stop, nodes))
    return failed


def release_workers(rs: ResourceState, ips: list[str], attrs: dict[str, Any],
                    own: dict[str, Any], ctx: RunContext) -> list[tuple[str, str]]:
    """The worker nodes on the hosts an update takes away or restarts (the provider's
    leaving hook, asked before its update; attrs and own: the cluster as recorded):
    stopped by their temp dirs where the host may still run them, in parallel (so the
    head sees them go; a host that cannot be reached takes its node with it), and
    forgotten. The hosts still in the cluster after the update join it again. Returns
    (host, temp dir) of those on hosts that were down (stopped, terminated), for
    stop_moved once the update is done."""
    p = rs.private
    workers = dict(p.get("ray_worker_temp_dirs") or {})
    dead = dict(p.get("ray_dead_worker_temp_dirs") or {})
    hosts = attrs.get("hosts") or {}
    provider = ctx.provider(rs.provider)
    todo: list[tuple[str, str]] = []
    down: list[tuple[str, str]] = []
    for ip in ips:
        for record in (workers, dead):
            temp_dir = record.pop(ip, None)
            if not temp_dir or not attrs.get("ray_python"):
                continue
            if host_gone(hosts.get(ip)):
                down.append((ip, temp_dir))
            else:
                todo.append((ip, temp_dir))

    def stop(node: tuple[str, str]) -> None:
        ip, temp_dir = node
        try:
            conn = provider.connect_host(ip, attrs, own, ctx)
            ray_head.stop_worker(conn, attrs["ray_python"], temp_dir)
        except ProviderError:
            pass  # unreachable: its host takes its Ray node with it

    if todo:
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            list(pool.map(stop, todo))
    p["ray_worker_temp_dirs"] = workers
    if dead:
        p["ray_dead_worker_temp_dirs"] = dead
    else:
        p.pop("ray_dead_worker_temp_dirs", None)
    return down


def stop_moved(rs: ResourceState, attrs_before: dict[str, Any], own_before: dict[str, Any],
               down: list[tuple[str, str]], ctx: RunContext) -> None:
    """After an update: the worker nodes release_workers forgot on hosts that were down,
    where the provider says such a host is now reached at another address (its moved
    hook: a stopped instance started again gets a new public IP), are stopped there by
    their temp dirs, in case the host's stop did not end them. A host that kept its
    address needs nothing: a node's start stops what an earlier one left there."""
    provider = ctx.provider(rs.provider)
    a, own = rs.attributes, rs.provider_private
    moved = provider.moved(attrs_before, own_before, a, own)
    for old_ip, temp_dir in down:
        now = moved.get(old_ip)
        if not now or (a.get("hosts") or {}).get(now) != "ready":
            continue
        try:
            ray_head.stop_worker(provider.connect_host(now, a, own, ctx),
                                 attrs_before["ray_python"], temp_dir)
        except ProviderError:
            pass  # unreachable: nothing of the old node can run there either


def wait_for_ray(cluster: ResourceState, ctx: RunContext) -> None:
    """Wait for the cluster's Ray head when this apply started it in the background
    (start_ray); nothing when it was not. A head that failed to start is
    marked stopped in the cluster's record (the next apply starts it again) and the
    failure raised, naming the cluster."""
    with ctx.lock:
        ready = ctx.cache.get(("ray_starting", cluster.address))
    if ready is None:
        return
    try:
        ready.result(timeout=ray_head.START_TIMEOUT + 60)
    except Exception as exc:  # the start's own ProviderError, or no answer in time
        cluster.attributes["ray_status"] = "stopped"
        why = str(exc) if isinstance(exc, ProviderError) else (
            f"no answer within {ray_head.START_TIMEOUT + 60:g} s")
        raise ProviderError(f"{cluster.address}: its Ray head did not start: {why}") from None


def host_gone(status: Any) -> bool:
    """A host that runs nothing any more: its instance is terminated or stopped."""
    return str(status or "").startswith(("terminated", "stopped"))


def remove_driver_token(path: str | None) -> None:
    """The local copy of a cluster's Ray token (written by start_ray) goes with it. Only
    a file named like one rhplan writes is removed, whatever the state says."""
    if not path:
        return
    token = Path(path)
    if token.suffix != ".token" or token.parent.name != "ray-tokens":
        return
    token.unlink(missing_ok=True)
    try:
        token.parent.rmdir()  # only if no other cluster's token is left in it
    except OSError:
        pass


def runs_ray(provider: ProviderHooks) -> bool:
    """False for a provider that only provisions machines (Capabilities.runs_ray): the
    core contacts none of its hosts."""
    return provider.capabilities.runs_ray


def node_resources(attrs: dict[str, Any], host: str | None) -> dict[str, Any] | None:
    """The custom resources one host's Ray node offers: custom_resources, with that
    host's custom_resources_by_host over them; None when there are none."""
    by_host = attrs.get("custom_resources_by_host") or {}
    mine = by_host.get(host) if isinstance(by_host, dict) else None
    merged = {**(attrs.get("custom_resources") or {}), **(mine or {})}
    return merged or None
