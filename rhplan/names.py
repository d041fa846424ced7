"""The rule for names: block labels and env names become state addresses, folder names
on hosts and Ray actor names, so Terraform's identifier rule keeps "../x", "/abs",
"a;b" and line breaks out of all three."""
from __future__ import annotations

import re

NAME_RULE = "start with a letter or underscore and use only letters, digits, '_' and '-'"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def valid_name(name: object) -> bool:
    """True for a name that may become a folder name, a Ray actor name and an address."""
    return isinstance(name, str) and len(name) <= 128 and _NAME.fullmatch(name) is not None
