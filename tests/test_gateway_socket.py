"""The gateway's fast path: a servlet's own socket (rhplan/ray/servlets/gateway_links.py and
servlet_server.py), without SSH or Ray in the way.

A real EnvServlet (servlet_env.py's class, in a process of its own, as on a head)
listens on its abstract UNIX socket; a real gateway (gateway_server.Gateway) serves a TCP
listener on 127.0.0.1; the caller is the real transport and ServletHandle. The ssh
route as a whole (sshd, Ray, network namespaces) is tests/test_remote_ssh_only.py.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rhplan.ray.servlets import gateway, gateway_open, gateway_server, servlet_wire, transport
from rhplan.ray.servlets.handle import ServletHandle

SERVLETS = Path(gateway.__file__).resolve().parent
sys.path.insert(0, str(SERVLETS))
import host_script  # noqa: E402 - the files shipped to hosts, imported as modules here
import servlet_env  # noqa: E402
import servlet_server  # noqa: E402

SERVLET = """
import sys
sys.path.insert(0, sys.argv[1])
import servlet_env
if sys.argv[5:] == ["older"]:  # as a servlet an older rhplan started: no call_fn
    serve = servlet_env.EnvServlet.serve_request
    def older(self, op, args, sink):
        if op == "call_fn":
            raise ValueError(f"unknown request {op!r}")  # what its serve_request says
        return serve(self, op, args, sink)
    servlet_env.EnvServlet.serve_request = older
servlet_env.EnvServlet(sys.argv[2], sys.argv[3], sys.argv[4])
print("STARTED", flush=True)
sys.stdin.read()  # until the test closes it
"""


@dataclass
class Rig:
    key: str
    name: str
    gw: gateway_server.Gateway
    handle: ServletHandle
    caller: transport.Gateway


def _wait_listening(address: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(address)
                return
            except OSError:
                time.sleep(0.01)
    pytest.fail("the servlet did not listen on its socket within 30 s")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    env_dir = tmp_path_factory.mktemp("env")
    with socket.socket() as free:  # a port with no Ray there: the rig's "cluster"
        free.bind(("127.0.0.1", 0))
        key = f"127.0.0.1:{free.getsockname()[1]}"
    name = f"sock-test-{uuid.uuid4().hex[:8]}"  # its socket's name is this run's alone
    proc = subprocess.Popen([sys.executable, "-c", SERVLET, str(SERVLETS), name, str(env_dir),
                             key], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    token = os.urandom(16).hex().encode()
    gw = gateway_server.Gateway(key, token)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=gw.serve_connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    def opener() -> tuple[Any, dict[str, Any]]:
        chan = socket.create_connection(srv.getsockname(), timeout=10)
        return chan, gateway_open.handshake(chan, token, "the test gateway")

    caller = transport.Gateway("cluster.test", opener)
    try:
        _wait_listening(servlet_wire.servlet_socket(key, name), proc)
        yield Rig(key, name, gw, ServletHandle(name, None, "test", caller), caller)
    finally:
        caller.close()
        srv.close()
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_both_host_scripts_and_the_caller_share_one_wire_module() -> None:
    """The servlet's modules and gateway.py take frames, packing, socket names and
    exception descriptions from servlet_wire.py (uploaded beside them), not from copies."""
    from rhplan.ray.servlets import remote_errors

    assert servlet_env.servlet_socket is sys.modules["servlet_wire"].servlet_socket
    assert gateway.wire is servlet_wire and gateway.out_of_band is servlet_wire.out_of_band
    assert servlet_env.servlet_socket("10.0.0.1:6379", "np") == servlet_wire.servlet_socket(
        "10.0.0.1:6379", "np")
    assert servlet_wire.servlet_socket("a", "np") != servlet_wire.servlet_socket("b", "np")
    big = os.urandom(servlet_wire.OUT_OF_BAND + 1)
    value = ("ok", big, {"n": 1})
    pieces = servlet_server.pack(servlet_server.out_of_band(value))
    assert any(memoryview(p).nbytes == len(big) for p in pieces[2:])  # not in the pickle
    body = b"".join(bytes(p) for p in pieces)
    for unpack in (servlet_wire.unpack, remote_errors.unpack_data):
        got = unpack(body)
        assert (got[0], bytes(got[1]), got[2]) == value
    assert not [(m.__name__, n) for m in (gateway, host_script, servlet_env, servlet_server)
                for n in ("_plain", "_pack", "_unpack", "_out_of_band") if hasattr(m, n)]
    assert servlet_server.FrameReader is sys.modules["servlet_wire"].FrameReader
    assert servlet_wire.FrameReader is servlet_wire.FrameReader


def test_the_servlet_class_travels_by_value_with_what_it_uses_of_the_wire() -> None:
    """On a head, EnvServlet and what it uses of the host-side modules reach the env's
    interpreter by value (host_script.start registers SERVLET_MODULES): all of it must
    pickle (a module-level struct.Struct, for one, does not), and in an interpreter
    that has none of those files on its path it must still run (rhplan is not
    installed on hosts)."""
    from ray import cloudpickle

    modules = [sys.modules[m] for m in host_script.SERVLET_MODULES]
    assert {m.__name__ for m in modules} >= {"servlet_env", "servlet_wire", "servlet_server"}
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        blob = cloudpickle.dumps(servlet_env.EnvServlet)
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)
    # a fresh Python, isolated (-I: no script folder or PYTHONPATH on its path)
    check = ("import sys, tempfile; from ray import cloudpickle; cls = cloudpickle.loads("
             "sys.stdin.buffer.read()); s = cls('e', tempfile.mkdtemp()); "
             "r = s.call(cloudpickle.dumps((len, ('abc',), {}))); "
             "assert r[0] == 'ok', r; print(cls.__name__, cloudpickle.loads(r[1]), "
             "'servlet_env' in sys.modules)")
    res = subprocess.run([sys.executable, "-I", "-c", check], input=blob,
                         capture_output=True, timeout=120)
    assert res.stdout.decode().split() == ["EnvServlet", "3", "False"], res.stderr.decode()


def test_calls_objects_and_commands_through_the_servlets_socket(rig: Rig) -> None:
    s = rig.handle
    assert s.call("operator:add", 2, 3) == 5
    data = os.urandom(10 << 20)
    s.put("blob", data)
    assert s.get("blob") == data
    assert s.keys() == ["blob"]
    with pytest.raises(KeyError, match="no object 'nothing'"):
        s.get("nothing")
    assert s.delete("blob") is True and s.keys() == []
    assert s.run(["sh", "-c", "echo out; echo err >&2; exit 3"]) == {
        "returncode": 3, "stdout": "out\n", "stderr": "err\n"}
    assert s.status()["env"] == rig.name
    # served by the servlet itself: the gateway never joined Ray
    assert rig.gw.via_ray.ray is None and not rig.gw.via_ray.joining


def test_a_calls_output_streams_back_before_it_ends(rig: Rig) -> None:
    got: list[tuple[int, bytes, float]] = []
    start = time.monotonic()

    def on_output(stream: int, data: bytes) -> None:
        got.append((stream, data, time.monotonic() - start))

    from ray import cloudpickle
    code = ("import sys, time\n"
            "print('first', flush=True)\n"
            "print('to err', file=sys.stderr, flush=True)\n"
            "time.sleep(1.5)\n"
            "print('last', flush=True)\n")
    payload = cloudpickle.dumps(("builtins:exec", (code,), {}))
    result = rig.caller.request("call", rig.name, (payload, True), timeout=30,
                                on_output=on_output)
    took = time.monotonic() - start
    assert result[0] == "ok", result
    text = {1: b"".join(d for s, d, _ in got if s == 1), 2: b"".join(
        d for s, d, _ in got if s == 2)}
    assert text == {1: b"first\nlast\n", 2: b"to err\n"}
    first_at = next(t for s, d, t in got if d.startswith(b"first"))
    assert first_at < took - 1.0, (first_at, took)


def test_many_threads_share_one_connection(rig: Rig) -> None:
    s = rig.handle
    connects = rig.caller.connects
    wrong: list[Any] = []

    def work(i: int) -> None:
        for j in range(50):
            got = s.call("operator:add", i, j)
            if got != i + j:
                wrong.append((i, j, got))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not wrong and not any(t.is_alive() for t in threads)
    assert rig.caller.connects == connects


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_the_servlets_socket_answers_only_its_own_user(rig: Rig) -> None:
    probe = (
        "import os, socket, struct, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(10)\n"
        "s.connect(\"\\0\" + sys.argv[1])  # abstract: a NUL first\n"
        "try:\n"
        "    s.sendall(sys.stdin.buffer.read())\n"
        "    print(repr(s.recv(100)))\n"
        "except (ConnectionResetError, BrokenPipeError):  # closed before it was read\n"
        "    print(repr(b''))\n")
    body = b"".join(bytes(p) for p in servlet_wire.pack(("keys", ())))
    request = struct.pack(">IBI", 1, servlet_wire.REQUEST, len(body)) + body
    out = subprocess.run([sys.executable, "-I", "-c", probe,
                          servlet_wire.servlet_socket(rig.key, rig.name)[1:]], input=request,
                         capture_output=True, timeout=60)
    # connected (abstract sockets have no permissions) but closed without an answer
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == b"b''"
    # the same request from this user is answered
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(servlet_wire.servlet_socket(rig.key, rig.name))
        s.sendall(request)
        req, kind, _ = servlet_wire.read_frame(s.recv)
    assert (req, kind) == (1, servlet_wire.RESULT)


def test_a_long_call_does_not_hold_up_the_next(rig: Rig) -> None:
    s = rig.handle
    slow = threading.Thread(target=s.call, args=("time:sleep", 3))
    slow.start()
    try:
        for _ in range(3):  # while it sleeps, more requests than idle threads
            t0 = time.monotonic()
            assert s.call("operator:add", 1, 1) == 2
            assert time.monotonic() - t0 < 2
    finally:
        slow.join(30)


def test_a_servlet_without_its_own_socket_goes_through_ray(rig: Rig) -> None:
    # no servlet listens under this name: the gateway turns to Ray, which is not
    # there either (the rig's address has no GCS): one clear error, within seconds
    t0 = time.monotonic()
    with pytest.raises(Exception, match="could not join Ray .* is not answering"):
        rig.caller.request("keys", "no-such-servlet", (), timeout=60)
    assert time.monotonic() - t0 < 15
    assert rig.gw.via_ray.ray is None and rig.gw.via_ray.joining


BASE = 10


def test_functions_sent_again_see_what_changed(rig: Rig) -> None:
    """A function is pickled once here and rebuilt once in the servlet while nothing it
    captures changes; a closure or global that changes is seen at the next call, and
    what a call changes in its copy is never carried to the next."""
    global BASE
    from rhplan.ray.servlets import pickling

    s = rig.handle
    n = 1

    def add(x: int) -> int:
        return x + n + BASE

    def who() -> int:
        return id(who)  # the servlet's copy of this function

    assert s.call(add, 1) == 12
    n = 5
    assert s.call(add, 1) == 16  # a closure that changed
    BASE = 100
    try:
        assert s.call(add, 1) == 106  # a global that changed
    finally:
        BASE = 10
    assert add in pickling._fn_pickles  # pickled once per change, not per call
    first = s.call(who)
    assert [s.call(who) for _ in range(3)] == [first] * 3  # rebuilt once there

    items = [1]

    def grow() -> int:
        items.append(1)  # a mutable capture: a fresh copy per call, as before
        return len(items)

    assert [s.call(grow) for _ in range(3)] == [2, 2, 2]
    assert grow not in pickling._fn_pickles

    def bump() -> int:
        global BASE
        BASE += 1  # rebinds a global: never kept, here or there
        return BASE

    assert [s.call(bump) for _ in range(3)] == [11, 11, 11] and BASE == 10

    zero = 0.0

    def sign() -> str:
        return str(zero)

    assert s.call(sign) == "0.0"
    zero = -0.0  # equal to 0.0, yet another value
    assert s.call(sign) == "-0.0"

    def fails() -> None:
        raise KeyError(f"nothing at {n}")

    for _ in range(2):
        with pytest.raises(KeyError, match="nothing at 5"):
            s.call(fails)


def test_a_servlet_of_an_older_rhplan_gets_functions_the_older_way(
        rig: Rig, tmp_path: Path) -> None:
    name = f"sock-old-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-c", SERVLET, str(SERVLETS), name,
                             str(tmp_path), rig.key, "older"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        _wait_listening(servlet_wire.servlet_socket(rig.key, name), proc)
        old = ServletHandle(name, None, "test", rig.caller)
        k = 3
        assert [old.call(lambda: k * 2) for _ in range(2)] == [6, 6]
        assert old.call("operator:add", 1, 2) == 3
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


def test_the_gateway_boots_from_its_files_alone(tmp_path: Path) -> None:
    """gateway_boot writes every file of the gateway from the one command's stdin into
    the folder named by their hash and runs the entry from there (on a host, nothing of
    rhplan is installed): with no Ray at the address, the gateway's own error comes
    back. A second run finds the files there and writes nothing."""
    from rhplan.ray.servlets import gateway_start

    folder = tmp_path / f"gateway-{gateway_start.GATEWAY_SHA}"
    token = tmp_path / "token"
    token.write_bytes(b"t")
    with socket.socket() as free:  # a port nobody listens on: no Ray there
        free.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{free.getsockname()[1]}"
    argv = [sys.executable, "-c", gateway_start._GATEWAY_BOOT.text, str(folder),
            gateway_start._LAYOUT, "ensure", dead, str(tmp_path / "temp"), str(token),
            str(folder)]
    for _ in range(2):
        p = subprocess.run(argv, input=gateway_start._STDIN, capture_output=True,
                           timeout=120, check=False, cwd=tmp_path)
        assert p.returncode == 1, p.stderr
        assert json.loads(p.stdout.splitlines()[-1]) == {
            "error": f"the gateway did not start: Ray at {dead} is not answering"}
        for name in gateway_start.GATEWAY_FILES:
            assert (folder / name).read_bytes() == (SERVLETS / name).read_bytes(), name
        assert not list(folder.glob("*.tmp"))
