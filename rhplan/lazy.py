"""A module imported when first used, for imports only some commands need.

`rhplan validate` and `plan` load the resource types, whose apply paths need
paramiko (via the servlet manager) and cryptography (cluster TLS): importing those
up front cost ~0.45 s of every start. Attribute reads go to the real module each
time (so monkeypatching the module still works), and importlib's per-module lock
makes a first use from several apply threads at once safe.
"""
from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    return LazyModule(name)
