"""Continuity: a servlet restarted by apply (an env_vars change, a package change) keeps
the objects put into it and the remote objects made in it, where they can be pickled;
the apply names the ones it could not keep.

host_script.py's `start` asks the servlet it replaces to write its store to
ENV/rhplan/objects.pickle (0600) and the new servlet loads it (then removes it). One
local cluster (real Ray, a real uv env) is applied once; the tests walk it in order.
"""
from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from drivers import Cluster

from rhplan.ray.servlets import gateway

HCL = """
cluster "c" {
  provider  = "local"
  resources = { CPU = 2, GPU = 0 }
}

env "keep" {
  cluster  = cluster.c
  reqs     = ["pip:six==1.16.0"]
  env_vars = { A = "1" }
}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("continuity")
    rh = rhplan_in(base / "infra")
    rh.write(HCL)
    # a class of the project's own code (the env's working_dir), kept by reference
    rh.write("class Box:\n    def __init__(self):\n        self.items = []\n"
             "    def add(self, x):\n        self.items.append(x)\n        return self.items\n",
             "keeplib.py")
    (base / "scripts").mkdir()
    try:
        rh("apply", "-auto-approve").ok()
        yield Cluster(rh, base / "scripts")
    finally:
        rh("destroy", "-auto-approve").ok()


READ_BACK = """
s = rhplan.servlet("keep", chdir=CHDIR)
emit(keys=s.keys(), plain=s.get("plain"), incr=s.get_instance("counter").incr(),
     box=s.get_instance("box").add(len(s.keys())),
     a=s.call("os:getenv", "A"), pid=s.call("os:getpid"),
     six=s.call("importlib.metadata:version", "six"))
"""


def _pid(cluster: Cluster) -> int:
    return int(cluster.rh.resources()["env.keep"]["attributes"]["servlet_pid"])


def test_env_vars_change_keeps_objects_and_names_the_unpicklable(cluster: Cluster) -> None:
    made = cluster.drive("""
        class Counter:
            def __init__(self):
                self.n = 0
            def incr(self):
                self.n += 1
                return self.n

        s = rhplan.servlet("keep", chdir=CHDIR)
        s.put("plain", {"rows": [1, 2, 3]})
        c = s.instance(Counter, name="counter")
        c.incr(), c.incr()
        s.instance("threading:Lock", name="lock")  # made there: it cannot be pickled
        s.instance("keeplib:Box", name="box").add("first")
        emit(keys=s.keys())
    """, "direct")
    assert made["keys"] == ["box", "counter", "lock", "plain"]
    before = _pid(cluster)

    cluster.rh.edit('A = "1"', 'A = "2"')
    res = cluster.rh("apply", "-auto-approve").ok()
    assert "1 changed" in res.stdout, res.describe()
    assert _pid(cluster) != before, "an env_vars change restarts the servlet"
    # the one it could not keep is named, with why; the others are not
    assert "Warning: servlet 'keep' restarted without these objects: lock (TypeError" \
        in res.stderr, res.describe()
    assert not any(k in res.stderr for k in ("box", "counter", "plain")), res.describe()

    got = cluster.drive(READ_BACK, "ssh")
    assert got["keys"] == ["box", "counter", "plain"]
    assert got["box"] == ["first", 3]  # its class comes from the working_dir
    assert got["plain"] == {"rows": [1, 2, 3]}
    assert got["incr"] == 3  # its state came along
    assert got["a"] == "2" and got["pid"] == _pid(cluster)


def test_package_change_keeps_objects(cluster: Cluster) -> None:
    before = _pid(cluster)
    cluster.rh.edit('"pip:six==1.16.0"', '"pip:six==1.17.0"')
    res = cluster.rh("apply", "-auto-approve").ok()
    assert "its servlet" in res.stdout or "1 changed" in res.stdout, res.describe()
    assert "Warning" not in res.stderr, res.describe()
    assert _pid(cluster) != before

    got = cluster.drive(READ_BACK, "direct")
    assert got["six"] == "1.17.0"
    assert got["keys"] == ["box", "counter", "plain"] and got["incr"] == 4
    assert got["box"] == ["first", 3, 3]
    snapshot = cluster.rh.env_dir("c", "keep") / "rhplan" / "objects.pickle"
    assert not snapshot.exists(), "the snapshot is read once, then removed"


SNAPSHOT = """
import json, os, stat, sys
sys.path.insert(0, sys.argv[1])
import servlet_env, servlet_objects
env_dir = sys.argv[2]
old = servlet_env.EnvServlet("snap", env_dir)
old.store["x"] = {"a": 1}
old.store["fn"] = lambda v: v + 1  # by value, as cloudpickle sends it
old.store["lock"] = __import__("threading").Lock()
kept = old.snapshot()
path = os.path.join(env_dir, servlet_objects.SNAPSHOT_FILE)
mode = stat.S_IMODE(os.stat(path).st_mode)
new = servlet_env.EnvServlet("snap", env_dir)
print(json.dumps({"kept": kept, "mode": mode, "restored": new.ready()["restored"],
                  "x": new.store["x"], "fn": new.store["fn"](1),
                  "left": os.path.exists(path)}))
"""


def test_snapshot_file_is_private_and_read_once(tmp_path: Path) -> None:
    """The store file holds the user's objects: 0600, and gone once loaded."""
    servlets = Path(gateway.__file__).resolve().parent
    proc = subprocess.run([sys.executable, "-c", SNAPSHOT, str(servlets), str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.splitlines()[-1])
    assert got["kept"]["kept"] == ["fn", "x"]
    assert "lock" in got["kept"]["lost"] and "pickle" in got["kept"]["lost"]["lock"]
    assert stat.S_IMODE(got["mode"]) == 0o600
    assert got["restored"] == {"kept": ["fn", "x"], "lost": {}}
    assert got["x"] == {"a": 1} and got["fn"] == 2
    assert got["left"] is False
