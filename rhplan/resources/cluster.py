"""cluster "NAME" { provider = ... }: hosts, brought up by a provider plugin."""
from __future__ import annotations

from typing import Any

from rhplan.config.load import ResourceConfig
from rhplan.provider import RunContext, load_provider
from rhplan.resources.base import ResourceType
from rhplan.state.model import ResourceState, State


class ClusterType(ResourceType):
    after_apply = ("ips", "root_dir")

    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        name = attrs["provider"]
        line = rc.block.attrs["provider"].line
        if name not in ctx._providers:
            ctx._providers[name] = load_provider(name, rc.file, line)
        return ctx.provider(name).plan_cluster(rc.name, attrs, ctx, rc.file, rc.line)

    def create(self, rs: ResourceState, ctx: RunContext, state: State) -> ResourceState:
        attrs, private = ctx.provider(rs.provider).create(rs.attributes, ctx)
        rs.attributes, rs.private = attrs, private
        return rs

    def read(self, rs: ResourceState, ctx: RunContext, state: State
             ) -> tuple[ResourceState | None, list[str]]:
        attrs = ctx.provider(rs.provider).read(rs.attributes, rs.private, ctx)
        if attrs is None:
            return None, [f"{rs.address} no longer exists"]
        notes = [f"{rs.address}: {k} changed outside rhplan" for k in sorted(attrs)
                 if attrs.get(k) != rs.attributes.get(k)]
        rs.attributes = attrs
        return rs, notes

    def update(self, before: ResourceState, after: ResourceState, ctx: RunContext,
               state: State) -> ResourceState:
        attrs, private = ctx.provider(after.provider).update(
            before.attributes, after.attributes, before.private, ctx)
        after.attributes, after.private = attrs, private
        return after

    def delete(self, rs: ResourceState, ctx: RunContext, state: State) -> None:
        ctx.provider(rs.provider).delete(rs.attributes, rs.private, ctx)
