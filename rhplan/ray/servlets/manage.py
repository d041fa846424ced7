"""Start, stop and check env servlets on a cluster's head, through its Connection.

The work happens on the host, in host_script.py (shipped next to the cluster's envs
with the servlet's host-side modules, servlet_wire.SERVLET_MODULES, and run by the
Python that runs Ray there); this side only builds argv and reads the JSON line the
script prints.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import sys
import threading
from concurrent.futures import Future
from importlib import resources
from typing import Any

from rhplan import hostside
from rhplan.errors import ConnectionLost, ProviderError
from rhplan.hosts.connection import Connection
from rhplan.ray.head import private_argv, private_env, stop_pids
from rhplan.ray.servlets.servlet_wire import SERVLET_MODULES

# host_script.py and the modules it imports from beside it (the servlet's own, and
# servlet_wire.py, which the gateway's files import too): uploaded together; their hash
# names the folder, so a change to any of them makes a new one
_HOST_FILES = {f"{name}.py": resources.files("rhplan.ray.servlets").joinpath(f"{name}.py")
               .read_bytes() for name in ("host_script", *SERVLET_MODULES)}
SCRIPT_SHA = hashlib.sha256(b"".join(
    name.encode() + b"\0" + len(data).to_bytes(8, "big") + data
    for name, data in sorted(_HOST_FILES.items()))).hexdigest()[:16]


def script_path(root_dir: str) -> str:
    return f"{root_dir}/ray/host_script-{SCRIPT_SHA}/host_script.py"


# Runs host_script.py like `python host_script.py ARGS` does, then leaves at once with
# its exit code, not waiting for the Ray driver's shutdown (hostside/quick_exit.py)
_QUICK_EXIT = hostside.script("quick_exit")


def _run(conn: Connection, cluster: dict[str, Any], private: dict[str, Any], args: list[str],
         what: str, quick_exit: bool = False, timeout: float = 300) -> Any:
    path = script_path(cluster["root_dir"])
    runner = [cluster["ray_python"], "-c", _QUICK_EXIT.text] if quick_exit else [
        cluster["ray_python"]]
    argv = private_argv([*runner, path, *args])  # its Ray driver's logs: 0600
    res = conn.run(argv, env=private_env(private), timeout=timeout)
    if res.returncode == 2 and "No such file" in res.stderr:
        # first use on this host (or its root was wiped); the script last: it is there
        # only when what it imports is
        folder = path.rpartition("/")[0]
        for name, data in sorted(_HOST_FILES.items(), key=lambda f: f[0] == "host_script.py"):
            conn.put_bytes(data, f"{folder}/{name}")
        res = conn.run(argv, env=private_env(private), timeout=timeout)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if not res.ok:  # the script's SystemExit(json) puts its error line on stderr
        lines += [ln for ln in res.stderr.splitlines() if ln.startswith('{"error"')]
    if lines:
        data = json.loads(lines[-1])
        if isinstance(data, dict) and "error" in data and res.returncode != 0:
            raise ProviderError(f"{what}: {data['error']}")
        if res.ok:
            return data
    last = (res.stderr.strip().splitlines() or ["no output"])[-1]
    raise ProviderError(f"{what} on {conn.host} failed: {last}")


def node_private(cluster: dict[str, Any], private: dict[str, Any], node: str | None
                 ) -> dict[str, Any]:
    """The cluster's private record as a process on `node` sees it: a worker node has
    the cluster's token where `ray_head.join` put it and its own TLS files, not the
    head's. The head (node None, or the head's host) keeps the record as it is."""
    if not node or node == (private.get("ray_head_host") or (cluster.get("ips") or [None])[0]):
        return private
    from rhplan import tls  # cryptography: only multi-node clusters need it
    mine = dict(private, ray_token_path=f"{cluster['root_dir']}/ray/token")
    if private.get("ray_tls"):
        mine["ray_tls"] = dict(private["ray_tls"], head=tls.node_paths(cluster["root_dir"], node))
    return mine


class ServletNotStarted(ProviderError):
    """The env is built but its servlet did not start; the message says why (from the
    host: Ray cannot place it, the env lacks the cluster's Ray version, ...)."""


def start_servlet(conn: Connection, cluster: dict[str, Any], private: dict[str, Any],
                  name: str, env_dir: str, python: str, compute: dict[str, Any],
                  node_ip: str = "", go_file: str = "") -> dict[str, Any]:
    """node_ip: the Ray node address the servlet must run on ("": the node of conn's
    host, the head). go_file: see PendingStart (the answer may then be {"expired"} or
    {"cancelled"})."""
    try:
        info = _run(conn, cluster, private,
                    ["start", cluster["ray_address"], name, env_dir, python,
                     json.dumps(compute), node_ip, *([go_file] if go_file else [])],
                    f"starting servlet {name!r}", quick_exit=True,
                    # a pending start waits for its env's installs (host_script's
                    # GO_TIMEOUT, an hour, bounds that), then starts as any other
                    timeout=PENDING_TIMEOUT if go_file else 300)
    except ConnectionLost:
        raise  # whether it started is unknown: the next refresh finds out
    except ProviderError as exc:
        raise ServletNotStarted(str(exc)) from None
    if "pid" not in info:
        return info  # a pending start that expired or was cancelled
    lost = dict((info.get("restored") or {}).get("lost") or {})
    whole = lost.pop("*", None)  # none of them could be kept, and why
    if whole:
        sys.stderr.write(f"Warning: servlet {name!r} restarted without its objects: {whole}\n")
    if lost:  # the servlet it replaced kept the rest of its objects (host_script snapshot)
        sys.stderr.write(f"Warning: servlet {name!r} restarted without these objects: "
                         + "; ".join(f"{k} ({why})" for k, why in sorted(lost.items())) + "\n")
    return info


PENDING_TIMEOUT = 3600 + 300


class PendingStart:
    """A servlet start begun before its env is built: the driver that starts it imports
    Ray and joins the cluster (~1 s) while the env is made and its packages installed,
    then waits for its go file (host_script._await_go). start() says go and returns what
    start_servlet returns; cancel() sends it away (the env failed). A driver that gave
    up (rhplan's command was gone, or an hour passed) makes start() start the servlet
    the usual way.

    The go file is ROOT/ray/rhplan/servlet-go-TOKEN, beside the cluster's Ray files
    rather than in the env: the driver leaves when the folder two levels up is gone,
    and the env's folder is only made (or cleared of an interrupted create's leftovers)
    after the driver has begun; the cluster's ROOT/ray is there all along (the driver's
    own script lives in it)."""

    def __init__(self, conn: Connection, cluster: dict[str, Any], private: dict[str, Any],
                 name: str, env_dir: str, python: str, compute: dict[str, Any],
                 node_ip: str = ""):
        self._conn = conn
        self._args = (conn, cluster, private, name, env_dir, python, compute, node_ip)
        self._go = f"{cluster['root_dir']}/ray/rhplan/servlet-go-{secrets.token_hex(8)}"
        self._future: Future[dict[str, Any]] = Future()
        # a daemon thread: a start left unanswered never holds rhplan's exit (the driver
        # then sees its output unread and leaves)
        threading.Thread(target=self._wait, daemon=True, name="servlet-start").start()

    def _wait(self) -> None:
        try:
            self._future.set_result(start_servlet(*self._args, go_file=self._go))
        except BaseException as exc:  # noqa: BLE001 - handed to start() or cancel()
            self._future.set_exception(exc)

    def start(self) -> dict[str, Any]:
        self._say(b"go")
        info = self._future.result()
        if "pid" not in info:
            return start_servlet(*self._args)
        return info

    def cancel(self) -> None:
        try:
            if not self._future.done():
                # written only while the cluster's ROOT/ray is there (without it the
                # driver leaves by itself)
                self._conn.run(["sh", "-c", _CANCEL, "sh", self._go], timeout=60)
            self._future.result(timeout=60)
        except Exception:  # noqa: BLE001 - it leaves by itself (parent gone, timeout)
            pass

    def _say(self, word: bytes) -> None:
        if not self._future.done():  # a driver that already answered reads nothing
            self._conn.put_bytes(word, self._go)


# Tells a pending start to leave, unless ROOT/ray is gone (hostside/cancel_start.sh)
_CANCEL = hostside.shell("cancel_start").text


def stop_servlets(conn: Connection, cluster: dict[str, Any], private: dict[str, Any],
                  names: list[str]) -> dict[str, bool]:
    return _run(conn, cluster, private, ["stop", cluster["ray_address"], *names],
                "stopping servlets")


# Runs on the head: is PID still the env's servlet? (hostside/servlet_proof.py)
_SERVLET_PROOF = hostside.script("servlet_proof", uses=("ray_host",))


def stop_servlet_process(conn: Connection, cluster: dict[str, Any], private: dict[str, Any],
                         pid: Any, env_dir: str) -> bool:
    """Stop an env's servlet by its recorded process, for when its Ray cannot be asked
    (down, or not answering): only a process proven to be that servlet is signalled.
    True when one was stopped."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not private.get(
            "ray_temp_dir"):
        return False
    args = [private["ray_temp_dir"], private.get("ray_token_path") or "", str(pid), env_dir]
    # the script needs only the standard library: the host's python3 runs it when
    # rhplan's Ray venv is gone
    tried = []
    for python in dict.fromkeys(p for p in (cluster.get("ray_python"), cluster.get("python")
                                            or "python3") if p):
        res = conn.run([python, "-I", "-c", _SERVLET_PROOF.text, *args], timeout=60)
        if res.ok:
            if not res.stdout.strip():
                return False  # gone already, or the pid now belongs to another process
            stop_pids(conn, python, [pid])
            return True
        tried.append((res.stderr.strip().splitlines() or ["no output"])[-1])
    raise ProviderError(f"checking servlet process {pid} on {conn.host} failed: {tried[-1]}")


def servlet_status(conn: Connection, cluster: dict[str, Any], private: dict[str, Any],
                   names: list[str]) -> dict[str, dict[str, Any]]:
    return _run(conn, cluster, private, ["status", cluster["ray_address"], *names],
                "checking servlets")


_WATCHDOG = resources.files("rhplan.ray.servlets").joinpath("watchdog.py").read_bytes()
_WATCHDOG_SHA = hashlib.sha256(_WATCHDOG).hexdigest()[:16]


def activity_path(root_dir: str) -> str:
    return f"{root_dir}/ray/activity"


def touch_activity(conn: Connection, cluster: dict[str, Any]) -> None:
    """Work on a cluster's envs counts as activity for its autostop watchdog."""
    if cluster.get("autostop_mins") and cluster.get("root_dir"):
        conn.put_bytes(b"", activity_path(cluster["root_dir"]))


def start_watchdog(conn: Connection, cluster: dict[str, Any], private: dict[str, Any],
                   minutes: float, command: str) -> None:
    """Start the autostop watchdog on the head, detached from this connection (its
    output goes to a log file, so the command returns at once)."""
    root = cluster["root_dir"]
    script = f"{root}/ray/watchdog-{_WATCHDOG_SHA}.py"
    conn.put_bytes(_WATCHDOG, script)
    log = f"{root}/ray/watchdog.log"
    # user data (the command) only ever travels as "$@", never inside the script text
    launcher = 'umask 077; log=$1; shift; setsid "$@" >"$log" 2>&1 </dev/null &'
    res = conn.run(["sh", "-c", launcher, "sh", log, "env", *[
        f"{k}={v}" for k, v in private_env(private).items()], cluster["ray_python"], script,
        cluster["ray_address"], str(float(minutes) * 60), command, private["ray_temp_dir"],
        activity_path(root)],
        timeout=60)
    if not res.ok:
        raise ProviderError(f"starting the autostop watchdog on {conn.host} failed: "
                            f"{(res.stderr.strip().splitlines() or ['?'])[-1]}")


# Only this user's watchdog of this temp dir (hostside/stop_watchdog.py)
_STOP_WATCHDOG = hostside.script("stop_watchdog")


def stop_watchdog(conn: Connection, cluster: dict[str, Any], private: dict[str, Any]) -> None:
    """Stop the cluster's watchdog (found by its script name and the Ray temp dir)."""
    conn.run([cluster["ray_python"], "-I", "-c", _STOP_WATCHDOG.text, private["ray_temp_dir"]],
             timeout=30)
