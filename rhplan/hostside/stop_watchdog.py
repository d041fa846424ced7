"""Runs ON the head: stops this user's autostop watchdog of one Ray temp dir.

    stop_watchdog.py TEMP_DIR

Only this user's watchdog of this temp dir: the temp dir is one argument of its own and
the script is named watchdog-*, so a root destroy never signals another user's process
that merely mentions the path.
"""
import os
import signal
import sys


def main(marker):
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{p}").st_uid != os.getuid():
                continue
            with open(f"/proc/{p}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if marker in args and any(os.path.basename(a).startswith(b"watchdog-") for a in args):
            try:
                os.kill(int(p), signal.SIGKILL)
            except OSError:
                pass


main(sys.argv[1].encode())
