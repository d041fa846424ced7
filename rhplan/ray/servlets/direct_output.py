"""A call's output on the direct route: the servlet writes what the call prints to a
per-call file, and this process shows it as it is written, when the servlet sees this
machine's files (asked once per servlet and process).
"""
from __future__ import annotations

import atexit
import os
import pickle
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from typing import Any

from rhplan.ray.servlets.output_tail import wait_tailing
from rhplan.ray.servlets.transport import write_output


def wait(ref: Any, timeout: float | None, log: str | None) -> Any:
    """ray.get(ref), bounded by timeout; with log, the output records the servlet
    writes there are shown here while it runs (as the gateway does on the head)."""
    import ray
    if log is None:
        return ray.get(ref, timeout=timeout)

    def show(chunk: bytes) -> None:
        write_output(chunk[0], chunk[1:])

    return wait_tailing(ray, ref, log, show, timeout)


_out_dir: str | None = None
_seen: dict[tuple[str, str], bool] = {}
_out_lock = threading.Lock()


def output_dir() -> str:
    """This process's folder for the output files of its direct-route calls."""
    global _out_dir
    with _out_lock:
        if _out_dir is None:
            _out_dir = tempfile.mkdtemp(prefix="rhplan-out-")
            atexit.register(shutil.rmtree, _out_dir, True)
        return _out_dir


def sees_our_files(key: tuple[str, str], call: Callable[[bytes], Any]) -> bool:
    """Whether the servlet (key: its address and name) sees this machine's files (asked
    once per process): it is on this machine, in the same mount namespace, so the file it
    writes can be tailed here. call sends the servlet a pickled call (its `call`)."""
    with _out_lock:
        if key in _seen:
            return _seen[key]
    probe = os.path.join(output_dir(), f"probe-{uuid.uuid4().hex}")
    with open(probe, "w"):
        pass
    try:
        from ray import cloudpickle
        result = call(cloudpickle.dumps(("os.path:exists", (probe,), {})))
        seen = result[0] == "ok" and pickle.loads(result[1]) is True
    finally:
        os.unlink(probe)
    with _out_lock:
        _seen[key] = seen
    return seen

