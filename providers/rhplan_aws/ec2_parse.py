"""A faster reader of EC2's largest answers (DescribeInstances, RunInstances,
DescribeTags): the same dicts botocore's EC2 parser makes, in about 40 % of its CPU.

botocore reads an answer by walking the service model for every XML element (it builds
a name-to-node dict per element and visits every member of each shape, about 60 for an
instance): ~0.5 s of CPU for a 1,000-instance answer (3.6 MB), about half of rhplan's own CPU
in a phase of a large cluster. Here each output shape is compiled into small
functions keyed by the element's tag, so an element costs a dict lookup and a call
(botocore makes a parser per answer, so per answer: 0.1-3 ms).
Anything the compiled form does not cover (maps, unions, flattened lists, XML
attributes, a repeated element, any other operation, every error answer) is left to
botocore's parser, whose output this matches (tests/test_aws_calls.py compares them on
moto's answers).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.parsers import EC2QueryParser, ResponseParserFactory

# the output shapes of DescribeInstances, RunInstances and DescribeTags
FAST_SHAPES = frozenset({"DescribeInstancesResult", "Reservation", "DescribeTagsResult"})

Handler = Callable[[Any], Any]


class _Unsupported(Exception):
    """A shape or an answer this module leaves to botocore."""


class FastEC2Parser(EC2QueryParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._compiled: dict[str, Handler | None] = {}

    def _do_parse(self, response: dict[str, Any], shape: Any) -> Any:
        handler = self._handler(shape)
        if handler is None:
            return super()._do_parse(response, shape)
        root = self._parse_xml_string_to_dom(response["body"])
        try:
            parsed = handler(root)
        except _Unsupported:
            return super()._do_parse(response, shape)
        self._inject_response_metadata(root, parsed)
        return parsed

    def _handler(self, shape: Any) -> Handler | None:
        if shape is None or shape.name not in FAST_SHAPES:
            return None
        if shape.name not in self._compiled:
            try:
                self._compiled[shape.name] = self._compile(shape, {})
            except _Unsupported:
                self._compiled[shape.name] = None
        return self._compiled[shape.name]

    def _compile(self, shape: Any, done: dict[str, Handler | None]) -> Handler:
        kind = shape.type_name
        if kind == "structure":
            return self._compile_structure(shape, done)
        if kind == "list":
            if shape.serialization.get("flattened"):
                raise _Unsupported(shape.name)
            member = self._compile(shape.member, done)
            return lambda node: [member(item) for item in node]
        # scalars as botocore's _handle_* read them: an empty element is ""
        if kind in ("string", "character"):
            return lambda node: node.text or ""
        if kind == "boolean":
            return lambda node: node.text == "true"
        if kind in ("integer", "long"):
            return lambda node: int(node.text or "")
        if kind in ("float", "double"):
            return lambda node: float(node.text or "")
        if kind == "timestamp":
            stamp = self._timestamp_parser
            return lambda node: stamp(node.text or "")
        if kind == "blob":
            blob = self._blob_parser
            return lambda node: blob(node.text or "")
        raise _Unsupported(f"{shape.name} ({kind})")

    def _compile_structure(self, shape: Any, done: dict[str, Handler | None]) -> Handler:
        name = shape.name
        if name in done:  # a shape that contains itself: looked up when called
            return lambda node: done[name](node)  # type: ignore[misc]
        if shape.metadata.get("exception") or shape.is_tagged_union:
            raise _Unsupported(name)
        done[name] = None
        members: dict[str, tuple[str, Handler]] = {}
        for member_name, member in shape.members.items():
            ser = member.serialization
            if ser.get("location") or ser.get("eventheader") or ser.get("xmlAttribute"):
                raise _Unsupported(f"{name}.{member_name}")
            key = self._member_key_name(member, member_name)
            if key in members:
                raise _Unsupported(f"{name}: two members named {key}")
            members[key] = (member_name, self._compile(member, done))
        by_tag: dict[str, tuple[str, Handler] | None] = {}  # tags with their namespace

        def handle(node: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for child in node:
                tag = child.tag
                try:
                    found = by_tag[tag]
                except KeyError:
                    found = by_tag[tag] = members.get(tag.rpartition("}")[2])
                if found is not None:
                    if found[0] in out:  # botocore reads a repeated element as a list
                        raise _Unsupported(f"{name}: {tag} repeated")
                    out[found[0]] = found[1](child)
            return out

        done[name] = handle
        return handle


class FastParserFactory(ResponseParserFactory):
    """botocore's factory, with FastEC2Parser for the EC2 protocol."""

    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "ec2":
            return FastEC2Parser(**self._defaults)
        return super().create_parser(protocol_name)
