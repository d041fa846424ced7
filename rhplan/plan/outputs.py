"""The plan's output changes: each output evaluated and compared with what the state
recorded (unknown where it reads a resource outside -target), and recorded outputs no
longer declared, deleted."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rhplan.config.decode import Evaluation
from rhplan.config.model import Config
from rhplan.config.values import UNKNOWN, ResourceValue
from rhplan.errors import ConfigError
from rhplan.state.model import State


def output_changes(cfg: Config, evaluation: Evaluation, planned: Callable[[str], bool],
                   state: State, destroy: bool) -> dict[str, dict[str, Any]]:
    """Each output's change against the state; `planned(address)`: whether this plan
    has values for that resource (else, outside -target, the output is unknown)."""
    out: dict[str, dict[str, Any]] = {}
    for name, o in cfg.outputs.items():
        before = state.outputs.get(name, {}).get("value") if name in state.outputs else None
        if destroy:
            after = None
        else:
            try:
                after = evaluation.output(o)  # refuses an unmarked sensitive one
            except ConfigError:
                if any(not planned(r) for r in o.refs if not r.startswith("local.")):
                    after = UNKNOWN  # refers to something outside -target
                else:
                    raise
            if isinstance(after, ResourceValue):
                raise ConfigError(f"output {name!r} is a whole resource; use one of its "
                                  "attributes", o.file, o.line)
        if name not in state.outputs:
            action = "create" if after is not None else "no-op"
        elif after is None and destroy:
            action = "delete"
        else:
            action = "update" if after != before else "no-op"
        out[name] = {"action": action, "before": before, "after": after,
                     "sensitive": o.sensitive}
    for name, rec in state.outputs.items():
        if name not in out:
            out[name] = {"action": "delete", "before": rec.get("value"), "after": None,
                         "sensitive": rec.get("sensitive", False)}
    return out
