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
    INCLUDES = ("ssh",)   # its clusters also take these providers' settings (optional)

rhplan executes that file alone: the package itself (boto3, paramiko ...) is not
imported, so `validate` stays fast. Settings two providers both declare must agree on
their type.

A cluster block is decoded with the merged schema (every installed provider's settings:
its attributes keep one shape whatever its provider), but may write only the core's
settings and its own provider's (`check_own`, once its provider is known).
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from rhplan.config import ast
from rhplan.config.schema import CLUSTER_CORE, META_ATTRS, META_BLOCKS, Attr, BlockSchema
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


@functools.cache
def declared_settings() -> dict[str, frozenset[str]]:
    """The cluster settings a user may write that each installed provider's schema
    module declares, by provider name: "NAME" for a setting of the cluster block,
    "BLOCK" for a nested block and "BLOCK.NAME" for a setting in it (computed ones are
    left out: no cluster may write them)."""
    mods = declared()
    out: dict[str, frozenset[str]] = {}
    for name in installed_providers():
        mod = mods.get(name)
        mine = {a.name for a in getattr(mod, "CLUSTER", ()) if not a.computed}
        for bname, block in getattr(mod, "CLUSTER_BLOCKS", {}).items():
            mine |= {bname, *(f"{bname}.{a.name}" for a in block.attrs.values()
                              if not a.computed)}
        out[name] = frozenset(mine)
    return out


@functools.cache
def own_settings() -> dict[str, frozenset[str]]:
    """What each installed provider's clusters may write beyond the core's settings:
    its declared settings and those of the providers its INCLUDES names, and theirs
    (aws's hosts are set up by rhplan_ssh: an aws cluster takes the ssh block's
    settings)."""
    direct, mods = declared_settings(), declared()
    out: dict[str, frozenset[str]] = {}
    for name in direct:
        seen, todo, settings = {name}, [name], set()
        while todo:  # INCLUDES of INCLUDES too; each provider once
            current = todo.pop()
            settings |= direct[current]
            for other in getattr(mods.get(current), "INCLUDES", ()):
                if other not in direct:
                    raise ConfigError(f"provider {current!r}: its schema module includes the "
                                      f"settings of provider {other!r}, which is not "
                                      "installed; install it or reinstall its package")
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        out[name] = frozenset(settings)
    return out


def check_own(provider: Any, block: ast.Block, what: str) -> None:
    """A cluster block writes only the core's settings and its own provider's: another
    provider's setting (or one no installed provider declares) is a one-line
    ConfigError at its file:line. A provider not known yet (an unknown value while
    validating) or not installed (an error of its own, later) is not checked here."""
    if not isinstance(provider, str) or provider not in installed_providers():
        return
    own = own_settings()[provider]
    for setting, shown, line in _written(block):
        if setting in own:
            continue
        owners = [repr(n) for n, s in sorted(declared_settings().items()) if setting in s]
        whose = (f"a setting of provider{'s' * (len(owners) > 1)} {' and '.join(owners)}, "
                 f"not of {provider!r}" if owners else
                 f"not a setting of provider {provider!r}")
        raise ConfigError(f"{what}: {shown} is {whose}; remove it ({_takes(provider)})",
                          block.file, line)


def _written(block: ast.Block) -> list[tuple[str, str, int]]:
    """The provider settings a cluster block writes (beyond the core's and the meta
    arguments): (setting, how an error shows it, line), a dynamic block's content too."""
    out = [(name, name, a.line) for name, a in block.attrs.items()
           if name not in META_ATTRS and name not in CLUSTER_CORE.attrs]
    for sub in block.blocks:
        dynamic = sub.type == "dynamic" and len(sub.labels) == 1
        label = sub.labels[0] if dynamic else sub.type
        if label in META_BLOCKS or label in CLUSTER_CORE.blocks:
            continue
        out.append((label, f"the {label} block", sub.line))
        for part in (sub.blocks_of("content") if dynamic else [sub]):
            out += [(f"{label}.{name}", f"{label}.{name}", a.line)
                    for name, a in part.attrs.items()]
    return out


def _takes(provider: str) -> str:
    """What a provider's clusters take beyond the core's settings, for an error:
    "provider 'aws' also takes image_id, ..., ssh { host_key_check, ... }"."""
    own = own_settings()[provider]
    blocks = {s.split(".", 1)[0] for s in own if "." in s}
    shown = sorted(s for s in own if "." not in s and s not in blocks)
    for b in sorted(blocks):
        inside = sorted(s.split(".", 1)[1] for s in own if s.startswith(f"{b}."))
        shown.append(f"{b} {{ {', '.join(inside)} }}")
    if not shown:
        return f"provider {provider!r} takes only the core's cluster settings"
    return f"provider {provider!r} also takes {', '.join(shown)}"
