"""Issue 16, items 1 and 3 and part of 6: Ray's temp dir is private to the user that
runs it, and a destroy signals only that user's processes.

A second local user (created here, removed afterwards) plays the attacker, and a
third one a victim whose /tmp/rhplan-<uid> someone else made first:
- it pre-creates the temp dir older rhplan used (/tmp/rhplan-ray-<sha256(root)[:12]>)
  with ray_current_cluster symlinked to a root-only file: apply must not write it;
- a user's folder for Ray pre-created by another user, as a symlink, or with a loose
  mode is refused with one line, by the real host-side script run as that user;
- every file and folder under the head's temp dir is private after apply and after a
  servlet printed a secret (worker-*.out), and the other user cannot read the log;
- its process whose command line names the cluster's temp dir is not one of the
  cluster's (owned_pids) and outlives destroy;
- on an ssh cluster (the suite's loopback sshd) the recorded temp dir is private too;
- a cluster recorded with the old shared temp dir is still refreshed and destroyed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import poll_until
from rayprocs import alive
from ssh_cluster import APPLY_TIMEOUT, cluster_hcl, provision_ray_venv, ssh_block
from sshd import SSHServer

from rhplan.hosts.connection import LocalConnection
from rhplan.ray import head as ray_head
from rhplan.ray.head import OWNED_PIDS_FN
from rhplan.ray.servlets import manage

ATTACKER = "rhplan-t-squat"
VICTIM = "rhplan-t-victim"
HOST_SCRIPT = Path(__file__).resolve().parents[1] / "rhplan" / "hostside" / "ray_host.py"
SYSTEM_PY = "/usr/bin/python3"  # other users cannot run the suite's venv (under /root)
SECRET = "rhplan-tempdir-secret-" + hashlib.sha256(os.urandom(16)).hexdigest()[:16]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not Path(SYSTEM_PY).exists(),
    reason="needs root, useradd and /usr/bin/python3 to play a second local user")

LOCAL_HCL = """
cluster "main" {
  provider = "local"
}

env "app" {
  cluster = cluster.main
}
"""


def _userdel(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True, check=False)
    subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def users() -> Iterator[dict[str, int]]:
    """Two throwaway local users, removed (with their processes and /tmp folders)
    afterwards."""
    made = {}
    try:
        for name in (ATTACKER, VICTIM):
            _userdel(name)  # a leftover of a killed run
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", name], check=True, capture_output=True)
            made[name] = pwd.getpwnam(name).pw_uid
        yield made
    finally:
        for name, uid in made.items():
            _userdel(name)
            shutil.rmtree(f"/tmp/rhplan-{uid}", ignore_errors=True)


def as_user(name: str, *argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", name, "--", *argv], capture_output=True,
                          text=True, timeout=60, check=False, **kw)


def host_script(name: str, *args: str) -> tuple[int, dict[str, Any]]:
    """Run rhplan's host-side script (ray_host.py) as user `name`: its exit code and
    the JSON line it printed."""
    res = as_user(name, SYSTEM_PY, "-I", str(HOST_SCRIPT), *args)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1 and not res.stderr, (res.returncode, res.stdout, res.stderr)
    return res.returncode, json.loads(lines[0])


def files_open_to_others(top: Path) -> list[str]:
    """Every file under top (logs, sockets, spilled objects...) that a group or other
    user may read or write. Folders are left out: Ray chmods its own 0777 whenever a node
    or worker starts, and the user's 0700 folder above keeps others out (checked apart);
    symlinks too (their own mode means nothing)."""
    found = []
    for dirpath, _, files in os.walk(top):
        for path in [Path(dirpath) / n for n in files]:
            st = path.lstat()
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                found.append(f"{path} {stat.S_IMODE(st.st_mode):o}")
    return sorted(found)


def others_shut_out(temp_dir: Path) -> None:
    """The other user can neither list the temp dir nor open a file under it."""
    for argv in (["ls", str(temp_dir)], ["ls", str(temp_dir / "session_latest" / "logs")]):
        res = as_user(ATTACKER, *argv)
        assert res.returncode != 0 and "Permission denied" in res.stderr, (argv, res)


def processes_of(uid: int, word: str) -> list[int]:
    """Live processes of uid whose command line holds word."""
    found = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and os.stat(f"/proc/{p}").st_uid == uid and word.encode() in \
                    Path(f"/proc/{p}/cmdline").read_bytes():
                found.append(int(p))
        except OSError:
            continue  # gone meanwhile
    return found


def run_owned_pids(temp_dir: str, token_path: str) -> list[int]:
    """owned_pids() as rhplan runs it on a host (its host-side text, run by Python)."""
    script = OWNED_PIDS_FN + "\nimport json, sys\nprint(json.dumps(owned_pids(sys.argv[1], " \
        "sys.argv[2])))\n"
    res = subprocess.run([sys.executable, "-I", "-c", script, temp_dir, token_path],
                         capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(res.stdout.strip().splitlines()[-1]))


# --- a local cluster, applied once -----------------------------------------------------

@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any,
            users: dict[str, int]) -> Iterator[Any]:
    """A local cluster with one env, applied while the attacker squats the temp dir
    older rhplan would have used, with ray_current_cluster symlinked to a root-only
    file."""
    base = tmp_path_factory.mktemp("sec")
    rh = rhplan_in(base / "infra")
    rh.write(LOCAL_HCL)
    root = str(rh.cluster_dir("main").absolute())
    target = base / "root-only"
    target.write_text("root's own\n")
    target.chmod(0o600)
    legacy = Path(f"/tmp/rhplan-ray-{hashlib.sha256(root.encode()).hexdigest()[:12]}")
    shutil.rmtree(legacy, ignore_errors=True)
    made = as_user(ATTACKER, "sh", "-c",
                   'mkdir -m 777 "$1" && ln -s "$2" "$1/ray_current_cluster"', "sh",
                   str(legacy), str(target))
    assert made.returncode == 0, made.stderr
    rh.squat = (legacy, target)
    try:
        rh("apply", "-auto-approve").ok()
        yield rh
    finally:
        rh("destroy", "-auto-approve")
        shutil.rmtree(legacy, ignore_errors=True)


def test_a_squatted_old_temp_dir_does_not_make_apply_write_a_root_file(applied: Any) -> None:
    legacy, target = applied.squat
    assert target.read_text() == "root's own\n", "apply wrote through the squatter's symlink"
    temp_dir = applied.resources()["cluster.main"]["private"]["ray"]["ray_temp_dir"]
    assert Path(temp_dir).parent == Path(f"/tmp/rhplan-{os.geteuid()}"), temp_dir
    # the squatter's folder is neither used nor removed: it is not rhplan's
    assert legacy.lstat().st_uid == pwd.getpwnam(ATTACKER).pw_uid
    assert sorted(p.name for p in legacy.iterdir()) == ["ray_current_cluster"]
    print(f"RELIABILITY: security squat (local): old path {legacy} squatted by {ATTACKER}, "
          f"root-only file unchanged=yes, Ray's temp dir {temp_dir}")


def test_the_heads_temp_dir_is_private_after_apply_and_a_printed_secret(
        applied: Any, tmp_path: Path) -> None:
    temp_dir = Path(applied.resources()["cluster.main"]["private"]["ray"]["ray_temp_dir"])
    parent = temp_dir.parent
    st = parent.lstat()
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert temp_dir.lstat().st_uid == os.geteuid() and temp_dir.is_dir()
    # the path stays short enough for Ray's Unix sockets
    sockets = list(temp_dir.glob("session_*/sockets/*"))
    assert sockets and max(len(str(s)) for s in sockets) < 108, sockets
    assert files_open_to_others(temp_dir) == []
    others_shut_out(temp_dir)
    after_apply = sum(len(f) for _, _, f in os.walk(temp_dir))
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(f"""
        import sys
        import rhplan
        def shout():
            import os
            print({SECRET!r}, flush=True)  # streamed back to the caller
            os.write(1, {SECRET!r}.encode() + b"\\n")  # as a C library or child would
            return 1
        assert rhplan.servlet("app", chdir=sys.argv[1]).call(shout) == 1
    """))
    proc = subprocess.Popen([sys.executable, str(driver), str(applied.dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert SECRET in out  # what it printed came back to the caller

    def logs_with_secret() -> list[Path]:
        return [p for p in temp_dir.rglob("*") if p.is_file() and not p.is_symlink()
                and SECRET.encode() in p.read_bytes()]

    logs = poll_until(logs_with_secret, timeout=30, what="the secret in a Ray log")
    assert any(p.name.startswith("worker-") and p.suffix == ".out" for p in logs), logs
    # a driver on this machine (the caller's own Python, here the test's) writes its
    # logs there with its own umask: private through the parent only
    driver_logs = [f for f in files_open_to_others(temp_dir)
                   if re.search(rf"[-_]{proc.pid}\.(log|out|err) ", f)]
    assert files_open_to_others(temp_dir) == driver_logs
    others_shut_out(temp_dir)
    print(f"RELIABILITY: security temp dir (local): parent {parent} 700, files after apply="
          f"{after_apply} open to others=0; after a printed secret files="
          f"{sum(len(f) for _, _, f in os.walk(temp_dir))} holding it={len(logs)} (0600), "
          f"open to others={len(driver_logs)} (the caller's own driver logs); "
          f"{ATTACKER} can list or read none; longest socket path "
          f"{max(len(str(s)) for s in sockets)} bytes")
    for log in logs:
        read = as_user(ATTACKER, "cat", str(log))
        assert read.returncode != 0 and SECRET not in read.stdout, read
        assert "Permission denied" in read.stderr, read.stderr


def test_owned_pids_ignore_another_users_process_naming_the_temp_dir(applied: Any) -> None:
    """The attacker runs a process whose command line names the cluster's temp dir (and
    a file under it): it is not the cluster's, and destroy (as root) leaves it alone."""
    private = applied.resources()["cluster.main"]["private"]["ray"]
    temp_dir, token = private["ray_temp_dir"], private["ray_token_path"]
    # setpriv execs (runuser would stay as a root parent naming the temp dir too)
    who = pwd.getpwnam(ATTACKER)
    decoy = subprocess.Popen(["setpriv", f"--reuid={who.pw_uid}", f"--regid={who.pw_gid}",
                              "--clear-groups", "--", SYSTEM_PY, "-c",
                              "import time; time.sleep(600)", temp_dir,
                              f"{temp_dir}/session_latest/logs", "/x/watchdog-decoy.py"])
    try:
        pid = poll_until(lambda: processes_of(who.pw_uid, temp_dir), timeout=20,
                         what="the decoy")[0]
        owned = run_owned_pids(temp_dir, token)
        assert owned, "no process of the cluster found"
        assert pid not in owned
        # stopping the autostop watchdog (what an autostop change does) spares it too,
        # though it names the temp dir and a watchdog-* script
        manage.stop_watchdog(LocalConnection(), {"ray_python": SYSTEM_PY},
                             {"ray_temp_dir": temp_dir})
        assert alive(pid), "stopping the watchdog signalled another user's process"
        res = applied("destroy", "-auto-approve")
        assert res.returncode == 0, res.describe()
        assert alive(pid), "destroy signalled another user's process"
        assert not Path(temp_dir).exists()
        print(f"RELIABILITY: security owned_pids (local): cluster processes={len(owned)}, "
              f"{ATTACKER}'s process naming the temp dir matched=no, alive after destroy=yes")
    finally:
        decoy.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            decoy.wait(10)
        _userkill(ATTACKER)


def _userkill(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True, check=False)


# --- a user's folder for Ray that someone else made first ------------------------------

def _victim_parent(users: dict[str, int]) -> Path:
    return Path(f"/tmp/rhplan-{users[VICTIM]}")


@pytest.mark.parametrize("squat", ["other owner", "symlink", "loose mode"])
def test_a_squatted_user_folder_is_refused_with_one_line(users: dict[str, int],
                                                          squat: str) -> None:
    parent = _victim_parent(users)
    shutil.rmtree(parent, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        parent.unlink()
    try:
        if squat == "other owner":
            assert as_user(ATTACKER, "mkdir", "-m", "777", str(parent)).returncode == 0
            why = f"belongs to uid {users[ATTACKER]}, not to uid {users[VICTIM]}"
        elif squat == "symlink":
            # a folder the victim could write to: a make through the link would succeed
            lure = Path(tempfile.mkdtemp(prefix="rhplan-t-lure-", dir="/tmp"))
            shutil.chown(lure, users[VICTIM])
            parent.symlink_to(lure)
            why = "is a symlink"
        else:
            assert as_user(VICTIM, "mkdir", "-m", "755", str(parent)).returncode == 0
            why = "has mode 755, not 700"
        code, out = host_script(VICTIM, "make", "0123abcd")
        assert code == 1, out
        assert set(out) == {"error"} and "\n" not in out["error"], out
        assert f"rhplan's folder for Ray {parent} {why}" in out["error"], out
        assert "remove it after checking what it is" in out["error"], out
        if squat == "symlink":
            assert list(lure.iterdir()) == [], "a temp dir was made through the symlink"
    finally:
        if parent.is_symlink():
            parent.unlink()
        shutil.rmtree(parent, ignore_errors=True)
        if squat == "symlink":
            shutil.rmtree(lure, ignore_errors=True)


def test_a_users_temp_dir_is_made_private_and_checked_before_each_use(
        users: dict[str, int], tmp_path: Path) -> None:
    parent = _victim_parent(users)
    shutil.rmtree(parent, ignore_errors=True)
    code, out = host_script(VICTIM, "make", "0123abcd")
    assert code == 0, out
    temp_dir = Path(out["temp_dir"])
    assert temp_dir.parent == parent and temp_dir.name.startswith("0123abcd-")
    for p in (parent, temp_dir):
        st = p.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == users[VICTIM], p
        assert stat.S_IMODE(st.st_mode) == 0o700, p
    code, out = host_script(VICTIM, "status", str(temp_dir), "0", "", "127.0.0.1")
    assert code == 0 and out["problem"] is None, out
    # swapped for a symlink (someone with rights over the folder): every use refuses
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "precious").write_text("x")
    temp_dir.rmdir()
    temp_dir.symlink_to(keep)
    code, out = host_script(VICTIM, "status", str(temp_dir), "0", "", "127.0.0.1")
    assert code == 0 and "is a symlink" in out["problem"], out
    code, out = host_script(VICTIM, "remove", str(temp_dir))
    assert code == 1 and "not removed" in out["error"] and "is a symlink" in out["error"], out
    code, out = host_script(VICTIM, "seal", str(temp_dir))
    assert code == 1 and "is a symlink" in out["error"], out
    assert (keep / "precious").read_text() == "x"
    temp_dir.unlink()
    shutil.rmtree(parent, ignore_errors=True)


# --- an ssh cluster (the suite's loopback sshd) ----------------------------------------

@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_an_ssh_clusters_temp_dir_is_private_and_removed_by_destroy(
        server: SSHServer, tmp_path: Path, rhplan_in: Any) -> None:  # noqa: F811
    rh = rhplan_in(tmp_path / "infra")
    root = tmp_path / "root"
    provision_ray_venv(root)
    rh.write(cluster_hcl("box", ["127.0.0.1"], root, ssh_block(server)))
    try:
        rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
        temp_dir = Path(rh.resources()["cluster.box"]["private"]["ray"]["ray_temp_dir"])
        assert temp_dir.parent == Path(f"/tmp/rhplan-{os.geteuid()}"), temp_dir
        assert stat.S_IMODE(temp_dir.parent.lstat().st_mode) == 0o700
        assert list(temp_dir.glob("session_*/logs/raylet.out")), "Ray's logs are elsewhere"
        assert files_open_to_others(temp_dir) == []
        # a refresh reads the host through the same checks and finds Ray running
        plan = rh("plan", "-detailed-exitcode")
        assert plan.returncode == 0, plan.describe()
    finally:
        res = rh("destroy", "-auto-approve", timeout=APPLY_TIMEOUT)
    assert res.returncode == 0, res.describe()
    assert not temp_dir.exists()


# --- upgrade: a cluster recorded with the old shared temp dir --------------------------

@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_a_cluster_recorded_with_the_old_shared_temp_dir_is_refreshed_and_destroyed(
        rh: Any) -> None:
    """A head older rhplan started in /tmp/rhplan-ray-<sha256(root)[:12]> (made by Ray,
    0777), recorded so in the state: a refresh still sees it running, and destroy stops
    it and removes that folder."""
    rh.write('cluster "main" {\n  provider = "local"\n}\n')
    rh("apply", "-auto-approve").ok()
    doc = rh.state()
    cluster = next(r for r in doc["resources"] if r["address"] == "cluster.main")
    root, private = cluster["attributes"]["root_dir"], cluster["private"]["ray"]
    token = private["ray_token_path"]
    conn = LocalConnection()
    ray_head.stop(conn, sys.executable, private["ray_temp_dir"], token)
    # the head as older rhplan started it: Ray's own folder at the hashed path
    legacy = ray_head.legacy_temp_dir(root)
    argv, (gcs,) = ray_head._node_argv(conn, sys.executable, token, True, "127.0.0.1",
                                       legacy, 1, 0)
    started = conn.run([*argv, "--head", f"--port={gcs}", "--include-dashboard=false"],
                       timeout=ray_head.START_TIMEOUT)
    try:
        assert started.ok, started.stderr
        assert stat.S_IMODE(Path(legacy).stat().st_mode) == 0o777
        private["ray_temp_dir"] = legacy
        cluster["attributes"]["ray_address"] = f"127.0.0.1:{gcs}"
        rh.state_path.write_text(json.dumps(doc, indent=2))
        plan = rh("plan", "-detailed-exitcode")
        assert plan.returncode == 0, plan.describe()
        assert "No changes" in plan.stdout, plan.stdout
        res = rh("destroy", "-auto-approve")
        assert res.returncode == 0 and "1 destroyed" in res.stdout, res.describe()
        assert not Path(legacy).exists()
        assert processes_of(os.geteuid(), legacy) == []
    finally:
        for pid in processes_of(os.geteuid(), legacy):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        shutil.rmtree(legacy, ignore_errors=True)
