"""A plan's `relevant_attributes` as Terraform computes them: the resource attributes
that contribute, directly or through other resources and module outputs, to what the
plan changes (each resource instance that does not stay as it is, each root output
that changes). Terraform's renderer shows drift only where it touches one of these.

Read from Terraform's internal/terraform (relevantResourceAttrsForPlan) and
internal/lang/globalref (ContributingResourceReferences, MetaReferences). Worked out
from the configuration representation kept in the plan (rhplan/config/tfjson.py), so
its limits are that representation's: a `local` is not followed further, nor a
module's output until the representation lists a module's outputs.
"""
from __future__ import annotations

import json
import re
from typing import Any

from rhplan.config.evaluate import RESOURCE_TYPES
from rhplan.state.tfjson import split_address

_STEP = re.compile(r'\.([A-Za-z_][\w-]*)|\[("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?)\]')
_KEY = re.compile(r'\["(?:[^"\\]|\\.)*"\]|\[-?\d+\]')


def _steps(text: str) -> tuple[str, list[tuple[str, Any]]] | None:
    """'package.p["a"].git_url' -> ("package", [("attr", "p"), ("key", "a"),
    ("attr", "git_url")])."""
    root = re.match(r"[A-Za-z_][\w-]*", text)
    if root is None:
        return None
    steps: list[tuple[str, Any]] = []
    pos = root.end()
    while pos < len(text):
        m = _STEP.match(text, pos)
        if m is None:
            return None
        steps.append(("attr", m.group(1)) if m.group(1) is not None else
                     ("key", json.loads(m.group(2))))
        pos = m.end()
    return root.group(0), steps


def _heads(refs: list[str]) -> list[str]:
    """The full references of a list Terraform writes as each one then its prefixes."""
    out: list[str] = []
    for r in refs:
        if out and out[-1].startswith(r) and out[-1][len(r):len(r) + 1] in (".", "["):
            continue
        out.append(r)
    return out


def _key_text(key: Any) -> str:
    return f"[{json.dumps(key)}]"


class _Module:
    """One module's blocks in the configuration representation."""

    def __init__(self, body: dict[str, Any]):
        self.resources = {r["address"]: r for r in body.get("resources", [])}
        self.outputs = body.get("outputs", {})
        self.call_args = {n: c.get("expressions", {})
                          for n, c in body.get("module_calls", {}).items()}


def _all_refs(expressions: Any) -> list[str]:
    """Every reference in a block's expressions, nested blocks included."""
    if isinstance(expressions, list):
        return [r for x in expressions for r in _all_refs(x)]
    if not isinstance(expressions, dict):
        return []
    if "references" in expressions and isinstance(expressions["references"], list):
        return _heads(expressions["references"])
    return [r for k, x in expressions.items() if k != "constant_value" for r in _all_refs(x)]


class _Analyzer:
    def __init__(self, configuration: dict[str, Any]):
        self.root = configuration.get("root_module", {}) or {}

    def module(self, path: str) -> _Module | None:
        """The module at "module.a.module.b" (instance keys dropped), "" for the root."""
        body = self.root
        for name in _KEY.sub("", path).split(".")[1::2]:
            body = (body.get("module_calls", {}).get(name) or {}).get("module")
            if body is None:
                return None
        return _Module(body)

    def resource_refs(self, module: str, block: str, attr: list[Any]) -> list[str]:
        """What a reference to block (type.name), or to its attribute attr[0], reads:
        the attribute's expression, or every expression of the block (MetaReferences)."""
        m = self.module(module)
        rc = m.resources.get(block) if m else None
        if rc is None:
            return []
        exprs = rc.get("expressions", {})
        if not attr:
            return _all_refs(exprs)
        return _all_refs(exprs.get(attr[0])) if isinstance(attr[0], str) else []

    def repetition_refs(self, module: str, block: str) -> list[str]:
        m = self.module(module)
        rc = m.resources.get(block) if m else None
        if rc is None:
            return []
        return _all_refs([rc.get("for_each_expression", {}), rc.get("count_expression", {})])

    def variable_refs(self, module: str, name: str) -> tuple[str, list[str]]:
        """(the caller, what it passes as variable name of the call that made module)."""
        m = re.search(r"(?:^|\.)module\.([^.\[]+)(?:\[[^\]]*\])?$", module)
        if m is None:
            return "", []
        caller = module[:m.start()]
        parent = self.module(caller)
        args = parent.call_args.get(m.group(1), {}) if parent else {}
        return caller, _all_refs(args.get(name))

    def output_refs(self, module: str, name: str) -> list[str]:
        m = self.module(module)
        out = m.outputs.get(name) if m else None
        return _all_refs(out.get("expression", {})) if out else []


def relevant_attributes(configuration: dict[str, Any], changes: list[tuple[str, str]],
                        outputs: list[str]) -> list[dict[str, Any]]:
    """[{resource, attribute}] for the changing instances (address, action) and
    changing root outputs."""
    azr = _Analyzer(configuration)
    # (module instance the reference is read in, block it is read from, reference)
    pending: list[tuple[str, str, str]] = []
    for address, action in changes:
        if action == "no-op":
            continue
        module, type_, name, _ = split_address(address)
        block = f"{type_}.{name}"
        pending += [(module, block, r) for r in azr.resource_refs(module, block, [])]
    for name in outputs:
        pending += [("", "", r) for r in azr.output_refs("", name)]

    found: dict[tuple[str, str], dict[str, Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    while pending:
        module, block, ref = pending.pop(0)
        if (module, block, ref) in seen:
            continue
        seen.add((module, block, ref))
        parsed = _steps(ref)
        if parsed is None:
            continue
        root, steps = parsed
        prefix = module + "." if module else ""
        named = bool(steps) and steps[0][0] == "attr"
        keyed = named and len(steps) > 1 and steps[1][0] == "key"
        n = 2 if keyed else 1
        key = _key_text(steps[1][1]) if keyed else ""
        if root in RESOURCE_TYPES and named:
            target = f"{root}.{steps[0][1]}"
            instance = prefix + target + key
            attr = [v for _, v in steps[n:]]
            found[(instance, json.dumps(attr))] = {"resource": instance, "attribute": attr}
            pending += [(module, target, r) for r in azr.resource_refs(module, target, attr)]
        elif root == "module" and named and len(steps) > n and steps[n][0] == "attr":
            callee = f"{prefix}module.{steps[0][1]}{key}"
            pending += [(callee, "", r) for r in azr.output_refs(callee, steps[n][1])]
        elif root == "var" and module and named:
            caller, refs = azr.variable_refs(module, steps[0][1])
            pending += [(caller, "", r) for r in refs]
        elif root in ("each", "count") and block:
            pending += [(module, block, r) for r in azr.repetition_refs(module, block)]
    return sorted(found.values(), key=lambda a: (a["resource"], json.dumps(a["attribute"])))
