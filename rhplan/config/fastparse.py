"""A fast path for parsing the HCL most configurations are made of.

python-hcl2's lark parser is the reference for what is valid, and it is slow (~7 s
for 2,000 env blocks here). This recursive-descent reader handles a plain subset:
blocks, attributes, strings with ${...} interpolation, numbers, true/false/null,
references (a.b[0]), function calls, lists and objects, comments. It builds exactly
the tree lark_tree.py's converter builds from lark's, lines included. Anything outside
the subset, and anything wrong, raises Unsupported: the caller then parses the file
with python-hcl2, which accepts it or reports the error as always. So the fast path
only ever decides "this is valid and means that" for text python-hcl2 also accepts
with the same meaning (tests/test_fastparse.py checks both agree, on the examples
and on mutated variants of them).
"""
from __future__ import annotations

import re

from rhplan.config import ast
from rhplan.config.parse import join_template, unescape
from rhplan.config.values import parse_number

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


class _Reader:
    """The reader's state (text, position, line, nesting depth) and one method per
    construct; each raises Unsupported where the text leaves the fast subset."""

    def __init__(self, text: str, display: str):
        self.s = text
        self.n = len(text)
        self.pos = 0
        self.line = 1
        self.depth = 0
        self.display = display

    def space(self) -> None:
        # most calls find no space: skip the regex
        if self.pos < self.n and self.s[self.pos] in " \t":
            self.pos = _SPACE.match(self.s, self.pos).end()  # type: ignore[union-attr]

    def newlines(self) -> bool:
        """Skip spaces, new lines and comments; True if there were new lines or comments."""
        if self.pos >= self.n or self.s[self.pos] not in " \t\n#/":
            return False
        m = _NEWLINES.match(self.s, self.pos)
        if m is None:
            self.pos = _SPACE.match(self.s, self.pos).end()  # type: ignore[union-attr]
            return False
        self.line += self.s.count("\n", self.pos, m.end())
        self.pos = m.end()
        return True

    def name(self) -> str:
        m = _NAME.match(self.s, self.pos)
        if m is None or m.group() in _KEYWORDS:
            raise Unsupported
        self.pos = m.end()
        return m.group()

    def string(self) -> ast.Expr:
        start_line = self.line
        self.pos += 1  # the opening quote
        parts: list[object] = []
        while True:
            m = _STRING_RUN.match(self.s, self.pos)
            run = m.group()  # type: ignore[union-attr]
            self.pos = m.end()  # type: ignore[union-attr]
            if run:
                try:
                    parts.append(unescape(run))
                except ValueError:
                    raise Unsupported from None
            c = self.s[self.pos] if self.pos < self.n else ""
            if c == '"':
                self.pos += 1
                return join_template(parts, start_line)
            if c == "$" and self.s.startswith("${", self.pos):
                self.pos += 2
                parts.append(self.expr())
                self.space()
                if self.pos >= self.n or self.s[self.pos] != "}":
                    raise Unsupported
                self.pos += 1
                continue
            raise Unsupported  # a newline, $${, the end of the text

    def expr(self) -> ast.Expr:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise Unsupported
        self.space()
        start = self.line
        c = self.s[self.pos] if self.pos < self.n else ""
        e: ast.Expr
        if c == '"':
            e = self.string()
        elif c == "[":
            e = self.tuple_()
        elif c == "{":
            e = self.object_()
        elif "0" <= c <= "9":
            m = _NUMBER.match(self.s, self.pos)
            value = parse_number(m.group())  # type: ignore[union-attr]
            if value is None:
                raise Unsupported
            self.pos = m.end()  # type: ignore[union-attr]
            self.space()
            if self.pos < self.n and self.s[self.pos] in ".[":
                raise Unsupported  # 1.x, 1[0]: not worth matching lark's reading
            self.depth -= 1
            return ast.Literal(value, start)
        else:
            ident = self.name()
            self.space()
            if self.pos < self.n and self.s[self.pos] == "(":
                e = self.call(ident, start)
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
            self.space()
            c = self.s[self.pos] if self.pos < self.n else ""
            if c == ".":
                self.pos += 1
                self.space()
                e = ast.GetAttr(e, self.name(), start)  # .0 and .* are not names: Unsupported
            elif c == "[":
                self.pos += 1
                self.newlines()
                if self.pos < self.n and self.s[self.pos] == "*":
                    raise Unsupported
                key = self.expr()
                self.newlines()
                if self.pos >= self.n or self.s[self.pos] != "]":
                    raise Unsupported
                self.pos += 1
                e = ast.Index(e, key, start)
            else:
                break
            extra += 1
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise Unsupported
        self.depth -= extra + 1
        return e

    def call(self, ident: str, start: int) -> ast.Expr:
        self.pos += 1  # (
        return ast.Call(ident, tuple(self.items(")")), start, False)

    def tuple_(self) -> ast.Expr:
        start = self.line
        self.pos += 1  # [
        return ast.TupleExpr(tuple(self.items("]")), start)

    def items(self, close: str) -> list[ast.Expr]:
        """Expressions separated by commas (a trailing one allowed), newlines around them,
        up to `close`, which is consumed: a call's arguments, a tuple's items."""
        items: list[ast.Expr] = []
        self.newlines()
        if self.s[self.pos] != close:
            while True:
                items.append(self.expr())
                self.newlines()
                c = self.s[self.pos] if self.pos < self.n else ""
                if c == ",":
                    self.pos += 1
                    self.newlines()
                    if self.s[self.pos] == close:
                        break
                    continue
                if c == close:
                    break
                raise Unsupported  # an operator, ..., or anything unexpected
        self.pos += 1
        return items

    def equals(self) -> None:
        self.space()
        if self.pos + 1 >= self.n or self.s[self.pos] != "=" or self.s[self.pos + 1] in "=>":
            raise Unsupported
        self.pos += 1

    def object_(self) -> ast.Expr:
        start = self.line
        self.pos += 1
        items: list[tuple[ast.Expr, ast.Expr]] = []
        while True:
            self.newlines()
            c = self.s[self.pos] if self.pos < self.n else ""
            if c == "}":
                self.pos += 1
                return ast.ObjectExpr(tuple(items), start)
            key_line = self.line
            key: ast.Expr
            if c == '"':
                self.depth += 1  # the converter reads a string key as an expression
                key = self.string()
                self.depth -= 1
            else:
                key = ast.Literal(self.name(), key_line)
                self.space()
                if self.pos < self.n and self.s[self.pos] == ".":
                    raise Unsupported  # a.b = ... keys
            self.equals()
            items.append((key, self.expr()))
            self.space()
            c = self.s[self.pos] if self.pos < self.n else ""
            if c == ",":
                self.pos += 1
            elif c != "}" and not self.newlines():
                raise Unsupported

    def body(self, type_: str, labels: tuple[str, ...], block_line: int, top: bool) -> ast.Block:
        block = ast.Block(type_, labels, {}, [], self.display, block_line, block_line)
        while True:
            self.newlines()
            self.space()
            if self.pos >= self.n:
                if top:
                    return block
                raise Unsupported
            if self.s[self.pos] == "}":
                if top:
                    raise Unsupported
                return block
            item_line = self.line
            # lark's identifier takes FOR_EACH too: `for_each = ...` in a block
            if self.s.startswith("for_each", self.pos) and not _NAME_CHAR.match(self.s,
                                                                                self.pos + 8):
                ident = "for_each"
                self.pos += 8
            else:
                ident = self.name()
            self.space()
            if self.s[self.pos] == "=":
                self.equals()
                if ident in block.attrs:
                    raise Unsupported  # the slow path says which line has it first
                block.attrs[ident] = ast.Attribute(ident, self.expr(), item_line)
            else:
                found: list[str] = []
                while True:
                    self.space()
                    c = self.s[self.pos] if self.pos < self.n else ""
                    if c == "{":
                        break
                    if c == '"':
                        label = self.string()
                        if not isinstance(label, ast.Literal):
                            raise Unsupported
                        found.append(str(label.value))
                    elif self.newlines():
                        if self.s[self.pos] != "{":
                            raise Unsupported
                    else:
                        found.append(self.name())
                self.pos += 1
                sub = self.body(ident, tuple(found), item_line, False)
                sub.end_line = self.line
                self.pos += 1  # }
                block.blocks.append(sub)
            # an item ends with a new line, the block's closing brace or the text
            self.space()
            if self.pos < self.n and self.s[self.pos] != "}" and not self.newlines():
                raise Unsupported


def parse(text: str, display: str) -> ast.File:
    """text ends with a newline (as parse_text makes sure)."""
    try:
        top = _Reader(text, display).body("", (), 1, True)
    except IndexError:  # ran off the end of the text
        raise Unsupported from None
    return ast.File(display, top)
