"""`plan -json` / `apply -json`: Terraform's machine-readable UI, one JSON object per line
on stdout, each with @level, @message, @module, @timestamp and type: version,
resource_drift, planned_change, change_summary, outputs, apply_start, apply_progress,
apply_complete, apply_errored, diagnostic, log and state_lock_acquire (the lock-wait
notice, rhplan/state/lockwait.py). `refresh -json` streams version, resource_drift, a log
summary and outputs. Read from Terraform's "Machine
Readable UI" documentation and its internal/command/views/json package.

The apply engine reports progress as text lines (rhplan/apply.py: "ADDR: Creating...",
"ADDR: Creation complete after 2s", "ADDR: Still creating... [10s elapsed]",
"Error: ADDR: ..."); apply_line() turns each into its hook message, and anything else
into a log message, so the engine stays the same for both UIs.

`validate -json` is not streamed in Terraform either: validate_json() is its one
document (format_version, valid, error_count, warning_count, diagnostics)."""
from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from rhplan.errors import ConfigError, RhplanError
from rhplan.names import block_address
from rhplan.plan.model import Change, Plan
from rhplan.state.tfjson import split_address, value_type

UI_VERSION = "1.2"  # the version of Terraform's machine-readable UI these messages follow
MODULE = "terraform.ui"  # kept as Terraform writes it: tools filter on it

# planned_change / apply hooks name actions as Terraform's UI does
_ACTIONS = {"create": "create", "update": "update", "replace": "replace", "delete": "delete",
            "no-op": "noop", "forget": "remove"}
# "ADDR (deposed object 'NAME'): Destroying...": a hook of ADDR, as Terraform reports it
_HOOK = re.compile(r"^(?P<addr>\S+)(?: \(deposed object .+\))?: "
                   r"(?P<what>Creating\.\.\.|Modifying\.\.\.|Destroying\.\.\."
                   r"|(?:Creation|Modifications|Destruction) complete after (?P<done>\S+)"
                   r"|Still (?:creating|modifying|destroying)\.\.\. \[(?P<still>\S+) elapsed\])$")
_ERRORED = {"create": "Creation", "update": "Modifications", "delete": "Destruction"}
_HOOK_ACTION = {"Creat": "create", "Modif": "update", "Destr": "delete", "Still c": "create",
                "Still m": "update", "Still d": "delete"}


def seconds(text: str) -> int:
    """2s -> 2, 1m5s -> 65 (rhplan/apply.py's _secs)."""
    m = re.fullmatch(r"(?:(\d+)m)?(\d+)s", text)
    return int(m.group(1) or 0) * 60 + int(m.group(2)) if m else 0


def resource(address: str, provider: str = "") -> dict[str, Any]:
    """Terraform's UI resource address object."""
    module, type_, name, key = split_address(address)
    return {"addr": address, "module": module,
            "resource": address[len(module) + 1:] if module else address,
            "implied_provider": provider or "rhplan", "resource_type": type_,
            "resource_name": name, "resource_key": key}


class JsonUI:
    def __init__(self, version: str, write: Callable[[str], None] | None = None):
        self.version = version
        self.write = write or _stdout_line
        self._lock = threading.Lock()  # apply's steps report from several threads
        self._started: dict[str, tuple[str, float]] = {}  # address -> (action, when)

    def emit(self, type_: str, message: str, level: str = "info", **fields: Any) -> None:
        stamp = datetime.now(timezone.utc).astimezone().isoformat(timespec="microseconds")
        msg = {"@level": level, "@message": message, "@module": MODULE, "@timestamp": stamp,
               **fields, "type": type_}
        text = json.dumps(msg, ensure_ascii=False)
        with self._lock:
            self.write(text)

    def start(self) -> None:
        self.emit("version", f"rhplan {self.version}", terraform=self.version, rhplan=self.version,
                  ui=UI_VERSION)
        from rhplan.state import lockwait  # waiting for the state lock is said on stdout too
        lockwait.set_notice(self.lock_wait)

    def lock_wait(self, line: str) -> None:
        """The lock-wait notice as Terraform's JSON state locker writes it (type
        state_lock_acquire, Terraform 1.7+), with rhplan's words: who holds it, how long."""
        self.emit("state_lock_acquire", line)

    # ---- plan ----------------------------------------------------------------
    def plan(self, plan: Plan) -> None:
        """The plan's messages; in apply and destroy too, whose plan part Terraform
        reports as operation "plan"."""
        for d in plan.drifted:
            self.emit("resource_drift", f"{d.address}: Drift detected ({d.action})",
                      change={"resource": resource(d.address, d.provider),
                              "action": _ACTIONS[d.action]})
        if not plan.refresh_only:
            # the block addresses the configuration has (action reasons of deletes)
            configured = set((plan.configuration or {}).get("resource_addresses", [])) or {
                block_address(c.address) for c in plan.changes if c.after is not None}
            for c in plan.changes:
                change = self._planned(c, plan, configured)
                if change is not None:
                    self.emit("planned_change", f"{c.address}: Plan to {change['action']}",
                              change=change)
                for name in c.deposed:  # Terraform: a delete of its own, same address
                    self.emit("planned_change",
                              f"{c.address} (deposed object {name!r}): Plan to delete",
                              change={"resource": resource(c.address, c.provider),
                                      "action": "delete"})
        add, change_, remove = (0, 0, 0) if plan.refresh_only else plan.counts()
        imported = sum(1 for c in plan.changes if c.imported_id)
        text = ("Plan: " + (f"{imported} to import, " if imported else "")
                + f"{add} to add, {change_} to change, {remove} to destroy.")
        if plan.refresh_only:
            text = f"Refresh-only plan: {len(plan.drifted)} object(s) changed outside rhplan."
        self.emit("change_summary", text, changes={
            "add": add, "change": change_, "import": imported, "remove": remove,
            "operation": "plan"})
        outs = {n: {"sensitive": bool(o.get("sensitive")), "action": _ACTIONS[o["action"]]}
                for n, o in sorted(plan.output_changes.items()) if o["action"] != "no-op"}
        if outs:
            self.emit("outputs", f"Outputs: {len(outs)}", outputs=outs)

    def _planned(self, c: Change, plan: Plan, configured: set[str]) -> dict[str, Any] | None:
        from rhplan.plan.tfjson import action_reason
        action = _ACTIONS[c.action]
        if action == "noop":  # Terraform lists a no-op only when it moves or imports
            if c.previous_address:
                action = "move"
            elif c.imported_id:
                action = "import"
            else:
                return None
        out: dict[str, Any] = {"resource": resource(c.address, c.provider), "action": action}
        if c.previous_address:
            out["previous_resource"] = resource(c.previous_address, c.provider)
        reason = action_reason(c, plan, configured)
        if reason:  # the UI's names: "replace_because_cannot_update" -> "cannot_update"
            out["reason"] = {"replace_because_cannot_update": "cannot_update",
                             "replace_by_request": "requested",
                             "replace_by_triggers": "replace_triggered_by"}.get(reason, reason)
        return out

    # ---- refresh -------------------------------------------------------------
    def refreshed(self, drift: list[dict[str, str]], providers: dict[str, str],
                  gone: set[str], summary: str, outputs: dict[str, dict[str, Any]]) -> None:
        """`refresh -json`: what refresh found changed outside rhplan (a resource_drift
        per note, "delete" where the object is gone), the summary as a log message, and
        the outputs, as Terraform's refresh view ends."""
        for d in drift:
            addr = d["address"]
            self.emit("resource_drift", d["message"], change={
                "resource": resource(addr, providers.get(addr, "")),
                "action": "delete" if addr in gone else "update"})
        self.emit("log", summary)
        self.emit("outputs", f"Outputs: {len(outputs)}", outputs=_outputs(outputs))

    # ---- apply ---------------------------------------------------------------
    def apply_line(self, line: str) -> None:
        m = _HOOK.match(line)
        if m is None:
            if line.startswith("Error: "):
                addr, _, msg = line[len("Error: "):].partition(": ")
                action, t0 = self._started.get(addr, ("update", time.monotonic()))
                elapsed = int(time.monotonic() - t0)
                self.emit("apply_errored", f"{addr}: {_ERRORED[action]} errored after "
                          f"{elapsed}s", level="error", hook={
                              "resource": resource(addr), "action": action,
                              "elapsed_seconds": elapsed})
                self.diagnostic(f"{addr}: {msg}")
                return
            self.emit("log", line)
            return
        addr, what = m.group("addr"), m.group("what")
        action = next(a for prefix, a in _HOOK_ACTION.items() if what.startswith(prefix))
        hook: dict[str, Any] = {"resource": resource(addr), "action": action}
        if m.group("done"):
            hook["elapsed_seconds"] = seconds(m.group("done"))
            self.emit("apply_complete", line, hook=hook)
        elif m.group("still"):
            hook["elapsed_seconds"] = seconds(m.group("still"))
            self.emit("apply_progress", line, hook=hook)
        else:
            self._started[addr] = (action, time.monotonic())
            self.emit("apply_start", line, hook=hook)

    def applied(self, added: int, changed: int, destroyed: int, destroy: bool,
                outputs: dict[str, dict[str, Any]]) -> None:
        text = (f"Destroy complete! Resources: {destroyed} destroyed." if destroy else
                f"Apply complete! Resources: {added} added, {changed} changed, {destroyed} "
                "destroyed.")
        self.emit("change_summary", text, changes={
                      "add": added, "change": changed, "import": 0, "remove": destroyed,
                      "operation": "destroy" if destroy else "apply"})
        self.emit("outputs", f"Outputs: {len(outputs)}", outputs=_outputs(outputs))

    # ---- errors ----------------------------------------------------------------
    def diagnostic(self, message: str, severity: str = "error",
                   error: RhplanError | None = None) -> None:
        self.emit("diagnostic", f"{severity.capitalize()}: {message}", level=severity,
                  diagnostic=diagnostic(message, severity, error))


def diagnostic(message: str, severity: str = "error", error: RhplanError | None = None
               ) -> dict[str, Any]:
    """Terraform's diagnostic object; a ConfigError's file:line becomes its range."""
    out: dict[str, Any] = {"severity": severity, "summary": message, "detail": ""}
    if isinstance(error, ConfigError) and error.file:
        out["summary"] = error.message
        line = error.line or 1
        out["range"] = {"filename": error.file, "start": {"line": line, "column": 1, "byte": 0},
                        "end": {"line": line, "column": 1, "byte": 0}}
    return out


def validate_json(error: RhplanError | None, warnings: list[str]) -> dict[str, Any]:
    diags = [diagnostic(w, "warning") for w in warnings]
    if error is not None:
        diags.append(diagnostic(str(error), "error", error))
    return {"format_version": "1.0", "valid": error is None,
            "error_count": int(error is not None), "warning_count": len(warnings),
            "diagnostics": diags}


def _outputs(outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {n: {"sensitive": bool(o.get("sensitive")), "type": value_type(o.get("value")),
                "value": "(sensitive value)" if o.get("sensitive") else o.get("value")}
            for n, o in sorted(outputs.items())}


def _stdout_line(line: str) -> None:
    sys.stdout.write(line + "\n")  # one write per message, seen as it happens (a pipe
    sys.stdout.flush()              # or file is block-buffered): the UI is a stream
    sys.stdout.flush()
