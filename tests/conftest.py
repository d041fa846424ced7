"""Shared helpers for the end-to-end tests: run the real `rhplan` CLI in a
configuration folder, wait on conditions with a deadline, write small local
packages. Nothing is mocked: every command is a subprocess of this venv's
Python, every env a real uv venv.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

# support code (sshd, moto server, network namespaces, proxies, the secret scan) lives in
# tests/support/ and is imported by module name, as the tests and benches always have
SUPPORT = Path(__file__).resolve().parent / "support"
sys.path.insert(0, str(SUPPORT))
pytest.register_assert_rewrite("secret_scan")
from motoserver import AWS_LOGIN_VARS  # noqa: E402
from rayprocs import stop_leftovers, temp_dir_prefix  # noqa: E402
from secret_scan import record_cli_output  # noqa: E402 - after the rewrite hook above

# secret_scan: at the end of the session, every canary secret value (tests/support/canary.py) is
# looked for in every artifact the run left, the CLI output logged below included
pytest_plugins = ["secret_scan"]

# This machine's shell sets PYTHONDONTWRITEBYTECODE=1, so every CLI run, Ray head, Ray
# worker and servlet the tests start would compile each module it imports (~0.5 s of CPU
# for Ray alone, per process). A user's Python caches bytecode; the tests' processes do too.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# A developer's AWS login (a profile, a config file, an endpoint) would send the tests'
# boto3 clients and every rhplan they run somewhere other than the moto server, or fail
# them (ProfileNotFound): the tests talk to moto only, with aws_env()'s fake credentials.
# A test that needs one of these sets it itself.
for _name in AWS_LOGIN_VARS:
    os.environ.pop(_name, None)

T = TypeVar("T")

RHPLAN = [sys.executable, "-m", "rhplan.cli"]
# Every CLI call is bounded. A local cluster starts a Ray head (~2 s) and an env installs
# a few tiny wheels plus Ray and starts a servlet (~4 s): this is generous.
CLI_TIMEOUT = 150.0


@dataclass(frozen=True)
class Result:
    """One finished `rhplan` command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (f"rhplan {' '.join(self.args)} -> exit {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")

    def ok(self) -> Result:
        assert self.returncode == 0, self.describe()
        return self

    def error_line(self) -> str:
        """The single line a user error prints on stderr (checked to be the only one)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert self.returncode == 1, self.describe()
        assert len(lines) == 1, f"expected one line on stderr\n{self.describe()}"
        assert "Traceback" not in self.output, self.describe()
        return lines[0]


class Rhplan:
    """The rhplan CLI bound to one configuration folder, as a user runs it."""

    def __init__(self, directory: Path, env: dict[str, str] | None = None):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1",
                    # a servlet starts in ~2 s; a broken one should fail a test quickly,
                    # not after rhplan's default of 120 s
                    "RHPLAN_SERVLET_TIMEOUT": "30", **(env or {})}
        for k in list(self.env):
            if k.startswith(("RHPLAN_VAR_", "TF_VAR_")) or k in ("RHPLAN_WORKSPACE",
                                                                  "TF_WORKSPACE"):
                del self.env[k]  # a developer's shell must not change what tests plan
        self.log: list[Result] = []  # every command run, for checks over all output
        self.background: list[Background] = []  # commands started with start()
        self.releases: list[Path] = []  # files that let blocked setup commands go on
        self.keep = False  # True: teardown leaves the state alone (nothing real behind it)

    # --- files -------------------------------------------------------------
    def write(self, text: str, name: str = "main.hcl") -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def edit(self, old: str, new: str, name: str = "main.hcl") -> None:
        path = self.dir / name
        text = path.read_text()
        assert text.count(old) == 1, f"{old!r} is not exactly once in {path}:\n{text}"
        path.write_text(text.replace(old, new))

    @property
    def state_path(self) -> Path:
        return self.dir / "rhplan.state.json"

    @property
    def lock_info_path(self) -> Path:
        return self.dir / "rhplan.state.json.lock.info"

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())

    def resources(self) -> dict[str, dict[str, Any]]:
        if not self.state_path.exists():
            return {}
        return {r["address"]: r for r in self.state()["resources"]}

    def cluster_dir(self, cluster: str) -> Path:
        return self.dir / ".rhplan" / "clusters" / cluster

    def env_dir(self, cluster: str, env: str) -> Path:
        return self.cluster_dir(cluster) / "envs" / env

    # --- commands ----------------------------------------------------------
    def __call__(self, *args: str, timeout: float = CLI_TIMEOUT, input: str | None = None,
                 env: dict[str, str] | None = None) -> Result:
        argv = [*RHPLAN, f"-chdir={self.dir}", *args]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  input=input if input is not None else "",
                                  env={**self.env, **(env or {})}, check=False)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"rhplan {' '.join(args)} did not finish within {timeout} s: "
                        f"{exc.stdout!r} {exc.stderr!r}")
        res = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)
        self.log.append(res)
        # `run` prints what the user's command prints (a test may print a secret that
        # way on purpose): only rhplan's own output goes to the scanned log
        if args[:1] != ("run",):
            record_cli_output(args, res.returncode, res.stdout, res.stderr)
        assert "Traceback" not in res.output, res.describe()
        return res

    def start(self, *args: str, log_name: str = "bg") -> Background:
        """Start a command in the background, in its own session (so a test can signal
        it, or its whole process group, without touching pytest)."""
        out = self.dir.parent / f"{self.dir.name}-{log_name}.out"
        fh = out.open("w")
        proc = subprocess.Popen([*RHPLAN, f"-chdir={self.dir}", *args], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env, start_new_session=True)
        fh.close()
        bg = Background(proc, out, tuple(args))
        self.background.append(bg)
        return bg

    def blocker(self, tag: str = "blocker") -> tuple[str, Path, Path]:
        """(setup_cmds entry, release file, started file) for a step that blocks until
        the test creates the release file; teardown releases it in any case."""
        release = self.dir.parent / f"{tag}.release"
        started = self.dir.parent / f"{tag}.started"
        self.releases.append(release)
        return make_blocker_cmd(release, started), release, started

    def release_all(self) -> None:
        """Let every blocker go and wait for the background commands to end (a command
        that does not end is killed, by its own process group id)."""
        for p in self.releases:
            p.touch()
        for bg in self.background:
            try:
                bg.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(bg.pid, signal.SIGKILL)
                bg.proc.wait(timeout=10)

    def ray_nodes(self) -> list[tuple[list[str], Path]]:
        """(temp dirs, root_dir) of every cluster this folder may have started a Ray for:
        those the state records, and local clusters' folders the state lacks (an apply
        that failed before recording). Each temp dir list also holds the fixed start of
        every node's temp dir name, which finds its Ray once the folder is gone too."""
        roots: dict[str, list[str]] = {}
        for r in self.resources().values():
            a, ray = r.get("attributes", {}), r.get("private", {}).get("ray", {})
            if r.get("type") == "cluster" and a.get("root_dir"):
                root = str(a["root_dir"])
                roots.setdefault(root, []).extend(
                    [ray.get("ray_temp_dir") or "", *(ray.get("ray_worker_temp_dirs") or {})
                     .values(), *(temp_dir_prefix(f"{root}@{ip}") for ip in a.get("ips") or [])])
        clusters = self.dir / ".rhplan" / "clusters"
        for folder in clusters.iterdir() if clusters.is_dir() else ():
            roots.setdefault(str(folder.absolute()), [])
        return [([d for d in dirs if d] + [temp_dir_prefix(root)], Path(root))
                for root, dirs in roots.items()]

    def start_cleanup(self) -> subprocess.Popen[bytes] | None:
        """Destroy what the test left (Ray heads are processes; nothing may outlive the
        run). Started in the background so the next test need not wait for Ray to stop;
        the session waits for it at the end."""
        self.release_all()
        if self.keep or not self.resources():
            return None
        return subprocess.Popen([*RHPLAN, f"-chdir={self.dir}", "destroy", "-auto-approve"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.env)


@dataclass
class Background:
    proc: subprocess.Popen[bytes]
    out_path: Path
    args: tuple[str, ...]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.out_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self, timeout: float = CLI_TIMEOUT) -> Result:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            pytest.fail(f"rhplan {' '.join(self.args)} did not finish within {timeout} s:\n"
                        f"{self.text()}")
        return Result(self.args, rc, self.text(), "")


def poll_until(pred: Callable[[], T], timeout: float = 60.0, what: str = "condition",
               interval: float = 0.02) -> T:
    """Poll pred until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def make_local_package(root: Path, name: str, value: str = "local") -> Path:
    """A minimal pyproject package folder (setuptools) exposing NAME.VALUE."""
    pkg = root / name
    (pkg / name).mkdir(parents=True, exist_ok=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "0.1.0"
    """))
    (pkg / name / "__init__.py").write_text(f"VALUE = {value!r}\n")
    return pkg


def make_blocker_cmd(release: Path, started: Path, seconds: int = 90) -> str:
    """A setup_cmds entry that marks it has started, then waits (bounded) until the
    test creates `release`. Polling inside the command under test, not in the test."""
    return (f"touch '{started}'; for i in $(seq 1 {seconds * 10}); do "
            f"[ -e '{release}' ] && exit 0; sleep 0.1; done; "
            f"echo 'blocker was never released' >&2; exit 1")


class Cleanups:
    """Destroys started at teardown, all waited for when the session ends. A test that
    failed half-way leaves its Ray running: after the destroy (or at once, with nothing
    recorded to destroy) every Ray process of that folder's clusters still there is
    killed by pid (rayprocs.stop_leftovers; never another test's or bench's Ray)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Rhplan, subprocess.Popen[bytes], Any]] = []

    def add(self, rh: Rhplan) -> None:
        nodes = [] if rh.keep else rh.ray_nodes()  # read before the destroy empties the state
        proc = rh.start_cleanup()
        if proc is not None:
            self.pending.append((rh, proc, nodes))
            return
        for temp_dirs, root in nodes:
            stop_leftovers(temp_dirs, root, grace=0)

    def wait(self) -> list[str]:
        failures = []
        for rh, proc, nodes in self.pending:
            try:
                out, _ = proc.communicate(timeout=CLI_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            for temp_dirs, root in nodes:
                stop_leftovers(temp_dirs, root)
            record_cli_output(("destroy", "-auto-approve"), proc.returncode,
                              out.decode(errors="replace"), "")
            if proc.returncode != 0 or rh.resources():
                failures.append(f"destroy in {rh.dir} failed (exit {proc.returncode}):\n"
                                f"{out.decode(errors='replace')}")
        self.pending.clear()
        return failures


@pytest.fixture(scope="session")
def cleanups() -> Iterator[Cleanups]:
    c = Cleanups()
    yield c
    failures = c.wait()
    if failures:
        pytest.fail("\n\n".join(failures))


@pytest.fixture(scope="session")
def rhplan_in() -> Callable[..., Rhplan]:
    """Factory: rhplan_in(directory, env={...}) -> Rhplan bound to that folder. A fixture
    using it hands the Rhplan to `cleanups.add` when done with it."""
    return Rhplan


@pytest.fixture
def rh(tmp_path: Path, cleanups: Cleanups) -> Iterator[Rhplan]:
    """The CLI bound to a fresh configuration folder of this test; whatever the test
    leaves applied is destroyed after it."""
    r = Rhplan(tmp_path / "infra")
    yield r
    cleanups.add(r)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    """wait_for(pred, timeout, what): poll pred until truthy, fail at the deadline."""
    return poll_until


@pytest.fixture(scope="session")
def local_package() -> Callable[..., Path]:
    """local_package(root, name, value) -> a pyproject package folder."""
    return make_local_package


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    """A real OpenSSH server on 127.0.0.1 for this test module (tests/support/sshd.py):
    its own host key, client key and authorized_keys."""
    from sshd import SSHServer, ensure_sshd_installed
    ensure_sshd_installed()
    with SSHServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def ray_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rhplan's Ray venv with the driver's Ray and uv, installed once per module, as a
    prepared machine image has it (tests/support/ssh_cluster.py); a cluster's root_dir
    links it (ssh_cluster.linked_ray_root)."""
    from ssh_cluster import provision_ray_venv
    root = tmp_path_factory.mktemp("ray-venv") / "root"
    provision_ray_venv(root)
    return root / "ray-venv"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Any]:
    """An ssh cluster reached through SSH alone, from a network namespace, applied once
    per module (tests/support/netns_caller.py running_box; tests/test_remote_*.py)."""
    from netns_caller import running_box
    with running_box(tmp_path_factory.mktemp("remote"), rhplan_in) as applied:
        yield applied


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real moto server process for the session (tests/support/motoserver.py)."""
    from motoserver import MotoServer
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()
