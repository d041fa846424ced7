"""A Plan is plain data: what will change, how, and why. It is saved as JSON and
rendered as text by a separate view (rhplan.views.plan)."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rhplan.config.values import UNKNOWN
from rhplan.errors import RhplanError

# 2: plans record the digest of the state they were made from (state_digest)
PLAN_FORMAT = 2

# Terraform's action lists, by our single action names
ACTIONS = {
    "create": ["create"],
    "update": ["update"],
    "replace": ["delete", "create"],
    "delete": ["delete"],
    "no-op": ["no-op"],
    "forget": ["forget"],  # a removed block with destroy = false: out of the state only
}


@dataclass
class Change:
    address: str
    type: str
    name: str
    provider: str
    action: str  # create | update | replace | delete | no-op
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str = ""
    replace_because: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    # attribute paths derived from sensitive values ("env_vars.TOKEN"): never shown
    sensitive: list[str] = field(default_factory=list)
    # the address the state records it under, when this plan moves it (Terraform's
    # implicit move of env.x to env.x[0] when count is added, and back)
    previous_address: str | None = None
    # the id an import block adopts it from (rhplan/plan/imports.py)
    imported_id: str | None = None
    # on-host names of old objects a create_before_destroy replacement left recorded
    # (an apply stopped between the two): destroyed by the next apply
    deposed: list[str] = field(default_factory=list)

    @property
    def actions(self) -> list[str]:
        return ACTIONS[self.action]

    def to_key(self) -> Any:
        """What must match when a saved plan is applied."""
        return encode_unknown(self.after)


@dataclass
class Plan:
    lineage: str
    serial: int
    changes: list[Change]
    output_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    drift: list[dict[str, str]] = field(default_factory=list)
    destroy: bool = False
    variables: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    prior_state: dict[str, Any] | None = None  # the refreshed state the plan was made against
    # State.digest() of the state the plan read, before its refresh; apply compares it
    # with the backend's, and derives the refreshed state itself (never from the file)
    state_digest: str = ""
    refresh_changed: bool = False  # the refresh changed the state it read
    rhplan_version: str = ""
    workspace: str = "default"  # the workspace whose state it was planned against
    # what refresh found changed outside rhplan: before = recorded, after = read
    # (Terraform's resource_drift; rhplan/plan/tfjson.py)
    drifted: list[Change] = field(default_factory=list)
    refresh_only: bool = False  # plan -refresh-only: only the drift, to record it
    # Terraform's configuration representation, kept by plan -out for show -json
    # (rhplan/config/tfjson.py)
    configuration: dict[str, Any] = field(default_factory=dict)
    timestamp: str = ""  # when it was made, UTC (RFC 3339)

    def counts(self) -> tuple[int, int, int]:
        add = sum(1 for c in self.changes if c.action in ("create", "replace"))
        change = sum(1 for c in self.changes if c.action == "update")
        destroy = sum(1 for c in self.changes if c.action in ("delete", "replace"))
        return add, change, destroy + sum(len(c.deposed) for c in self.changes)

    @property
    def has_changes(self) -> bool:
        if self.refresh_only:
            return bool(self.drifted)
        return any(c.action != "no-op" or c.previous_address or c.imported_id or c.deposed
                   for c in self.changes) or any(
            o["action"] != "no-op" for o in self.output_changes.values())

    def change(self, address: str) -> Change | None:
        return next((c for c in self.changes if c.address == address), None)

    # ---- files ---------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["format_version"] = PLAN_FORMAT
        return encode_unknown(d)

    @classmethod
    def from_json(cls, d: Any, source: str) -> Plan:
        """A Plan from a plan file's JSON; any field of the wrong shape (an edited or
        damaged file) is one RhplanError naming the file, never a TypeError later."""
        if not isinstance(d, dict) or d.get("format_version") != PLAN_FORMAT:
            raise RhplanError(f"{source} is not an rhplan plan file (or was made by another "
                              "version); run rhplan plan -out again")
        check = _Checker(source)
        unknown = sorted(set(d) - _PLAN_FIELDS - {"format_version"})
        if unknown:
            raise check.error(f"unknown field {unknown[0]!r}")
        check.typed(d, "lineage", str)
        check.typed(d, "serial", int)
        check.typed(d, "changes", list)
        check.typed(d, "destroy", bool, False)
        check.typed(d, "output_changes", dict, {})
        check.typed(d, "drift", list, [])
        check.typed(d, "variables", dict, {})
        check.typed(d, "rhplan_version", str, "")
        check.typed(d, "state_digest", str)
        check.typed(d, "refresh_changed", bool, False)
        check.typed(d, "workspace", str, "default")
        check.typed(d, "refresh_only", bool, False)
        _check_configuration(check, check.typed(d, "configuration", dict, {}))
        check.typed(d, "timestamp", str, "")
        for key in ("targets", "replace"):
            if not all(isinstance(a, str) for a in check.typed(d, key, list, [])):
                raise check.error(f"{key} must be a list of addresses")
        for o in d.get("output_changes", {}).values():
            if not isinstance(o, dict) or not isinstance(o.get("action"), str) or \
                    o["action"] not in ACTIONS or not {"before", "after"} <= set(o):
                raise check.error("an output change lacks a valid action, before or after")
        if not all(isinstance(x, dict) and all(isinstance(v, str) for v in x.values())
                   for x in d.get("drift", [])):
            raise check.error("drift must be a list of objects of strings")
        data_changes = check.typed(d, "changes", list)
        prior = check.typed(d, "prior_state", dict, None)
        if prior is not None:
            from rhplan.errors import StateError
            from rhplan.state.model import State
            try:
                State.from_json(prior, "prior_state", backup=None)
            except StateError as exc:
                raise check.error(str(exc).removesuffix("; fix the file")) from None
        # only planned values can be "(known after apply)": a {"$unknown": true} anywhere
        # else (variables, the prior state) stays plain data, as it was written
        d = {k: v for k, v in d.items() if k not in ("format_version", "changes")}
        d["output_changes"] = {n: {**o, "after": decode_unknown(o["after"])}
                               for n, o in d.get("output_changes", {}).items()}
        changes = [check.change(c) for c in data_changes]
        d["drifted"] = [check.change(c) for c in check.typed(d, "drifted", list, [])]
        return cls(changes=changes, **d)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)


_PLAN_FIELDS = {f.name for f in fields(Plan)}
_CHANGE_FIELDS = {f.name for f in fields(Change)}


class _Checker:
    """Shape checks of one plan file, each failing as one line naming the file."""

    def __init__(self, source: str):
        self.source = source

    def error(self, what: str) -> RhplanError:
        return RhplanError(f"{self.source} is damaged or was edited ({what}); run rhplan "
                           "plan -out again")

    def typed(self, d: dict[str, Any], key: str, kind: type, default: Any = ...) -> Any:
        if key not in d:
            if default is ...:
                raise self.error(f"{key} is missing")
            return default
        value = d[key]
        if value is None and default is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(f"{key} must be {_KIND_NAMES[kind]}")
        return value

    def change(self, c: Any) -> Change:
        if not isinstance(c, dict):
            raise self.error("a change is not an object")
        unknown = sorted(set(c) - _CHANGE_FIELDS)
        if unknown:
            raise self.error(f"a change has an unknown field {unknown[0]!r}")
        for key in ("address", "type", "name", "provider", "action"):
            self.typed(c, key, str)
        where = f"change of {c['address']!r}"
        if c["action"] not in ACTIONS:
            raise self.error(f"{where}: unknown action {c['action']!r}")
        for key in ("before", "after"):
            if key not in c:
                raise self.error(f"{where}: {key} is missing")
            if not isinstance(c[key], (dict, type(None))):
                raise self.error(f"{where}: {key} must be an object or null")
        if not isinstance(c.get("reason", ""), str):
            raise self.error(f"{where}: reason must be a string")
        for key in ("replace_because", "dependencies", "sensitive", "deposed"):
            if not all(isinstance(x, str) for x in self.typed(c, key, list, [])):
                raise self.error(f"{where}: {key} must be a list of strings")
        for key in ("previous_address", "imported_id"):
            if not isinstance(c.get(key), (str, type(None))):
                raise self.error(f"{where}: {key} must be a string or null")
        return Change(**{**c, "after": decode_unknown(c["after"])})


def _check_configuration(check: _Checker, conf: dict[str, Any]) -> None:
    """What show -json reads of the kept configuration (rhplan/config/tfjson.py)."""
    addresses = conf.get("resource_addresses", [])
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise check.error("configuration.resource_addresses must be a list of addresses")
    root = conf.get("root_module", {})
    variables = root.get("variables", {}) if isinstance(root, dict) else None
    if not isinstance(variables, dict) or not all(isinstance(v, dict)
                                                  for v in variables.values()):
        raise check.error("configuration.root_module must be an object whose variables "
                          "are objects")


_KIND_NAMES = {str: "a string", int: "a whole number", bool: "true or false",
               list: "a list", dict: "an object"}


def load_plan(path: Path, shown: str) -> Plan:
    """Read a plan file made by `rhplan plan -out`; every way it can be unreadable or
    damaged is one RhplanError naming `shown` (the name the user gave)."""
    hint = "make one with rhplan plan -out FILE"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RhplanError(f"plan file {shown!r} does not exist; {hint}") from None
    except OSError as exc:  # a directory, no permission
        raise RhplanError(f"cannot read plan file {shown!r}: {exc.strerror}; {hint}") from None
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise RhplanError(f"{shown}: not a plan file (not UTF-8 text at byte {exc.start}); "
                          f"{hint}") from None
    except json.JSONDecodeError as exc:
        raise RhplanError(f"{shown}:{exc.lineno}: not a plan file ({exc.msg}); {hint}") from None
    except (ValueError, RecursionError) as exc:  # NaN, a 5,000-digit number, deep nesting
        what = _unreadable(exc)
        raise RhplanError(f"{shown}: not a plan file ({what}); {hint}") from None
    return Plan.from_json(data, shown)


def _unreadable(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return "a number of thousands of digits" if "digits" in str(err) else str(err)[:80]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a plan can hold")


def encode_unknown(v: Any) -> Any:
    if v is UNKNOWN:
        return {"$unknown": True}
    if isinstance(v, dict):
        return {k: encode_unknown(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [encode_unknown(x) for x in v]
    return v


def decode_unknown(v: Any) -> Any:
    if isinstance(v, dict):
        if v == {"$unknown": True}:
            return UNKNOWN
        return {k: decode_unknown(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode_unknown(x) for x in v]
    return v


SENSITIVE_TEXT = "(sensitive value)"


def hide_sensitive(values: dict[str, Any] | None, paths: list[str], hide: Any
                   ) -> dict[str, Any] | None:
    """A copy of a resource's values with each sensitive path ("env_vars",
    "env_vars.TOKEN", "ssh.password") replaced by hide(value)."""
    if not values or not paths:
        return values
    out = dict(values)
    for path in paths:
        name, _, key = path.partition(".")
        if name not in out or out[name] is None or out[name] is UNKNOWN:
            continue
        if not key:
            out[name] = hide(out[name])
        elif isinstance(out[name], dict) and key in out[name]:
            out[name] = {**out[name], key: hide(out[name][key])}
    return out


def save_plan(path: Path, plan: Plan, shown: str) -> None:
    """Write a plan file readable by its owner only (0600): it carries the prior state
    (provider-private data) and keyed digests of secret values. Written beside the target
    and renamed over it, so a file that was 0644 before is replaced, not kept."""
    data = plan.dumps().encode("utf-8")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise RhplanError(f"cannot write plan file {shown!r}: {exc.strerror}; give a path "
                          "in a folder you can write") from None
    try:
        os.fchmod(fd, 0o600)  # mkstemp makes it 0600 already; said here, not assumed
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise RhplanError(f"cannot write plan file {shown!r}: {exc.strerror}") from None
