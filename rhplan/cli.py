"""The `rhplan` command line. Flags follow Terraform (`-auto-approve`); the GNU
double-dash forms work too. Any RhplanError becomes one line on stderr and exit 1."""
from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rhplan.console import console_command
from rhplan.errors import RhplanError
from rhplan.fmt_cli import fmt_command
from rhplan.lock_option import lock_option
from rhplan.names import address_order, block_address, is_module_address, normalize_address
from rhplan.providers_list import providers_command
from rhplan.workspace_cli import workspace as workspace_group

if TYPE_CHECKING:
    from rhplan.state.backend import Backend

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

    def workspace(self, var: tuple[str, ...] = (), var_file: tuple[str, ...] = ()) -> Any:
        from rhplan.workspace import Workspace
        return Workspace(self.chdir, list(var), list(var_file), var_order(_ARGS))


# the command line being run (normalized): -var and -var-file apply in the order given
_ARGS: list[str] = []


def var_order(args: list[str]) -> list[str]:
    """"var" / "var-file" for each -var / -var-file option in args, in order."""
    kinds: list[str] = []
    i = 0
    while i < len(args) and args[i] != "--":
        a = args[i]
        if a in ("--var", "--var-file"):
            kinds.append(a[2:])
            i += 2
            continue
        if a.startswith(("--var=", "--var-file=")):
            kinds.append(a[2:].partition("=")[0])
        i += 1
    return kinds


def _echo(line: str) -> None:
    click.echo(line)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--chdir", default=".", metavar="DIR", help="Run in this configuration directory.")
@click.option("--no-color", is_flag=True, help="Plain output without colours.")
@click.version_option(package_name="rhplan", prog_name="rhplan")
@click.pass_context
def cli(ctx: click.Context, chdir: str, no_color: bool) -> None:
    """rhplan: plan and apply clusters, envs and packages declared in HCL."""
    color = not no_color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    ctx.obj = Ctx(chdir, color)


def var_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--var", "var", multiple=True, metavar="NAME=VALUE",
                     help="Set a variable.")(f)
    f = click.option("--var-file", "var_file", multiple=True, metavar="FILE",
                     help="Read variables from a file.")(f)
    return f


def plan_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--refresh", default="true", type=click.Choice(["true", "false"]),
                     help="Read real resources before planning (default true).")(f)
    f = click.option("--target", multiple=True, metavar="ADDR",
                     help="Only this resource (and what it needs).")(f)
    f = click.option("--replace", multiple=True, metavar="ADDR",
                     help="Plan to replace this resource.")(f)
    f = click.option("--parallelism", default=10, type=click.IntRange(1, 256),
                     help="How many operations run at once.")(f)
    f = click.option("--no-color", "no_color_local", is_flag=True, hidden=True)(f)
    f = click.option("--refresh-only", is_flag=True,
                     help="Only record what changed outside rhplan; change nothing.")(f)
    return lock_option(var_options(f))


def _refresh_only_fits(refresh_only: bool, destroy: bool, refresh: str,
                       replace: tuple[str, ...]) -> None:
    """Terraform's refresh-only mode takes no other planning mode."""
    if not refresh_only:
        return
    if destroy:
        raise RhplanError("-refresh-only and -destroy cannot be used together: a "
                          "refresh-only plan changes nothing; drop one of them")
    if refresh == "false":
        raise RhplanError("-refresh-only with -refresh=false has nothing to do; drop "
                          "-refresh=false")
    if replace:
        raise RhplanError("-replace cannot be used with -refresh-only, which replaces "
                          "nothing; drop one of them")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection while a configuration is loaded and planned: that makes
    ~100,000 objects that live to the end, which collections only rescan (a quarter of
    the CPU of a 2,000-resource plan) and reference counting frees the rest. Applying
    runs long, with threads: it collects again (_run_apply)."""
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
    if as_json:  # one document, as Terraform's validate -json (not streamed)
        from rhplan.json_ui import validate_json
        try:
            notes = validate_config(obj.chdir, var, var_file, var_order(_ARGS))
        except RhplanError as exc:
            click.echo(json.dumps(validate_json(exc, []), indent=2))
            sys.exit(1)
        click.echo(json.dumps(validate_json(None, list(notes)), indent=2))
        return
    for note in validate_config(obj.chdir, var, var_file, var_order(_ARGS)):
        click.echo(note, err=True)
    click.echo("Success! The configuration is valid.")


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
def plan(obj: Ctx, var: tuple[str, ...], var_file: tuple[str, ...], refresh: str,
         target: tuple[str, ...], replace: tuple[str, ...], parallelism: int,
         no_color_local: bool, refresh_only: bool, out: str | None, destroy: bool,
         detailed_exitcode: bool, as_json: bool) -> None:
    """Show what apply would change."""
    from rhplan.plan.planner import PlanOptions
    ui = _json_ui() if as_json else None
    with _diagnosed(ui):
        _refresh_only_fits(refresh_only, destroy, refresh, replace)
        ws = obj.workspace(var, var_file)
        with ws.backend.locked("plan"):
            p, _, refreshed = ws.make_plan(PlanOptions(destroy, list(target), list(replace),
                                                       refresh_only=refresh_only),
                                           refresh == "true", parallelism, saving=bool(out))
    if ui is not None:
        ui.plan(p)
        for note in ws.notes:
            ui.emit("log", note)
    else:
        click.echo(_render(p, obj.color and not no_color_local), nl=False)
        _print_notes(ws)
    if out:
        from rhplan.plan.model import save_plan
        path = Path(out) if Path(out).is_absolute() else Path(obj.chdir) / out
        p.prior_state = refreshed.to_json()  # what apply starts from
        save_plan(path, p, out)  # 0600: it holds the prior state and secret digests
        if ui is not None:
            ui.emit("log", f"Saved the plan to: {out}")
        else:
            click.echo(f"\nSaved the plan to: {out}\n\nTo perform exactly these actions, "
                       f"run:\n    rhplan apply {out}")
    if detailed_exitcode and p.has_changes:
        sys.exit(2)


def _json_ui() -> Any:
    from rhplan.json_ui import JsonUI
    from rhplan.state.model import RHPLAN_VERSION
    ui = JsonUI(RHPLAN_VERSION)
    ui.start()
    return ui


@contextlib.contextmanager
def _diagnosed(ui: Any) -> Iterator[None]:
    """-json: an error is also a diagnostic message on stdout (still one line on stderr)."""
    try:
        yield
    except RhplanError as exc:
        if ui is not None:
            ui.diagnostic(str(exc), error=exc)
        raise


def _render(p: Any, color: bool) -> str:
    from rhplan.plan.render import render_plan
    from rhplan.plan.render_refresh import render_refresh_only
    return render_refresh_only(p, color) if p.refresh_only else render_plan(p, color)


def _print_notes(ws: Any) -> None:
    for note in ws.notes:  # e.g. .rhplan/ added to .gitignore
        click.echo(f"\n{note}")
    ws.notes.clear()


def _confirm(what: str) -> bool:
    click.echo(f"\nDo you want to {what}?\n  rhplan will perform the actions described above.\n"
               "  Only 'yes' will be accepted to approve.\n")
    try:
        answer = input("  Enter a value: ")
    except EOFError:
        answer = ""
    return answer.strip() == "yes"


def _record_refreshed(ws: Any, refreshed: Any, ui: Any = None) -> None:
    """apply -refresh-only: the state takes what refresh read; no remote object changes."""
    ws.save_refreshed(refreshed)
    if ui is not None:
        ui.applied(0, 0, 0, False, ws.backend.read().outputs)
        return
    click.echo("\nApply complete! Resources: 0 added, 0 changed, 0 destroyed.")
    _print_outputs(ws.backend.read().outputs)


def _run_apply(obj: Ctx, ws: Any, p: Any, planner: Any, state: Any, parallelism: int,
               destroy: bool, ui: Any = None) -> None:
    gc.enable()  # planning is done (see gc_paused): a long apply collects as usual
    result = ws.apply(p, planner, state, parallelism, _echo if ui is None else ui.apply_line,
                      float(os.environ.get("RHPLAN_PROGRESS_SECONDS", "10")))
    if ui is not None:
        if result.ok:
            ui.applied(result.added, result.changed, result.destroyed, destroy,
                       ws.backend.read().outputs)
            return
        for addr in result.skipped:
            ui.emit("log", f"{addr}: skipped (not started)", level="warn")
        raise RhplanError(f"{'destroy' if destroy else 'apply'} "
                          f"{'interrupted' if result.interrupted else 'failed'}: "
                          f"{len(result.failed)} failed, {len(result.skipped)} skipped; what "
                          "finished is saved in the state; fix the cause and run apply again")
    word = "Destroy" if destroy else "Apply"
    counts = (f"Resources: {result.added} added, {result.changed} changed, "
              f"{result.destroyed} destroyed.")
    if result.ok:
        click.echo(f"\n{word} complete! {counts}")
        _print_outputs(ws.backend.read().outputs)
        return
    click.echo(f"\n{word} {'interrupted' if result.interrupted else 'failed'}. {counts}")
    for addr, msg in result.failed.items():
        click.echo(f"  failed:  {addr}: {msg}")
    for addr in result.skipped:
        click.echo(f"  skipped: {addr} (not started)")
    click.echo("What finished is saved in the state; fix the cause and run apply again.")
    sys.exit(1)


def _print_outputs(outputs: dict[str, Any]) -> None:
    if not outputs:
        return
    click.echo("\nOutputs:\n")
    for name, o in sorted(outputs.items()):
        value = "<sensitive>" if o.get("sensitive") else json.dumps(o["value"])
        click.echo(f"{name} = {value}")


@cli.command()
@plan_options
@click.argument("plan_file", required=False)
@click.option("--auto-approve", is_flag=True, help="Apply without asking.")
@click.option("--destroy", is_flag=True, help="Destroy everything (same as rhplan destroy).")
@click.option("--json", "as_json", is_flag=True,
              help="Terraform's machine-readable UI (needs -auto-approve or a saved plan).")
@click.pass_obj
@gc_paused()
def apply(obj: Ctx, var: tuple[str, ...], var_file: tuple[str, ...], refresh: str,
          target: tuple[str, ...], replace: tuple[str, ...], parallelism: int,
          no_color_local: bool, refresh_only: bool, plan_file: str | None, auto_approve: bool,
          destroy: bool, as_json: bool = False) -> None:
    """Carry out the changes (from a fresh plan, or a saved PLAN_FILE)."""
    if as_json and not (auto_approve or plan_file):
        raise RhplanError("-json cannot ask for approval: add -auto-approve, or apply a saved "
                          "plan (rhplan apply -json PLANFILE)")
    ui = _json_ui() if as_json else None
    with _diagnosed(ui):
        _apply(obj, ui, var, var_file, refresh, target, replace, parallelism, no_color_local,
               refresh_only, plan_file, auto_approve, destroy)


def _apply(obj: Ctx, ui: Any, var: tuple[str, ...], var_file: tuple[str, ...], refresh: str,
           target: tuple[str, ...], replace: tuple[str, ...], parallelism: int,
           no_color_local: bool, refresh_only: bool, plan_file: str | None,
           auto_approve: bool, destroy: bool) -> None:
    from rhplan.plan.model import load_plan
    from rhplan.plan.planner import PlanOptions
    _refresh_only_fits(refresh_only, destroy, refresh, replace)
    ws = obj.workspace(var, var_file)
    with ws.backend.locked("apply"):
        if plan_file:
            path = Path(plan_file)
            if not path.is_absolute() and not path.exists():
                path = Path(obj.chdir) / plan_file
            saved = load_plan(path, plan_file)
            p, planner, state = ws.replan_saved(saved, plan_file, parallelism)
            destroy = saved.destroy
            if ui is not None:
                ui.plan(p)
            if saved.refresh_only:
                return _record_refreshed(ws, state, ui)
        else:
            p, planner, state = ws.make_plan(PlanOptions(destroy, list(target), list(replace),
                                                         refresh_only=refresh_only),
                                             refresh == "true", parallelism)
            if ui is not None:
                ui.plan(p)
            else:
                click.echo(_render(p, obj.color and not no_color_local), nl=False)
                _print_notes(ws)
            if refresh_only:
                if p.has_changes and (auto_approve or _confirm(
                        "update the rhplan state to reflect these detected changes")):
                    _record_refreshed(ws, state, ui)
                elif p.has_changes:
                    click.echo("\nApply cancelled.")
                    sys.exit(1)
                return
            if not p.has_changes:
                ws.save_refreshed(state)
                if ui is not None:
                    ui.applied(0, 0, 0, destroy, ws.backend.read().outputs)
                else:
                    _print_outputs(ws.backend.read().outputs)
                return
            if not auto_approve and not _confirm("destroy all resources" if destroy
                                                 else "perform these actions"):
                click.echo("\nApply cancelled.")
                sys.exit(1)
        _run_apply(obj, ws, p, planner, state, parallelism, destroy, ui)


@cli.command()
@plan_options
@click.option("--auto-approve", is_flag=True, help="Destroy without asking.")
@click.option("--json", "as_json", is_flag=True,
              help="Terraform's machine-readable UI (needs -auto-approve).")
@click.pass_context
def destroy(ctx: click.Context, **kwargs: Any) -> None:
    """Destroy everything this configuration manages."""
    ctx.invoke(apply, destroy=True, plan_file=None, **kwargs)


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
    from rhplan.plan.refresh import refresh as do_refresh
    ui = _json_ui() if as_json else None
    with _diagnosed(ui):
        ws = obj.workspace(var, var_file)
        with ws.backend.locked("refresh"):
            state = ws.backend.read()
            fresh, drift = do_refresh(state, ws.ctx, parallelism)
            updated = fresh.to_json()["resources"] != state.to_json()["resources"]
            if updated:
                ws.backend.write(fresh)
    summary = (f"State updated: {len(drift)} change(s) found outside rhplan." if updated else
               "No changes found outside rhplan.")
    if ui is not None:
        ui.refreshed(drift, {a: r.provider for a, r in state.resources.items()},
                     set(state.resources) - set(fresh.resources), summary, fresh.outputs)
        return
    for d in drift:
        click.echo(f"# {d['message']}")
    click.echo(summary)


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
    from rhplan.plan.imports import adopt
    from rhplan.state import digest
    ws = obj.workspace(var, var_file)
    with ws.backend.locked("import"):
        state = ws.backend.read()
        ws.ctx.lineage = state.lineage
        digest.use_key(ws.ctx, ws.backend.digest_key)
        click.echo(f'{normalize_address(address)}: Importing from ID "{id_}"...')
        rs = adopt(ws.cfg, ws.ctx, state, address, id_, desired=ws.planner().desired)
        state.resources[rs.address] = rs
        ws.backend.write(state)
    click.echo(f"{rs.address}: Import complete; run rhplan plan to see what differs from the "
               "configuration.")


@cli.command()
@click.argument("plan_file", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: Ctx, plan_file: str | None, as_json: bool) -> None:
    """Show a saved plan, or the current state (-json: Terraform's JSON output format)."""
    from rhplan.plan.model import load_plan
    from rhplan.plan.render import render_plan
    if plan_file:
        path = Path(plan_file)
        if not path.exists() and not path.is_absolute():
            path = Path(obj.chdir) / plan_file
        p = load_plan(path, plan_file)
        if as_json:
            from rhplan.plan.tfjson import plan_json
            click.echo(json.dumps(plan_json(p), indent=2))
        else:
            click.echo(render_plan(p, obj.color), nl=False)
        return
    ws, state, hidden = _state_view(obj)
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
        click.echo(_resource_text(state.resources[addr], hidden.get(addr, [])))
    _print_outputs(state.outputs)


def _state_view(obj: Ctx) -> tuple[Any, Any, dict[str, list[str]]]:
    """The workspace, its state, and which recorded values the configuration derives
    from sensitive ones (shown as (sensitive value)); needs no variable values."""
    from rhplan.workspace import Workspace
    ws = Workspace(obj.chdir, values_needed=False)
    state = ws.backend.read()
    return ws, state, ws.state_sensitive_paths(state)


def _resource_text(rs: Any, sensitive: list[str] | None = None) -> str:
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


# stands for a sensitive value while an attribute is turned into text (no real value
# holds NUL characters), then is printed as (sensitive value)
_HIDDEN = "\x00sensitive\x00"


@cli.command()
@click.pass_obj
def graph(obj: Ctx) -> None:
    """Print the dependency graph in DOT (pipe into `dot -Tsvg`)."""
    from rhplan.config.load import load_config
    from rhplan.graph import build_graph, to_dot
    click.echo(to_dot(build_graph(load_config(obj.chdir))), nl=False)


@cli.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("--raw", is_flag=True, help="Print a string output without quotes.")
@click.pass_obj
def output(obj: Ctx, name: str | None, as_json: bool, raw: bool) -> None:
    """Print output values from the state."""
    from rhplan.config.load import load_config
    from rhplan.workspace import backend_for
    outputs = backend_for(load_config(obj.chdir)).read().outputs
    if name:
        if name not in outputs:
            raise RhplanError(f"no output {name!r} in the state; outputs: "
                              f"{', '.join(sorted(outputs)) or 'none (run rhplan apply)'}")
        value = outputs[name]["value"]
        if raw:
            if not isinstance(value, (str, int, float, bool)):
                raise RhplanError(f"output {name!r} is not a string, number or bool; use -json")
            click.echo(value if isinstance(value, str) else json.dumps(value))
        else:
            click.echo(json.dumps(value, indent=2 if as_json else None))
        return
    if as_json:
        click.echo(json.dumps(outputs, indent=2, sort_keys=True))
        return
    for n, o in sorted(outputs.items()):
        click.echo(f"{n} = {'<sensitive>' if o.get('sensitive') else json.dumps(o['value'])}")


@cli.group()
def state() -> None:
    """Inspect and edit the recorded state."""


def _backend(obj: Ctx) -> Backend:
    from rhplan.config.load import load_config
    from rhplan.workspace import backend_for
    return backend_for(load_config(obj.chdir))


@state.command("list")
@click.argument("addresses", nargs=-1)
@click.pass_obj
def state_list(obj: Ctx, addresses: tuple[str, ...]) -> None:
    """List resource addresses in the state (only those ADDRESSES name: env.x lists
    every instance of env.x)."""
    recorded = _backend(obj).read().resources
    wanted = [normalize_address(a) for a in addresses]
    for addr in sorted(recorded, key=address_order):
        if not wanted or addr in wanted or block_address(addr) in wanted or any(
                addr.startswith(w + ".") for w in wanted if is_module_address(w)):
            click.echo(addr)


def _instances(st: Any, address: str) -> list[str]:
    """The recorded instances an address names: itself, or every instance of a block
    (env.x -> env.x["a"], env.x["b"]), as Terraform's state commands read it."""
    address = normalize_address(address)
    if address in st.resources:
        return [address]
    if is_module_address(address):  # all that is inside it
        return sorted((a for a in st.resources if a.startswith(address + ".")), key=address_order)
    return sorted((a for a in st.resources if block_address(a) == address), key=address_order)


@state.command("show")
@click.argument("address")
@click.pass_obj
def state_show(obj: Ctx, address: str) -> None:
    """Show one resource instance's recorded attributes."""
    _, st, hidden = _state_view(obj)
    found = _instances(st, address)
    if not found:
        raise RhplanError(f"no {address} in the state; see rhplan state list")
    if len(found) > 1 or found[0] != normalize_address(address):
        raise RhplanError(f"{address} has {len(found)} instances ({', '.join(found)}); "
                          f"show one of them, e.g. rhplan state show '{found[0]}'")
    click.echo(_resource_text(st.resources[found[0]], hidden.get(found[0], [])))


@state.command("rm")
@lock_option
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@click.argument("addresses", nargs=-1, required=True)
@click.pass_obj
def state_rm(obj: Ctx, addresses: tuple[str, ...], dry_run: bool) -> None:
    """Forget resources without destroying them (env.x: every instance of it)."""
    backend = _backend(obj)
    with backend.locked("state rm"):
        st = backend.read()
        gone: list[str] = []
        for a in addresses:
            found = _instances(st, a)
            if not found:
                raise RhplanError(f"no {a} in the state; see rhplan state list")
            gone += [f for f in found if f not in gone]
        for a in gone:
            click.echo(f"Would remove {a}" if dry_run else f"Removed {a}")
            if not dry_run:
                del st.resources[a]
        if not dry_run:
            backend.write(st)
    if not dry_run:
        click.echo(f"Successfully removed {len(gone)} resource instance(s).")


@state.command("mv")
@lock_option
@click.option("--dry-run", is_flag=True, help="Say what would move; change nothing.")
@click.argument("source")
@click.argument("destination")
@click.pass_obj
def state_mv(obj: Ctx, source: str, destination: str, dry_run: bool) -> None:
    """Move a resource to another address in the state, without touching it: e.g.
    env.x to 'env.x["a"]' when the block gains for_each, or a block's every instance
    (env.x to env.y). What refers to it in the state follows."""
    from rhplan.names import instance_address, parse_address
    from rhplan.plan.planner import moved_state

    src, dst = normalize_address(source), normalize_address(destination)
    ps, pd = parse_address(src), parse_address(dst)
    for given, parts in ((source, ps), (destination, pd)):
        if parts is None:
            raise RhplanError(f"{given!r} is not a resource address; write TYPE.NAME, "
                              "TYPE.NAME[0] or 'TYPE.NAME[\"key\"]'")
    assert ps is not None and pd is not None
    if ps[0].rpartition(".")[2] != pd[0].rpartition(".")[2]:  # into / out of a module: fine
        raise RhplanError(f"cannot move a {ps[0]} to a {pd[0]} address; keep the type")
    backend = _backend(obj)
    with backend.locked("state mv"):
        st = backend.read()
        found = _instances(st, src)
        if not found:
            raise RhplanError(f"no {src} in the state; see rhplan state list")
        if found == [src]:
            moves = {src: dst}
        elif pd[2] is not None:
            raise RhplanError(f"{src} has {len(found)} instances; move them to a block "
                              f"address (e.g. {pd[0]}.{pd[1]}), or move one instance")
        else:
            moves = {a: instance_address(pd[0], pd[1], parse_address(a)[2])  # type: ignore[index]
                     for a in found}
        taken = [d for d in moves.values() if d in st.resources and d not in moves]
        if taken:
            raise RhplanError(f"{taken[0]} is already in the state; remove or move it first")
        for old, new in moves.items():
            click.echo(f'{"Would move" if dry_run else "Move"} "{old}" to "{new}"')
        if not dry_run:
            backend.write(moved_state(st, moves, in_place=True))
    if not dry_run:
        click.echo(f"Successfully moved {len(moves)} object(s).")


@state.command("pull")
@click.pass_obj
def state_pull(obj: Ctx) -> None:
    """Print the state as JSON (e.g. to move it to another backend with state push)."""
    click.echo(json.dumps(_backend(obj).read().to_json(), indent=2))


@state.command("push")
@lock_option
@click.argument("file")
@click.option("--force", is_flag=True,
              help="Replace the state even if its lineage differs or its serial is lower.")
@click.pass_obj
def state_push(obj: Ctx, file: str, force: bool) -> None:
    """Replace the state with FILE (from state pull; - reads stdin), under the lock."""
    from rhplan.state.model import parse_state
    path = Path(file)
    if not path.is_absolute() and not path.exists():  # as plan files: also under -chdir
        path = Path(obj.chdir) / file
    try:
        raw = sys.stdin.buffer.read() if file == "-" else path.read_bytes()
    except OSError as exc:
        raise RhplanError(f"cannot read {file}: {exc.strerror}; "
                          "give a state file made by rhplan state pull") from None
    source = "stdin" if file == "-" else file
    # the file's own problems (not UTF-8, not JSON, 100,000 brackets deep, wrong shape)
    # are one line naming it; it has no backup to restore
    new = parse_state(raw, source, backup=None, copy_values=True,
                      todo="give a state file made by rhplan state pull")
    backend = _backend(obj)
    with backend.locked("state push"):
        current = backend.read()
        exists = bool(current.serial or current.resources)
        if exists and not force:
            if new.lineage != current.lineage:
                raise RhplanError(
                    f"{source} has lineage {new.lineage}, but the current state has "
                    f"{current.lineage}: it is another configuration's state; check the "
                    "file, or add -force to replace the state anyway")
            if new.serial < current.serial:
                raise RhplanError(
                    f"{source} has serial {new.serial}, lower than the current state's "
                    f"{current.serial}: it is older; pull the state again, or add -force "
                    "to replace the state anyway")
        # written as serial max+1, so anyone holding the replaced state sees it changed
        new.serial = max(new.serial, current.serial)
        backend.write(new)
    click.echo(f"Pushed {source} to the state (serial {new.serial}, "
               f"{len(new.resources)} resource(s)).")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """Clusters, their Ray heads, and each env's servlet with its health."""
    from rhplan.servlets.client import default_env
    from rhplan.status import cluster_status, render, unhealthy
    st = _backend(obj).read()
    report = cluster_status(st, obj.chdir)
    for c in report:  # what run -cluster and servlet(cluster=...) use; None if ambiguous
        try:
            c["default_env"] = default_env(st, c["address"], obj.chdir)
        except RhplanError:
            c["default_env"] = None
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
        return
    if not report:
        click.echo("No clusters in the state. Run rhplan apply.")
        return
    names = {c["address"]: c["default_env"] and st.resources[c["default_env"]].attributes.get(
        "name") for c in report}  # each node's servlets are printed under it
    for line in render(report, names):
        click.echo(line)
    if unhealthy(report):
        sys.exit(1)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--cluster", metavar="NAME", help="Run in this cluster's default env.")
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run(obj: Ctx, cluster: str | None, args: tuple[str, ...]) -> None:
    """Run COMMAND inside ENV on its cluster: rhplan run np_env -- python -c 'import numpy'.

    rhplan run -cluster NAME -- COMMAND runs it in the cluster's default env (its
    default_env, else its only env). Exits with the command's exit code."""
    from rhplan.servlets.client import default_env
    from rhplan.status import stream_in_env
    cmd = list(args)
    env = None if cluster is not None else cmd.pop(0)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise RhplanError("give a command after --, e.g. rhplan run np_env -- python -V")
    state = _backend(obj).read()
    if env is None:
        env = default_env(state, cluster, obj.chdir)
    # output streams as the command writes it, over the provider's connection alone
    sys.exit(stream_in_env(state, obj.chdir, env, cmd))


cli.add_command(workspace_group, "workspace")
cli.add_command(fmt_command)
cli.add_command(providers_command)
cli.add_command(console_command)


@cli.command("force-unlock")
@click.argument("lock_id")
@click.option("--force", is_flag=True, hidden=True)
@click.pass_obj
def force_unlock(obj: Ctx, lock_id: str, force: bool) -> None:
    """Remove a lock left by an operation that is gone."""
    removed = _backend(obj).force_unlock(lock_id)
    # say whose lock it was, so a mistaken ID is noticed at once
    click.echo(f"rhplan state has been successfully unlocked! (removed the lock of "
               f"{removed.who}, {removed.operation} since {removed.created})")


def tune_gc() -> None:
    """A plan builds tens of thousands of long-lived objects (syntax trees, state):
    full collections over them cost a third of a large plan and find nothing."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def main(argv: list[str] | None = None) -> None:
    tune_gc()
    sys.exit(execute(list(sys.argv[1:] if argv is None else argv)))


# Set to see the traceback of an unexpected error (a bug) instead of its one line.
TRACEBACK_ENV = "RHPLAN_TRACEBACK"
# How the last line of defence starts: tests count a line like this as a bug found.
INTERNAL_ERROR = "Error: internal error"


def execute(argv: list[str]) -> int:
    """Run one command and return its exit code; every error becomes ONE line on stderr.

    main() is this plus sys.exit, so tests that call execute() in-process take exactly the
    path a user's command takes."""
    _ARGS[:] = normalize_args(argv)
    # a command without -lock-timeout fails at once; a command that never locks (fmt,
    # --help) does not import the state package for it (~0.09 s of CPU at every start)
    lockwait = sys.modules.get("rhplan.state.lockwait")  # not loaded yet: still its 0s
    if lockwait is not None:
        lockwait.set_timeout("0s")
    try:
        result = cli.main(args=list(_ARGS), prog_name="rhplan", standalone_mode=False)
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
        click.echo("Interrupted.", err=True)
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


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _fail(message: str, prefix: str = "Error: ") -> int:
    # Messages quote what users wrote (names, values, paths): a newline in it must not
    # split the one line, nor a terminal escape sequence reach the terminal.
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
    click.echo(f"{prefix}{text}", err=True)
    return 1


if __name__ == "__main__":
    main()
