"""Canary secret values: every test that gives rhplan a secret takes its value from here.

Each value is random and registered for this pytest process, so a scan at the end
of the session can look for every one of them in every artifact the run produced
(state files, saved plans, logs, captured output); any hit is a leak.
"""
from __future__ import annotations

import uuid

_ISSUED: list[str] = []


def canary_secret(tag: str = "s", suffix: str = "") -> str:
    """A fresh secret value, unique to this run; `suffix` may add hostile characters."""
    value = f"canary-{tag}-{uuid.uuid4().hex}{suffix}"
    _ISSUED.append(value)
    return value


def issued() -> list[str]:
    """Every canary value handed out so far in this process."""
    return list(_ISSUED)
