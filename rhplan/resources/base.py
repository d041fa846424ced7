"""What the planner and apply need from a resource type."""
from __future__ import annotations

from typing import Any

from rhplan.config.model import ResourceConfig
from rhplan.provider import RunContext
from rhplan.state.model import ResourceState, State


class ResourceType:
    # attributes only apply can tell; they are "(known after apply)" on create
    after_apply: tuple[str, ...] = ()

    def plan_values(self, rc: ResourceConfig, attrs: dict[str, Any], ctx: RunContext,
                    planned: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Validate and add what is computed at plan time. planned holds the planned
        attributes of every resource this one depends on."""
        return attrs

    def replaced_with(self, attrs: dict[str, Any]) -> list[str]:
        """Addresses whose replacement forces this resource to be replaced too."""
        return []

    def settle(self, before: dict[str, Any], after: dict[str, Any], ctx: RunContext) -> None:
        """Fill in desired values only the recorded attributes can tell (e.g. every
        recorded host should be ready); called before diffing an existing resource."""

    def replacement(self, before: dict[str, Any], after: dict[str, Any], changed: list[str],
                    ctx: RunContext) -> tuple[list[str], str]:
        """Beyond the schema's force_new: (attributes whose change forces replacement
        here, why); e.g. an instance type EC2 cannot resize in place."""
        return [], ""

    def replace_note(self) -> str:
        """What a replacement means beyond the attributes (added to the plan's reason)."""
        return ""

    def refine_update(self, before: dict[str, Any], after: dict[str, Any],
                      changed: list[str]) -> str:
        """Adjust an in-place update's planned attributes (mark what it will recompute as
        unknown) and say what else it does; "" when nothing."""
        return ""

    def create(self, rs: ResourceState, ctx: RunContext, state: State) -> ResourceState:
        return rs

    def read(self, rs: ResourceState, ctx: RunContext, state: State
             ) -> tuple[ResourceState | None, list[str]]:
        """(the resource as it really is or None if gone, notes describing drift)."""
        return rs, []

    def update(self, before: ResourceState, after: ResourceState, ctx: RunContext,
               state: State) -> ResourceState:
        return after

    def delete(self, rs: ResourceState, ctx: RunContext, state: State) -> None:
        return None
