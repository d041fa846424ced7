"""A plan in Terraform's JSON output format (`rhplan show -json PLANFILE`), the shape
Terraform tooling reads (policy tools such as checkov's terraform_plan framework,
OPA/conftest policies, cost estimators).

Read from Terraform's documentation ("JSON Output Format") and its
internal/command/jsonplan and jsonconfig packages. rhplan's differences:
- terraform_version is rhplan's version;
- every resource is `mode: "managed"`, with rhplan's own types (cluster, env,
  package, secret) and provider_name registry.terraform.io/rhplan/<provider>;
- sensitive values are printed as "(sensitive value)" (Terraform's JSON holds them
  in clear), and marked in before_sensitive / after_sensitive as Terraform does;
- resource_drift's `before` is what the state recorded, its `after` what refresh read;
  every drifted resource is listed (as Terraform: its renderer shows only the drift
  that relevant_attributes touch).
"""
from __future__ import annotations

from typing import Any

from rhplan.config.values import UNKNOWN
from rhplan.plan.model import ACTIONS, Change, Plan
from rhplan.plan.sensitive import SENSITIVE_VARIABLE
from rhplan.plan.tfjson_relevant import relevant_attributes as terraform_relevant_attributes
from rhplan.state.tfjson import (
    MODE,
    SENSITIVE_TEXT,
    deposed_objects,
    hide,
    module_tree,
    outputs_values,
    provider_name,
    resource_values,
    sensitive_mask,
    split_address,
    values_representation,
)

# the plan representation's version (Terraform 1.6+ writes "1.2")
PLAN_FORMAT_VERSION = "1.2"


def known(v: Any) -> Any:
    """The value with unknowns as null (Terraform's before/after)."""
    if v is UNKNOWN:
        return None
    if isinstance(v, dict):
        return {k: known(x) for k, x in v.items()}
    if isinstance(v, list):
        return [known(x) for x in v]
    return v


def unknown_mask(v: Any) -> Any:
    """Terraform's after_unknown: true where a value is known only after apply."""
    if v is UNKNOWN:
        return True
    if isinstance(v, dict):
        m = {k: unknown_mask(x) for k, x in v.items()}
        return {k: x for k, x in m.items() if x is not False}  # Terraform drops falses
    if isinstance(v, list):
        return [unknown_mask(x) for x in v]
    return False


def without_unknowns(v: Any) -> Any:
    """planned_values leave out what is unknown (after_unknown says which)."""
    if isinstance(v, dict):
        return {k: without_unknowns(x) for k, x in v.items() if x is not UNKNOWN}
    if isinstance(v, list):
        return [None if x is UNKNOWN else without_unknowns(x) for x in v]
    return v


def action_reason(c: Change, plan: Plan, configured: set[str]) -> str | None:
    """Terraform's action_reason for a replace or delete, from what rhplan recorded."""
    if c.action == "replace":
        if c.address in plan.replace:
            return "replace_by_request"
        if "replace_triggered_by" in c.reason:
            return "replace_by_triggers"
        return "replace_because_cannot_update" if c.replace_because else None
    if c.action != "delete" or plan.destroy:
        return None
    module, type_, name, key = split_address(c.address)
    block = f"{module + '.' if module else ''}{type_}.{name}"
    if module and not any(a.startswith(module + ".") for a in configured):
        return "delete_because_no_module"
    if block not in configured:
        return "delete_because_no_resource_config"
    if isinstance(key, int):
        return "delete_because_count_index"
    if isinstance(key, str):
        return "delete_because_each_key"
    return "delete_because_wrong_repetition"


def change_value(c: Change, actions: list[str]) -> dict[str, Any]:
    """Terraform's change representation of one resource instance."""
    before = known(hide(c.before, c.sensitive))
    after = known(hide(c.after, c.sensitive))
    out: dict[str, Any] = {
        "actions": actions,
        "before": before,
        "after": after,
        "after_unknown": unknown_mask(c.after) if c.after is not None else {},
        "before_sensitive": sensitive_mask(c.sensitive) if c.before is not None else False,
        "after_sensitive": sensitive_mask(c.sensitive) if c.after is not None else False,
    }
    if c.replace_because:
        out["replace_paths"] = [p.split(".") for p in c.replace_because]
    if c.imported_id:
        out["importing"] = {"id": c.imported_id}
    return out


def resource_change(c: Change, plan: Plan, configured: set[str],
                    actions: list[str] | None = None) -> dict[str, Any]:
    module, type_, name, key = split_address(c.address)
    out: dict[str, Any] = {"address": c.address}
    if c.previous_address:
        out["previous_address"] = c.previous_address
    if module:
        out["module_address"] = module
    out.update(mode=MODE, type=type_, name=name)
    if key is not None:
        out["index"] = key
    out["provider_name"] = provider_name(c.provider)
    out["change"] = change_value(c, actions if actions is not None else c.actions)
    reason = action_reason(c, plan, configured) if actions is None else None
    if reason:
        out["action_reason"] = reason
    return out


def deposed_change(c: Change, key: str, old: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The delete of an old object create_before_destroy left (Terraform: a change of its
    own, with the instance's address and "deposed": its key)."""
    gone = Change(c.address, c.type, c.name, c.provider, "delete",
                  before=old.get("attributes") or {}, after=None, sensitive=c.sensitive)
    out = resource_change(gone, plan, set(), actions=["delete"])  # no action_reason
    out["deposed"] = key
    return out


def resource_changes(plan: Plan, configured: set[str]) -> list[dict[str, Any]]:
    """Each instance's change, then the deletes of its deposed objects."""
    recorded = {r["address"]: r for r in (plan.prior_state or {}).get("resources", [])}
    out = []
    for c in plan.changes:
        out.append(resource_change(c, plan, configured))
        if c.deposed and c.address in recorded:
            out += [deposed_change(c, key, old, plan)
                    for key, old in sorted(deposed_objects(recorded[c.address]))]
    return out


def planned_values(plan: Plan) -> dict[str, Any]:
    resources = [resource_values(c.address, c.provider, known(without_unknowns(c.after)),
                                 c.sensitive)
                 for c in plan.changes if c.after is not None]
    out: dict[str, Any] = {"root_module": module_tree(resources)}
    outputs = {n: {"value": o.get("after"), "sensitive": o.get("sensitive", False)}
               for n, o in plan.output_changes.items()
               if o.get("action") != "delete" and o.get("after") is not UNKNOWN}
    if outputs:
        out["outputs"] = outputs_values(outputs)
    return out


def output_change(o: dict[str, Any]) -> dict[str, Any]:
    sensitive = bool(o.get("sensitive"))

    def shown(v: Any) -> Any:
        return SENSITIVE_TEXT if sensitive and v is not None else known(v)

    return {"actions": ACTIONS[o["action"]],
            "before": shown(o.get("before")), "after": shown(o.get("after")),
            "after_unknown": o.get("after") is UNKNOWN,
            "before_sensitive": sensitive, "after_sensitive": sensitive}


def _hidden(plan: Plan) -> dict[str, list[str]]:
    """Each address's sensitive attribute paths, from its change or its drift."""
    return {c.address: c.sensitive for c in [*plan.drifted, *plan.changes]}


def _refreshed_values(plan: Plan) -> dict[str, Any]:
    """A refresh-only plan plans what refresh read (Terraform: its prior state)."""
    if plan.prior_state is None:
        return {"root_module": {"resources": []}}
    hidden = _hidden(plan)
    return values_representation(plan.prior_state, lambda a: hidden.get(a, []))


def _sensitive_variable(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {SENSITIVE_VARIABLE}


def relevant_attributes(plan: Plan) -> list[dict[str, Any]]:
    """Terraform's relevant_attributes: what the plan's changes read (tfjson_relevant)."""
    return terraform_relevant_attributes(
        plan.configuration or {}, [(c.address, c.action) for c in plan.changes],
        [n for n, o in sorted(plan.output_changes.items()) if o.get("action") != "no-op"])


def _configuration(configuration: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The configuration kept in the plan, without the default of a variable the plan
    keeps only as a digest (one a secret's value comes from, declared sensitive or not)."""
    out = {k: v for k, v in configuration.items() if k != "resource_addresses"}
    root = out.get("root_module", {})
    hidden = [n for n, v in plan.variables.items() if _sensitive_variable(v)]
    if hidden and root.get("variables"):
        variables = {n: dict(v) for n, v in root["variables"].items()}
        for n in hidden:
            if n in variables and "default" in variables[n]:
                del variables[n]["default"]
                variables[n]["sensitive"] = True
        out["root_module"] = {**root, "variables": variables}
    return out


def plan_json(plan: Plan) -> dict[str, Any]:
    """Terraform's plan representation of an rhplan plan (`show -json PLANFILE`)."""
    configuration = plan.configuration or {}
    configured = set(configuration.get("resource_addresses", []))
    out: dict[str, Any] = {
        "format_version": PLAN_FORMAT_VERSION,
        "terraform_version": plan.rhplan_version,
        "variables": {n: {"value": SENSITIVE_TEXT if _sensitive_variable(v) else v}
                      for n, v in sorted(plan.variables.items())},
        "planned_values": planned_values(plan) if not plan.refresh_only else
        _refreshed_values(plan),
        "resource_drift": [resource_change(d, plan, configured, actions=d.actions)
                           for d in plan.drifted],
        "resource_changes": resource_changes(plan, configured),
        "output_changes": {n: output_change(o) for n, o in sorted(plan.output_changes.items())},
        "relevant_attributes": relevant_attributes(plan),
    }
    if plan.prior_state is not None:
        hidden = _hidden(plan)
        prior = values_representation(plan.prior_state, lambda a: hidden.get(a, []))
        out["prior_state"] = {"format_version": "1.0",
                              "terraform_version": plan.rhplan_version, "values": prior}
    out["configuration"] = _configuration(configuration, plan)
    out["timestamp"] = plan.timestamp
    out["applyable"] = plan.has_changes
    out["complete"] = not plan.targets
    out["errored"] = False
    return out
