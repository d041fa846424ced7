"""Runs ON a host: runs a script like `python SCRIPT ARGS` does, then leaves at once
with its exit code.

    quick_exit.py SCRIPT ARGS...

The Ray driver's shutdown at exit (0.5-2.5 s, disconnecting from a cluster the detached
servlet outlives anyway) is not waited for. A missing script exits 2 with "No such
file", as python itself does (the caller uploads it then).
"""
import os
import runpy
import sys


def main():
    path = sys.argv[1]
    if not os.path.exists(path):
        sys.stderr.write(f"can't open file {path!r}: [Errno 2] No such file or directory\n")
        os._exit(2)
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(path))
    code = 0
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code is not None and exc.code != 0:
            if not isinstance(exc.code, int):
                sys.stderr.write(f"{exc.code}\n")
            code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


main()
