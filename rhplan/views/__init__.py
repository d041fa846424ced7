"""What the commands print: every line of rhplan's human-readable output, and the choice
between it and Terraform's machine-readable UI (-json, views/json_ui.py). The plan's
text is views/plan.py's (views/refresh_only.py for a refresh-only plan), apply's and
destroy's views/apply.py's, status's views/status.py's, console's values
views/console.py's, the providers report views/providers.py's; the rest is here.
rhplan/cli.py calls a Workspace method and hands its result here.

Kept light to import (click and json only at the top): `--help` loads it."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from rhplan.errors import RhplanError

if TYPE_CHECKING:
    from rhplan.plan.model import Plan
    from rhplan.state.lockinfo import LockInfo
    from rhplan.state.model import ResourceState, State
    from rhplan.views.json_ui import JsonUI
    from rhplan.workspace import Refreshed


def echo(line: str) -> None:
    click.echo(line)


# ---- -json ------------------------------------------------------------------------
def start_json_ui() -> JsonUI:
    """Terraform's machine-readable UI, started (its version message written)."""
    from rhplan.state.model import RHPLAN_VERSION
    from rhplan.views.json_ui import JsonUI
    ui = JsonUI(RHPLAN_VERSION)
    ui.start()
    return ui


@contextlib.contextmanager
def diagnosed(ui: JsonUI | None) -> Iterator[None]:
    """-json: an error is also a diagnostic message on stdout (still one line on stderr)."""
    try:
        yield
    except RhplanError as exc:
        if ui is not None:
            ui.diagnostic(str(exc), error=exc)
        raise


# ---- validate ---------------------------------------------------------------------
def validated(notes: list[str]) -> None:
    for note in notes:
        click.echo(note, err=True)
    click.echo("Success! The configuration is valid.")


def validate_json(error: RhplanError | None, notes: list[str]) -> None:
    """validate -json: one document, as Terraform's (not streamed)."""
    from rhplan.views.json_ui import validate_json as document
    click.echo(json.dumps(document(error, notes), indent=2))


# ---- plan -------------------------------------------------------------------------
def plan_text(p: Plan, color: bool) -> str:
    from rhplan.views.plan import render_plan
    from rhplan.views.refresh_only import render_refresh_only
    return render_refresh_only(p, color) if p.refresh_only else render_plan(p, color)


def notes(notes: list[str]) -> None:
    """Notes made while planning (e.g. .rhplan/ added to .gitignore), printed once."""
    for note in notes:
        click.echo(f"\n{note}")
    notes.clear()


def planned(p: Plan, notes_: list[str], color: bool, ui: JsonUI | None) -> None:
    if ui is not None:
        ui.plan(p)
        for note in notes_:
            ui.emit("log", note)
        return
    click.echo(plan_text(p, color), nl=False)
    notes(notes_)


def plan_saved(out: str, ui: JsonUI | None) -> None:
    if ui is not None:
        ui.emit("log", f"Saved the plan to: {out}")
        return
    click.echo(f"\nSaved the plan to: {out}\n\nTo perform exactly these actions, "
               f"run:\n    rhplan apply {out}")


# ---- outputs (apply, destroy, show) ------------------------------------------------
def outputs(values: dict[str, Any]) -> None:
    if not values:
        return
    click.echo("\nOutputs:\n")
    for name, o in sorted(values.items()):
        click.echo(f"{name} = {output_text(o)}")


def output_text(o: dict[str, Any]) -> str:
    return "<sensitive>" if o.get("sensitive") else json.dumps(o["value"])


# ---- refresh, import -----------------------------------------------------------------
def refreshed(r: Refreshed, ui: JsonUI | None) -> None:
    summary = (f"State updated: {len(r.drift)} change(s) found outside rhplan." if r.updated
               else "No changes found outside rhplan.")
    if ui is not None:
        ui.refreshed(r.drift, r.providers(), r.gone(), summary, r.after.outputs)
        return
    for d in r.drift:
        click.echo(f"# {d['message']}")
    click.echo(summary)


def importing(address: str, id_: str) -> None:
    from rhplan.names import normalize_address
    click.echo(f'{normalize_address(address)}: Importing from ID "{id_}"...')


def imported(rs: ResourceState) -> None:
    click.echo(f"{rs.address}: Import complete; run rhplan plan to see what differs from the "
               "configuration.")


# ---- show, state, output -------------------------------------------------------------
def show_plan(p: Plan, as_json: bool, color: bool) -> None:
    """A saved plan: as it was made (render_plan), or Terraform's plan JSON."""
    if as_json:
        from rhplan.plan.tfjson import plan_json
        click.echo(json.dumps(plan_json(p), indent=2))
        return
    from rhplan.views.plan import render_plan
    click.echo(render_plan(p, color), nl=False)


def show_state(state: State, hidden: dict[str, list[str]], as_json: bool) -> None:
    if as_json:
        from rhplan.state.model import RHPLAN_VERSION
        from rhplan.state.tfjson import state_json
        click.echo(json.dumps(state_json(state.to_json(copy_values=False), hidden,
                                         RHPLAN_VERSION), indent=2))
        return
    if not state.resources:
        click.echo("The state is empty. Run rhplan apply to create resources.")
        return
    for addr in sorted(state.resources):
        click.echo(resource_text(state.resources[addr], hidden.get(addr, [])))
    outputs(state.outputs)


# stands for a sensitive value while an attribute is turned into text (no real value
# holds NUL characters), then is printed as (sensitive value)
_HIDDEN = "\x00sensitive\x00"


def resource_text(rs: ResourceState, sensitive: list[str] | None = None) -> str:
    from rhplan.plan.model import SENSITIVE_TEXT, hide_sensitive
    lines = [f"# {rs.address}:", f'{rs.type} "{rs.name}" {{']
    width = max((len(k) for k in rs.attributes), default=0)
    attrs = hide_sensitive(rs.attributes, sensitive or [], lambda v: _HIDDEN) or {}
    hidden = json.dumps(_HIDDEN)
    for k in sorted(attrs):
        text = json.dumps(attrs[k], sort_keys=True).replace(hidden, SENSITIVE_TEXT)
        lines.append(f"    {k.ljust(width)} = {text}")
    lines.append("}")
    return "\n".join(lines)


def removed(address: str, dry_run: bool) -> None:
    click.echo(f"Would remove {address}" if dry_run else f"Removed {address}")


def removed_all(count: int) -> None:
    click.echo(f"Successfully removed {count} resource instance(s).")


def moved(old: str, new: str, dry_run: bool) -> None:
    click.echo(f'{"Would move" if dry_run else "Move"} "{old}" to "{new}"')


def moved_all(count: int) -> None:
    click.echo(f"Successfully moved {count} object(s).")


def pushed(file: str, new: State) -> None:
    source = "stdin" if file == "-" else file
    click.echo(f"Pushed {source} to the state (serial {new.serial}, "
               f"{len(new.resources)} resource(s)).")


def document(value: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    click.echo(json.dumps(value, indent=indent, sort_keys=sort_keys))


def output_value(name: str, value: Any, as_json: bool, raw: bool) -> None:
    """`output NAME`: the value as JSON, or -raw a string, number or bool as it is."""
    if not raw:
        click.echo(json.dumps(value, indent=2 if as_json else None))
        return
    if not isinstance(value, (str, int, float, bool)):
        raise RhplanError(f"output {name!r} is not a string, number or bool; use -json")
    click.echo(value if isinstance(value, str) else json.dumps(value))


def output_values(values: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        return
    for n, o in sorted(values.items()):
        click.echo(f"{n} = {output_text(o)}")


# ---- force-unlock, graph ---------------------------------------------------------
def unlocked(removed: LockInfo) -> None:
    # say whose lock it was, so a mistaken ID is noticed at once
    click.echo(f"rhplan state has been successfully unlocked! (removed the lock of "
               f"{removed.who}, {removed.operation} since {removed.created})")


def dot(graph: Any) -> None:
    from rhplan.graph import to_dot
    click.echo(to_dot(graph), nl=False)


# ---- workspace ------------------------------------------------------------------------
def workspace_made(name: str) -> None:
    click.echo(f'Created and switched to workspace "{name}"!\n\nYou\'re now on a new, empty '
               "workspace. Workspaces isolate their state,\nso if you run \"rhplan plan\" "
               "rhplan will not see any existing state\nfor this configuration.")


def workspace_selected(name: str, created: bool) -> None:
    click.echo(f'Created and switched to workspace "{name}"!' if created else
               f'Switched to workspace "{name}".')


def workspaces(names: list[str], current: str) -> None:
    for n in names:
        click.echo(f"{'*' if n == current else ' '} {n}")


def workspace_deleted(name: str, forgotten: int) -> None:
    if forgotten:
        click.echo(f"Warning: {forgotten} resource(s) of workspace {name!r} are no longer "
                   "managed by rhplan; they keep running until removed by hand.")
    click.echo(f'Deleted workspace "{name}"!')


# ---- fmt -------------------------------------------------------------------------------
def formatted_text(text: str) -> None:
    """`rhplan fmt -`: standard input in the canonical layout."""
    click.echo(text, nl=False)


def reformatted(display: str, before: str, after: str, listing: bool, diff: bool) -> None:
    """A file whose layout changed: its name (unless -list=false), and -diff its diff."""
    if listing:
        click.echo(display)
    if diff:
        import difflib
        click.echo("".join(difflib.unified_diff(
            before.splitlines(True), after.splitlines(True), f"old/{display}",
            f"new/{display}")), nl=False)


def error(message: str, prefix: str = "Error: ") -> int:
    """An error as ONE line on stderr: a newline in what users wrote must not split it, nor
    a terminal escape sequence reach the terminal. Returns the exit code, 1."""
    import re
    text = re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", lambda m: repr(m.group())[1:-1], message)
    click.echo(f"{prefix}{text}", err=True)
    return 1

