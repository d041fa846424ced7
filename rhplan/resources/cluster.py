"""cluster "NAME" { provider = ... }: hosts, brought up by a provider plugin, with a
Ray head rhplan owns on the first host."""
from __future__ import annotations

from typing import Any

from rhplan import ray_head
from rhplan.config.load import ResourceConfig
from rhplan.provider import RunContext, load_provider
from rhplan.resources.base import ResourceType
from rhplan.state.model import ResourceState, State


class ClusterType(ResourceType):
    after_apply = ("ips", "root_dir", "ray_address", "ray_version", "ray_python", "resources")

    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        name = attrs["provider"]
        line = rc.block.attrs["provider"].line
        if name not in ctx._providers:
            ctx._providers[name] = load_provider(name, rc.file, line)
        attrs = ctx.provider(name).plan_cluster(rc.name, attrs, ctx, rc.file, rc.line)
        attrs["ray_status"] = "running"
        return attrs

    def refine_update(self, before: dict[str, Any], after: dict[str, Any],
                      changed: list[str]) -> str:
        if "ray_status" in changed:
            after["ray_address"] = after["ray_version"] = _unknown()
            return "its Ray head will be started again (servlets on it restart)"
        return ""

    def create(self, rs: ResourceState, ctx: RunContext, state: State) -> ResourceState:
        provider = ctx.provider(rs.provider)
        attrs, private = provider.create(rs.attributes, ctx)
        rs.attributes, rs.private = attrs, private
        self._start_ray(rs, ctx)
        return rs

    def _start_ray(self, rs: ResourceState, ctx: RunContext) -> None:
        provider = ctx.provider(rs.provider)
        a = rs.attributes
        conn = provider.connect(a, rs.private, ctx)
        a["ray_python"] = provider.ray_python(conn, a, rs.private, ctx)
        resources = a.get("resources") or {}
        head = ray_head.start(conn, a["ray_python"], a["root_dir"],
                              int(resources.get("CPU", 1)), int(resources.get("GPU", 0)))
        a["ray_address"], a["ray_version"], a["ray_status"] = head.address, head.version, "running"
        rs.private.update(head.to_private())

    def read(self, rs: ResourceState, ctx: RunContext, state: State
             ) -> tuple[ResourceState | None, list[str]]:
        provider = ctx.provider(rs.provider)
        attrs = provider.read(rs.attributes, rs.private, ctx)
        if attrs is None:
            return None, [f"{rs.address} no longer exists"]
        notes = [f"{rs.address}: {k} changed outside rhplan" for k in sorted(attrs)
                 if attrs.get(k) != rs.attributes.get(k)]
        if attrs.get("ray_address") and rs.private.get("ray_temp_dir"):
            conn = provider.connect(attrs, rs.private, ctx)
            if not ray_head.is_running(conn, attrs["ray_python"], attrs["ray_address"],
                                       rs.private["ray_temp_dir"], rs.private["ray_token_path"]):
                attrs = dict(attrs, ray_status="stopped")
                notes.append(f"{rs.address}: its Ray head ({attrs['ray_address']}) is not running")
        rs.attributes = attrs
        return rs, notes

    def update(self, before: ResourceState, after: ResourceState, ctx: RunContext,
               state: State) -> ResourceState:
        attrs, private = ctx.provider(after.provider).update(
            before.attributes, after.attributes, before.private, ctx)
        after.attributes, after.private = attrs, private
        if before.attributes.get("ray_status") != "running" or not attrs.get("ray_address"):
            self._start_ray(after, ctx)
        return after

    def delete(self, rs: ResourceState, ctx: RunContext, state: State) -> None:
        provider = ctx.provider(rs.provider)
        temp_dir = rs.private.get("ray_temp_dir")
        if temp_dir and rs.attributes.get("ray_python"):
            conn = provider.connect(rs.attributes, rs.private, ctx)
            ray_head.stop(conn, rs.attributes["ray_python"], temp_dir, rs.private["ray_token_path"])
        provider.delete(rs.attributes, rs.private, ctx)


def _unknown() -> Any:
    from rhplan.config.evaluate import UNKNOWN
    return UNKNOWN
