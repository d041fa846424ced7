"""python-hcl2's lark tree → rhplan's syntax tree (config/ast.py): every node keeps
its line; operators are regrouped by precedence, strings and heredocs become templates,
and nesting is bounded (MAX_DEPTH). parse.py runs it on what fastparse.py leaves."""
from __future__ import annotations

import re
from typing import Any

from rhplan.config import ast
from rhplan.config.parse import MAX_DEPTH, join_template, parse_text, unescape
from rhplan.config.template import matching_brace
from rhplan.config.values import parse_number
from rhplan.errors import ConfigError


def _line(node: Any, default: int = 0) -> int:
    meta = getattr(node, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return meta.line
    line = getattr(node, "line", None)
    return line if isinstance(line, int) else default


_PRECEDENCE = {
    "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, ">": 4, "<=": 4, ">=": 4,
    "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
}


class Converter:
    def __init__(self, file: str, depth: int = 0):
        self.file = file
        self.depth = depth  # expression nesting so far (heredocs parse their ${} anew)
        self.text = ""

    # ---- structure ---------------------------------------------------
    def body(self, node: Any, type_: str, labels: tuple[str, ...], line: int) -> ast.Block:
        block = ast.Block(type_, labels, {}, [], self.file, line, line)
        for child in node.children:
            name = getattr(child, "data", None)
            if name == "attribute":
                key = self.identifier(child.children[0])
                aline = _line(child, line)
                if key in block.attrs:
                    raise ConfigError(
                        f"attribute {key!r} is set twice in this block "
                        f"(first on line {block.attrs[key].line}); keep one",
                        self.file, aline,
                    )
                expr = self.expr(child.children[2])
                if ast.depth(expr) > MAX_DEPTH * 2:  # operator chains nest without brackets
                    raise ConfigError(f"the value of {key!r} nests too deeply (over "
                                      f"{MAX_DEPTH * 2} levels); split it into locals",
                                      self.file, aline)
                block.attrs[key] = ast.Attribute(key, expr, aline)
            elif name == "block":
                block.blocks.append(self.block(child))
        return block

    def block(self, node: Any) -> ast.Block:
        children = [c for c in node.children if getattr(c, "data", None) != "new_line_or_comment"]
        type_ = self.identifier(children[0])
        labels = []
        for c in children[1:-1]:
            labels.append(self.identifier(c) if c.data == "identifier" else self.plain_string(c))
        line = _line(node)
        b = self.body(children[-1], type_, tuple(labels), line)
        b.end_line = getattr(node.meta, "end_line", line)
        return b

    def identifier(self, node: Any) -> str:
        return str(node.children[0])

    def plain_string(self, node: Any) -> str:
        t = self.string(node)
        if isinstance(t, ast.Literal):
            return str(t.value)
        raise ConfigError("block labels cannot contain interpolation", self.file, _line(node))

    # ---- expressions -------------------------------------------------
    def expr(self, node: Any) -> ast.Expr:
        kind = node.data
        line = _line(node)
        handler = getattr(self, "x_" + kind, None)
        if handler is None:
            raise ConfigError(f"unsupported expression ({kind}); rewrite it more simply",
                              self.file, line)
        if self.depth >= MAX_DEPTH:
            raise ConfigError(f"expression nested more than {MAX_DEPTH} levels deep; "
                              "split it into locals", self.file, line)
        self.depth += 1
        try:
            return handler(node, line)
        finally:
            self.depth -= 1

    def x_expr_term(self, node: Any, line: int) -> ast.Expr:
        kids = [c for c in node.children if not _is_nl(c)]
        if len(kids) == 3 and str(kids[0]) == "(":
            return self.expr(kids[1])
        return self.expr(kids[0])

    def x_identifier(self, node: Any, line: int) -> ast.Expr:
        name = str(node.children[0])
        if name == "true":
            return ast.Literal(True, line)
        if name == "false":
            return ast.Literal(False, line)
        if name == "null":
            return ast.Literal(None, line)
        return ast.Name(name, line)

    def x_int_lit(self, node: Any, line: int) -> ast.Expr:
        return self.number("".join(str(c) for c in node.children), line)

    def x_float_lit(self, node: Any, line: int) -> ast.Expr:
        return self.number("".join(str(c) for c in node.children), line)

    def number(self, text: str, line: int) -> ast.Expr:
        value = parse_number(text)
        if value is None:  # 1e999 is inf; 5,000 digits are more than Python prints
            raise ConfigError(f"the number {text[:40]}{'...' if len(text) > 40 else ''} is "
                              "too large", self.file, line)
        return ast.Literal(value, line)

    def x_string(self, node: Any, line: int) -> ast.Expr:
        return self.string(node)

    def string(self, node: Any) -> ast.Expr:
        line = _line(node)
        parts: list[Any] = []
        for part in node.children:
            inner = part.children[0] if part.children else ""
            if getattr(inner, "data", None) == "interpolation":
                parts.append(self.expr(inner.children[0]))
            else:
                raw = str(inner)
                if raw.startswith("$${"):
                    parts.append(raw[1:])  # escaped interpolation stays literal
                else:
                    try:
                        parts.append(unescape(raw))
                    except ValueError as exc:
                        raise ConfigError(str(exc), self.file, line) from None
        return join_template(parts, line)

    def x_heredoc_template(self, node: Any, line: int) -> ast.Expr:
        return self.heredoc(str(node.children[0]), line, trim=False)

    def x_heredoc_template_trim(self, node: Any, line: int) -> ast.Expr:
        return self.heredoc(str(node.children[0]), line, trim=True)

    def heredoc(self, raw: str, line: int, trim: bool) -> ast.Expr:
        lines = raw.split("\n")
        body = lines[1:-2]  # drop the <<EOT line and the closing marker (text ends with \n)
        if trim:
            indents = [len(x) - len(x.lstrip()) for x in body if x.strip()]
            cut = min(indents) if indents else 0
            body = [x[cut:] for x in body]
        text = "\n".join(body) + "\n"
        return self.template_text(text, line + 1)

    def template_text(self, text: str, line: int) -> ast.Expr:
        """Split `${...}` out of raw text (heredocs), parsing each piece as an expression."""
        parts: list[Any] = []
        pos = 0
        for m in re.finditer(r"\$\$\{|\$\{", text):
            if m.start() < pos:
                continue
            parts.append(text[pos:m.start()])
            if m.group() == "$${":
                parts.append("${")
                pos = m.end()
                continue
            end = matching_brace(text, m.end())
            if end < 0:
                raise ConfigError("unclosed ${ in heredoc", self.file, line)
            inner = text[m.end():end]
            sub = parse_text(f"x = {inner}\n", self.file, self.depth)
            parts.append(sub.body.attrs["x"].expr)
            pos = end + 1
        parts.append(text[pos:])
        return join_template(parts, line)

    def x_tuple(self, node: Any, line: int) -> ast.Expr:
        items = tuple(self.expr(c) for c in node.children if not _is_nl(c) and hasattr(c, "data"))
        return ast.TupleExpr(items, line)

    def x_object(self, node: Any, line: int) -> ast.Expr:
        items = []
        for elem in node.children:
            if getattr(elem, "data", None) != "object_elem":
                continue
            key_node = elem.children[0].children[0]
            kd = getattr(key_node, "data", None)
            if kd == "identifier":
                key: ast.Expr = ast.Literal(str(key_node.children[0]), _line(elem, line))
            elif kd == "object_elem_key_expression":
                key = self.expr(key_node.children[1])
            elif kd == "object_elem_key_dot_accessor":
                key = ast.Literal(".".join(str(c.children[0]) for c in key_node.children
                                           if getattr(c, "data", None) == "identifier"), line)
            else:
                key = self.expr(key_node)
            items.append((key, self.expr(elem.children[2])))
        return ast.ObjectExpr(tuple(items), line)

    def x_function_call(self, node: Any, line: int) -> ast.Expr:
        name = self.identifier(node.children[0])
        args: list[ast.Expr] = []
        expand = False
        for c in node.children[1:]:
            if getattr(c, "data", None) == "arguments":
                last = None
                for a in c.children:
                    if hasattr(a, "data") and not _is_nl(a):
                        args.append(self.expr(a))
                        last = a
                    elif str(a) == "...":
                        expand = True
                # python-hcl2's grammar matches `...` as an anonymous token and drops it,
                # so min([1, 2]...) would silently be min([1, 2]): look between the last
                # argument and the closing parenthesis
                if not expand and last is not None and self.text and _has_meta(last, node):
                    between = self.text[last.meta.end_pos:node.meta.end_pos]
                    expand = between.lstrip().startswith("...")
        return ast.Call(name, tuple(args), line, expand)

    def x_provider_function_call(self, node: Any, line: int) -> ast.Expr:
        raise ConfigError("provider functions (a::b::c()) are not supported", self.file, line)

    def x_get_attr_expr_term(self, node: Any, line: int) -> ast.Expr:
        obj = self.expr(node.children[0])
        return ast.GetAttr(obj, self.identifier(node.children[1].children[0]), line)

    def x_index_expr_term(self, node: Any, line: int) -> ast.Expr:
        obj = self.expr(node.children[0])
        idx = node.children[1]
        kids = [c for c in idx.children if not _is_nl(c)]
        if kids and hasattr(kids[0], "data"):
            key = self.expr(kids[0])
        else:  # legacy `.0` index
            key = ast.Literal(int("".join(str(c) for c in kids)), line)
        return ast.Index(obj, key, line)

    def x_attr_splat_expr_term(self, node: Any, line: int) -> ast.Expr:
        obj = self.expr(node.children[0])
        names = tuple(self.identifier(g.children[0]) for g in node.children[1].children)
        return ast.Splat(obj, names, line)

    def x_full_splat_expr_term(self, node: Any, line: int) -> ast.Expr:
        obj = self.expr(node.children[0])
        names = []
        for g in node.children[1].children:
            if getattr(g, "data", None) != "get_attr":
                raise ConfigError("only attribute access is supported after [*]", self.file, line)
            names.append(self.identifier(g.children[0]))
        return ast.Splat(obj, tuple(names), line)

    def x_unary_op(self, node: Any, line: int) -> ast.Expr:
        return ast.Unary(str(node.children[0]), self.expr(node.children[1]), line)

    def x_binary_op(self, node: Any, line: int) -> ast.Expr:
        # The grammar nests every chain to the right without precedence
        # (`1 * 2 + 3` arrives as `1 * (2 + 3)`): flatten it, then rebuild with HCL's precedence.
        operands: list[ast.Expr] = []
        ops: list[str] = []
        cur = node
        while getattr(cur, "data", None) == "binary_op":
            operands.append(self.expr(cur.children[0]))
            term = cur.children[1]
            ops.append(str(term.children[0].children[0]))
            cur = [c for c in term.children[1:] if not _is_nl(c)][0]
        if getattr(cur, "data", None) == "conditional":
            # `a > 2 ? x : y` arrives as `a > (2 ? x : y)`: the condition is the whole chain
            parts = [c for c in cur.children if not _is_nl(c)]
            operands.append(self.expr(parts[0]))
            cond = _climb(operands, ops, line)
            return ast.Conditional(cond, self.expr(parts[1]), self.expr(parts[2]), line)
        operands.append(self.expr(cur))
        return _climb(operands, ops, line)

    def x_conditional(self, node: Any, line: int) -> ast.Expr:
        kids = [self.expr(c) for c in node.children if not _is_nl(c)]
        return ast.Conditional(kids[0], kids[1], kids[2], line)

    def x_for_tuple_expr(self, node: Any, line: int) -> ast.Expr:
        return self.for_expr(node, line, is_object=False)

    def x_for_object_expr(self, node: Any, line: int) -> ast.Expr:
        return self.for_expr(node, line, is_object=True)

    def for_expr(self, node: Any, line: int, is_object: bool) -> ast.Expr:
        kids = [c for c in node.children if hasattr(c, "data") and not _is_nl(c)]
        intro = kids[0]
        names = [self.identifier(c) for c in intro.children
                 if getattr(c, "data", None) == "identifier"]
        coll_nodes = [c for c in intro.children if hasattr(c, "data") and c.data not in
                      ("identifier", "new_line_or_comment")]
        collection = self.expr(coll_nodes[0])
        rest = kids[1:]
        cond = None
        if rest and rest[-1].data == "for_cond":
            cnode = [c for c in rest[-1].children if hasattr(c, "data") and not _is_nl(c)][0]
            cond = self.expr(cnode)
            rest = rest[:-1]
        key_var, value_var = (names[0], names[1]) if len(names) == 2 else (None, names[0])
        if is_object:
            group = any(str(c) == "..." for c in node.children if not hasattr(c, "data"))
            return ast.ForExpr(key_var, value_var, collection, self.expr(rest[0]),
                               self.expr(rest[1]), cond, line, group)
        return ast.ForExpr(key_var, value_var, collection, None, self.expr(rest[0]), cond, line)


def _has_meta(*nodes: Any) -> bool:
    return all(not getattr(getattr(n, "meta", None), "empty", True) for n in nodes)


def _is_nl(node: Any) -> bool:
    return getattr(node, "data", None) == "new_line_or_comment"


def _climb(operands: list[ast.Expr], ops: list[str], line: int) -> ast.Expr:
    """Precedence climbing over a flat operand/operator list (all left-associative)."""
    out: list[ast.Expr] = [operands[0]]
    stack: list[str] = []

    def reduce() -> None:
        op = stack.pop()
        right = out.pop()
        left = out.pop()
        out.append(ast.Binary(op, left, right, line))

    for op, operand in zip(ops, operands[1:], strict=True):
        while stack and _PRECEDENCE[stack[-1]] >= _PRECEDENCE[op]:
            reduce()
        stack.append(op)
        out.append(operand)
    while stack:
        reduce()
    return out[0]
