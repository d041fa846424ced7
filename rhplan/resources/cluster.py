"""cluster "NAME" { provider = ... }: hosts, brought up by a provider plugin, with a
Ray head rhplan owns on the first host. The resource's lifecycle and its refresh live
here; starting, joining and stopping Ray on the hosts in cluster_ray.py, the block's
checks in cluster_checks.py."""
from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from rhplan.config.model import ResourceConfig
from rhplan.errors import PartialFailure, ProviderError
from rhplan.hosts import facts
from rhplan.lazy import lazy_module
from rhplan.provider import RunContext
from rhplan.resources import cluster_checks, cluster_ray
from rhplan.resources.base import ResourceType
from rhplan.state.model import ResourceState, State

if TYPE_CHECKING:
    pass

# imported on first use: paramiko and cryptography are not needed to plan (~0.45 s)
manage = lazy_module("rhplan.ray.servlets.manage")
tls = lazy_module("rhplan.tls")



class ClusterType(ResourceType):
    after_apply = ("ips", "root_dir", "ray_address", "ray_version", "ray_python", "resources")

    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        if ctx.cache.get("validating"):
            return cluster_checks.validated(rc, attrs)
        provider = ctx.provider(attrs["provider"], rc.file, rc.block.attrs["provider"].line)
        attrs["name"] = rc.name
        cluster_checks.check_resources(rc, attrs)
        attrs = provider.plan_cluster(rc.name, attrs, ctx, rc.file, rc.line)
        attrs["ray_status"] = "running" if cluster_ray.runs_ray(provider) else "skipped"
        return attrs

    def settle(self, before: dict[str, Any], after: dict[str, Any], ctx: RunContext) -> None:
        if after.get("ray_status") == "running" and any(
                (before.get(k) or {}) != (after.get(k) or {})
                for k in ("custom_resources", "custom_resources_by_host")):
            # each node is given its resources by `ray start`: Ray starts again, in place
            after["ray_status"] = "restarting"
        provider = ctx.provider(after["provider"])
        if before.get("provider") == after["provider"]:
            settled = provider.settle(before, after)  # the provider's own copy, settled
            after.clear()
            after.update(settled)
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
            after["ray_address"] = after["ray_version"] = cluster_checks.unknown()
            return "its Ray head will be started again (servlets on it restart)"
        return ""

    def create(self, rs: ResourceState, ctx: RunContext, state: State) -> ResourceState:
        provider = ctx.provider(rs.provider)
        partial: PartialFailure | None = None
        try:
            attrs, private = provider.create(rs.attributes, ctx)
        except PartialFailure as exc:  # some hosts failed: Ray runs on the others
            attrs, private, partial = exc.attributes, exc.private, exc
        rs.attributes, rs.provider_private = attrs, private
        head = (attrs.get("ips") or [None])[0]
        if partial is not None and (attrs.get("hosts") or {}).get(head, "ready") != "ready":
            # the head is not set up: record what exists (instances cost money) and let
            # the next apply set it up again
            attrs["ray_status"] = "stopped"
            partial.resource_state = rs
            raise partial
        try:
            cluster_ray.start_ray(rs, ctx)
        except PartialFailure:
            raise  # some workers did not join: recorded by _join_workers
        except ProviderError as exc:
            # the hosts exist (instances bill, folders are made): record them with Ray
            # stopped, so the next apply starts it and destroy removes them
            attrs["ray_status"] = "stopped"
            failure = PartialFailure(str(exc), attrs, rs.provider_private)
            failure.resource_state = rs
            raise failure from None
        if partial is not None:
            partial.resource_state = rs
            raise partial
        return rs

    def read(self, rs: ResourceState, ctx: RunContext, state: State
             ) -> tuple[ResourceState | None, list[str]]:
        provider = ctx.provider(rs.provider)
        recorded = dict(rs.attributes)
        attrs = provider.read(dict(rs.attributes), rs.provider_private, ctx)
        if attrs is None:
            left = provider.leftovers(rs.attributes, rs.provider_private, ctx)
            if left:
                return self._remains(rs, left, ctx, state)
            # forgotten without a delete (its hosts went outside rhplan): the local copy
            # of its Ray token must not outlive it
            cluster_ray.remove_driver_token(rs.private.get("ray_driver_token_path"))
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
        """One command per host reads everything the plan needs (rhplan.hosts.facts); envs on
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
            hosts.append((ip, provider.connect_host(ip, a, rs.provider_private, ctx)))
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
        provider = ctx.provider(after.provider)
        down: list[tuple[str, str]] = []
        if before.private.get("ray_worker_temp_dirs") or before.private.get(
                "ray_dead_worker_temp_dirs"):
            # worker nodes on hosts this update takes away or restarts: stopped first (the
            # head sees them go) and forgotten; those still in the cluster join again
            down = cluster_ray.release_workers(after, provider.leaving(
                before.attributes, after.attributes, before.provider_private, ctx),
                before.attributes, before.provider_private, ctx)
        # the records as they were: update() changes the provider's in place
        recorded = (copy.deepcopy(before.attributes), copy.deepcopy(before.provider_private)
                    ) if down else None
        try:
            attrs, private = provider.update(before.attributes, after.attributes,
                                             before.provider_private, ctx)
        except PartialFailure as exc:
            attrs, private, partial = exc.attributes, exc.private, exc
        after.attributes, after.provider_private = attrs, private
        if down and recorded:
            cluster_ray.stop_moved(after, *recorded, down, ctx)
        if after.private.get("ray_worker_temp_dirs"):
            # a host no longer in the cluster (terminated outside rhplan) took its node
            ips = set(attrs.get("ips") or [])
            after.private["ray_worker_temp_dirs"] = {
                ip: d for ip, d in after.private["ray_worker_temp_dirs"].items() if ip in ips}
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
        if not cluster_ray.runs_ray(provider):
            attrs["ray_status"] = "skipped"
        elif (before.attributes.get("ray_status") != "running" or not attrs.get("ray_address")
                or attrs.get("ray_status") != "running" or head_moved
                or (hosts_changed and not provider.capabilities.grows and not rejoin_only)
                or (hosts_changed and before.private.get("ray_single_node", False)
                    and len(attrs.get("ips") or []) > 1)):
            cluster_ray.start_ray(after, ctx)
        elif hosts_changed:
            cluster_ray.join_new_hosts(after, ctx)
        elif autostop_changed:
            # a new watchdog replaces the old one (same command line marker: stop, start)
            conn = provider.connect(attrs, private, ctx)
            manage.stop_watchdog(conn, attrs, after.private)
            if attrs.get("autostop_mins"):
                manage.start_watchdog(conn, attrs, after.private, attrs["autostop_mins"],
                                      attrs.get("autostop_command") or cluster_ray.DEFAULT_AUTOSTOP)
        if partial is not None:
            partial.resource_state = after
            raise partial
        return after

    def delete(self, rs: ResourceState, ctx: RunContext, state: State) -> None:
        """Stop Ray on every host that may run it, then let the provider remove the hosts
        (aws terminates them) or rhplan's folders on them. A host whose Ray could not be
        stopped keeps the cluster in the state, unless the provider terminated it."""
        provider = ctx.provider(rs.provider)
        failed = cluster_ray.stop_ray(rs, ctx)
        provider.delete(rs.attributes, rs.provider_private, ctx)
        hosts = rs.attributes.get("hosts") or {}
        left = {ip: msg for ip, msg in failed.items() if not cluster_ray.host_gone(hosts.get(ip))}
        if left:
            raise ProviderError(
                f"could not stop Ray on {', '.join(sorted(left))} ({'; '.join(left.values())})"
                f"; {rs.address} stays in the state: make the host reachable and run destroy "
                "again")
        cluster_ray.remove_driver_token(rs.private.get("ray_driver_token_path"))
        tls.remove_local(rs.private.get("ray_tls"))  # its CA key and driver key



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



def _short(v: Any) -> str:
    import json
    text = json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:197] + "..."



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
