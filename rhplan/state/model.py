"""The state model: what rhplan recorded about each resource after the last apply.

State is plain data with a versioned JSON form, so any backend (local file, S3)
stores the same document and `rhplan show -json` can print it as is.
"""
from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

from rhplan.errors import StateError
from rhplan.names import block_address, parse_address


def _installed_version() -> str:
    # Recorded in every state file so a newer file can say which rhplan wrote it.
    try:
        return version("rhplan")
    except PackageNotFoundError:
        return "0.0.0"


RHPLAN_VERSION = _installed_version()

_RESOURCE_KEYS = ("address", "type", "name", "provider", "attributes", "dependencies", "private")

# Resource types brought up by a provider plugin: their private record has two parts,
# "ray" (the core's: its Ray head and workers, TLS, the local token copy) and "provider"
# (the provider's own: instance ids, recorded host keys ...), each written by its owner
# only. Other types' private record is the core's, as one object.
SPLIT_PRIVATE = frozenset({"cluster"})
_PARTS = ("ray", "provider")


# Where a stored state keeps its previous version: both backends write SOURCE.backup
# (a file beside it, or KEY.backup in the bucket). Files given to state push, and the
# states inside saved plans, have none: their readers pass backup=None.
BACKUP_BESIDE = "{source}.backup"


def _shape_error(source: str, what: str, backup: str | None = None) -> StateError:
    todo = f"restore {backup} or fix the file" if backup else "fix the file"
    return StateError(f"{source}: state has the wrong shape: {what}; {todo}")


def _json_type(v: Any) -> str:
    """What a JSON value is, in JSON's words (the reader of the message wrote JSON)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a bool"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "a list" if isinstance(v, list) else "an object"


def _unreadable(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return "a number of thousands of digits" if "digits" in str(err) else str(err)[:80]


def _not_json_values(d: Any) -> str | None:
    """What in a parsed document JSON cannot hold, or None. Python's json module reads
    NaN, Infinity and lone surrogates (\\ud800) that print, render and save would fail
    on later, with a traceback (found by fuzzing the state file)."""
    try:
        json.dumps(d, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as exc:
        if isinstance(exc, UnicodeEncodeError):
            bad = exc.object[exc.start:exc.end]  # type: ignore[index]
            return f"text holds {bad!r}, half of a UTF-16 pair, not a character"
        return "a number is NaN or Infinity, which JSON does not allow"
    except RecursionError:
        return "values nest too deeply"
    return None


def parse_state(raw: bytes, source: str, backup: str | None = BACKUP_BESIDE,
                copy_values: bool = False, todo: str | None = None) -> State:
    """A state from the bytes of a state file; every way it can be wrong is a one-line
    StateError naming `source` and what to do: restore its backup (stored states), or
    `todo` when given."""
    backup = backup.format(source=source) if backup else None
    todo = todo or (f"restore {backup} or fix it" if backup else "fix it")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise StateError(f"{source}: not a state file (not UTF-8 text at byte {err.start}); "
                         f"{todo}") from None
    except json.JSONDecodeError as err:
        raise StateError(f"{source}: not a state file (invalid JSON at line {err.lineno}: "
                         f"{err.msg}); {todo}") from None
    except (ValueError, RecursionError) as err:  # a 5,000-digit number; brackets 100,000 deep
        what = _unreadable(err)
        raise StateError(f"{source}: not a state file ({what}); {todo}") from None
    return State.from_json(data, source, copy_values, backup=backup)


@dataclass
class ResourceState:
    """One managed resource as last applied: attributes plus what it depended on."""

    address: str
    type: str
    name: str
    provider: str
    attributes: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    # the core's own record, never shown to users (a cluster's Ray head and workers,
    # an env's servlet identity ...); a cluster's is stored as private.ray
    private: dict[str, Any] = field(default_factory=dict)
    # a cluster's provider's own record (SPLIT_PRIVATE), stored as private.provider and
    # the one handed to the provider's hooks; empty for other types
    provider_private: dict[str, Any] = field(default_factory=dict)

    def stored_private(self) -> dict[str, Any]:
        """The private record as the state file holds it."""
        if self.type in SPLIT_PRIVATE:
            return {"ray": self.private, "provider": self.provider_private}
        return self.private

    def to_json(self, copy_values: bool = True) -> dict[str, Any]:
        # Deep copies: the result may be edited or kept while the state moves on (not
        # needed by a caller that only encodes it at once).
        private = self.stored_private()
        return {
            "address": self.address,
            "type": self.type,
            "name": self.name,
            "provider": self.provider,
            "attributes": copy.deepcopy(self.attributes) if copy_values else self.attributes,
            "dependencies": list(self.dependencies),
            "private": copy.deepcopy(private) if copy_values else private,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], source: str = "state", copy_values: bool = True,
                  backup: str | None = None) -> ResourceState:
        if not isinstance(d, Mapping):
            raise _shape_error(source, f"a resource is {_json_type(d)}, not an object",
                               backup)
        address = d.get("address", "?")
        where = f"resource {address if isinstance(address, str) else '?'!r}"
        missing = [k for k in _RESOURCE_KEYS[:5] if k not in d]
        if missing:
            raise _shape_error(source, f"{where} lacks {', '.join(missing)}", backup)
        for key in ("address", "type", "name", "provider"):
            if not isinstance(d[key], str) or not d[key]:
                raise _shape_error(source, f"{where}: {key} must be a non-empty string", backup)
        block, own = block_address(d["address"]), f"{d['type']}.{d['name']}"
        if (block != own and not (block.startswith("module.") and block.endswith("." + own))) or (
                "[" in d["address"] and parse_address(d["address"]) is None):
            raise _shape_error(source, f"{where}: its type and name say "
                                       f"{d['type']}.{d['name']!r}", backup)
        attributes = d["attributes"]
        dependencies = d.get("dependencies", [])
        private = d.get("private", {})
        if not isinstance(attributes, dict):
            raise _shape_error(source, f"{where}: attributes must be an object", backup)
        if not isinstance(dependencies, list) or not all(
            isinstance(x, str) for x in dependencies
        ):
            raise _shape_error(source, f"{where}: dependencies must be a list of addresses",
                               backup)
        if not isinstance(private, dict):
            raise _shape_error(source, f"{where}: private must be an object", backup)
        own: Any = {}
        if d["type"] in SPLIT_PRIVATE:
            if set(private) - set(_PARTS) or not all(
                    isinstance(private.get(k, {}), dict) for k in _PARTS):
                raise _shape_error(source, f"{where}: private must be an object of two "
                                           "objects, ray and provider", backup)
            private, own = private.get("ray", {}), private.get("provider", {})
        return cls(
            address=d["address"],
            type=d["type"],
            name=d["name"],
            provider=d["provider"],
            # a state just parsed from JSON owns its values: no copy needed
            attributes=copy.deepcopy(attributes) if copy_values else attributes,
            dependencies=list(dependencies),
            private=copy.deepcopy(private) if copy_values else private,
            provider_private=copy.deepcopy(own) if copy_values else own,
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
    # 2: a cluster's private record split into "ray" and "provider" (upgrade_from_1)
    FORMAT_VERSION: ClassVar[int] = 2

    @classmethod
    def new(cls) -> State:
        return cls(lineage=str(uuid.uuid4()))

    def copy(self) -> State:
        return copy.deepcopy(self)

    def recorded(self, copy_values: bool = True) -> dict[str, Any]:
        """What the state records, as compared between a saved plan and the backend:
        resources (attributes, dependencies, private data), outputs, lineage and serial.
        A state never written (serial 0) gets a new lineage each time it is read, so
        its lineage does not count."""
        d = self.to_json(copy_values)
        del d["rhplan_version"]  # who wrote it last, not what it records
        if not self.serial:
            d["lineage"] = ""
        return d

    def digest(self) -> str:
        """sha256 of the canonical JSON of recorded(): a saved plan keeps the digest of
        the state it was made from, and apply recomputes it from the backend's."""
        text = json.dumps(self.recorded(copy_values=False), sort_keys=True,
                          separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def to_json(self, copy_values: bool = True) -> dict[str, Any]:
        # Resources as a list sorted by address: stable diffs of the file in review.
        return {
            "format_version": self.FORMAT_VERSION,
            "rhplan_version": self.rhplan_version,
            "serial": self.serial,
            "lineage": self.lineage,
            "resources": [self.resources[a].to_json(copy_values)
                          for a in sorted(self.resources)],
            "outputs": copy.deepcopy(self.outputs) if copy_values else self.outputs,
        }

    def dumps(self) -> bytes:
        """The bytes of the state file: indented JSON, encoded straight from the state
        (no copies: at 2,000 resources copying cost a third of each write)."""
        return (json.dumps(self.to_json(copy_values=False), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, d: Any, source: str, copy_values: bool = True,
                  backup: str | None = BACKUP_BESIDE) -> State:
        """Build a State from its JSON form; `source` (a path or URL) names it in errors,
        and `backup` (a template of {source}; None if there is none) what to restore."""
        backup = backup.format(source=source) if backup else None
        if not isinstance(d, Mapping):
            raise _shape_error(source, f"the top level is {_json_type(d)}, not an object",
                               backup)
        fv = d.get("format_version")
        written_by = d.get("rhplan_version", "an unknown version")
        if not isinstance(fv, int) or isinstance(fv, bool):
            raise _shape_error(source, "format_version is missing or not an integer", backup)
        if fv > cls.FORMAT_VERSION:
            raise StateError(
                f"{source}: state format_version {fv} was written by rhplan {written_by}, "
                f"newer than this rhplan {RHPLAN_VERSION} (reads format {cls.FORMAT_VERSION}); "
                "upgrade rhplan to use this state"
            )
        if fv == 1:
            d = upgrade_from_1(d)
        elif fv < cls.FORMAT_VERSION:
            raise StateError(
                f"{source}: state format_version {fv} is not supported "
                f"(this rhplan reads format {cls.FORMAT_VERSION}); "
                + (f"restore {backup} or fix the file" if backup else "fix the file")
            )
        lineage = d.get("lineage")
        serial = d.get("serial")
        if not isinstance(lineage, str) or not lineage:
            raise _shape_error(source, "lineage must be a non-empty string", backup)
        if not isinstance(serial, int) or isinstance(serial, bool) or not 0 <= serial < 2**63:
            raise _shape_error(source, "serial must be a non-negative integer", backup)
        bad = _not_json_values(d)
        if bad:
            raise _shape_error(source, bad, backup)
        raw_resources = d.get("resources", [])
        if not isinstance(raw_resources, list):
            raise _shape_error(source, "resources must be a list", backup)
        resources: dict[str, ResourceState] = {}
        for raw in raw_resources:
            res = ResourceState.from_json(raw, source, copy_values, backup)
            if res.address in resources:
                raise _shape_error(source, f"resource {res.address!r} appears twice", backup)
            resources[res.address] = res
        raw_outputs = d.get("outputs", {})
        if not isinstance(raw_outputs, dict):
            raise _shape_error(source, "outputs must be an object", backup)
        outputs: dict[str, dict[str, Any]] = {}
        for name, out in raw_outputs.items():
            if not isinstance(out, dict) or "value" not in out:
                raise _shape_error(source, f"output {name!r} must be an object with a value",
                                   backup)
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


def upgrade_from_1(d: Mapping[str, Any]) -> dict[str, Any]:
    """A format 1 state as format 2: a cluster's one private object, where the core's
    Ray record and the provider's keys sat side by side, split into its "ray" part (the
    keys the core wrote: ray_*, deposed) and its "provider" part (the rest). Anything
    of the wrong shape is left for the reader to refuse."""
    resources = d.get("resources")
    if not isinstance(resources, list):
        return dict(d)
    out = []
    for r in resources:
        # a type of the wrong shape (a list, an object) is the reader's to refuse
        if isinstance(r, Mapping) and isinstance(r.get("type"), str) \
                and r["type"] in SPLIT_PRIVATE and isinstance(r.get("private"), dict):
            flat = r["private"]
            core = {k: v for k, v in flat.items() if _core_key(k)}
            r = {**r, "private": {"ray": core, "provider": {k: v for k, v in flat.items()
                                                            if k not in core}}}
        out.append(r)
    return {**d, "resources": out, "format_version": 2}


def _core_key(key: str) -> bool:
    """Whether a format 1 cluster's private key was the core's."""
    return key.startswith("ray_") or key == "deposed"
