"""A caller that can reach a cluster only through SSH, for tests/test_remote_*.py.

The caller runs under `unshare --net` (its own, down, loopback): its single way to
the cluster is the ssh block's proxy_command, through a UNIX socket relay
(tests/support/remote_relay.py) to the test sshd. Box drives scripts and the CLI from there;
destroy_from destroys the cluster from there and waits, bounded, until nothing of it
is left on either side.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from drivers import run_driver
from rayprocs import cluster_processes
from ssh_cluster import provision_ray_venv
from sshd import SSHServer, _descendants

HERE = Path(__file__).resolve().parent
RAY_VERSION = version("ray")
UV = str(Path(sys.executable).parent / "uv")
BASE_PY = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
APPLY_TIMEOUT = 600.0
DRIVER_TIMEOUT = 180.0

PRELUDE = """
import json, os, socket, sys, threading, time
import rhplan
CHDIR = sys.argv[1]
def emit(**values):
    # on a line of its own: a streamed run may have left one without its newline
    print("\\nRESULT " + json.dumps(values), flush=True)
"""


def why_no_netns() -> str | None:
    if os.geteuid() != 0:
        return "unshare --net needs root"
    res = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True,
                         timeout=30, check=False)
    return None if res.returncode == 0 else f"unshare --net fails: {res.stderr.strip()}"


class Relay:
    """tests/support/remote_relay.py serve: the one way from a namespace to the sshd."""

    def __init__(self, sock: Path, server: SSHServer):
        self.sock, self.server = sock, server
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "remote_relay.py"), "serve", str(self.sock),
             self.server.host, str(self.server.port)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    @property
    def proxy_command(self) -> str:
        return shlex.join([sys.executable, str(HERE / "remote_relay.py"), "connect",
                           str(self.sock)])


@dataclass
class Box:
    rh: Any
    relay: Relay
    root: Path
    scripts: Path
    server: SSHServer
    # how a caller is shut in: its own network namespace (the SSH proxy its only way out)
    isolate: list[str] = field(default_factory=lambda: ["unshare", "--net"])

    def script(self, body: str) -> Path:
        """A driver script file: PRELUDE + body."""
        script = self.scripts / f"driver_{uuid.uuid4().hex[:8]}.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        return script

    def drive_start(self, body: str, env: dict[str, str] | None = None,
                    isolate: list[str] | None = None, python: str = sys.executable
                    ) -> subprocess.Popen[str]:
        """A driver script (PRELUDE + body) in a network namespace of its own (or
        started by the isolate argv prefix instead), run by python."""
        prefix = self.isolate if isolate is None else isolate
        return subprocess.Popen(
            [*prefix, python, "-u", str(self.script(body)), str(self.rh.dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)

    def drive(self, body: str, env: dict[str, str] | None = None,
              python: str = sys.executable) -> dict[str, Any]:
        """What a driver (PRELUDE + body) in a network namespace of its own emitted,
        with its whole output (_stdout, _stderr)."""
        return run_driver(self.script(body), self.rh.dir, python=python,
                          env={**os.environ, **(env or {})}, timeout=DRIVER_TIMEOUT,
                          launcher=self.isolate, output=True)

    def apply(self) -> None:
        """rhplan apply from the caller's namespace too: the caller needs SSH only."""
        applied = self.cli("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
        assert applied.returncode == 0, applied.stdout + applied.stderr

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The rhplan CLI in a network namespace of its own."""
        return subprocess.run(
            [*self.isolate, sys.executable, "-m", "rhplan.cli", f"-chdir={self.rh.dir}",
             *args], capture_output=True, text=True, timeout=timeout, check=False,
            env=self.rh.env, stdin=subprocess.DEVNULL)


def leftovers(server: SSHServer, relay: Relay) -> list[str]:
    """What the callers left on either side: sshd's per-connection processes on the
    head, and proxy commands (remote_relay.py connect) on the caller's side."""
    assert server._proc is not None
    found = [f"sshd session {pid}" for pid in _descendants(server._proc.pid)]
    marker = f"remote_relay.py\0connect\0{relay.sock}".encode()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if marker in fh.read():
                    found.append(f"proxy command {entry}")
        except (OSError, NotADirectoryError):
            continue
    return found


@dataclass
class Teardown:
    """What destroy_from saw: the destroy's outcome and what was left after it."""

    destroyed: subprocess.CompletedProcess[str]
    recorded: dict[str, Any]  # the cluster's resource as the state held it before
    left: list[int]  # processes of the cluster (killed, after the wait)
    links: list[str]  # SSH sessions and proxy commands (see leftovers)


def destroy_from(box: Box, cluster: str) -> Teardown:
    """Destroy the cluster (state address cluster) from the caller's namespace; wait up
    to 20 s for its processes, SSH sessions and proxy commands to go."""
    if box.relay.proc is None:
        box.relay.start()
    recorded = box.rh.resources().get(cluster, {})
    ray = recorded.get("private", {}).get("ray", {})
    temp_dir = str(ray.get("ray_temp_dir") or box.root / "ray")
    res = box.cli("destroy", "-auto-approve", timeout=300)
    deadline = time.monotonic() + 20
    left = cluster_processes([temp_dir], box.root)
    links = leftovers(box.server, box.relay)
    while (left or links) and time.monotonic() < deadline:
        time.sleep(0.1)
        left = cluster_processes([temp_dir], box.root)
        links = leftovers(box.server, box.relay)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return Teardown(res, recorded, left, links)


def check_nothing_left(box: Box, down: Teardown) -> None:
    res = down.destroyed
    assert res.returncode == 0, res.stdout + res.stderr
    assert not box.rh.resources(), "the state is not empty after destroy"
    assert not down.left, (
        f"processes of the cluster (its gateway too) outlived destroy: {down.left}")
    # every caller closed its SSH connection when it exited: nothing on either side
    assert not down.links, f"left behind by the callers: {down.links}"


@contextlib.contextmanager
def running_box(base: Path, rhplan_in: Callable[..., Any]) -> Iterator[Box]:
    """One ssh cluster (a real sshd on 127.0.0.1, real Ray, a real uv env "remote")
    applied from a network namespace under base, whose proxy_command goes through a
    Relay; destroyed from there on exit, with nothing left on either side (conftest's
    box fixture, for tests/test_remote_*.py)."""
    why = why_no_netns()
    if why:
        pytest.skip(why)
    server = SSHServer(base / "sshd").start()
    relay = Relay(base / "relay.sock", server)
    relay.start()
    root = base / "cluster-root"
    provision_ray_venv(root)
    rh = rhplan_in(base / "infra")
    rh.write(f"""
        cluster "box" {{
          provider = "ssh"
          ips      = ["127.0.0.1"]
          root_dir = {json.dumps(str(root))}
          python   = {json.dumps(BASE_PY)}
          ssh {{
            user          = {json.dumps(server.user)}
            private_key   = {json.dumps(server.client_key)}
            port          = {server.port}
            proxy_command = {json.dumps(relay.proxy_command)}
          }}
        }}

        env "remote" {{
          cluster  = cluster.box
          reqs     = ["pip:six==1.16.0"]
          env_vars = {{ WHERE = "head" }}
        }}
    """)
    scripts = base / "scripts"
    scripts.mkdir()
    box = Box(rh, relay, root, scripts, server)
    try:  # apply, and destroy below, from the namespace too: the caller needs SSH only
        box.apply()
        yield box
    finally:
        down = destroy_from(box, "cluster.box")
        relay.kill()
        server.close()
        check_nothing_left(box, down)
