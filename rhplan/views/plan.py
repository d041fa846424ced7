"""A Plan as text, the way Terraform prints it (+, ~, -, -/+): `plan`, `apply`
before it asks, `show PLANFILE`. A refresh-only plan's text is views/refresh_only.py's,
the plan as -json views/json_ui.py's."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from rhplan.config.values import UNKNOWN
from rhplan.plan.model import SENSITIVE_TEXT, Change, Plan, hide_sensitive
from rhplan.state.digest import is_keyed

# the planner's reason for every create: not shown; any other (a bare default env's) is
CREATE_REASON = "not in the state yet"

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "replace": "-/+"}
VERBS = {"create": "will be created", "update": "will be updated in-place",
         "delete": "will be destroyed", "replace": "must be replaced"}
COLORS = {"+": "32", "~": "33", "-": "31", "-/+": "31"}
# attributes only shown when they change (bookkeeping, not what users wrote)
QUIET = {"installed", "sources", "secrets_sha256"}


class Styler:
    def __init__(self, color: bool):
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self(text, "1")


class _Hidden:
    """A value derived from a sensitive one: compared as itself, shown as
    (sensitive value)."""
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Hidden) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


def value_text(v: Any) -> str:
    if isinstance(v, _Hidden):
        return SENSITIVE_TEXT
    if v is UNKNOWN:
        return "(known after apply)"
    if isinstance(v, str) and (v.startswith("sha256:") and len(v) == 71 or is_keyed(v)):
        return "(sensitive value)"
    return json.dumps(v, sort_keys=True)


def render_plan(plan: Plan, color: bool = False) -> str:
    s = Styler(color)
    out: list[str] = []
    if plan.drift:
        out.append(s.bold("Note: Objects have changed outside of rhplan"))
        out.append("")
        for d in plan.drift:
            out.append(f"  # {d['message']}")
        out.append("")
    actionable = [c for c in plan.changes
                  if c.action != "no-op" or c.previous_address or c.imported_id or c.deposed]
    if not plan.has_changes:
        out.append(s.bold("No changes.") + " Your infrastructure matches the configuration.")
        return "\n".join(out) + "\n"
    if actionable:
        out.append("rhplan will perform the following actions:")
        out.append("")
        for c in actionable:
            out.extend(render_change(c, s))
            out.append("")
    add, change, destroy = plan.counts()
    forget = sum(1 for c in plan.changes if c.action == "forget")
    imported = sum(1 for c in plan.changes if c.imported_id)
    out.append(s.bold("Plan:") + (f" {imported} to import," if imported else "")
               + f" {add} to add, {change} to change, {destroy} to destroy"
               + (f", {forget} to forget." if forget else "."))
    cost = cost_line(plan)
    if cost:
        out.append(cost)
    outs = [(n, o) for n, o in sorted(plan.output_changes.items()) if o["action"] != "no-op"]
    if outs:
        out.append("")
        out.append("Changes to Outputs:")
        for name, o in outs:
            sym = SYMBOLS.get(o["action"], "~")
            shown = "(sensitive value)" if o.get("sensitive") else None
            if o["action"] == "create":
                out.append(f"  {s(sym, COLORS[sym])} {name} = {shown or value_text(o['after'])}")
            elif o["action"] == "delete":
                out.append(f"  {s(sym, COLORS[sym])} {name} = {shown or value_text(o['before'])}"
                           " -> null")
            else:
                before = shown or value_text(o["before"])
                out.append(f"  {s(sym, COLORS[sym])} {name} = {before} -> "
                           f"{shown or value_text(o['after'])}")
    return "\n".join(out) + "\n"


def render_change(c: Change, s: Styler) -> list[str]:
    if c.deposed:
        lines = [line for name in c.deposed for line in (
            s.bold(f"  # {c.address} (deposed object {name!r}) will be destroyed"),
            "  # (left by a create_before_destroy replacement that did not finish)")]
        if c.action == "no-op" and not c.previous_address and not c.imported_id:
            return lines
        return lines + [""] + render_change(dataclasses.replace(c, deposed=[]), s)
    if c.previous_address and c.action == "no-op":
        return [s.bold(f"  # {c.previous_address} has moved to {c.address}"),
                f"  # ({c.reason})" if c.reason else "  # (nothing else changes)"]
    if c.imported_id and c.action == "no-op":
        return [s.bold(f"  # {c.address} will be imported"),
                f'  # (from id "{c.imported_id}"; nothing else changes)']
    if c.action == "forget":
        return [s.bold(f"  # {c.address} will no longer be managed by rhplan, but will not "
                       "be destroyed"), f"  # ({c.reason})"]
    sym = SYMBOLS[c.action]
    lines = [s.bold(f"  # {c.address} {VERBS[c.action]}")]
    if c.previous_address:
        lines.append(f"  # (moved from {c.previous_address})")
    if c.imported_id:
        lines.append(f'  # (imported from id "{c.imported_id}" by an import block)')
    if c.reason and (c.action != "create" or c.reason != CREATE_REASON):
        lines.append(f"  # ({c.reason})")
    lines.append(f"  {s(sym, COLORS[sym])} {c.type} \"{c.name}\" {{")
    before = c.before or {}
    after = c.after or {}
    shown_before = hide_sensitive(before, c.sensitive, _Hidden) or {}
    shown_after = hide_sensitive(after, c.sensitive, _Hidden) or {}
    names = sorted(set(before) | set(after))
    # align on the attributes that can show: an empty one (a setting left at its
    # default) must not widen every block
    width = max((len(n) for n in names if _filled(before.get(n)) or _filled(after.get(n))),
                default=0)
    for n in names:
        b, a = before.get(n), after.get(n)
        if c.action == "create":
            if a is None or a == [] or a == {} or (n in QUIET and a is not UNKNOWN):
                continue
            lines.extend(_attr(s, "+", n, width, None, shown_after.get(n), c))
        elif c.action == "delete":
            if b is None or b == [] or b == {} or n in QUIET:
                continue
            lines.extend(_attr(s, "-", n, width, shown_before.get(n), None, c))
        elif a != b and not (b is None and a in ([], {})):  # an attribute new to the schema
            lines.extend(_attr(s, "~", n, width, shown_before.get(n), shown_after.get(n), c))
    lines.append("    }")
    return lines


def _filled(v: Any) -> bool:
    return v is not None and v != [] and v != {}


def _attr(s: Styler, sym: str, name: str, width: int, b: Any, a: Any, c: Change) -> list[str]:
    pad = name.ljust(width)
    forces = "  # forces replacement" if name in c.replace_because else ""
    if sym == "+":
        return _block(s, "+", pad, a)
    if sym == "-":
        return _block(s, "-", pad, b)
    if isinstance(a, _Hidden) or isinstance(b, _Hidden):  # neither side is shown
        return [f"      {s('~', COLORS['~'])} {pad} = {SENSITIVE_TEXT}{forces}"]
    # element-wise diff of lists and maps, so one added package reads as one line
    if isinstance(b, list) and isinstance(a, list):
        lines = [f"      {s('~', COLORS['~'])} {pad} = [{forces}"]
        for item in a:
            mark = " " if item in b else s("+", COLORS["+"])
            lines.append(f"          {mark} {value_text(item)},")
        for item in b:
            if item not in a:
                lines.append(f"          {s('-', COLORS['-'])} {value_text(item)},")
        lines.append("        ]")
        return lines
    if isinstance(b, dict) and isinstance(a, dict):
        plus, minus = s("+", COLORS["+"]), s("-", COLORS["-"])
        lines = [f"      {s('~', COLORS['~'])} {pad} = {{{forces}"]
        for k in sorted(set(a) | set(b)):
            if k in a and k in b and a[k] == b[k]:
                continue
            if k not in b:
                lines.append(f"          {plus} {json.dumps(k)} = {value_text(a[k])}")
            elif k not in a:
                lines.append(f"          {minus} {json.dumps(k)} = {value_text(b[k])}")
            elif isinstance(a[k], _Hidden) or isinstance(b[k], _Hidden):
                lines.append(f"          {s('~', COLORS['~'])} {json.dumps(k)} = "
                             f"{SENSITIVE_TEXT}")
            else:
                lines.append(f"          {s('~', COLORS['~'])} {json.dumps(k)} = "
                             f"{value_text(b[k])} -> {value_text(a[k])}")
        lines.append("        }")
        return lines
    return [f"      {s('~', COLORS['~'])} {pad} = {value_text(b)} -> {value_text(a)}{forces}"]


def _block(s: Styler, sym: str, pad: str, v: Any) -> list[str]:
    mark = s(sym, COLORS[sym])
    if isinstance(v, list) and v:
        return ([f"      {mark} {pad} = ["] + [f"          {value_text(x)}," for x in v]
                + ["        ]"])
    if isinstance(v, dict) and v:
        return ([f"      {mark} {pad} = {{"] +
                [f"          {json.dumps(k)} = {value_text(x)}" for k, x in sorted(v.items())]
                + ["        }"])
    return [f"      {mark} {pad} = {value_text(v)}"]


def _cost(attrs: dict[str, Any] | None) -> float:
    v = (attrs or {}).get("cost_per_hour")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def cost_line(plan: Plan) -> str:
    """The change in estimated cost per hour of everything the plan touches, or ""."""
    before = sum(_cost(c.before) for c in plan.changes)
    after = sum(_cost(c.after) for c in plan.changes if c.action != "delete")
    if before == after:
        return ""
    delta = after - before
    sign = "+" if delta > 0 else "-"
    return (f"Cost: {sign}${abs(delta):.4f}/hour (${before:.4f} -> ${after:.4f} per hour, "
            "estimated at on-demand prices)")
