"""Keep `.rhplan/` out of git.

A configuration's `.rhplan/` folder holds what must never be committed: the local copy
of each cluster's Ray token, the state's digest key, caches. An infra repo is made to be
pushed, so before rhplan writes anything there (the first plan or apply in a git work
tree) it makes sure git ignores the folder: it adds `.rhplan/` to the configuration's
`.gitignore`, or, when that file cannot be written, warns on every plan and apply.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ENTRY = ".rhplan/"
_SAME = {".rhplan", ".rhplan/", "/.rhplan", "/.rhplan/", ".rhplan/*", "/.rhplan/*",
         ".rhplan/**", "/.rhplan/**"}
_WHY = "it holds Ray tokens, the state's digest key and caches, never to be committed"


def _repo_answer(config_dir: Path) -> bool | None:
    """Whether git ignores config_dir/.rhplan/, asked of git itself (it knows parent
    .gitignore files and global excludes); None outside a work tree, or without git."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        res = subprocess.run([git, "-C", str(config_dir), "check-ignore", "-q", ENTRY],
                             capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.returncode == 0 if res.returncode in (0, 1) else None


def _in_work_tree(config_dir: Path) -> bool:
    return any((d / ".git").exists() for d in (config_dir, *config_dir.parents))


def ensure_ignored(config_dir: Path) -> str | None:
    """Inside a git work tree, add `.rhplan/` to config_dir/.gitignore unless git ignores
    it already. Returns what to tell the user (what was written, or a warning), or None
    when nothing was needed. Outside a work tree nothing can be committed yet: the first
    plan or apply after `git init` adds the entry."""
    answer = _repo_answer(config_dir)
    if answer is None:
        if not _in_work_tree(config_dir):
            return None
        try:  # a work tree, but no git program to ask: the folder's own .gitignore
            lines = (config_dir / ".gitignore").read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        answer = any(line.strip() in _SAME for line in lines)
    if answer:
        return None
    path = config_dir / ".gitignore"
    try:
        before = path.read_bytes() if path.exists() else b""
        sep = b"" if not before or before.endswith(b"\n") else b"\n"
        with open(path, "ab") as fh:
            fh.write(sep + f"# rhplan: {_WHY}\n{ENTRY}\n".encode())
    except OSError as exc:
        return (f"Warning: {config_dir}/.rhplan/ is not git-ignored ({_WHY}) and "
                f"{path} cannot be written ({exc.strerror}); add the line {ENTRY} to it")
    return f"Added {ENTRY} to {path}: {_WHY}."
