"""`rhplan console`: try expressions against the configuration, as Terraform's console.

Expressions are read one per line from standard input (a prompt when it is a terminal;
`echo 'upper("a")' | rhplan console` in scripts) and evaluated with the configuration's
variables, locals and functions and its resources' values: what the state records for
applied resources, the configured values for the others (with what only apply can tell
"(known after apply)"). A variable without a value is unknown. Values print as Terraform
prints them; a value derived from a sensitive one prints as (sensitive value). A bad
expression is one error line and the console goes on; `exit` or end of input ends it.
Nothing is planned, applied or written; no provider is asked anything."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from rhplan.cli_options import var_options, var_order

DISPLAY = "<stdin>"
_PREFIX = "__console__ = "  # an expression is parsed as this attribute's value


class Session:
    """The configuration loaded once; evaluate() then takes one expression at a time."""

    def __init__(self, directory: Path, cli_vars: tuple[str, ...] = (),
                 var_files: tuple[str, ...] = (), order: list[str] | None = None):
        from rhplan.config.decode import evaluate_providers
        from rhplan.config.inputs import resolve_variables
        from rhplan.config.load import load_config
        from rhplan.plan.planner import Planner, PlanOptions
        from rhplan.provider import RunContext
        from rhplan.state import workspaces
        from rhplan.state.model import State

        d = Path(directory).absolute()
        cfg = load_config(d)
        variables = resolve_variables(cfg, list(cli_vars), list(var_files), order,
                                      missing_unknown=True)
        ctx = RunContext(d)
        ctx.workspace = workspaces.current(d)
        ctx.provider_configs = evaluate_providers(cfg, variables, ctx.workspace)
        state = _recorded(cfg, ctx.workspace)
        planner = Planner(cfg, ctx, variables)
        planner.evaluation.validating = True  # a dynamic block over an unknown value
        # configured values (as validate sees them: no provider, secret or network)...
        planner.plan(State.new(), PlanOptions(validate=True))
        # ...and what apply recorded, for what exists
        for addr, rs in state.resources.items():
            planner.planned[addr] = rs.attributes
            block, key = _block_and_key(addr)
            keys = planner.instance_keys.get(block)
            if key is not None and keys is not None and key not in keys:
                keys.append(key)
        self.evaluation = planner.evaluation
        self.dir = d
        self.module_outputs: dict[str, set[str]] = {}  # module name -> its outputs
        for name in cfg.locals:
            m = re.fullmatch(r"module\.([^.]+)\.output\.(.+)", name)
            if m:
                self.module_outputs.setdefault(m.group(1), set()).add(m.group(2))

    def evaluate(self, text: str, line: int = 1) -> tuple[Any, bool]:
        """The value of one expression and whether it derives from a sensitive one;
        RhplanError naming <stdin>:LINE."""
        from rhplan.config.parse import parse_text
        from rhplan.errors import ConfigError
        try:
            tree = parse_text("\n" * (line - 1) + _PREFIX + text + "\n", DISPLAY)
        except ConfigError as exc:  # columns as the user typed them, without _PREFIX
            message = re.sub(r"\bcolumn (\d+)",
                             lambda m: f"column {max(1, int(m.group(1)) - len(_PREFIX))}",
                             exc.message)
            raise ConfigError(message, exc.file, exc.line) from None
        attr = tree.body.attrs.get("__console__")
        if attr is None or len(tree.body.attrs) != 1 or tree.body.blocks:
            raise ConfigError("write one expression per line, e.g. upper(var.name)", DISPLAY,
                              line)
        # module.m.OUT reads the module's output, as in the configuration's own files
        from rhplan.config.module_rewrite import rewrite_block
        tree.body.file = DISPLAY
        attr = rewrite_block(tree.body, "", self.dir, self.module_outputs).attrs["__console__"]
        value, mark = self.evaluation.marked_evaluate(attr.expr, DISPLAY)
        return value, bool(mark)


def _recorded(cfg: Any, workspace: str) -> Any:
    from rhplan.workspace import backend_for
    return backend_for(cfg, workspace).read()


def _block_and_key(addr: str) -> tuple[str, Any]:
    """env.x["a"] -> ("env.x", "a"); a plain address -> (itself, None)."""
    if not addr.endswith("]"):
        return addr, None
    from rhplan.names import block_address, parse_address
    parts = parse_address(addr)
    return block_address(addr), (parts[2] if parts else None)


@click.command("console")
@var_options
@click.pass_obj
def console_command(obj: Any, var: tuple[str, ...], var_file: tuple[str, ...]) -> None:
    """Evaluate expressions read from standard input, one per line (`exit` ends)."""
    from rhplan import views
    from rhplan.errors import RhplanError
    from rhplan.views import console as shown

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
