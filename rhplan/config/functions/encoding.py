"""Encoding and hashing: JSON, YAML (imported on first use), base64, digests, uuidv5."""
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from rhplan.config.functions.args import (
    MAX_VALUE_NODES,
    a_string,
    as_str,
    plain,
    short,
)

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                 "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _fn_jsonencode(scope: Any, v: Any) -> str:
    text = json.dumps(plain(v), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)


def _fn_jsondecode(scope: Any, text: Any) -> Any:
    s = as_str(text, "the argument")
    try:
        return json.loads(s, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the string is not valid JSON: {exc.msg} (line {exc.lineno}, "
                         f"column {exc.colno})") from None
    except RecursionError:
        raise ValueError("the JSON nests too deeply") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number Terraform or rhplan can use")


def _fn_yamlencode(scope: Any, v: Any) -> str:
    import yaml  # imported here: loading PyYAML costs start-up time every command pays

    return yaml.dump(plain(v), Dumper=_yaml_dumper(yaml), sort_keys=True,
                     default_flow_style=False, allow_unicode=True, width=2 ** 31)


def _yaml_dumper(yaml: Any) -> Any:
    class Dumper(yaml.SafeDumper):
        """Strings as go-cty-yaml writes them: double-quoted, or a literal block when
        they span lines."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    Dumper.add_representer(str, lambda d, s: d.represent_scalar(
        "tag:yaml.org,2002:str", s, style="|" if "\n" in s else '"'))
    return Dumper


def _fn_yamldecode(scope: Any, text: Any) -> Any:
    import yaml  # imported here: see yamlencode

    s = as_str(text, "the argument")
    try:
        value = yaml.load(s, Loader=_yaml_loader(yaml))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"the string is not valid YAML: {problem}{where}") from None
    except RecursionError:
        raise ValueError("the YAML nests too deeply") from None
    return _yaml_value(value, 0)


_YAML_LOADER: list[Any] = []  # built on first use


def _yaml_loader(yaml: Any) -> Any:
    if _YAML_LOADER:
        return _YAML_LOADER[0]

    class Loader(yaml.SafeLoader):
        """go-cty-yaml's reading: y/n are bools too; timestamps stay strings (Terraform
        has no time type); nothing but plain data is built."""

        bool_values = {**yaml.SafeLoader.bool_values, "y": True, "n": False}

    Loader.add_constructor("tag:yaml.org,2002:timestamp",
                           lambda loader, node: loader.construct_scalar(node))
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"),
                                 list("yYnN"))
    _YAML_LOADER.append(Loader)
    return Loader


def _yaml_value(v: Any, depth: int, budget: list[int] | None = None) -> Any:
    """PyYAML's result as plain values, within a node budget: aliases let a few lines
    name billions of nodes (the "billion laughs"), which copying would build."""
    if budget is None:
        budget = [MAX_VALUE_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"the YAML expands to more than {MAX_VALUE_NODES} values (through "
                         "aliases?); simplify it")
    if depth > 200:  # aliases may build deep or cyclic values
        raise ValueError("the YAML nests too deeply (or refers to itself through an alias)")
    if isinstance(v, dict):
        return {as_str(k, "a key") if k is not None else "null": _yaml_value(x, depth + 1, budget)
                for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_yaml_value(x, depth + 1, budget) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{v} is not a number Terraform or rhplan can use")
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def _fn_base64encode(scope: Any, text: Any) -> str:
    return base64.b64encode(as_str(text).encode()).decode()


def _fn_base64decode(scope: Any, text: Any) -> str:
    s = as_str(text)
    try:
        data = base64.b64decode(s, validate=True)
    except ValueError:
        raise ValueError(f"failed to decode base64 data ({a_string(s)})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the result of decoding the provided string is not valid UTF-8"
                         ) from None


def _hasher(name: str) -> Callable[..., str]:
    def fn(scope: Any, text: Any) -> str:
        return hashlib.new(name, as_str(text).encode()).hexdigest()
    return fn


def _fn_base64sha256(scope: Any, text: Any) -> str:
    return base64.b64encode(hashlib.sha256(as_str(text).encode()).digest()).decode()


def _fn_urlencode(scope: Any, text: Any) -> str:
    return quote(as_str(text), safe="-._~")



def _fn_uuidv5(scope: Any, namespace: Any, name: Any) -> str:
    import uuid  # only this function needs it

    ns = as_str(namespace, "the namespace")
    known = {"dns": uuid.NAMESPACE_DNS, "url": uuid.NAMESPACE_URL, "oid": uuid.NAMESPACE_OID,
             "x500": uuid.NAMESPACE_X500}
    try:
        space = known[ns] if ns in known else uuid.UUID(ns)
    except ValueError:
        raise ValueError(f"uuidv5 namespace must be dns, url, oid, x500 or a UUID, not "
                         f"{short(ns)}") from None
    return str(uuid.uuid5(space, as_str(name, "the name")))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "jsonencode": _fn_jsonencode,
    "jsondecode": _fn_jsondecode,
    "yamlencode": _fn_yamlencode,
    "yamldecode": _fn_yamldecode,
    "base64encode": _fn_base64encode,
    "base64decode": _fn_base64decode,
    "base64sha256": _fn_base64sha256,
    "urlencode": _fn_urlencode,
    "md5": _hasher("md5"),
    "sha1": _hasher("sha1"),
    "sha256": _hasher("sha256"),
    "sha512": _hasher("sha512"),
    "base64sha512": lambda scope, text: base64.b64encode(
        hashlib.sha512(as_str(text).encode()).digest()).decode(),
    "uuidv5": _fn_uuidv5,
}
