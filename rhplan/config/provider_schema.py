"""The settings each installed provider declares for its cluster blocks and its
provider "NAME" { ... } block, read from the provider's light schema module and merged
into the core's schema when a cluster or provider block is first decoded.

A provider package ships `schema.py` beside the module its entry point names (for
`mycloud = "rhplan_mycloud:MyCloudProvider"`, `rhplan_mycloud/schema.py`), importing
only the standard library and `rhplan.plugin`, with absolute imports:

    CLUSTER = (Attr("instance_type", "string"), ...)     # its cluster block's settings
    CLUSTER_BLOCKS = {"ssh": BlockSchema({...})}          # nested blocks (optional)
    PROVIDER = (Attr("region", "string"), ...)            # its provider block (optional;
                                                          # without it: no provider block)

rhplan executes that file alone: the package itself (boto3, paramiko ...) is not
imported, so `validate` stays fast. Settings two providers both declare must agree on
their type.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from rhplan.config.schema import Attr, BlockSchema
from rhplan.errors import ConfigError

GROUP = "rhplan.providers"  # the entry-point group providers register under


@functools.cache
def installed_providers() -> dict[str, Any]:
    """The group's entry points by name, read once a run (a read scans every installed
    distribution's metadata, ~10 ms; rhplan.provider loads providers from it)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


@functools.cache
def declared() -> dict[str, ModuleType]:
    """Each installed provider's schema module, by provider name (those that ship one)."""
    out: dict[str, ModuleType] = {}
    for name, ep in sorted(installed_providers().items()):
        mod = _load(name, ep.module)
        if mod is not None:
            out[name] = mod
    return out


def _load(provider: str, module: str) -> ModuleType | None:
    modname = f"{module}.schema"
    if modname in sys.modules:
        return sys.modules[modname]
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # finds, never imports, a top-level name
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None  # a single-file module: no schema of its own
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts[1:], "schema.py")
    if not os.path.isfile(path):
        return None
    file_spec = importlib.util.spec_from_file_location(modname, path)
    if file_spec is None or file_spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(file_spec)
    sys.modules[modname] = mod
    try:
        file_spec.loader.exec_module(mod)
    except Exception as exc:
        del sys.modules[modname]
        raise ConfigError(f"provider {provider!r}: its schema module {path} failed: "
                          f"{type(exc).__name__}: {exc}; fix or reinstall its package") from None
    return mod


def cluster_schema(core: BlockSchema) -> BlockSchema:
    """The core's cluster settings plus every installed provider's."""
    attrs = dict(core.attrs)
    owners = dict.fromkeys(attrs, "rhplan")
    blocks = dict(core.blocks)
    for name, mod in declared().items():
        for a in getattr(mod, "CLUSTER", ()):
            _add(attrs, owners, a, name, "cluster")
        for bname, block in getattr(mod, "CLUSTER_BLOCKS", {}).items():
            have = blocks.get(bname)
            merged = dict(have.attrs) if have else {}
            block_owners = dict.fromkeys(merged, "another provider")
            for a in block.attrs.values():
                _add(merged, block_owners, a, name, f"cluster's {bname} block")
            blocks[bname] = BlockSchema(merged)
    return BlockSchema(attrs, blocks)


def provider_schemas() -> dict[str, BlockSchema]:
    """provider "NAME" { ... } blocks: the providers that declare one."""
    return {name: BlockSchema({a.name: a for a in mod.PROVIDER})
            for name, mod in declared().items() if getattr(mod, "PROVIDER", None) is not None}


def _add(attrs: dict[str, Attr], owners: dict[str, str], a: Any, provider: str,
         where: str) -> None:
    if not isinstance(a, Attr):
        raise ConfigError(f"provider {provider!r}: its schema module declares {a!r} in "
                          f"{where}, not an Attr; fix or reinstall its package")
    have = attrs.get(a.name)
    if have is None:
        attrs[a.name] = a
        owners[a.name] = provider
    elif have.type != a.type or have.computed != a.computed:
        raise ConfigError(f"providers {owners[a.name]!r} and {provider!r} both declare the "
                          f"{where} setting {a.name!r}, as {have.type} and {a.type}; "
                          "uninstall one or make them agree")
