"""Values converted to schema types (string, number, bool, list(T), map(T), ref(TYPE),
list(req)), or a TypeError saying what was found instead."""
from __future__ import annotations

import re
from typing import Any

from rhplan.config.values import (
    UNKNOWN,
    InstanceMap,
    Instances,
    ResourceValue,
    as_bool,
    as_number,
    instances_message,
    type_name,
)

# the module path an address inside a module call starts with (module.m.module.n.)
_MODULE_PREFIX = re.compile(r'^(?:module\.[A-Za-z_][A-Za-z0-9_-]*'
                            r'(?:\[(?:[0-9]+|"(?:[^"\\]|\\.)*")\])?\.)+')  # module.m["a"].


def coerce(value: Any, t: str) -> Any:
    """Convert value to schema type t, or raise TypeError saying what was found."""
    if value is UNKNOWN or value is None:
        return value
    if t == "any":
        if isinstance(value, ResourceValue):
            raise TypeError(f"found the whole resource {value.address}")
        return value
    if t == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
    elif t == "number":
        n = as_number(value)  # never inf or nan: "1e999" is not a number here
        if n is not None:
            return n
    elif t == "bool":
        b = as_bool(value)
        if b is not None:
            return b
    elif t.startswith("list(") and isinstance(value, list):
        inner = t[5:-1]
        return [coerce(v, inner) for v in value]
    elif t.startswith("map(") and isinstance(value, dict):
        inner = t[4:-1]
        return {str(k): coerce(v, inner) for k, v in value.items()}
    elif t.startswith("ref("):
        want = t[4:-1]
        if isinstance(value, ResourceValue) and _MODULE_PREFIX.sub(
                "", value.address).startswith(want + "."):  # module.m.cluster.c is a cluster
            return value.address
        if isinstance(value, (Instances, InstanceMap)):
            raise TypeError(instances_message(value).replace("its attributes must be read",
                                                             "it must be referred to"))
        raise TypeError(f"expected a reference to a {want} (like {want}.NAME), found "
                        f"{describe(value)}")
    raise TypeError(f"expected {t}, found {describe(value)}")


def describe(value: Any) -> str:
    if isinstance(value, str):
        return f"string {value!r}"
    return type_name(value)



def unknown_of(t: str) -> Any:
    """validate: an attribute that is unknown as a whole (a variable without a value),
    shaped as its type so resource types check what they can: a list of one unknown
    element, an empty map."""
    if t.startswith(("list(", "set(")):
        return [UNKNOWN]
    if t.startswith(("map(", "object(")):
        return {}
    return UNKNOWN


def coerce_attr(value: Any, t: str) -> Any:
    if t == "list(req)":
        if not isinstance(value, list):
            raise TypeError(f"expected a list of packages, found {describe(value)}")
        out = []
        for v in value:
            if isinstance(v, ResourceValue):
                if not v.address.startswith("package."):
                    raise TypeError(f"{v.address} is not a package")
                out.append(v.address)
            elif isinstance(v, str) or v is UNKNOWN:
                out.append(v)
            else:
                raise TypeError(f"a package must be a string or package.NAME, found {describe(v)}")
        return out
    if t.startswith("list(ref("):
        if not isinstance(value, list):
            raise TypeError(f"expected a list of references, found {describe(value)}")
        return [coerce(v, t[5:-1]) for v in value]
    return coerce(value, t)


