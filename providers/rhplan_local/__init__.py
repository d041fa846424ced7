"""The `local` provider: a cluster that is this machine.

Its hosts are one: 127.0.0.1, reached through subprocesses. rhplan keeps the
cluster's envs under root_dir (default: .rhplan/clusters/NAME in the
configuration directory), a folder it owns and removes on destroy.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from rhplan.plugin import (
    MARKER,
    Capabilities,
    ClusterRecord,
    ConfigError,
    Connection,
    LocalConnection,
    Provider,
    ProviderContext,
    ProviderError,
)


class LocalProvider(Provider):
    name = "local"
    capabilities = Capabilities(local_filesystem=True)  # package folders used in place

    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: ProviderContext, file: str,
                     line: int) -> dict[str, Any]:
        # the core's setting a local cluster has no use for: refused, not ignored (other
        # providers' settings never reach this hook: config/provider_schema.check_own)
        if attrs.get("ips") is not None:
            raise ConfigError(f"cluster {name!r}: ips does not apply to provider \"local\" "
                              "(this machine); remove it", file, line)
        if attrs.get("num_instances") not in (None, 1):
            raise ConfigError(f"cluster {name!r}: a local cluster has exactly one host; remove "
                              "num_instances or set it to 1", file, line)
        if attrs.get("autostop_mins") and not attrs.get("autostop_command"):
            raise ConfigError(f"cluster {name!r}: autostop on a local cluster would shut down "
                              "this machine; set autostop_command (e.g. a script that stops "
                              "your work) or remove autostop_mins", file, line)
        attrs["ips"] = ["127.0.0.1"]
        if not attrs.get("resources"):
            attrs["resources"] = {"CPU": os.cpu_count() or 1, "GPU": 0}
        root = attrs.get("root_dir") or str(_default_root(ctx, name))
        attrs["root_dir"] = str(Path(os.path.expanduser(root)).absolute())
        return attrs

    def create(self, attrs: dict[str, Any], ctx: ProviderContext) -> ClusterRecord:
        root = Path(attrs["root_dir"])
        python = shutil.which(attrs.get("python") or "python3")
        if python is None:
            raise ProviderError(f"{attrs.get('python')!r} is not on PATH on this machine; "
                                "install Python 3.9+ or set python = \"/path/to/python3\"")
        _make_root(root)
        return ClusterRecord(attrs)

    def read(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
             ) -> dict[str, Any] | None:
        if not (Path(attrs["root_dir"]) / MARKER).exists():
            # this machine is still here and may still run the cluster's Ray: forgetting
            # the cluster would leak it. It stays recorded, to be repaired (a new folder,
            # Ray started again in it) or destroyed (Ray stopped by its temp dir).
            attrs["ray_status"] = "stopped"
        return attrs

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: ProviderContext) -> ClusterRecord:
        _make_root(Path(after["root_dir"]))  # the folder may have been removed outside
        return ClusterRecord(after, private)

    def delete(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> None:
        root = Path(attrs["root_dir"])
        # only ever remove a folder rhplan created (it holds the marker)
        if (root / MARKER).exists():
            shutil.rmtree(root)

    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: ProviderContext) -> str:
        """Ray on this machine is rhplan's own: the driver's interpreter and version."""
        return sys.executable

    def connect(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> Connection:
        return LocalConnection()


def _make_root(root: Path) -> None:
    """The cluster's folder, with the marker that makes it rhplan's to remove."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / MARKER).exists():
        (root / MARKER).write_text(json.dumps({"owner": "rhplan"}))


def _default_root(ctx: ProviderContext, name: str) -> Path:
    """.rhplan/clusters/NAME; another workspace's clusters live apart
    (.rhplan/workspaces/WS/clusters/NAME), or its apply and destroy would reach the
    default workspace's Ray head and envs of the same name on this machine."""
    base = ctx.config_dir / ".rhplan"
    workspace = ctx.workspace
    if workspace != "default":
        base = base / "workspaces" / workspace
    return base / "clusters" / name

