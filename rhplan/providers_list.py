"""`rhplan providers`: the providers a configuration uses, as Terraform's command shows
them: a tree of the root module and each module call, then the providers the state
records, then where each one comes from (the installed package whose `rhplan.providers`
entry point provides it, or rhplan itself for the built-in `rhplan` provider of
package and secret blocks). The report is rhplan/workspace/providers.py's, its layout
views/providers.py's."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rhplan.cli_options import var_options, var_order


@click.command("providers")
@var_options
@click.pass_obj
def providers_command(obj: Any, var: tuple[str, ...], var_file: tuple[str, ...]) -> None:
    """List the providers the configuration and the state use, and where they come from."""
    from rhplan.views.providers import providers
    from rhplan.workspace.providers import report
    providers(report(Path(obj.chdir), var, var_file, var_order()))
