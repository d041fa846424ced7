"""Reach an env's servlet from Python: `rhplan.servlet("np_env", chdir="infra")`.

The env is found through the configuration's state file; the calling process joins
the cluster's Ray as a driver (with rhplan's token) and talks to the named actor.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray_head import private_env

NAMESPACE = "rhplan"
CALL_TIMEOUT = None  # user calls may run long; only start-up waits are bounded
CONNECT_TIMEOUT = 5.0


class RemoteError(RhplanError):
    """An exception raised inside a servlet that could not be sent back as itself."""


class ServletHandle:
    def __init__(self, name: str, actor: Any, address: str):
        self.name = name
        self.address = address
        self._actor = actor
        self._pickled: dict[int, tuple[Any, bytes]] = {}

    def __repr__(self) -> str:
        return f"<servlet {self.name!r} at {self.address}>"

    def _get(self, ref: Any, timeout: float | None = CALL_TIMEOUT) -> Any:
        import ray
        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.RayTaskError as exc:
            # the servlet's own exception (e.g. KeyError from get), not Ray's wrapper
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                cause.add_note(f"(raised in servlet {self.name!r})")
                raise cause from None
            raise

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run fn(*args, **kwargs) in the env and return its result. fn is a callable
        (sent by value) or "module:qualname" importable in the env."""
        from ray import cloudpickle
        payload = cloudpickle.dumps((_by_value(fn), args, kwargs))
        result = self._get(self._actor.call.remote(payload))
        if result[0] == "ok":
            try:
                return cloudpickle.loads(result[1])
            except ModuleNotFoundError as exc:
                raise RhplanError(
                    f"servlet {self.name!r} returned an object of module {exc.name!r}, which is "
                    f"not installed in this Python; install {exc.name} here, or return plain "
                    "Python values (e.g. int(x), x.tolist())") from None
        _, blob, remote_tb, summary = result
        exc: BaseException | None = None
        if blob is not None:
            try:
                exc = cloudpickle.loads(blob)
            except Exception:
                exc = None
        if not isinstance(exc, BaseException):
            exc = RemoteError(f"servlet {self.name!r}: {summary}")
        exc.add_note(f"Remote traceback (servlet {self.name!r}):\n{remote_tb}")
        raise exc

    def run(self, cmd: str | list[str], timeout: float | None = None) -> dict[str, Any]:
        """Run a command in the env (a string goes to bash; a list is an argv)."""
        return self._get(self._actor.run.remote(cmd, timeout))

    def put(self, key: str, obj: Any) -> None:
        self._get(self._actor.put.remote(key, obj))

    def get(self, key: str) -> Any:
        return self._get(self._actor.get.remote(key))

    def keys(self) -> list[str]:
        return self._get(self._actor.keys.remote())

    def delete(self, key: str) -> bool:
        return self._get(self._actor.delete.remote(key))

    def status(self) -> dict[str, Any]:
        return self._get(self._actor.status.remote(), timeout=60)


def _by_value(fn: Any) -> Any:
    """Functions from the caller's own modules travel by value (the env does not have
    those modules); functions from installed packages travel by reference."""
    if isinstance(fn, str) or not callable(fn):
        return fn
    module = getattr(fn, "__module__", None)
    if module and module not in ("__main__", "builtins") and module in sys.modules:
        from ray import cloudpickle
        mod = sys.modules[module]
        path = getattr(mod, "__file__", "") or ""
        if "site-packages" not in path and "/lib/python" not in path:
            try:
                cloudpickle.register_pickle_by_value(mod)
            except ValueError:
                pass
    return fn


def find_env(name: str, chdir: str | os.PathLike[str] = ".") -> tuple[Any, Any]:
    """The env's and its cluster's recorded state."""
    from rhplan.config.load import load_config
    from rhplan.workspace import backend_for
    state = backend_for(load_config(Path(chdir))).read()
    env = state.resources.get(name if name.startswith("env.") else f"env.{name}")
    if env is None:
        env = next((r for r in state.resources.values()
                    if r.type == "env" and r.attributes.get("name") == name), None)
    if env is None:
        have = sorted(a for a in state.resources if a.startswith("env."))
        raise RhplanError(f"no env {name!r} in the state of {chdir}; applied envs: "
                          f"{', '.join(have) or 'none (run rhplan apply)'}")
    cluster = state.resources.get(env.attributes["cluster"])
    if cluster is None or not cluster.attributes.get("ray_address"):
        raise RhplanError(f"{env.address}: its cluster has no Ray head recorded; run rhplan apply")
    return env, cluster


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


def servlet(name: str, chdir: str | os.PathLike[str] = ".") -> ServletHandle:
    """A handle to env NAME's servlet, found through the state in chdir."""
    env, cluster = find_env(name, chdir)
    address = connect_ray(cluster)
    import ray
    try:
        actor = ray.get_actor(env.attributes["name"], namespace=NAMESPACE)
    except ValueError:
        raise RhplanError(f"servlet {env.attributes['name']!r} is not running; rhplan plan "
                          "shows it as drift and rhplan apply starts it") from None
    return ServletHandle(env.attributes["name"], actor, address)


__all__ = ["RemoteError", "ServletHandle", "servlet", "find_env"]
