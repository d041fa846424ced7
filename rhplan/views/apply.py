"""What `apply` and `destroy` show while they run: the plan (unless a saved plan's,
shown when it was made), the question, each step's progress line, and how it ended, as
text (TextApply) or Terraform's machine-readable UI (JsonApply). Both are
rhplan.workspace.apply_run's ApplyView, which decides when each is called."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rhplan.errors import RhplanError
from rhplan.views import outputs, planned

if TYPE_CHECKING:
    from rhplan.apply import ApplyResult
    from rhplan.plan.model import Plan
    from rhplan.views.json_ui import JsonUI


def confirm(what: str) -> bool:
    click.echo(f"\nDo you want to {what}?\n  rhplan will perform the actions described above.\n"
               "  Only 'yes' will be accepted to approve.\n")
    try:
        answer = input("  Enter a value: ")
    except EOFError:
        answer = ""
    return answer.strip() == "yes"


def _counts(result: ApplyResult) -> str:
    return (f"Resources: {result.added} added, {result.changed} changed, "
            f"{result.destroyed} destroyed.")


def _apply_failed(result: ApplyResult, destroy: bool) -> str:
    """The error an apply -json that did not finish ends with."""
    return (f"{'destroy' if destroy else 'apply'} "
            f"{'interrupted' if result.interrupted else 'failed'}: "
            f"{len(result.failed)} failed, {len(result.skipped)} skipped; what "
            "finished is saved in the state; fix the cause and run apply again")


class TextApply:
    """`apply` / `destroy` as text (rhplan.workspace.apply_run.ApplyView)."""

    def __init__(self, color: bool):
        self.color = color

    def plan(self, p: Plan, notes_: list[str], saved: bool) -> None:
        if not saved:  # a saved plan was shown when it was made
            planned(p, notes_, self.color, None)

    def confirm(self, what: str) -> bool:
        return confirm(what)

    def cancelled(self) -> None:
        click.echo("\nApply cancelled.")

    def line(self, text: str) -> None:
        click.echo(text)

    def recorded(self, values: dict[str, Any]) -> None:
        click.echo("\nApply complete! Resources: 0 added, 0 changed, 0 destroyed.")
        outputs(values)

    def unchanged(self, destroy: bool, values: dict[str, Any]) -> None:
        outputs(values)

    def finished(self, result: ApplyResult, destroy: bool, values: dict[str, Any]) -> None:
        word = "Destroy" if destroy else "Apply"
        if result.ok:
            click.echo(f"\n{word} complete! {_counts(result)}")
            outputs(values)
            return
        click.echo(f"\n{word} {'interrupted' if result.interrupted else 'failed'}. "
                   f"{_counts(result)}")
        for addr, msg in result.failed.items():
            click.echo(f"  failed:  {addr}: {msg}")
        for addr in result.skipped:
            click.echo(f"  skipped: {addr} (not started)")
        click.echo("What finished is saved in the state; fix the cause and run apply again.")


class JsonApply:
    """`apply -json` / `destroy -json`: Terraform's machine-readable UI."""

    def __init__(self, ui: JsonUI):
        self.ui = ui

    def plan(self, p: Plan, notes_: list[str], saved: bool) -> None:
        self.ui.plan(p)  # planning's notes are not logged by apply -json

    def confirm(self, what: str) -> bool:
        raise AssertionError("apply -json runs with -auto-approve or a saved plan")

    def cancelled(self) -> None:
        pass

    def line(self, text: str) -> None:
        self.ui.apply_line(text)

    def recorded(self, values: dict[str, Any]) -> None:
        self.ui.applied(0, 0, 0, False, values)

    def unchanged(self, destroy: bool, values: dict[str, Any]) -> None:
        self.ui.applied(0, 0, 0, destroy, values)

    def finished(self, result: ApplyResult, destroy: bool, values: dict[str, Any]) -> None:
        """Applied: the summary and outputs. Not finished: each step not started, then
        the error the command ends with (a diagnostic too: views.diagnosed)."""
        if result.ok:
            self.ui.applied(result.added, result.changed, result.destroyed, destroy, values)
            return
        for addr in result.skipped:
            self.ui.emit("log", f"{addr}: skipped (not started)", level="warn")
        raise RhplanError(_apply_failed(result, destroy))
