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
    from rhplan.ray.servlets.handle import ServletHandle
    from rhplan.ray.servlets.remote_object import RemoteInstance


def servlet(name: str | None = None, chdir: str = ".", key: str | int | None = None,
            cluster: str | None = None) -> ServletHandle:
    """A handle to env NAME's servlet, found through the state of the configuration in chdir.

    An instance of a repeated env is `servlet('x["a"]')` / `servlet("x[0]")`, or
    `servlet("x", key="a")` / `servlet("x", key=0)`. Without a name, the default env of
    `cluster` (its default_env, else its only env), or of the workspace's only cluster."""
    from rhplan.env_lookup import servlet_target
    from rhplan.names import instance_address, normalize_address
    from rhplan.ray.servlets.client import servlet as _servlet  # Ray is imported only when used
    if name is None:
        if key is not None:
            raise RhplanError("servlet(key=...) needs the env's name: servlet(NAME, key=...)")
        return _servlet(servlet_target(None, chdir, cluster))
    if cluster is not None:
        raise RhplanError(f"servlet({name!r}, cluster={cluster!r}): give the env or the "
                          "cluster, not both (an env has one cluster)")
    if key is not None:
        name = instance_address("env", name.removeprefix("env."), key)
    elif "[" in name:
        name = normalize_address(name if name.startswith(("env.", "module.")) else f"env.{name}")
    return _servlet(servlet_target(name, chdir))


_LAZY = {"ServletHandle": "rhplan.ray.servlets.handle",
         "RemoteError": "rhplan.ray.servlets.remote_errors",
         "RemoteInstance": "rhplan.ray.servlets.remote_object"}


def __getattr__(name: str) -> Any:
    """The servlet classes, imported only when asked for (they are not needed to plan)."""
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = [
    "ConfigError", "CycleError", "ProviderError", "RemoteError", "RemoteInstance", "RhplanError",
    "ServletHandle",
    "StalePlanError", "StateError", "StateLockedError", "servlet",
]
