"""Runs ON a host, in an env's servlet: the servlet's object store across a restart by
apply. The servlet being replaced writes its store to the env dir (host_script's start
asks it to); the servlet that replaces it loads it, once. Each object is cloudpickled
on its own, so one that cannot travel (a lock, a socket, a class that is gone) costs
only itself, and is reported lost with why.

Standard library and Ray only (rhplan is not installed on hosts); uploaded beside
host_script.py and sent to the env's interpreter by value with the servlet.
"""
from __future__ import annotations

import os
import pickle

SNAPSHOT_FILE = "rhplan/objects.pickle"  # in the env dir: the store across a restart


def write_snapshot(store: dict, env_dir: str) -> dict:
    """Write store to the env dir (0600). Returns {"kept": [keys], "lost": {key: why}};
    the next servlet of this env loads it (read_snapshot)."""
    from ray import cloudpickle

    kept, lost = {}, {}
    for key, value in list(store.items()):
        try:
            kept[key] = cloudpickle.dumps(value, protocol=5)
        except Exception as exc:  # noqa: BLE001 - any failure: that object is lost
            lost[key] = f"{type(exc).__name__}: {exc}"[:200]
    path = os.path.join(env_dir, SNAPSHOT_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(kept, fh, protocol=5)
    os.replace(tmp, path)
    return {"kept": sorted(kept), "lost": lost}


def read_snapshot(store: dict, env_dir: str) -> dict:
    """Load into store (then remove) the snapshot the servlet this one replaces wrote:
    objects whose class no longer loads (a package change removed it) are reported
    lost. Returns {"kept": [keys], "lost": {key: why}}."""
    path = os.path.join(env_dir, SNAPSHOT_FILE)
    try:
        with open(path, "rb") as fh:
            blobs = pickle.load(fh)
    except FileNotFoundError:
        return {"kept": [], "lost": {}}
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: start empty
        return {"kept": [], "lost": {"*": f"{type(exc).__name__}: {exc}"[:200]}}
    finally:
        try:
            os.unlink(path)  # once: a later crash restart must not bring back old ones
        except OSError:
            pass
    from ray import cloudpickle

    lost = {}
    for key, blob in blobs.items():
        try:
            store[key] = cloudpickle.loads(blob)
        except Exception as exc:  # noqa: BLE001 - its class is gone or changed
            lost[key] = f"{type(exc).__name__}: {exc}"[:200]
    return {"kept": sorted(store), "lost": lost}
