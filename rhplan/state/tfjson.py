"""The state in Terraform's JSON output format (`rhplan show -json`): the "values
representation" Terraform tooling reads, `values.root_module.resources[]` with
child_modules for module calls, and `values.outputs`.

rhplan's own state file keeps its own shape (format_version 1, resources with
attributes and provider-private data); this is a view of it, never read back.
Sensitive values are shown as "(sensitive value)" (rhplan never prints them, unlike
Terraform's JSON, which holds them in clear) and marked in `sensitive_values`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rhplan.names import parse_address

# the state representation's own version (Terraform's jsonstate.FormatVersion)
STATE_FORMAT_VERSION = "1.0"
SENSITIVE_TEXT = "(sensitive value)"

# rhplan's resources are all managed ("resource" blocks); it has no data sources
MODE = "managed"


def provider_name(provider: str) -> str:
    """Terraform's fully qualified provider address for an rhplan provider name."""
    return f"registry.terraform.io/rhplan/{provider or 'rhplan'}"


def split_address(address: str) -> tuple[str, str, str, int | str | None]:
    """(module address, type, name, index) of an instance address:
    module.m.env.x["a"] -> ("module.m", "env", "x", "a"); "" for the root module."""
    parts = parse_address(address)
    if parts is None:  # not an address rhplan writes; shown as a root resource
        type_, _, name = address.partition(".")
        return "", type_, name, None
    typed, name, key = parts
    module, _, type_ = typed.rpartition(".")
    return module, type_, name, key


def sensitive_mask(paths: Iterable[str]) -> dict[str, Any]:
    """Terraform's sensitive_values / before_sensitive / after_sensitive: an object
    with true where an attribute (or a key of a map attribute) is sensitive."""
    mask: dict[str, Any] = {}
    for path in paths:
        name, _, key = path.partition(".")
        if not key:
            mask[name] = True
        elif mask.get(name) is not True:
            mask.setdefault(name, {})[key] = True
    return mask


def hide(values: dict[str, Any] | None, paths: Iterable[str]) -> dict[str, Any] | None:
    """A copy of values with each sensitive path replaced by SENSITIVE_TEXT."""
    if not values:
        return values
    out = dict(values)
    for path in paths:
        name, _, key = path.partition(".")
        if name not in out or out[name] is None:
            continue
        if not key:
            out[name] = SENSITIVE_TEXT
        elif isinstance(out[name], dict) and key in out[name]:
            out[name] = {**out[name], key: SENSITIVE_TEXT}
    return out


def resource_values(address: str, provider: str, values: dict[str, Any],
                    sensitive: list[str]) -> dict[str, Any]:
    """One resource instance of a values representation."""
    _, type_, name, key = split_address(address)
    out: dict[str, Any] = {
        "address": address,
        "mode": MODE,
        "type": type_,
        "name": name,
        "provider_name": provider_name(provider),
        "schema_version": 0,
        "values": hide(values, sensitive),
        "sensitive_values": sensitive_mask(sensitive),
    }
    if key is not None:
        out["index"] = key
    return out


def deposed_objects(resource: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(deposed key, recorded object) of the old objects a create_before_destroy
    replacement left beside the new one (rhplan/apply.py), still to be destroyed. The key
    is the old object's on-host name, where Terraform writes a random 8-hex key."""
    records = (resource.get("private") or {}).get("deposed") or []
    return [(str((d.get("attributes") or {}).get("name")), d) for d in records
            if isinstance(d, dict)]


def module_tree(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """root_module {resources, child_modules} from resource objects (each with its
    "address"), nesting module.a.module.b under module.a as Terraform does."""
    root: dict[str, Any] = {"resources": []}
    modules: dict[str, dict[str, Any]] = {"": root}

    def module(addr: str) -> dict[str, Any]:
        if addr not in modules:
            parent = module(addr.rsplit(".module.", 1)[0] if ".module." in addr else "")
            modules[addr] = {"resources": [], "address": addr}
            parent.setdefault("child_modules", []).append(modules[addr])
        return modules[addr]

    for r in sorted(resources, key=lambda r: (r["address"], r.get("deposed_key", ""))):
        module(split_address(r["address"])[0])["resources"].append(r)
    return root


def outputs_values(outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: {"sensitive": bool(o.get("sensitive")), "type": value_type(o.get("value")),
                   "value": SENSITIVE_TEXT if o.get("sensitive") else o.get("value")}
            for name, o in sorted(outputs.items())}


def value_type(value: Any) -> Any:
    """Terraform's type of a value, as its JSON type expression ("string",
    ["tuple", [...]], ["object", {...}])."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return ["tuple", [value_type(v) for v in value]]
    if isinstance(value, dict):
        return ["object", {k: value_type(v) for k, v in value.items()}]
    return "dynamic"


def values_representation(state: dict[str, Any],
                          sensitive: Callable[[str], list[str]]) -> dict[str, Any]:
    """Terraform's values representation of an rhplan state (its to_json() form);
    sensitive(address) gives the attribute paths to hide."""
    resources = []
    for r in state.get("resources", []):
        hidden = sensitive(r["address"])
        resources.append(resource_values(r["address"], r["provider"], r["attributes"], hidden))
        for key, old in deposed_objects(r):  # Terraform lists each beside the current one
            resources.append({**resource_values(r["address"], r["provider"],
                                                old.get("attributes") or {}, hidden),
                              "deposed_key": key})
    out: dict[str, Any] = {"root_module": module_tree(resources)}
    if state.get("outputs"):
        out["outputs"] = outputs_values(state["outputs"])
    return out


def state_json(state: dict[str, Any], sensitive: dict[str, list[str]],
               version: str) -> dict[str, Any]:
    """`rhplan show -json` of the state: Terraform's state representation.
    terraform_version is rhplan's version (README, "Terraform's JSON")."""
    out: dict[str, Any] = {"format_version": STATE_FORMAT_VERSION, "terraform_version": version}
    if state.get("resources") or state.get("outputs"):
        out["values"] = values_representation(state, lambda a: sensitive.get(a, []))
    return out
