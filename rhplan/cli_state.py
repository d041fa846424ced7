"""`rhplan state list|show|rm|mv|pull|push`: Terraform's state commands (a module name
that is not under rhplan.state, which fmt and --help do not import). What each does
to the state is the workspace's (rhplan/workspace/state_ops.py, `state show` Workspace's);
what it prints, rhplan/views/'s."""
from __future__ import annotations

import sys
from typing import Any

import click

from rhplan import views
from rhplan.cli_options import lock_option


@click.group()
def state() -> None:
    """Inspect and edit the recorded state."""


@state.command("list")
@click.argument("addresses", nargs=-1)
@click.pass_obj
def state_list(obj: Any, addresses: tuple[str, ...]) -> None:
    """List resource addresses in the state (only those ADDRESSES name: env.x lists
    every instance of env.x)."""
    for addr in obj.state().addresses(addresses):
        views.echo(addr)


@state.command("show")
@click.argument("address")
@click.pass_obj
def state_show(obj: Any, address: str) -> None:
    """Show one resource instance's recorded attributes."""
    views.echo(views.resource_text(*obj.reading().instance_view(address)))


@state.command("rm")
@lock_option
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@click.argument("addresses", nargs=-1, required=True)
@click.pass_obj
def state_rm(obj: Any, addresses: tuple[str, ...], dry_run: bool) -> None:
    """Forget resources without destroying them (env.x: every instance of it)."""
    count = obj.state().remove(addresses, dry_run, lambda a: views.removed(a, dry_run))
    if not dry_run:
        views.removed_all(count)


@state.command("mv")
@lock_option
@click.option("--dry-run", is_flag=True, help="Say what would move; change nothing.")
@click.argument("source")
@click.argument("destination")
@click.pass_obj
def state_mv(obj: Any, source: str, destination: str, dry_run: bool) -> None:
    """Move a resource to another address in the state, without touching it: e.g.
    env.x to 'env.x["a"]' when the block gains for_each, or a block's every instance
    (env.x to env.y). What refers to it in the state follows."""
    count = obj.state().move(source, destination, dry_run,
                             lambda old, new: views.moved(old, new, dry_run))
    if not dry_run:
        views.moved_all(count)


@state.command("pull")
@click.pass_obj
def state_pull(obj: Any) -> None:
    """Print the state as JSON (e.g. to move it to another backend with state push)."""
    views.document(obj.state().pull())


@state.command("push")
@lock_option
@click.argument("file")
@click.option("--force", is_flag=True,
              help="Replace the state even if its lineage differs or its serial is lower.")
@click.pass_obj
def state_push(obj: Any, file: str, force: bool) -> None:
    """Replace the state with FILE (from state pull; - reads stdin), under the lock."""
    views.pushed(file, obj.state().push(file, force, sys.stdin.buffer))
