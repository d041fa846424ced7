"""Runs ON a node: writes the gateway's files (sent on stdin, one after the other) into
its folder unless they are there, then runs the last of them, the gateway's entry.

    gateway_boot.py FOLDER NAME:SIZE,NAME:SIZE,... GATEWAY_ARGS...

The folder is named by the files' hash, so files of another version are never mixed
in; the entry is written last, so it is there only when what it imports is. The first
use of a host is one command, not a failed command, an upload and the command again
(~0.1-0.3 s of a cold first handle).
"""
import os
import runpy
import sys


def main():
    folder, layout = sys.argv[1], sys.argv[2]
    files = [(name, int(size)) for name, _, size in
             (part.rpartition(":") for part in layout.split(","))]
    entry = os.path.join(folder, files[-1][0])
    src = sys.stdin.buffer.read()
    if not os.path.exists(entry):
        os.makedirs(folder, exist_ok=True)
        start = 0
        for name, size in files:
            where = os.path.join(folder, name)
            tmp = f"{where}.{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(src[start:start + size])
            os.replace(tmp, where)
            start += size
    sys.argv = [entry, *sys.argv[3:]]
    runpy.run_path(entry, run_name="__main__")


main()
