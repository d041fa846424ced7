"""`rhplan providers`' report: the providers a configuration uses, per module (the root
and each module call), the providers the state records, and where each one comes from
(the installed package whose `rhplan.providers` entry point provides it, or rhplan
itself for the built-in `rhplan` provider of package and secret blocks). The command is
rhplan/providers_list.py; its layout, views/providers.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhplan.config.decode import Evaluation
from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.config.model import Config
from rhplan.config.values import UNKNOWN
from rhplan.errors import RhplanError
from rhplan.provider import available_providers
from rhplan.workspace.backends import backend_for


@dataclass(frozen=True)
class Providers:
    """What `rhplan providers` reports."""

    modules: dict[str, set[str]]  # module path -> the providers its blocks use
    in_state: set[str] | None  # the providers the state records; None: it was not read
    state_error: str  # why it could not be read
    origins: list[tuple[str, str]]  # (provider, where it comes from)


BUILT_IN = "rhplan"  # package and secret blocks: no plugin, rhplan does them itself


def required(cfg: Config, variables: dict[str, Any]) -> dict[str, set[str]]:
    """Module path ("" for the root, "module.a.module.b." for nested calls) -> the
    provider names its blocks use: a cluster's `provider`, an env its cluster's, package
    and secret blocks the built-in one; a provider block declares its name too."""

    def no_resources(type_: str, name: str, line: int) -> Any:
        return UNKNOWN

    ev = Evaluation(cfg, variables, no_resources)
    cluster_provider: dict[str, str] = {}
    for addr, rc in cfg.resources.items():
        if rc.type == "cluster" and "provider" in rc.block.attrs:
            try:
                value = ev.evaluate(rc.block.attrs["provider"].expr, rc.file)
            except Exception:  # noqa: BLE001 - shown as not known, validate says why
                value = UNKNOWN
            cluster_provider[addr] = value if isinstance(value, str) else \
                "? (an expression known when planned)"
    out: dict[str, set[str]] = {"": set(cfg.providers)}
    for addr, rc in cfg.resources.items():
        parts = rc.module.split(".")[:-1]  # module.a.module.b. -> each call on the way
        for i in range(2, len(parts) + 1, 2):
            out.setdefault(".".join(parts[:i]) + ".", set())
        names = out.setdefault(rc.module, set())
        if rc.type == "cluster":
            names.add(cluster_provider.get(addr, "? (no provider set)"))
        elif rc.type == "env":
            names.update(cluster_provider[r] for r in rc.refs if r in cluster_provider)
        else:
            names.add(BUILT_IN)
    return out


def origins(names: set[str]) -> list[tuple[str, str]]:
    """Where each provider comes from: the package and entry point, or why it is missing."""
    eps = available_providers()
    rows = []
    for name in sorted(names):
        if name == BUILT_IN:
            where = "built into rhplan (package and secret blocks)"
        elif name.startswith("?"):
            continue
        elif name in eps:
            ep = eps[name]
            dist = f"{ep.dist.name} {ep.dist.version}, " if ep.dist is not None else ""
            where = f"{dist}entry point {ep.value}"
        else:
            where = (f'NOT INSTALLED: no package has an rhplan.providers entry point "{name}"; '
                     "install the provider's package or fix the name")
        rows.append((name, where))
    return rows


def report(directory: Path, cli_vars: tuple[str, ...] = (), var_files: tuple[str, ...] = (),
           order: list[str] | None = None) -> Providers:
    cfg = load_config(directory)
    variables = resolve_variables(cfg, list(cli_vars), list(var_files), order,
                                  missing_unknown=True)
    modules = required(cfg, variables)
    try:
        state = backend_for(cfg).read()
    except RhplanError as exc:
        return Providers(modules, None, str(exc), origins(set().union(*modules.values())))
    in_state = {rs.provider for rs in state.resources.values()}
    return Providers(modules, in_state, "", origins(set().union(*modules.values()) | in_state))
