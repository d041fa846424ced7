"""Reach an env's servlet from Python: `rhplan.servlet("np_env", chdir="infra")`.

The env is found through the configuration's state file. Two routes reach it:

- ssh (the default for remote clusters): through the cluster's gateway on its head,
  over the provider's SSH connection (transport.py, gateway.py); nothing but SSH is
  needed, and the caller's Ray, if any, need not match the cluster's.
- direct (a fast path): this process joins the cluster's Ray as a driver and calls
  the named actor. Taken for local clusters, and for remote ones only when the head's
  Ray answers within DIRECT_PROBE seconds, this Python's Ray is the cluster's version
  and the driver token is here; otherwise the ssh route is taken.

RHPLAN_SERVLET_ROUTE=ssh|direct forces one route.

Output: what a call prints (print, logging to stdout/stderr) and a run's output appear
on this process's stdout/stderr as they happen, on both routes. The servlet writes
them to a per-call file that someone on its host tails: the gateway on the ssh route;
on the direct route this process itself when the servlet sees this machine's files
(local clusters; a head that is this machine). A direct-route servlet on another host
has its streamed calls and runs sent through the gateway instead, since only something
on that host can read the file. `handle.with_streaming(False)` keeps them on Ray, and
their output is not shown.
"""
from __future__ import annotations

import atexit
import os
import pickle
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray_head import private_env
from rhplan.servlets.gateway import POLL, not_started_by_rhplan, servlet_key
from rhplan.servlets.gateway import Gateway as _HeadGateway
from rhplan.servlets.remote_errors import remote_exception
from rhplan.servlets.servlet_wire import INSTANCE_METHOD, NEW_INSTANCE, reuse_key
from rhplan.servlets.transport import (
    Gateway,
    GatewayLost,
    RemoteError,
    gateway_for,
    ssh_opener,
    write_output,
)

NAMESPACE = "rhplan"
CALL_TIMEOUT = None  # user calls may run long; only start-up waits are bounded
CONNECT_TIMEOUT = 5.0
DIRECT_PROBE = 1.5  # an unreachable head's Ray is given up on within 2 s
STATUS_TIMEOUT = 60.0
ROUTE_ENV = "RHPLAN_SERVLET_ROUTE"


class ServletHandle:
    """A servlet, reached directly through Ray (actor) or through the cluster's gateway."""

    def __init__(self, name: str, actor: Any, address: str, gateway: Gateway | None = None,
                 timeout: float | None = CALL_TIMEOUT, stream: bool = True,
                 via_gateway: Callable[[], Gateway] | None = None,
                 identity: dict[str, Any] | None = None,
                 reread: Callable[[], dict[str, Any] | None] | None = None):
        self.name = name
        self.address = address
        self._actor = actor
        self._gateway = gateway
        self._timeout = timeout
        self._stream = stream
        # direct route only: how to reach the gateway, for output only the head can read
        self._via_gateway = via_gateway
        # who the servlet is (recorded in the state when it started): only it is asked.
        # reread reads it from the state again, for a servlet restarted by an apply
        self._identity = identity
        self._reread = reread

    def _copy(self, **changes: Any) -> ServletHandle:
        values = {"timeout": self._timeout, "stream": self._stream,
                  "via_gateway": self._via_gateway, "identity": self._identity,
                  "reread": self._reread, **changes}
        return ServletHandle(self.name, self._actor, self.address, self._gateway, **values)

    def _find(self) -> Any:
        """The actor by name again (it was replaced), if it is the one rhplan started:
        the state is read again first when the one it named is not it (an apply)."""
        actor = _find_actor(self.name)
        if self._identity is not None and not _is_recorded(actor, self._identity) and (
                self._reread is not None):
            self._identity = self._reread()
        _check_actor(self.name, actor, self._identity)
        return actor

    def _request(self, gw: Gateway, op: str, args: tuple[Any, ...],
                 timeout: float | None) -> Any:
        """A request through the gateway, naming the servlet with its recorded identity
        (the gateway refuses any other); after a refusal, once with the identity the state
        holds now (an apply restarted the servlet)."""
        for attempt in (0, 1):
            try:
                return gw.request(op, servlet_key(self.name, self._identity), args,
                                  timeout=timeout)
            except PermissionError as exc:
                if "is not the servlet rhplan started" not in str(exc):
                    raise
                fresh = self._reread() if self._reread is not None and not attempt else None
                if fresh is None or fresh == self._identity:
                    raise RhplanError(str(exc).split("\n")[0]) from None
                self._identity = fresh
        raise AssertionError("unreachable")

    def with_timeout(self, seconds: float | None) -> ServletHandle:
        """The same servlet, with every request bounded: one that has no answer within
        seconds raises TimeoutError (what it started on the cluster may go on). Without
        one, a call waits as long as it runs; only connecting is always bounded."""
        return self._copy(timeout=seconds)

    def with_streaming(self, on: bool) -> ServletHandle:
        """The same servlet, with a call's prints and a run's output shown here as they
        happen (on, the default) or not shown at all (off: on the direct route to a
        servlet on another host, calls then stay on Ray instead of the gateway)."""
        return self._copy(stream=on)

    @property
    def route(self) -> str:
        return "direct" if self._gateway is None else "ssh"

    def __repr__(self) -> str:
        return f"<servlet {self.name!r} at {self.address}>"

    def _direct(self, method: str, *args: Any, timeout: float | None = None,
                log: str | None = None) -> Any:
        """Call a method of the actor through Ray (with log, the method's last argument,
        tailed here while it runs). A servlet replaced by an apply makes the held handle
        fail at once: find it by name again, once."""
        import ray
        for attempt in (0, 1):
            try:
                ref = getattr(self._actor, method).remote(*args)
                return _wait(ref, timeout if timeout is not None else self._timeout, log)
            except ray.exceptions.RayTaskError as exc:
                # the servlet's own exception (e.g. KeyError from get), not Ray's wrapper
                cause = getattr(exc, "cause", None)
                if isinstance(cause, BaseException):
                    cause.add_note(f"(raised in servlet {self.name!r})")
                    raise cause from None
                raise
            except ray.exceptions.RayActorError:
                if attempt:
                    raise
                old = self._actor
                self._actor = self._find()
                if self._actor._actor_id == old._actor_id:
                    raise
        raise AssertionError("unreachable")

    def _output_route(self, method: str) -> str:
        """How a streamed method's output reaches this process on the direct route:
        "here" (this process tails the servlet's file), "gateway", or "none"."""
        if not self._stream:
            return "none"
        try:
            getattr(self._actor, method)
        except AttributeError:
            return "none"  # a servlet started by an older rhplan: its output stays there
        if _sees_our_files(self):
            return "here"
        return "gateway" if self._via_gateway is not None else "none"

    def _streamed(self, op: str, method: str, payload: tuple[Any, ...]) -> Any:
        """A call or run on the direct route, its output streamed when it can be."""
        how = self._output_route(method)
        if how == "here":
            log = os.path.join(_output_dir(), f"{uuid.uuid4().hex}.out")
            return self._direct(method, *payload, log, log=log)
        if how == "gateway":
            assert self._via_gateway is not None
            return self._request(self._via_gateway(), op, (*payload, True), self._timeout)
        return self._direct(op, *payload)

    def _ask(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        assert self._gateway is not None
        return self._request(self._gateway, op, args,
                             timeout if timeout is not None else self._timeout)

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run fn(*args, **kwargs) in the env and return its result. fn is a callable
        (sent by value) or "module:qualname" importable in the env. Through the ssh
        route, what it prints appears here as it runs."""
        return self._call_target(fn, args, kwargs)

    def _call_target(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     by_value: bool = False) -> Any:
        """A call of fn, or of a remote-object target (servlet_wire.NEW_INSTANCE...):
        by_value when the target carries a class that must travel by value."""
        if self._gateway is None:
            from ray import cloudpickle
            result = self._streamed("call", "call_streamed",
                                    (cloudpickle.dumps((_by_value(fn), args, kwargs)),))
        else:
            self._check_python(fn)
            result = self._call_via_gateway(fn, args, kwargs, by_value)
        if result[0] == "ok":
            return self._loads(result[1])
        # never the servlet's own pickle of it: see remote_errors.py
        _, blob, remote_tb, summary = result
        type_name, _, message = str(summary).partition(": ")
        raise remote_exception(self.name, blob, type_name, message, remote_tb)

    def _call_via_gateway(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                          by_value: bool = False) -> Any:
        """A function travels pickled apart from its arguments ("call_fn"): pickled once
        here and rebuilt once there while it stays the same (see _function_pickle); by
        name, or to a servlet of an older rhplan, all in one pickle ("call")."""
        assert self._gateway is not None
        theirs = self._gateway.versions.get("ray")
        old = (self._gateway.label, servlet_key(self.name, self._identity))
        if callable(fn) and old not in _no_call_fn:
            blob = _function_pickle(_by_value(fn, theirs), theirs)
            try:
                return self._ask("call_fn", blob, _dumps((args, kwargs), cluster_ray=theirs),
                                 self._stream)
            except ValueError as exc:
                if "unknown request 'call_fn'" not in str(exc):
                    raise
                _no_call_fn.add(old)  # nothing ran there: send it the older way
        return self._ask("call", _dumps((_by_value(fn, theirs), args, kwargs),
                                        by_value=by_value or callable(fn), cluster_ray=theirs),
                         self._stream)

    def _loads(self, blob: bytes) -> Any:
        try:
            return pickle.loads(blob)
        except ModuleNotFoundError as exc:
            raise RhplanError(
                f"servlet {self.name!r} returned an object of module {exc.name!r}, which is "
                f"not installed in this Python; install {exc.name} here, or return plain "
                "Python values (e.g. int(x), x.tolist())") from None

    def _check_python(self, fn: Any) -> None:
        """A function sent by value is bytecode: only the same Python minor runs it."""
        assert self._gateway is not None
        if isinstance(fn, str) or not callable(fn):
            return
        theirs = tuple(self._gateway.versions.get("python", ())[:2])
        if theirs and theirs != tuple(sys.version_info[:2]):
            raise RhplanError(
                f"servlet {self.name!r} runs Python {'.'.join(map(str, theirs))} and this is "
                f"Python {sys.version_info[0]}.{sys.version_info[1]}: a function sent by value "
                "needs the same Python; call one by name (\"module:function\", importable "
                "in the env) or use the cluster's Python version here")

    def run(self, cmd: str | list[str], timeout: float | None = None) -> dict[str, Any]:
        """Run a command in the env (a string goes to bash; a list is an argv). Through
        the ssh route, its output also appears here as it runs."""
        if self._gateway is None:
            return self._streamed("run", "run_streamed", (cmd, timeout))
        return self._ask("run", cmd, timeout, self._stream)

    def put(self, key: str, obj: Any) -> None:
        if self._gateway is None:
            return self._direct("put", key, obj)
        return self._ask("put", key, _dumps(obj, cluster_ray=self._gateway.versions.get("ray")))

    def instance(self, cls: type | str, *args: Any, name: str | None = None,
                 **kwargs: Any) -> RemoteInstance:
        """Make cls(*args, **kwargs) in the servlet and keep it there under name (made up
        from the class's name when None; an object already under that name is replaced),
        as Runhouse's `rh.module(cls)(...).to(cluster)`. cls is a class (sent by value
        when it is the caller's own, by reference when installed) or "module:Class"
        importable in the env. The handle's methods run in the servlet, on that object."""
        if isinstance(cls, str):
            module, _, qualname = cls.partition(":")
            if not module or not qualname:
                raise RhplanError(f"instance({cls!r}): name a class as \"module:Class\" "
                                  "(importable in the env), or pass the class itself")
            label = qualname.rpartition(".")[2]
        elif isinstance(cls, type):
            label = cls.__name__
            _by_value(cls, None if self._gateway is None else self._gateway.versions.get("ray"))
            if self._gateway is not None:
                self._check_python(cls)
        else:
            raise TypeError(f"instance() takes a class or \"module:Class\", not "
                            f"{type(cls).__name__}")
        key = f"{label.lower()}-{uuid.uuid4().hex[:8]}" if name is None else name
        if not isinstance(key, str) or not key:
            raise RhplanError(f"instance(name={name!r}): the name must be a non-empty string")
        made = self._call_target((NEW_INSTANCE, key, cls), args, kwargs,
                                 by_value=not isinstance(cls, str))
        return RemoteInstance(self, made)

    def get_instance(self, name: str) -> RemoteInstance:
        """A handle to the object kept under name (made by instance(), from any process,
        or put()): Runhouse's `cluster.get(name, remote=True)`. KeyError if there is none."""
        if name not in self.keys():
            raise KeyError(f"no object {name!r} in servlet {self.name!r}; s.keys() lists the "
                           "ones it holds")
        return RemoteInstance(self, name)

    def get(self, key: str, remote: bool = False) -> Any:
        """The object kept under key, copied here; with remote=True a handle to it that
        stays in the servlet (get_instance)."""
        if remote:
            return self.get_instance(key)
        if self._gateway is None:
            return self._direct("get", key)
        return self._loads(self._ask("get", key))

    def keys(self) -> list[str]:
        return self._direct("keys") if self._gateway is None else self._ask("keys")

    def delete(self, key: str) -> bool:
        return self._direct("delete", key) if self._gateway is None else self._ask("delete", key)

    def status(self) -> dict[str, Any]:
        if self._gateway is None:
            return self._direct("status", timeout=STATUS_TIMEOUT)
        return self._ask("status", timeout=STATUS_TIMEOUT)


class RemoteInstance:
    """An object living in a servlet (ServletHandle.instance / get_instance). Reading any
    attribute not starting with "_" gives a RemoteMethod: `h.add(2)` runs the object's
    add(2) in the servlet and returns its result; `h.total()` on a plain (non-callable)
    attribute returns its value (with arguments: TypeError). Errors raised there come back
    as a call's do, with the remote traceback. A few names are the handle's own: key (the
    name it is kept under), fetch() (a copy of the object here), delete(), and
    call_method(attr, ...) for a method named like one of them or starting with "_"."""

    def __init__(self, servlet: ServletHandle, key: str):
        self._servlet = servlet
        self.key = key

    def __getattr__(self, attr: str) -> RemoteMethod:
        if attr.startswith("_"):  # pickle, copy, IPython... probe these: stay local
            raise AttributeError(attr)
        return RemoteMethod(self._servlet, self.key, attr)

    def call_method(self, attr: str, *args: Any, **kwargs: Any) -> Any:
        return RemoteMethod(self._servlet, self.key, attr)(*args, **kwargs)

    def fetch(self) -> Any:
        """A copy of the object, unpickled here (its class must be importable here)."""
        return self._servlet.get(self.key)

    def delete(self) -> bool:
        """Drop the object from the servlet; False if it was not there."""
        return self._servlet.delete(self.key)

    def __repr__(self) -> str:
        return f"<remote object {self.key!r} in servlet {self._servlet.name!r}>"


class RemoteMethod:
    """attr of a remote object, called in the servlet."""

    def __init__(self, servlet: ServletHandle, key: str, attr: str):
        self._servlet, self._key, self._attr = servlet, key, attr

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._servlet._call_target((INSTANCE_METHOD, self._key, self._attr), args,
                                          kwargs)

    def __repr__(self) -> str:
        return f"<remote method {self._attr!r} of {self._key!r} in {self._servlet.name!r}>"


def _wait(ref: Any, timeout: float | None, log: str | None) -> Any:
    """ray.get(ref), bounded by timeout; with log, the output records the servlet
    writes there are shown here while it runs (as the gateway does on the head)."""
    import ray
    if log is None:
        return ray.get(ref, timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    offset, poll = 0, POLL[0]

    def show(chunk: bytes) -> None:
        write_output(chunk[0], chunk[1:])

    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return ray.get(ref, timeout=0)  # GetTimeoutError, a TimeoutError
            ready, _ = ray.wait([ref], timeout=poll if left is None else min(poll, left))
            offset = _HeadGateway._forward(log, offset, show)
            if ready:
                return ray.get(ref)
            poll = min(POLL[1], poll * 2)
    finally:
        _HeadGateway._forward(log, offset, show)
        try:
            os.unlink(log)
        except OSError:
            pass  # nothing was printed: the servlet made no file


_out_dir: str | None = None
_seen: dict[tuple[str, str], bool] = {}
_out_lock = threading.Lock()


def _output_dir() -> str:
    """This process's folder for the output files of its direct-route calls."""
    global _out_dir
    with _out_lock:
        if _out_dir is None:
            _out_dir = tempfile.mkdtemp(prefix="rhplan-out-")
            atexit.register(shutil.rmtree, _out_dir, True)
        return _out_dir


def _sees_our_files(handle: ServletHandle) -> bool:
    """Whether the servlet sees this machine's files (asked once per process): it is on
    this machine, in the same mount namespace, so the file it writes can be tailed here."""
    key = (handle.address, handle.name)
    with _out_lock:
        if key in _seen:
            return _seen[key]
    probe = os.path.join(_output_dir(), f"probe-{uuid.uuid4().hex}")
    with open(probe, "w"):
        pass
    try:
        from ray import cloudpickle
        result = handle._direct("call", cloudpickle.dumps(("os.path:exists", (probe,), {})))
        seen = result[0] == "ok" and pickle.loads(result[1]) is True
    finally:
        os.unlink(probe)
    with _out_lock:
        _seen[key] = seen
    return seen


def _cloudpickle(cluster_ray: str | None) -> Any:
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


def _dumps(obj: Any, by_value: bool = False, cluster_ray: str | None = None) -> bytes:
    """Plain pickle when it will do (no Ray import needed here); cloudpickle for
    functions, lambdas and what lives in __main__ (which the env does not have)."""
    if not by_value:
        try:
            blob = pickle.dumps(obj, protocol=5)
            if b"__main__" not in blob:
                return blob
        except (pickle.PicklingError, AttributeError, TypeError):
            pass
    return _cloudpickle(cluster_ray).dumps(obj, protocol=5)


# servlets (by cluster and servlet_key) that do not know "call_fn" (an older rhplan's)
_no_call_fn: set[tuple[str, str]] = set()
# a function -> (servlet_wire.reuse_key, its pickle): sent again while the key holds
_fn_pickles: weakref.WeakKeyDictionary[Any, tuple[Any, bytes]] = weakref.WeakKeyDictionary()
_fn_lock = threading.Lock()


def _function_pickle(fn: Any, cluster_ray: str | None) -> bytes:
    """fn cloudpickled, once while nothing it captures changes: a function that holds
    only immutable values and things that travel by name, and whose code rebinds no
    global or enclosing variable, is pickled again only when one of them changes
    (servlet_wire.reuse_key, checked per call: microseconds, where pickling took ~50 µs).
    Anything else (a closure over a list, a global dict...) is pickled every call."""
    cloudpickle = _cloudpickle(cluster_ray)
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


def _by_value(fn: Any, cluster_ray: str | None = None) -> Any:
    """Functions from the caller's own modules travel by value (the env does not have
    those modules); functions from installed packages travel by reference."""
    if isinstance(fn, str) or not callable(fn):
        return fn
    module = getattr(fn, "__module__", None)
    if module and module not in ("__main__", "builtins") and module in sys.modules:
        cloudpickle = _cloudpickle(cluster_ray)
        mod = sys.modules[module]
        path = getattr(mod, "__file__", "") or ""
        if "site-packages" not in path and "/lib/python" not in path:
            try:
                cloudpickle.register_pickle_by_value(mod)
            except ValueError:
                pass
    return fn


def _backend(chdir: str | os.PathLike[str]) -> Any:
    """The configuration's state backend. A local one is opened here directly: the
    workspace module brings the planner and networkx (~0.5 s of a first handle)."""
    from rhplan.config.load import load_config
    cfg = load_config(Path(chdir))
    if cfg.backend.type == "local":  # as workspace.backend_for does
        from rhplan.state.local import LocalBackend
        path = Path(str(cfg.backend.attrs.get("path", "rhplan.state.json")))
        return LocalBackend(path if path.is_absolute() else cfg.dir / path)
    from rhplan.workspace import backend_for
    return backend_for(cfg)


def default_env(state: Any, cluster: str | None, chdir: str | os.PathLike[str] = "."
                ) -> str:
    """The address of cluster CLUSTER's default env (of the only cluster when None): its
    default_env, else its bare env, else its only env."""
    clusters = sorted(a for a, r in state.resources.items() if r.type == "cluster")
    if cluster is None:
        if len(clusters) != 1:
            raise RhplanError(
                f"{len(clusters)} clusters in the state of {chdir} ("
                f"{', '.join(clusters) or 'none: run rhplan apply'}); name the cluster "
                "(rhplan.servlet(cluster=\"NAME\"), rhplan run -cluster NAME) or the env")
        addr = clusters[0]
    else:
        from rhplan.names import normalize_address
        addr = normalize_address(cluster if cluster.startswith(("cluster.", "module."))
                                 else f"cluster.{cluster}")
        if addr not in state.resources:
            addr = next((a for a in clusters
                         if state.resources[a].attributes.get("name") == cluster), addr)
        if addr not in state.resources:
            raise RhplanError(f"no cluster {cluster!r} in the state of {chdir}; applied "
                              f"clusters: {', '.join(clusters) or 'none (run rhplan apply)'}")
    declared = state.resources[addr].attributes.get("default_env")
    if declared:
        if declared not in state.resources:
            raise RhplanError(f"{addr}: its default_env {declared} is not applied; run "
                              "rhplan apply")
        return str(declared)
    envs = sorted(a for a, r in state.resources.items()
                  if r.type == "env" and r.attributes.get("cluster") == addr)
    from rhplan.config.default_env import is_bare_env
    bare = [a for a in envs if is_bare_env(a, state.resources[a].attributes)]
    if len(envs) == 1 or bare:  # the bare env rhplan made as its default (config/default_env.py)
        return (bare or envs)[0]
    if not envs:
        raise RhplanError(f"{addr} has no env; declare one (env \"main\" {{ cluster = {addr} }}) "
                          "and run rhplan apply")
    raise RhplanError(f"{addr} has {len(envs)} envs ({', '.join(envs)}) and no default_env; "
                      "set default_env = env.NAME in its cluster block, or name the env")


def find_env(name: str | None, chdir: str | os.PathLike[str] = ".",
             cluster: str | None = None) -> tuple[Any, Any]:
    """The env's and its cluster's recorded state; with no name, the cluster's default
    env (see default_env)."""
    state = _backend(chdir).read()
    if name is None:
        name = default_env(state, cluster, chdir)
    from rhplan.names import normalize_address  # x['a'] means x["a"], as on the CLI
    env = state.resources.get(normalize_address(name if name.startswith(("env.", "module."))
                                                else f"env.{name}"))
    if env is None:
        env = next((r for r in state.resources.values()
                    if r.type == "env" and r.attributes.get("name") == name), None)
    if env is None:
        have = sorted(a for a in state.resources if a.startswith("env."))
        raise RhplanError(f"no env {name!r} in the state of {chdir}; applied envs: "
                          f"{', '.join(have) or 'none (run rhplan apply)'}")
    found = state.resources.get(env.attributes["cluster"])
    if found is None or not found.attributes.get("ray_address"):
        raise RhplanError(f"{env.address}: its cluster has no Ray head recorded; run rhplan apply")
    return env, found


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


def _is_recorded(actor: Any, identity: dict[str, Any]) -> bool:
    return bool(identity.get("actor_id")) and actor._actor_id.hex() == identity["actor_id"]


def _check_actor(name: str, actor: Any, identity: dict[str, Any] | None) -> None:
    """Refuse an actor under the servlet's name that is not the one rhplan started: its
    answers would be unpickled here (the machine with the cloud keys). Only its id,
    which Ray gives and nobody picks, is looked at: nothing is asked of it."""
    if identity is None:
        raise RhplanError(_NO_IDENTITY.format(name=name))
    if not _is_recorded(actor, identity):
        raise RhplanError(str(not_started_by_rhplan(
            name, f"the actor answering to {NAMESPACE}/{name} ({actor._actor_id.hex()})")))


_NO_IDENTITY = ("servlet {name!r} has no identity recorded in the state (started by an "
                "older rhplan), so nothing can tell it from an impostor; run rhplan apply "
                "to restart it")


def _identity(env: Any) -> dict[str, Any] | None:
    return (getattr(env, "private", None) or {}).get("servlet_identity") or None


def _find_actor(name: str) -> Any:
    import ray
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        raise RhplanError(f"servlet {name!r} is not running; rhplan plan shows it as drift "
                          "and rhplan apply starts it") from None


def reachable(address: str, timeout: float = DIRECT_PROBE) -> bool:
    """Whether host:port accepts a TCP connection within timeout (an address that drops
    packets is given up on then, never waited for)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


_routes: dict[tuple[str, str], str] = {}
_routes_lock = threading.Lock()


def choose_route(cluster: Any) -> str:
    """"direct" or "ssh" for this cluster, decided once per process (see the module
    docstring); why not direct is never an error, only the ssh route."""
    forced = os.environ.get(ROUTE_ENV, "").strip().lower()
    if forced in ("ssh", "direct"):
        return forced
    if forced not in ("", "auto"):
        raise RhplanError(f"{ROUTE_ENV}={forced!r}: use ssh, direct or auto")
    a = cluster.attributes
    key = (cluster.address, a["ray_address"])
    with _routes_lock:
        if key in _routes:
            return _routes[key]
    route = "direct" if _direct_possible(cluster) else "ssh"
    with _routes_lock:
        _routes[key] = route
    return route


def _direct_possible(cluster: Any) -> bool:
    if cluster.provider == "local":
        return True
    token = cluster.private.get("ray_driver_token_path")
    if not token or not os.path.exists(token):
        return False  # state from elsewhere (S3): no driver token on this machine
    try:
        from importlib.metadata import version
        if version("ray") != cluster.attributes.get("ray_version"):
            return False
    except Exception:  # noqa: BLE001 - no Ray here
        return False
    if not _own_loopback_or_network(cluster):
        return False
    wanted = private_env(cluster.private, driver=True)
    if not cluster.private.get("ray_single_node", True) and not all(
            os.path.exists(wanted.get(k, "")) for k in ("RAY_TLS_SERVER_CERT",
                                                         "RAY_TLS_SERVER_KEY", "RAY_TLS_CA_CERT")):
        return False  # a multi-node cluster talks TLS only: no driver certificate here
    if "ray" in sys.modules and any(os.environ.get(k) != v for k, v in wanted.items()
                                    if k != "RAY_AUTH_TOKEN_PATH"):
        return False  # this process's Ray is set up for another cluster
    return reachable(cluster.attributes["ray_address"])


def _own_loopback_or_network(cluster: Any) -> bool:
    """A one-host cluster's Ray listens on its head's loopback only: this machine's
    127.0.0.1 is that loopback only when the head is this machine (reached at a loopback
    address, with no proxy command in between)."""
    import ipaddress
    a = cluster.attributes
    try:
        if not ipaddress.ip_address(a["ray_address"].rpartition(":")[0]).is_loopback:
            return True
        head = ipaddress.ip_address((a.get("ips") or ["?"])[0])
    except ValueError:
        return False
    return head.is_loopback and not (a.get("ssh") or {}).get("proxy_command")


def _worker_node(cluster: Any, env: Any) -> str:
    """The worker host the env's servlet runs on, or "" for the head."""
    node = env.attributes.get("node") or ""
    head = cluster.private.get("ray_head_host") or (cluster.attributes.get("ips") or [""])[0]
    return "" if node == head else node


def _gateway(cluster: Any, chdir: str | os.PathLike[str], node: str = "") -> Gateway:
    """The gateway of the cluster's head, or of worker node `node`: a servlet is reached
    through a gateway on its own host (its socket is a UNIX one), over the SSH
    connection apply uses for that host; from the head's gateway it was a Ray call
    between nodes (bench/node_parity.py: 3.6 ms against 0.7 ms on the head)."""
    from rhplan.provider import RunContext
    from rhplan.servlets import manage
    a, p = cluster.attributes, cluster.private
    key = (cluster.address, a.get("root_dir"), a["ray_address"], tuple(a.get("ips") or ()),
           node)

    def conn() -> Any:
        ctx = RunContext(Path(chdir).absolute())
        provider = ctx.provider(cluster.provider)
        own = cluster.provider_private  # the provider's part of the private record
        return (provider.connect_host(node, a, own, ctx) if node
                else provider.connect(a, own, ctx))

    if not node:
        return gateway_for(key, cluster.address, ssh_opener(conn, a, p))
    temp_dirs = p.get("ray_worker_temp_dirs") or {}
    if node not in temp_dirs:
        raise RhplanError(f"{cluster.address}: node {node} has not joined its Ray (no temp "
                          "dir recorded); run rhplan apply")
    # the node's token and TLS files; its temp dir, so that stopping its Ray stops it
    mine = dict(manage.node_private(a, p, node), ray_temp_dir=temp_dirs[node])
    return gateway_for(key, f"{cluster.address} (node {node})",
                       ssh_opener(conn, a, mine, node=node))


def servlet(name: str | None, chdir: str | os.PathLike[str] = ".",
            cluster_name: str | None = None) -> ServletHandle:
    """A handle to env NAME's servlet, found through the state in chdir; with no name, to
    the default env of cluster_name (of the only cluster when that is None too)."""
    env, cluster = find_env(name, chdir, cluster_name)
    name = env.address  # a handle keeps the env it found, whatever the default becomes
    servlet_name = env.attributes["name"]
    identity = _identity(env)

    def reread() -> dict[str, Any] | None:
        return _identity(find_env(name, chdir)[0])

    node = _worker_node(cluster, env)
    if choose_route(cluster) == "ssh":
        if identity is None:
            raise RhplanError(_NO_IDENTITY.format(name=servlet_name))
        gw = _gateway(cluster, chdir, node)
        handle = ServletHandle(servlet_name, None, "", gw, identity=identity)
        try:
            handle._request(gw, "find", (), 60)
        except LookupError as exc:  # the gateway's "not running", as the direct route says it
            raise RhplanError(str(exc).strip("'\"")) from None
        host = node or (cluster.attributes.get("ips") or ["?"])[0]
        return ServletHandle(servlet_name, None, f"ssh://{host} ({cluster.address})", gw,
                             identity=identity, reread=reread)
    address = connect_ray(cluster)
    actor = _find_actor(servlet_name)
    _check_actor(servlet_name, actor, identity)
    # a servlet on another host: its output can only be read there, by the gateway
    via = None if cluster.provider == "local" else (lambda: _gateway(cluster, chdir, node))
    return ServletHandle(servlet_name, actor, address, via_gateway=via, identity=identity,
                         reread=reread)


__all__ = ["GatewayLost", "RemoteError", "RemoteInstance", "RemoteMethod", "ServletHandle",
           "servlet", "find_env", "default_env", "choose_route"]
