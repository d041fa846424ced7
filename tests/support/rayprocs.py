"""Find the live processes of one rhplan cluster's Ray, for tests that must prove a
destroy left nothing behind without ever touching another Ray on the machine."""
from __future__ import annotations

import contextlib
import os
import signal
import time
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


def stop_leftovers(temp_dirs: list[str], root: Path, grace: float = 20.0) -> dict[int, str]:
    """Give ONE cluster's Ray processes up to grace seconds to end (a destroy stops them
    with a bound), then SIGKILL, by pid, those still there; returns those. Never anything
    of another Ray: only what cluster_processes names for these temp dirs and root."""
    deadline = time.monotonic() + grace
    left = cluster_processes(temp_dirs, root)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = cluster_processes(temp_dirs, root)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return left


_seen: dict[str, str] = {}


def temp_dir_prefix(node: str) -> str:
    """The fixed start of a node's Ray temp dir (node: the cluster's root dir, or
    root@host for a worker); rhplan adds a random part (rhplan/ray_host.py)."""
    from rhplan.ray.head import temp_dir_key
    return f"/tmp/rhplan-{os.geteuid()}/{temp_dir_key(node)}-"


def temp_dir_for(node: str) -> str:
    """The Ray temp dir rhplan made for node: the newest folder with its prefix. Once
    seen, the same path is answered after it is gone (a destroy removed it); before
    any, the prefix itself (no process names it without the random part following,
    and nothing exists there)."""
    prefix = temp_dir_prefix(node)
    parent, start = prefix.rsplit("/", 1)
    found = []
    for p in Path(parent).glob(f"{start}*"):
        try:
            found.append((p.lstat().st_mtime, str(p)))
        except OSError:
            pass
    if found:
        _seen[node] = max(found)[1]
    return _seen.get(node, prefix)
