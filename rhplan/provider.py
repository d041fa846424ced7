"""Finding providers through entry points, the RunContext of one run, and the core's
side of the provider contract (ProviderHooks).

The provider API itself (the Provider base class with every hook, Capabilities,
ProviderContext, and what a provider may import) is rhplan/plugin.py. Plugins register
under the `rhplan.providers` entry-point group (see pyproject.toml), so a provider can
ship as its own package.

The core reaches a provider only through `RunContext.provider(name)`, a ProviderHooks:
it calls each hook with a frozen ProviderContext instead of the core's RunContext, and
with the provider's own copies of the records (attributes, private record), so what a
provider changes in them stays its own; what a hook returns is what the core records.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from rhplan.config.provider_schema import installed_providers
from rhplan.errors import ConfigError, ProviderError
from rhplan.hosts.connection import Connection

if TYPE_CHECKING:
    from rhplan.plugin import Capabilities, Node, Provider, ProviderContext


@dataclass
class RunContext:
    """What resource operations may use while planning and applying (the core's: a
    provider is handed a ProviderContext made from it, never this)."""

    config_dir: Path
    # secret values by secret address: read from the environment, kept in memory only
    secret_values: dict[str, dict[str, str]] = field(default_factory=dict)
    # values of sensitive attributes by address, e.g. an ssh password
    sensitive: dict[str, dict[str, Any]] = field(default_factory=dict)
    # providers loaded in this run, by name (through provider())
    loaded: dict[str, ProviderHooks] = field(default_factory=dict)
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
    # each provider's own memo for the run (ProviderContext.cache), by provider name
    provider_caches: dict[str, dict[Any, Any]] = field(default_factory=dict)

    def provider(self, name: str, file: str | None = None, line: int | None = None
                 ) -> ProviderHooks:
        """The provider named `name`, loaded once per run (a missing one is a
        ConfigError at file:line)."""
        if name not in self.loaded:
            self.loaded[name] = ProviderHooks(load_provider(name, file, line))
        return self.loaded[name]


class ProviderHooks:
    """One provider as the core calls it. Each method is the provider hook of the same
    name and arguments, taking the core's records and RunContext; the provider gets a
    ProviderContext made from that RunContext, and copies of the records (a provider
    writing into what it was given cannot reach the state, the plan or another hook's
    records)."""

    def __init__(self, provider: Provider) -> None:
        self.plugin = provider

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def capabilities(self) -> Capabilities:
        return self.plugin.capabilities

    def _ctx(self, run: RunContext) -> ProviderContext:
        """The provider's view of the run (made per call: the lineage is set once the
        state is read)."""
        from rhplan.plugin import ProviderContext
        # (not under run.lock: hooks are called with it held, e.g. env_servlet.status;
        # setdefault is atomic)
        cache = run.provider_caches.setdefault(self.plugin.name, {})
        return ProviderContext(run.config_dir, run.workspace, run.lineage,
                               MappingProxyType(_own(run.provider_configs)),
                               MappingProxyType(_own(run.sensitive)), cache)

    def _attrs(self, hook: str, value: Any) -> dict[str, Any]:
        """What a hook returned as the cluster's attributes: recorded as it is, so it
        must be a dict (a wrong shape is the provider's bug, named here in one line
        rather than failing later inside the core)."""
        if not isinstance(value, dict):
            raise ProviderError(f"provider {self.name!r}: its {hook} hook returned "
                                f"{type(value).__name__}, not the cluster's attributes (a "
                                "dict); fix the provider")
        return value

    def _records(self, hook: str, value: Any) -> tuple[dict[str, Any], dict]:
        """(attributes, private record) of the ClusterRecord that create, update and
        import_cluster return."""
        from rhplan.plugin import ClusterRecord
        if not isinstance(value, ClusterRecord) or not isinstance(value.private, dict):
            what = (f"a private record of type {type(value.private).__name__}"
                    if isinstance(value, ClusterRecord) else type(value).__name__)
            raise ProviderError(f"provider {self.name!r}: its {hook} hook returned {what}, "
                                "not ClusterRecord(attributes, private record as a dict); "
                                "fix the provider")
        return self._attrs(hook, value.attrs), value.private

    # ---- planning ---------------------------------------------------------------
    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: RunContext, file: str,
                     line: int) -> dict[str, Any]:
        return self._attrs("plan_cluster", self.plugin.plan_cluster(
            name, _own(attrs), self._ctx(ctx), file, line))

    def settle(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """The planned attributes as the provider settles them (a new dict)."""
        mine = _own(after)
        settled = self.plugin.settle(_own(before), mine)
        return mine if settled is None else self._attrs("settle", settled)

    def replacement(self, before: dict[str, Any], after: dict[str, Any], changed: list[str]
                    ) -> tuple[list[str], str]:
        return self.plugin.replacement(_own(before), _own(after), list(changed))

    # ---- lifecycle --------------------------------------------------------------
    def create(self, attrs: dict[str, Any], ctx: RunContext) -> tuple[dict[str, Any], dict]:
        return self._records("create", self.plugin.create(_own(attrs), self._ctx(ctx)))

    def read(self, attrs: dict[str, Any], private: dict, ctx: RunContext
             ) -> dict[str, Any] | None:
        found = self.plugin.read(_own(attrs), _own(private), self._ctx(ctx))
        return None if found is None else self._attrs("read", found)

    def import_cluster(self, attrs: dict[str, Any], id_: str, ctx: RunContext
                       ) -> tuple[dict[str, Any], dict]:
        return self._records("import_cluster", self.plugin.import_cluster(
            _own(attrs), id_, self._ctx(ctx)))

    def leftovers(self, attrs: dict[str, Any], private: dict, ctx: RunContext
                  ) -> list[str]:
        return self.plugin.leftovers(_own(attrs), _own(private), self._ctx(ctx))

    def leaving(self, before: dict[str, Any], after: dict[str, Any], private: dict,
                ctx: RunContext) -> list[str]:
        return self.plugin.leaving(_own(before), _own(after), _own(private), self._ctx(ctx))

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: RunContext) -> tuple[dict[str, Any], dict]:
        return self._records("update", self.plugin.update(
            _own(before), _own(after), _own(private), self._ctx(ctx)))

    def moved(self, before: dict[str, Any], before_private: dict, after: dict[str, Any],
              after_private: dict) -> dict[str, str]:
        return self.plugin.moved(_own(before), _own(before_private), _own(after),
                                 _own(after_private))

    def delete(self, attrs: dict[str, Any], private: dict, ctx: RunContext
               ) -> None:
        self.plugin.delete(_own(attrs), _own(private), self._ctx(ctx))

    # ---- reaching the hosts -----------------------------------------------------
    def connect(self, attrs: dict[str, Any], private: dict, ctx: RunContext
                ) -> Connection:
        return self.plugin.connect(_own(attrs), _own(private), self._ctx(ctx))

    def hosts(self, attrs: dict[str, Any], private: dict, ctx: RunContext
              ) -> list[tuple[str, Connection]]:
        return self.plugin.hosts(_own(attrs), _own(private), self._ctx(ctx))

    def connect_host(self, ip: str, attrs: dict[str, Any], private: dict, ctx: RunContext
                     ) -> Connection:
        return self.plugin.connect_host(ip, _own(attrs), _own(private), self._ctx(ctx))

    def node(self, ip: str, attrs: dict[str, Any], private: dict) -> Node:
        return self.plugin.node(ip, _own(attrs), _own(private))

    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: RunContext) -> str:
        return self.plugin.ray_python(conn, _own(attrs), _own(private), self._ctx(ctx))


def _own(value: Any) -> Any:
    """A copy of a JSON-like record (dicts and lists copied all the way down; other
    values, such as UNKNOWN, kept as they are)."""
    if isinstance(value, dict):
        return {k: _own(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_own(v) for v in value]
    return value


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
