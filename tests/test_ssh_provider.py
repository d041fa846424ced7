"""The ssh provider end to end: real OpenSSH servers on 127.0.0.1 (tests/support/sshd.py), real
Ray, real uv installs from PyPI, the real CLI in subprocesses. Nothing is mocked.

The "remote" host is this machine reached over SSH, so what a command did there
(files, processes) is checked with plain os calls. Starting a cluster costs seconds
(its own Ray venv on the first apply of a root_dir, then a Ray head), so the module
applies ONE configuration (`box`: a one-host cluster, a secret and an env with a
servlet) on ONE sshd and the tests below walk it in file order: read-only checks
first, then a no-change re-apply counted command by command, then the host key
changed and the host unreachable (each restored before the test ends). Its finalizer
destroys it and checks that no process of that cluster's Ray is left (found by its
temp dir and its token; other Rays on the machine are never looked at or touched).
Small separate configurations cover a host that fails among others, bad logins and,
where the machine allows it, a two-host cluster in two network namespaces.

Every `rhplan.servlet` call runs in a driver SUBPROCESS (Ray reads its settings when
imported; the pytest process never imports Ray). Remote commands are counted by
running the CLI in a subprocess of its own with SSHConnection.run wrapped (see
COUNTER), where rhplan's connection pool lives. Every wait is bounded.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
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
from ssh_cluster import (
    APPLY_TIMEOUT,
    DRIVER_TIMEOUT,
    KEY,
    MARK,
    NUMPY,
    PAYLOAD,
    PRELUDE,
    RAY_VERSION,
    cluster_hcl,
    destroy_and_check,
    find_marks,
    hcl_str,
    provision_ray_venv,
    ssh_block,
    sshd_down,
)
from sshd import SSHServer, free_port

from rhplan.ray.head import private_env

pytest.importorskip("paramiko")

SECRET_VAR = "RHPLAN_SSH_TEST_SECRET"
SECRET = canary_secret("ssh", f"; touch {MARK}_10 $(touch {MARK}_11) `touch {MARK}_12` "
                       f"'\"\ntouch /tmp/{MARK}_13")

# Runs a CLI command in this process's image of rhplan, counting every remote command
# (argv) and SFTP transfer, and the pool's own commands_run. One `COUNT {json}` line.
COUNTER = r"""
import json, sys
from rhplan.hosts import ssh
from rhplan.cli import main
commands, sftp = [], []
run, put, get = ssh.SSHConnection.run, ssh.SSHConnection.put_bytes, ssh.SSHConnection.get_bytes
def counted_run(self, argv, **kw):
    commands.append([self.where, [str(a) for a in argv]])
    return run(self, argv, **kw)
def counted_put(self, data, path, *a, **kw):
    sftp.append([self.where, "put", path])
    return put(self, data, path, *a, **kw)
def counted_get(self, path):
    sftp.append([self.where, "get", path])
    return get(self, path)
ssh.SSHConnection.run = counted_run
ssh.SSHConnection.put_bytes = counted_put
ssh.SSHConnection.get_bytes = counted_get
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
pool = {c.where: c.commands_run for c in ssh.pooled()}
sys.stdout.flush()
print("COUNT " + json.dumps({"exit": code, "commands": commands, "sftp": sftp, "pool": pool}))
"""



def box_hcl(server: SSHServer, root: Path) -> str:
    return cluster_hcl("box", ["127.0.0.1"], root, ssh_block(server)) + textwrap.dedent(f"""
        secret "s" {{
          from_env = ["{SECRET_VAR}"]
        }}

        env "remote" {{
          cluster  = cluster.box
          reqs     = ["pip:six==1.16.0", "pip:{NUMPY}"]
          env_vars = {{
            WHERE    = "ssh"
            INJECTED = {hcl_str(PAYLOAD)}
            {hcl_str(KEY)} = "key-arrived"
          }}
          secrets  = [secret.s]
        }}
    """)


# --------------------------------------------------------------------------
# processes, files and commands
# --------------------------------------------------------------------------

def site_snapshot(env_dir: Path) -> dict[str, Any]:
    """What a rebuild or an install would change: site-packages' mtime and entries (with
    inodes), and the venv's own files."""
    site = next((env_dir / "lib").glob("python*/site-packages"))
    cfg = os.stat(env_dir / "pyvenv.cfg")
    return {"site_mtime": os.stat(site).st_mtime_ns,
            "entries": sorted((e.name, e.inode()) for e in os.scandir(site)),
            "pyvenv": (cfg.st_ino, cfg.st_mtime_ns)}


_INSTALL_WORDS = {"install", "uninstall", "venv", "sync"}


def is_install(argv: list[str]) -> bool:
    """An argv that installs, removes or (re)creates something: pip/uv install and
    uninstall, `-m venv`, `uv venv`, or a script that may run one."""
    return any(a in _INSTALL_WORDS or a.startswith("ray==") or re.search(
        r"""["'](install|uninstall|venv)["']""", a) for a in argv)


@dataclass(frozen=True)
class Counted:
    exit: int
    output: str
    commands: list[tuple[str, list[str]]]
    sftp: list[list[str]]
    pool: dict[str, int]

    def per_host(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for where, _ in self.commands:
            out[where] = out.get(where, 0) + 1
        return out

    def summary(self) -> str:
        return "\n".join(f"  {w}: {' '.join(a)[:150]!r}" for w, a in self.commands)


def counted(rh: Any, *args: str, timeout: float = 300.0) -> Counted:
    """Run `rhplan -chdir=DIR ARGS` in a fresh Python with every remote command counted."""
    try:
        proc = subprocess.run([sys.executable, "-c", COUNTER, f"-chdir={rh.dir}", *args],
                              capture_output=True, text=True, timeout=timeout, env=rh.env,
                              input="", check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"rhplan {' '.join(args)} did not finish within {timeout} s: {exc.stdout!r}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("COUNT ")]
    assert len(lines) == 1 and proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    data = json.loads(lines[-1][len("COUNT "):])
    output = proc.stdout.replace(lines[-1], "") + proc.stderr
    assert "Traceback" not in output, output
    return Counted(data["exit"], output, [(w, a) for w, a in data["commands"]], data["sftp"],
                   data["pool"])


# --------------------------------------------------------------------------
# the shared configuration: one sshd, one applied one-host cluster
# --------------------------------------------------------------------------

@dataclass
class Box:
    server: SSHServer
    rh: Any  # conftest.Rhplan bound to the configuration folder
    root: Path  # the cluster's root_dir on the "host"
    scripts: Path  # where driver scripts are written
    applied: Any = None  # the first apply's Result
    seen_pids: set[int] = field(default_factory=set)

    @property
    def env_dir(self) -> Path:
        return self.root / "envs" / "remote"

    @property
    def temp_dir(self) -> str:
        return temp_dir_for(str(self.root))

    def cluster(self) -> dict[str, Any]:
        return self.rh.resources()["cluster.box"]

    def servlet_pid(self) -> int:
        pid = self.rh.resources()["env.remote"]["attributes"]["servlet_pid"]
        assert isinstance(pid, int), self.rh.resources()["env.remote"]
        self.seen_pids.add(pid)
        return pid

    def drive(self, body: str) -> dict[str, Any]:
        """Run a driver script (PRELUDE + body) in a subprocess; return what it emitted.
        Its environment lacks the secret: the servlet must get it from rhplan."""
        script = self.scripts / f"driver_{uuid.uuid4().hex[:8]}.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        return run_driver(script, self.rh.dir,
                          env={k: v for k, v in os.environ.items() if k != SECRET_VAR})


@pytest.fixture(scope="module")
def box(server: SSHServer, tmp_path_factory: pytest.TempPathFactory,
        rhplan_in: Any) -> Iterator[Box]:
    base = tmp_path_factory.mktemp("ssh-box")
    rh = rhplan_in(base / "infra", env={SECRET_VAR: SECRET})
    root = base / "root"
    rh.write(box_hcl(server, root))
    (base / "scripts").mkdir()
    b = Box(server, rh, root, base / "scripts")
    try:
        b.applied = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
        b.servlet_pid()
        yield b
    finally:
        if server._proc is None:  # a test stopped it and could not restore it
            server.start()
        destroy_and_check(rh, root, [b.temp_dir], b.seen_pids)


@contextlib.contextmanager
def host_key_changed(server: SSHServer) -> Iterator[tuple[str, str]]:
    """The host shows a new key (as if rebuilt or impersonated) until the block ends;
    then its real key is back. Yields (old, new) fingerprints."""
    files = (server.host_key, server.host_key.with_name("host_key.pub"))
    saved = {p: p.read_bytes() for p in files}
    old = server.host_key_fingerprint
    server.regenerate_host_key()
    new = server.host_key_fingerprint
    assert new != old
    try:
        yield old, new
    finally:
        server.stop()
        for p, data in saved.items():
            p.write_bytes(data)
        server.host_key_fingerprint = old
        server.write_known_hosts(server.known_hosts)
        server.start()


# --------------------------------------------------------------------------
# the applied configuration, read-only first
# --------------------------------------------------------------------------

def test_apply_records_the_host_its_key_and_ray(box: Box, server: SSHServer) -> None:
    out = box.applied.stdout
    assert "Apply complete! Resources: 3 added, 0 changed, 0 destroyed." in out, out
    assert SECRET not in box.applied.output and SECRET not in box.rh.state_path.read_text()
    c = box.cluster()
    a, p = c["attributes"], c["private"]["provider"]
    assert a["hosts"] == {"127.0.0.1": "ready"}, a
    assert (a["provider"], a["root_dir"], a["ray_status"]) == ("ssh", str(box.root), "running")
    assert a["ray_version"] == RAY_VERSION and a["ray_address"].startswith("127.0.0.1:"), a
    assert a["ray_python"] == f"{box.root}/ray-venv/bin/python"
    # trust on first use: the key sshd really has (as ssh-keygen prints it) is recorded
    assert p["host_keys"] == {"127.0.0.1": server.host_key_fingerprint}, p
    assert (box.root / ".rhplan-cluster").is_file()
    assert os.access(box.root / "ray-venv" / "bin" / "python", os.X_OK)
    assert cluster_processes([box.temp_dir], box.root), "no Ray process of the cluster runs"
    e = box.rh.resources()["env.remote"]["attributes"]
    assert e["path"] == str(box.env_dir) and e["python"] == f"{box.env_dir}/bin/python"
    assert f"{NUMPY}" in e["installed"][f"pip:{NUMPY}"], e["installed"]
    assert "six==1.16.0" in e["installed"]["pip:six==1.16.0"], e["installed"]
    assert server.accepted_logins() >= 1


def test_a_new_hosts_ray_venv_links_the_users_shared_one(box: Box) -> None:
    """rhplan's folder on a new host links this user's shared Ray venv for that Ray and
    Python (issue 17: made once with uv, Ray's modules compiled once, reused by every
    cluster and after a destroy, which removes only the link)."""
    venv = box.root / "ray-venv"
    assert venv.is_symlink(), "the Ray venv was built inside rhplan's folder"
    target = Path(os.readlink(venv))
    assert target.parent == Path.home() / ".cache" / "rhplan" / "ray-venvs", target
    assert target.name.startswith(f"ray-{RAY_VERSION}-py{sys.version_info[0]}."), target
    assert (target / ".rhplan-complete").read_text() == RAY_VERSION
    assert os.access(target / "bin" / "uv", os.X_OK)  # envs are built with uv


def test_np_sum_through_the_servlet_over_ssh(box: Box) -> None:
    got = box.drive("""
        s = rhplan.servlet("remote", chdir=CHDIR)

        def np_sum(a, b):
            import numpy as np
            return int(np.sum([a, b]))

        def where():
            import os, sys
            return [sys.prefix, os.environ.get("WHERE")]

        emit(sum=s.call(np_sum, 2, 3), where=s.call(where), pid=s.status()["pid"])
    """)
    assert got == {"sum": 5, "where": [str(box.env_dir), "ssh"], "pid": box.servlet_pid()}


def test_rhplan_run_prints_the_env_var(box: Box) -> None:
    res = box.rh("run", "remote", "--", "python", "-c",
                 "import os, sys; print(os.environ['WHERE']); print(sys.prefix)").ok()
    assert res.stdout == f"ssh\n{box.env_dir}\n", res.describe()
    res = box.rh("run", "remote", "--", "python", "-c", "import sys; sys.exit(7)")
    assert res.returncode == 7, res.describe()


def test_status_shows_the_servlet_alive(box: Box) -> None:
    pid = box.servlet_pid()
    res = box.rh("status").ok()
    assert "cluster.box (ssh, hosts 127.0.0.1)" in res.stdout, res.stdout
    address = box.cluster()["attributes"]["ray_address"]
    assert re.search(rf"ray head\s+running\s+{re.escape(address)}\s+ray {RAY_VERSION}",
                     res.stdout), res.stdout
    assert re.search(rf"servlet\s+alive\s+remote\s+pid {pid}\b", res.stdout), res.stdout
    report = json.loads(box.rh("status", "-json").ok().stdout)
    assert [s["alive"] for s in report[0]["servlets"]] == [True], report


def test_injection_strings_stay_data(box: Box) -> None:
    expected = {"WHERE": "ssh", "INJECTED": PAYLOAD, KEY: "key-arrived", SECRET_VAR: SECRET}
    keys = json.dumps(sorted(expected))
    # in the servlet: env vars, the secret, and a command's argument
    got = box.drive(f"""
        s = rhplan.servlet("remote", chdir=CHDIR)

        def getenv(keys):
            import os
            return {{k: os.environ.get(k) for k in keys}}

        r = s.run(["printf", "%s", {PAYLOAD!r}])
        emit(env=s.call(getenv, json.loads({keys!r})), run=r)
    """)
    assert got["env"] == expected
    assert got["run"].get("stdout") == PAYLOAD, got["run"]
    # through `rhplan run` over SSH: the same values, and arguments verbatim
    res = box.rh("run", "remote", "--", "python", "-c",
                 "import json, os, sys; print(json.dumps({k: os.environ.get(k) "
                 "for k in json.loads(sys.argv[1])}))", keys).ok()
    assert json.loads(res.stdout) == expected
    res = box.rh("run", "remote", "--", "printf", "%s", PAYLOAD, SECRET, KEY).ok()
    assert res.stdout == PAYLOAD + SECRET + KEY, res.describe()
    # nothing ran: no file named like the marks anywhere a shell could have made one
    hits = find_marks(box.root, box.rh.dir, Path("/tmp"),
                      shallow=(Path.home(), Path.cwd(), Path("/")))
    assert not hits, hits
    assert SECRET not in box.rh.state_path.read_text()
    assert SECRET not in "".join(r.output for r in box.rh.log if r.args[0] != "run")


def test_reapply_without_changes_runs_no_install_command(box: Box) -> None:
    env_before, ray_before = site_snapshot(box.env_dir), site_snapshot(box.root / "ray-venv")
    state_before = box.rh.state()
    pid = box.servlet_pid()
    plan = counted(box.rh, "plan", "-detailed-exitcode")
    assert plan.exit == 0 and "No changes." in plan.output, plan.output
    apply = counted(box.rh, "apply", "-auto-approve")
    assert apply.exit == 0 and "No changes." in apply.output, apply.output
    for word in ("Creating", "Modifying", "Destroying", "Apply complete"):
        assert word not in apply.output, apply.output
    for run in (plan, apply):
        installs = [argv for _, argv in run.commands if is_install(argv)]
        assert not installs, f"install commands in a no-change run:\n{run.summary()}"
        assert not [s for s in run.sftp if s[1] == "put"], run.sftp  # nothing written
        assert run.commands, "nothing was read: the host was not refreshed"
        # the wrapper saw what the pool counted
        assert sum(run.pool.values()) == len(run.commands), (run.pool, run.summary())
    print(f"\nno-change plan: {plan.per_host()} commands per host\n{plan.summary()}"
          f"\nno-change apply: {apply.per_host()}")
    assert site_snapshot(box.env_dir) == env_before
    assert site_snapshot(box.root / "ray-venv") == ray_before
    assert box.rh.state() == state_before  # not even the serial moved
    assert box.servlet_pid() == pid and alive(pid)


# --------------------------------------------------------------------------
# the host changes under the applied configuration
# --------------------------------------------------------------------------

def test_run_and_status_refuse_a_changed_host_key(box: Box, server: SSHServer) -> None:
    state_before = box.rh.state_path.read_bytes()
    logins = server.accepted_logins()
    with host_key_changed(server) as (old, new):
        line = box.rh("run", "remote", "--", "true").error_line()
        assert "host key of 127.0.0.1" in line and "changed" in line, line
        assert old in line and new in line, line
        res = box.rh("status")
        assert res.returncode == 1 and "unreachable" in res.stdout, res.describe()
        report = json.loads(box.rh("status", "-json").stdout)
        assert "host key" in report[0]["ray"]["error"], report
        # refused before logging in: the client sends no key to an unknown server
        assert server.accepted_logins() == logins
    assert box.rh.state_path.read_bytes() == state_before
    assert box.rh("run", "remote", "--", "true").returncode == 0  # the real key: accepted


def test_plan_refuses_a_changed_host_key(box: Box, server: SSHServer) -> None:
    state_before = box.rh.state_path.read_bytes()
    with host_key_changed(server):
        line = box.rh("plan").error_line()
        assert "host key of 127.0.0.1" in line and "changed" in line, line
        res = box.rh("apply", "-auto-approve")  # nothing is accepted silently either
        assert res.returncode == 1 and "host key" in res.output, res.describe()
        assert "Creating" not in res.output, res.describe()
    assert box.rh.state_path.read_bytes() == state_before


def test_run_and_status_report_an_unreachable_host(box: Box, server: SSHServer) -> None:
    with sshd_down(server):
        line = box.rh("run", "remote", "--", "true").error_line()
        assert f"cannot reach 127.0.0.1:{server.port}: connection refused" in line, line
        res = box.rh("status")
        assert res.returncode == 1 and "unreachable" in res.stdout, res.describe()
    assert box.rh("run", "remote", "--", "true").returncode == 0


def test_plan_reports_an_unreachable_host(box: Box, server: SSHServer) -> None:
    with sshd_down(server):
        line = box.rh("plan").error_line()
        assert f"cannot reach 127.0.0.1:{server.port}" in line, line


def test_the_cluster_is_still_whole(box: Box) -> None:
    """After the host key and the sshd came back, nothing needs doing."""
    res = box.rh("plan", "-detailed-exitcode")
    assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
    got = box.drive("""
        s = rhplan.servlet("remote", chdir=CHDIR)
        emit(pid=s.status()["pid"])
    """)
    assert got["pid"] == box.servlet_pid()


# --------------------------------------------------------------------------
# small separate configurations
# --------------------------------------------------------------------------

def test_one_failed_host_leaves_the_others_applied_and_recorded(
        server: SSHServer, tmp_path: Path, rhplan_in: Any) -> None:
    # 127.0.0.2 is loopback too, but this sshd listens on 127.0.0.1 only: refused at once
    rh = rhplan_in(tmp_path / "infra")
    root = tmp_path / "root"
    provision_ray_venv(root)
    rh.write(cluster_hcl("two", ["127.0.0.1", "127.0.0.2"], root, ssh_block(server))
             + 'env "e" {\n  cluster = cluster.two\n  reqs    = ["pip:six==1.16.0"]\n}\n')
    temp_dirs = [temp_dir_for(str(root))]
    try:
        t0 = time.monotonic()
        res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
        assert res.returncode == 1, res.describe()
        errors = [ln for ln in res.stdout.splitlines() if ln.startswith("Error: ")]
        assert len(errors) == 1, res.describe()
        assert errors[0].startswith("Error: cluster.two: 1 of 2 hosts failed"), errors
        assert f"cannot reach 127.0.0.2:{server.port}: connection refused" in errors[0]
        assert "skipped: env.e" in res.stdout, res.stdout  # the env waits for its cluster
        c = rh.resources()["cluster.two"]
        a = c["attributes"]
        temp_dirs += list((c["private"]["ray"].get("ray_worker_temp_dirs") or {}).values())
        assert set(a["hosts"]) == {"127.0.0.1", "127.0.0.2"}, a["hosts"]
        assert a["hosts"]["127.0.0.1"] == "ready", a["hosts"]
        assert a["hosts"]["127.0.0.2"].startswith("failed: cannot reach 127.0.0.2:"), a
        assert a["ray_status"] == "running" and a["ray_address"].startswith("127.0.0.1:"), a
        head = cluster_processes(temp_dirs, root)
        assert head, "the ready host's Ray head is not running"
        assert "env.e" not in rh.resources()
        # the next plan offers to set up the failed host, in place
        res = rh("plan", "-detailed-exitcode")
        assert res.returncode == 2, res.describe()
        assert "# cluster.two will be updated in-place" in res.stdout, res.stdout
        assert re.search(r'~ "127\.0\.0\.2" = "failed: .*" -> "ready"', res.stdout), res.stdout
        assert "# env.e will be created" in res.stdout
        assert "destroy" not in res.stdout.split("Plan:")[-1].replace("0 to destroy", "")
        # applying again while it is still down: the same partial result, the head untouched
        address = a["ray_address"]
        res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
        assert res.returncode == 1 and "1 of 2 hosts failed" in res.stdout, res.describe()
        a = rh.resources()["cluster.two"]["attributes"]
        assert a["hosts"]["127.0.0.1"] == "ready" and a["ray_address"] == address, a
        assert set(head) <= set(cluster_processes(temp_dirs, root)), "the head was restarted"
        print(f"\ntwo hosts, one down: {time.monotonic() - t0:.1f} s")
    finally:
        destroy_and_check(rh, root, temp_dirs)


def test_bad_logins_fail_in_one_line(server: SSHServer, tmp_path: Path,
                                     rhplan_in: Any) -> None:
    """Nothing is started nor recorded when the head cannot be reached or logged into,
    or shows a key known_hosts does not trust."""
    stranger = SSHServer(tmp_path / "other-sshd")  # its host key differs from `server`'s
    other_known = tmp_path / "known_hosts"
    key_type, blob = stranger.host_key.with_name("host_key.pub").read_text().split()[:2]
    other_known.write_text(f"[127.0.0.1]:{server.port} {key_type} {blob}\n")
    cases = {
        "wrong-key": (ssh_block(server, key=server.stranger_key),
                      f"127.0.0.1:{server.port} refused to log in {server.user!r} with key "
                      f"{server.stranger_key}"),
        "no-server": (ssh_block(server, port=(port := free_port())),
                      f"cannot reach 127.0.0.1:{port}: connection refused"),
        "wrong-host-key": (ssh_block(server, known_hosts=str(other_known)),
                           f"host key of 127.0.0.1:{server.port} changed"),
        "unknown-host": (ssh_block(server, known_hosts=str(tmp_path / "empty_known_hosts")),
                         f"host 127.0.0.1:{server.port} is not in known_hosts"),
    }
    (tmp_path / "empty_known_hosts").write_text("")
    logins = server.accepted_logins()
    for name, (ssh, expected) in cases.items():
        rh = rhplan_in(tmp_path / name)
        root = tmp_path / f"{name}-root"
        rh.write(cluster_hcl("c", ["127.0.0.1"], root, ssh))
        res = rh("apply", "-auto-approve", timeout=120)
        assert res.returncode == 1, res.describe()
        errors = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
        assert len(errors) == 1 and expected in errors[0], (expected, res.describe())
        assert errors[0].startswith("Error: cluster.c: head host 127.0.0.1: "), errors
        assert not res.stderr.strip(), res.describe()
        assert not rh.resources() and not root.exists(), res.describe()
        assert not Path(temp_dir_for(str(root))).exists()
    assert server.accepted_logins() == logins  # no login got through
    stranger.close()


# --------------------------------------------------------------------------
# two hosts in two network namespaces: one Ray cluster
# --------------------------------------------------------------------------


# Runs in the head's namespace with the cluster's Ray Python: the live nodes. argv[2]:
# the head's Ray settings (token, TLS files) as JSON.
_NODES = """
import json, os, sys
os.environ.update(json.loads(sys.argv[2]))
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print("NODES " + json.dumps(sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])))
"""


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_two_hosts_in_two_namespaces_form_one_ray_cluster(tmp_path: Path,
                                                          rhplan_in: Any) -> None:
    from netns import TestNetwork, netns_available
    reason = netns_available()
    if reason is not None:
        pytest.skip(f"network namespaces: {reason}")
    net = TestNetwork()
    try:
        a, b = net.add_host("a"), net.add_host("b")
        # the hosts share this file system; they have no PyPI (nothing beyond the bridge)
        root = tmp_path / "root"
        provision_ray_venv(root)
        rh = rhplan_in(tmp_path / "infra")
        ssh = (f'  ssh {{\n    user        = "root"\n    private_key = '
               f"{hcl_str(net.client_key)}\n    known_hosts = {hcl_str(net.known_hosts)}\n  }}")
        rh.write(cluster_hcl("duo", [a.address, b.address], root, ssh))
        temp_dirs = [temp_dir_for(str(root))]
        try:
            res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
            c = rh.resources()["cluster.duo"]
            temp_dirs += list((c["private"]["ray"].get("ray_worker_temp_dirs") or {}).values())
            assert c["attributes"]["hosts"] == {a.address: "ready", b.address: "ready"}, res
            assert c["attributes"]["ray_address"].startswith(f"{a.address}:")
            proc = a.run([str(root / "ray-venv" / "bin" / "python"), "-c", _NODES,
                          c["attributes"]["ray_address"],
                          json.dumps(private_env(c["private"]["ray"]))],
                         timeout=DRIVER_TIMEOUT)
            nodes = [ln for ln in proc.stdout.splitlines() if ln.startswith("NODES ")]
            assert proc.returncode == 0 and nodes, f"{proc.stdout}\n{proc.stderr}"
            alive_nodes = json.loads(nodes[0][6:])
            logs = Path(temp_dirs[0]) / "session_latest" / "logs"
            head_log = "".join(f.read_text(errors="replace") for f in
                               (logs / "raylet.out", logs / "raylet.err") if f.exists())
            assert "fate-shares with it" not in head_log, head_log[-2000:]
            assert alive_nodes == sorted([a.address, b.address])
            res = rh("plan", "-detailed-exitcode")
            assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
        finally:
            destroy_and_check(rh, root, temp_dirs)
    finally:
        try:
            net.close()
        except RuntimeError as exc:
            # tests/support/netns.py: a veth that vanished with its namespace may answer "No such
            # device", which _gone() does not take for gone (reported); anything else counts
            if any("No such device" not in part for part in str(exc).split("; ")):
                raise
