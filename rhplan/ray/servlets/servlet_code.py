"""Runs ON a host, in an env's servlet: the env's working_dir, the caller's project code
that rhplan syncs there. The servlet runs in it (current directory, first on sys.path),
so a caller's function can import its project's modules, and after a re-sync the
modules loaded from it are imported afresh by their next user.

Standard library only (rhplan is not installed on hosts); uploaded beside
host_script.py and sent to the env's interpreter by value with the servlet.
"""
from __future__ import annotations

import json
import os
import sys

CODE_MANIFEST = ".rhplan-manifest.json"  # written last by every sync (rhplan/hosts/sync.py)


class WorkingDir:
    """Where the servlet's calls run, and what tells a re-sync (the manifest, written
    last by every sync)."""

    def __init__(self, env_dir: str):
        """The env's synced working_dir (named in ENV/rhplan/working_dir.json) becomes this
        process's current directory and first on sys.path. Without one: the env folder,
        as before, and nothing to watch."""
        import threading

        self.lock = threading.Lock()
        self.mark = None
        self.path = env_dir
        try:
            with open(os.path.join(env_dir, "rhplan", "working_dir.json"),
                      encoding="utf-8") as fh:
                path = json.load(fh)["path"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        if not isinstance(path, str) or not os.path.isdir(path):
            return
        os.chdir(path)
        sys.path.insert(0, path)
        self.path = path
        self.mark = _file_mark(os.path.join(path, CODE_MANIFEST))

    def reimport_changed(self, forget) -> None:
        """After a re-sync (whose manifest is written last), drop the modules loaded from
        the working_dir, so that their next user imports them afresh, and call forget()
        (what holds the old modules: rebuilt functions) before the next call can see the
        new mark. One stat per call when nothing changed."""
        if self.mark is None:
            return
        mark = _file_mark(os.path.join(self.path, CODE_MANIFEST))
        if mark == self.mark:
            return
        import importlib
        import importlib.util

        with self.lock:
            if mark == self.mark:
                return
            since = self.mark[1]
            importlib.invalidate_caches()  # new files and folders are found
            prefix = self.path.rstrip("/") + "/"
            # every module of the working_dir is imported afresh by its next user, not
            # only the rewritten ones: `from helpers import twice` in an unchanged module
            # would keep the old function (importlib.reload rebinds only its own module)
            for name, mod in list(sys.modules.items()):
                file = getattr(mod, "__file__", None)
                if not (isinstance(file, str) and file.startswith(prefix)):
                    continue
                if _mtime_ns(file) >= since:  # written by a sync since the last one seen
                    try:
                        # its bytecode cache knows the source by whole seconds and size:
                        # a same-size edit within a second would load the old code
                        os.unlink(importlib.util.cache_from_source(file))
                    except (OSError, ValueError, NotImplementedError):
                        pass
                sys.modules.pop(name, None)
            forget()
            self.mark = mark


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _file_mark(path: str) -> tuple:
    """What tells a rewritten file (each sync replaces the manifest: a new inode, even
    within one tick of the clock) from the one seen before."""
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return (-1, -1, -1)
