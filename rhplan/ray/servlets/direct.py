"""The direct route's Ray side: this process joins the cluster's Ray as a driver and
finds a servlet's named actor, trusting only the one rhplan started (its actor id, as
recorded in the state).
"""
from __future__ import annotations

import os
import socket
import sys
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray.head import private_env
from rhplan.ray.servlets.gateway import not_started_by_rhplan

NAMESPACE = "rhplan"
CONNECT_TIMEOUT = 5.0


def connect_ray(cluster: Any) -> str:
    """Join the cluster's Ray as a driver (once per process and cluster)."""
    address = cluster.attributes["ray_address"]
    # Ray reads these when it is imported: set them first (a driver that sees another
    # value retries the host's other address for minutes)
    wanted = private_env(cluster.private, driver=True)
    if "ray" in sys.modules and any(os.environ.get(k) != v for k, v in wanted.items()
                                    if k != "RAY_AUTH_TOKEN_PATH"):
        raise RhplanError(
            "ray was imported before rhplan.servlet() could configure it; call "
            "rhplan.servlet() before importing ray, or start Python with "
            + " ".join(f"{k}={v}" for k, v in wanted.items()))
    os.environ.update(wanted)
    host, _, port = address.rpartition(":")
    try:  # ray.init retries a dead address for ever: check the GCS answers first
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError:
        raise RhplanError(f"Ray at {address} is not answering; run rhplan plan to see whether "
                          "the cluster needs starting") from None
    import ray
    if ray.is_initialized():
        ctx = ray.get_runtime_context()
        if getattr(ctx, "gcs_address", None) == address:
            return address
        ray.shutdown()
    try:
        ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR",
                 log_to_driver=False, configure_logging=False)
    except Exception as exc:
        raise RhplanError(f"cannot reach Ray at {address} ({type(exc).__name__}: {exc}); "
                          "run rhplan plan to see whether the cluster needs starting") from None
    return address


def is_recorded(actor: Any, identity: dict[str, Any]) -> bool:
    return bool(identity.get("actor_id")) and actor._actor_id.hex() == identity["actor_id"]


def check_actor(name: str, actor: Any, identity: dict[str, Any] | None) -> None:
    """Refuse an actor under the servlet's name that is not the one rhplan started: its
    answers would be unpickled here (the machine with the cloud keys). Only its id,
    which Ray gives and nobody picks, is looked at: nothing is asked of it."""
    if identity is None:
        raise RhplanError(NO_IDENTITY.format(name=name))
    if not is_recorded(actor, identity):
        raise RhplanError(str(not_started_by_rhplan(
            name, f"the actor answering to {NAMESPACE}/{name} ({actor._actor_id.hex()})")))


NO_IDENTITY = ("servlet {name!r} has no identity recorded in the state (started by an "
               "older rhplan), so nothing can tell it from an impostor; run rhplan apply "
               "to restart it")


def identity_of(env: Any) -> dict[str, Any] | None:
    """Who the env's servlet is, as recorded when it started (None: an older rhplan's)."""
    return (getattr(env, "private", None) or {}).get("servlet_identity") or None


def find_actor(name: str) -> Any:
    import ray
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        raise RhplanError(f"servlet {name!r} is not running; rhplan plan shows it as drift "
                          "and rhplan apply starts it") from None

