"""rhplan end to end on the local provider: the real CLI in subprocesses, real uv
venvs, real installs from PyPI, real signals.

One applied configuration (`shared`) is built once per module and only read by
the tests that take it; every test that changes things has its own folder. Each
local cluster runs a Ray head and each env a servlet, so creating and destroying
them costs seconds: the changing tests walk several related steps on one
configuration, and what a test leaves applied is destroyed in the background
(see conftest.py) while the next one runs.
Blocking steps use a setup command that waits for a file the test creates, so
no test sleeps: it polls a condition with a deadline.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary import canary_secret

# Unique, so finding it anywhere can only mean it leaked.
SECRET = canary_secret("e2e")
SECRET_ENV = {"MY_SECRET": SECRET}

UV = str(Path(sys.executable).parent / "uv")

# Reads an env from inside its own interpreter: {name: [version, dist-info inode]}.
_DISTS = r"""
import importlib.metadata as md, json, os, sysconfig
sp = sysconfig.get_paths()["purelib"]
out = {}
for d in md.distributions(path=[sp]):
    name = d.metadata["Name"].lower().replace("_", "-")
    info = [e for e in os.listdir(sp) if e.endswith(".dist-info")
            and e.lower().replace("_", "-").startswith(name + "-")]
    out[name] = [d.version, os.stat(os.path.join(sp, info[0])).st_ino if info else None]
print(json.dumps(out))
"""


def dists(env_dir: Path) -> dict[str, tuple[str, int | None]]:
    """What is installed in an env, read by the env's own python."""
    proc = subprocess.run([str(env_dir / "bin" / "python"), "-I", "-c", _DISTS],
                          capture_output=True, text=True, timeout=60, check=True)
    return {k: (v[0], v[1]) for k, v in json.loads(proc.stdout).items()}


def versions(env_dir: Path) -> dict[str, str]:
    return {k: v for k, (v, _) in dists(env_dir).items()}


def venv_identity(env_dir: Path) -> tuple[int, int, int, int]:
    """Inode and mtime of pyvenv.cfg and of bin/python: both change if the venv is rebuilt."""
    cfg = os.stat(env_dir / "pyvenv.cfg")
    py = os.lstat(env_dir / "bin" / "python")
    return cfg.st_ino, cfg.st_mtime_ns, py.st_ino, py.st_mtime_ns


def run_in_env(env_dir: Path, code: str) -> Any:
    proc = subprocess.run([str(env_dir / "bin" / "python"), "-I", "-c", code],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def hcl_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def one_env(reqs: list[str], env_vars: str = "{}", extra: str = "") -> str:
    return f"""
        cluster "main" {{
          provider = "local"
        }}

        env "app" {{
          cluster  = cluster.main
          reqs     = {hcl_list(reqs)}
          env_vars = {env_vars}
          {extra}
        }}
    """


def assert_converged(rh: Any) -> None:
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 0, res.describe()
    assert "No changes." in res.stdout


# --------------------------------------------------------------------------
# one applied configuration, shared by the read-only tests
# --------------------------------------------------------------------------

SHARED_HCL = """
variable "greeting" {
  default = "hello"
}

cluster "main" {
  provider = "local"
}

secret "s" {
  from_env = ["MY_SECRET"]
}

env "app" {
  cluster  = cluster.main
  reqs     = ["pip:six==1.16.0", "idna==3.7", "./src/localpkg"]
  env_vars = { GREETING = var.greeting }
  secrets  = [secret.s]
}

output "python" {
  value = env.app.python
}
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any, local_package: Any,
           cleanups: Any) -> Iterator[Any]:
    """Planned with -out, then applied from that saved plan."""
    rh = rhplan_in(tmp_path_factory.mktemp("shared") / "infra", env=SECRET_ENV)
    try:
        rh.write(SHARED_HCL)
        local_package(rh.dir / "src", "localpkg", "from-local-folder")
        planned = rh("plan", "-out", "first.plan").ok()
        assert "Plan: 3 to add, 0 to change, 0 to destroy." in planned.stdout
        assert (rh.dir / "first.plan").is_file()
        applied = rh("apply", "first.plan").ok()
        assert "Apply complete! Resources: 3 added, 0 changed, 0 destroyed." in applied.stdout
        rh.env_path = rh.env_dir("main", "app")
        yield rh
    finally:
        cleanups.add(rh)  # whatever got applied, even if this setup failed half-way


def test_apply_builds_env_with_packages_and_local_package(shared: Any) -> None:
    env = shared.env_path
    assert (env / "pyvenv.cfg").is_file()
    got = run_in_env(env, "import json, sys, six, idna, localpkg; print(json.dumps("
                          "[sys.prefix, six.__version__, idna.__version__, localpkg.VALUE]))")
    assert got == [str(env), "1.16.0", "3.7", "from-local-folder"]
    have = versions(env)
    assert {k: have.get(k) for k in ("six", "idna", "localpkg")} == {
        "six": "1.16.0", "idna": "3.7", "localpkg": "0.1.0"}
    attrs = shared.resources()["env.app"]["attributes"]
    assert attrs["installed"] == {"pip:six==1.16.0": ["six==1.16.0"],
                                  "idna==3.7": ["idna==3.7"],
                                  "./src/localpkg": ["localpkg==0.1.0"]}
    assert attrs["path"] == str(env)
    assert shared.cluster_dir("main").is_dir()


def test_the_env_reuses_the_ray_venvs_compiled_ray(shared: Any) -> None:
    """The env's own Ray (its files linked from uv's cache, as the Ray venv's are) is
    given the Ray venv's bytecode at install, so the servlet's first `import ray` reads
    it instead of compiling ~1,000 modules (issue 17: ~2 s of a first apply)."""
    import importlib.util

    origin = importlib.util.find_spec("ray").origin  # the Ray venv of a local cluster
    ours = Path(importlib.util.cache_from_source(origin))
    site = next(shared.env_path.glob("lib/python*/site-packages"))
    theirs = Path(importlib.util.cache_from_source(str(site / "ray" / "__init__.py")))
    assert theirs.is_file() and ours.is_file(), (theirs, ours)
    assert os.path.samefile(theirs, ours), "the env compiled its own copy of Ray"


def test_output_raw_prints_interpreter_path(shared: Any) -> None:
    python = str(shared.env_path / "bin" / "python")
    res = shared("output", "-raw", "python").ok()
    assert res.stdout == python + "\n"
    assert os.access(res.stdout.strip(), os.X_OK)
    assert json.loads(shared("output", "-json").ok().stdout) == {
        "python": {"value": python, "sensitive": False}}
    # the double-dash spelling works the same
    assert shared("--chdir", str(shared.dir), "output", "--raw", "python").ok().stdout \
        == python + "\n"


def test_env_vars_and_secrets_files_are_written(shared: Any) -> None:
    files = shared.env_path / "rhplan"
    assert json.loads((files / "env_vars.json").read_text()) == {"GREETING": "hello"}
    # the env itself does receive the secret, readable by its owner only
    assert json.loads((files / "secrets.json").read_text()) == {"MY_SECRET": SECRET}
    assert (files / "secrets.json").stat().st_mode & 0o077 == 0


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_secret_value_is_never_stored_nor_printed(shared: Any) -> None:
    shared("plan", "-out", "again.plan").ok()
    shared("plan", "-json").ok()
    shared("plan", "-destroy", "-out", "destroy.plan").ok()
    for args in (("show",), ("show", "-json"), ("show", "first.plan"),
                 ("show", "-json", "first.plan"), ("show", "-json", "destroy.plan"),
                 ("state", "show", "env.app"), ("state", "show", "secret.s"),
                 ("output",), ("output", "-json"), ("refresh",), ("apply", "-auto-approve"),
                 ("graph",), ("validate",)):
        shared(*args).ok()
    stored = {p.name: p.read_text() for p in (
        shared.state_path, shared.dir / "rhplan.state.json.backup",
        shared.dir / "first.plan", shared.dir / "again.plan", shared.dir / "destroy.plan")}
    for name, text in stored.items():
        assert SECRET not in text, f"the secret value is stored in {name}"
    assert len(shared.log) > 15
    for res in shared.log:
        assert SECRET not in res.output, f"the secret value is printed by {res.args}"
    # what is stored is enough to see a change: key names and a keyed digest (HMAC
    # under .rhplan/digest.key, so a short value cannot be guessed from the state)
    secret = shared.resources()["secret.s"]["attributes"]
    assert secret["keys"] == ["MY_SECRET"]
    scheme, key_id, mac = secret["sha256"].split(":")
    assert scheme == "hmac-sha256" and key_id and len(mac) == 64
    # and a changed secret is seen as a change without showing either value
    other = f"other-{uuid.uuid4().hex}"
    res = shared("plan", "-detailed-exitcode", env={"MY_SECRET": other})
    assert res.returncode == 2, res.describe()
    assert other not in res.output and SECRET not in res.output


def test_no_change_plan_exits_0_and_changed_input_exits_2(shared: Any) -> None:
    res = shared("plan", "-detailed-exitcode")
    assert res.returncode == 0, res.describe()
    assert "No changes." in res.stdout
    res = shared("plan", "-detailed-exitcode", "-var", "greeting=bye")
    assert res.returncode == 2, res.describe()
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in res.stdout
    res = shared("plan", "--detailed-exitcode", "--var=greeting=bye")  # GNU spelling
    assert res.returncode == 2, res.describe()


def test_show_json_of_saved_plan(shared: Any) -> None:
    shown = json.loads(shared("show", "-json", "first.plan").ok().stdout)
    changes = {c["address"]: c for c in shown["resource_changes"]}
    assert set(changes) == {"cluster.main", "secret.s", "env.app"}
    for c in changes.values():  # Terraform's resource change (rhplan/plan/tfjson.py)
        for key in ("address", "mode", "type", "name", "provider_name", "change"):
            assert key in c, f"{c['address']} has no {key!r}"
        assert c["change"]["actions"] == ["create"] and c["change"]["before"] is None
    after = changes["env.app"]["change"]["after"]
    assert after["reqs"] == ["pip:six==1.16.0", "idna==3.7", "./src/localpkg"]
    assert after["env_vars"] == {"GREETING": "hello"}


def test_replace_plans_a_replacement(shared: Any) -> None:
    before = shared.state_path.read_bytes()
    res = shared("plan", "-detailed-exitcode", "-replace", "env.app")
    assert res.returncode == 2, res.describe()
    assert '-/+ env "app"' in res.stdout
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in res.stdout
    headers = [x.strip() for x in res.stdout.splitlines()
               if x.startswith("  # ") and (" will be " in x or " must be " in x)]
    assert headers == ["# env.app must be replaced"], headers
    assert shared.state_path.read_bytes() == before  # plan changes nothing


def test_graph_prints_dot_with_env_to_cluster_edge(shared: Any) -> None:
    dot = shared("graph").ok().stdout
    assert dot.startswith("digraph")
    assert '"env.app" -> "cluster.main"' in dot
    assert '"env.app" -> "secret.s"' in dot


# --------------------------------------------------------------------------
# changes, each test in its own folder
# --------------------------------------------------------------------------

def test_add_one_package_then_remove_one_then_destroy(rh: Any) -> None:
    rh.write(one_env(["six==1.16.0", "idna==3.7"]))
    rh("apply", "-auto-approve").ok()
    env = rh.env_dir("main", "app")
    before, ident = dists(env), venv_identity(env)

    # adding one package: an in-place update that installs that package only
    rh.edit('"idna==3.7"]', '"idna==3.7", "tomli==2.0.1"]')
    plan = rh("plan", "-detailed-exitcode")
    assert plan.returncode == 2, plan.describe()
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout
    assert '+ "tomli==2.0.1"' in plan.stdout
    res = rh("apply", "-auto-approve").ok()
    assert "Resources: 0 added, 1 changed, 0 destroyed." in res.stdout
    after = dists(env)
    assert set(after) - set(before) == {"tomli"}
    assert after["tomli"][0] == "2.0.1"
    for name, (version, inode) in before.items():
        assert after[name] == (version, inode), f"{name} was reinstalled or removed"
    assert venv_identity(env) == ident, "the env was rebuilt"
    installed = rh.resources()["env.app"]["attributes"]["installed"]
    assert installed["tomli==2.0.1"] == ["tomli==2.0.1"]

    # removing one package uninstalls that package only (the exact plan below also
    # shows that the add converged)
    before = after
    rh.edit('"six==1.16.0", ', "")
    plan = rh("plan", "-detailed-exitcode")
    assert plan.returncode == 2, plan.describe()
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout
    assert '- "six==1.16.0"' in plan.stdout
    rh("apply", "-auto-approve").ok()
    after = dists(env)
    assert set(before) - set(after) == {"six"}
    assert after == {k: v for k, v in before.items() if k != "six"}
    assert venv_identity(env) == ident, "the env was rebuilt"
    assert "six==1.16.0" not in rh.resources()["env.app"]["attributes"]["installed"]
    assert_converged(rh)

    # destroy: the env and cluster folders go, the state keeps no resources
    res = rh("destroy", "-auto-approve").ok()
    assert "Destroy complete! Resources: 0 added, 0 changed, 2 destroyed." in res.stdout
    assert not env.exists()
    assert not rh.cluster_dir("main").exists()
    state = rh.state()
    assert state["resources"] == [] and state["outputs"] == {}
    assert rh("state", "list").ok().stdout == ""
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 2 and "Plan: 2 to add" in res.stdout, res.describe()


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_removing_a_package_the_servlet_runtime_also_needs_keeps_the_env_working(
        rh: Any) -> None:
    rh.write(one_env(["six==1.16.0", "idna==3.7"]))
    rh("apply", "-auto-approve").ok()
    env = rh.env_dir("main", "app")
    rh.edit('"idna==3.7"', '"tomli==2.0.1"')
    # a servlet starts in ~2 s; do not wait rhplan's full default for one that cannot
    res = rh("apply", "-auto-approve", env={"RHPLAN_SERVLET_TIMEOUT": "10"})
    assert res.returncode == 0, res.describe()
    run_in_env(env, "import json, ray, six, tomli; print(json.dumps(ray.__version__))")
    assert_converged(rh)


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_env_vars_in_place_stale_saved_plan_and_cluster_move(rh: Any) -> None:
    rh.write(one_env(["six==1.16.0"], '{ MODE = "a" }')
             + '\ncluster "other" {\n  provider = "local"\n}\n')
    rh("apply", "-auto-approve").ok()
    env = rh.env_dir("main", "app")
    ident, before = venv_identity(env), dists(env)

    # an env var change is an in-place update
    rh.edit('MODE = "a"', 'MODE = "b"')
    plan = rh("plan", "-detailed-exitcode", "-out", "p.json")
    assert plan.returncode == 2, plan.describe()
    assert "env.app will be updated in-place" in plan.stdout
    assert '~ "MODE" = "a" -> "b"' in plan.stdout
    assert "-/+" not in plan.stdout and "forces replacement" not in plan.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in plan.stdout

    # another apply gets there first: the saved plan is stale and refused
    rh("apply", "-auto-approve").ok()
    assert json.loads((env / "rhplan" / "env_vars.json").read_text()) == {"MODE": "b"}
    assert venv_identity(env) == ident and dists(env) == before
    state = rh.state_path.read_bytes()
    line = rh("apply", "p.json").error_line()
    assert line.startswith("Error: ") and "stale" in line and "plan -out" in line, line
    assert rh.state_path.read_bytes() == state
    assert_converged(rh)

    # moving the env to another cluster replaces it, here through a saved plan
    rh.edit("cluster  = cluster.main", "cluster  = cluster.other")
    plan = rh("plan", "-detailed-exitcode", "-out", "move.json")
    assert plan.returncode == 2, plan.describe()
    assert '-/+ env "app"' in plan.stdout
    line = next(x for x in plan.stdout.splitlines() if "forces replacement" in x)
    assert '"cluster.main" -> "cluster.other"' in line, line
    assert "Plan: 1 to add, 0 to change, 1 to destroy." in plan.stdout
    shown = json.loads(rh("show", "-json", "move.json").ok().stdout)
    move = next(c for c in shown["resource_changes"] if c["address"] == "env.app")
    assert move["change"]["actions"] == ["delete", "create"], move  # Terraform's replace
    assert move["action_reason"] == "replace_because_cannot_update"
    assert move["change"]["replace_paths"] == [["cluster"]]
    rh("apply", "move.json").ok()
    new = rh.env_dir("other", "app")
    assert not env.exists()
    assert versions(new).get("six") == "1.16.0"
    assert json.loads((new / "rhplan" / "env_vars.json").read_text()) == {"MODE": "b"}
    assert_converged(rh)


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_drift_is_planned_and_repaired(rh: Any) -> None:
    rh.write(one_env(["six==1.16.0", "idna==3.7"], '{ MODE = "a" }'))
    rh("apply", "-auto-approve").ok()
    env = rh.env_dir("main", "app")

    # a package uninstalled by hand
    subprocess.run([UV, "pip", "uninstall", "--python", str(env / "bin" / "python"), "idna"],
                   check=True, capture_output=True, timeout=60)
    assert "idna" not in versions(env)
    plan = rh("plan", "-detailed-exitcode")
    assert plan.returncode == 2, plan.describe()
    drift, _, actions = plan.stdout.partition("will perform the following actions")
    assert "Objects have changed outside" in drift and "idna" in drift, plan.stdout
    assert "env.app will be updated in-place" in actions
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in actions
    rh("apply", "-auto-approve").ok()
    assert versions(env).get("idna") == "3.7"
    assert_converged(rh)

    # the whole env folder deleted by hand
    shutil.rmtree(env)
    plan = rh("plan", "-detailed-exitcode")
    assert plan.returncode == 2, plan.describe()
    assert "Objects have changed outside" in plan.stdout
    assert "env.app will be created" in plan.stdout
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in plan.stdout
    rh("apply", "-auto-approve").ok()
    have = versions(env)
    assert (have.get("six"), have.get("idna")) == ("1.16.0", "3.7")
    assert json.loads((env / "rhplan" / "env_vars.json").read_text()) == {"MODE": "a"}
    assert_converged(rh)


def test_target_plans_only_that_resource_and_what_it_needs(rh: Any) -> None:
    rh.write("""
        cluster "c1" {
          provider = "local"
        }
        cluster "c2" {
          provider = "local"
        }
        secret "s" {
          values = { K = "v" }
        }
        env "a" {
          cluster = cluster.c1
          secrets = [secret.s]
        }
        env "b" {
          cluster = cluster.c2
        }
    """)
    stream = [json.loads(x) for x in rh("plan", "-json", "-target", "env.a").ok().stdout
              .splitlines()]  # Terraform's machine-readable UI: one object per line
    acting = {m["change"]["resource"]["addr"] for m in stream if m["type"] == "planned_change"}
    assert acting == {"cluster.c1", "secret.s", "env.a"}
    text = rh("plan", "-target=env.a").ok().stdout
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in text
    assert "env.b" not in text and "cluster.c2" not in text
    text = rh("plan", "--target", "env.b").ok().stdout
    assert "Plan: 2 to add, 0 to change, 0 to destroy." in text
    assert "env.a" not in text and "cluster.c1" not in text and "secret.s" not in text
    assert not rh.state_path.exists() or rh.resources() == {}


def test_state_rm_forgets_and_force_unlock_checks_the_id(rh: Any) -> None:
    rh.write("""
        secret "a" {
          values = { K = "v" }
        }
        secret "b" {
          values = { K = "w" }
        }
    """)
    rh("apply", "-auto-approve").ok()
    res = rh("state", "rm", "secret.b").ok()
    assert "Removed secret.b" in res.stdout
    assert rh("state", "list").ok().stdout.split() == ["secret.a"]
    plan = rh("plan").ok().stdout
    assert "secret.b will be created" in plan and "secret.a" not in plan
    assert "rhplan state list" in rh("state", "rm", "env.nope").error_line()
    assert rh("force-unlock", "not-the-id").error_line().startswith("Error: ")
    assert rh("state", "show", "secret.a").ok().stdout.startswith("# secret.a:")


# --------------------------------------------------------------------------
# locks, crashes and interrupts
# --------------------------------------------------------------------------

def blocking_config(rh: Any, blocker: str, fast_env: bool = False,
                    dependent: bool = False) -> None:
    parts = ['cluster "main" {\n  provider = "local"\n}\n']
    if fast_env:
        parts.append('env "fast" {\n  cluster = cluster.main\n  reqs = ["six==1.16.0"]\n}\n')
    parts.append('env "slow" {\n  cluster = cluster.main\n  reqs = ["idna==3.7"]\n'
                 f'  setup_cmds = [{json.dumps(blocker)}]\n}}\n')
    if dependent:
        parts.append('env "after" {\n  cluster = cluster.main\n  depends_on = [env.slow]\n}\n')
    rh.write("\n".join(parts))


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_concurrent_apply_is_refused_at_once(rh: Any, wait_for: Any) -> None:
    blocker, release, started = rh.blocker()
    blocking_config(rh, blocker)
    first = rh.start("apply", "-auto-approve")
    wait_for(lambda: (rh.lock_info_path.exists() and started.exists())
             or not first.running(), 90, "the lock info and the blocking step")
    assert first.running(), first.text()
    info = json.loads(rh.lock_info_path.read_text())
    assert info["operation"] == "apply" and f"pid {first.pid}" in info["who"], info
    assert set(info) >= {"id", "who", "operation", "created"}

    t0 = time.monotonic()
    line = rh("apply", "-auto-approve", timeout=60).error_line()
    assert time.monotonic() - t0 < 30
    assert "locked by" in line and f"pid {first.pid}" in line and info["id"] in line, line
    assert "locked by" in rh("plan", timeout=60).error_line()
    line = rh("force-unlock", "0000-wrong", timeout=60).error_line()
    assert "does not match" in line and info["id"] in line, line
    assert first.running(), "the refused commands disturbed the running apply"

    release.touch()
    res = first.finish()
    assert res.returncode == 0, res.stdout
    assert "Apply complete!" in res.stdout
    assert not rh.lock_info_path.exists()
    assert_converged(rh)


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_sigkill_mid_apply_then_reapply_converges(rh: Any, wait_for: Any) -> None:
    blocker, release, started = rh.blocker()
    blocking_config(rh, blocker, fast_env=True)
    first = rh.start("apply", "-auto-approve")
    wait_for(lambda: ("env.fast" in rh.resources() and started.exists())
             or not first.running(), 90, "env.fast recorded while env.slow blocks")
    assert first.running(), first.text()
    os.killpg(first.pid, signal.SIGKILL)
    assert first.finish(30).returncode == -signal.SIGKILL
    release.touch()
    recorded = rh.resources()
    assert "env.fast" in recorded and "env.slow" not in recorded

    res = rh("apply", "-auto-approve").ok()
    assert "Apply complete!" in res.stdout
    assert set(rh.resources()) == {"cluster.main", "env.fast", "env.slow"}
    assert versions(rh.env_dir("main", "slow")).get("idna") == "3.7"
    assert_converged(rh)


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_ctrl_c_lets_the_running_step_finish_and_skips_the_rest(rh: Any, wait_for: Any
                                                                ) -> None:
    blocker, release, started = rh.blocker()
    blocking_config(rh, blocker, dependent=True)
    first = rh.start("apply", "-auto-approve")
    wait_for(lambda: started.exists() or not first.running(), 90, "the blocking step")
    assert first.running(), first.text()
    os.kill(first.pid, signal.SIGINT)  # the process only, as a terminal's Ctrl-C to rhplan
    wait_for(lambda: "Interrupt received" in first.text() or not first.running(), 30,
             "rhplan to acknowledge the interrupt")
    assert first.running(), first.text()
    release.touch()
    res = first.finish()
    out = res.stdout
    assert res.returncode == 1, out
    assert "env.slow: Creation complete" in out
    assert "skipped: env.after" in out
    assert "Traceback" not in out
    recorded = rh.resources()
    assert "env.slow" in recorded and "env.after" not in recorded
    assert recorded["env.slow"]["attributes"]["installed"] == {"idna==3.7": ["idna==3.7"]}
    assert not rh.lock_info_path.exists()
    res = rh("apply", "-auto-approve").ok()
    assert "Resources: 1 added, 0 changed, 0 destroyed." in res.stdout
    assert_converged(rh)


def test_destroy_forgets_a_cluster_that_vanished_outside_rhplan(rh: Any) -> None:
    """Nothing left to destroy still records what refresh found: a cluster whose Ray and
    folder are gone leaves the state, instead of staying there for good while every
    destroy says "No changes" (as a destroy killed half-way could leave it)."""
    from rayprocs import cluster_processes, temp_dir_for

    rh.write('cluster "main" {\n  provider = "local"\n  create_default_env = false\n}\n')
    rh("apply", "-auto-approve").ok()
    root = rh.cluster_dir("main")
    for pid in cluster_processes([temp_dir_for(str(root))], root):
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(root)
    res = rh("destroy", "-auto-approve").ok()
    assert "Objects have changed outside" in res.stdout, res.describe()
    assert rh.resources() == {}, rh.state()


# Runs as the env's setup command (its last step before the servlet): waits, bounded,
# for a process of this user that is the servlet's start (its go file among its
# arguments) with Ray loaded, and writes what it found.
PRESTART_PROBE = r"""
import os, sys, time
out, deadline = sys.argv[1], time.time() + 20
found = "no driver"
while time.time() < deadline:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
            if not any(b"/rhplan/servlet-go-" in a for a in args) or b"start" not in args:
                continue
            with open(f"/proc/{pid}/maps", "rb") as fh:
                if b"_raylet" in fh.read():
                    found = "driver with Ray"
        except OSError:
            continue
    if found != "no driver":
        break
    time.sleep(0.05)
with open(out, "w") as fh:
    fh.write(found)
"""


def _go_drivers() -> list[int]:
    """This user's processes waiting to start a servlet (their go file in argv)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"/rhplan/servlet-go-" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def test_the_servlets_driver_loads_ray_while_the_env_is_built(rh: Any, wait_for: Any
                                                               ) -> None:
    """Issue 17: a servlet's start was a new Ray driver after the env was built (~1 s of
    importing Ray and joining the cluster, then the actor). Now that driver starts with
    the env and only creates the actor once the env is done; a failed env sends it away."""
    probe, seen = rh.dir / "probe.py", rh.dir / "seen.txt"
    probe.write_text(PRESTART_PROBE)
    rh.write(one_env(["six==1.16.0"],
                     extra=f"setup_cmds = {hcl_list([f'python {probe} {seen}'])}"))
    rh("apply", "-auto-approve").ok()
    assert seen.read_text() == "driver with Ray"
    assert rh.resources()["env.app"]["attributes"]["servlet"] == "running"
    assert run_in_env(rh.env_dir("main", "app"),
                      "import json, six; print(json.dumps(six.__version__))") == "1.16.0"
    assert not list((rh.env_dir("main", "app") / "rhplan").glob("servlet-go-*"))
    # an env whose setup fails: the waiting driver is sent away, not left behind
    rh.write(one_env(["six==1.16.0"], extra='setup_cmds = ["exit 3"]')
             .replace('env "app"', 'env "broken"'))
    res = rh("apply", "-auto-approve")
    assert res.returncode != 0 and "setup command 1" in res.stdout, res.describe()
    wait_for(lambda: not _go_drivers(), timeout=30, what="the pending servlet start to leave")


def test_a_killed_apply_leaves_no_servlet_start_waiting(rh: Any, wait_for: Any) -> None:
    """The driver begun with an env (previous test) waits for the env; when rhplan is
    killed, only rhplan (SIGKILL to its pid, not its group: its children live on), the
    driver leaves by itself instead of waiting for an hour."""
    blocker, release, started = rh.blocker()
    blocking_config(rh, blocker)
    first = rh.start("apply", "-auto-approve")
    wait_for(lambda: (started.exists() and _go_drivers()) or not first.running(), 90,
             "the blocking setup command and the waiting servlet start")
    assert first.running(), first.text()
    os.kill(first.pid, signal.SIGKILL)
    first.finish(30)
    wait_for(lambda: not _go_drivers(), 30, "the waiting servlet start to leave")
    release.touch()
