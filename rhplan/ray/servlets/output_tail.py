"""A call's output while Ray runs it: the servlet writes what the call prints to a
per-call file as records (1 byte stream, 4 bytes length, the bytes), and whoever can
read that file sends each whole record on as it appears, then removes the file. The
gateway does this on the head (its OUT frames); the caller does it itself on the direct
route when the servlet sees its files (direct_output.py).

Standard library only: uploaded beside the gateway's files; Ray is handed in.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

POLL = (0.002, 0.05)  # output is looked for this often while a call runs (min, max)


def forward_records(log: str, offset: int, send_out: Callable[[bytes], Any]) -> int:
    """Send the whole records written to log since offset (each as its stream byte and
    its bytes); the new offset."""
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    pos = 0
    while pos + 5 <= len(data):
        n = int.from_bytes(data[pos + 1:pos + 5], "big")
        if pos + 5 + n > len(data):
            break
        send_out(data[pos:pos + 1] + data[pos + 5:pos + 5 + n])
        pos += 5 + n
    return offset + pos


def wait_tailing(ray: Any, ref: Any, log: str, send_out: Callable[[bytes], Any],
                 timeout: float | None = None) -> Any:
    """ray.get(ref), bounded by timeout (GetTimeoutError, a TimeoutError, past it), with
    the output records written to log sent out while it runs and once more at the end."""
    deadline = None if timeout is None else time.monotonic() + timeout
    offset, poll = 0, POLL[0]
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return ray.get(ref, timeout=0)
            ready, _ = ray.wait([ref], timeout=poll if left is None else min(poll, left))
            offset = forward_records(log, offset, send_out)
            if ready:
                return ray.get(ref)
            poll = min(POLL[1], poll * 2)
    finally:
        forward_records(log, offset, send_out)
        try:
            os.unlink(log)
        except OSError:
            pass  # nothing was printed: the servlet made no file
