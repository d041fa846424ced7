"""rhplan: a Terraform-style planner for Runhouse-style compute.

The public Python API is small: `rhplan.servlet(name, chdir=...)` returns a handle to
an applied env's servlet (call, run, put, get, keys, delete, status, and instance /
get_instance for objects that live in the servlet: RemoteInstance).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rhplan.errors import (
    ConfigError,
    CycleError,
    ProviderError,
    RhplanError,
    StalePlanError,
    StateError,
    StateLockedError,
)

if TYPE_CHECKING:
    from rhplan.servlets.client import RemoteInstance, ServletHandle


def servlet(name: str, chdir: str = ".") -> ServletHandle:
    """A handle to env NAME's servlet, found through the state of the configuration in chdir."""
    from rhplan.servlets.client import servlet as _servlet  # Ray is imported only when used
    return _servlet(name, chdir)


def __getattr__(name: str) -> Any:
    if name in ("ServletHandle", "RemoteError", "RemoteInstance"):
        from rhplan.servlets import client
        return getattr(client, name)
    raise AttributeError(name)


__all__ = [
    "ConfigError", "CycleError", "ProviderError", "RemoteError", "RemoteInstance", "RhplanError",
    "ServletHandle",
    "StalePlanError", "StateError", "StateLockedError", "servlet",
]
