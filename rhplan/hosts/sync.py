"""Copy a local package folder to a host so that only changed files travel.

    result = sync_folder(conn, Path("./src/mypkg"), "/opt/rhplan/pkgs/mypkg")

The host keeps a manifest, `REMOTE_DIR/.rhplan-manifest.json`: every file's
relative path, sha256 and mode, plus the folder's `tree_hash`. A sync hashes
the local folder, reads that manifest (one file read, no command), uploads the
files whose hash or mode differ, deletes the files the manifest lists that are
gone locally (one `rm` command, argv only), and writes the new manifest last.
So a sync that changes nothing runs no command and writes nothing, and one that
is interrupted is redone by the next (see `_pending_manifest` for new files).

What is selected (rhplan/hosts/sync_select.py, the local half) is what
`packages.tree_hash` hashes: the top-level
.gitignore is honoured; .git, __pycache__, *.pyc, .venv, build and *.egg-info
are skipped. `SyncResult.tree_hash` equals `packages.tree_hash(local_dir)`, so
the plan (which hashes the folder) and the apply (which ships it) agree on what
the content is.

Symlinks are never followed out of the folder:
- a symlink to a file inside the folder is sent as a regular file with the
  target's content and mode (the host gets a copy, not a link);
- a symlink to a file outside the folder, a dangling one, a symlink to a
  folder (never descended, as in tree_hash) and anything that is not a regular
  file (FIFO, socket, device) is not sent; its path is in `SyncResult.skipped`.

Trust model: the manifest is the record of what the host holds. A file edited
or removed on the host behind rhplan's back is not noticed (`force=True`
resends everything). Entries of a manifest read from the host are checked to be
plain relative paths before anything is deleted, so a damaged or hostile
manifest cannot make a sync delete outside REMOTE_DIR.

REMOTE_DIR is a path on the host: absolute, or relative to the login folder
over SSH (the process's cwd for LocalConnection); `~` is not expanded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import posixpath
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from rhplan.errors import ConfigError, ProviderError
from rhplan.hosts.connection import Connection
from rhplan.hosts.sync_select import (
    DEFAULT_MAX_BYTES,
    MANIFEST_NAME,
    Selection,
    check_size,
    check_sync_folder,
    hash_all,
    read_source,
    scan,
    select,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MANIFEST_NAME",
    "Selection",
    "SyncResult",
    "scan",
    "check_sync_folder",
    "remote_tree_hash",
    "sync_folder",
]

_MANIFEST_FORMAT = "rhplan-sync-manifest"
_MANIFEST_VERSION = 1

# sshd hands the whole command line to `sh -c` as ONE argument, and Linux caps
# a single argument at 128 KiB (MAX_ARG_STRLEN): keep each rm below that.
_ARGV_BUDGET = 100_000
_RM_TIMEOUT = 300.0


@dataclass(frozen=True)
class SyncResult:
    """What one sync did. Paths are relative to the folder, '/'-separated."""

    files_total: int  # files the host holds after the sync (the new manifest)
    files_sent: int
    files_deleted: int
    bytes_sent: int  # file contents only (not the manifest)
    tree_hash: str  # == packages.tree_hash(local_dir)
    sent: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # symlinks leaving the folder, FIFOs, ... (not sent)

    @property
    def changed(self) -> bool:
        return bool(self.files_sent or self.files_deleted)


# -- the remote side --------------------------------------------------------------


def _safe_rel(rel: object) -> bool:
    """A plain relative path: no '..', no absolute path, no empty part, no NUL."""
    if not isinstance(rel, str) or not rel or "\0" in rel or rel.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def _manifest_bytes(files: dict[str, tuple[str, int]], tree_hash: str) -> bytes:
    doc = {
        "format": _MANIFEST_FORMAT,
        "version": _MANIFEST_VERSION,
        "tree_hash": tree_hash,
        "files": {rel: {"sha256": sha, "mode": mode} for rel, (sha, mode) in files.items()},
    }
    # Compact, so the C encoder runs (~1 ms per 1000 files); ensure_ascii keeps
    # names with newlines or odd bytes one JSON string.
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return (text + "\n").encode()


def _where(conn: Connection, path: str) -> str:
    return f"{path} on {getattr(conn, 'host', 'the host')}"


def _read_manifest(
    conn: Connection, remote_dir: str
) -> tuple[bytes | None, dict[str, tuple[str, int]], str | None]:
    """(raw bytes, valid entries, tree_hash) of the host's manifest; missing or
    unreadable as JSON gives no entries (everything is sent again)."""
    path = posixpath.join(remote_dir, MANIFEST_NAME)
    try:
        raw = conn.get_bytes(path)
    except FileNotFoundError:
        return None, {}, None
    except NotADirectoryError:
        raise ProviderError(
            f"cannot sync to {_where(conn, remote_dir)}: a file is in the way of that folder; "
            "remove it or choose another remote folder"
        ) from None
    except OSError as exc:
        raise ProviderError(
            f"cannot read {_where(conn, path)} ({exc.strerror or exc}); check that the login "
            f"user can read {remote_dir}"
        ) from None
    try:
        doc = json.loads(raw)
        listed = doc["files"] if doc.get("format") == _MANIFEST_FORMAT else {}
        tree_hash = doc.get("tree_hash")
    except (ValueError, AttributeError, KeyError, TypeError):
        return raw, {}, None
    files: dict[str, tuple[str, int]] = {}
    if isinstance(listed, dict):
        for rel, info in listed.items():
            if not (_safe_rel(rel) and isinstance(info, dict)):
                continue
            sha, mode = info.get("sha256"), info.get("mode")
            if isinstance(sha, str) and isinstance(mode, int) and not isinstance(mode, bool):
                files[rel] = (sha, mode)
    return raw, files, tree_hash if isinstance(tree_hash, str) else None


def remote_tree_hash(conn: Connection, remote_dir: str) -> str | None:
    """The tree_hash of what the last complete sync left in remote_dir, or None.

    One file read, no command: a planner can compare it with
    packages.tree_hash(local_dir) to decide whether a sync is due.
    """
    _, _, tree_hash = _read_manifest(conn, _normalize_remote(remote_dir))
    return tree_hash


def _normalize_remote(remote_dir: str) -> str:
    text = str(remote_dir)
    if not text.strip() or "\0" in text:
        raise ConfigError(f"remote folder {remote_dir!r} is empty or invalid; give a path")
    if text.startswith("~"):
        raise ConfigError(
            f"remote folder {remote_dir!r} starts with '~', which is not expanded on the host; "
            "give an absolute path, or one relative to the login folder"
        )
    norm = posixpath.normpath(text)
    if norm == "/":
        raise ConfigError("refusing to sync into / on the host; give a folder of its own")
    return norm


def _batches(paths: list[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    used = 0
    for p in paths:
        cost = len(shlex.quote(p).encode("utf-8", "surrogateescape")) + 1
        if batch and used + cost > _ARGV_BUDGET:
            yield batch
            batch, used = [], 0
        batch.append(p)
        used += cost
    if batch:
        yield batch


def _remove(conn: Connection, remote_dir: str, rels: list[str], dirs: list[str]) -> None:
    """rm the files (and, with -r, the folders now in the way of a file): one
    command unless the paths exceed one command line. Paths are argv, never shell."""
    paths = [posixpath.join(remote_dir, r) for r in [*rels, *dirs]]
    flags = "-rf" if dirs else "-f"
    for batch in _batches(paths):
        result = conn.run(["rm", flags, "--", *batch], timeout=_RM_TIMEOUT)
        if not result.ok:
            detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[0]
            raise ProviderError(
                f"cannot delete old files in {_where(conn, remote_dir)}: {detail}; check that "
                "the login user owns that folder, then apply again"
            )


def _put(conn: Connection, data: bytes, path: str, mode: int) -> None:
    try:
        conn.put_bytes(data, path, mode)
    except (IsADirectoryError, NotADirectoryError):
        raise ProviderError(
            f"cannot write {_where(conn, path)}: a folder or file of the same name is in the "
            "way (made on the host, not by rhplan); remove it and apply again"
        ) from None
    except OSError as exc:
        raise ProviderError(
            f"cannot write {_where(conn, path)} ({exc.strerror or exc}); check that the login "
            "user can write there"
        ) from None


def _pending_manifest(old: dict[str, tuple[str, int]], new_paths: list[str]) -> bytes:
    """The old manifest plus the paths about to be created, with an empty hash.

    Written before the first new file goes up: if the sync stops half way, the
    next one still knows those files (resends them, or deletes them if they
    were removed locally meanwhile) instead of leaving them behind for ever.
    """
    files = dict(old)
    for rel in new_paths:
        files[rel] = ("", 0)
    return _manifest_bytes(files, "")


# -- the fast path: one command per sync ----------------------------------------
#
# A sync needs to know what the host holds. The slow path reads the host's manifest
# (a round trip), then sends each file and the manifest (one more each). With a cache of
# the manifest this machine last wrote there, the changes are known before touching the
# host: one command carries them all (hostside/sync_apply.py), and the host applies them
# only if its manifest is still that one; else (another machine synced, the folder was
# wiped) it changes nothing and the slow path runs.

def _cache_file(cache: Path, conn: Connection, remote: str) -> Path:
    who = f"{getattr(conn, 'host', '')}:{getattr(conn, 'port', '')}:{remote}"
    return cache / (hashlib.sha256(who.encode("utf-8", "surrogateescape")).hexdigest()[:32]
                    + ".json")


def _remember(path: Path, files: dict[str, tuple[str, int]], tree_hash: str) -> None:
    """Keep the manifest just written to the host, for the next sync's fast path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_manifest_bytes(files, tree_hash))
        os.replace(tmp, path)
    except OSError:
        pass  # only a cache: the next sync takes the slow path


def _fast_sync(conn: Connection, root: Path, remote: str, files: dict[str, tuple[str, int]],
               tree_hash: str, sources: dict[str, str], cache: Path, python: str
               ) -> SyncResult | None:
    """The sync in one command, or None when the slow path must run."""
    path = _cache_file(cache, conn, remote)
    try:
        doc = json.loads(path.read_bytes())
        old = {rel: (i["sha256"], i["mode"]) for rel, i in doc["files"].items()
               if _safe_rel(rel)}
        old_hash = doc["tree_hash"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    to_send = [rel for rel, info in files.items() if old.get(rel) != info]
    to_delete = sorted(rel for rel in old if rel not in files)
    old_dirs = {rel.rsplit("/", i)[0] for rel in old for i in range(1, rel.count("/") + 1)}
    if any(rel in old_dirs for rel in to_send) or not isinstance(old_hash, str):
        return None  # a folder in the way of a file: the slow path clears it
    blobs, heads = [], []
    final = dict(files)
    for rel in to_send:
        data = read_source(root, sources[rel])
        final[rel] = (hashlib.sha256(data).hexdigest(), files[rel][1])
        blobs.append(data)
        heads.append([rel, files[rel][1], len(data)])
    manifest = _manifest_bytes(final, tree_hash)
    head = json.dumps({"delete": to_delete, "files": heads, "manifest": len(manifest)},
                      ensure_ascii=True).encode() + b"\n"
    res = conn.run([python, "-I", "-c", _APPLY_SCRIPT, remote, old_hash],
                   stdin=head + b"".join(blobs) + manifest, timeout=_RM_TIMEOUT)
    answer = (res.stdout.strip().splitlines() or ["{}"])[-1]
    try:
        verdict = json.loads(answer)
    except ValueError:
        verdict = {}
    if not res.ok or not verdict.get("ok"):
        if verdict.get("error"):
            raise ProviderError(f"cannot sync to {_where(conn, remote)}: {verdict['error']}")
        return None  # stale, or no such python there: the slow path
    _remember(path, final, tree_hash)
    return SyncResult(len(files), len(to_send), len(to_delete),
                      sum(len(b) for b in blobs), tree_hash, tuple(to_send), tuple(to_delete))


_APPLY_SCRIPT = resources.files("rhplan.hostside").joinpath("sync_apply.py").read_text()


# -- the sync ------------------------------------------------------------------


def sync_folder(
    conn: Connection,
    local_dir: Path,
    remote_dir: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    force: bool = False,
    selection: Selection = Selection(),
    size_fix: str = "",
    cache: Path | None = None,
    python: str = "python3",
) -> SyncResult:
    """Make remote_dir on conn's host hold the selected files of local_dir.

    Sends only files whose sha256 or mode differ from the host's manifest,
    deletes the files that are gone locally (one `rm` at most, none if nothing
    was removed), writes the manifest last. force=True sends every file.

    Raises ConfigError for a folder that must not or cannot be synced (/, your
    home folder or one that holds it, over max_bytes, unreadable files) before
    touching the host, and ProviderError when the host refuses a read or write.
    """
    root = check_sync_folder(local_dir)
    remote = _normalize_remote(remote_dir)
    entries, skipped = select(root, selection)
    check_size(root, entries, max_bytes, size_fix)
    files, tree_hash = hash_all(root, entries)
    sources = {e.rel: e.source for e in entries if e.send}

    if cache is not None and not force:
        done = _fast_sync(conn, root, remote, files, tree_hash, sources, cache, python)
        if done is not None:
            return dataclasses.replace(done, skipped=tuple(skipped))
    old_raw, old, _ = _read_manifest(conn, remote)
    to_send = [rel for rel, info in files.items() if force or old.get(rel) != info]
    to_delete = sorted(rel for rel in old if rel not in files)
    # A folder on the host where a file must go now (pkg/ became pkg): it
    # goes, whatever the host put in it since (e.g. __pycache__).
    old_dirs = {rel.rsplit("/", i)[0] for rel in old for i in range(1, rel.count("/") + 1)}
    in_the_way = sorted(rel for rel in to_send if rel in old_dirs)

    new_raw = _manifest_bytes(files, tree_hash)
    if not to_send and not to_delete and new_raw == old_raw:
        return SyncResult(len(files), 0, 0, 0, tree_hash, skipped=tuple(skipped))

    manifest_path = posixpath.join(remote, MANIFEST_NAME)
    new_paths = [rel for rel in to_send if rel not in old]
    if new_paths:
        _put(conn, _pending_manifest(old, new_paths), manifest_path, 0o644)
    if to_delete or in_the_way:
        # Before the uploads: a file that became a folder (pkg -> pkg/) must go first.
        _remove(conn, remote, to_delete, in_the_way)

    final = dict(files)
    bytes_sent = 0
    for rel in to_send:
        data = read_source(root, sources[rel])
        # Record what was sent, even if the file changed since it was hashed.
        final[rel] = (hashlib.sha256(data).hexdigest(), files[rel][1])
        _put(conn, data, posixpath.join(remote, rel), files[rel][1])
        bytes_sent += len(data)
    if final != files:
        new_raw = _manifest_bytes(final, tree_hash)
    _put(conn, new_raw, manifest_path, 0o644)
    if cache is not None:
        _remember(_cache_file(cache, conn, remote), final, tree_hash)
    return SyncResult(
        files_total=len(files),
        files_sent=len(to_send),
        files_deleted=len(to_delete),
        bytes_sent=bytes_sent,
        tree_hash=tree_hash,
        sent=tuple(to_send),
        deleted=tuple(to_delete),
        skipped=tuple(skipped),
    )
