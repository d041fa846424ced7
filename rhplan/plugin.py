"""The provider plugin API: everything a provider may use of rhplan, in one module.

A provider turns a `cluster` block into hosts and gives the core a Connection to
each; the core starts Ray and builds envs through those connections the same way
for every provider. A provider subclasses `Provider`, implements its abstract hooks,
overrides the optional ones it needs (each has a documented default: the core calls
every hook directly, it never probes for one), announces what it can do in
`capabilities`, and registers a factory under the `rhplan.providers` entry-point
group:

    [project.entry-points."rhplan.providers"]
    mycloud = "rhplan_mycloud:MyCloudProvider"

docs/PROVIDERS.md walks through writing one. A provider imports rhplan only through
this module; what it re-exports (values, errors, connections) is the stable surface.

What a hook is given is its own: `attrs`, `before`/`after` and `private` are copies
made for that call (change them freely: the core's records never see it), and `ctx`
is a frozen `ProviderContext`, a read-only view of the run. What a hook returns is
what the core records; nothing a provider writes anywhere else reaches the state.

Private state: each cluster's record in the state has two private parts, never shown
to users. `private["provider"]` is the provider's own: the `private` of the
ClusterRecord create/update/import_cluster return, handed back to every hook as its
`private` argument (instance ids, recorded host keys ...), and written by the
provider alone.
`private["ray"]` is the core's (its Ray head and worker nodes, TLS, the local copy of
the token): a provider never sees it. Ray on the hosts is the core's too: it starts
Ray after create, stops it before delete, and around an update it stops and forgets
the worker nodes on the hosts the provider's `leaving` hook names (at the addresses
`moved` gives, for a host that came back under another one); a provider never starts
or stops Ray itself.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rhplan.config.provider_schema import GROUP
from rhplan.config.schema import Attr, BlockSchema
from rhplan.config.values import UNKNOWN
from rhplan.errors import (
    ConfigError,
    ConnectionLost,
    PartialFailure,
    ProviderError,
    RhplanError,
)
from rhplan.hosts.connection import CommandResult, Connection, LocalConnection

__all__ = [
    "GROUP", "MARKER", "UNKNOWN", "Attr", "BlockSchema", "Capabilities", "ClusterRecord",
    "CommandResult",
    "ConfigError", "Connection", "ConnectionLost", "LocalConnection", "Node", "PartialFailure",
    "Provider", "ProviderContext", "ProviderError", "RhplanError",
]

# The file that makes a folder on a host rhplan's cluster folder (root_dir): a provider
# writes it when it makes the folder, removes only folders holding it, and the core's
# refresh reports a host whose root_dir lacks it as "rhplan's folder is gone".
MARKER = ".rhplan-cluster"


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do beyond the required hooks, announced, never probed."""

    # the hosts are this machine: an env's local package folder is installed in place
    # instead of synced to the host
    local_filesystem: bool = False
    # hosts can be added to a running cluster (num_instances 2 -> 3): new hosts join the
    # running Ray head instead of Ray starting again; a one-host head (loopback only)
    # starts again on the host's address when the cluster first grows
    grows: bool = False
    # the core starts Ray on the hosts (and envs can be built there). False: the provider
    # only provisions machines; the cluster's ray_status is "skipped" and no host is
    # contacted by the core (a provisioning-only provider, or a benchmark's stand-in)
    runs_ray: bool = True


@dataclass(frozen=True)
class ProviderContext:
    """What a provider sees of one run, handed to every hook that takes `ctx`: frozen,
    and its mappings read-only (the core's own run context, with the other resources'
    secrets and its caches, is never handed out). Made for each call, so `lineage` is
    current; `cache` is the same dict for the whole run."""

    # the configuration's folder (a provider keeps per-configuration files under it)
    config_dir: Path
    # the selected workspace (rhplan.workspace)
    workspace: str = "default"
    # the state's lineage: tag what you create with it ("" before the state is read)
    lineage: str = ""
    # the evaluated provider "NAME" { ... } blocks, by name (no credentials: those stay
    # in their chain)
    provider_configs: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({}))
    # sensitive attribute values by resource address (a cluster's ssh password under
    # "cluster.NAME"): they are never in attrs or the state
    sensitive: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: MappingProxyType({}))
    # this provider's own memo for the run (e.g. one describe shared by every cluster):
    # the core never reads it; hooks of several clusters run in parallel threads, so
    # guard it with a lock of your own
    cache: dict[Any, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Node:
    """How Ray runs on one host: the address its Ray node uses (e.g. an instance's
    private address, where the host was reached at a public one) and the CPUs Ray may
    use there (None: the cluster's resources' CPU on the head, 1 on a worker)."""

    address: str
    cpus: int | None = None


@dataclass(frozen=True)
class ClusterRecord:
    """What create, update and import_cluster return: the cluster as the state records
    it. `attrs` is its attributes (computed ones set: ips, root_dir ...); `private` the
    provider's own record, JSON-able, handed back to every later hook as `private`."""

    attrs: dict[str, Any]
    private: dict[str, Any] = field(default_factory=dict)


class Provider(ABC):
    """One kind of cluster. `attrs` is the cluster's attributes (the block's settings
    and the computed values); `private` is this provider's own record in the state
    (its `private["provider"]` part), a JSON-able dict the user never sees (instance
    ids, recorded host keys ...); the core's Ray record is kept apart from it."""

    name: str = ""
    capabilities: Capabilities = Capabilities()

    # ---- planning -------------------------------------------------------------------
    @abstractmethod
    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: ProviderContext,
                     file: str, line: int) -> dict[str, Any]:
        """Validate a cluster's attributes (raise ConfigError(msg, file, line)) and fill
        in what is known before apply (ips, root_dir, resources ...); leave the rest
        UNKNOWN. Return the attributes."""

    def settle(self, before: dict[str, Any], after: dict[str, Any]
               ) -> dict[str, Any] | None:
        """Adjust a planned change (e.g. keep a value the user cannot see change): return
        the planned attributes to use (None: `after` as this hook left it, since it is
        this call's own copy). Called only when the recorded cluster has this same
        provider. Default: no change."""
        return None

    def replacement(self, before: dict[str, Any], after: dict[str, Any], changed: list[str]
                    ) -> tuple[list[str], str]:
        """Which of the changed attributes force a new cluster, and why (one line).
        Default: none beyond those the schema marks force_new."""
        return [], ""

    # ---- lifecycle ------------------------------------------------------------------
    @abstractmethod
    def create(self, attrs: dict[str, Any], ctx: ProviderContext) -> ClusterRecord:
        """Bring the hosts up; return ClusterRecord(attributes with the computed ones
        set: ips, root_dir ..., the provider's private record). Some hosts failing: raise
        PartialFailure(msg, attrs, private) so what exists is recorded."""

    @abstractmethod
    def read(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
             ) -> dict[str, Any] | None:
        """The cluster as it really is (drift shows as changed attributes), or None when
        it is gone."""

    def import_cluster(self, attrs: dict[str, Any], id_: str, ctx: ProviderContext
                       ) -> ClusterRecord:
        """rhplan import: adopt the existing machines `id_` names (the provider says
        how) as the cluster `attrs` plans, setting them up as create would; return its
        ClusterRecord. Default: not supported, in one line."""
        raise ProviderError(f"importing a {self.name} cluster is not supported; let rhplan "
                            "apply create it")

    def leftovers(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
                  ) -> list[str]:
        """When read() found the cluster gone: what of it still exists (one phrase each),
        so it stays recorded for destroy to remove. Default: nothing."""
        return []

    def leaving(self, before: dict[str, Any], after: dict[str, Any], private: dict,
                ctx: ProviderContext) -> list[str]:
        """Asked before update() when Ray runs worker nodes: the hosts (addresses in
        before["ips"]) whose Ray node this update ends: those it takes away (scale
        down), restarts (a resize, a stopped machine started again) or found gone. The
        core stops the worker nodes on those that may still run one (so the head sees
        them go; a host it cannot reach is skipped) and forgets them; those still in
        the cluster after update() join Ray again. A host that is not in the updated
        cluster's ips is forgotten either way. Default: none."""
        return []

    @abstractmethod
    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: ProviderContext) -> ClusterRecord:
        """Change the cluster in place; return its new ClusterRecord (attributes,
        private record)."""

    def moved(self, before: dict[str, Any], before_private: dict, after: dict[str, Any],
              after_private: dict) -> dict[str, str]:
        """Asked after update(), for the hosts `leaving` named that were down (stopped,
        terminated): those now reached at another address, {old address: new} (a
        stopped machine started again may get a new public address). Where its old
        Ray node could not be stopped while the host was down, the core stops what is
        left of it at the new address. Default: none."""
        return {}

    @abstractmethod
    def delete(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> None:
        """Remove the hosts (or rhplan's folder on them). The core has stopped Ray on
        them first. Raise ProviderError while something is left: the cluster stays in
        the state for the next destroy."""

    # ---- reaching the hosts ---------------------------------------------------------
    @abstractmethod
    def connect(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
                ) -> Connection:
        """A connection to the cluster's head host (attrs["ips"][0])."""

    def hosts(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
              ) -> list[tuple[str, Connection]]:
        """Every host that is set up, connected, the head first: Ray's head starts on the
        first, the others join it. Default: the head only."""
        return [(attrs["ips"][0], self.connect(attrs, private, ctx))]

    def connect_host(self, ip: str, attrs: dict[str, Any], private: dict,
                     ctx: ProviderContext) -> Connection:
        """A connection to one host of the cluster (refresh reads each; destroy stops Ray
        on each). Default: the head through connect(); any other host is refused, so a
        provider with more than one host implements this."""
        if ip == (attrs.get("ips") or [None])[0]:
            return self.connect(attrs, private, ctx)
        raise ProviderError(f"provider {self.name!r} cannot reach host {ip} on its own "
                            "(its connect_host hook is not implemented)")

    def node(self, ip: str, attrs: dict[str, Any], private: dict) -> Node:
        """How Ray runs on host ip (its node address and CPUs), as found when the host
        was set up. Default: Node(ip), CPUs from the cluster's resources."""
        return Node(ip)

    @abstractmethod
    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: ProviderContext) -> str:
        """The interpreter that runs Ray on the host behind conn (installing it first if
        needed). It must have the driver's Ray version."""
