"""How the caller pickles what it sends a servlet: plain pickle when it will do (no Ray
import needed here), Ray's cloudpickle for functions, lambdas and what lives in
__main__; functions of the caller's own modules travel by value (the env does not have
those modules), those of installed packages by reference; and a function sent again is
pickled again only when something it captures changed.
"""
from __future__ import annotations

import pickle
import sys
import threading
import weakref
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray.servlets.servlet_wire import reuse_key


def cloudpickle_for(cluster_ray: str | None) -> Any:
    """Ray's cloudpickle, which sends functions by value; a caller without Ray is told
    what it can do instead (everything else needs no Ray here)."""
    try:
        from ray import cloudpickle
    except ImportError:
        raise RhplanError(
            "sending a function (or an object of __main__) by value needs Ray's cloudpickle "
            f"and this Python has no Ray (the cluster runs Ray {cluster_ray or '?'}); call it "
            "by name instead (\"module:function\", importable in the env), or install Ray "
            f"here (pip install 'ray=={cluster_ray or 'VERSION'}')") from None
    return cloudpickle


def dumps(obj: Any, by_value: bool = False, cluster_ray: str | None = None) -> bytes:
    """Plain pickle when it will do (no Ray import needed here); cloudpickle for
    functions, lambdas and what lives in __main__ (which the env does not have)."""
    if not by_value:
        try:
            blob = pickle.dumps(obj, protocol=5)
            if b"__main__" not in blob:
                return blob
        except (pickle.PicklingError, AttributeError, TypeError):
            pass
    return cloudpickle_for(cluster_ray).dumps(obj, protocol=5)


# a function -> (servlet_wire.reuse_key, its pickle): sent again while the key holds
_fn_pickles: weakref.WeakKeyDictionary[Any, tuple[Any, bytes]] = weakref.WeakKeyDictionary()
_fn_lock = threading.Lock()


def function_pickle(fn: Any, cluster_ray: str | None) -> bytes:
    """fn cloudpickled, once while nothing it captures changes: a function that holds
    only immutable values and things that travel by name, and whose code rebinds no
    global or enclosing variable, is pickled again only when one of them changes
    (servlet_wire.reuse_key, checked per call: microseconds, where pickling took ~50 µs).
    Anything else (a closure over a list, a global dict...) is pickled every call."""
    cloudpickle = cloudpickle_for(cluster_ray)
    from ray.cloudpickle import cloudpickle as cp

    try:
        with _fn_lock:
            hit = _fn_pickles.get(fn)
    except TypeError:  # not weakly referenceable (a builtin, a partial...)
        return bytes(cloudpickle.dumps(fn, protocol=5))
    try:
        key = reuse_key(fn, cp)
        if key is not None:  # by name, or by value once its module is registered so
            key = (cp._should_pickle_by_reference(fn), key)
    except Exception:  # noqa: BLE001 - a cloudpickle without what reuse_key reads
        key = None
    if hit is not None and key is not None and hit[0] == key:
        return hit[1]
    blob = bytes(cloudpickle.dumps(fn, protocol=5))
    if key is not None:
        with _fn_lock:
            _fn_pickles[fn] = (key, blob)
    return blob


def by_value(fn: Any, cluster_ray: str | None = None) -> Any:
    """Functions from the caller's own modules travel by value (the env does not have
    those modules); functions from installed packages travel by reference."""
    if isinstance(fn, str) or not callable(fn):
        return fn
    module = getattr(fn, "__module__", None)
    if module and module not in ("__main__", "builtins") and module in sys.modules:
        cloudpickle = cloudpickle_for(cluster_ray)
        mod = sys.modules[module]
        path = getattr(mod, "__file__", "") or ""
        if "site-packages" not in path and "/lib/python" not in path:
            try:
                cloudpickle.register_pickle_by_value(mod)
            except ValueError:
                pass
    return fn

