"""Runs ON a cluster's head, in the Python that runs Ray there: start, stop and check
env servlets. It imports only the standard library and Ray, because rhplan is not
installed on hosts; rhplan copies this file next to the cluster's envs and runs it
through the connection (so local and SSH hosts share one path).

Run as a script, its EnvServlet class lives in __main__, which Ray (cloudpickle)
sends by value: the env's interpreter needs Ray, not this file.

    python host_script.py start  ADDRESS NAME ENV_DIR PY_EXECUTABLE RESOURCES_JSON
    python host_script.py stop   ADDRESS NAME...
    python host_script.py status ADDRESS NAME...

Every command prints one JSON line. Every wait on Ray is bounded.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import traceback

# uploaded beside this file (manage.py); the servlet, sent to the env's interpreter by
# value, carries what it uses of it by value too (see start)
from servlet_wire import (
    ERROR,
    HEADER_FMT,
    INSTANCE_METHOD,
    NEW_INSTANCE,
    OUT,
    REQUEST,
    RESULT,
    FrameReader,
    Outbox,
    describe_exception,
    error_parts,
    out_of_band,
    pack,
    process_start_ticks,
    reuse_key,
    servlet_socket,
    unpack,
)

NAMESPACE = "rhplan"
READY_TIMEOUT = float(os.environ.get("RHPLAN_SERVLET_TIMEOUT", "120"))
SERVLET_CONCURRENCY = 32  # calls one servlet serves at once (one thread each)
TAKEOVER = 0.004  # a request on the socket running longer hands the reading on (s)
CODE_MANIFEST = ".rhplan-manifest.json"  # written last by every sync (rhplan/sync.py)
FUNCTIONS_KEPT = 256  # rebuilt functions a servlet keeps for callers that send them again
SNAPSHOT_FILE = "rhplan/objects.pickle"  # in the env dir: the store across a restart
SNAPSHOT_TIMEOUT = 60.0  # a servlet being replaced gets this long to write its store
STARTED_FILE = "rhplan/servlet_actor_id"  # in the env dir: the actor start() made last


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
        self.cwd = self._enter_working_dir()  # before _restore: its classes may live there
        self.restored = self._restore()
        if gateway_key:  # the gateway on this host reaches it here, not through Ray
            _listen(_unwrapped(self), servlet_socket(gateway_key, name))

    def _touch(self) -> None:
        self.last_activity = time.time()

    # -- the env's working_dir: the caller's project code, synced by rhplan

    def _enter_working_dir(self) -> str:
        """The env's synced working_dir (named in ENV/rhplan/working_dir.json) becomes this
        process's current directory and first on sys.path, so a caller's function can
        import its project's modules. Without one: the env folder, as before."""
        import threading

        self._code_lock = threading.Lock()
        self._code_mark = None
        try:
            with open(os.path.join(self.env_dir, "rhplan", "working_dir.json"),
                      encoding="utf-8") as fh:
                path = json.load(fh)["path"]
        except (OSError, ValueError, KeyError, TypeError):
            return self.env_dir
        if not isinstance(path, str) or not os.path.isdir(path):
            return self.env_dir
        os.chdir(path)
        sys.path.insert(0, path)
        self._code_mark = _file_mark(os.path.join(path, CODE_MANIFEST))
        return path

    def _reimport_changed(self) -> None:
        """After a re-sync (whose manifest is written last), reload the modules loaded from
        the working_dir whose file the sync wrote: one stat per call when nothing changed."""
        if self._code_mark is None:
            return
        mark = _file_mark(os.path.join(self.cwd, CODE_MANIFEST))
        if mark == self._code_mark:
            return
        import importlib
        import importlib.util

        with self._code_lock:
            if mark == self._code_mark:
                return
            since = self._code_mark[1]
            importlib.invalidate_caches()  # new files and folders are found
            prefix = self.cwd.rstrip("/") + "/"
            # every module of the working_dir is imported afresh by its next user, not
            # only the rewritten ones: `from helpers import twice` in an unchanged module
            # would keep the old function (importlib.reload rebinds only its own module)
            for name, mod in list(sys.modules.items()):
                file = getattr(mod, "__file__", None)
                if not (isinstance(file, str) and file.startswith(prefix)):
                    continue
                if _mtime_ns(file) >= since:  # written by a sync since the last one seen
                    try:
                        # its bytecode cache knows the source by whole seconds and size:
                        # a same-size edit within a second would load the old code
                        os.unlink(importlib.util.cache_from_source(file))
                    except (OSError, ValueError, NotImplementedError):
                        pass
                sys.modules.pop(name, None)
            self._functions.clear()  # rebuilt functions may hold the old modules
            self._code_mark = mark

    def ready(self) -> dict:
        return {"pid": os.getpid(), "python": sys.executable, "started": self.started,
                "restored": self.restored}

    # -- continuity: the store outlives a restart by apply (host_script start)

    def snapshot(self) -> dict:
        """Write the store to the env dir (0600), each object cloudpickled on its own so
        one that cannot be pickled (a lock, a socket...) costs only itself. Returns
        {"kept": [keys], "lost": {key: why}}; the next servlet of this env loads it."""
        import pickle

        from ray import cloudpickle

        kept, lost = {}, {}
        for key, value in list(self.store.items()):
            try:
                kept[key] = cloudpickle.dumps(value, protocol=5)
            except Exception as exc:  # noqa: BLE001 - any failure: that object is lost
                lost[key] = f"{type(exc).__name__}: {exc}"[:200]
        path = os.path.join(self.env_dir, SNAPSHOT_FILE)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(kept, fh, protocol=5)
        os.replace(tmp, path)
        return {"kept": sorted(kept), "lost": lost}

    def _restore(self) -> dict:
        """Load (then remove) the snapshot the servlet this one replaces wrote: objects
        whose class no longer loads (a package change removed it) are reported lost."""
        import pickle

        path = os.path.join(self.env_dir, SNAPSHOT_FILE)
        try:
            with open(path, "rb") as fh:
                blobs = pickle.load(fh)
        except FileNotFoundError:
            return {"kept": [], "lost": {}}
        except Exception as exc:  # noqa: BLE001 - a torn or foreign file: start empty
            return {"kept": [], "lost": {"*": f"{type(exc).__name__}: {exc}"[:200]}}
        finally:
            try:
                os.unlink(path)  # once: a later crash restart must not bring back old ones
            except OSError:
                pass
        from ray import cloudpickle

        lost = {}
        for key, blob in blobs.items():
            try:
                self.store[key] = cloudpickle.loads(blob)
            except Exception as exc:  # noqa: BLE001 - its class is gone or changed
                lost[key] = f"{type(exc).__name__}: {exc}"[:200]
        return {"kept": sorted(self.store), "lost": lost}

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
            self._reimport_changed()
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
        return self._call_into(payload, _Sink(log_path))

    def _call_into(self, payload: bytes, sink) -> tuple:
        """call(), with what fn prints going to sink.write(stream, data)."""
        return self._streamed_into(sink, lambda: self.call(payload))

    @staticmethod
    def _streamed_into(sink, work) -> tuple:
        tls = _stream_router()
        tls.sink = sink
        try:
            return work()
        finally:
            tls.sink = None
            sink.close()

    def run_streamed(self, cmd, timeout, log_path: str) -> dict:
        """run(), with the command's output also written to log_path as it comes."""
        return self._run_into(cmd, timeout, _Sink(log_path))

    def _run_into(self, cmd, timeout, sink) -> dict:
        """run(), with the command's output also going to sink.write(stream, data)."""
        import threading

        self._touch()
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else [str(c) for c in cmd]
        try:
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, cwd=self.cwd)
        except FileNotFoundError:
            sink.close()
            return {"returncode": 127, "stdout": "", "stderr": f"{argv[0]}: command not found"}
        got: dict = {1: [], 2: []}

        def pump(stream, fd: int) -> None:
            for chunk in iter(lambda: stream.read1(65536), b""):
                got[fd].append(chunk)
                sink.write(fd, chunk)

        pumps = [threading.Thread(target=pump, args=(p.stdout, 1), daemon=True),
                 threading.Thread(target=pump, args=(p.stderr, 2), daemon=True)]
        for t in pumps:
            t.start()
        try:
            code = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            code = 124
        for t in pumps:
            t.join(5)
        sink.close()
        text = {fd: b"".join(v).decode("utf-8", "replace") for fd, v in got.items()}
        return {"returncode": code, "stdout": text[1],
                "stderr": text[2] + ("timed out" if code == 124 and timeout else "")}

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


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _file_mark(path: str) -> tuple:
    """What tells a rewritten file (each sync replaces the manifest: a new inode, even
    within one tick of the clock) from the one seen before."""
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return (-1, -1, -1)


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


# -- the servlet's own socket: how the gateway (gateway.py) on this host reaches it
# without a Ray call per request (frames and packing: servlet_wire.py)

class _FrameSink:
    """Where a request's output goes on the socket path: OUT frames, as it comes."""

    def __init__(self, send, req: int):
        self.send, self.req = send, req

    def write(self, stream: int, data) -> None:
        data = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        if data:
            self.send(self.req, OUT, [bytes([stream]) + data])

    def close(self) -> None:
        pass


def _unwrapped(servlet):
    """The servlet as an EnvServlet itself, sharing its attributes: Ray's actor class (a
    subclass Ray makes of it) wraps every method, private ones too, in a tracing span:
    six of them per call on the socket path, where no Ray call is involved."""
    plain = object.__new__(EnvServlet)
    plain.__dict__ = servlet.__dict__
    return plain


def _listen(servlet, address: str) -> None:
    """Serve the gateway on address, in the background. Only processes of this user are
    answered (the socket has no file permissions): the gateway runs as the user that
    runs the cluster's Ray, as this servlet does."""
    import threading

    threading.Thread(target=_accept, args=(servlet, address, _Workers()), daemon=True,
                     name="rhplan-servlet listen").start()


class _Workers:
    """Threads that take over the reading of a connection (see _GatewayConn.watch), made
    as needed, SERVLET_CONCURRENCY at most: jobs wait in a plain queue, cheaper per
    request than an executor's futures."""

    def __init__(self):
        import queue
        import threading

        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.count = {"made": 0, "idle": 0, "queued": 0}
        self.lock = threading.Lock()

    def _worker(self) -> None:
        count = self.count
        while True:
            with self.lock:
                count["idle"] += 1
            job = self.work.get()
            with self.lock:
                count["idle"] -= 1
                count["queued"] -= 1
            job[0](*job[1:])

    def submit(self, *job) -> None:
        import threading

        count = self.count
        with self.lock:  # a thread more whenever requests outnumber idle threads
            count["queued"] += 1
            more = count["queued"] > count["idle"] and count["made"] < SERVLET_CONCURRENCY
            if more:
                count["made"] += 1
        if more:
            threading.Thread(target=self._worker, daemon=True, name="rhplan-servlet").start()
        self.work.put(job)


def _accept(servlet, address: str, workers: _Workers) -> None:
    import socket
    import struct
    import threading

    creds = struct.Struct("3i")  # pid, uid, gid
    deadline = time.time() + READY_TIMEOUT
    while True:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            srv.bind(address)
            break
        except OSError:  # the servlet this one replaces is still exiting
            srv.close()
            if time.time() > deadline:
                return  # the gateway calls this servlet through Ray instead
            time.sleep(0.05)
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        _, uid, _ = creds.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                 creds.size))
        if uid != os.getuid():
            conn.close()
            continue
        threading.Thread(target=_GatewayConn(servlet, conn, workers).serve, daemon=True,
                         name="rhplan-servlet gateway").start()


class _GatewayConn:
    """One gateway connection. The thread that reads a request runs it itself (no
    hand-off to a worker per request: the thread wake-ups were most of a small call's
    cost here), and holds its answer while more requests are already read, so that
    answers that finish together go back in one write. A request that runs longer than
    TAKEOVER (a slow call, one waiting for another request) hands the reading on to a
    worker (watch), so it holds up the others by that much at most."""

    def __init__(self, servlet, conn, workers: _Workers):
        import struct
        import threading

        self.servlet, self.conn, self.workers = servlet, conn, workers
        self.header = struct.Struct(HEADER_FMT)
        self.outbox = Outbox(conn.sendall)
        # who reads: role["gen"] names the reader; role["busy"] = the request it runs
        self.role = {"gen": 0, "busy": None, "seq": 0, "closed": False, "parked": False}
        self.role_lock = threading.Lock()
        self.wake = threading.Event()  # the watcher, parked while the connection is idle
        self.frames = FrameReader(conn.recv, conn.recv_into)

    def serve(self) -> None:
        import threading

        threading.Thread(target=self.watch, daemon=True, name="rhplan-servlet watch").start()
        self.lead(0)

    def send(self, req: int, kind: int, pieces: list, hold: bool = False) -> None:
        """Queue a frame; unless held (flush sends it), send all that is queued meanwhile
        in one write (servlet_wire.Outbox): answers that finish together reach the
        caller in one SSH packet (whose cost there is Python, per packet)."""
        size = sum(memoryview(p).nbytes for p in pieces)
        if self.outbox.put([self.header.pack(req, kind, size), *pieces], hold):
            self.outbox.drain()

    def flush(self) -> None:
        self.outbox.flush()

    def answer(self, req: int, payload, hold: bool) -> None:
        try:
            op, args = unpack(payload)
            result = self.servlet.serve_request(op, args, _FrameSink(self.send, req))
            self.send(req, RESULT, pack(out_of_band(result)), hold)
        except BaseException as exc:  # the caller re-raises it
            import pickle

            try:
                self.send(req, ERROR, [pickle.dumps(error_parts(exc), protocol=5)], hold)
            except OSError:
                pass  # the gateway is gone

    def lead(self, gen: int) -> None:
        """Read and run requests until the watcher hands the reading on."""
        role, role_lock, frames = self.role, self.role_lock, self.frames
        try:
            while True:
                if not frames.buffered():
                    self.flush()  # nothing more came with them: the held answers go
                req, kind, body = frames.read()
                if kind != REQUEST:
                    continue
                with role_lock:
                    role["seq"] += 1
                    role["busy"] = role["seq"]
                    parked, role["parked"] = role["parked"], False
                if parked:
                    self.wake.set()
                try:
                    self.answer(req, body, hold=True)
                finally:
                    with role_lock:
                        moved = role["gen"] != gen
                        if not moved:  # (else busy is the new reader's)
                            role["busy"] = None
                if moved:  # another thread reads now: this one's answer goes at once
                    self.flush()
                    return
        except (OSError, ValueError, EOFError):
            with role_lock:
                role["closed"] = True
            self.wake.set()
            try:
                self.flush()
            except OSError:
                pass
            self.conn.close()

    def watch(self) -> None:
        """Hand the reading to a worker when a request runs past TAKEOVER; parked (no
        wake-ups) after a second with nothing to run."""
        role, role_lock = self.role, self.role_lock
        seen, idle = None, 0
        while True:
            time.sleep(TAKEOVER / 2)
            with role_lock:
                if role["closed"]:
                    return
                busy = role["busy"]
                if busy is not None and busy == seen:
                    role["gen"] += 1
                    gen = role["gen"]
                    role["busy"] = None  # the new reader's, from now on
                else:
                    # (quick requests between two looks count as idle: the watcher
                    # parks, and the next request to start wakes it)
                    gen, seen = None, busy
                    idle = 0 if busy is not None else idle + 1
                    if idle * TAKEOVER / 2 >= 1.0:
                        role["parked"] = True
                        self.wake.clear()
            if gen is not None:
                seen = None
                try:
                    self.flush()  # what the slow request held back
                except OSError:
                    pass
                self.workers.submit(self.lead, gen)
            elif role["parked"]:
                self.wake.wait()
                idle = 0


class _Sink:
    """Output records appended to a file (one write per record, so threads interleave
    whole records), made on the first write: a call that prints nothing costs no file."""

    def __init__(self, path: str):
        import threading

        self.path = path
        self.fd = -1
        self.lock = threading.Lock()

    def write(self, stream: int, data) -> None:
        data = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        if not data:
            return
        record = memoryview(stream.to_bytes(1, "big") + len(data).to_bytes(4, "big") + data)
        with self.lock:
            if self.fd == -2:
                return  # the file cannot be made here: see below
            if self.fd < 0:
                try:
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                      0o600)
                except OSError:
                    # a servlet on a worker node, asked by the head's gateway whose folder
                    # is on the head only: its output is not streamed, the call goes on
                    self.fd = -2
                    return
            while record:
                record = record[os.write(self.fd, record):]

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


class _Router:
    """sys.stdout / sys.stderr of a servlet: a thread running a streamed call writes to
    that call's sink, every other thread to the stream Ray gave the worker."""

    _rhplan_router = True

    def __init__(self, orig, stream: int, tls):
        self._orig, self._stream, self._tls = orig, stream, tls

    def write(self, text) -> int:
        sink = getattr(self._tls, "sink", None)
        if sink is None:
            return self._orig.write(text)
        sink.write(self._stream, text)
        return len(text)

    def flush(self) -> None:
        if getattr(self._tls, "sink", None) is None:
            self._orig.flush()

    def __getattr__(self, name: str):
        return getattr(self._orig, name)


def _stream_router():
    """The thread-local that routes this process's prints (installed on first use)."""
    import threading

    if not getattr(sys.stdout, "_rhplan_router", False):
        tls = threading.local()
        sys.stdout = _Router(sys.stdout, 1, tls)
        sys.stderr = _Router(sys.stderr, 2, tls)
    return sys.stdout._tls


def _gcs_reachable(address: str, timeout: float = 5.0) -> bool:
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except OSError:
        return False


def _connect(address: str):
    # ray.init retries a dead address for ever: check the GCS answers first
    if not _gcs_reachable(address):
        raise SystemExit(json.dumps({"error": f"Ray at {address} is not answering; "
                                     "rhplan plan shows whether the cluster needs starting"}))
    import ray

    ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR",
             log_to_driver=False, configure_logging=False)
    return ray


def _actor(ray, name: str):
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None


def start(address: str, name: str, env_dir: str, py_executable: str, resources: str,
          node_ip: str = "", go_file: str = "") -> dict:
    """node_ip: the Ray node address of the node the env was built on (placed there by
    the plan); "" for the node this driver runs on (the head). go_file: start only when
    it says "go" (see _await_go)."""
    ray = _await_go(address, go_file) if go_file else _connect(address)
    res = json.loads(resources)
    asked = dict(res)
    old = _actor(ray, name)
    kept = None
    if old is not None:
        kept = _snapshot(ray, old, env_dir)
        ray.kill(old, no_restart=True)
        deadline = time.time() + READY_TIMEOUT
        while _actor(ray, name) is not None and time.time() < deadline:
            time.sleep(0.05)
    opts = {
        "name": name, "namespace": NAMESPACE, "lifetime": "detached",
        # Ray makes the whole thread pool up front: 1000 meant ~1,024 threads (pids) per
        # servlet, so ~25 servlets filled a host's pid_max; 32 concurrent calls is plenty
        "max_concurrency": SERVLET_CONCURRENCY,
        "num_cpus": res.pop("CPU", 0), "num_gpus": res.pop("GPU", 0),
        # Ray pastes py_executable into `bash -c "exec PY_EXECUTABLE ..."` unquoted (it
        # may be "<command> <args>"): quoted, an env path with a space, ';' or "$(...)"
        # (from root_dir or the config folder) stays one path and never runs as shell
        "runtime_env": {"py_executable": shlex.quote(py_executable)},
    }
    if res:
        opts["resources"] = res
    # the env lives on its node's disk: keep its servlet on that node, whatever other
    # nodes the cluster has (a driver on a worker's host may still be given the head's
    # raylet by Ray, so the node is found by its address, not taken from the driver)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    node_id = _node_id(ray, node_ip)
    opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    # the env's interpreter has no servlet_wire on its path: what EnvServlet uses of it
    # travels by value, as EnvServlet itself (this script is __main__)
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules["servlet_wire"])
    actor = ray.remote(EnvServlet).options(**opts).remote(name, env_dir, address)
    try:
        info = ray.get(actor.ready.remote(), timeout=READY_TIMEOUT)
    except Exception as exc:
        ray.kill(actor, no_restart=True)
        why = _why_not_started(ray, exc, asked, py_executable, node_id,
                               f"node {node_ip}" if node_ip else "the head node")
        raise SystemExit(json.dumps({"error": f"servlet {name!r} did not start: {why}"})) from None
    # who this servlet is, recorded in the state: callers trust only this actor (Ray
    # gives ids, nobody picks one) and, on its socket, only this process (pid and start
    # time: a pid alone is reused)
    info["actor_id"] = actor._actor_id.hex()
    _write_started(env_dir, info["actor_id"])
    if kept is not None:  # what the servlet it replaced could not write, and why
        info["restored"]["lost"].update(kept.get("lost") or {})
        if kept.get("error"):
            info["restored"]["lost"]["*"] = kept["error"]
    info["start_ticks"] = process_start_ticks(info["pid"])
    return info


GO_TIMEOUT = float(os.environ.get("RHPLAN_SERVLET_GO_TIMEOUT", "3600"))


def _await_go(address: str, go_file: str):
    """Started while its env is still being built (manage.PendingStart): join Ray as
    soon as it answers (a driver's Ray import and connection, ~1 s, then overlap the
    env's installs), and go on once go_file appears: "go" starts the servlet, anything
    else leaves, and so does a removed env. Leaves as well when rhplan's command is gone
    (its parent changed, or nobody reads its output) or after GO_TIMEOUT s, saying
    {"expired": ...} so rhplan starts it the usual way."""
    parent, deadline, ray = os.getppid(), time.time() + GO_TIMEOUT, None
    env = os.path.dirname(os.path.dirname(go_file))
    while not os.path.exists(go_file):
        if os.getppid() != parent or _unread():
            os._exit(0)  # nobody to answer; and no Ray shutdown to wait for
        if not os.path.isdir(env):  # removed (a refused env): no servlet for it
            print(json.dumps({"cancelled": True}))
            raise SystemExit(0)
        if time.time() > deadline:
            print(json.dumps({"expired": "the servlet's start was not confirmed in time"}))
            raise SystemExit(0)
        if ray is None and _gcs_reachable(address, timeout=0.2):
            ray = _connect(address)
        time.sleep(0.01)
    with open(go_file, encoding="utf-8") as fh:
        said = fh.read().strip()
    os.remove(go_file)
    if said != "go":
        print(json.dumps({"cancelled": True}))
        raise SystemExit(0)
    return ray or _connect(address)


def _unread() -> bool:
    """Nobody reads this process's output any more: the rhplan that runs it is gone
    (its pipe closed; over SSH the login shell between them may live on)."""
    import select

    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))


def _write_started(env_dir: str, actor_id: str) -> None:
    path = os.path.join(env_dir, STARTED_FILE)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(actor_id)
        os.replace(tmp, path)
    except OSError:
        pass  # the next start keeps no objects, and says so


def _snapshot(ray, old, env_dir: str) -> dict:
    """Ask the servlet being replaced to write its store for its successor: only the
    actor this script started last for the env (an impostor under its name is asked
    nothing); bounded: one that does not answer in time loses its objects, and start
    says so."""
    try:
        with open(os.path.join(env_dir, STARTED_FILE), encoding="utf-8") as fh:
            ours = fh.read().strip()
    except OSError:
        ours = ""
    if not ours:
        return {"error": "its servlet was started by an older rhplan: the objects it held, "
                         "if any, were not kept"}
    if old._actor_id.hex() != ours:
        return {"error": "the actor under the servlet's name is not the one rhplan "
                         "started: nothing was asked of it"}
    try:
        kept = ray.get(old.snapshot.remote(), timeout=SNAPSHOT_TIMEOUT)
        return kept if isinstance(kept, dict) else {"error": "its objects could not be kept"}
    except Exception as exc:  # noqa: BLE001 - dead, hung or failed: its objects are lost
        return {"error": f"its objects could not be kept ({type(exc).__name__})"}


def _node_id(ray, node_ip: str) -> str:
    """The id of the live Ray node at node_ip (this driver's own node when "")."""
    if not node_ip:
        return ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("Alive") and node.get("NodeManagerAddress") == node_ip:
            return node["NodeID"]
    raise SystemExit(json.dumps({"error": f"no live Ray node at {node_ip}: its Ray is down "
                                 "or has not joined; rhplan plan shows it as drift and rhplan "
                                 "apply joins it again"}))


def _why_not_started(ray, exc: Exception, asked: dict, py_executable: str, node: str,
                     where: str = "the head node") -> str:
    """The real cause of a failed servlet start, in one phrase with its fix: Ray cannot
    place it (what it asks for against what the head offers and has free), the env's
    interpreter lacks the cluster's Ray version, or it died or did not answer."""
    kind = type(exc).__name__
    wanted = {k: v for k, v in asked.items() if v}
    try:
        from ray._private.state import state
        total = state.total_resources_per_node().get(node, {})
        free = state.available_resources_per_node().get(node, {})
    except Exception:  # a private API: without it, say what is known
        total, free = {}, {}
    offered = {k: v for k, v in total.items() if k == "CPU" or k == "GPU" or not (
        k.startswith("node:") or k.endswith("memory") or k.startswith("accelerator_type"))}
    missing = [k for k, v in wanted.items() if total and total.get(k, 0) < v]
    if missing or kind == "ActorUnschedulableError":
        return (f"Ray cannot place it ({kind}): it asks for {_fmt(wanted)}, {where} "
                f"offers {_fmt(offered)}; offer it on the cluster (custom_resources, or more "
                "CPU/GPU) or lower the env's compute")
    busy = [k for k, v in wanted.items() if free and free.get(k, 0) < v]
    mismatch = _ray_mismatch(ray.__version__, py_executable)
    if mismatch:
        return f"{mismatch}; the env needs the same Ray version as the cluster"
    if busy:
        return (f"Ray cannot place it within {READY_TIMEOUT:g} s: it asks for {_fmt(wanted)}, "
                f"{where} has {_fmt({k: free.get(k, 0) for k in busy})} free of "
                f"{_fmt({k: total.get(k, 0) for k in busy})} (other actors hold the rest); "
                "lower the env's compute or free them")
    if kind == "GetTimeoutError":
        return (f"it did not answer within {READY_TIMEOUT:g} s; the head's Ray logs "
                "(raylet.err, worker logs) under its temp dir say why")
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"its process failed at start ({kind}: {first})"


def _ray_mismatch(version: str, py_executable: str) -> str:
    """Why the env's interpreter cannot run a Ray worker of this cluster, or ''."""
    try:
        p = subprocess.run([py_executable, "-I", "-c", "import ray; print(ray.__version__)"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the env's interpreter {py_executable} cannot run ({type(exc).__name__})"
    if p.returncode != 0:
        return f"the env's interpreter {py_executable} cannot import ray (cluster: Ray {version})"
    have = p.stdout.strip()
    return "" if have == version else f"the env has Ray {have}, the cluster Ray {version}"


def _fmt(res: dict) -> str:
    return "{" + ", ".join(f"{k} = {v:g}" for k, v in sorted(res.items())) + "}"


def stop(address: str, *names: str) -> dict:
    ray = _connect(address)
    out = {}
    for name in names:
        a = _actor(ray, name)
        if a is not None:
            ray.kill(a, no_restart=True)
        out[name] = a is not None
    return out


def status(address: str, *names: str) -> dict:
    ray = _connect(address)
    out = {}
    for name in names:
        a = _actor(ray, name)
        if a is None:
            out[name] = {"alive": False}
            continue
        try:
            info = ray.get(a.ready.remote(), timeout=10)
            out[name] = {"alive": True, "pid": info["pid"],
                         "uptime": time.time() - info["started"]}
        except Exception as exc:
            out[name] = {"alive": False, "error": type(exc).__name__}
    return out


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    result = {"start": start, "stop": stop, "status": status}[command](*args)
    print(json.dumps(result))
