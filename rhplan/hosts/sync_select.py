"""Which files of a local folder a sync sends, and their hashes, without a host.

The local half of rhplan.hosts.sync: refuse folders that must not be synced (/, a home
folder), select the files packages.tree_hash hashes (through tree_files), classify
symlinks and special files, guard the size, and hash what is selected into the
manifest the host will keep. `scan` is this half alone, for a planner.
"""
from __future__ import annotations

import hashlib
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rhplan.errors import ConfigError
from rhplan.packages import _file_digest
from rhplan.tree_files import gitignore_patterns, kept_files

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
MANIFEST_NAME = ".rhplan-manifest.json"  # the host's record; never sent as a file
_CHUNK = 1 << 20


@dataclass(frozen=True)
class _Entry:
    rel: str  # path relative to the root, "/"-separated (surrogateescape'd str)
    source: str  # the file to read: itself, or an in-tree symlink's resolved target
    size: int
    mode: int  # permission bits (0o777 mask)
    send: bool  # False: only part of tree_hash (a symlink out of the tree)


# -- which folders may be synced -------------------------------------------------


def _home_dirs() -> list[Path]:
    """$HOME and the password database's home (both, in case $HOME was changed)."""
    homes = []
    candidates = [os.environ.get("HOME", "")]
    try:
        candidates.append(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        pass
    for h in candidates:
        # An empty or relative HOME would resolve to the cwd: ignore it.
        if h and os.path.isabs(h):
            p = Path(h).resolve()
            if p not in homes:
                homes.append(p)
    return homes


def check_sync_folder(local_dir: Path, what: str = "the package") -> Path:
    """The resolved folder, or ConfigError if it must not be synced.

    Refuses /, the user's home folder and any folder that holds it (syncing
    those sent whole disks in Runhouse), and anything that is not a folder.
    Cheap (no walk), so a planner can call it to refuse early.
    """
    try:
        root = Path(local_dir).expanduser().resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a loop
        raise ConfigError(f"refusing to sync {local_dir}: it is a symlink loop; point it at "
                          "a real folder") from None
    hint = f"point {what} at your project's folder (the one with pyproject.toml or setup.py)"
    if root == Path(root.anchor):
        raise ConfigError(f"refusing to sync {root}: that is the whole filesystem; {hint}")
    for home in _home_dirs():
        if root == home:
            raise ConfigError(
                f"refusing to sync {root}: it is your home folder, with everything in it; "
                f"point {what} at a project folder inside it, e.g. {root}/myproject"
            )
        if root in home.parents:
            raise ConfigError(
                f"refusing to sync {root}: it holds your home folder {home}; {hint}"
            )
    if not root.exists():
        raise ConfigError(f"cannot sync {root}: it does not exist; fix the package's path")
    if not root.is_dir():
        raise ConfigError(
            f"cannot sync {root}: it is a file, not a folder; name the folder that holds it "
            f"({root.parent})"
        )
    return root


# -- the local side ---------------------------------------------------------------


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _inside(root: str, target: str) -> bool:
    return target == root or target.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True)
class Selection:
    """What a sync leaves out on top of what packages.tree_hash leaves out (a working_dir
    adds its .rhplanignore and rhplan's own files): more patterns in .gitignore's syntax,
    and a test on each file (its path) that may read it."""

    patterns: tuple[str, ...] = ()
    exclude_file: Callable[[str], bool] | None = None
    ignore_files: str = ".gitignore"  # named in messages: where to leave something out


def select(root: Path, sel: Selection = Selection()) -> tuple[list[_Entry], list[str]]:
    """Walk root exactly as packages.tree_hash does (same pruning, same order).

    Returns the entries in tree_hash order and the paths that are skipped.
    """
    root_s = str(root)
    patterns = gitignore_patterns(root) + list(sel.patterns)
    entries: list[_Entry] = []
    skipped: list[str] = []

    def unreadable(exc: OSError) -> None:
        # tree_hash silently skips an unreadable folder; a sync must not.
        raise ConfigError(
            f"cannot read folder {exc.filename} ({exc.strerror}); make it readable or add it "
            f"to {root}/.gitignore"
        )

    for dirpath, rel, fname in kept_files(root_s, patterns, onerror=unreadable,
                                          linked_dir=skipped.append):
        path = os.path.join(dirpath, fname)
        if sel.exclude_file is not None and sel.exclude_file(path):
            continue
        entry = _classify(root_s, rel, path, skipped)
        if entry is not None:
            entries.append(entry)
    return entries, skipped


def _classify(root: str, rel: str, path: str, skipped: list[str]) -> _Entry | None:
    """What to do with one file: send it, only hash it (as tree_hash does), or
    drop it (None: something tree_hash cannot read either, like a FIFO)."""
    try:
        st = os.lstat(path)
        source = path
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(path)
            if os.path.isfile(target) and _inside(root, target):
                st = os.stat(target)
                source = target
            elif os.path.isfile(target) or not os.path.exists(target):
                # Out of the folder, or dangling: not sent, but part of
                # tree_hash, which hashes through the link (or its text).
                skipped.append(rel)
                return _Entry(rel, path, 0, 0, send=False)
            else:
                skipped.append(rel)  # a link to a FIFO or device
                return None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path} ({exc.strerror}); fix it or add it to {root}/.gitignore"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        skipped.append(rel)  # FIFO, socket, device: nothing to copy
        return None
    if rel == MANIFEST_NAME:
        skipped.append(rel)  # the host's manifest lives at that name
        return _Entry(rel, path, 0, 0, send=False)
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(
            f"cannot sync {path!r}: its name is not valid UTF-8, which SSH and SFTP cannot "
            f"carry; rename it or add it to {root}/.gitignore"
        ) from None
    return _Entry(rel, source, st.st_size, stat.S_IMODE(st.st_mode) & 0o777, send=True)


def check_size(root: Path, entries: list[_Entry], max_bytes: int,
                fix: str = "") -> None:
    total = sum(e.size for e in entries if e.send)
    if total <= max_bytes:
        return
    by_top: dict[str, int] = {}
    for e in entries:
        if e.send:
            top, sep, _ = e.rel.partition("/")
            key = top + "/" if sep else top
            by_top[key] = by_top.get(key, 0) + e.size
    biggest = sorted(by_top.items(), key=lambda kv: -kv[1])[:3]
    parts = ", ".join(f"{name!r} {_human(size)}" for name, size in biggest)
    raise ConfigError(
        f"refusing to sync {root}: its files add up to {_human(total)}, more than the "
        f"{_human(max_bytes)} limit (biggest: {parts}); " + (fix or (
            f"add what the code does not need (data, checkpoints, outputs) to "
            f"{root}/.gitignore, or point the package at a smaller folder"))
    )


def _sha256(path: str) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.digest()


def hash_all(root: Path, entries: list[_Entry]) -> tuple[dict[str, tuple[str, int]], str]:
    """The manifest {rel: (sha256 hex, mode)} of the files to send, and tree_hash."""
    files: dict[str, tuple[str, int]] = {}
    tree = hashlib.sha256()
    for e in entries:
        try:
            digest = _sha256(e.source) if e.send else _file_digest(Path(e.source))
        except OSError as exc:
            if not e.send:
                continue  # a symlink loop: tree_hash itself fails on it
            raise ConfigError(
                f"cannot read {e.source} ({exc.strerror}); fix its permissions or add it to "
                f"{root}/.gitignore"
            ) from None
        # The same framing as packages.tree_hash: NUL-terminated path, raw digest.
        tree.update(e.rel.encode("utf-8", "surrogateescape") + b"\0")
        tree.update(digest)
        if e.send:
            files[e.rel] = (digest.hex(), e.mode)
    return files, tree.hexdigest()


def scan(local_dir: Path, max_bytes: int = DEFAULT_MAX_BYTES,
         selection: Selection = Selection(), size_fix: str = "") -> tuple[str, int, int]:
    """(tree_hash, files, bytes) of what sync_folder would send, without a host: a planner
    compares the hash with the one recorded at the last sync. Refuses what sync_folder
    refuses (/, home, over max_bytes), with the same messages."""
    root = check_sync_folder(local_dir)
    entries, _ = select(root, selection)
    check_size(root, entries, max_bytes, size_fix)
    files, tree_hash = hash_all(root, entries)
    return tree_hash, len(files), sum(e.size for e in entries if e.send)


def read_source(root: Path, source: str) -> bytes:
    """A selected file's bytes, as they are now (sent and hashed again by the caller)."""
    try:
        with open(source, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {source} ({exc.strerror}); fix its permissions or "
                          f"add it to {root}/.gitignore") from None
