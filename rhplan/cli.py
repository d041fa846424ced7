"""The `rhplan` command line. Flags follow Terraform (`-auto-approve`); the GNU
double-dash forms work too. Any RhplanError becomes one line on stderr and exit 1.

A command parses its options, calls one method of the workspace (rhplan/workspace/:
what it does) and prints the result through rhplan/views/ (what users read); the
state commands are in cli_state.py, the workspace commands in workspace_cli.py."""
from __future__ import annotations

import atexit
import contextlib
import gc
import os
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from rhplan import views
from rhplan.cli_options import ARGS, PlanArgs, lock_option, plan_options, var_options, var_order
from rhplan.cli_state import state as state_group
from rhplan.console import console_command
from rhplan.errors import RhplanError
from rhplan.fmt_cli import fmt_command
from rhplan.providers_list import providers_command
from rhplan.workspace_cli import workspace as workspace_group

if TYPE_CHECKING:
    from rhplan.workspace import StateWorkspace, Workspace

# single-dash long flags (-auto-approve, -var=x) become --auto-approve for click
_SINGLE_DASH = re.compile(r"^-[a-z][a-z-]+(=.*)?$", re.DOTALL)


def normalize_args(args: list[str]) -> list[str]:
    out: list[str] = []
    for i, a in enumerate(args):
        if a == "--":
            return out + args[i:]
        out.append("-" + a if _SINGLE_DASH.match(a) else a)
    return out


class Ctx:
    def __init__(self, chdir: str, color: bool):
        self.chdir = chdir
        self.color = color

    def workspace(self, var: tuple[str, ...] = (), var_file: tuple[str, ...] = ()) -> Workspace:
        """The configuration with its variables: plan, apply, refresh, import."""
        from rhplan.workspace import Workspace
        return Workspace(self.chdir, list(var), list(var_file), var_order())

    def reading(self) -> Workspace:
        """The configuration without variable values: show, state show."""
        from rhplan.workspace import Workspace
        return Workspace.for_reading(self.chdir)

    def state(self) -> StateWorkspace:
        """Only the recorded state (its configuration loaded when first used)."""
        from rhplan.workspace.state_ops import StateWorkspace
        return StateWorkspace(self.chdir)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--chdir", default=".", metavar="DIR", help="Run in this configuration directory.")
@click.option("--no-color", is_flag=True, help="Plain output without colours.")
@click.version_option(package_name="rhplan", prog_name="rhplan")
@click.pass_context
def cli(ctx: click.Context, chdir: str, no_color: bool) -> None:
    """rhplan: plan and apply clusters, envs and packages declared in HCL."""
    color = not no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    ctx.obj = Ctx(chdir, color)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while a configuration is loaded and planned: that makes
    ~100,000 objects that live to the end, which collections only rescan (a quarter of
    the CPU of a 2,000-resource plan) and reference counting frees the rest. Applying
    runs long, with threads: it collects again (rhplan/workspace/apply_run.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@cli.command()
@var_options
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as Terraform's validate JSON.")
@click.pass_obj
@gc_paused()
def validate(obj: Ctx, var: tuple[str, ...], var_file: tuple[str, ...], as_json: bool) -> None:
    """Check the configuration: syntax, schemas, types, references, cycles. Needs no
    variable values, secrets, state or network (a variable without a value is unknown)."""
    from rhplan.workspace import validate as validate_config
    if not as_json:
        views.validated(validate_config(obj.chdir, var, var_file, var_order()))
        return
    try:
        notes = validate_config(obj.chdir, var, var_file, var_order())
    except RhplanError as exc:
        views.validate_json(exc, [])
        sys.exit(1)
    views.validate_json(None, list(notes))


@cli.command()
@plan_options
@click.option("--out", metavar="FILE", help="Save the plan to FILE for apply.")
@click.option("--destroy", is_flag=True, help="Plan to destroy everything.")
@click.option("--detailed-exitcode", is_flag=True,
              help="Exit 0 with no changes, 2 with changes, 1 on error.")
@click.option("--json", "as_json", is_flag=True,
              help="Terraform's machine-readable UI: one JSON object per line.")
@click.pass_obj
@gc_paused()
def plan(obj: Ctx, args: PlanArgs, out: str | None, destroy: bool, detailed_exitcode: bool,
         as_json: bool) -> None:
    """Show what apply would change."""
    ui = views.start_json_ui() if as_json else None
    with views.diagnosed(ui):
        opts = args.options(destroy)
        ws = obj.workspace(args.var, args.var_file)
        p, refreshed = ws.plan_changes(opts, args.refresh, args.parallelism, saving=bool(out))
    views.planned(p, ws.notes, obj.color and not args.no_color, ui)
    if out:
        ws.save_plan(p, refreshed, out)
        views.plan_saved(out, ui)
    if detailed_exitcode and p.has_changes:
        sys.exit(2)


@cli.command()
@plan_options
@click.argument("plan_file", required=False)
@click.option("--auto-approve", is_flag=True, help="Apply without asking.")
@click.option("--destroy", is_flag=True, help="Destroy everything (same as rhplan destroy).")
@click.option("--json", "as_json", is_flag=True,
              help="Terraform's machine-readable UI (needs -auto-approve or a saved plan).")
@click.pass_obj
def apply(obj: Ctx, args: PlanArgs, plan_file: str | None, auto_approve: bool, destroy: bool,
          as_json: bool) -> None:
    """Carry out the changes (from a fresh plan, or a saved PLAN_FILE)."""
    _apply(obj, args, plan_file, auto_approve, destroy, as_json)


@cli.command()
@plan_options
@click.option("--auto-approve", is_flag=True, help="Destroy without asking.")
@click.option("--json", "as_json", is_flag=True,
              help="Terraform's machine-readable UI (needs -auto-approve).")
@click.pass_obj
def destroy(obj: Ctx, args: PlanArgs, auto_approve: bool, as_json: bool) -> None:
    """Destroy everything this configuration manages."""
    _apply(obj, args, None, auto_approve, True, as_json)


@gc_paused()
def _apply(obj: Ctx, args: PlanArgs, plan_file: str | None, auto_approve: bool, destroy: bool,
           as_json: bool) -> None:
    """apply, and destroy (apply -destroy)."""
    if as_json and not (auto_approve or plan_file):
        raise RhplanError("-json cannot ask for approval: add -auto-approve, or apply a saved "
                          "plan (rhplan apply -json PLANFILE)")
    from rhplan.views.apply import JsonApply, TextApply
    from rhplan.workspace.apply_run import ApplyRequest
    ui = views.start_json_ui() if as_json else None
    view = JsonApply(ui) if ui is not None else TextApply(obj.color and not args.no_color)
    with views.diagnosed(ui):
        opts = args.options(destroy)
        ws = obj.workspace(args.var, args.var_file)
        done = ws.apply_changes(ApplyRequest(opts, args.refresh, args.parallelism, plan_file,
                                             auto_approve), view)
    if not done.ok:
        sys.exit(1)


@cli.command()
@var_options
@lock_option
@click.option("--parallelism", default=10, type=click.IntRange(1, 256))
@click.option("--json", "as_json", is_flag=True,
              help="Terraform's machine-readable UI: one JSON object per line.")
@click.pass_obj
def refresh(obj: Ctx, var: tuple[str, ...], var_file: tuple[str, ...], parallelism: int,
            as_json: bool) -> None:
    """Read every recorded resource and update the state to match reality."""
    ui = views.start_json_ui() if as_json else None
    with views.diagnosed(ui):
        found = obj.workspace(var, var_file).refresh_state(parallelism)
    views.refreshed(found, ui)


@cli.command("import")
@var_options
@lock_option
@click.argument("address")
@click.argument("id_", metavar="ID")
@click.pass_obj
def import_(obj: Ctx, var: tuple[str, ...], var_file: tuple[str, ...], address: str,
            id_: str) -> None:
    """Adopt an existing object into the state at ADDRESS (an env: ID is its folder's
    name under its cluster's ROOT/envs); nothing on the host changes."""
    ws = obj.workspace(var, var_file)
    views.imported(ws.import_resource(address, id_, lambda: views.importing(address, id_)))


@cli.command()
@click.argument("plan_file", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: Ctx, plan_file: str | None, as_json: bool) -> None:
    """Show a saved plan, or the current state (-json: Terraform's JSON output format)."""
    if plan_file:
        views.show_plan(obj.state().saved_plan(plan_file), as_json, obj.color)
        return
    views.show_state(*obj.reading().state_view(), as_json)


@cli.command()
@click.pass_obj
def graph(obj: Ctx) -> None:
    """Print the dependency graph in DOT (pipe into `dot -Tsvg`)."""
    views.dot(obj.state().graph())


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("--raw", is_flag=True, help="Print a string output without quotes.")
@click.pass_obj
def output(obj: Ctx, name: str | None, as_json: bool, raw: bool) -> None:
    """Print output values from the state."""
    if name:
        views.output_value(name, obj.state().output(name), as_json, raw)
    else:
        views.output_values(obj.state().outputs(), as_json)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """Clusters, their Ray heads, and each env's servlet with its health."""
    from rhplan.views import status as shown
    if shown.show(obj.state().status(), as_json):
        sys.exit(1)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--cluster", metavar="NAME", help="Run in this cluster's default env.")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run(obj: Ctx, cluster: str | None, args: tuple[str, ...]) -> None:
    """Run COMMAND inside ENV on its cluster: rhplan run np_env -- python -c 'import numpy'.

    rhplan run -cluster NAME -- COMMAND runs it in the cluster's default env (its
    default_env, else its only env). Exits with the command's exit code."""
    cmd = list(args)
    env = None if cluster is not None else cmd.pop(0)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise RhplanError("give a command after --, e.g. rhplan run np_env -- python -V")
    sys.exit(obj.state().run(env, cluster, cmd))


@cli.command("force-unlock")
@click.argument("lock_id")
@click.option("--force", is_flag=True, hidden=True)
@click.pass_obj
def force_unlock(obj: Ctx, lock_id: str, force: bool) -> None:
    """Remove a lock left by an operation that is gone."""
    views.unlocked(obj.state().force_unlock(lock_id))


cli.add_command(state_group, "state")
cli.add_command(workspace_group, "workspace")
cli.add_command(fmt_command)
cli.add_command(providers_command)
cli.add_command(console_command)


def tune_gc() -> None:
    """A plan builds tens of thousands of long-lived objects (syntax trees, state):
    full collections over them cost a third of a large plan and find nothing."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(argv: list[str] | None = None) -> None:
    tune_gc()
    # registered first, so it runs last: what the command left (syntax trees, state,
    # botocore's service model) is not walked by the collection at interpreter exit
    atexit.register(gc.freeze)
    sys.exit(execute(list(sys.argv[1:] if argv is None else argv)))


# Set to see the traceback of an unexpected error (a bug) instead of its one line.
TRACEBACK_ENV = "RHPLAN_TRACEBACK"
# How the last line of defence starts: tests count a line like this as a bug found.
INTERNAL_ERROR = "Error: internal error"


def execute(argv: list[str]) -> int:
    """Run one command and return its exit code; every error becomes ONE line on stderr.

    main() is this plus sys.exit, so tests that call execute() in-process take exactly the
    path a user's command takes."""
    ARGS[:] = normalize_args(argv)
    # a command without -lock-timeout fails at once; a command that never locks (fmt,
    # --help) does not import the state package for it (~0.09 s of CPU at every start)
    lockwait = sys.modules.get("rhplan.state.lockwait")  # not loaded yet: still its 0s
    if lockwait is not None:
        lockwait.set_timeout("0s")
    try:
        result = cli.main(args=list(ARGS), prog_name="rhplan", standalone_mode=False)
    except RhplanError as exc:
        return _fail(str(exc))
    except click.exceptions.Abort:
        return _fail("Aborted.", prefix="")
    except click.UsageError as exc:
        # click's own form is three lines (Usage:, Try..., Error:): one is enough
        command = exc.ctx.command_path if exc.ctx is not None else "rhplan"
        return _fail(f"{exc.format_message()}; see {command} -h")
    except click.ClickException as exc:
        return _fail(exc.format_message())
    except KeyboardInterrupt:
        views.error("Interrupted.", prefix="")
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence, see below
        # A bug, not bad input (those raise RhplanError where they are found): still one
        # line and exit 1, never a traceback in a user's terminal or CI log.
        if os.environ.get(TRACEBACK_ENV):
            raise
        return _fail(f"internal error ({type(exc).__name__}: {exc}); this is a bug in rhplan: "
                     f"run again with {TRACEBACK_ENV}=1 and report the traceback")
    return result if isinstance(result, int) else 0


# one error line on stderr (fmt and console print theirs through it too)
_fail = views.error


if __name__ == "__main__":
    main()
