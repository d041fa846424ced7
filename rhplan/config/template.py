"""String templates: `%{ for }` / `%{ if }` directives, and templatefile()'s files.

python-hcl2's grammar splits `${...}` out of strings but passes `%{ ... }` directives
through as raw text, so they are interpreted here, when a string that holds one is
evaluated: its parts are scanned once (cached per syntax node) into text, interpolations,
`for` and `if` nodes, then rendered with the evaluator. `%%{` is a literal `%{`; a `~`
inside a directive's braces strips the whitespace (newlines too) on that side.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rhplan.config import evaluate as ev
from rhplan.config.values import UNKNOWN, EvalError, to_bool, to_str, type_name
from rhplan.errors import ConfigError


@dataclass(frozen=True)
class _For:
    key_var: str | None
    value_var: str
    collection: Any
    body: tuple[Any, ...]
    line: int


@dataclass(frozen=True)
class _If:
    cond: Any
    then: tuple[Any, ...]
    otherwise: tuple[Any, ...]
    line: int


@dataclass
class _Directive:
    text: str
    strip_left: bool
    strip_right: bool
    line: int


_FOR = re.compile(r"for\s+([A-Za-z_][\w-]*)(?:\s*,\s*([A-Za-z_][\w-]*))?\s+in\s+(.+)", re.S)
_IF = re.compile(r"if\s+(.+)", re.S)

# compiled templates by syntax node (kept with the node, so an id is never reused)
_CACHE: dict[int, tuple[Any, tuple[Any, ...] | None]] = {}


def has_directive(text: str) -> bool:
    return "%{" in text


def compiled(node: Any, parts: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The directive tree of a string's parts, or None when it has no directive."""
    hit = _CACHE.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    tokens: list[Any] = []
    line = node.line
    for p in parts:
        if isinstance(p, str):
            tokens.extend(_scan(p, line, interpolations=False))
            line += p.count("\n")  # a heredoc's later directives sit on later lines
        else:
            tokens.append(p)
    tree = _build(tokens, node.line) if any(isinstance(t, _Directive) for t in tokens) else None
    if tree is None and any(isinstance(t, str) for t in tokens):
        # no directive but an escaped %%{: the text still changes
        tree = tuple(_strip(tokens)) if any(isinstance(p, str) and "%%{" in p
                                           for p in parts) else None
    _CACHE[id(node)] = (node, tree)
    return tree


def render(tree: tuple[Any, ...], evaluator: Any) -> Any:
    """The template's string, or UNKNOWN when a value it needs is known only after apply."""
    out: list[str] = []
    for n in tree:
        if isinstance(n, str):
            out.append(n)
        elif isinstance(n, _For):
            coll = evaluator.value(evaluator.eval(n.collection), n.line)
            if coll is UNKNOWN:
                return UNKNOWN
            if isinstance(coll, dict):  # Terraform walks a map in key order
                pairs: list[tuple[Any, Any]] = sorted(coll.items())
            elif isinstance(coll, list):
                pairs = list(enumerate(coll))
            else:
                raise EvalError(f"%{{ for }} needs a list or a map, not a "
                                   f"{type_name(coll)}", n.line)
            for k, v in pairs:
                bindings = {n.value_var: v}
                if n.key_var:
                    bindings[n.key_var] = k
                text = render(n.body, evaluator.bound(bindings))
                if text is UNKNOWN:
                    return UNKNOWN
                out.append(text)
        elif isinstance(n, _If):
            c = evaluator.value(evaluator.eval(n.cond), n.line)
            if c is UNKNOWN:
                return UNKNOWN
            if c is None:
                raise EvalError("the %{ if } condition is null; it must be true or false",
                                   n.line)
            text = render(n.then if to_bool(c, n.line) else n.otherwise, evaluator)
            if text is UNKNOWN:
                return UNKNOWN
            out.append(text)
        else:
            v = evaluator.value(evaluator.eval(n), getattr(n, "line", 0))
            if v is UNKNOWN:
                return UNKNOWN
            if v is None:
                raise EvalError("a value in the template is null; a string template "
                                   "cannot include null", getattr(n, "line", 0))
            out.append(to_str(v, getattr(n, "line", 0)))
    return "".join(out)


def render_file(text: str, display: str, variables: dict[str, Any], scope: Any) -> str:
    """templatefile(): only the given variables (and functions) are in scope."""
    try:
        tokens = _scan(text, 1, interpolations=True, file=display)
        tree = _build(tokens, 1, display)
    except EvalError as exc:
        raise ValueError(f"{display}:{exc.line}: {exc.message}") from None
    tscope = ev.Scope({}, _not_here, _not_here, scope.base_dir)
    tscope.in_template = True  # type: ignore[attr-defined]
    try:
        result = render(tree, ev.make_evaluator(tscope, dict(variables)))
    except EvalError as exc:
        message = exc.message
        m = re.match(r"unknown reference '([^']+)'", message)
        if m:
            passed = ", ".join(sorted(variables)) or "none"
            message = (f"the template refers to {m.group(1)}, which is not among the "
                       f"variables passed to templatefile ({passed}); pass it in the map")
        elif message.startswith("unknown variable var."):
            message = ("a template sees only the variables passed to templatefile; pass "
                       "the value in the map instead of var.NAME")
        raise ValueError(f"{display}:{exc.line}: {message}") from None
    return result if isinstance(result, str) else to_str(result, 0)


def _not_here(*args: Any) -> Any:
    line = args[-1]
    raise EvalError("a template sees only the variables passed to templatefile; pass "
                       "the value in the map", line)


# ---- scanning ------------------------------------------------------------------------


def _scan(text: str, line: int, interpolations: bool, file: str = "") -> list[Any]:
    """Text → str pieces, _Directive markers and (for files) parsed `${}` expressions."""
    out: list[Any] = []
    pattern = r"%%\{|\$\$\{|%\{|\$\{" if interpolations else r"%%\{|%\{"
    pos = 0
    for m in re.finditer(pattern, text):
        if m.start() < pos:
            continue
        out.append(text[pos:m.start()])
        here = line + text.count("\n", 0, m.start())
        if m.group() in ("%%{", "$${"):
            out.append(m.group()[1:])
            pos = m.end()
            continue
        end = matching_brace(text, m.end())
        if end < 0:
            raise EvalError(f"unclosed {m.group()} in the template; close it with }}", here)
        inner = text[m.end():end]
        left, right = inner.startswith("~"), inner.endswith("~")
        inner = inner[1 if left else 0:len(inner) - 1 if right else len(inner)].strip()
        if m.group() == "%{":
            out.append(_Directive(inner, left, right, here))
        else:
            if left:
                out.append(_Directive("", True, False, here))
            out.append(_parse_expr(inner, here, file))
            if right:
                out.append(_Directive("", False, True, here))
        pos = end + 1
    out.append(text[pos:])
    return [t for t in out if t != ""]


def matching_brace(text: str, start: int) -> int:
    """The index of the } closing the { before `start` (strings skipped), or -1."""
    depth, i, in_str = 1, start, False
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _parse_expr(src: str, line: int, file: str = "") -> Any:
    from rhplan.config.parse import parse_text  # the parser loads only when needed

    try:
        f = parse_text("\n" * (line - 1) + f"x = {src}\n", file or "template")
    except ConfigError as exc:
        raise EvalError(f"in the template expression {src[:60]!r}: {exc.message}",
                           line) from None
    return f.body.attrs["x"].expr


def _strip(tokens: list[Any]) -> list[Any]:
    """Apply `~` strip markers to the text beside them."""
    out = list(tokens)
    for i, t in enumerate(out):
        if not isinstance(t, _Directive):
            continue
        if t.strip_left and i > 0 and isinstance(out[i - 1], str):
            out[i - 1] = out[i - 1].rstrip()
        if t.strip_right and i + 1 < len(out) and isinstance(out[i + 1], str):
            out[i + 1] = out[i + 1].lstrip()
    return [t for t in out if not (isinstance(t, _Directive) and t.text == "")
            and t != ""]


def _build(tokens: list[Any], line: int, file: str = "") -> tuple[Any, ...]:
    """Nest for/if directives; every open one must be closed in the same template."""
    stack: list[tuple[str, Any, list[Any], list[Any] | None, int]] = []
    body: list[Any] = []
    for t in _strip(tokens):
        if not isinstance(t, _Directive):
            body.append(t)
            continue
        word = t.text.split(None, 1)[0] if t.text else ""
        if word == "for":
            m = _FOR.fullmatch(t.text)
            if m is None:
                raise EvalError(f"invalid directive %{{ {t.text} }}; write "
                                   "%{ for ITEM in LIST } ... %{ endfor }", t.line)
            header = (m.group(1), m.group(2), _parse_expr(m.group(3), t.line, file))
            stack.append(("for", header, body, None, t.line))
            body = []
        elif word == "if":
            m = _IF.fullmatch(t.text)
            assert m is not None
            stack.append(("if", _parse_expr(m.group(1), t.line, file), body, None, t.line))
            body = []
        elif word == "else" and t.text == "else":
            if not stack or stack[-1][0] != "if" or stack[-1][3] is not None:
                raise EvalError("%{ else } without an open %{ if }", t.line)
            kind, head, outer, _, start = stack.pop()
            stack.append((kind, head, outer, body, start))
            body = []
        elif word in ("endfor", "endif") and t.text == word:
            want = word[3:]
            if not stack or stack[-1][0] != want:
                raise EvalError(f"%{{ {word} }} without an open %{{ {want} }}", t.line)
            kind, head, outer, then, start = stack.pop()
            if kind == "for":
                node: Any = _For(head[1] and head[0], head[1] or head[0], head[2], tuple(body),
                                 start)
            else:
                node = _If(head, tuple(then if then is not None else body),
                           tuple(body) if then is not None else (), start)
            body = outer
            body.append(node)
        else:
            raise EvalError(f"unknown template directive %{{ {t.text[:40]} }}; use for, "
                               "if, else, endfor or endif (write %%{ for a literal %{)", t.line)
    if stack:
        kind, _, _, _, start = stack[-1]
        raise EvalError(f"%{{ {kind} }} is never closed; add %{{ end{kind} }}", start)
    return tuple(body)
