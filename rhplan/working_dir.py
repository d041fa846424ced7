"""An env's working_dir: the user's own code, synced to the env's host by content hash.

    env "app" { working_dir = "./src" }   # default: the git repository holding the
                                          # configuration, else the configuration folder

The folder is synced with rhplan.hosts.sync (only changed files travel; the host keeps a
manifest) to ROOT/workdirs/ENV; the env's servlet runs there (its current directory,
first on sys.path) and re-imports the modules a later sync changed on its next call.

What is synced: what git does not ignore (every .gitignore, asked of git itself; outside
a git work tree the folder's top-level .gitignore) and .rhplanignore leaves in,
minus what never belongs on a host: rhplan's own folder (.rhplan/: tokens, keys,
caches), state files, lock files and saved plans (found by name and by content: they
hold provider-private data), the configuration itself (*.hcl, *.tfvars: rhplan's input,
which may hold variable values; editing it must not re-sync every env's code) and
dotenv files (.env, *.env: read by env_file while planning, never needed as files).
Refused before anything is synced: /, a home folder or one that holds it, a symlink
loop, and more than `working_dir_max_mb` (default 200).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from rhplan.errors import ConfigError
from rhplan.hosts import sync
from rhplan.hosts.connection import Connection

DEFAULT_MAX_MB = 200
IGNORE_FILE = ".rhplanignore"
# never synced, whatever the ignore files say (see the module docstring)
BUILTIN_PATTERNS = (".rhplan/", "rhplan.state.json*", "rhplan.state.d/", "*.tfstate*",
                    "*.lock", "*.lock.info", "*.tflock", ".env", ".env.*", "*.env",
                    "*.hcl", "*.tfvars", "*.tfvars.json", IGNORE_FILE)
# a state or plan file of rhplan, whatever its name: JSON with these keys
_STATE_MARKS = (b'"lineage"', b'"serial"')
_SNIFF_MAX = 64 * 1024 * 1024


@functools.lru_cache(maxsize=64)
def default_root(config_dir: Path) -> Path:
    """The git repository holding the configuration, else the configuration folder.
    Cached: every env without a working_dir asks it, with the same folder (200 envs
    walked the same parents 200 times, 29 ms of a 0.3 s validate)."""
    start = Path(config_dir).resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def resolve(value: str | None, config_dir: Path) -> Path:
    """The local folder an env's working_dir names (relative to the configuration)."""
    if value is None:
        return default_root(config_dir)
    p = Path(value).expanduser()
    return p if p.is_absolute() else Path(config_dir) / p


def _rhplan_data(path: str) -> bool:
    """A state, backup or saved plan of rhplan: never synced (it holds private data), and
    never part of the hash (a plan written into the folder must not change the plan)."""
    if not path.endswith((".json", ".plan", ".backup", ".tfplan")) and "." in \
            os.path.basename(path):
        return False
    try:
        if os.path.getsize(path) > _SNIFF_MAX:
            return False
        with open(path, "rb") as fh:
            head = fh.read(1)
            if head != b"{":
                return False
            data = head + fh.read()
    except OSError:
        return False
    return all(mark in data for mark in _STATE_MARKS)


def _git_listed(root: Path) -> set[str] | None:
    """Inside a git work tree: the files git does not ignore under root (every
    .gitignore, nested ones and global excludes included), relative to root; None
    outside one, or without git (then only the top-level .gitignore is read)."""
    git = shutil.which("git")
    if git is None or not any((d / ".git").exists() for d in (root, *root.parents)):
        return None
    try:
        res = subprocess.run([git, "-C", str(root), "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard"], capture_output=True, timeout=60,
                             check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    return {os.fsdecode(p) for p in res.stdout.split(b"\0") if p}


def selection(root: Path) -> sync.Selection:
    patterns: list[str] = list(BUILTIN_PATTERNS)
    try:
        text = (root / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            patterns.append(line)
    listed = _git_listed(root)
    prefix = str(root).rstrip("/") + "/"

    def exclude(path: str) -> bool:
        if listed is not None and path[len(prefix):] not in listed:
            return True  # git ignores it
        return _rhplan_data(path)

    return sync.Selection(tuple(patterns), exclude, f".gitignore or {IGNORE_FILE}")


def size_fix(root: Path) -> str:
    return (f"add what the code does not need (data, checkpoints, outputs) to "
            f"{root}/{IGNORE_FILE} or .gitignore, or raise the env's working_dir_max_mb "
            f"(default {DEFAULT_MAX_MB})")


def check(root: Path) -> Path:
    """The resolved folder, or ConfigError: /, home, a symlink loop, not a folder."""
    if Path(root).is_symlink():
        try:
            Path(root).resolve(strict=True)
        except (RuntimeError, OSError):
            raise ConfigError(f"refusing to sync working_dir {root}: it is a symlink loop "
                              "(or points nowhere); point working_dir at a real folder"
                              ) from None
    return sync.check_sync_folder(root, "working_dir")


def scan(root: Path, max_mb: float) -> tuple[str, int, int]:
    """(content hash, files, bytes) of what a sync of root sends."""
    real = check(root)
    return sync.scan(real, int(max_mb * 1024 * 1024), selection(real), size_fix(real))


def sync_to(conn: Connection, root: Path, remote: str, max_mb: float,
            cache: Path | None = None, python: str = "python3") -> sync.SyncResult:
    """Sync root to remote; with cache (a folder of this machine), a re-sync is one
    command to the host, run by python there (see rhplan/hosts/sync.py, the fast path)."""
    real = check(root)
    return sync.sync_folder(conn, real, remote, max_bytes=int(max_mb * 1024 * 1024),
                            selection=selection(real), size_fix=size_fix(real), cache=cache,
                            python=python)


def cache_dir(config_dir: Path) -> Path:
    """Where this machine keeps the manifests it last wrote to hosts (never committed:
    .rhplan/ is git-ignored, see rhplan/gitignore.py)."""
    return Path(config_dir) / ".rhplan" / "sync"
