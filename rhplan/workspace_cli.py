"""`rhplan workspace new|select|list|show|delete`: Terraform's workspace commands. What
each does is StateWorkspace's (rhplan/workspace/state_ops.py, the work in backends.py);
what it prints, rhplan/views/'s.

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
    obj.state().new_workspace(name)
    views.workspace_made(name)


@workspace.command("select")
@click.argument("name")
@click.option("--or-create", is_flag=True, help="Create the workspace if it does not exist.")
@click.pass_obj
def workspace_select(obj: Any, name: str, or_create: bool) -> None:
    """Switch to workspace NAME."""
    views.workspace_selected(name, obj.state().select_workspace(name, or_create))


@workspace.command("list")
@click.pass_obj
def workspace_list(obj: Any) -> None:
    """List the workspaces; * marks the one in use."""
    views.workspaces(*obj.state().workspaces())


@workspace.command("show")
@click.pass_obj
def workspace_show(obj: Any) -> None:
    """Print the name of the workspace in use."""
    views.echo(obj.state().current_workspace())


@workspace.command("delete")
@lock_option
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Delete even if the workspace still tracks resources (they are forgotten, "
                   "not destroyed).")
@click.pass_obj
def workspace_delete(obj: Any, name: str, force: bool) -> None:
    """Delete workspace NAME and its state."""
    views.workspace_deleted(name, obj.state().delete_workspace(name, force))
