"""cluster "NAME" { provider = ... }: hosts, brought up by a provider plugin, with a
Ray head rhplan owns on the first host."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rhplan import facts, ray_head
from rhplan.config.load import ResourceConfig
from rhplan.errors import ConfigError, PartialFailure, ProviderError
from rhplan.lazy import lazy_module
from rhplan.plugin import Provider
from rhplan.provider import RunContext
from rhplan.resources.base import ResourceType
from rhplan.state.model import ResourceState, State

if TYPE_CHECKING:
    from rhplan.tls import Pair

# imported on first use: paramiko and cryptography are not needed to plan (~0.45 s)
manage = lazy_module("rhplan.servlets.manage")
tls = lazy_module("rhplan.tls")

# what autostop runs on an idle head unless the cluster says otherwise
DEFAULT_AUTOSTOP = "sudo -n shutdown -h now"


class ClusterType(ResourceType):
    after_apply = ("ips", "root_dir", "ray_address", "ray_version", "ray_python", "resources")

    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if ctx.cache.get("validating"):
            return _validated(rc, attrs)
        provider = ctx.provider(attrs["provider"], rc.file, rc.block.attrs["provider"].line)
        attrs["name"] = rc.name
        _check_resources(rc, attrs)
        attrs = provider.plan_cluster(rc.name, attrs, ctx, rc.file, rc.line)
        attrs["ray_status"] = "running" if runs_ray(provider) else "skipped"
        return attrs

    def settle(self, before: dict[str, Any], after: dict[str, Any], ctx: RunContext) -> None:
        if after.get("ray_status") == "running" and any(
                (before.get(k) or {}) != (after.get(k) or {})
                for k in ("custom_resources", "custom_resources_by_host")):
            # each node is given its resources by `ray start`: Ray starts again, in place
            after["ray_status"] = "restarting"
        provider = ctx.provider(after["provider"])
        if before.get("provider") == after["provider"]:
            provider.settle(before, after)
        if (after.get("ray_status") == "running" and provider.capabilities.grows
                and len(before.get("ips") or []) == 1
                and _count(after.get("num_instances")) > 1):
            # a one-host head runs on loopback only: to take workers it starts again on
            # the host's address, with TLS
            after["ray_status"] = "restarting"

    def replacement(self, before: dict[str, Any], after: dict[str, Any], changed: list[str],
                    ctx: RunContext) -> tuple[list[str], str]:
        provider = ctx.provider(after["provider"])
        if before.get("provider") == after["provider"]:
            return provider.replacement(before, after, changed)
        return [], ""

    def refine_update(self, before: dict[str, Any], after: dict[str, Any],
                      changed: list[str]) -> str:
        if "ray_status" in changed:
            after["ray_address"] = after["ray_version"] = _unknown()
            return "its Ray head will be started again (servlets on it restart)"
        return ""

    def create(self, rs: ResourceState, ctx: RunContext, state: State) -> ResourceState:
        provider = ctx.provider(rs.provider)
        partial: PartialFailure | None = None
        try:
            attrs, private = provider.create(rs.attributes, ctx)
        except PartialFailure as exc:  # some hosts failed: Ray runs on the others
            attrs, private, partial = exc.attributes, exc.private, exc
        rs.attributes, rs.private = attrs, private
        head = (attrs.get("ips") or [None])[0]
        if partial is not None and (attrs.get("hosts") or {}).get(head, "ready") != "ready":
            # the head is not set up: record what exists (instances cost money) and let
            # the next apply set it up again
            attrs["ray_status"] = "stopped"
            partial.resource_state = rs
            raise partial
        try:
            self._start_ray(rs, ctx)
        except PartialFailure:
            raise  # some workers did not join: recorded by _join_workers
        except ProviderError as exc:
            # the hosts exist (instances bill, folders are made): record them with Ray
            # stopped, so the next apply starts it and destroy removes them
            attrs["ray_status"] = "stopped"
            failure = PartialFailure(str(exc), attrs, rs.private)
            failure.resource_state = rs
            raise failure from None
        if partial is not None:
            partial.resource_state = rs
            raise partial
        return rs

    def _hosts(self, rs: ResourceState, ctx: RunContext) -> list[tuple[str, Any]]:
        return ctx.provider(rs.provider).hosts(rs.attributes, rs.private, ctx)

    def _start_ray(self, rs: ResourceState, ctx: RunContext) -> None:
        """The head on the first host; every other ready host joins it, in parallel."""
        provider = ctx.provider(rs.provider)
        a = rs.attributes
        if not runs_ray(provider):
            a["ray_status"] = "skipped"
            a.update(ray_address=None, ray_version=None, ray_python=None)
            return
        hosts = self._hosts(rs, ctx)
        head_ip, conn = hosts[0]
        a["ray_python"] = provider.ray_python(conn, a, rs.private, ctx)
        resources = a.get("resources") or {}
        node = provider.node(head_ip, a, rs.private)
        # one host: Ray on its loopback only (callers come through SSH); more hosts: on
        # the hosts' addresses, with TLS between them (a provider that adds hosts later
        # starts the head again when it first does)
        single = len(a.get("ips") or [head_ip]) == 1
        ca = None if single else self._tls_ca(rs, ctx, conn, new_ok=True)
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
                                  tls=self._tls_node(rs, conn, head_ip, node.address, ca,
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
        self._join_workers(rs, ctx, head, token, hosts[1:], ca)

    def _tls_ca(self, rs: ResourceState, ctx: RunContext, head_conn: Any, new_ok: bool
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
        head_ip = ctx.provider(rs.provider).node(a["ips"][0], a, p).address
        me = tls.caller_address(head_ip)
        record.update(ca_cert=ca.cert.decode(), dir=str(here),
                      driver=tls.driver_files(ca, here, [me] if me else []))
        p["ray_tls"] = record
        return ca

    def _tls_node(self, rs: ResourceState, conn: Any, ip: str, node_ip: str, ca: Pair,
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

    def _join_workers(self, rs: ResourceState, ctx: RunContext, head: ray_head.RayHead,
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
            node = provider.node(ip, a, rs.private)
            try:
                if dead.get(ip):  # the node's Ray that died: its leftovers go first
                    ray_head.stop_worker(c, provider.ray_python(c, a, rs.private, ctx),
                                         dead.pop(ip))
                workers[ip] = ray_head.join(c, provider.ray_python(c, a, rs.private, ctx), head,
                                            a["root_dir"], token, node.address,
                                            int(node.cpus if node.cpus is not None else 1),
                                            host=ip, resources=node_resources(a, ip),
                                            tls=self._tls_node(rs, c, ip, node.address, ca)
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
                                 f"{'; '.join(failed.values())}", a, rs.private)
            exc.resource_state = rs
            raise exc

    def _join_new_hosts(self, rs: ResourceState, ctx: RunContext) -> None:
        """Hosts that are ready but not yet in Ray (added, or set up again) join the
        running head; the head and its servlets are left alone."""
        p = rs.private
        head = ray_head.RayHead(rs.attributes["ray_address"], rs.attributes["ray_version"],
                                p["ray_temp_dir"], p["ray_token_path"],
                                p.get("ray_single_node", True))
        hosts = self._hosts(rs, ctx)
        joined = p.get("ray_worker_temp_dirs") or {}
        new = [(ip, c) for ip, c in hosts[1:] if ip not in joined]
        if new:
            token = hosts[0][1].get_bytes(head.token_path)
            ca = self._tls_ca(rs, ctx, hosts[0][1], new_ok=False)
            self._join_workers(rs, ctx, head, token, new, ca)

    def read(self, rs: ResourceState, ctx: RunContext, state: State
             ) -> tuple[ResourceState | None, list[str]]:
        provider = ctx.provider(rs.provider)
        recorded = dict(rs.attributes)
        attrs = provider.read(dict(rs.attributes), rs.private, ctx)
        if attrs is None:
            left = provider.leftovers(rs.attributes, rs.private, ctx)
            if left:
                return self._remains(rs, left, ctx, state)
            # forgotten without a delete (its hosts went outside rhplan): the local copy
            # of its Ray token must not outlive it
            _remove_driver_token(rs.private.get("ray_driver_token_path"))
            return None, [f"{rs.address} no longer exists"]
        rs.attributes = attrs
        # what the provider found changed, shown as an attribute diff
        notes = [f"{rs.address}: {k}: {_short(recorded.get(k))} -> {_short(attrs.get(k))}"
                 for k in sorted(set(attrs) | set(recorded))
                 if attrs.get(k) != recorded.get(k)]
        if attrs.get("ray_address") and rs.private.get("ray_temp_dir"):
            notes += self._read_hosts(rs, ctx, state)
        exposed = _exposed(attrs, rs.private)
        if exposed:
            # started by an rhplan before issue 16: the next apply starts it again on
            # loopback (one host) or with TLS between its nodes
            attrs["ray_status"] = "exposed"
            notes.append(f"{rs.address}: its Ray {exposed}; apply starts it again safely")
        if all(s != "ready" for s in (rs.attributes.get("hosts") or {"-": "ready"}).values()):
            # its hosts still exist (instances bill, folders and Ray may be left): it stays
            # recorded until destroy removes them, and an apply sets them up again
            notes.append(f"{rs.address}: none of its hosts is set up; apply sets them up "
                         "again, destroy removes them")
        return rs, notes

    def _remains(self, rs: ResourceState, left: list[str], ctx: RunContext, state: State
                 ) -> tuple[ResourceState, list[str]]:
        """Every host is gone but parts of the cluster remain (a destroy killed after
        terminating the instances leaves their security group and key pair). Forgetting
        the cluster would orphan them: it stays recorded, host-less, so a destroy
        deletes what is left and an apply repairs it; its envs went with the hosts."""
        a = rs.attributes
        a["hosts"] = {ip: "terminated outside rhplan" for ip in a.get("ips") or []}
        a["ray_status"] = "stopped"
        envs = [r.address for r in state.resources.values()
                if r.type == "env" and r.attributes.get("cluster") == rs.address]
        with ctx.lock:  # env reads take this answer instead of reaching a gone host
            ctx.cache[("facts", rs.address)] = {"marker": False, "ray": None,
                                                "envs": dict.fromkeys(envs),
                                                "servlets": dict.fromkeys(envs, False)}
        return rs, [f"{rs.address}: its hosts are gone; {', '.join(left)} remain"]

    def _read_hosts(self, rs: ResourceState, ctx: RunContext, state: State) -> list[str]:
        """One command per host reads everything the plan needs (rhplan.facts); envs on
        this cluster take their answers from ctx.cache."""
        a, p = rs.attributes, rs.private
        envs = {r.address: r for r in state.resources.values()
                if r.type == "env" and r.attributes.get("cluster") == rs.address}
        head_host = a["ray_address"].rpartition(":")[0]
        marker = f"{a['root_dir']}/.rhplan-cluster"
        provider = ctx.provider(rs.provider)
        ips = [ip for ip in a.get("ips") or [] if (a.get("hosts") or {}).get(ip, "ready")
               == "ready"]
        hosts: list[tuple[str, Any]] = []
        for ip in ips:
            # a host that cannot be reached, or answers with another host key, stops the
            # plan: guessing "gone" would plan to re-create it and trust the new key
            hosts.append((ip, provider.connect_host(ip, a, p, ctx)))
        asks = {}
        workers = p.get("ray_worker_temp_dirs") or {}
        for ip, conn in hosts:
            ray = ({"temp_dir": p["ray_temp_dir"], "token_path": p["ray_token_path"],
                    "port": int(a["ray_address"].rpartition(":")[2]), "host": head_host}
                   if ip == hosts[0][0] else None)
            if ray is None and workers.get(ip):  # a worker: is its node's Ray alive?
                ray = {"temp_dir": workers[ip], "token_path": "", "host": head_host,
                       "port": int(a["ray_address"].rpartition(":")[2])}
            asks[ip] = (conn, {"marker": marker, "ray": ray,
                               "envs": {e: r.attributes.get("path") for e, r in envs.items()
                                        if ip == hosts[0][0] and r.attributes.get("path")},
                               "servlets": {e: r.attributes.get("servlet_pid")
                                            for e, r in envs.items()
                                            if ip == hosts[0][0]}})

        def read(item: tuple[str, tuple[Any, dict]]) -> tuple[str, Any]:
            ip, (conn, ask) = item
            try:
                return ip, facts.gather(conn, a["ray_python"], ask)
            except ProviderError:
                fallback = a.get("python") or "python3"
                if fallback == a["ray_python"]:
                    raise
                # rhplan's folder (its Ray venv with it) was removed: the script needs only
                # the standard library, and the plan must still see what runs there
                return ip, facts.gather(conn, fallback, ask)

        with ThreadPoolExecutor(max_workers=max(1, len(asks))) as pool:
            results = dict(pool.map(read, asks.items()))
        notes = []
        host_status = dict(a.get("hosts") or {})
        for ip in a.get("ips") or []:
            r = results.get(ip)
            if ip in host_status and host_status[ip] != "ready":
                continue
            if isinstance(r, dict) and not r["marker"]:
                host_status[ip] = "failed: rhplan's folder is gone"
            else:
                continue
            notes.append(f"{rs.address}: host {ip}: {host_status[ip][8:]}")
        if host_status and "hosts" in a:
            a["hosts"] = host_status
        head = results.get(ips[0]) if ips else None
        if isinstance(head, dict):
            with ctx.lock:
                ctx.cache[("facts", rs.address)] = head
            running = head["ray"]["pids"] > 0 and head["ray"]["gcs_up"]
        else:
            running = False
        if not running:
            a["ray_status"] = "stopped"
            notes.append(f"{rs.address}: its Ray head ({a['ray_address']}) is not running")
        else:
            notes += _dead_workers(rs, results, ips[1:])
        return notes

    def update(self, before: ResourceState, after: ResourceState, ctx: RunContext,
               state: State) -> ResourceState:
        partial: PartialFailure | None = None
        try:
            attrs, private = ctx.provider(after.provider).update(
                before.attributes, after.attributes, before.private, ctx)
        except PartialFailure as exc:
            attrs, private, partial = exc.attributes, exc.private, exc
        after.attributes, after.private = attrs, private
        head = (attrs.get("ips") or [None])[0]
        if partial is not None and (attrs.get("hosts") or {}).get(head, "ready") != "ready":
            # the head is still not set up (as in create): no Ray to start or join
            attrs["ray_status"] = "stopped"
            partial.resource_state = after
            raise partial
        hosts_changed = (before.attributes.get("hosts") or {}) != (attrs.get("hosts") or {})
        # only worker nodes whose Ray died (refresh, _dead_workers) came back: they join
        # the running head again; the head and the servlets on it are left alone
        rejoin_only = hosts_changed and all(
            was == DEAD_NODE for ip, was in (before.attributes.get("hosts") or {}).items()
            if (attrs.get("hosts") or {}).get(ip) != was)
        autostop_changed = any(before.attributes.get(k) != attrs.get(k)
                               for k in ("autostop_mins", "autostop_command"))
        head_before = before.private.get("ray_head_host") or (
            before.attributes.get("ips") or [None])[0]
        head_moved = head_before != (attrs.get("ips") or [None])[0]
        provider = ctx.provider(after.provider)
        if not runs_ray(provider):
            attrs["ray_status"] = "skipped"
        elif (before.attributes.get("ray_status") != "running" or not attrs.get("ray_address")
                or attrs.get("ray_status") != "running" or head_moved
                or (hosts_changed and not provider.capabilities.grows and not rejoin_only)
                or (hosts_changed and before.private.get("ray_single_node", False)
                    and len(attrs.get("ips") or []) > 1)):
            self._start_ray(after, ctx)
        elif hosts_changed:
            self._join_new_hosts(after, ctx)
        elif autostop_changed:
            # a new watchdog replaces the old one (same command line marker: stop, start)
            conn = ctx.provider(after.provider).connect(attrs, private, ctx)
            manage.stop_watchdog(conn, attrs, private)
            if attrs.get("autostop_mins"):
                manage.start_watchdog(conn, attrs, private, attrs["autostop_mins"],
                                      attrs.get("autostop_command") or DEFAULT_AUTOSTOP)
        if partial is not None:
            partial.resource_state = after
            raise partial
        return after

    def delete(self, rs: ResourceState, ctx: RunContext, state: State) -> None:
        """Stop Ray on every host that may run it, then let the provider remove the hosts
        (aws terminates them) or rhplan's folders on them. A host whose Ray could not be
        stopped keeps the cluster in the state, unless the provider terminated it."""
        provider = ctx.provider(rs.provider)
        failed = self._stop_ray(rs, ctx)
        provider.delete(rs.attributes, rs.private, ctx)
        hosts = rs.attributes.get("hosts") or {}
        left = {ip: msg for ip, msg in failed.items() if not _host_gone(hosts.get(ip))}
        if left:
            raise ProviderError(
                f"could not stop Ray on {', '.join(sorted(left))} ({'; '.join(left.values())})"
                f"; {rs.address} stays in the state: make the host reachable and run destroy "
                "again")
        _remove_driver_token(rs.private.get("ray_driver_token_path"))
        tls.remove_local(rs.private.get("ray_tls"))  # its CA key and driver key

    def _stop_ray(self, rs: ResourceState, ctx: RunContext) -> dict[str, str]:
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
        nodes = [n for n in nodes if not _host_gone(hosts.get(n[0]))]
        provider = ctx.provider(rs.provider)
        failed: dict[str, str] = {}

        def stop(node: tuple[str, str, str]) -> None:
            ip, temp_dir, token = node
            try:
                conn = provider.connect_host(ip, a, p, ctx)
                # rhplan's Ray venv may be gone with its folder: the scripts need only the
                # standard library, so the host's own python does as well
                ray_head.stop(conn, a["ray_python"], temp_dir, token,
                              fallback_python=a.get("python") or "python3")
            except ProviderError as exc:
                failed[ip] = str(exc)

        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            list(pool.map(stop, nodes))
        return failed


def wait_for_ray(cluster: ResourceState, ctx: RunContext) -> None:
    """Wait for the cluster's Ray head when this apply started it in the background
    (ClusterType._start_ray); nothing when it was not. A head that failed to start is
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


def _host_gone(status: Any) -> bool:
    """A host that runs nothing any more: its instance is terminated or stopped."""
    return str(status or "").startswith(("terminated", "stopped"))


def _exposed(attrs: dict[str, Any], private: dict[str, Any]) -> str:
    """How a running Ray an older rhplan started faces the network, or "" when it runs
    as rhplan starts it now (one host: loopback only; more: TLS between nodes)."""
    if attrs.get("ray_status") != "running" or not attrs.get("ray_address"):
        return ""
    if private.get("ray_single_node", True):
        host = attrs["ray_address"].rpartition(":")[0]
        if host.startswith("127.") or host in ("::1", "localhost"):
            return ""
        return f"listens beyond loopback ({attrs['ray_address']})"
    if not (private.get("ray_tls") or {}).get("head"):
        return f"listens on {attrs['ray_address']} without TLS"
    return ""


def _count(value: Any) -> int:
    """A planned count, 0 when it is not known yet."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _remove_driver_token(path: str | None) -> None:
    """The local copy of a cluster's Ray token (written by _start_ray) goes with it. Only
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


def runs_ray(provider: Provider) -> bool:
    """False for a provider that only provisions machines (Capabilities.runs_ray): the
    core contacts none of its hosts."""
    return provider.capabilities.runs_ray


def _short(v: Any) -> str:
    import json
    text = json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def _unknown() -> Any:
    from rhplan.config.evaluate import UNKNOWN
    return UNKNOWN


def _validated(rc: ResourceConfig, attrs: dict[str, Any]) -> dict[str, Any]:
    """validate (as Terraform's): the provider must be installed, but it is not loaded and
    plans nothing (no credentials, no network); what it would fill in is unknown."""
    from rhplan.config.schema import RESOURCE_SCHEMAS
    from rhplan.provider import available_providers
    name = attrs.get("provider")
    if isinstance(name, str) and name not in available_providers():
        have = ", ".join(sorted(available_providers())) or "none"
        raise ConfigError(f"no provider {name!r} is installed (installed: {have}); "
                          "install its package or fix the name", rc.file,
                          rc.block.attrs["provider"].line)
    _check_resources(rc, attrs)
    for key, spec in RESOURCE_SCHEMAS["cluster"].attrs.items():
        if spec.computed or (spec.optional_computed and attrs.get(key) is None):
            attrs[key] = _unknown()
    attrs["name"] = rc.name
    return attrs


def _check_resources(rc: ResourceConfig, attrs: dict[str, Any]) -> None:
    """custom_resources become `ray start --resources` JSON on every node: refuse a name
    or amount Ray would not take (or that is not plain data) with its file:line; and
    custom names in `resources` (the cluster's CPU/GPU view) belong in custom_resources."""
    line = rc.block.attrs["custom_resources"].line if "custom_resources" in rc.block.attrs \
        else rc.line
    for key, amount in (attrs.get("custom_resources") or {}).items():
        if amount is _unknown():
            continue
        problem = ray_head.resource_problem(key, amount)
        if problem:
            raise ConfigError(f"cluster {rc.name!r}: custom_resources: {problem}", rc.file, line)
    _check_by_host(rc, attrs)
    given = attrs.get("resources")
    if isinstance(given, dict):
        custom = sorted(k for k in given if k not in ("CPU", "GPU"))
        if custom:
            res_line = rc.block.attrs["resources"].line if "resources" in rc.block.attrs \
                else rc.line
            example = ", ".join(f"{k} = {given[k]}" for k in custom)
            raise ConfigError(f"cluster {rc.name!r}: resources takes CPU and GPU only; a custom "
                              f"Ray resource goes in custom_resources = {{ {example} }}, which "
                              "every node's `ray start --resources` gets", rc.file, res_line)


def _check_by_host(rc: ResourceConfig, attrs: dict[str, Any]) -> None:
    """custom_resources_by_host: keyed by the cluster's own ips (a host rhplan would
    never reach is a typo), each a valid custom_resources map."""
    by_host = attrs.get("custom_resources_by_host") or {}
    if not by_host:
        return
    line = rc.block.attrs["custom_resources_by_host"].line \
        if "custom_resources_by_host" in rc.block.attrs else rc.line
    ips = attrs.get("ips")
    known = ips is not _unknown()  # validate: from a variable without a value
    if known and not isinstance(ips, list):
        raise ConfigError(f"cluster {rc.name!r}: custom_resources_by_host needs the hosts "
                          "listed in ips (an ssh cluster); use custom_resources for every "
                          "node", rc.file, line)
    for host, resources in by_host.items():
        if known and all(isinstance(i, str) for i in ips) and host not in ips:
            raise ConfigError(f"cluster {rc.name!r}: custom_resources_by_host names {host!r}, "
                              f"which is not in ips ({', '.join(ips)}); use one of them",
                              rc.file, line)
        for key, amount in (resources or {}).items():
            problem = None if amount is _unknown() else ray_head.resource_problem(key, amount)
            if problem:
                raise ConfigError(f"cluster {rc.name!r}: custom_resources_by_host[{host!r}]: "
                                  f"{problem}", rc.file, line)


DEAD_NODE = "failed: its Ray node is down"  # a host's status after refresh found it so


def _dead_workers(rs: ResourceState, results: dict[str, Any], ips: list[str]) -> list[str]:
    """Worker nodes whose Ray is down (no raylet of theirs, or the head's GCS out of
    their reach) are drift: the host is planned to be set up and joined again (apply
    rejoins a host no longer recorded as joined), and the servlets on it start again."""
    notes = []
    joined = rs.private.get("ray_worker_temp_dirs") or {}
    for ip in ips:
        ray = (results.get(ip) or {}).get("ray") if isinstance(results.get(ip), dict) else None
        if ip in joined and isinstance(ray, dict) and not ray.get("gcs_up"):
            # kept: what is left of the dead node (a worker that outlived its raylet, the
            # temp dir) is stopped when it joins again, or by destroy
            rs.private.setdefault("ray_dead_worker_temp_dirs", {})[ip] = joined.pop(ip)
            rs.attributes["hosts"] = {**(rs.attributes.get("hosts") or {}), ip: DEAD_NODE}
            notes.append(f"{rs.address}: node {ip}'s Ray is down; apply starts it and "
                         "joins it again")
    return notes


def node_resources(attrs: dict[str, Any], host: str | None) -> dict[str, Any] | None:
    """The custom resources one host's Ray node offers: custom_resources, with that
    host's custom_resources_by_host over them; None when there are none."""
    by_host = attrs.get("custom_resources_by_host") or {}
    mine = by_host.get(host) if isinstance(by_host, dict) else None
    merged = {**(attrs.get("custom_resources") or {}), **(mine or {})}
    return merged or None
