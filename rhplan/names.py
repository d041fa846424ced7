"""The rule for names: block labels and env names become state addresses, folder names
on hosts and Ray actor names, so Terraform's identifier rule keeps "../x", "/abs",
"a;b" and line breaks out of all three.

Addresses of repeated blocks are Terraform's: `env.x[0]` (count) and `env.x["a"]`
(for_each). Such an instance's name on a host (its env folder, its servlet's actor
name, its cluster's name) cannot be the address itself, so it is `instance_name`:
the block name, a readable slug of the key and a short hash of the address, which
stays unique and valid as a path whatever the key holds.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

NAME_RULE = "start with a letter or underscore and use only letters, digits, '_' and '-'"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# TYPE.NAME, then an optional [0] or ["key"] (the key in JSON's string syntax); inside
# a module call the type carries the module's address: module.m.env (config/modules.py)
# (a module call with count / for_each carries its instance's key: module.m["a"].env)
_KEY = r'(?:\[(?:[0-9]+|"(?:[^"\\]|\\.)*")\])'
_ADDRESS = re.compile(r'((?:module\.[A-Za-z_][A-Za-z0-9_-]*' + _KEY + r'?\.)*'
                      r'[A-Za-z_][A-Za-z0-9_]*)'
                      r'\.([A-Za-z_][A-Za-z0-9_-]*)'
                      r'(?:\[(?:([0-9]+)|("(?:[^"\\]|\\.)*"))\])?')


_SINGLE_QUOTED = re.compile(r"\['([^']*)'\]")


def valid_name(name: object) -> bool:
    """True for a name that may become a folder name, a Ray actor name and an address."""
    return isinstance(name, str) and len(name) <= 128 and _NAME.fullmatch(name) is not None


def instance_address(type_: str, name: str, key: int | str | None) -> str:
    """env.x (no repetition), env.x[0] (count), env.x["a"] (for_each)."""
    if key is None:
        return f"{type_}.{name}"
    if isinstance(key, int):
        return f"{type_}.{name}[{key}]"
    return f"{type_}.{name}[{json.dumps(key, ensure_ascii=False)}]"


def parse_address(text: str) -> tuple[str, str, int | str | None] | None:
    """(type, name, key) of an address as written on a command line or in a state, or
    None. `env.x['a']` is taken too (a shell quoting habit), meaning env.x["a"]."""
    text = text.strip()
    if "['" in text:  # each ['key'] (a module instance's too) in JSON's spelling
        text = _SINGLE_QUOTED.sub(lambda k: f"[{json.dumps(k.group(1))}]", text)
        if text.endswith("']") and "['" in text:  # a last key holding a quote: env.x['it's']
            head, _, rest = text.partition("['")
            text = f"{head}[{json.dumps(rest[:-2])}]"
    m = _ADDRESS.fullmatch(text)
    if m is None:
        return None
    type_, name, index, key = m.groups()
    if index is not None:
        return type_, name, int(index)
    if key is not None:
        try:
            return type_, name, json.loads(key)
        except ValueError:
            return None
    return type_, name, None


def normalize_address(text: str) -> str:
    """The address in its canonical spelling (env.x['a'] -> env.x["a"]); as given when
    it is not one."""
    parts = parse_address(text)
    return instance_address(*parts) if parts else text


_MODULE = re.compile(r"module\.[A-Za-z_][A-Za-z0-9_-]*" + _KEY + r"?(?:\.module\."
                     r"[A-Za-z_][A-Za-z0-9_-]*" + _KEY + r"?)*")


def is_module_address(text: str) -> bool:
    """module.m, module.m["a"] or module.m.module.n: a module call (or one instance of
    it), standing for all that is inside it."""
    return _MODULE.fullmatch(text) is not None


def block_address(address: str) -> str:
    """env.x["a"] -> env.x: the block an instance comes from (module.m["k"].env.x keeps
    its module instance's key)."""
    if address[-1:] != "]":
        return address
    i = address.find("[")
    if address.startswith("module.") and "]." in address:
        parts = parse_address(address)
        return address[:i] if parts is None else f"{parts[0]}.{parts[1]}"
    return address[:i]


def instance_name(name: str, key: Any) -> str:
    """The on-host name of instance `key` of block `name`: x["gpu a"] -> x-gpu-a-3f2c9a1b."""
    address_key = json.dumps(key, ensure_ascii=False)
    tag = hashlib.sha256(f"{name}[{address_key}]".encode()).hexdigest()[:8]
    slug = _UNSAFE.sub("-", str(key)).strip("-")[:40]
    return f"{name[:72]}-{slug}-{tag}" if slug else f"{name[:72]}-{tag}"


def address_order(address: str) -> tuple[str, int, int | str]:
    """Sort key: by block, then env.x[2] before env.x[10] (numbers by value)."""
    parts = parse_address(address)
    if parts is None or parts[2] is None:
        return (block_address(address), 0, 0)
    key = parts[2]
    return (block_address(address), 1 if isinstance(key, int) else 2, key)
