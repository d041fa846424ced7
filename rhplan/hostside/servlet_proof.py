"""Runs ON the head, after ray_host.py (whose owned_pids it calls): is PID still the
env's servlet? Prints the pid, or nothing.

    servlet_proof.py TEMP_DIR TOKEN_PATH PID ENV_DIR

A pid is reused, so only proof counts: a live worker of this cluster's Ray (see
owned_pids: its token in the environment Raylet gave it), titled ray::EnvServlet, with
the env's own files mapped (its interpreter loads Ray from the env's site-packages).
"""
import sys


def proven(temp_dir, token, pid, env_dir):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if not f.read().startswith(b"ray::EnvServlet"):
                return False
        with open(f"/proc/{pid}/maps", "rb") as f:
            maps = f.read()
    except OSError:
        return False
    return ((env_dir.rstrip("/") + "/").encode() in maps
            and pid in owned_pids(temp_dir, token))  # noqa: F821


def main(temp_dir, token, pid, env_dir):
    print(pid if proven(temp_dir, token, int(pid), env_dir) else "")


main(*sys.argv[1:5])
