"""The text of a refresh-only plan (`plan -refresh-only`, Terraform's refresh-only mode):
what changed outside rhplan, each object as an attribute diff from what the state
records to what refresh read, and no actions."""
from __future__ import annotations

import dataclasses

from rhplan.plan.model import Plan
from rhplan.views.plan import Styler, render_change

_HEADS = {"update": "has changed", "delete": "has been deleted"}


def render_refresh_only(plan: Plan, color: bool = False) -> str:
    s = Styler(color)
    if not plan.drifted:
        return (s.bold("No changes.") + " Your infrastructure still matches the configuration."
                "\n\nrhplan has checked that the real remote objects still match the result "
                "of your most recent changes,\nand found no differences.\n")
    out = [s.bold("Note: Objects have changed outside of rhplan"), "",
           "rhplan detected the following changes made outside of rhplan since the last "
           '"rhplan apply":', ""]
    for d in plan.drifted:
        lines = render_change(dataclasses.replace(d, reason=""), s)
        lines[0] = s.bold(f"  # {d.address} {_HEADS[d.action]}")
        out += lines + [""]
    out.append("This is a refresh-only plan, so rhplan will not take any actions to undo "
               "these. If you were\nexpecting these changes then you can apply this plan to "
               "record the updated values in\nthe rhplan state without changing any remote "
               "objects.")
    return "\n".join(out) + "\n"
