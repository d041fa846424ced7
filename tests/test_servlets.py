"""Env servlets end to end: one local cluster (its own Ray head) with two envs, each
with a servlet running in the env's interpreter, reached through `rhplan.servlet`
and the CLI. Nothing is mocked: real Ray, real uv venvs, real installs from PyPI,
real signals.

Starting a Ray head costs seconds, so the module applies ONE configuration once
(`applied`) and the tests below walk it in file order: read-only checks first, then
a package change, then a servlet killed by hand. The fixture's finalizer destroys
it and checks that nothing of that cluster's Ray is left running; other Rays on the
machine (another test's, a developer's) are never looked at or touched.

Every `rhplan.servlet` call runs in a driver SUBPROCESS: Ray reads its RAY_*
settings when imported, and a process drives one Ray cluster at a time, so the
pytest process never imports Ray. Two driver interpreters are used: this venv's
(no numpy, no tomli_w, no termcolor: the env packages must come from the env), and a
small uv venv with numpy on top of this one, for the Runhouse example whose result
is a numpy scalar. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from canary import canary_secret
from drivers import run_driver
from rayprocs import alive, cluster_processes, temp_dir_for

SECRET_VAR = "RHPLAN_TEST_SECRET"
# Unique, so finding it anywhere it should not be can only mean it leaked.
SECRET = canary_secret("servlets")
NUMPY = "numpy==2.4.6"
UV = str(Path(sys.executable).parent / "uv")
HCL = f"""
cluster "c" {{
  provider  = "local"
  resources = {{ CPU = 2, GPU = 0 }}
  create_default_env = false
}}

secret "s" {{
  from_env = ["{SECRET_VAR}"]
}}

env "np_env" {{
  cluster  = cluster.c
  reqs     = ["pip:{NUMPY}", "pip:tomli_w==1.0.0"]
  env_vars = {{ X = "x-from-np_env" }}
  secrets  = [secret.s]
  compute  = {{ CPU = 1 }}
}}

env "plain" {{
  cluster  = cluster.c
  reqs     = ["pip:termcolor==2.4.0"]
  env_vars = {{ Y = "y-from-plain" }}
}}
"""

# Put in front of every driver script: argv[1] is the configuration folder; the
# script reports through one `RESULT {json}` line.
PRELUDE = """
import json, os, sys
import rhplan
from rhplan import servlet  # bound now: see test_rhplan_servlet_can_be_called_twice
CHDIR = sys.argv[1]
def emit(**values):
    print("RESULT " + json.dumps(values), flush=True)
"""


@dataclass
class Applied:
    rh: Any  # conftest.Rhplan bound to the configuration folder
    np_python: str  # a driver interpreter that has numpy
    root: Path  # the cluster's folder (root_dir)
    temp_dir: str  # its Ray head's temp dir
    scripts: Path  # where driver scripts are written
    seen_pids: set[int] = field(default_factory=set)  # every servlet pid met

    def env_dir(self, env: str) -> Path:
        return self.root / "envs" / env

    def pid(self, env: str) -> int:
        pid = self.rh.resources()[f"env.{env}"]["attributes"]["servlet_pid"]
        assert isinstance(pid, int), self.rh.resources()[f"env.{env}"]
        self.seen_pids.add(pid)
        return pid

    def drive(self, body: str, python: str = sys.executable) -> dict[str, Any]:
        """Run a driver script (PRELUDE + body) in a subprocess; return what it emitted.
        The driver's environment lacks the secret: the servlet must get it from rhplan."""
        script = self.scripts / f"driver_{uuid.uuid4().hex[:8]}.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        return run_driver(script, self.rh.dir, python=python,
                          env={k: v for k, v in os.environ.items() if k != SECRET_VAR})


@pytest.fixture(scope="module")
def np_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A driver interpreter with numpy: a uv venv holding numpy, which also sees this
    venv's packages (rhplan, Ray) through a .pth file. Seconds with uv's cache."""
    venv = tmp_path_factory.mktemp("np-driver") / "venv"
    for argv in ([UV, "venv", "-q", "--python", sys.executable, str(venv)],
                 [UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), NUMPY]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
        / "site-packages"
    ours = sysconfig.get_paths()["purelib"]
    (site / "zz_rhplan_driver.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any,
            np_python: str) -> Iterator[Applied]:
    base = tmp_path_factory.mktemp("servlets")
    rh = rhplan_in(base / "infra", env={SECRET_VAR: SECRET})
    rh.write(HCL)
    root = rh.cluster_dir("c").absolute()
    (base / "scripts").mkdir()
    app = Applied(rh, np_python, root, temp_dir_for(str(root)), base / "scripts")
    try:
        res = rh("apply", "-auto-approve").ok()
        assert "Apply complete! Resources: 4 added, 0 changed, 0 destroyed." in res.stdout
        app.pid("np_env"), app.pid("plain")
        yield app
    finally:
        destroy_and_check(app)


def destroy_and_check(app: Applied) -> None:
    """The finalizer: destroy, then check that the cluster left nothing behind."""
    rh = app.rh
    before = cluster_processes([app.temp_dir], app.root)
    res = rh("destroy", "-auto-approve")
    deadline = time.monotonic() + 20
    left = cluster_processes([app.temp_dir], app.root)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = cluster_processes([app.temp_dir], app.root)
    if left:  # never leave a Ray behind: these pids are this cluster's only
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    problems = []
    if res.returncode != 0:
        problems.append(res.describe())
    if before and not set(app.seen_pids) & set(before):
        problems.append(f"the process scan missed the servlets {app.seen_pids}: {before}")
    if left:
        problems.append(f"Ray processes of the cluster outlived destroy: {left}")
    if still := [p for p in sorted(app.seen_pids) if alive(p)]:
        problems.append(f"servlet processes outlived destroy: {still}")
    if rh.resources():
        problems.append(f"state not empty after destroy: {sorted(rh.resources())}")
    for path in (app.env_dir("np_env"), app.env_dir("plain"), app.root, Path(app.temp_dir)):
        if path.exists():
            problems.append(f"{path} is still there after destroy")
    if SECRET in res.output:
        problems.append("destroy printed the secret value")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------
# plan-time checks: no Ray needed
# --------------------------------------------------------------------------

def test_compute_beyond_the_cluster_fails_at_plan_time(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    hcl = """
        cluster "c" {
          provider  = "local"
          resources = { CPU = 2, GPU = 0 }
        }

        env "big" {
          cluster = cluster.c
          reqs    = []
          compute = { CPU = 3 }
        }
    """
    path = rh.write(hcl)
    line = path.read_text().splitlines().index("  compute = { CPU = 3 }") + 1
    for args in (("validate",), ("plan", "-refresh=false")):
        msg = rh(*args).error_line()
        assert f"main.hcl:{line}:" in msg, msg
        assert "CPU = 3" in msg and "has 2" in msg and "compute.CPU" in msg, msg
    # servlets that fit alone but not together are refused too
    rh.edit("compute = { CPU = 3 }", "compute = { CPU = 2 }")
    path.write_text(path.read_text() + textwrap.dedent("""
        env "second" {
          cluster = cluster.c
          reqs    = []
          compute = { CPU = 1 }
        }
    """))
    msg = rh("plan", "-refresh=false").error_line()
    assert "main.hcl:" in msg and "other servlets hold" in msg, msg
    # nothing was started nor recorded
    assert not rh.resources()
    assert not Path(temp_dir_for(str(rh.cluster_dir("c").absolute()))).exists()
    assert not rh.cluster_dir("c").exists()


# --------------------------------------------------------------------------
# the applied configuration, read-only first
# --------------------------------------------------------------------------

def test_runhouse_example_np_sum(applied: Applied) -> None:
    body = """
        s = rhplan.servlet("np_env", chdir=CHDIR)

        def np_sum(a, b):
            import numpy as np
            return np.sum([a, b])

        r = s.call(np_sum, 2, 3)
        import numpy
        emit(equal=bool(r == 5), value=int(r), numpy_scalar=isinstance(r, numpy.integer))
    """
    got = applied.drive(body, python=applied.np_python)
    assert got == {"equal": True, "value": 5, "numpy_scalar": True}
    # the same call from a driver without numpy: a clear error, not a bare import error
    got = applied.drive("""
        s = rhplan.servlet("np_env", chdir=CHDIR)

        def np_sum(a, b):
            import numpy as np
            return np.sum([a, b])

        try:
            s.call(np_sum, 2, 3)
            emit(raised=None)
        except Exception as exc:
            emit(raised=type(exc).__name__, msg=str(exc))
        """)
    assert got["raised"] == "RhplanError", got
    assert "numpy" in got["msg"] and "not installed" in got["msg"], got


def test_rhplan_servlet_can_be_called_twice(applied: Applied) -> None:
    got = applied.drive("""
        a = rhplan.servlet("np_env", chdir=CHDIR)
        b = rhplan.servlet("plain", chdir=CHDIR)
        emit(a=a.status()["env"], b=b.status()["env"])
    """)
    assert got == {"a": "np_env", "b": "plain"}


def test_env_packages_are_isolated_from_the_driver_and_from_each_other(
        applied: Applied) -> None:
    got = applied.drive("""
        import importlib.util, time

        def has(mod):
            import importlib.util
            return importlib.util.find_spec(mod) is not None

        def where():
            import sys, tomli_w
            return [sys.prefix, tomli_w.__file__]

        mods = ("numpy", "tomli_w", "termcolor")
        a = servlet("np_env", chdir=CHDIR)
        b = servlet("plain", chdir=CHDIR)
        import ray  # only now: rhplan.servlet sets Ray's settings before Ray is imported

        # what Ray offers: the cluster's resources, minus the CPU np_env's servlet holds
        deadline = time.monotonic() + 20
        while ray.available_resources().get("CPU") != 1.0 and time.monotonic() < deadline:
            time.sleep(0.1)
        emit(driver={m: importlib.util.find_spec(m) is not None for m in mods},
             a={m: a.call(has, m) for m in mods}, b={m: b.call(has, m) for m in mods},
             a_where=a.call(where), a_status=a.status(), b_status=b.status(),
             total=ray.cluster_resources(), available=ray.available_resources())
    """)
    none = {"numpy": False, "tomli_w": False, "termcolor": False}
    assert got["driver"] == none, "test premise: the driver's venv must lack these packages"
    assert got["a"] == {"numpy": True, "tomli_w": True, "termcolor": False}
    assert got["b"] == {"numpy": False, "tomli_w": False, "termcolor": True}
    a_dir, b_dir = applied.env_dir("np_env"), applied.env_dir("plain")
    assert got["a_where"][0] == str(a_dir)
    assert got["a_where"][1].startswith(str(a_dir) + "/lib/")
    for st, env, env_dir in ((got["a_status"], "np_env", a_dir),
                             (got["b_status"], "plain", b_dir)):
        assert st["env"] == env
        assert st["python"] == str(env_dir / "bin" / "python")
        assert st["pid"] == applied.pid(env)
        assert st["uptime"] > 0
    assert "tomli_w==1.0.0" in got["a_status"]["packages"]
    assert NUMPY in got["a_status"]["packages"]
    assert "termcolor==2.4.0" in got["b_status"]["packages"]
    assert not any(p.startswith("tomli_w==") for p in got["b_status"]["packages"])
    assert got["total"]["CPU"] == 2.0 and "GPU" not in got["total"], got["total"]
    assert got["available"].get("CPU") == 1.0, got["available"]


def test_call_by_name_remote_errors_run_and_objects(applied: Applied) -> None:
    got = applied.drive("""
        import datetime, json
        s = rhplan.servlet("np_env", chdir=CHDIR)
        out = {}
        out["by_name"] = s.call("tomli_w:dumps", {"a": 1})
        out["nested_qualname"] = s.call("datetime:date.fromisoformat", "2024-01-02").isoformat()

        class BoomError(Exception):
            pass

        def boom(tag):
            raise BoomError(f"boom-{tag}")

        def catch(fn, *args):
            try:
                s.call(fn, *args)
            except Exception as exc:
                return {"type": type(exc).__name__, "msg": str(exc),
                        "notes": getattr(exc, "__notes__", [])}
            return None

        out["boom"] = catch(boom, 17)
        try:
            s.call(boom, 18)
        except BoomError:
            out["same_class"] = True
        out["json"] = catch("json:loads", "{bad")
        out["missing"] = catch("tomli_w:no_such_function")

        out["run_str"] = s.run("echo out-$X; echo err >&2; exit 7")
        out["run_argv"] = s.run(["python", "-c", "import sys; print(sys.prefix)"])
        out["run_missing"] = s.run(["no-such-command-xyz"])

        s.put("k1", {"a": [1, 2], "b": None})
        s.put("k2", b"\\x00bytes")
        out["keys"] = s.keys()
        out["k1"] = s.get("k1")
        out["k2"] = s.get("k2") == b"\\x00bytes"
        out["del1"] = s.delete("k1")
        out["del1_again"] = s.delete("k1")
        try:
            s.get("k1")
        except KeyError as exc:
            out["get_deleted"] = "k1" in str(exc)
        out["keys_after"] = s.keys()
        s.delete("k2")
        emit(**out)
    """)
    assert got["by_name"] == "a = 1\n"
    assert got["nested_qualname"] == "2024-01-02"
    boom = got["boom"]
    assert boom["type"] == "BoomError" and boom["msg"] == "boom-17", boom
    assert got["same_class"] is True
    notes = "\n".join(boom["notes"])
    assert "Remote traceback (servlet 'np_env')" in notes, notes
    assert "in boom" in notes and 'raise BoomError(f"boom-{tag}")' in notes, notes
    assert "BoomError: boom-17" in notes, notes
    err = got["json"]
    assert err["type"] == "JSONDecodeError", err
    assert "json/decoder.py" in "\n".join(err["notes"]), err
    assert got["missing"]["type"] == "AttributeError", got["missing"]
    assert "no_such_function" in got["missing"]["msg"]
    assert got["run_str"] == {"returncode": 7, "stdout": "out-x-from-np_env\n",
                              "stderr": "err\n"}
    assert got["run_argv"]["returncode"] == 0, got["run_argv"]
    assert got["run_argv"]["stdout"] == f"{applied.env_dir('np_env')}\n"
    assert got["run_missing"]["returncode"] == 127, got["run_missing"]
    assert got["keys"] == ["k1", "k2"]
    assert got["k1"] == {"a": [1, 2], "b": None} and got["k2"] is True
    assert got["del1"] is True and got["del1_again"] is False
    assert got["get_deleted"] is True
    assert got["keys_after"] == ["k2"]


def test_env_vars_and_secret_reach_the_servlet(applied: Applied) -> None:
    got = applied.drive(f"""
        a = servlet("np_env", chdir=CHDIR)
        b = servlet("plain", chdir=CHDIR)
        emit(driver_has_secret={SECRET_VAR!r} in os.environ,
             a_secret=a.call("os:getenv", {SECRET_VAR!r}), a_x=a.call("os:getenv", "X"),
             a_y=a.call("os:getenv", "Y"), b_y=b.call("os:getenv", "Y"),
             b_x=b.call("os:getenv", "X"))
    """)
    assert got["driver_has_secret"] is False
    assert got["a_secret"] == SECRET
    assert (got["a_x"], got["a_y"]) == ("x-from-np_env", None)
    assert (got["b_y"], got["b_x"]) == ("y-from-plain", None)
    assert SECRET not in applied.rh.state_path.read_text()


def test_a_secret_reaches_only_the_envs_that_list_it(applied: Applied) -> None:
    got = applied.drive(f"""
        b = servlet("plain", chdir=CHDIR)
        emit(b_sees_it=b.call("os:getenv", {SECRET_VAR!r}) is not None)
    """)
    assert got["b_sees_it"] is False, "env 'plain' does not list secret.s but sees its value"


def test_rhplan_run_exit_code_and_env_vars(applied: Applied) -> None:
    rh = applied.rh
    res = rh("run", "np_env", "--", "python", "-c", "import sys; sys.exit(3)")
    assert res.returncode == 3, res.describe()
    res = rh("run", "np_env", "--", "python", "-c", 'import os; print(os.environ["X"])')
    assert res.returncode == 0 and res.stdout == "x-from-np_env\n", res.describe()
    # the env's interpreter and packages, not the caller's
    res = rh("run", "np_env", "--", "python", "-c", "import sys, tomli_w; print(sys.prefix)")
    assert res.returncode == 0 and res.stdout == f"{applied.env_dir('np_env')}\n", \
        res.describe()
    res = rh("run", "plain", "--", "python", "-c",
             "import importlib.util as u, sys; sys.exit(4 if u.find_spec('tomli_w') else 0)")
    assert res.returncode == 0, res.describe()
    res = rh("run", "plain", "--", "no-such-command-xyz")
    assert res.returncode == 127 and "command not found" in res.stderr, res.describe()


def test_status_reports_the_head_and_both_servlets_alive(applied: Applied) -> None:
    rh = applied.rh
    text = rh("status").ok().stdout
    assert "ray head  running" in text, text
    for env in ("np_env", "plain"):
        assert f"pid {applied.pid(env)} " in text, text
    report = json.loads(rh("status", "-json").ok().stdout)
    assert [c["address"] for c in report] == ["cluster.c"]
    assert report[0]["ray"]["status"] == "running"
    servlets = {s["env"]: s for s in report[0]["servlets"]}
    assert set(servlets) == {"np_env", "plain"}
    for env, s in servlets.items():
        assert s["alive"] is True and s["pid"] == applied.pid(env), s


# --------------------------------------------------------------------------
# changes to the applied configuration
# --------------------------------------------------------------------------

def test_adding_a_package_restarts_only_that_envs_servlet(applied: Applied) -> None:
    rh = applied.rh
    a_pid, b_pid = applied.pid("np_env"), applied.pid("plain")
    kept = {"n": 42, "text": "kept across another env's restart", "list": list(range(100))}
    got = applied.drive(f"""
        b = servlet("plain", chdir=CHDIR)
        b.put("kept", {kept!r})
        emit(keys=b.keys())
    """)
    assert got["keys"] == ["kept"]

    rh.edit('"pip:tomli_w==1.0.0"]', '"pip:tomli_w==1.0.0", "pip:termcolor==2.4.0"]')
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 2, res.describe()
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in res.stdout, res.stdout
    assert "env.np_env will be updated in-place" in res.stdout, res.stdout
    assert "its servlet restarts to pick up the new packages" in res.stdout, res.stdout
    assert "env.plain" not in res.stdout, res.stdout
    res = rh("apply", "-auto-approve").ok()
    assert "Apply complete! Resources: 0 added, 1 changed, 0 destroyed." in res.stdout

    new_a = applied.pid("np_env")
    assert new_a != a_pid
    assert applied.pid("plain") == b_pid
    got = applied.drive("""
        def has_termcolor():
            import termcolor  # noqa: F401
            from importlib.metadata import version
            return version("termcolor")

        a = servlet("np_env", chdir=CHDIR)
        b = servlet("plain", chdir=CHDIR)
        emit(kept=b.get("kept"), b_pid=b.status()["pid"], a_pid=a.status()["pid"],
             a_termcolor=a.call(has_termcolor), a_keys=a.keys())
    """)
    assert got["kept"] == kept
    assert got["b_pid"] == b_pid
    assert got["a_pid"] == new_a
    assert got["a_termcolor"] == "2.4.0"
    assert got["a_keys"] == []  # a restarted servlet starts with an empty store
    assert not alive(a_pid), f"the old servlet of np_env (pid {a_pid}) is still running"
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 0 and "No changes." in res.stdout, res.describe()


def test_a_servlet_killed_by_hand_is_drift_and_apply_restarts_it(
        applied: Applied, wait_for: Any) -> None:
    rh = applied.rh
    pid, other = applied.pid("np_env"), applied.pid("plain")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 20, f"servlet pid {pid} to die")

    res = rh("status")
    assert res.returncode == 1, res.describe()
    assert any("dead" in ln and "np_env" in ln for ln in res.stdout.splitlines()), res.stdout
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 2, res.describe()
    assert "Objects have changed outside of rhplan" in res.stdout, res.stdout
    assert "env.np_env: its servlet is not running" in res.stdout, res.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in res.stdout, res.stdout

    rh("apply", "-auto-approve").ok()
    new = applied.pid("np_env")
    assert new != pid and alive(new)
    assert applied.pid("plain") == other
    got = applied.drive("""
        a = servlet("np_env", chdir=CHDIR)
        emit(pid=a.call("os:getpid"), status_pid=a.status()["pid"])
    """)
    assert got == {"pid": new, "status_pid": new}
    res = rh("status").ok()
    assert "dead" not in res.stdout, res.stdout
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 0 and "No changes." in res.stdout, res.describe()


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_the_secret_value_is_never_stored_nor_printed(applied: Applied) -> None:
    """Every command the module ran so far: alone, the fixture's apply and these; after
    the tests above, theirs too."""
    rh = applied.rh
    commands = [("plan",), ("plan", "-json"), ("show",), ("show", "-json"),
                ("state", "show", "env.np_env"), ("state", "show", "secret.s"),
                ("status", "-json"), ("refresh",)]
    start = len(rh.log)
    for args in commands:
        rh(*args).ok()
    for path in (rh.state_path, rh.dir / "rhplan.state.json.backup"):
        assert SECRET not in path.read_text(), f"the secret value is stored in {path.name}"
    ran = [res.args for res in rh.log]
    assert ran[start:] == commands and ("apply", "-auto-approve") in ran[:start], ran
    for res in rh.log:
        assert SECRET not in res.output, f"the secret value is printed by rhplan {res.args}"
