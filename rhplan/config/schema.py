"""What every resource type accepts: attribute, type, required, default, computed,
and whether a change forces replacement or updates in place. A cluster's settings are
the core's (CLUSTER_CORE) merged with every installed provider's own, read from each
provider's schema module on first use (rhplan/config/provider_schema.py), as are the
provider "NAME" { ... } blocks' settings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attr:
    name: str
    type: str  # string | number | bool | any | list(T) | map(T) | ref(TYPE) | list(req)
    required: bool = False
    default: Any = None
    computed: bool = False  # only the provider sets it; users may not write it
    optional_computed: bool = False  # users may set it, else the provider fills it in
    force_new: bool = False  # a change replaces the resource instead of updating it
    sensitive: bool = False
    doc: str = ""

    @property
    def user_settable(self) -> bool:
        return not self.computed


@dataclass(frozen=True)
class BlockSchema:
    attrs: dict[str, Attr]
    blocks: dict[str, BlockSchema] = field(default_factory=dict)

    def settable(self) -> list[str]:
        return sorted([a.name for a in self.attrs.values() if a.user_settable] + list(self.blocks))


def _schema(*attrs: Attr, blocks: dict[str, BlockSchema] | None = None) -> BlockSchema:
    return BlockSchema({a.name: a for a in attrs}, blocks or {})


# The settings every cluster has, whatever its provider; each provider declares its own
# (instance_type, ips' ssh block, ...) in its schema module, merged in on first use
# (rhplan/config/provider_schema.py).
CLUSTER_CORE = _schema(
    Attr("provider", "string", required=True, force_new=True,
         doc='"local" (this machine), "ssh" (static hosts), "aws", or another installed '
             'provider'),
    Attr("num_instances", "number", default=1),
    Attr("autostop_mins", "number",
         doc="shut the head down after this many minutes without servlet activity"),
    Attr("autostop_command", "string",
         doc="what autostop runs on the head (default: sudo -n shutdown -h now)"),
    # the hosts: the ssh provider's input, a cloud provider's output
    Attr("ips", "list(string)", optional_computed=True, force_new=True),
    Attr("root_dir", "string", optional_computed=True, force_new=True,
         doc="where rhplan keeps envs on the cluster's hosts"),
    Attr("python", "string", default="python3", force_new=True,
         doc="the interpreter envs are created from"),
    # Ray on the cluster: what it can run (known while planning where the provider can
    # tell), whether its head should be running, and where it is once started
    Attr("resources", "map(number)", optional_computed=True,
         doc="what Ray may schedule on the cluster, e.g. { CPU = 4, GPU = 0 }"),
    # changing it restarts Ray in place (the planner's settle marks it), never a rebuild
    Attr("custom_resources", "map(number)", default={},
         doc="custom Ray resources every node of the cluster offers, as `ray start "
             "--resources` takes them, e.g. { my_accel = 4 }; an env asks for them with "
             "compute = { my_accel = 1 }"),
    Attr("custom_resources_by_host", "map(map(number))", default={},
         doc="per host of ips: custom resources that host's Ray node offers over "
             "custom_resources, e.g. { \"10.0.0.6\" = { my_accel = 8 } }"),
    # not a dependency (the env depends on the cluster): config/default_env.py checks it
    Attr("default_env", "ref(env)",
         doc="the env `rhplan run -cluster NAME` and rhplan.servlet(cluster=NAME) use "
             "(default: the cluster's only env, else its bare env CLUSTER_default)"),
    # read at load time (config/default_env.py): whether a cluster without a default
    # env of its own (no env, several, no default_env) gets a bare one
    Attr("create_default_env", "bool",
         doc="false: a cluster without default_env or a single env gets no bare default "
             "env CLUSTER_default (a Ray cluster only; default true)"),
    Attr("ray_status", "string", computed=True),
    Attr("ray_address", "string", computed=True),
    Attr("ray_version", "string", computed=True),
    Attr("ray_python", "string", computed=True),
    Attr("name", "string", computed=True),
    # per host: "ready", or why it is not (ssh clusters set hosts up one by one)
    Attr("hosts", "map(string)", computed=True),
)

ENV = _schema(
    Attr("name", "string", optional_computed=True, force_new=True),
    Attr("cluster", "ref(cluster)", required=True, force_new=True),
    Attr("reqs", "list(req)", default=[]),
    Attr("env_vars", "map(string)", default={}),
    # ".env", a list, or { path = ".env", sensitive = true } (rhplan/env_files.py)
    Attr("env_file", "any"),
    Attr("secrets", "list(ref(secret))", default=[]),
    # the user's code, synced to the host (rhplan/working_dir.py); default: the git
    # repository holding the configuration, else the configuration folder
    Attr("working_dir", "string"),
    Attr("working_dir_max_mb", "number", doc="the size guard of working_dir, in MiB "
                                              "(default 200)"),
    Attr("setup_cmds", "list(string)", default=[]),
    Attr("compute", "map(number)", default={}),
    Attr("conda", "any", force_new=True),
    # filled in while planning: a content hash per local package folder, so that
    # editing a local package reinstalls it
    Attr("sources", "map(string)", computed=True),
    # the commit of each git entry without @REVISION (its default branch), resolved while
    # planning: a new upstream commit is a planned update that installs it
    Attr("git_commits", "map(string)", computed=True),
    Attr("secrets_sha256", "string", computed=True),
    # read from env_file while planning: plain files' values (env_vars win over them);
    # a sensitive file's keys and a keyed digest of its values (never the values)
    Attr("env_file_vars", "map(string)", computed=True),
    Attr("env_file_secret_keys", "list(string)", computed=True),
    Attr("env_file_sha256", "string", computed=True),
    # the working_dir's content hash, and where its copy lives on the host
    Attr("working_dir_hash", "string", computed=True),
    Attr("working_dir_remote", "string", computed=True),
    # filled in by apply
    Attr("path", "string", computed=True, force_new=True),
    Attr("python", "string", computed=True),
    Attr("installed", "map(any)", computed=True),
    # the env's servlet: "running" is what the plan wants; the pid is known once started
    Attr("servlet", "string", computed=True),
    Attr("servlet_pid", "number", computed=True),
)

PACKAGE = _schema(
    Attr("git_url", "string", required=True),
    Attr("revision", "string"),
    Attr("install_method", "string", default="pip"),
    Attr("spec", "string", computed=True),
)

SECRET = _schema(
    Attr("from_env", "list(string)", default=[]),
    Attr("values", "map(string)", default={}, sensitive=True),
    Attr("provider", "string", doc="aws | huggingface | gcp | ssh: credentials read on this "
                                   "machine, put on the hosts as a 0600 file"),
    Attr("profile", "string", doc="aws: the profile in the credentials file"),
    Attr("path", "string", doc="the local credentials file (default: the provider's own)"),
    Attr("keys", "list(string)", computed=True),
    Attr("sha256", "string", computed=True),
)

class _Schemas(dict):  # type: ignore[type-arg]
    """A dict of schemas whose other entries are made by `fill` on first use of one not
    there yet, or of the whole (a cluster's schema reads every installed provider's
    schema module: not at import)."""

    def __init__(self, items: dict[str, BlockSchema], fill: Any):
        super().__init__(items)
        self._fill = fill

    def _filled(self) -> bool:
        if self._fill is None:
            return False
        fill, self._fill = self._fill, None
        self.update(fill())
        return True

    def __missing__(self, key: str) -> BlockSchema:
        if self._filled():
            return self[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if not dict.__contains__(self, key):
            self._filled()
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or (self._filled() and dict.__contains__(self, key))

    def __iter__(self) -> Any:
        self._filled()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._filled()
        return dict.__len__(self)

    def keys(self) -> Any:  # type: ignore[override]
        self._filled()
        return dict.keys(self)

    def items(self) -> Any:  # type: ignore[override]
        self._filled()
        return dict.items(self)

    def values(self) -> Any:  # type: ignore[override]
        self._filled()
        return dict.values(self)


def _cluster() -> dict[str, BlockSchema]:
    from rhplan.config.provider_schema import cluster_schema
    return {"cluster": cluster_schema(CLUSTER_CORE)}


def _providers() -> dict[str, BlockSchema]:
    from rhplan.config.provider_schema import provider_schemas
    return provider_schemas()


RESOURCE_SCHEMAS: dict[str, BlockSchema] = _Schemas({
    "env": ENV,
    "package": PACKAGE,
    "secret": SECRET,
}, _cluster)

# provider "NAME" { ... } blocks: settings shared by every cluster of that provider, as
# each installed provider declares them
PROVIDER_SCHEMAS: dict[str, BlockSchema] = _Schemas({}, _providers)

# Meta-arguments every resource block accepts (Terraform's names).
META_ATTRS = {"depends_on", "count", "for_each"}
META_BLOCKS = {"lifecycle"}
LIFECYCLE = _schema(
    Attr("prevent_destroy", "bool", default=False),
    Attr("ignore_changes", "list(string)", default=[]),
    Attr("create_before_destroy", "bool", default=False),
)
