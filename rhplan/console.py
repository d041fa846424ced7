"""`rhplan console`: try expressions against the configuration, as Terraform's console.

Expressions are read one per line from standard input (a prompt when it is a terminal;
`echo 'upper("a")' | rhplan console` in scripts) and evaluated with the configuration's
variables, locals and functions and its resources' values: what the state records for
applied resources, the configured values for the others (with what only apply can tell
"(known after apply)"). A variable without a value is unknown. Values print as Terraform
prints them; a value derived from a sensitive one prints as (sensitive value). A bad
expression is one error line and the console goes on; `exit` or end of input ends it.
Nothing is planned, applied or written; no provider is asked anything. The
evaluation is rhplan/workspace/console.py's (Session), how a value prints
views/console.py's; this is the command's loop."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rhplan.cli_options import var_options, var_order


@click.command("console")
@var_options
@click.pass_obj
def console_command(obj: Any, var: tuple[str, ...], var_file: tuple[str, ...]) -> None:
    """Evaluate expressions read from standard input, one per line (`exit` ends)."""
    from rhplan import views
    from rhplan.errors import RhplanError
    from rhplan.views import console as shown
    from rhplan.workspace.console import DISPLAY, Session

    session = Session(Path(obj.chdir), var, var_file, var_order())
    interactive = sys.stdin.isatty()
    failed = False
    number = 0
    while True:
        if interactive:
            shown.prompt()
        line = sys.stdin.readline()
        if not line:
            break
        number += 1
        text = line.strip()
        if not text:
            continue
        if text == "exit":
            break
        try:
            shown.value(*session.evaluate(text, number))
        except RhplanError as exc:
            failed = True
            views.error(str(exc))
        except RecursionError:
            failed = True
            views.error(f"{DISPLAY}:{number}: the expression nests too deeply; simplify it")
    if interactive:
        shown.ended()
    # piped input (CI): a failed expression fails the command, after all were tried
    if failed and not interactive:
        sys.exit(1)
