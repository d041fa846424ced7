"""Find the live processes of one rhplan cluster's Ray, for tests that must prove a
destroy left nothing behind without ever touching another Ray on the machine."""
from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """True for a running process (a zombie is already gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] != b"Z"


def cluster_processes(temp_dirs: list[str], root: Path) -> dict[int, str]:
    """Live processes of ONE cluster's Ray: the command line names one of its temp dirs,
    or the environment carries its token path (workers, agents and servlets rename
    themselves ray::...). Other Rays have other temp dirs and tokens."""
    token = f"RAY_AUTH_TOKEN_PATH={root}/ray/token".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid() or not alive(int(entry)):
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if any(t.encode() in cmd for t in temp_dirs) or token in environ:
            found[int(entry)] = cmd.replace(b"\0", b" ").decode(errors="replace")[:160]
    return found
