"""`rhplan workspace new|select|list|show|delete`: Terraform's workspace commands. What
each does is rhplan/workspace/backends.py's; what it prints, rhplan/views.py's.

What a workspace is, and where each one's state lives: rhplan.state.workspaces."""
from __future__ import annotations

from typing import Any

import click

from rhplan import views
from rhplan.cli_options import lock_option


@click.group()
def workspace() -> None:
    """Several states for one configuration (dev, staging, prod)."""


@workspace.command("new")
@lock_option
@click.argument("name")
@click.pass_obj
def workspace_new(obj: Any, name: str) -> None:
    """Create workspace NAME (an empty state) and switch to it."""
    from rhplan.workspace.backends import new_workspace, not_overridden
    not_overridden(f"switching to {name!r}", unless=name)  # CI may make the one it names
    new_workspace(obj.state().cfg, name)
    views.workspace_made(name)


@workspace.command("select")
@click.argument("name")
@click.option("--or-create", is_flag=True, help="Create the workspace if it does not exist.")
@click.pass_obj
def workspace_select(obj: Any, name: str, or_create: bool) -> None:
    """Switch to workspace NAME."""
    from rhplan.workspace.backends import select_workspace
    views.workspace_selected(name, select_workspace(lambda: obj.state().cfg, name, or_create))


@workspace.command("list")
@click.pass_obj
def workspace_list(obj: Any) -> None:
    """List the workspaces; * marks the one in use."""
    from rhplan.workspace.backends import listed_workspaces
    views.workspaces(*listed_workspaces(obj.state().cfg))


@workspace.command("show")
@click.pass_obj
def workspace_show(obj: Any) -> None:
    """Print the name of the workspace in use."""
    from pathlib import Path

    from rhplan.state import workspaces
    views.echo(workspaces.current(Path(obj.chdir)))


@workspace.command("delete")
@lock_option
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Delete even if the workspace still tracks resources (they are forgotten, "
                   "not destroyed).")
@click.pass_obj
def workspace_delete(obj: Any, name: str, force: bool) -> None:
    """Delete workspace NAME and its state."""
    from rhplan.workspace.backends import delete_workspace
    views.workspace_deleted(name, delete_workspace(obj.state().cfg, name, force))
