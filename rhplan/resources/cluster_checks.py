"""What a cluster block may say, checked at plan and validate: its custom Ray resources
(globally and per host) and, for validate, which provider it names; a cluster's
attributes the provider would fill in are unknown there."""
from __future__ import annotations

from typing import Any

from rhplan.config.model import ResourceConfig
from rhplan.errors import ConfigError
from rhplan.ray import head as ray_head


def unknown() -> Any:
    from rhplan.config.values import UNKNOWN
    return UNKNOWN



def validated(rc: ResourceConfig, attrs: dict[str, Any]) -> dict[str, Any]:
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
    check_resources(rc, attrs)
    for key, spec in RESOURCE_SCHEMAS["cluster"].attrs.items():
        if spec.computed or (spec.optional_computed and attrs.get(key) is None):
            attrs[key] = unknown()
    attrs["name"] = rc.name
    return attrs


def check_resources(rc: ResourceConfig, attrs: dict[str, Any]) -> None:
    """custom_resources become `ray start --resources` JSON on every node: refuse a name
    or amount Ray would not take (or that is not plain data) with its file:line; and
    custom names in `resources` (the cluster's CPU/GPU view) belong in custom_resources."""
    line = rc.block.attrs["custom_resources"].line if "custom_resources" in rc.block.attrs \
        else rc.line
    for key, amount in (attrs.get("custom_resources") or {}).items():
        if amount is unknown():
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
    known = ips is not unknown()  # validate: from a variable without a value
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
            problem = None if amount is unknown() else ray_head.resource_problem(key, amount)
            if problem:
                raise ConfigError(f"cluster {rc.name!r}: custom_resources_by_host[{host!r}]: "
                                  f"{problem}", rc.file, line)
