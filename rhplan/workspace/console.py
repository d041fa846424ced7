"""`rhplan console`'s work: the configuration loaded once with its variables (a variable
without a value is unknown) and the values the state records, then one expression
evaluated at a time. Nothing is planned, applied or written; no provider is asked
anything. The command is rhplan/console.py; how a value prints, views/console.py."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rhplan.config.decode import evaluate_providers
from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_config
from rhplan.config.model import Config
from rhplan.config.module_rewrite import rewrite_block
from rhplan.config.parse import parse_text
from rhplan.errors import ConfigError
from rhplan.names import block_address, parse_address
from rhplan.plan.planner import Planner, PlanOptions
from rhplan.provider import RunContext
from rhplan.state import workspaces
from rhplan.state.model import State
from rhplan.workspace.backends import backend_for

DISPLAY = "<stdin>"
_PREFIX = "__console__ = "  # an expression is parsed as this attribute's value


class Session:
    """The configuration loaded once; evaluate() then takes one expression at a time."""

    def __init__(self, directory: Path, cli_vars: tuple[str, ...] = (),
                 var_files: tuple[str, ...] = (), order: list[str] | None = None):
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
        tree.body.file = DISPLAY
        attr = rewrite_block(tree.body, "", self.dir, self.module_outputs).attrs["__console__"]
        value, mark = self.evaluation.marked_evaluate(attr.expr, DISPLAY)
        return value, bool(mark)


def _recorded(cfg: Config, workspace: str) -> State:
    return backend_for(cfg, workspace).read()


def _block_and_key(addr: str) -> tuple[str, Any]:
    """env.x["a"] -> ("env.x", "a"); a plain address -> (itself, None)."""
    if not addr.endswith("]"):
        return addr, None
    parts = parse_address(addr)
    return block_address(addr), (parts[2] if parts else None)
