"""Which files of a folder count as its contents.

A local package's content hash (packages.tree_hash) and the working_dir sync
(sync.scan) must see the same files in the same order, or a sync would copy what the
hash ignores (or the reverse). Both walk a folder through kept_files: it leaves out
.git, __pycache__, *.pyc, .venv, build, *.egg-info and what the top-level .gitignore
(plus any extra patterns, such as .rhplanignore's) names.
"""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterator
from pathlib import Path

SKIP_DIRS = {".git", "__pycache__", ".venv", "build"}
SKIP_DIR_SUFFIXES = (".egg-info",)
SKIP_FILE_PATTERNS = ("*.pyc",)


def gitignore_patterns(root: Path) -> list[str]:
    """The patterns of root/.gitignore (none if it cannot be read)."""
    try:
        text = (root / ".gitignore").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        # Negation ("!keep") is not supported: better to hash a file too many.
        if line and not line.startswith(("#", "!")):
            patterns.append(line)
    return patterns


def ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """Simple .gitignore matching: fnmatch on the name, or on the path when the
    pattern has a slash; a trailing slash matches folders only."""
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        dir_only = pat.endswith("/")
        pat = pat.rstrip("/")
        if not pat or (dir_only and not is_dir):
            continue
        if "/" in pat:
            if fnmatch.fnmatchcase(rel, pat.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pat):
            return True
    return False


def kept_files(
    root: str,
    patterns: list[str],
    *,
    onerror: Callable[[OSError], None] | None = None,
    linked_dir: Callable[[str], None] | None = None,
) -> Iterator[tuple[str, str, str]]:
    """(folder, relative path, name) of each file kept under root, in a fixed order
    (sorted, folders pruned in place so ignored ones are never entered).

    A symlink to a folder is not entered (os.walk does not follow links); linked_dir,
    if given, hears its relative path, so a sync can say it left it out.
    """
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for d in sorted(dirnames):
            if d in SKIP_DIRS or d.endswith(SKIP_DIR_SUFFIXES):
                continue
            if ignored(rel_dir + d, True, patterns):
                continue
            if linked_dir is not None and os.path.islink(os.path.join(dirpath, d)):
                linked_dir(rel_dir + d)
                continue
            kept.append(d)
        dirnames[:] = kept
        for fname in sorted(filenames):
            rel = rel_dir + fname
            if any(fnmatch.fnmatchcase(fname, p) for p in SKIP_FILE_PATTERNS):
                continue
            if ignored(rel, False, patterns):
                continue
            yield dirpath, rel, fname
