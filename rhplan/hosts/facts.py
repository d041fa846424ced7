"""Refresh in one round trip per host: everything a plan needs to know about a host
(rhplan's folder, its Ray node, every env's installed packages, whether each servlet
process lives) is read by one script, run by the host's Ray Python.

Resource reads take their answers from here (ctx.cache), so a no-change plan costs
one command per host however many envs the cluster has.
"""
from __future__ import annotations

import json
from typing import Any

from rhplan import hostside
from rhplan.hosts.connection import Connection
from rhplan.hosts.envs import PTH_CONSTANTS, Installed, installed_from

# Runs on the host (hostside/facts.py), after the helpers it calls
_FACTS = hostside.script("facts", uses=("ray_host", "env_packages"), before=PTH_CONSTANTS)


def gather(conn: Connection, python: str, ask: dict[str, Any]) -> dict[str, Any]:
    return dict(hostside.run_json(conn, python, _FACTS, json.dumps(ask), timeout=120,
                                  what=f"reading {conn.host}"))


def installed(dists: dict[str, list[Any]] | None) -> dict[str, Installed] | None:
    return None if dists is None else installed_from(dists)


def markers(known: dict[str, Any], address: str) -> dict[str, str]:
    """The marker values of an env's interpreter, as read with its host ({} if unread)."""
    return (known.get("markers") or {}).get(address) or {}
