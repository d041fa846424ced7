"""`fakecloud`: a provider written outside rhplan, using only rhplan.plugin.

Its "cloud" is a folder on this machine (`.rhplan/fakecloud/` beside the configuration,
where rhplan keeps its own files, so an env's working_dir leaves it out); a "machine"
is a folder in it with a record file, reached through a local connection. Ray and envs run on this
machine, under the machine's folder, as on any host. One machine per cluster:
several Ray nodes of one cluster would share this machine's process table.

    cluster "fc" {
      provider = "fakecloud"
    }
"""
from __future__ import annotations

import json
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from rhplan.plugin import (
    MARKER,
    UNKNOWN,
    ClusterRecord,
    ConfigError,
    Connection,
    LocalConnection,
    Provider,
    ProviderContext,
    ProviderError,
)

RECORD = "machine.json"


class FakeCloudProvider(Provider):
    name = "fakecloud"

    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: ProviderContext, file: str,
                     line: int) -> dict[str, Any]:
        # the core's setting it has no use for: refused, not silently ignored (other
        # providers' settings are refused before a hook is called)
        if attrs.get("ips"):
            raise ConfigError(f"cluster {name!r}: ips does not apply to provider "
                              "\"fakecloud\"; remove it", file, line)
        if attrs.get("num_instances") not in (None, 1):
            raise ConfigError(f"cluster {name!r}: a fakecloud cluster has one machine; "
                              "set num_instances = 1", file, line)
        attrs["num_instances"] = 1
        attrs["ips"] = ["127.0.0.1"]
        attrs["root_dir"] = str(_cloud(ctx) / name / "rhplan")
        attrs["resources"] = attrs.get("resources") or {"CPU": 1, "GPU": 0}
        attrs["instance_ids"] = UNKNOWN  # known once the machine is made
        return attrs

    def settle(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """The machine stays: its id, unknown in a fresh plan, is the recorded one."""
        if after.get("instance_ids") is UNKNOWN and before.get("instance_ids"):
            return dict(after, instance_ids=before["instance_ids"])
        return after

    def create(self, attrs: dict[str, Any], ctx: ProviderContext) -> ClusterRecord:
        machine = Path(attrs["root_dir"]).parent
        machine_id = f"fc-{uuid.uuid4().hex[:12]}"
        _make(machine, machine_id)
        attrs["instance_ids"] = [machine_id]
        return ClusterRecord(attrs, {"machine": str(machine), "machine_id": machine_id})

    def read(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
             ) -> dict[str, Any] | None:
        record = Path(private["machine"]) / RECORD
        if not record.exists():
            return None  # the machine was removed outside rhplan
        if not (Path(attrs["root_dir"]) / MARKER).exists():
            attrs["ray_status"] = "stopped"  # rhplan's folder went: apply makes it again
        return attrs

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: ProviderContext) -> ClusterRecord:
        _make(Path(private["machine"]), private["machine_id"])
        return ClusterRecord(dict(after, instance_ids=[private["machine_id"]]), private)

    def delete(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> None:
        machine = Path(private["machine"])
        if (machine / RECORD).exists():
            shutil.rmtree(machine)
        if machine.exists():
            raise ProviderError(f"machine folder {machine} is left; remove it and destroy "
                                "again")

    def connect(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> Connection:
        return LocalConnection()

    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: ProviderContext) -> str:
        """This machine's Ray is the driver's own: same interpreter, same version."""
        return sys.executable


def _cloud(ctx: ProviderContext) -> Path:
    return ctx.config_dir / ".rhplan" / "fakecloud"


def _make(machine: Path, machine_id: str) -> None:
    """The machine's folder, its record, and rhplan's folder (with its marker) in it."""
    root = machine / "rhplan"
    root.mkdir(parents=True, exist_ok=True)
    (machine / RECORD).write_text(json.dumps({"id": machine_id}))
    (root / MARKER).write_text(json.dumps({"owner": "rhplan"}))
