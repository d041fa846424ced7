"""A fast path for parsing the HCL most configurations are made of.

python-hcl2's lark parser is the reference for what is valid, and it is slow (~7 s
for 2,000 env blocks here). This recursive-descent reader handles a plain subset:
blocks, attributes, strings with ${...} interpolation, numbers, true/false/null,
references (a.b[0]), function calls, lists and objects, comments. It builds exactly
the tree parse.py's converter builds from lark's, lines included. Anything outside
the subset, and anything wrong, raises Unsupported: the caller then parses the file
with python-hcl2, which accepts it or reports the error as always. So the fast path
only ever decides "this is valid and means that" for text python-hcl2 also accepts
with the same meaning (tests/test_fastparse.py checks both agree, on the examples
and on mutated variants of them).
"""
from __future__ import annotations

import re

from rhplan.config import ast
from rhplan.config.evaluate import parse_number

# lark's NAME; identifiers spelled like these keywords are for/if expressions there
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
_KEYWORDS = frozenset(("in", "for", "if", "for_each"))
_NAME_CHAR = re.compile(r"[a-zA-Z0-9_-]")
_SPACE = re.compile(r"[ \t]*")
# new_line_or_comment (with the spaces around): \n, # and // comments, /* */ comments
_NEWLINES = re.compile(r"(?:[ \t]*(?:\n|#[^\n]*\n|//[^\n]*\n|/\*(?:.|\n)*?\*/))+[ \t]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# lark's STRING_CHARS without newlines: any char but " and \, an escape, a $ not
# starting ${ or $${
_STRING_RUN = re.compile(r'(?:[^"\\$\n]|\\[^\n]|\$(?!\$?\{))*')
# far below parse.py's MAX_DEPTH, so the slow path never refuses what this accepts
_MAX_DEPTH = 30


class Unsupported(Exception):
    """Not in the fast subset (or not valid): parse with python-hcl2 instead."""


def parse(text: str, display: str) -> ast.File:
    """text ends with a newline (as parse_text makes sure)."""
    from rhplan.config.parse import _template, _unescape

    s = text
    n = len(s)
    pos = 0
    line = 1
    depth = 0

    def space() -> None:
        nonlocal pos
        if pos < n and s[pos] in " \t":  # most calls find no space: skip the regex
            pos = _SPACE.match(s, pos).end()  # type: ignore[union-attr]

    def newlines() -> bool:
        """Skip spaces, new lines and comments; True if there were new lines or comments."""
        nonlocal pos, line
        if pos >= n or s[pos] not in " \t\n#/":
            return False
        m = _NEWLINES.match(s, pos)
        if m is None:
            pos = _SPACE.match(s, pos).end()  # type: ignore[union-attr]
            return False
        line += s.count("\n", pos, m.end())
        pos = m.end()
        return True

    def name() -> str:
        nonlocal pos
        m = _NAME.match(s, pos)
        if m is None or m.group() in _KEYWORDS:
            raise Unsupported
        pos = m.end()
        return m.group()

    def string() -> ast.Expr:
        nonlocal pos
        start_line = line
        pos += 1  # the opening quote
        parts: list[object] = []
        while True:
            m = _STRING_RUN.match(s, pos)
            run = m.group()  # type: ignore[union-attr]
            pos = m.end()  # type: ignore[union-attr]
            if run:
                try:
                    parts.append(_unescape(run))
                except ValueError:
                    raise Unsupported from None
            c = s[pos] if pos < n else ""
            if c == '"':
                pos += 1
                return _template(parts, start_line)
            if c == "$" and s.startswith("${", pos):
                pos += 2
                parts.append(expr())
                space()
                if pos >= n or s[pos] != "}":
                    raise Unsupported
                pos += 1
                continue
            raise Unsupported  # a newline, $${, the end of the text

    def expr() -> ast.Expr:
        nonlocal pos, depth
        depth += 1
        if depth > _MAX_DEPTH:
            raise Unsupported
        space()
        start = line
        c = s[pos] if pos < n else ""
        e: ast.Expr
        if c == '"':
            e = string()
        elif c == "[":
            e = tuple_()
        elif c == "{":
            e = object_()
        elif "0" <= c <= "9":
            m = _NUMBER.match(s, pos)
            value = parse_number(m.group())  # type: ignore[union-attr]
            if value is None:
                raise Unsupported
            pos = m.end()  # type: ignore[union-attr]
            space()
            if pos < n and s[pos] in ".[":
                raise Unsupported  # 1.x, 1[0]: not worth matching lark's reading
            depth -= 1
            return ast.Literal(value, start)
        else:
            ident = name()
            space()
            if pos < n and s[pos] == "(":
                e = call(ident, start)
            elif ident == "true":
                e = ast.Literal(True, start)
            elif ident == "false":
                e = ast.Literal(False, start)
            elif ident == "null":
                e = ast.Literal(None, start)
            else:
                e = ast.Name(ident, start)
        # references: .name and [key], each one level deeper, as lark nests them
        extra = 0
        while True:
            space()
            c = s[pos] if pos < n else ""
            if c == ".":
                pos += 1
                space()
                e = ast.GetAttr(e, name(), start)  # .0 and .* are not names: Unsupported
            elif c == "[":
                pos += 1
                newlines()
                if pos < n and s[pos] == "*":
                    raise Unsupported
                key = expr()
                newlines()
                if pos >= n or s[pos] != "]":
                    raise Unsupported
                pos += 1
                e = ast.Index(e, key, start)
            else:
                break
            extra += 1
            depth += 1
            if depth > _MAX_DEPTH:
                raise Unsupported
        depth -= extra + 1
        return e

    def call(ident: str, start: int) -> ast.Expr:
        nonlocal pos
        pos += 1  # (
        args: list[ast.Expr] = []
        newlines()
        if s[pos] != ")":
            while True:
                args.append(expr())
                newlines()
                c = s[pos] if pos < n else ""
                if c == ",":
                    pos += 1
                    newlines()
                    if s[pos] == ")":
                        break
                    continue
                if c == ")":
                    break
                raise Unsupported  # an operator, ..., or anything unexpected
        pos += 1
        return ast.Call(ident, tuple(args), start, False)

    def tuple_() -> ast.Expr:
        nonlocal pos
        start = line
        pos += 1
        items: list[ast.Expr] = []
        newlines()
        if s[pos] != "]":
            while True:
                items.append(expr())
                newlines()
                c = s[pos] if pos < n else ""
                if c == ",":
                    pos += 1
                    newlines()
                    if s[pos] == "]":
                        break
                    continue
                if c == "]":
                    break
                raise Unsupported
        pos += 1
        return ast.TupleExpr(tuple(items), start)

    def equals() -> None:
        nonlocal pos
        space()
        if pos + 1 >= n or s[pos] != "=" or s[pos + 1] in "=>":
            raise Unsupported
        pos += 1

    def object_() -> ast.Expr:
        nonlocal pos, depth
        start = line
        pos += 1
        items: list[tuple[ast.Expr, ast.Expr]] = []
        while True:
            newlines()
            c = s[pos] if pos < n else ""
            if c == "}":
                pos += 1
                return ast.ObjectExpr(tuple(items), start)
            key_line = line
            key: ast.Expr
            if c == '"':
                depth += 1  # the converter reads a string key as an expression
                key = string()
                depth -= 1
            else:
                key = ast.Literal(name(), key_line)
                space()
                if pos < n and s[pos] == ".":
                    raise Unsupported  # a.b = ... keys
            equals()
            items.append((key, expr()))
            space()
            c = s[pos] if pos < n else ""
            if c == ",":
                pos += 1
            elif c != "}" and not newlines():
                raise Unsupported

    def body(type_: str, labels: tuple[str, ...], block_line: int, top: bool) -> ast.Block:
        nonlocal pos
        block = ast.Block(type_, labels, {}, [], display, block_line, block_line)
        while True:
            newlines()
            space()
            if pos >= n:
                if top:
                    return block
                raise Unsupported
            if s[pos] == "}":
                if top:
                    raise Unsupported
                return block
            item_line = line
            # lark's identifier takes FOR_EACH too: `for_each = ...` in a block
            if s.startswith("for_each", pos) and not _NAME_CHAR.match(s, pos + 8):
                ident = "for_each"
                pos += 8
            else:
                ident = name()
            space()
            if s[pos] == "=":
                equals()
                if ident in block.attrs:
                    raise Unsupported  # the slow path says which line has it first
                block.attrs[ident] = ast.Attribute(ident, expr(), item_line)
            else:
                found: list[str] = []
                while True:
                    space()
                    c = s[pos] if pos < n else ""
                    if c == "{":
                        break
                    if c == '"':
                        label = string()
                        if not isinstance(label, ast.Literal):
                            raise Unsupported
                        found.append(str(label.value))
                    elif newlines():
                        if s[pos] != "{":
                            raise Unsupported
                    else:
                        found.append(name())
                pos += 1
                sub = body(ident, tuple(found), item_line, False)
                sub.end_line = line
                pos += 1  # }
                block.blocks.append(sub)
            # an item ends with a new line, the block's closing brace or the text
            space()
            if pos < n and s[pos] != "}" and not newlines():
                raise Unsupported

    try:
        top = body("", (), 1, True)
    except IndexError:  # ran off the end of the text
        raise Unsupported from None
    return ast.File(display, top)
