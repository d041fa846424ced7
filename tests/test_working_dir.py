"""An env's working_dir (issue 13, item 1), against a real local cluster (its own Ray head,
a uv venv, a servlet) applied once for the module, and a real git repository.

- default: the git repository holding the configuration; .gitignore, .rhplanignore and
  rhplan's own files (state, saved plans, .rhplan/, .env) stay behind;
- the servlet's current directory is the synced copy, on sys.path: a caller's function
  imports a sibling module of its project; requirements.txt at the root is installed;
- editing one file re-syncs that file only, keeps the servlet running, and the next call
  sees the new code;
- refused before anything is synced: /, a home folder, a symlink loop, over the guard.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from drivers import run_driver

HCL = """
cluster "c" {
  provider  = "local"
  resources = { CPU = 2, GPU = 0 }
}

env "e" {
  cluster = cluster.c
}
"""

# the caller's function: imports its project's module inside the servlet
DRIVER = """
import json, os, sys
import rhplan

def probe():
    import mylib
    return {"value": mylib.VALUE, "cwd": os.getcwd(), "first_path": sys.path[0],
            "helper": mylib.helper()}

s = rhplan.servlet("e", chdir=sys.argv[1])
print("RESULT " + json.dumps(s.call(probe)), flush=True)
"""


@dataclass
class Project:
    rh: Any
    root: Path  # the git repository (the default working_dir)
    scripts: Path

    @property
    def copy(self) -> Path:
        return self.rh.cluster_dir("c").absolute() / "workdirs" / "e"

    def call(self) -> dict[str, Any]:
        script = self.scripts / f"driver_{uuid.uuid4().hex[:8]}.py"
        script.write_text(DRIVER)
        return run_driver(script, self.rh.dir)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("workdir")
    root = base / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True, timeout=30)
    (root / ".gitignore").write_text("data/\n")
    (root / ".rhplanignore").write_text("scratch.txt\n")
    (root / "mylib.py").write_text("from pkg import helper\nVALUE = 1\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("def helper():\n    return 'helped'\n")
    (root / "requirements.txt").write_text("tomli_w==1.0.0\n")
    (root / "pkg" / ".gitignore").write_text("*.tmp\n")  # a nested one: git is asked
    (root / "pkg" / "junk.tmp").write_text("left behind\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"\0" * 4096)
    (root / "scratch.txt").write_text("not for the host\n")
    rh = rhplan_in(root / "infra")
    rh.write(HCL)
    (rh.dir / ".env").write_text("NOT_SHIPPED=1\n")
    (base / "scripts").mkdir()
    try:
        yield Project(rh, root, base / "scripts")
    finally:
        rh("destroy", "-auto-approve").ok()
        assert not (rh.cluster_dir("c") / "workdirs").exists()


def test_plan_syncs_the_git_repository_and_installs_its_requirements(project: Project
                                                                     ) -> None:
    out = project.rh("plan", "-no-color").ok().stdout
    assert "working_dir_hash" in out and "workdirs/e" in out, out
    assert '"reqs:.."' in out, out  # the repository's requirements.txt, as reqs:./ does


def test_apply_syncs_what_belongs_and_the_servlet_runs_there(project: Project) -> None:
    rh = project.rh
    rh("apply", "-auto-approve").ok()
    copy = project.copy
    synced = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file())
    # infra/.gitignore: rhplan keeps .rhplan/ out of git in a work tree (gitignore.py)
    assert synced == [".gitignore", ".rhplan-manifest.json", "infra/.gitignore",
                      "mylib.py", "pkg/.gitignore", "pkg/__init__.py", "requirements.txt"
                      ], synced
    got = project.call()
    assert got == {"value": 1, "cwd": str(copy), "first_path": str(copy), "helper": "helped"}
    # `rhplan run` runs where the servlet does: a sibling module imports the same way
    ran = rh("run", "e", "--", "python", "-c", "import os, mylib; print(os.getcwd(), mylib.VALUE)")
    assert ran.ok().stdout.split() == [str(copy), "1"], ran.describe()
    attrs = rh.resources()["env.e"]["attributes"]
    assert any(i.startswith("tomli-w==1.0.0") for i in attrs["installed"]["reqs:.."]), attrs
    # nothing left to do: the state, its lock and a saved plan in the folder change nothing
    rh("plan", "-out", "p.plan").ok()
    assert rh("plan", "-detailed-exitcode").returncode == 0


def test_editing_one_file_resyncs_it_and_keeps_the_servlet(project: Project) -> None:
    rh = project.rh
    pid = rh.resources()["env.e"]["attributes"]["servlet_pid"]
    untouched = (project.copy / "pkg" / "__init__.py").stat().st_mtime_ns
    (project.root / "mylib.py").write_text("from pkg import helper\nVALUE = 2\n")
    plan = rh("plan", "-no-color").ok().stdout
    assert "code re-synced; its servlet keeps running" in plan, plan
    assert "servlet_pid" not in plan, plan
    rh("apply", "-auto-approve").ok()
    assert rh.resources()["env.e"]["attributes"]["servlet_pid"] == pid
    assert (project.copy / "pkg" / "__init__.py").stat().st_mtime_ns == untouched
    assert project.call()["value"] == 2  # re-imported on this call, same process
    # a new sibling module is found too (import caches invalidated)
    (project.root / "mylib.py").write_text("from pkg import helper\nfrom extra import V as VALUE\n")
    (project.root / "extra.py").write_text("V = 3\n")
    rh("apply", "-auto-approve").ok()
    assert project.call()["value"] == 3
    assert rh.resources()["env.e"]["attributes"]["servlet_pid"] == pid


@pytest.mark.parametrize("case", ["root", "home", "loop", "guard"])
def test_refused_before_anything_is_synced(case: str, tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    attr = {"root": 'working_dir = "/"', "home": 'working_dir = "~"',
            "loop": 'working_dir = "loop"',
            "guard": 'working_dir_max_mb = 0.001'}[case]
    rh.write(HCL.replace("cluster = cluster.c\n", f"cluster = cluster.c\n  {attr}\n"))
    (rh.dir / "loop").symlink_to(rh.dir / "loop")
    (rh.dir / "blob.bin").write_bytes(os.urandom(4096))
    msg = rh("plan", "-refresh=false").error_line()
    assert "main.hcl:8:" in msg and "working_dir" in msg, msg
    want = {"root": "whole filesystem", "home": "home folder", "loop": "symlink loop",
            "guard": "more than the 1.0 KiB limit"}[case]
    assert want in msg, msg
    if case == "guard":
        assert "4.0 KiB" in msg and "working_dir_max_mb" in msg and ".rhplanignore" in msg
    assert not rh.resources() and not rh.cluster_dir("c").exists()


def test_a_resync_is_one_command_and_a_wiped_host_is_noticed(tmp_path: Path) -> None:
    """The fast path (rhplan/hosts/sync.py): with this machine's cache of the host's manifest,
    a re-sync after one edit is ONE command and no file transfer; a host whose copy was
    wiped (or written by another machine) is synced the slow way, whole."""
    from rhplan import working_dir
    from rhplan.hosts.connection import LocalConnection

    root, remote, cache = tmp_path / "code", str(tmp_path / "host" / "wd"), tmp_path / "cache"
    for i in range(30):
        (root / f"p{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"p{i % 3}" / f"m{i}.py").write_text(f"X = {i}\n")
    conn = LocalConnection()
    puts: list[str] = []
    real_put = conn.put_bytes
    conn.put_bytes = lambda data, path, mode=0o644: (puts.append(path),  # type: ignore
                                                     real_put(data, path, mode))[1]
    assert working_dir.sync_to(conn, root, remote, 200, cache).files_sent == 30
    (root / "p0" / "m0.py").write_text("X = 'edited'\n")
    (root / "p1" / "m1.py").unlink()
    before, puts[:] = conn.commands_run, []
    res = working_dir.sync_to(conn, root, remote, 200, cache)
    assert (res.files_sent, res.files_deleted) == (1, 1)
    assert conn.commands_run - before == 1 and puts == []
    assert Path(remote, "p0", "m0.py").read_text() == "X = 'edited'\n"
    assert not Path(remote, "p1", "m1.py").exists()
    manifest = json.loads(Path(remote, ".rhplan-manifest.json").read_text())
    assert manifest["tree_hash"] == res.tree_hash and len(manifest["files"]) == 29
    subprocess.run(["rm", "-rf", remote], check=True, timeout=30)
    assert working_dir.sync_to(conn, root, remote, 200, cache).files_sent == 29
    assert Path(remote, "p2", "m2.py").read_text() == "X = 2\n"


# Runs in its own interpreter: EnvServlet (servlet_env.py, as Ray runs it) in a working_dir,
# a call, then a re-sync of mylib.py that keeps its size and its whole second (the
# bytecode cache's view of a source), then a call that must see the new code.
SAME_SECOND = r"""
import json, os, pickle, sys
sys.dont_write_bytecode = False
servlets, env_dir, wd = sys.argv[1:4]
sys.path.insert(0, servlets)
import servlet_env
T = 1_700_000_000 * 10**9
def put(rel, text, at):
    path = os.path.join(wd, rel)
    with open(path + ".tmp", "w") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)  # as a sync writes: a new file
    os.utime(path, ns=(at, at))
put("mylib.py", "VALUE = 1\n", T + 100_000_000)
put(".rhplan-manifest.json", "{}", T + 200_000_000)
s = servlet_env.EnvServlet("e", env_dir)
def fn():
    import mylib
    return mylib.VALUE
first = pickle.loads(s._call(lambda: (fn, (), {}))[1])
put("mylib.py", "VALUE = 2\n", T + 300_000_000)
put(".rhplan-manifest.json", "{}", T + 400_000_000)
second = pickle.loads(s._call(lambda: (fn, (), {}))[1])
print(json.dumps([first, second, os.getcwd(), sys.path[0]]))
"""


def test_a_same_size_edit_within_a_second_is_reimported(tmp_path: Path) -> None:
    """Before: the reload read the old bytecode (cached by the source's whole second and
    size), so a quick same-size edit kept running the old code."""
    import rhplan.ray.servlets

    env_dir, wd = tmp_path / "env", tmp_path / "workdir"
    (env_dir / "rhplan").mkdir(parents=True)
    wd.mkdir()
    (env_dir / "rhplan" / "working_dir.json").write_text(json.dumps({"path": str(wd)}))
    servlets = str(Path(rhplan.ray.servlets.__file__).parent)
    proc = subprocess.run([sys.executable, "-c", SAME_SECOND, servlets, str(env_dir), str(wd)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [1, 2, str(wd), str(wd)]


# The same servlet; only helpers.py changes, and mylib (unchanged) took `twice` from it
# with `from helpers import twice`: reloading helpers alone left mylib's old binding.
FROM_IMPORT = SAME_SECOND.replace(
    'put("mylib.py", "VALUE = 1\\n", T + 100_000_000)',
    'put("helpers.py", "def twice(x):\\n    return 2 * x\\n", T + 50_000_000)\n'
    'put("mylib.py", "from helpers import twice\\nVALUE = 1\\n'
    'def value():\\n    return twice(1)\\n", T + 100_000_000)').replace(
    'put("mylib.py", "VALUE = 2\\n", T + 300_000_000)',
    'put("helpers.py", "def twice(x):\\n    return 20 * x\\n", T + 300_000_000)').replace(
    "return mylib.VALUE", "return mylib.value()")


def test_an_unchanged_module_sees_what_it_imported_from_a_changed_one(tmp_path: Path
                                                                      ) -> None:
    """Before: only rewritten modules were reloaded, so mylib kept the old `twice`."""
    import rhplan.ray.servlets

    assert FROM_IMPORT.count("helpers.py") == 2 and "mylib.value()" in FROM_IMPORT
    env_dir, wd = tmp_path / "env", tmp_path / "workdir"
    (env_dir / "rhplan").mkdir(parents=True)
    wd.mkdir()
    (env_dir / "rhplan" / "working_dir.json").write_text(json.dumps({"path": str(wd)}))
    servlets = str(Path(rhplan.ray.servlets.__file__).parent)
    proc = subprocess.run([sys.executable, "-c", FROM_IMPORT, servlets, str(env_dir), str(wd)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [2, 20, str(wd), str(wd)]
