"""Runs ON a cluster's head, detached: the autostop watchdog.

Every few seconds it asks each servlet (named actors in the `rhplan` namespace) how
long it has been idle; when no servlet has been used for IDLE_SECONDS (and the
watchdog itself has run that long), it runs the cluster's autostop command (by
default a shutdown) once and exits. Standard library and Ray only, like
host_script.py; its command line names the cluster's Ray temp dir, so stopping
the cluster's Ray also stops it.

    python watchdog.py ADDRESS IDLE_SECONDS COMMAND RAY_TEMP_DIR [ACTIVITY_FILE]

rhplan touches ACTIVITY_FILE whenever it works on the cluster's envs, so an apply in
progress counts as activity too.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

NAMESPACE = "rhplan"


def idle_seconds(ray) -> float | None:
    """The smallest idle time over all servlets, or None when there are none."""
    idle = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") != NAMESPACE:
            continue
        try:
            actor = ray.get_actor(entry["name"], namespace=NAMESPACE)
            idle.append(ray.get(actor.idle_seconds.remote(), timeout=10))
        except Exception:
            continue  # a servlet that is gone or busy starting is not activity
    return min(idle) if idle else None


def _since_touched(path: str | None) -> float | None:
    try:
        return time.time() - os.path.getmtime(path) if path else None
    except OSError:
        return None


def main(address: str, limit: float, command: str, temp_dir: str,
         activity: str | None = None) -> int:
    del temp_dir  # only here so the cluster's Ray owns this process
    host, _, port = address.rpartition(":")
    socket.create_connection((host, int(port)), timeout=10).close()
    import ray

    ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR",
             log_to_driver=False, configure_logging=False)
    started = time.time()
    poll = min(30.0, max(0.5, limit / 4))
    while True:
        time.sleep(poll)
        idle = idle_seconds(ray)
        touched = _since_touched(activity)
        if touched is not None:
            idle = touched if idle is None else min(idle, touched)
        watched = time.time() - started
        if (idle is None or idle >= limit) and watched >= limit:
            print(f"idle for {limit:.0f}s: running autostop command", flush=True)
            return subprocess.run(["bash", "-c", command]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], *sys.argv[5:6]))
