"""The provider plugin protocol, and finding providers through entry points.

A provider turns a cluster block into hosts and gives the core a Connection to
the cluster's head; the core builds envs through that connection the same way
for every provider. Plugins register under the `rhplan.providers` entry-point
group (see pyproject.toml), so a provider can ship as its own package.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from rhplan.connection import Connection
from rhplan.errors import ConfigError

GROUP = "rhplan.providers"


@dataclass
class RunContext:
    """What resource operations may use while planning and applying."""

    config_dir: Path
    # secret values by secret address: read from the environment, kept in memory only
    secret_values: dict[str, dict[str, str]] = field(default_factory=dict)
    # values of sensitive attributes by address, e.g. an ssh password
    sensitive: dict[str, dict[str, Any]] = field(default_factory=dict)
    _providers: dict[str, Provider] = field(default_factory=dict)
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

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            self._providers[name] = load_provider(name)
        return self._providers[name]


class Provider(Protocol):
    name: str

    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: RunContext, file: str,
                     line: int
                     ) -> dict[str, Any]:
        """Validate a cluster's attributes (ConfigError at file:line) and fill in
        what is known before apply; leave the rest UNKNOWN."""
        ...

    def create(self, attrs: dict[str, Any], ctx: RunContext) -> tuple[dict[str, Any], dict]:
        """Bring the cluster up; return its attributes (computed ones set) and private data."""
        ...

    def read(self, attrs: dict[str, Any], private: dict, ctx: RunContext
             ) -> dict[str, Any] | None:
        """The cluster as it really is, or None when it is gone."""
        ...

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: RunContext) -> tuple[dict[str, Any], dict]:
        ...

    def delete(self, attrs: dict[str, Any], private: dict, ctx: RunContext) -> None:
        ...

    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: RunContext) -> str:
        """The interpreter that runs Ray on the head (installing it first if needed)."""
        ...

    def connect(self, attrs: dict[str, Any], private: dict, ctx: RunContext) -> Connection:
        """A connection to the cluster's head host."""
        ...


def available_providers() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_provider(name: str, file: str | None = None, line: int | None = None) -> Provider:
    eps = available_providers()
    if name not in eps:
        have = ", ".join(sorted(eps)) or "none"
        raise ConfigError(f"no provider {name!r} is installed (installed: {have}); "
                          "install its package or fix the name", file, line)
    return eps[name].load()()
