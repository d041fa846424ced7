"""Issue 16 item 4: a caller trusts only the servlet rhplan started, and never runs code
named by what a servlet sends.

One local cluster (real Ray, a real env and servlet) is applied once. Drivers run in
subprocesses (a process drives one Ray): each uses both routes, the direct one (Ray)
and the gateway one (RHPLAN_SERVLET_ROUTE=ssh; on a local cluster the caller reaches
the gateway on 127.0.0.1 without SSH, through the same gateway.py and transport.py as
over SSH). Whatever the servlet side sends that would run code on the caller writes
MARKER there (a __reduce__ naming builtins.exec); the tests assert it never exists.
"""
from __future__ import annotations

import json
import pickle
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from drivers import run_driver

from rhplan.ray.servlets import gateway, servlet_wire

SERVLETS = Path(gateway.__file__).resolve().parent

HCL = """
cluster "c" {
  provider  = "local"
  resources = { CPU = 1, GPU = 0 }
}

env "sec" {
  cluster = cluster.c
  reqs    = []
}
"""

PRELUDE = """
import json, os, sys, time
import rhplan
CHDIR, MARKER = sys.argv[1], sys.argv[2]
def emit(**values):
    print("RESULT " + json.dumps(values), flush=True)

class Evil:
    # what any pickle loaded here may name: this runs where it is unpickled
    def __reduce__(self):
        return (exec, (f"open({MARKER!r}, 'a').write('ran on the caller\\\\n')",))

def outcome(fn):
    try:
        value = fn()
    except Exception as exc:
        return {"type": type(exc).__name__, "msg": str(exc),
                "remote_type": getattr(exc, "type_name", None),
                "remote_tb": getattr(exc, "remote_traceback", None),
                "notes": "\\n".join(getattr(exc, "__notes__", []))}
    return {"value": repr(value)}
"""


@dataclass
class Applied:
    rh: Any
    scripts: Path

    def drive(self, body: str, marker: Path) -> dict[str, Any]:
        script = self.scripts / f"driver_{uuid.uuid4().hex[:8]}.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        return run_driver(script, self.rh.dir, str(marker))

    def identity(self) -> dict[str, Any]:
        return self.rh.resources()["env.sec"]["private"]["servlet_identity"]


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Applied]:
    base = tmp_path_factory.mktemp("servlet-identity")
    rh = rhplan_in(base / "infra")
    rh.write(HCL)
    (base / "scripts").mkdir()
    try:
        rh("apply", "-auto-approve").ok()
        yield Applied(rh, base / "scripts")
    finally:
        res = rh("destroy", "-auto-approve")
        assert res.returncode == 0, res.describe()


def test_the_servlets_identity_is_recorded_when_it_starts(applied: Applied) -> None:
    ident = applied.identity()
    env = applied.rh.resources()["env.sec"]["attributes"]
    assert len(ident["actor_id"]) == 32 and int(ident["actor_id"], 16), ident
    assert ident["pid"] == env["servlet_pid"] and isinstance(ident["start_ticks"], int), ident


def test_remote_exceptions_arrive_as_text_unless_their_class_is_ours(
        applied: Applied, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    got = applied.drive("""
        import json  # json.decoder is imported here: its JSONDecodeError may be rebuilt

        class BoomError(Exception):  # ours, sent by value with the function
            pass

        def boom():
            raise BoomError("boom-1")

        def local_only():
            class LocalOnlyError(Exception):  # exists only in the env's process
                pass
            raise LocalOnlyError("only-in-the-env")

        class EvilError(Exception):
            def __reduce__(self):
                return Evil().__reduce__()

        def evil():
            raise EvilError("evil")

        out = {}
        for route in ("direct", "ssh"):
            os.environ["RHPLAN_SERVLET_ROUTE"] = route
            s = rhplan.servlet("sec", chdir=CHDIR)
            assert s.route == route, s.route
            out[route] = {"local": outcome(lambda: s.call(local_only)),
                          "evil": outcome(lambda: s.call(evil)),
                          "boom": outcome(lambda: s.call(boom)),
                          "json": outcome(lambda: s.call("json:loads", "{bad")),
                          "key": outcome(lambda: s.get("missing"))}
        emit(**out)
    """, marker)
    assert not marker.exists(), marker.read_text()
    for route in ("direct", "ssh"):
        r = got[route]
        print(f"RELIABILITY: {route}: " + "; ".join(
            f"{k} -> {v['type']}" + (f" ({v['remote_type']})" if v.get("remote_type") else "")
            for k, v in r.items()))
        local = r["local"]
        assert local["type"] == "RemoteError" and local["remote_type"] == "LocalOnlyError", r
        assert "LocalOnlyError: only-in-the-env" in local["msg"], local
        assert "in local_only" in local["remote_tb"], local
        assert "Remote traceback (servlet 'sec')" in local["notes"], local
        evil = r["evil"]
        assert evil["type"] == "RemoteError" and evil["remote_type"] == "EvilError", r
        assert "in evil" in evil["remote_tb"], evil
        assert r["boom"]["type"] == "BoomError" and r["boom"]["msg"] == "boom-1", r
        assert r["json"]["type"] == "JSONDecodeError", r
        assert r["key"]["type"] == "KeyError" and "missing" in r["key"]["msg"], r


ROGUE = """
from rhplan.ray.servlets.servlet_wire import servlet_socket
from rhplan.env_lookup import find_env

env, cluster = find_env("sec", CHDIR)
recorded_pid = env.attributes["servlet_pid"]

class Rogue:
    # registered as rhplan/sec once the real servlet is gone; every answer, through
    # Ray or on the servlet's socket, runs code where it is unpickled
    def __init__(self, address):
        import pickle, socket, struct, threading
        self.bound = False
        evil = pickle.dumps(Evil(), protocol=5)

        def serve(conn):
            try:
                while True:
                    head = conn.recv(9, socket.MSG_WAITALL)
                    if len(head) < 9:
                        return
                    req, kind, n = struct.unpack(">IBI", head)
                    conn.recv(n, socket.MSG_WAITALL) if n else b""
                    conn.sendall(struct.pack(">IBI", req, 6, len(evil)) + evil)  # ERROR
                    conn.sendall(struct.pack(">IBI", req, 5, len(evil)) + evil)  # RESULT
            except OSError:
                pass

        def listen():
            deadline = time.monotonic() + 30
            while True:  # the real servlet's socket goes when its process does
                srv = socket.socket(socket.AF_UNIX)
                try:
                    srv.bind(address)
                    break
                except OSError:
                    srv.close()
                    if time.monotonic() > deadline:
                        return
                    time.sleep(0.02)
            srv.listen(8)
            self.bound = True
            while True:
                conn, _ = srv.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=listen, daemon=True).start()

    def is_bound(self):
        return self.bound

    def call(self, *args):
        return Evil()

    (call_streamed, run, run_streamed, put, get, keys, delete, status, ready, put_pickled,
     get_pickled) = (call,) * 11
"""


def test_a_rogue_actor_under_the_servlets_name_runs_nothing_here(
        applied: Applied, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    got = applied.drive(ROGUE + textwrap.dedent("""
        handles = {}
        for route in ("direct", "ssh"):
            os.environ["RHPLAN_SERVLET_ROUTE"] = route
            handles[route] = rhplan.servlet("sec", chdir=CHDIR)
            assert handles[route].call("os:getpid") == recorded_pid

        # a token holder (this process is a driver of the cluster) replaces the servlet
        import ray
        ray.kill(ray.get_actor("sec", namespace="rhplan"), no_restart=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ray.get_actor("sec", namespace="rhplan")
                time.sleep(0.05)
            except ValueError:
                break
        rogue = ray.remote(Rogue).options(name="sec", namespace="rhplan", lifetime="detached",
                                          num_cpus=0).remote(
            servlet_socket(cluster.attributes["ray_address"], "sec"))
        deadline = time.monotonic() + 30
        while not ray.get(rogue.is_bound.remote(), timeout=30):
            assert time.monotonic() < deadline, "the rogue did not take the servlet's socket"
            time.sleep(0.05)

        out = {"rogue_id": rogue._actor_id.hex()}
        for route, s in handles.items():  # handles held from before, as in a notebook
            out[f"held {route} call"] = outcome(lambda: s.call("os:getpid"))
            out[f"held {route} keys"] = outcome(s.keys)
        for route in ("direct", "ssh"):
            os.environ["RHPLAN_SERVLET_ROUTE"] = route
            out[f"new {route}"] = outcome(lambda: rhplan.servlet("sec", chdir=CHDIR))
        emit(**out)
    """), marker)
    assert not marker.exists(), f"the rogue's answer ran code on the caller: {got}"
    before = applied.identity()
    rogue_id = got.pop("rogue_id")
    assert rogue_id != before["actor_id"]
    for what, res in got.items():
        print(f"RELIABILITY: {what}: {res.get('type')}: {res.get('msg', res.get('value'))}")
        assert res.get("type") == "RhplanError", (what, res)
        msg = res["msg"]
        assert "\n" not in msg and msg.startswith("servlet 'sec': "), (what, msg)
        assert "is not the servlet rhplan started" in msg and "run rhplan apply" in msg, msg
    # the message names the impostor as Ray knows it, on both routes
    assert rogue_id in got["new direct"]["msg"] and rogue_id in got["new ssh"]["msg"], got

    # what the message says to do works: apply sees the servlet is gone and restarts it
    res = applied.rh("apply", "-auto-approve").ok()
    assert "env.sec" in res.stdout, res.stdout
    after = applied.identity()
    assert after["actor_id"] != before["actor_id"] and after["actor_id"] != rogue_id
    got = applied.drive("""
        out = {}
        for route in ("direct", "ssh"):
            os.environ["RHPLAN_SERVLET_ROUTE"] = route
            out[route] = rhplan.servlet("sec", chdir=CHDIR).call("os:getpid")
        emit(**out)
    """, marker)
    assert got == {"direct": after["pid"], "ssh": after["pid"]}, (got, after)
    assert not marker.exists()


# -- no Ray needed ----------------------------------------------------------------------

class _EvilError(Exception):
    def __init__(self, marker: str):
        super().__init__("evil")
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_an_exception_pickled_by_an_older_servlet_is_never_loaded_as_itself(
        tmp_path: Path) -> None:
    from rhplan.ray.servlets.remote_errors import RemoteError, loads_data, remote_exception

    marker = tmp_path / "MARKER"
    old_blob = pickle.dumps(_EvilError(str(marker)))  # what servlets used to send
    exc = remote_exception("sec", old_blob, "_EvilError", "evil", "Traceback ...")
    assert isinstance(exc, RemoteError) and exc.type_name == "_EvilError", exc
    assert exc.remote_message == "evil" and exc.remote_traceback == "Traceback ..."
    with pytest.raises(pickle.UnpicklingError, match="builtins.exec"):
        loads_data(old_blob)
    assert not marker.exists()


def test_servlet_and_gateway_describe_exceptions_alike(tmp_path: Path) -> None:
    from rhplan.ray.servlets.remote_errors import loads_data

    sys.path.insert(0, str(SERVLETS))
    try:
        import servlet_env
    finally:
        sys.path.remove(str(SERVLETS))
    cases = [KeyError("k"), json.JSONDecodeError("m", "{bad", 1), OSError(2, "no", "f"),
             _EvilError(str(tmp_path / "MARKER")), ValueError(object())]
    for exc in cases:
        desc = servlet_env.describe_exception(exc)
        assert desc == servlet_wire.describe_exception(exc)
        loads_data(desc)  # plain data, whatever the exception
    assert loads_data(servlet_env.describe_exception(cases[3]))["args"] is None
    assert loads_data(servlet_env.describe_exception(cases[4]))["args"] is None
    assert not (tmp_path / "MARKER").exists()
