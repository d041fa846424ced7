"""`rhplan fmt`: HCL files rewritten in the canonical layout Terraform's fmt gives them.

Only whitespace changes, decided token by token the way HashiCorp's hclwrite does it:
2-space indents from the brackets each line opens and closes, one space between most
tokens (none inside brackets, before commas, around dots, after a unary minus or !),
the `=` of consecutive attribute lines aligned, and trailing comments of consecutive
lines aligned. Besides, runs of blank lines become one and a file ends with one newline.
Comments are tokens, so they stay; a heredoc is one token, so its text is untouched;
the text of quoted strings is untouched too (only the expressions inside ${ } are laid
out). A file is formatted only if rhplan's parser accepts it, as Terraform does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rhplan.errors import ConfigError

# token kinds
NL, COMMENT, IDENT, NUMBER, HEREDOC = "nl", "comment", "ident", "number", "heredoc"
OQUOTE, QLIT, CQUOTE, INTERP, CONTROL, SEQEND = "oquote", "qlit", "cquote", "${", "%{", "seqend"
EQUAL, DOT, COMMA, ELLIPSIS, COLON, DCOLON = "=", ".", ",", "...", ":", "::"
MINUS, BANG, OBRACE, CBRACE, OBRACK, CBRACK = "-", "!", "{", "}", "[", "]"
OPAREN, CPAREN = "(", ")"

_OPENERS = frozenset((OBRACE, OBRACK, OPAREN, INTERP, CONTROL))
_CLOSERS = frozenset((CBRACE, CBRACK, CPAREN, SEQEND))
# a minus after one of these is a negation (hclwrite's guess): no space after it
_BEFORE_NEGATION = frozenset((
    None, OPAREN, OBRACE, OBRACK, EQUAL, COLON, COMMA, "?", "+", "*", "/", "%", MINUS,
    "==", "!=", ">", ">=", "<", "<=", "&&", "||", BANG))
# punctuation, longest first
_PUNCT = ("...", "::", "=>", "==", "!=", "<=", ">=", "&&", "||",
          "=", ".", ",", ":", "?", "!", "+", "-", "*", "/", "%", "<", ">",
          "{", "}", "[", "]", "(", ")")
_IDENT = re.compile(r"[^\W\d][\w-]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_HEREDOC = re.compile(r"<<(-?)([^\W\d][\w-]*)[ \t]*\r?\n")
_SPACE = re.compile(r"[ \t]+")
_MAX_NESTING = 64  # strings inside ${ } inside strings...: far beyond real use


class Tok:
    __slots__ = ("kind", "text", "spaces")

    def __init__(self, kind: str, text: str):
        self.kind = kind
        self.text = text
        self.spaces = 0  # spaces before it, decided by the formatter

    def __repr__(self) -> str:
        return f"Tok({self.kind!r}, {self.text!r})"


class _Lexer:
    def __init__(self, text: str, display: str):
        self.s = text
        self.n = len(text)
        self.display = display
        self.toks: list[Tok] = []

    def error(self, pos: int, what: str) -> ConfigError:
        line = self.s.count("\n", 0, pos) + 1
        return ConfigError(what, self.display, line)

    def add(self, kind: str, text: str) -> None:
        self.toks.append(Tok(kind, text))

    def expr(self, i: int, in_template: bool, depth: int) -> int:
        """Tokens of expressions and bodies from i; inside ${ } (in_template) up to and
        including the } that ends it. Returns where it stopped."""
        s, n = self.s, self.n
        braces = 0
        while i < n:
            c = s[i]
            if c in " \t":
                i = _SPACE.match(s, i).end()  # type: ignore[union-attr]
            elif c == "\n" or (c == "\r" and s.startswith("\r\n", i)):
                self.add(NL, "\n")
                i += 1 if c == "\n" else 2
            elif c == "#" or s.startswith("//", i):
                end = s.find("\n", i)
                end = n if end < 0 else end
                self.add(COMMENT, s[i:end].rstrip() + ("\n" if end < n else ""))
                i = end + 1
            elif s.startswith("/*", i):
                end = s.find("*/", i + 2)
                if end < 0:
                    raise self.error(i, "a /* comment is never closed; end it with */")
                self.add(COMMENT, s[i:end + 2])
                i = end + 2
            elif c == '"':
                self.add(OQUOTE, '"')
                i = self.string(i + 1, depth + 1)
            elif c == "<" and s.startswith("<<", i):
                i = self.heredoc(i)
            elif c.isdigit():
                m = _NUMBER.match(s, i)
                self.add(NUMBER, m.group())  # type: ignore[union-attr]
                i = m.end()  # type: ignore[union-attr]
            elif in_template and braces == 0 and (c == "}" or s.startswith("~}", i)):
                end = i + (1 if c == "}" else 2)
                self.add(SEQEND, s[i:end])
                return end
            else:
                m = _IDENT.match(s, i)
                if m:
                    self.add(IDENT, m.group())
                    i = m.end()
                    continue
                p = next((p for p in _PUNCT if s.startswith(p, i)), None)
                if p is None:
                    raise self.error(i, f"unexpected character {c!r}; rhplan fmt formats "
                                        "valid HCL only")
                if p == "{":
                    braces += 1
                elif p == "}":
                    braces -= 1
                self.add(p, p)
                i += len(p)
        if in_template:
            raise self.error(i, "a ${ or %{ in a string is never closed; end it with }")
        return i

    def string(self, i: int, depth: int) -> int:
        """A quoted string after its opening quote: literal runs kept exactly, the
        expressions inside ${ } and %{ } tokenized; returns the index after the quote."""
        if depth > _MAX_NESTING:
            raise self.error(i, "strings nest too deeply")
        s, n = self.s, self.n
        start = i
        while True:
            if i >= n:  # (a newline inside quotes is taken as written: rhplan's parser does)
                raise self.error(start, "a quoted string is never closed; end it with \"")
            c = s[i]
            if c == '"':
                if i > start:
                    self.add(QLIT, s[start:i])
                self.add(CQUOTE, '"')
                return i + 1
            if c == "\\":
                i += 2
            elif s.startswith("$${", i) or s.startswith("%%{", i):
                i += 3
            elif s.startswith("${", i) or s.startswith("%{", i):
                if i > start:
                    self.add(QLIT, s[start:i])
                end = i + (3 if s.startswith("~", i + 2) else 2)
                self.add(INTERP if c == "$" else CONTROL, s[i:end])
                i = self.expr(end, True, depth)
                start = i
            else:
                i += 1

    def heredoc(self, i: int) -> int:
        """<<EOT / <<-EOT ... EOT as one token, its text exactly as written."""
        m = _HEREDOC.match(self.s, i)
        if not m:
            raise self.error(i, "<< starts a heredoc: write <<EOT (or <<-EOT) at the end of "
                                "a line, the text, then EOT alone on a line")
        marker = m.group(2)
        pos = m.end()
        while pos <= self.n:
            end = self.s.find("\n", pos)
            end = self.n if end < 0 else end
            if self.s[pos:end].strip() == marker:
                self.add(HEREDOC, self.s[i:end].rstrip("\r"))
                return end
            if end >= self.n:
                break
            pos = end + 1
        raise self.error(i, f"heredoc <<{marker} is never closed; end it with {marker} "
                            "alone on a line")


def tokens(text: str, display: str = "<text>") -> list[Tok]:
    lx = _Lexer(text.removeprefix("\ufeff"), display)
    lx.expr(0, False, 0)
    return lx.toks


def _change(t: Tok) -> int:
    k = t.kind
    return 1 if k in _OPENERS else -1 if k in _CLOSERS else 0


@dataclass
class _Line:
    lead: list[Tok]
    assign: list[Tok] | None = None
    comment: list[Tok] | None = None


def _columns(toks: list[Tok] | None) -> int:
    return sum(t.spaces + len(t.text) for t in toks) if toks else 0


def _lines(toks: list[Tok]) -> list[_Line]:
    lines: list[_Line] = []
    current: list[Tok] = []
    for t in toks:
        current.append(t)
        if t.kind == NL or (t.kind == COMMENT and t.text.endswith("\n")):
            lines.append(_Line(current))
            current = []
    if current:
        lines.append(_Line(current))
    for line in lines:
        lead = line.lead
        if len(lead) > 1 and lead[-1].kind == COMMENT:
            line.comment, lead = lead[-1:], lead[:-1]
            line.lead = lead
        for i, t in enumerate(lead):
            if i > 0 and t.kind == EQUAL:
                # only a whole expression on this line is aligned, not `x = {`
                if sum(_change(u) for u in lead[i:]) == 0:
                    line.assign, line.lead = lead[i:], lead[:i]
                break
    return lines


def _indent(lines: list[_Line]) -> None:
    indents: list[int] = []
    for line in lines:
        if not line.lead:
            continue
        first = line.lead[0]
        if first.kind == NL:
            first.spaces = 0
            continue
        net = 0
        for t in line.lead:
            net += _change(t)
        for t in line.assign or ():
            net += _change(t)
        if net > 0:
            first.spaces = 2 * len(indents)
            indents.append(net)
            continue
        closed = -net
        while closed > 0 and indents:
            if closed >= indents[-1]:
                closed -= indents.pop()
            else:
                indents[-1] -= closed
                closed = 0
        first.spaces = 2 * len(indents)


def _space_after(subject: Tok, before: Tok | None, after: Tok) -> bool:
    """Whether `after` gets one space before it (hclwrite's rules, in its order)."""
    s, a = subject.kind, after.kind
    if a == NL:
        return False
    if s == IDENT and a == OPAREN:
        return False  # f(x)
    if (s == IDENT and a == DCOLON) or (s == DCOLON and a == IDENT):
        return False
    if s == DOT or a == DOT:
        return False
    if a in (COMMA, ELLIPSIS):
        return False
    if s == COMMA:
        return True
    if s in (QLIT, OQUOTE, HEREDOC) or a in (QLIT, CQUOTE):
        return False  # nothing added inside strings; a heredoc ends its line
    if s == IDENT and subject.text == "in" and before is not None and before.kind == IDENT:
        return True  # [for x in [y] : x]
    if a == OBRACK and (s in (IDENT, NUMBER) or s in _CLOSERS):
        return False  # x[0], f()[0]
    if s == BANG:
        return False
    if s == MINUS:
        return (before.kind if before is not None else None) not in _BEFORE_NEGATION
    if s == OBRACE or a == CBRACE:
        return not (s == OBRACE and a == CBRACE)  # { a = 1 }, but {}
    if s in (INTERP, CONTROL) and a == OBRACE:
        return True
    if s == CBRACE and a == SEQEND:
        return True
    if s == SEQEND and a in (INTERP, CONTROL):
        return False
    if s in _OPENERS:
        return False
    if a in _CLOSERS:
        return False
    return True


def _spaces(lines: list[_Line]) -> None:
    for line in lines:
        for cell in (line.lead, line.assign):
            if not cell:
                continue
            if cell is line.assign:
                cell[0].spaces = 1
            for i in range(len(cell) - 1):
                t, nxt = cell[i], cell[i + 1]
                nxt.spaces = 1 if _space_after(t, cell[i - 1] if i else None, nxt) else 0


def _align(lines: list[_Line]) -> None:
    """The `=` of consecutive attribute lines in one column, then the trailing comments
    of consecutive lines in one column."""
    chain: list[_Line] = []
    for line in [*lines, _Line([])]:
        if line.assign is not None:
            chain.append(line)
            continue
        width = max((_columns(c.lead) for c in chain), default=0)
        for c in chain:
            c.assign[0].spaces = width - _columns(c.lead) + 1  # type: ignore[index]
        chain = []
    for line in [*lines, _Line([])]:
        if line.comment is not None:
            chain.append(line)
            continue
        width = max((_columns(c.lead) + _columns(c.assign) for c in chain), default=0)
        for c in chain:
            c.comment[0].spaces = width - _columns(c.lead) - _columns(c.assign) + 1  # type: ignore[index]
        chain = []


def format_text(text: str, display: str = "<text>") -> str:
    """text in the canonical layout (raises ConfigError for what cannot be tokenized)."""
    lines = _lines(tokens(text, display))
    # one blank line at most between others, none at the start or the end
    kept: list[_Line] = []
    for line in lines:
        blank = len(line.lead) == 1 and line.lead[0].kind == NL and line.comment is None
        if blank and (not kept or _blank(kept[-1])):
            continue
        kept.append(line)
    while kept and _blank(kept[-1]):
        kept.pop()
    _indent(kept)
    _spaces(kept)
    _align(kept)
    out: list[str] = []
    for line in kept:
        for cell in (line.lead, line.assign, line.comment):
            for t in cell or ():
                out.append(" " * t.spaces + t.text)
    result = "".join(out)
    if result and not result.endswith("\n"):
        result += "\n"
    return result


def _blank(line: _Line) -> bool:
    return len(line.lead) == 1 and line.lead[0].kind == NL and line.comment is None
