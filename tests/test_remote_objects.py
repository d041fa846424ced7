"""Remote objects (Runhouse's modules): `s.instance(Cls, ..., name=...)` makes an object
that lives in an env's servlet and keeps its state; its handle's methods run there;
another process finds it again by name (`s.get_instance`).

One local cluster (real Ray, a real uv env) is applied once for the module. Every test
runs its drivers over both routes a caller can take: "direct" (a Ray driver calling
the servlet actor) and "ssh" (RHPLAN_SERVLET_ROUTE=ssh: through rhplan's gateway on the
head and the servlet's socket, the frames of servlet_wire.py; on a local cluster the
gateway is reached by a plain TCP socket instead of an SSH channel). Drivers are
subprocesses (a process drives one Ray cluster) and report through one RESULT line.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from drivers import Cluster

HCL = """
cluster "c" {
  provider  = "local"
  resources = { CPU = 2, GPU = 0 }
}

env "objs" {
  cluster  = cluster.c
  reqs     = ["pip:six==1.16.0"]
}
"""

WORKING_DIR_MODULE = """
import os

class Tally:
    def __init__(self):
        self.seen = []
    def add(self, word):
        self.seen.append(word)
        return {"seen": self.seen, "cwd": os.getcwd()}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("remote-objects")
    rh = rhplan_in(base / "infra")
    rh.write(HCL)
    # the project's own code, beside the configuration: the env's working_dir
    rh.write(WORKING_DIR_MODULE, "objlib.py")
    (base / "scripts").mkdir()
    try:
        rh("apply", "-auto-approve").ok()
        yield Cluster(rh, base / "scripts")
    finally:
        rh("destroy", "-auto-approve").ok()


ROUTES = pytest.mark.parametrize("route", ["direct", "ssh"])


@ROUTES
def test_an_instance_keeps_its_state_and_another_process_finds_it(cluster: Cluster,
                                                                  route: str) -> None:
    name = f"counter-{route}"
    made = cluster.drive(f"""
        class BoomError(Exception):
            pass

        class Counter:
            def __init__(self, start, step=1):
                self.count = start
                self.step = step
            def incr(self):
                self.count += self.step
                return self.count
            def pid(self):
                return os.getpid()
            def boom(self, tag):
                raise BoomError(f"boom-{{tag}}")

        s = rhplan.servlet("objs", chdir=CHDIR)
        c = s.instance(Counter, 10, name={name!r}, step=2)
        out = {{"route": s.route, "key": c.key, "repr": repr(c)}}
        out["incr"] = [c.incr(), c.incr(), c.incr()]
        out["count"] = c.count()  # a plain attribute: its value
        out["count_with_args"] = catch(c.count, 1)
        out["boom"] = catch(c.boom, 7)
        out["missing_attr"] = catch(c.no_such_method)
        out["servlet_pid"] = c.pid()
        out["caller_pid"] = os.getpid()
        out["keys"] = s.keys()
        auto = s.instance(Counter, 0)
        out["auto_key"] = auto.key
        out["auto_deleted"] = auto.delete()
        emit(**out)
    """, route)
    assert made["route"] == route and made["key"] == name
    assert made["repr"] == f"<remote object {name!r} in servlet 'objs'>"
    assert made["incr"] == [12, 14, 16] and made["count"] == 16
    assert made["count_with_args"]["type"] == "TypeError", made
    assert "not callable" in made["count_with_args"]["msg"]
    boom = made["boom"]
    assert boom["type"] == "BoomError" and boom["msg"] == "boom-7", boom
    assert "Remote traceback (servlet 'objs')" in boom["notes"], boom
    assert 'raise BoomError(f"boom-{tag}")' in boom["notes"], boom
    assert made["missing_attr"]["type"] == "AttributeError", made
    assert made["servlet_pid"] != made["caller_pid"]
    assert name in made["keys"]
    assert made["auto_key"].startswith("counter-") and made["auto_key"] != name
    assert made["auto_deleted"] is True

    # another process: the same object, state and all, by its name only
    again = cluster.drive(f"""
        s = rhplan.servlet("objs", chdir=CHDIR)
        h = s.get_instance({name!r})
        out = {{"incr": h.incr(), "pid": h.pid()}}
        out["via_get_remote"] = s.get({name!r}, remote=True).incr()
        copy = h.fetch()  # a copy here: its class came by value, as it went
        out["copy"] = [type(copy).__name__, copy.count]
        out["call_method"] = h.call_method("incr")
        out["deleted"] = h.delete()
        out["deleted_again"] = s.delete({name!r})
        out["keys"] = s.keys()
        out["get_missing"] = catch(s.get_instance, {name!r})
        out["method_after_delete"] = catch(h.incr)
        emit(**out)
    """, route)
    assert again["incr"] == 18 and again["pid"] == made["servlet_pid"]
    assert again["via_get_remote"] == 20
    assert again["copy"] == ["Counter", 20]
    assert again["call_method"] == 22
    assert again["deleted"] is True and again["deleted_again"] is False
    assert name not in again["keys"]
    assert again["get_missing"]["type"] == "KeyError", again
    assert again["method_after_delete"]["type"] == "KeyError", again
    assert "s.instance(Class, name=...)" in again["method_after_delete"]["msg"]


@ROUTES
def test_a_class_by_import_path_or_from_the_callers_module(cluster: Cluster,
                                                            route: str) -> None:
    got = cluster.drive(f"""
        from mylib import Greeter  # the caller's own module: the env has no mylib

        s = rhplan.servlet("objs", chdir=CHDIR)
        letters = s.instance("collections:Counter", "hello", name="letters-{route}")
        out = {{"common": letters.most_common(1)}}
        letters.update("lll")
        out["l"] = letters.get("l")
        out["total"] = letters.total()
        g = s.instance(Greeter, "hi", name="greeter-{route}")
        out["greet"] = g.greet("there")
        out["module_in_env"] = s.call("importlib.util:find_spec", "mylib") is None
        out["by_name_call"] = s.call("json:dumps", [1, 2])  # still works
        out["no_colon"] = catch(s.instance, "collections")
        out["no_class"] = catch(s.instance, "collections:NoSuchClass")
        out["not_a_class"] = catch(s.instance, 42)
        out["keys"] = sorted(k for k in s.keys() if k.endswith("-{route}"))
        for key in out["keys"]:
            s.delete(key)
        emit(**out)
    """, route, files={"mylib.py": """
        class Greeter:
            def __init__(self, word):
                self.word = word
            def greet(self, who):
                return f"{self.word} {who}"
    """})
    assert got["common"] == [["l", 2]]
    assert got["l"] == 5 and got["total"] == 8
    assert got["greet"] == "hi there"
    assert got["module_in_env"] is True
    assert got["by_name_call"] == "[1, 2]"
    assert got["no_colon"]["type"] == "RhplanError" and '"module:Class"' in got["no_colon"]["msg"]
    assert got["no_class"]["type"] == "AttributeError", got
    assert "Remote traceback" in got["no_class"]["notes"], got
    assert got["not_a_class"]["type"] == "TypeError", got
    assert got["keys"] == [f"greeter-{route}", f"letters-{route}"]


@ROUTES
def test_a_class_from_the_envs_working_dir_by_import_path(cluster: Cluster,
                                                          route: str) -> None:
    got = cluster.drive(f"""
        s = rhplan.servlet("objs", chdir=CHDIR)
        t = s.instance("objlib:Tally", name="tally-{route}")
        t.add("a")
        out = t.add("b")
        out["here"] = catch(__import__, "objlib")  # the caller does not have it
        t.delete()
        emit(**out)
    """, route)
    assert got["seen"] == ["a", "b"]
    assert got["cwd"].endswith("/workdirs/objs"), got  # the synced copy
    assert got["here"]["type"] == "ModuleNotFoundError", got


# -- through SSH only: a real sshd, a caller whose one way out is the SSH proxy ------

@pytest.mark.long  # a second cluster (sshd, Ray over SSH): the gateway route is above
def test_remote_objects_through_ssh_only(box: Any) -> None:
    made = box.drive("""
        class Acc:
            def __init__(self):
                self.items = []
            def add(self, x):
                self.items.append(x)
                return sum(self.items)

        s = rhplan.servlet("remote", chdir=CHDIR)
        a = s.instance(Acc, name="acc")
        emit(route=s.route, sums=[a.add(3), a.add(4)], items=a.items(),
             letters=s.instance("collections:Counter", "aab", name="ab").most_common(1))
    """)
    made = {k: v for k, v in made.items() if not k.startswith("_")}  # _stdout, _stderr
    assert made == {"route": "ssh", "sums": [3, 7], "items": [3, 4], "letters": [["a", 2]]}
    again = box.drive("""
        s = rhplan.servlet("remote", chdir=CHDIR)
        h = s.get_instance("acc")
        try:
            h.add()
        except TypeError as exc:
            error = [type(exc).__name__, "Remote traceback" in "".join(exc.__notes__)]
        emit(sum=h.add(1), error=error, deleted=[h.delete(), s.delete("ab")], keys=s.keys())
    """)
    again = {k: v for k, v in again.items() if not k.startswith("_")}
    assert again == {"sum": 8, "error": ["TypeError", True], "deleted": [True, True],
                     "keys": []}
