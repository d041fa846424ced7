"""Finding providers through entry points, and the RunContext of one run.

The provider API itself (the Provider base class with every hook, Capabilities, and
what a provider may import) is rhplan/plugin.py. Plugins register under the
`rhplan.providers` entry-point group (see pyproject.toml), so a provider can ship as
its own package.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rhplan.config.provider_schema import GROUP as GROUP  # (rhplan.plugin re-exports it)
from rhplan.config.provider_schema import installed_providers
from rhplan.errors import ConfigError

if TYPE_CHECKING:
    from rhplan.plugin import Provider



@dataclass
class RunContext:
    """What resource operations may use while planning and applying."""

    config_dir: Path
    # secret values by secret address: read from the environment, kept in memory only
    secret_values: dict[str, dict[str, str]] = field(default_factory=dict)
    # values of sensitive attributes by address, e.g. an ssh password
    sensitive: dict[str, dict[str, Any]] = field(default_factory=dict)
    # providers loaded in this run, by name (through provider())
    loaded: dict[str, Provider] = field(default_factory=dict)
    # per-plan bookkeeping: resources servlets hold per cluster (plan-time check)
    allocations: dict[str, dict[str, float]] = field(default_factory=dict)
    # per-run memo of remote reads (e.g. all servlet statuses of a cluster at once)
    cache: dict[Any, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # evaluated provider "NAME" { ... } blocks (no credentials: those stay in their chain)
    provider_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the state's lineage: cloud resources are tagged with it
    lineage: str = ""
    # the selected workspace (rhplan.workspace in expressions)
    workspace: str = "default"

    def provider(self, name: str, file: str | None = None, line: int | None = None
                 ) -> Provider:
        """The provider named `name`, loaded once per run (a missing one is a
        ConfigError at file:line)."""
        if name not in self.loaded:
            self.loaded[name] = load_provider(name, file, line)
        return self.loaded[name]


def available_providers() -> dict[str, Any]:
    return dict(installed_providers())


def load_provider(name: str, file: str | None = None, line: int | None = None) -> Provider:
    eps = available_providers()
    if name not in eps:
        have = ", ".join(sorted(eps)) or "none"
        raise ConfigError(f"no provider {name!r} is installed (installed: {have}); "
                          "install its package or fix the name", file, line)
    from rhplan.plugin import Provider
    provider = eps[name].load()()
    if not isinstance(provider, Provider):
        raise ConfigError(f"provider {name!r} ({eps[name].value}) does not derive from "
                          "rhplan.plugin.Provider; update its package", file, line)
    return provider
