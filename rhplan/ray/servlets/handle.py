"""A handle to one env servlet: what a user calls (call, run, put, get, keys, delete,
status, instance), reached through Ray directly (an actor) or through the cluster's
gateway (see client.py for which, and how a call's output reaches this process).
"""
from __future__ import annotations

import os
import pickle
import sys
import uuid
from collections.abc import Callable
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray.servlets import direct, direct_output, pickling
from rhplan.ray.servlets.gateway import servlet_key
from rhplan.ray.servlets.remote_errors import remote_exception
from rhplan.ray.servlets.remote_object import RemoteInstance
from rhplan.ray.servlets.servlet_wire import NEW_INSTANCE
from rhplan.ray.servlets.transport import Gateway

CALL_TIMEOUT = None  # user calls may run long; only start-up waits are bounded
STATUS_TIMEOUT = 60.0

# servlets (by cluster and servlet_key) that do not know "call_fn" (an older rhplan's)
_no_call_fn: set[tuple[str, str]] = set()


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
        actor = direct.find_actor(self.name)
        if self._identity is not None and not direct.is_recorded(actor, self._identity) and (
                self._reread is not None):
            self._identity = self._reread()
        direct.check_actor(self.name, actor, self._identity)
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
                return direct_output.wait(
                    ref, timeout if timeout is not None else self._timeout, log)
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
        if direct_output.sees_our_files(
                (self.address, self.name), lambda blob: self._direct("call", blob)):
            return "here"
        return "gateway" if self._via_gateway is not None else "none"

    def _streamed(self, op: str, method: str, payload: tuple[Any, ...]) -> Any:
        """A call or run on the direct route, its output streamed when it can be."""
        how = self._output_route(method)
        if how == "here":
            log = os.path.join(direct_output.output_dir(), f"{uuid.uuid4().hex}.out")
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
                                    (cloudpickle.dumps((pickling.by_value(fn), args, kwargs)),))
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
        here and rebuilt once there while it stays the same (see pickling.function_pickle); by
        name, or to a servlet of an older rhplan, all in one pickle ("call")."""
        assert self._gateway is not None
        theirs = self._gateway.versions.get("ray")
        old = (self._gateway.label, servlet_key(self.name, self._identity))
        if callable(fn) and old not in _no_call_fn:
            blob = pickling.function_pickle(pickling.by_value(fn, theirs), theirs)
            try:
                given = pickling.dumps((args, kwargs), cluster_ray=theirs)
                return self._ask("call_fn", blob, given, self._stream)
            except ValueError as exc:
                if "unknown request 'call_fn'" not in str(exc):
                    raise
                _no_call_fn.add(old)  # nothing ran there: send it the older way
        return self._ask("call", pickling.dumps((pickling.by_value(fn, theirs), args, kwargs),
                                                 by_value=by_value or callable(fn),
                                                 cluster_ray=theirs),
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
        theirs = self._gateway.versions.get("ray")
        return self._ask("put", key, pickling.dumps(obj, cluster_ray=theirs))

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
            pickling.by_value(cls, None if self._gateway is None
                              else self._gateway.versions.get("ray"))
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

