"""`rhplan workspace new|select|list|show|delete`: Terraform's workspace commands.

What a workspace is, and where each one's state lives: rhplan.state.workspaces."""
from __future__ import annotations

from typing import Any

import click

from rhplan.errors import RhplanError
from rhplan.lock_option import lock_option


def _config(obj: Any) -> Any:
    from rhplan.config.load import load_config
    return load_config(obj.chdir)


def _not_overridden(what: str, unless: str | None = None) -> None:
    import os

    from rhplan.state import workspaces
    var = workspaces.overridden()
    if var and os.environ[var] != unless:
        raise RhplanError(f"the workspace is chosen by {var} for now, so {what} would not "
                          f"take effect; change or unset {var} instead")


@click.group()
def workspace() -> None:
    """Several states for one configuration (dev, staging, prod)."""


@workspace.command("new")
@lock_option
@click.argument("name")
@click.pass_obj
def workspace_new(obj: Any, name: str) -> None:
    """Create workspace NAME (an empty state) and switch to it."""
    from rhplan.workspace import new_workspace
    _not_overridden(f"switching to {name!r}", unless=name)  # CI may make the one it names
    new_workspace(_config(obj), name)
    click.echo(f'Created and switched to workspace "{name}"!\n\nYou\'re now on a new, empty '
               "workspace. Workspaces isolate their state,\nso if you run \"rhplan plan\" "
               "rhplan will not see any existing state\nfor this configuration.")


@workspace.command("select")
@click.argument("name")
@click.option("--or-create", is_flag=True, help="Create the workspace if it does not exist.")
@click.pass_obj
def workspace_select(obj: Any, name: str, or_create: bool) -> None:
    """Switch to workspace NAME."""
    from rhplan.state import workspaces
    from rhplan.workspace import new_workspace, workspace_names
    _not_overridden(f"selecting {name!r}")
    workspaces.check_name(name)
    cfg = _config(obj)
    if name not in workspace_names(cfg):
        if not or_create:
            raise RhplanError(f'workspace "{name}" does not exist; create it with rhplan '
                              f"workspace new {name}, or add -or-create")
        new_workspace(cfg, name)
        click.echo(f'Created and switched to workspace "{name}"!')
        return
    workspaces.select(cfg.dir, name)
    click.echo(f'Switched to workspace "{name}".')


@workspace.command("list")
@click.pass_obj
def workspace_list(obj: Any) -> None:
    """List the workspaces; * marks the one in use."""
    from rhplan.state import workspaces
    from rhplan.workspace import workspace_names
    cfg = _config(obj)
    current = workspaces.current(cfg.dir)
    names = workspace_names(cfg)
    if current not in names:
        names.append(current)  # chosen by RHPLAN_WORKSPACE before its first write
    for n in names:
        click.echo(f"{'*' if n == current else ' '} {n}")


@workspace.command("show")
@click.pass_obj
def workspace_show(obj: Any) -> None:
    """Print the name of the workspace in use."""
    from pathlib import Path

    from rhplan.state import workspaces
    click.echo(workspaces.current(Path(obj.chdir)))


@workspace.command("delete")
@lock_option
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Delete even if the workspace still tracks resources (they are forgotten, "
                   "not destroyed).")
@click.pass_obj
def workspace_delete(obj: Any, name: str, force: bool) -> None:
    """Delete workspace NAME and its state."""
    from rhplan.workspace import delete_workspace
    forgotten = delete_workspace(_config(obj), name, force)
    if forgotten:
        click.echo(f"Warning: {forgotten} resource(s) of workspace {name!r} are no longer "
                   "managed by rhplan; they keep running until removed by hand.")
    click.echo(f'Deleted workspace "{name}"!')
