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

NAMESPACE = "rhplan"
READY_TIMEOUT = float(os.environ.get("RHPLAN_SERVLET_TIMEOUT", "120"))
SERVLET_CONCURRENCY = 32  # calls one servlet serves at once (one thread each)


class EnvServlet:
    """A long-lived actor in one env's interpreter: calls, commands, an object store."""

    def __init__(self, name: str, env_dir: str):
        self.name = name
        self.env_dir = env_dir
        self.started = time.time()
        self.last_activity = self.started
        self.store: dict = {}
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

    def _touch(self) -> None:
        self.last_activity = time.time()

    def ready(self) -> dict:
        return {"pid": os.getpid(), "python": sys.executable, "started": self.started}

    def call(self, payload: bytes) -> tuple:
        """payload: cloudpickled (fn or "module:qualname", args, kwargs). Returns
        ("ok", pickled result) or ("error", pickled exception or None, traceback text)."""
        import importlib

        from ray import cloudpickle

        self._touch()
        try:
            fn, args, kwargs = cloudpickle.loads(payload)
            if isinstance(fn, str):
                module, _, qualname = fn.partition(":")
                obj = importlib.import_module(module)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
                fn = obj
            return ("ok", cloudpickle.dumps(fn(*args, **kwargs)))
        except BaseException as exc:  # the caller re-raises it, with this traceback
            tb = traceback.format_exc()
            try:
                blob = cloudpickle.dumps(exc)
            except Exception:
                blob = None
            return ("error", blob, tb, f"{type(exc).__name__}: {exc}")

    def run(self, cmd, timeout: float | None = None) -> dict:
        self._touch()
        shell = isinstance(cmd, str)
        argv = ["bash", "-c", cmd] if shell else [str(c) for c in cmd]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               cwd=self.env_dir)
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


def start(address: str, name: str, env_dir: str, py_executable: str, resources: str) -> dict:
    ray = _connect(address)
    res = json.loads(resources)
    old = _actor(ray, name)
    if old is not None:
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
    # the env lives on this host (the head): keep its servlet here, whatever other
    # nodes the cluster has
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
        node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(EnvServlet).options(**opts).remote(name, env_dir)
    try:
        info = ray.get(actor.ready.remote(), timeout=READY_TIMEOUT)
    except Exception as exc:
        ray.kill(actor, no_restart=True)
        raise SystemExit(json.dumps({"error": f"servlet {name!r} did not start within "
                                     f"{READY_TIMEOUT:.0f}s ({type(exc).__name__}); the env "
                                     "needs the same Ray version as the cluster"})) from None
    return info


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
