"""A small, picklable syntax tree for HCL: what the parser produces and the evaluator reads.

python-hcl2 gives a lark tree; we turn it into these nodes once per file (and cache
them by content hash), so evaluation never touches lark and every node knows its line.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Any, Union


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    line: int


@dataclass(frozen=True, slots=True)
class Template:
    """A string with interpolations: parts are str or expression nodes."""

    parts: tuple[Any, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Name:
    """A bare identifier: the root of a reference (var, local, cluster...)."""

    name: str
    line: int


@dataclass(frozen=True, slots=True)
class GetAttr:
    obj: Expr
    name: str
    line: int


@dataclass(frozen=True, slots=True)
class Index:
    obj: Expr
    key: Expr
    line: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    line: int
    expand_last: bool = False


@dataclass(frozen=True, slots=True)
class TupleExpr:
    items: tuple[Expr, ...]
    line: int


@dataclass(frozen=True, slots=True)
class ObjectExpr:
    items: tuple[tuple[Expr, Expr], ...]
    line: int


@dataclass(frozen=True, slots=True)
class Unary:
    op: str
    operand: Expr
    line: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: Expr
    right: Expr
    line: int


@dataclass(frozen=True, slots=True)
class Conditional:
    cond: Expr
    then: Expr
    otherwise: Expr
    line: int


@dataclass(frozen=True, slots=True)
class Splat:
    """`list[*].attr` / `list.*.attr`: the attribute of every element."""

    obj: Expr
    names: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class ForExpr:
    key_var: str | None
    value_var: str
    collection: Expr
    key: Expr | None  # set for `{ for ... : k => v }`
    value: Expr
    cond: Expr | None
    line: int
    group: bool = False  # `{ for ... : k => v... }`: values of equal keys become a list


Expr = Union[  # noqa: UP007 - a runtime alias; `|` of forward references fails here
    Literal, Template, Name, GetAttr, Index, Call, TupleExpr, ObjectExpr, Unary, Binary,
    Conditional, Splat, ForExpr,
]


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    expr: Expr
    line: int


@dataclass(slots=True)
class Block:
    type: str
    labels: tuple[str, ...]
    attrs: dict[str, Attribute]
    blocks: list[Block]
    file: str
    line: int
    end_line: int = 0
    # duplicate attribute names inside one block are an error found while parsing
    extra: dict[str, Any] = field(default_factory=dict)

    def blocks_of(self, type_: str) -> list[Block]:
        return [b for b in self.blocks if b.type == type_]


@dataclass(slots=True)
class File:
    path: str
    body: Block  # a pseudo block of type "" holding the file's top-level content


def depth(node: Any) -> int:
    """How many levels the expression nests (iteratively: it may be very deep)."""
    deepest = 0
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        stack.extend((child, d + 1) for child in children(n))
    return deepest


def children(n: Any) -> list[Any]:
    """The expression nodes directly under n."""
    if isinstance(n, (GetAttr, Splat)):
        return [n.obj]
    if isinstance(n, Index):
        return [n.obj, n.key]
    if isinstance(n, Call):
        return list(n.args)
    if isinstance(n, TupleExpr):
        return list(n.items)
    if isinstance(n, ObjectExpr):
        return [x for kv in n.items for x in kv]
    if isinstance(n, Template):
        return [p for p in n.parts if not isinstance(p, str)]
    if isinstance(n, Unary):
        return [n.operand]
    if isinstance(n, Binary):
        return [n.left, n.right]
    if isinstance(n, Conditional):
        return [n.cond, n.then, n.otherwise]
    if isinstance(n, ForExpr):
        return [x for x in (n.collection, n.key, n.value, n.cond) if x is not None]
    return []


def walk(node: Any):
    """Yield every expression node under node (inclusive), depth first."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(children(n))


def _pickled_by_fields(cls: type) -> None:
    """Pickle cls as cls(*fields): loading then runs the dataclass __init__, about a
    third faster than the default slots state (a Python __setstate__ per node), which
    was most of reading a cached parse of a large configuration."""
    get = operator.attrgetter(*(f.name for f in fields(cls)))

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return type(self), get(self)

    cls.__reduce__ = __reduce__  # type: ignore[method-assign]


for _cls in (Literal, Template, Name, GetAttr, Index, Call, TupleExpr, ObjectExpr, Unary, Binary,
             Conditional, Splat, ForExpr, Attribute, Block, File):
    _pickled_by_fields(_cls)
