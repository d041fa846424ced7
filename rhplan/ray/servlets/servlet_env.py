"""Runs ON a host, in an env's interpreter: the env servlet, a long-lived Ray actor that
runs callers' functions, commands and keeps their objects. host_script.py starts it;
Ray (cloudpickle) sends this class to the env's interpreter by value, with the
host-side modules it uses (servlet_wire.SERVLET_MODULES): the env needs Ray, not
these files.

Around it, one job each: servlet_code.py (the synced working_dir), servlet_objects.py
(the store across a restart), servlet_output.py (what a call prints, streamed),
servlet_server.py (its own socket, for the gateway on this host).

Standard library and Ray only (rhplan is not installed on hosts).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback

from servlet_code import WorkingDir
from servlet_objects import read_snapshot, write_snapshot
from servlet_output import Sink, run_into, streamed_into
from servlet_server import listen
from servlet_wire import (
    INSTANCE_METHOD,
    NEW_INSTANCE,
    describe_exception,
    reuse_key,
    servlet_socket,
)

FUNCTIONS_KEPT = 256  # rebuilt functions a servlet keeps for callers that send them again


class EnvServlet:
    """A long-lived actor in one env's interpreter: calls, commands, an object store."""

    def __init__(self, name: str, env_dir: str, gateway_key: str = ""):
        self.name = name
        self.env_dir = env_dir
        self.started = time.time()
        self.last_activity = self.started
        self.store: dict = {}
        self._functions: dict = {}  # pickle -> (rebuilt function, reuse_key, len(globals))
        # env vars and secrets come from the env's own files, so secret values never
        # travel through Ray's control plane or rhplan's state
        for fname in ("env_vars.json", "secrets.json"):
            path = os.path.join(env_dir, "rhplan", fname)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    os.environ.update({str(k): str(v) for k, v in json.load(fh).items()})
        bin_dir = os.path.join(env_dir, "bin")
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        os.environ["VIRTUAL_ENV"] = env_dir
        # before the snapshot is read: its objects' classes may live there
        self._code = WorkingDir(env_dir)
        self.cwd = self._code.path
        self.restored = read_snapshot(self.store, env_dir)
        if gateway_key:  # the gateway on this host reaches it here, not through Ray
            listen(_unwrapped(self), servlet_socket(gateway_key, name))

    def _touch(self) -> None:
        self.last_activity = time.time()

    def ready(self) -> dict:
        return {"pid": os.getpid(), "python": sys.executable, "started": self.started,
                "restored": self.restored}

    # -- continuity: the store outlives a restart by apply (host_script start)

    def snapshot(self) -> dict:
        """Write the store for the servlet that replaces this one (servlet_objects.py):
        {"kept": [keys], "lost": {key: why}}."""
        return write_snapshot(self.store, self.env_dir)

    def call(self, payload: bytes) -> tuple:
        """payload: cloudpickled (fn or "module:qualname", args, kwargs). Returns
        ("ok", pickled result) or ("error", describe_exception, traceback text, summary)."""
        from ray import cloudpickle

        return self._call(lambda: cloudpickle.loads(payload))

    def call_fn(self, fn_blob: bytes, rest: bytes) -> tuple:
        """call(), with the function pickled apart from (args, kwargs): a function sent
        again and again is rebuilt once (see _function), not per call."""
        from ray import cloudpickle

        return self._call(lambda: (self._function(fn_blob), *cloudpickle.loads(rest)))

    def _call(self, load) -> tuple:
        import importlib

        self._touch()
        try:
            self._code.reimport_changed(self._functions.clear)
            fn, args, kwargs = load()
            if isinstance(fn, tuple) and fn[:1] in ((NEW_INSTANCE,), (INSTANCE_METHOD,)):
                fn = self._instance_target(*fn)
            elif isinstance(fn, str):
                fn = _by_name(fn, importlib)
            return ("ok", _dumps_result(fn(*args, **kwargs)))
        except BaseException as exc:  # the caller re-raises it, with this traceback
            tb = traceback.format_exc()
            return ("error", describe_exception(exc), tb, f"{type(exc).__name__}: {exc}")

    def _instance_target(self, kind: str, name: str, what):
        """What a remote-object call runs: the class, made and kept under name (by
        value, or "module:Class" importable in the env); or a kept object's attribute:
        a method, or a plain value returned as it is when called with no arguments."""
        import importlib

        if kind == NEW_INSTANCE:
            cls = _by_name(what, importlib) if isinstance(what, str) else what

            def new(*args, **kwargs):
                self.store[name] = cls(*args, **kwargs)
                return name
            return new
        if name not in self.store:
            raise KeyError(f"no object {name!r} in servlet {self.name!r} (deleted, or "
                           "never made: s.instance(Class, name=...) makes it)")
        value = getattr(self.store[name], what)
        if callable(value):
            return value

        def attribute(*args, **kwargs):
            if args or kwargs:
                raise TypeError(f"{type(self.store[name]).__name__}.{what} is not callable "
                                "(a plain attribute: call it with no arguments to read it)")
            return value
        return attribute

    def _function(self, blob) -> object:
        """The function a caller pickled, rebuilt once per distinct pickle while nothing
        it holds can have changed (servlet_wire.reuse_key: only immutable values or ones
        that travel by name, and code that rebinds no global nor enclosing variable);
        checked again before each reuse. Anything else is rebuilt per call, as before."""
        from ray import cloudpickle
        from ray.cloudpickle import cloudpickle as cp

        blob = bytes(blob)
        cache = self._functions
        hit = cache.get(blob)
        if hit is not None and (hit[2] is None or len(hit[0].__globals__) == hit[2]
                                and reuse_key(hit[0], cp) == hit[1]):
            return hit[0]
        fn = cloudpickle.loads(blob)
        try:
            key = reuse_key(fn, cp)
        except Exception:  # noqa: BLE001 - a cloudpickle without what reuse_key reads
            key = None
        if key is not None:
            if len(cache) >= FUNCTIONS_KEPT:
                try:
                    cache.pop(next(iter(cache)))  # the oldest
                except (KeyError, RuntimeError, StopIteration):
                    pass  # another thread trimmed it meanwhile
            # a function that names no global and holds nothing (no closure, defaults
            # or attributes) cannot change: never checked again (None); else the number
            # of its globals, checked first
            fixed = not (fn.__closure__ or fn.__defaults__ or fn.__kwdefaults__
                         or fn.__dict__ or cp._extract_code_globals(fn.__code__))
            cache[blob] = (fn, key, None if fixed else len(fn.__globals__))
        return fn

    def run(self, cmd, timeout: float | None = None) -> dict:
        self._touch()
        shell = isinstance(cmd, str)
        argv = ["bash", "-c", cmd] if shell else [str(c) for c in cmd]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               cwd=self.cwd)
            return {"returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
        except FileNotFoundError:
            return {"returncode": 127, "stdout": "", "stderr": f"{argv[0]}: command not found"}
        except subprocess.TimeoutExpired as exc:
            return {"returncode": 124, "stdout": exc.stdout or "", "stderr": "timed out"}

    def put(self, key: str, value) -> None:
        self._touch()
        self.store[key] = value

    def get(self, key: str):
        self._touch()
        if key not in self.store:
            raise KeyError(f"no object {key!r} in servlet {self.name!r}")
        return self.store[key]

    def keys(self) -> list:
        self._touch()
        return sorted(self.store)

    def delete(self, key: str) -> bool:
        self._touch()
        return self.store.pop(key, None) is not None

    def status(self) -> dict:
        import importlib.metadata as md

        pkgs = sorted(f"{d.metadata['Name']}=={d.version}" for d in md.distributions()
                      if d.metadata["Name"])
        return {"env": self.name, "python": sys.executable, "pid": os.getpid(),
                "uptime": time.time() - self.started, "idle": time.time() - self.last_activity,
                "objects": len(self.store), "packages": pkgs}

    def idle_seconds(self) -> float:
        return time.time() - self.last_activity

    # -- for the gateway on this host (gateway.py): output streamed through a file it
    # tails, objects travelling pickled (the gateway's Python may lack their modules)

    def call_streamed(self, payload: bytes, log_path: str) -> tuple:
        """call(), with what fn prints (sys.stdout, sys.stderr, logging to them) written
        to log_path as it happens, as records: 1 byte stream (1 out, 2 err), 4 bytes
        length, the bytes."""
        return self._call_into(payload, Sink(log_path))

    def _call_into(self, payload: bytes, sink) -> tuple:
        """call(), with what fn prints going to sink.write(stream, data)."""
        return self._streamed_into(sink, lambda: self.call(payload))
    @staticmethod
    def _streamed_into(sink, work) -> tuple:
        return streamed_into(sink, work)

    def run_streamed(self, cmd, timeout, log_path: str) -> dict:
        """run(), with the command's output also written to log_path as it comes."""
        return self._run_into(cmd, timeout, Sink(log_path))

    def _run_into(self, cmd, timeout, sink) -> dict:
        """run(), with the command's output also going to sink.write(stream, data)."""
        self._touch()
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]
        return run_into(argv, timeout, sink, self.cwd)

    def put_pickled(self, key: str, blob: bytes) -> None:
        from ray import cloudpickle

        self.put(key, cloudpickle.loads(blob))

    def get_pickled(self, key: str) -> bytes:
        return _dumps_result(self.get(key))

    def serve_request(self, op: str, args: tuple, sink):
        """One request from the gateway through this servlet's socket (gateway.py's
        ops; objects arrive and leave pickled, as through Ray)."""
        if op == "find":
            return True
        if op == "call":
            payload, stream = args
            return self._call_into(payload, sink) if stream else self.call(payload)
        if op == "call_fn":
            fn_blob, rest, stream = args
            if not stream:
                return self.call_fn(fn_blob, rest)
            return self._streamed_into(sink, lambda: self.call_fn(fn_blob, rest))
        if op == "run":
            cmd, timeout, stream = args
            return self._run_into(cmd, timeout, sink) if stream else self.run(cmd, timeout)
        if op == "put":
            return self.put_pickled(*args)
        if op == "get":
            return self.get_pickled(*args)
        if op in ("keys", "delete", "status"):
            return getattr(self, op)(*args)
        raise ValueError(f"unknown request {op!r}")


def _by_name(target: str, importlib):
    """The object "module:qualname" names, importable in the env."""
    module, _, qualname = target.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj



def _dumps_result(value) -> bytes:
    """value pickled for the caller: the C pickler when it will do (cloudpickle's Python
    pickler costs more, per call), cloudpickle for what only it can carry (functions,
    classes sent by value, objects of this __main__)."""
    import pickle

    try:
        blob = pickle.dumps(value, protocol=5)
        if b"__main__" not in blob:
            return blob
    except Exception:  # noqa: BLE001 - not picklable by name: by value instead
        pass
    from ray import cloudpickle

    return cloudpickle.dumps(value, protocol=5)


def _unwrapped(servlet):
    """The servlet as an EnvServlet itself, sharing its attributes: Ray's actor class (a
    subclass Ray makes of it) wraps every method, private ones too, in a tracing span:
    six of them per call on the socket path, where no Ray call is involved."""
    plain = object.__new__(EnvServlet)
    plain.__dict__ = servlet.__dict__
    return plain
