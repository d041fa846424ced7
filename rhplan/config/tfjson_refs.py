"""The `references` of an expression in Terraform's configuration representation:
each reference in full and then each shorter prefix down to the object it names,
so a policy can match `env.e`, `env.e["a"]` or `env.e["a"].path` by string equality.

Read from Terraform's internal/command/jsonconfig (marshalExpression) and how HCL
reads a traversal: an index with a literal key (`x["a"]`, `x[0]`) is a step of the
traversal; an index with any other key (`x[local.k]`) ends it, and the key's own
references follow. A resource (or module call) with an instance key is also named
without it: `env.e["a"].path` -> env.e["a"].path, env.e["a"], env.e.
"""
from __future__ import annotations

import json
import re
from typing import Any

from rhplan.config import ast
from rhplan.config.evaluate import RESOURCE_TYPES

# roots whose subject is the root and one attribute (var.x, local.y, each.key)
_TWO_PART = ("var", "local", "each", "count", "path", "rhplan", "terraform")

Step = tuple[str, Any]  # ("attr", name) or ("index", key)


def _literal_key(expr: Any) -> Any:
    """The key of a literal index (a string or a whole number), else None."""
    if isinstance(expr, ast.Literal) and isinstance(expr.value, (str, int, float)) \
            and not isinstance(expr.value, bool):
        return expr.value
    if isinstance(expr, ast.Template) and all(isinstance(p, str) for p in expr.parts):
        return "".join(expr.parts)
    return None


def _unwind(node: Any) -> tuple[Any, list[Step], list[Any]]:
    """(root node, the static steps after it, the expressions still to read).
    A non-literal index cuts the traversal: what comes before it is the reference."""
    chain: list[Any] = []
    while isinstance(node, (ast.GetAttr, ast.Index)):
        chain.insert(0, node)
        node = node.obj
    steps: list[Step] = []
    rest: list[Any] = []  # x[local.k]: local.k is read on its own
    cut = False
    for link in chain:
        if isinstance(link, ast.GetAttr):
            if not cut:
                steps.append(("attr", link.name))
            continue
        key = _literal_key(link.key)
        if key is None:
            rest.append(link.key)
        cut = cut or key is None
        if not cut:
            steps.append(("index", key))
    return node, steps, rest


def _text(steps: list[Step]) -> str:
    out = []
    for kind, v in steps:
        if kind == "attr":
            out.append(f".{v}")
        elif isinstance(v, str):
            out.append(f"[{json.dumps(v, ensure_ascii=False)}]")
        else:
            out.append(f"[{int(v) if float(v).is_integer() else v}]")
    return "".join(out)


def _subject(root: str, steps: list[Step]) -> tuple[int, list[str]] | None:
    """How many steps name the referenced object, and the shorter names Terraform
    adds after it (the resource or module call without its instance key)."""
    if root in _TWO_PART:
        return (1, []) if steps and steps[0][0] == "attr" else None
    if root == "self":
        return 0, []
    if root in RESOURCE_TYPES or root == "module":
        if not steps or steps[0][0] != "attr":
            return None
        keyed = len(steps) > 1 and steps[1][0] == "index"
        n = 2 if keyed else 1
        if root == "module" and len(steps) > n and steps[n][0] == "attr":
            return n + 1, [root + _text(steps[:n])]  # module.m.out: and module.m
        return n, [root + _text(steps[:1])] if keyed else []
    return None  # a for expression's own variable, a function's argument name


# what rhplan/config/modules.py makes of a module's names when it flattens a call
_OUTPUT = re.compile(r'(?:^|\.)module\.([^.\[]+)(\[(?:"(?:[^"\\]|\\.)*"|\d+)\])?'
                     r'\.output\.([^.]+)$')
_OWN = re.compile(r"(?:^|\.)(var|local)\.([^.]+)$")


def _unflattened(root: str, steps: list[Step]) -> tuple[str, list[Step]]:
    """The reference as written in the module: a flattened module's resource root
    `module.m.env` is `env` there, its local `module.m.output.O` (in the caller) is
    `module.m.O`, `module.m.var.V` is `var.V` and `module.m.local.L` is `local.L`."""
    if "." in root and root.rsplit(".", 1)[1] in RESOURCE_TYPES:
        return root.rsplit(".", 1)[1], steps
    if root != "local" or not steps or steps[0][0] != "attr" or "." not in steps[0][1]:
        return root, steps
    name, rest = steps[0][1], steps[1:]
    m = _OUTPUT.search(name)
    if m:
        call: list[Step] = [("attr", m.group(1))]
        if m.group(2):
            call.append(("index", json.loads(m.group(2)[1:-1])))
        return "module", [*call, ("attr", m.group(3)), *rest]
    m = _OWN.search(name)
    if m:
        return m.group(1), [("attr", m.group(2)), *rest]
    return root, steps


def _names(root: str, steps: list[Step]) -> list[str]:
    root, steps = _unflattened(root, steps)
    found = _subject(root, steps)
    if found is None:
        return []
    n, shorter = found
    subject = root + _text(steps[:n])
    return [subject + _text(steps[n:end]) for end in range(len(steps), n, -1)] + [
        subject, *shorter]


def references(expr: Any) -> list[str]:
    """Terraform's references of an expression, in the order written, without repeats."""
    out: list[str] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Name, ast.GetAttr, ast.Index)):
            root, steps, rest = _unwind(node)
            if isinstance(root, ast.Name):
                out += _names(root.name, steps)
            else:
                rest.insert(0, root)  # f(x).y: read what the call reads
            stack.extend(reversed(rest))
            continue
        stack.extend(reversed(ast.children(node)))
    return list(dict.fromkeys(out))
