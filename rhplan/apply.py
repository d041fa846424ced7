"""Apply: carry out a Plan by walking its graph, independent steps in parallel.

Deletes go first, dependents before what they depend on; then creates and updates
in dependency order. The state is written after every finished step, so a crash
loses nothing that was done. A failed step stops only the steps that depend on it.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from rhplan.config.evaluate import UNKNOWN, is_known
from rhplan.errors import PartialFailure, RhplanError
from rhplan.plan.model import Change, Plan
from rhplan.plan.planner import Planner
from rhplan.provider import RunContext
from rhplan.resources import TYPES
from rhplan.state.backend import Backend
from rhplan.state.model import ResourceState, State

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
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running: dict[str, tuple[str, float]] = {}

    # ---- the walk ----------------------------------------------------------
    def run(self) -> ApplyResult:
        deletes = [Step(c.address, "delete", c) for c in self.plan.changes
                   if c.action in ("delete", "replace")]
        creates = [Step(c.address, "update" if c.action == "update" else "create", c)
                   for c in self.plan.changes if c.action in ("create", "update", "replace")]
        previous = signal.getsignal(signal.SIGINT)
        on_main = threading.current_thread() is threading.main_thread()
        if on_main:
            signal.signal(signal.SIGINT, self._interrupt)
        ticker = threading.Thread(target=self._progress, daemon=True)
        ticker.start()
        try:
            self._walk(deletes, self._delete_graph(deletes))
            blocked = set(self.result.failed) | set(self.result.skipped)
            self._walk(creates, self._create_graph(creates), blocked)
            if not self.result.interrupted:
                self._write_outputs()
        finally:
            self._stop.set()
            if on_main:
                signal.signal(signal.SIGINT, previous)
        return self.result

    def _delete_graph(self, steps: list[Step]) -> nx.DiGraph:
        g = nx.DiGraph()
        names = {s.address for s in steps}
        g.add_nodes_from(names)
        for s in steps:
            rs = self.state.resources.get(s.address)
            for dep in (rs.dependencies if rs else []):
                if dep in names:
                    g.add_edge(s.address, dep)  # the dependent goes first
        return g

    def _create_graph(self, steps: list[Step]) -> nx.DiGraph:
        g = nx.DiGraph()
        names = {s.address for s in steps}
        g.add_nodes_from(names)
        for s in steps:
            for dep in s.change.dependencies:
                if dep in names:
                    g.add_edge(dep, s.address)
        return g

    def _walk(self, steps: list[Step], g: nx.DiGraph, blocked: set[str] = frozenset()) -> None:
        by_addr = {s.address: s for s in steps}
        pending = set(by_addr)
        done: set[str] = set()
        for b in blocked:  # a replace whose delete failed must not be created
            if b in pending:
                self._skip(b, pending, g)
        futures: dict[Future[None], str] = {}
        with ThreadPoolExecutor(max_workers=self.parallelism) as pool:
            while pending or futures:
                if not self.result.interrupted:
                    ready = sorted(a for a in pending
                                   if all(p in done for p in g.predecessors(a)))
                    for a in ready[: self.parallelism - len(futures)]:
                        pending.discard(a)
                        futures[pool.submit(self._execute, by_addr[a])] = a
                elif pending:
                    self.result.skipped.extend(sorted(pending))
                    pending.clear()
                if not futures:
                    if pending:  # nothing runnable: everything left depends on a failure
                        self.result.skipped.extend(sorted(pending))
                        pending.clear()
                    break
                finished, _ = wait(list(futures), timeout=0.2, return_when=FIRST_COMPLETED)
                for f in finished:
                    a = futures.pop(f)
                    try:
                        f.result()
                        done.add(a)
                    except Exception as exc:  # one failure stops its dependents only
                        msg = str(exc) if isinstance(exc, RhplanError) else (
                            f"{type(exc).__name__}: {exc}")
                        self.result.failed[a] = msg
                        self.out(f"Error: {a}: {msg}")
                        self._skip(a, pending, g)

    def _skip(self, addr: str, pending: set[str], g: nx.DiGraph) -> None:
        for d in sorted(nx.descendants(g, addr)):
            if d in pending:
                pending.discard(d)
                self.result.skipped.append(d)

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
        with self._lock:
            self.state.resources.pop(step.address, None)
            self.backend.write(self.state)
            self.result.destroyed += 1

    def _attributes(self, c: Change) -> dict[str, Any]:
        """The planned attributes; values unknown at plan time are evaluated now that
        what they refer to exists."""
        after = dict(c.after or {})
        pending = [k for k, v in after.items() if not is_known(v)
                   and k not in TYPES[c.type].after_apply]
        if pending:
            rc = self.planner.cfg.resources[c.address]
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
        with self._lock:
            self.state.resources[c.address] = new
            self.backend.write(self.state)
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
        with self._lock:
            self.state.resources[c.address] = new
            self.backend.write(self.state)
            self.result.changed += 1

    def _record_partial(self, address: str, exc: PartialFailure) -> None:
        """What was set up before the failure is recorded, so nothing is lost."""
        if isinstance(exc.resource_state, ResourceState):
            with self._lock:
                self.state.resources[address] = exc.resource_state
                self.backend.write(self.state)

    def _write_outputs(self) -> None:
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
                self.state.outputs = outputs
                self.backend.write(self.state)

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
            os._exit(130)  # worker threads would otherwise be waited for
        self.result.interrupted = True
        self.out("Interrupt received. Gracefully shutting down: steps in progress will finish "
                 "and be saved, nothing new starts.")


def _secs(s: float) -> str:
    return f"{int(s)}s" if s < 60 else f"{int(s) // 60}m{int(s) % 60}s"
