"""HCL text → rhplan syntax tree, through python-hcl2's lark grammar.

We use python-hcl2 7.3.1 and read its lark tree ourselves instead of its dict
output: the dict output drops quotes inside expressions (`join(",", ["a"])`
comes back as `[a]`) and 8.x drops line numbers (upstream #291), while the lark
tree carries a line on every node and loses nothing. Parsing with it is the slow
part (seconds for thousands of blocks), so most files take fastparse.py's reader of
the plain subset, which builds the same tree (lark still parses the rest and reports
every error), and parsed files are cached by content hash. The lark tree is read by
lark_tree.py; the string helpers both readers use are here.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Any

from rhplan.config import ast
from rhplan.errors import ConfigError

# 3: nodes pickled as their fields (ast._pickled_by_fields); 4: f(list...) expands;
# 5: { for ... : k => v... } groups
_CACHE_VERSION = "5"
# How deep expressions may nest (brackets, calls, operators): far beyond any real
# configuration, and low enough that converting and evaluating them never exhausts
# Python's recursion limit (fuzzing found RecursionError tracebacks without it).
MAX_DEPTH = 64


def parse_file(path: Path, display: str, cache_dir: Path | None = None) -> ast.File:
    """Parse one file, reusing a cached tree when its content hash matches."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cache_file = cache_dir / f"{digest}-v{_CACHE_VERSION}.pickle" if cache_dir else None
    if cache_file is not None and cache_file.exists():
        try:
            with open(cache_file, "rb") as fh:
                tree: ast.File = pickle.load(fh)
            tree.path = display
            _set_file(tree.body, display)
            return tree
        except Exception:  # a broken cache entry is just a miss
            pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise ConfigError(f"file is not UTF-8 text (byte {data[exc.start]:#04x} at column "
                          f"{column}); save it as UTF-8", display, line) from None
    tree = parse_text(text.removeprefix("\ufeff"), display)  # editors may write a BOM
    if cache_file is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "wb") as fh:
                pickle.dump(tree, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, cache_file)
        except (OSError, pickle.PicklingError, RecursionError):
            pass  # a read-only cache dir still plans, just without the cache
    return tree


def _set_file(block: ast.Block, display: str) -> None:
    block.file = display
    for b in block.blocks:
        _set_file(b, display)


def parse_text(text: str, display: str, depth: int = 0) -> ast.File:
    if not text.endswith("\n"):
        text += "\n"  # the grammar needs a final newline
    if depth == 0:
        from rhplan.config import fastparse  # a cached file (the usual case) needs no parser
        try:
            return fastparse.parse(text, display)
        except fastparse.Unsupported:
            pass  # python-hcl2 decides: it parses the rest, and reports every error
    import hcl2.parser  # imported here: lark's grammar loads only for what the fast path leaves
    from lark.exceptions import (
        UnexpectedCharacters,
        UnexpectedEOF,
        UnexpectedInput,
        UnexpectedToken,
    )

    try:
        # hcl2.parses() builds an uncached parser each process (~1 s); this one is cached
        tree = hcl2.parser.parser().parse(text)
    except UnexpectedToken as exc:
        tok = exc.token
        what = "end of file" if tok.type == "$END" else repr(str(tok))
        raise ConfigError(
            f"syntax error at column {exc.column}: unexpected {what}; "
            "check for a missing quote, bracket, brace or '='",
            display, exc.line,
        ) from None
    except UnexpectedCharacters as exc:
        raise ConfigError(
            f"syntax error at column {exc.column}: unexpected character {text_char(exc)!r}; "
            "check quotes and brackets",
            display, exc.line,
        ) from None
    except UnexpectedEOF:
        raise ConfigError(
            "syntax error: the file ends inside a block or expression; close every '{' and '['",
            display, text.count("\n"),
        ) from None
    except UnexpectedInput as exc:  # pragma: no cover - other lark errors
        raise ConfigError(f"syntax error: {exc}", display, getattr(exc, "line", None)) from None
    from rhplan.config.lark_tree import Converter

    conv = Converter(display, depth)
    conv.text = text  # the grammar drops the `...` of f(list...): it is found in the text
    body = conv.body(tree.children[0], "", (), 1)
    return ast.File(display, body)


def text_char(exc: Any) -> str:
    try:
        return exc.char
    except AttributeError:  # pragma: no cover
        return "?"


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def join_template(parts: list[Any], line: int) -> ast.Expr:
    merged: list[Any] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        elif p != "":
            merged.append(p)
    if not merged:
        return ast.Literal("", line)
    if len(merged) == 1 and isinstance(merged[0], str):
        return ast.Literal(merged[0], line)
    if len(merged) == 1:
        return merged[0]  # "${x}" is x itself, keeping its type (HCL does the same)
    return ast.Template(tuple(merged), line)


def unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw

    def sub(m: re.Match[str]) -> str:
        c = m.group(1)
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c.startswith("u"):
            code = int(c[1:], 16)
            if 0xD800 <= code <= 0xDFFF:  # half of a UTF-16 pair: no character, unprintable
                raise ValueError(f"\\{c} is not a character; write the character itself")
            return chr(code)
        return m.group(0)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", sub, raw)
