"""Apply: carry out a Plan by walking its graph, independent steps in parallel.

Deletes go first, dependents before what they depend on; then creates and updates
in dependency order. A failed step stops only the steps that depend on it (the walk
itself, which knows nothing of resources, is apply/walk.py).

State writes (see StateRecorder): a step that changed something outside the state (a
host, a cloud) is written before the step counts as done, so a crash never forgets
it; a step that only records something (a secret, a package) is written at most
WRITE_INTERVAL later, since a killed apply simply records it again. Each write costs
O(resources), so writing after every one of 2,000 such steps made the apply O(N^2).
The recorder is apply/recorder.py.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rhplan.apply.recorder import WRITE_INTERVAL, StateRecorder, changes_world
from rhplan.apply.walk import walk
from rhplan.config.values import UNKNOWN, is_known
from rhplan.errors import PartialFailure, RhplanError
from rhplan.plan.model import Change, Plan
from rhplan.plan.moved import moved_state
from rhplan.plan.planner import Planner
from rhplan.provider import RunContext
from rhplan.resources import TYPES
from rhplan.state.backend import Backend
from rhplan.state.model import ResourceState, State

# (tests read WRITE_INTERVAL and changes_world from here)
__all__ = ["WRITE_INTERVAL", "Applier", "ApplyResult", "StateRecorder", "Step", "changes_world"]

WORDS = {
    "create": ("Creating...", "Creation complete", "Still creating..."),
    "update": ("Modifying...", "Modifications complete", "Still modifying..."),
    "delete": ("Destroying...", "Destruction complete", "Still destroying..."),
}


@dataclass
class ApplyResult:
    added: int = 0
    changed: int = 0
    destroyed: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    state_writes: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and not self.interrupted


@dataclass(frozen=True)
class Step:
    address: str
    op: str  # create | update | delete
    change: Change


class Applier:
    def __init__(self, plan: Plan, planner: Planner, state: State, backend: Backend,
                 ctx: RunContext, parallelism: int = 10, out: Callable[[str], None] = print,
                 progress_every: float = 10.0):
        self.plan = plan
        self.planner = planner
        self.state = state
        self.backend = backend
        self.ctx = ctx
        self.parallelism = max(1, parallelism)
        self.out = out
        self.progress_every = progress_every
        self.result = ApplyResult()
        self._replacing: dict[str, ResourceState] = {}  # create_before_destroy: the old
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running: dict[str, tuple[str, float]] = {}
        self.recorder = StateRecorder(state, backend, self._lock)

    # ---- the walk ----------------------------------------------------------
    def run(self) -> ApplyResult:
        # an env replaced create_before_destroy: built first (under its new on-host
        # name), its old object (kept aside here) destroyed after every create
        self._replacing = {c.address: self.state.resources[c.address]
                           for c in self.plan.changes
                           if c.action == "replace" and c.address in self.state.resources
                           and _before_destroy(self.planner, c)}
        deletes = [Step(c.address, "delete", c) for c in self.plan.changes
                   if c.action in ("delete", "replace") and c.address not in self._replacing]
        # old objects recorded beside the resource (this apply's replacements add theirs)
        deposed = [c.address for c in self.plan.changes
                   if c.deposed or c.address in self._replacing]
        creates = [Step(c.address, "update" if c.action == "update" else "create", c)
                   for c in self.plan.changes if c.action in ("create", "update", "replace")]
        previous = signal.getsignal(signal.SIGINT)
        on_main = threading.current_thread() is threading.main_thread()
        if on_main:
            signal.signal(signal.SIGINT, self._interrupt)
        ticker = threading.Thread(target=self._progress, daemon=True)
        ticker.start()
        try:
            moves = {c.previous_address: c.address for c in self.plan.changes
                     if c.previous_address}
            if moves:  # env.x -> env.x[0]: the state says so before any step runs
                self.recorder.record(lambda st: moved_state(st, moves, in_place=True),
                                     durable=True)
            if any(c.imported_id for c in self.plan.changes):  # adopted into self.state
                self.recorder.record(lambda st: None, durable=True)
            forgets = [c.address for c in self.plan.changes if c.action == "forget"]
            if forgets:  # removed blocks with destroy = false: the state lets go, nothing else
                self.recorder.record(lambda st: _forget(st, forgets), durable=True)
            self._walk(deletes, self._delete_graph(deletes))
            blocked = set(self.result.failed) | set(self.result.skipped)
            self._walk(creates, self._create_graph(creates), blocked)
            self._destroy_deposed(deposed)
            if not self.result.interrupted:
                self._set_outputs()
        finally:
            self._stop.set()
            try:
                self.recorder.flush()  # the final write: whatever is still only in memory
            finally:
                self.result.state_writes = self.recorder.writes
                if on_main:
                    signal.signal(signal.SIGINT, previous)
        return self.result

    # The order of one walk: for each step, the steps that wait for it (plain dicts:
    # importing networkx would cost every apply ~0.5 s of start-up).
    def _delete_graph(self, steps: list[Step]) -> dict[str, list[str]]:
        g: dict[str, list[str]] = {s.address: [] for s in steps}
        for s in steps:
            rs = self.state.resources.get(s.address)
            for dep in (rs.dependencies if rs else []):
                if dep in g and dep not in g[s.address]:
                    g[s.address].append(dep)  # the dependent goes first
        return g

    def _create_graph(self, steps: list[Step]) -> dict[str, list[str]]:
        g: dict[str, list[str]] = {s.address: [] for s in steps}
        for s in steps:
            for dep in s.change.dependencies:
                if dep in g and s.address not in g[dep]:
                    g[dep].append(s.address)
        return g

    def _walk(self, steps: list[Step], g: dict[str, list[str]],
              blocked: set[str] = frozenset()) -> None:
        by_addr = {s.address: s for s in steps}
        walk(g, lambda a: self._execute(by_addr[a]), self.parallelism, failed=self._failed,
             skipped=self.result.skipped, interrupted=lambda: self.result.interrupted,
             blocked=blocked)

    def _failed(self, addr: str, exc: Exception) -> None:
        msg = _message(exc)
        self.result.failed[addr] = msg
        self.out(f"Error: {addr}: {msg}")

    # ---- one step ----------------------------------------------------------
    def _execute(self, step: Step) -> None:
        start_word, done_word, _ = WORDS[step.op]
        self.out(f"{step.address}: {start_word}")
        with self._lock:
            self._running[step.address] = (step.op, time.monotonic())
        t0 = time.monotonic()
        try:
            if step.op == "delete":
                self._delete(step)
            elif step.op == "create":
                self._create(step)
            else:
                self._update(step)
        finally:
            with self._lock:
                self._running.pop(step.address, None)
        self.out(f"{step.address}: {done_word} after {_secs(time.monotonic() - t0)}")

    def _delete(self, step: Step) -> None:
        rs = self.state.resources.get(step.address)
        if rs is not None:
            TYPES[rs.type].delete(rs, self.ctx, self.state)
        durable = rs is not None and changes_world(rs.type, "delete")
        self.recorder.record(lambda st: st.resources.pop(step.address, None), durable)
        with self._lock:
            self.result.destroyed += 1

    def _destroy_deposed(self, addresses: list[str]) -> None:
        """The old objects create_before_destroy replacements recorded beside the new one
        (this apply's, or an earlier apply's that stopped before destroying them); each
        is taken out of the record once destroyed."""
        for addr in addresses:
            rs = self.state.resources.get(addr)
            if self.result.interrupted or addr in self.result.failed or rs is None \
                    or addr in self.result.skipped:
                continue  # the old one is still what the state records
            for raw in list(rs.private.get("deposed") or []):
                old = ResourceState.from_json(raw, "deposed object")
                name = old.attributes.get("name")
                self.out(f"{addr} (deposed object {name!r}): Destroying...")
                t0 = time.monotonic()
                try:
                    TYPES[old.type].delete(old, self.ctx, self.state)
                except Exception as exc:  # the new one stands; the old one stays recorded
                    msg = _message(exc)
                    self.result.failed[addr] = f"destroying its old object {name!r}: {msg}"
                    self.out(f"Error: {addr}: destroying its old object {name!r}: {msg}")
                    break
                self.recorder.record(lambda st, r=rs, d=raw: _drop_deposed(r, d), durable=True)
                self.out(f"{addr} (deposed object {name!r}): Destruction complete after "
                         f"{_secs(time.monotonic() - t0)}")
                with self._lock:
                    self.result.destroyed += 1

    def _attributes(self, c: Change) -> dict[str, Any]:
        """The planned attributes; values unknown at plan time are evaluated now that
        what they refer to exists."""
        after = dict(c.after or {})
        pending = [k for k, v in after.items() if not is_known(v)
                   and k not in TYPES[c.type].after_apply]
        if pending:
            rc = self.planner.resource_config(c.address)
            assert rc is not None, c.address
            with self._lock:
                for addr, rs in self.state.resources.items():
                    self.planner.planned[addr] = rs.attributes
            fresh = self.planner.desired(rc)
            for k in pending:
                after[k] = fresh.get(k)
        for k in TYPES[c.type].after_apply:
            if after.get(k) is UNKNOWN:
                after.pop(k)
        return after

    def _create(self, step: Step) -> None:
        c = step.change
        rs = ResourceState(c.address, c.type, c.name, c.provider, self._attributes(c),
                           list(c.dependencies))
        try:
            new = TYPES[c.type].create(rs, self.ctx, self.state)
        except PartialFailure as exc:
            self._record_partial(c.address, exc)
            raise
        old = self._replacing.get(c.address)
        if old is not None:  # create_before_destroy: the old one stays recorded till gone
            record = old.to_json()
            record["private"].pop("deposed", None)
            new.private["deposed"] = [*(old.private.get("deposed") or []), record]
        self._record(new, changes_world(c.type, "create"))
        with self._lock:
            self.result.added += 1

    def _update(self, step: Step) -> None:
        c = step.change
        before = self.state.resources[c.address]
        after_attrs = self._attributes(c)
        for k in TYPES[c.type].after_apply:
            after_attrs.setdefault(k, before.attributes.get(k))
        after = ResourceState(c.address, c.type, c.name, c.provider, after_attrs,
                              list(c.dependencies), dict(before.private))
        try:
            new = TYPES[c.type].update(before, after, self.ctx, self.state)
        except PartialFailure as exc:
            self._record_partial(c.address, exc)
            raise
        self._record(new, changes_world(c.type, "update"))
        with self._lock:
            self.result.changed += 1

    def _record_partial(self, address: str, exc: PartialFailure) -> None:
        """What was set up before the failure is recorded, so nothing is lost."""
        if isinstance(exc.resource_state, ResourceState):
            self._record(exc.resource_state, durable=True)

    def _record(self, rs: ResourceState, durable: bool) -> None:
        def put(state: State) -> None:
            state.resources[rs.address] = rs
        self.recorder.record(put, durable)

    def _set_outputs(self) -> None:
        """The outputs, evaluated now that everything is applied (written by run()'s
        final write)."""
        with self._lock:
            for addr, rs in self.state.resources.items():
                self.planner.planned[addr] = rs.attributes
            outputs: dict[str, dict[str, Any]] = {}
            for name, o in self.planner.cfg.outputs.items():
                if self.plan.destroy:
                    continue
                try:
                    value = self.planner.evaluation.evaluate(o.value, o.file)
                except RhplanError:
                    continue  # refers to a resource that failed or was not applied
                if is_known(value):
                    outputs[name] = {"value": value, "sensitive": o.sensitive}
        if outputs != self.state.outputs:
            def put(state: State) -> None:
                state.outputs = outputs
            self.recorder.record(put, durable=False)

    # ---- progress and interrupts ----------------------------------------------
    def _progress(self) -> None:
        """Every progress_every seconds of a step's own run time, say it is still going."""
        told: dict[str, int] = {}
        tick = min(1.0, self.progress_every)
        while not self._stop.wait(tick):
            with self._lock:
                running = sorted(self._running.items())
            for addr, (op, t0) in running:
                ticks = int((time.monotonic() - t0) // self.progress_every)
                if ticks > told.get(addr, 0):
                    told[addr] = ticks
                    self.out(f"{addr}: {WORDS[op][2]} [{_secs(time.monotonic() - t0)} elapsed]")

    def _interrupt(self, signum: int, frame: Any) -> None:
        if self.result.interrupted:
            self.out("Two interrupts received. Exiting immediately; finished steps are saved.")
            if self._lock.acquire(timeout=5.0):  # not if a write hangs: it is written then
                self._lock.release()
                with contextlib.suppress(Exception):
                    self.recorder.flush()
            os._exit(130)  # worker threads would otherwise be waited for
        self.result.interrupted = True
        self.out("Interrupt received. Gracefully shutting down: steps in progress will finish "
                 "and be saved, nothing new starts.")


def _message(exc: Exception) -> str:
    """A step's failure as the apply reports it (an unexpected error with its type)."""
    return str(exc) if isinstance(exc, RhplanError) else f"{type(exc).__name__}: {exc}"


def _secs(s: float) -> str:
    return f"{int(s)}s" if s < 60 else f"{int(s) // 60}m{int(s) % 60}s"


def _forget(state: State, addresses: list[str]) -> None:
    for a in addresses:
        state.resources.pop(a, None)


def _before_destroy(planner: Planner, c: Change) -> bool:
    """Whether a replacement is create_before_destroy (planned under a new name)."""
    rc = planner.resource_config(c.address)
    return bool(rc is not None and rc.create_before_destroy and c.type == "env"
                and (c.after or {}).get("name") != (c.before or {}).get("name"))


def _drop_deposed(rs: ResourceState, raw: dict[str, Any]) -> None:
    rest = [d for d in rs.private.get("deposed") or [] if d is not raw]
    if rest:
        rs.private["deposed"] = rest
    else:
        rs.private.pop("deposed", None)
