"""A Plan is plain data: what will change, how, and why. It is saved as JSON and
rendered as text by a separate view (rhplan.plan.render)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rhplan.config.evaluate import UNKNOWN
from rhplan.errors import RhplanError

PLAN_FORMAT = 1

# Terraform's action lists, by our single action names
ACTIONS = {
    "create": ["create"],
    "update": ["update"],
    "replace": ["delete", "create"],
    "delete": ["delete"],
    "no-op": ["no-op"],
}


@dataclass
class Change:
    address: str
    type: str
    name: str
    provider: str
    action: str  # create | update | replace | delete | no-op
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str = ""
    replace_because: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)

    @property
    def actions(self) -> list[str]:
        return ACTIONS[self.action]

    def to_key(self) -> Any:
        """What must match when a saved plan is applied."""
        return encode_unknown(self.after)


@dataclass
class Plan:
    lineage: str
    serial: int
    changes: list[Change]
    output_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    drift: list[dict[str, str]] = field(default_factory=list)
    destroy: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    prior_state: dict[str, Any] | None = None  # the refreshed state the plan was made against
    rhplan_version: str = ""

    def counts(self) -> tuple[int, int, int]:
        add = sum(1 for c in self.changes if c.action in ("create", "replace"))
        change = sum(1 for c in self.changes if c.action == "update")
        destroy = sum(1 for c in self.changes if c.action in ("delete", "replace"))
        return add, change, destroy

    @property
    def has_changes(self) -> bool:
        return any(c.action != "no-op" for c in self.changes) or any(
            o["action"] != "no-op" for o in self.output_changes.values())

    def change(self, address: str) -> Change | None:
        return next((c for c in self.changes if c.address == address), None)

    # ---- files ---------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["format_version"] = PLAN_FORMAT
        return encode_unknown(d)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str) -> Plan:
        if not isinstance(d, dict) or d.get("format_version") != PLAN_FORMAT:
            raise RhplanError(f"{source} is not an rhplan plan file (or was made by another "
                              "version); run rhplan plan -out again")
        d = decode_unknown(d)
        d.pop("format_version")
        changes = [Change(**c) for c in d.pop("changes")]
        return cls(changes=changes, **d)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)


def encode_unknown(v: Any) -> Any:
    if v is UNKNOWN:
        return {"$unknown": True}
    if isinstance(v, dict):
        return {k: encode_unknown(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [encode_unknown(x) for x in v]
    return v


def decode_unknown(v: Any) -> Any:
    if isinstance(v, dict):
        if v == {"$unknown": True}:
            return UNKNOWN
        return {k: decode_unknown(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode_unknown(x) for x in v]
    return v


def terraform_json(plan: Plan) -> dict[str, Any]:
    """`show -json`: Terraform's plan representation, with rhplan's reason added."""
    def unknown_mask(v: Any) -> Any:
        if v is UNKNOWN:
            return True
        if isinstance(v, dict):
            m = {k: unknown_mask(x) for k, x in v.items()}
            return {k: x for k, x in m.items() if x}
        if isinstance(v, list):
            return [unknown_mask(x) for x in v]
        return False

    def known(v: Any) -> Any:
        if v is UNKNOWN:
            return None
        if isinstance(v, dict):
            return {k: known(x) for k, x in v.items()}
        if isinstance(v, list):
            return [known(x) for x in v]
        return v

    return {
        "format_version": "1.2",
        "rhplan_version": plan.rhplan_version,
        "lineage": plan.lineage,
        "serial": plan.serial,
        "destroy": plan.destroy,
        "resource_changes": [
            {
                "address": c.address,
                "type": c.type,
                "name": c.name,
                "provider_name": c.provider,
                "actions": c.actions,
                "before": known(c.before),
                "after": known(c.after),
                "after_unknown": unknown_mask(c.after) if c.after else {},
                "reason": c.reason,
                "replace_paths": [[p] for p in c.replace_because],
                "change": {"actions": c.actions, "before": known(c.before),
                           "after": known(c.after)},
            }
            for c in plan.changes
        ],
        "output_changes": {
            name: {"actions": ACTIONS[o["action"]], "before": known(o.get("before")),
                   "after": known(o.get("after")), "sensitive": o.get("sensitive", False)}
            for name, o in plan.output_changes.items()
        },
        "resource_drift": plan.drift,
    }
