"""An ssh cluster in the tests: its HCL (cluster block, ssh block, string literals), the
Ray venv a prepared host image has, the strings that must stay data, and destroying it
with a check that nothing of it is left. The ssh provider's tests and every other
suite that applies an ssh cluster against the test sshd (conftest's `server`) use these.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rayprocs import alive, cluster_processes, stop_leftovers
from sshd import SSHServer

RAY_VERSION = version("ray")
NUMPY = "numpy==2.4.6"
UV = str(Path(sys.executable).parent / "uv")
# The interpreter the clusters build their venvs from. Ray refuses a driver whose Python
# differs from the cluster's even in the patch version, and what `python3` is over SSH
# depends on the login shell's rc files: name the interpreter behind this venv, so the
# drivers below (this venv's Python) always match.
BASE_PY = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
APPLY_TIMEOUT = 600.0  # the first apply of a root_dir installs Ray there (uv, cached)
DRIVER_TIMEOUT = 120.0

# Unique, so finding a file named like it anywhere can only mean a string was run.
MARK = f"PWNED{uuid.uuid4().hex[:8]}"
PAYLOAD = (f"a; touch {MARK}_1 $(touch {MARK}_2) `touch {MARK}_3` 'sq' \"dq\" \\ $HOME\n"
           f"touch {MARK}_4 && touch /tmp/{MARK}_5 | cat")
# An env var name may hold anything but '=' and NUL
KEY = f"K; touch {MARK}_6 $(touch {MARK}_7) `touch {MARK}_8` 'q' \"dq\"\ntouch {MARK}_9"

# What a driver script run against a cluster starts with: it is given the config folder
# and reports through one `RESULT {json}` line.
PRELUDE = """
import json, os, sys
import rhplan
CHDIR = sys.argv[1]
def emit(**values):
    # on a line of its own: a streamed run may have left one without its newline
    print("\\nRESULT " + json.dumps(values), flush=True)
"""


def hcl_str(s: str) -> str:
    """An HCL string literal holding s exactly."""
    out = (s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
           .replace("${", "$${").replace("%{", "%%{"))
    return f'"{out}"'


def ssh_block(server: SSHServer, key: str | None = None, port: int | None = None,
              known_hosts: str | None = None) -> str:
    kh = f"\n    known_hosts = {hcl_str(known_hosts)}" if known_hosts else ""
    return (f"  ssh {{\n    user        = {hcl_str(server.user)}\n"
            f"    private_key = {hcl_str(key or server.client_key)}\n"
            f"    port        = {port or server.port}{kh}\n  }}")


def cluster_hcl(name: str, ips: list[str], root: Path, ssh: str, bare_env: bool = True) -> str:
    """bare_env=False: the cluster gets no bare default env (create_default_env = false)."""
    opt_out = "" if bare_env else "  create_default_env = false\n"
    return (f'cluster "{name}" {{\n  provider = "ssh"\n  ips      = {json.dumps(ips)}\n'
            f"  root_dir = {hcl_str(str(root))}\n  python   = {hcl_str(BASE_PY)}\n"
            f"{opt_out}{ssh}\n}}\n")


def destroy_and_check(rh: Any, root: Path, temp_dirs: list[str],
                      servlet_pids: set[int] = frozenset()) -> None:
    """Destroy; then nothing of that cluster may be left: no Ray process (anything left
    is killed by pid, then reported), no state, no root_dir, no temp dir."""
    before = cluster_processes(temp_dirs, root)
    res = rh("destroy", "-auto-approve", timeout=300)
    left = stop_leftovers(temp_dirs, root)  # never leave a Ray behind (killed, then reported)
    problems = []
    if res.returncode != 0:
        problems.append(res.describe())
    if servlet_pids and before and not servlet_pids & set(before):
        problems.append(f"the process scan missed the servlets {servlet_pids}: {before}")
    if left:
        problems.append(f"Ray processes of the cluster outlived destroy: {left}")
    if still := [p for p in sorted(servlet_pids) if alive(p)]:
        problems.append(f"servlet processes outlived destroy: {still}")
    if rh.resources():
        problems.append(f"state not empty after destroy: {sorted(rh.resources())}")
    for path in (root, *map(Path, temp_dirs)):
        if path.exists():
            problems.append(f"{path} is still there after destroy")
    assert not problems, "\n".join(problems)


def provision_ray_venv(root: Path) -> None:
    """What a machine image with Ray already installed looks like: ROOT/ray-venv with
    the driver's Ray and uv, made with uv from its cache (about a second). The provider checks
    the version and keeps it (hosts in network namespaces have no PyPI)."""
    venv = root / "ray-venv"
    for argv in ([UV, "venv", "-q", "--python", BASE_PY, str(venv)],
                 [UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                  f"ray=={RAY_VERSION}", "uv"]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"


def linked_ray_root(ray_venv: Path, base: Path) -> Path:
    """BASE/root: a cluster's root_dir of its own (its Ray is told apart by it) whose
    ray-venv is the shared, installed-once one (conftest's `ray_venv`)."""
    root = base / "root"
    root.mkdir()
    (root / "ray-venv").symlink_to(ray_venv)
    return root


def find_marks(*folders: Path, shallow: tuple[Path, ...] = ()) -> list[str]:
    """Files named like MARK under folders (recursively) or directly in `shallow` ones."""
    hits = []
    for top in folders:
        for dirpath, _, files in os.walk(top, onerror=lambda e: None):
            hits += [os.path.join(dirpath, f) for f in files if MARK in f]
    for top in shallow:
        with contextlib.suppress(OSError):
            hits += [str(top / f) for f in os.listdir(top) if MARK in f]
    return hits


@contextlib.contextmanager
def sshd_down(server: SSHServer) -> Iterator[None]:
    server.stop()
    try:
        yield
    finally:
        server.start()
