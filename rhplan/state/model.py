"""The state model: what rhplan recorded about each resource after the last apply.

State is plain data with a versioned JSON form, so any backend (local file, S3)
stores the same document and `rhplan show -json` can print it as is.
"""
from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

from rhplan.errors import StateError


def _installed_version() -> str:
    # Recorded in every state file so a newer file can say which rhplan wrote it.
    try:
        return version("rhplan")
    except PackageNotFoundError:
        return "0.0.0"


RHPLAN_VERSION = _installed_version()

_RESOURCE_KEYS = ("address", "type", "name", "provider", "attributes", "dependencies", "private")


def _shape_error(source: str, what: str) -> StateError:
    return StateError(
        f"{source}: state has the wrong shape: {what}; restore the backup or fix the file"
    )


@dataclass
class ResourceState:
    """One managed resource as last applied: attributes plus what it depended on."""

    address: str
    type: str
    name: str
    provider: str
    attributes: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    private: dict[str, Any] = field(default_factory=dict)  # provider-private data

    def to_json(self) -> dict[str, Any]:
        # Deep copies: the result may be edited or kept while the state moves on.
        return {
            "address": self.address,
            "type": self.type,
            "name": self.name,
            "provider": self.provider,
            "attributes": copy.deepcopy(self.attributes),
            "dependencies": list(self.dependencies),
            "private": copy.deepcopy(self.private),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], source: str = "state", copy_values: bool = True
                  ) -> ResourceState:
        if not isinstance(d, Mapping):
            raise _shape_error(source, f"a resource is a {type(d).__name__}, not an object")
        where = f"resource {d.get('address', '?')!r}"
        missing = [k for k in _RESOURCE_KEYS[:5] if k not in d]
        if missing:
            raise _shape_error(source, f"{where} lacks {', '.join(missing)}")
        for key in ("address", "type", "name", "provider"):
            if not isinstance(d[key], str) or not d[key]:
                raise _shape_error(source, f"{where}: {key} must be a non-empty string")
        attributes = d["attributes"]
        dependencies = d.get("dependencies", [])
        private = d.get("private", {})
        if not isinstance(attributes, dict):
            raise _shape_error(source, f"{where}: attributes must be an object")
        if not isinstance(dependencies, list) or not all(
            isinstance(x, str) for x in dependencies
        ):
            raise _shape_error(source, f"{where}: dependencies must be a list of addresses")
        if not isinstance(private, dict):
            raise _shape_error(source, f"{where}: private must be an object")
        return cls(
            address=d["address"],
            type=d["type"],
            name=d["name"],
            provider=d["provider"],
            # a state just parsed from JSON owns its values: no copy needed
            attributes=copy.deepcopy(attributes) if copy_values else attributes,
            dependencies=list(dependencies),
            private=copy.deepcopy(private) if copy_values else private,
        )


@dataclass
class State:
    """Everything recorded for one configuration.

    lineage identifies the state's history (a fresh one per `State.new()`), serial
    counts writes, so a saved plan can tell whether the state moved under it.
    """

    lineage: str
    serial: int = 0
    resources: dict[str, ResourceState] = field(default_factory=dict)  # keyed by address
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> value, sensitive
    rhplan_version: str = RHPLAN_VERSION
    FORMAT_VERSION: ClassVar[int] = 1

    @classmethod
    def new(cls) -> State:
        return cls(lineage=str(uuid.uuid4()))

    def copy(self) -> State:
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        # Resources as a list sorted by address: stable diffs of the file in review.
        return {
            "format_version": self.FORMAT_VERSION,
            "rhplan_version": self.rhplan_version,
            "serial": self.serial,
            "lineage": self.lineage,
            "resources": [self.resources[a].to_json() for a in sorted(self.resources)],
            "outputs": copy.deepcopy(self.outputs),
        }

    @classmethod
    def from_json(cls, d: Any, source: str, copy_values: bool = True) -> State:
        """Build a State from its JSON form; `source` (a path or URL) names it in errors."""
        if not isinstance(d, Mapping):
            raise _shape_error(source, f"the top level is a {type(d).__name__}, not an object")
        fv = d.get("format_version")
        written_by = d.get("rhplan_version", "an unknown version")
        if not isinstance(fv, int) or isinstance(fv, bool):
            raise _shape_error(source, "format_version is missing or not an integer")
        if fv > cls.FORMAT_VERSION:
            raise StateError(
                f"{source}: state format_version {fv} was written by rhplan {written_by}, "
                f"newer than this rhplan {RHPLAN_VERSION} (reads format {cls.FORMAT_VERSION}); "
                "upgrade rhplan to use this state"
            )
        if fv < cls.FORMAT_VERSION:
            raise StateError(
                f"{source}: state format_version {fv} is not supported "
                f"(this rhplan reads format {cls.FORMAT_VERSION}); "
                "restore the backup or fix the file"
            )
        lineage = d.get("lineage")
        serial = d.get("serial")
        if not isinstance(lineage, str) or not lineage:
            raise _shape_error(source, "lineage must be a non-empty string")
        if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
            raise _shape_error(source, "serial must be a non-negative integer")
        raw_resources = d.get("resources", [])
        if not isinstance(raw_resources, list):
            raise _shape_error(source, "resources must be a list")
        resources: dict[str, ResourceState] = {}
        for raw in raw_resources:
            res = ResourceState.from_json(raw, source, copy_values)
            if res.address in resources:
                raise _shape_error(source, f"resource {res.address!r} appears twice")
            resources[res.address] = res
        raw_outputs = d.get("outputs", {})
        if not isinstance(raw_outputs, dict):
            raise _shape_error(source, "outputs must be an object")
        outputs: dict[str, dict[str, Any]] = {}
        for name, out in raw_outputs.items():
            if not isinstance(out, dict) or "value" not in out:
                raise _shape_error(source, f"output {name!r} must be an object with a value")
            outputs[name] = {
                "value": copy.deepcopy(out["value"]),
                "sensitive": bool(out.get("sensitive", False)),
            }
        rhplan_version = d.get("rhplan_version")
        return cls(
            lineage=lineage,
            serial=serial,
            resources=resources,
            outputs=outputs,
            rhplan_version=rhplan_version if isinstance(rhplan_version, str) else "0.0.0",
        )
