"""The steps of `rhplan apply` and `rhplan destroy`, under the state lock: take a saved
plan (checked to still fit) or make one, show it, ask for approval, then either record
what a refresh-only plan found, record the refresh of a plan with nothing to change, or
apply it. What is shown and asked goes through an ApplyView (text or Terraform's JSON
UI, rhplan/views/); the outcome says how it ended, and the command's exit code follows
from it (-json's view ends a failed apply with its error itself)."""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rhplan.plan.model import Plan
from rhplan.plan.planner import PlanOptions

if TYPE_CHECKING:
    from rhplan.apply import ApplyResult
    from rhplan.workspace import Workspace


@dataclass(frozen=True)
class ApplyRequest:
    options: PlanOptions  # destroy, targets, replace, refresh_only
    refresh: bool = True
    parallelism: int = 10
    plan_file: str | None = None  # apply this saved plan instead of planning
    auto_approve: bool = False
    # seconds between "Still creating..." lines; None: RHPLAN_PROGRESS_SECONDS, else 10
    progress_every: float | None = None


class ApplyView(Protocol):
    def plan(self, plan: Plan, notes: list[str], saved: bool) -> None:
        """Show the plan (and the notes made while planning)."""

    def confirm(self, what: str) -> bool:
        """Ask the user to approve WHAT; True to go on."""

    def cancelled(self) -> None: ...

    def line(self, text: str) -> None:
        """One progress line of the apply engine."""

    def recorded(self, outputs: dict[str, Any]) -> None:
        """A refresh-only plan's findings were written to the state."""

    def unchanged(self, destroy: bool, outputs: dict[str, Any]) -> None:
        """The plan had nothing to change."""

    def finished(self, result: ApplyResult, destroy: bool, outputs: dict[str, Any]) -> None:
        """The apply ran (all of it, or until a failure; a view may end the command then
        by raising its error: apply -json)."""


@dataclass(frozen=True)
class ApplyOutcome:
    how: str  # "applied", "failed", "cancelled", "unchanged", "recorded", "nothing"
    destroy: bool = False
    result: ApplyResult | None = None

    @property
    def ok(self) -> bool:
        return self.how not in ("failed", "cancelled")


def run_apply(ws: Workspace, req: ApplyRequest, view: ApplyView) -> ApplyOutcome:
    opts = req.options
    with ws.backend.locked("apply"):
        if req.plan_file:
            saved, p, planner, state = ws.replan_file(req.plan_file, req.parallelism)
            view.plan(p, ws.notes, saved=True)
            if saved.refresh_only:
                return _record(ws, state, view)
            destroy = saved.destroy
        else:
            p, planner, state = ws.make_plan(opts, req.refresh, req.parallelism)
            view.plan(p, ws.notes, saved=False)
            destroy = opts.destroy
            if opts.refresh_only:
                if not p.has_changes:
                    return ApplyOutcome("nothing")
                if req.auto_approve or view.confirm(
                        "update the rhplan state to reflect these detected changes"):
                    return _record(ws, state, view)
                view.cancelled()
                return ApplyOutcome("cancelled")
            if not p.has_changes:
                ws.save_refreshed(state)
                view.unchanged(destroy, ws.backend.read().outputs)
                return ApplyOutcome("unchanged", destroy)
            if not req.auto_approve and not view.confirm(
                    "destroy all resources" if destroy else "perform these actions"):
                view.cancelled()
                return ApplyOutcome("cancelled", destroy)
        gc.enable()  # planning is done (the CLI pauses collection for it): a long,
        # threaded apply collects as usual
        every = req.progress_every if req.progress_every is not None else float(
            os.environ.get("RHPLAN_PROGRESS_SECONDS", "10"))
        result = ws.apply(p, planner, state, req.parallelism, view.line, every)
        view.finished(result, destroy, ws.backend.read().outputs if result.ok else {})
        return ApplyOutcome("applied" if result.ok else "failed", destroy, result)


def _record(ws: Workspace, refreshed: Any, view: ApplyView) -> ApplyOutcome:
    """apply -refresh-only: the state takes what refresh read; no remote object changes."""
    ws.save_refreshed(refreshed)
    view.recorded(ws.backend.read().outputs)
    return ApplyOutcome("recorded")
