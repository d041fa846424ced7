"""What the state backend tests share (local file and S3 on moto): a process that has
exited, lock info as a given process would have written it, a race of backends for one
lock, and an S3 backend block."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from typing import Any

from rhplan.errors import StateLockedError
from rhplan.state import LockInfo, lockinfo

CHILD_TIMEOUT = 30.0
KEY = "team/rhplan.state.json"  # the S3 tests' state key


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=CHILD_TIMEOUT)
    return int(proc.stdout)


def info_of(pid: int, **changes: object) -> LockInfo:
    """Lock info as the process `pid` of this machine would have written it."""
    mine = LockInfo.new("apply", "state.json")
    start = lockinfo.process_start_time(pid)
    fields: dict[str, object] = {"who": f"me@{mine.host} pid {pid}", "pid": pid,
                                 "start_time": start if start is not None else 12345}
    return dataclasses.replace(mine, **{**fields, **changes})


def race_for_lock(backends: list[Any]) -> tuple[list[tuple[Any, LockInfo]], list[str]]:
    """Every backend calls lock() at once (one thread each, lined up by a barrier):
    ([(backend, lock) taken], [errors of those refused])."""
    barrier = threading.Barrier(len(backends))
    won: list[tuple[Any, LockInfo]] = []
    refused: list[str] = []

    def contend(b: Any) -> None:
        barrier.wait()
        try:
            won.append((b, b.lock("apply")))
        except StateLockedError as err:
            refused.append(str(err))

    threads = [threading.Thread(target=contend, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return won, refused


def s3_block(bucket: str, url: str, key: str = KEY, extra: str = "") -> str:
    """An rhplan block with an S3 backend on the endpoint url (moto)."""
    return (f'rhplan {{\n  backend "s3" {{\n    bucket       = "{bucket}"\n'
            f'    key          = "{key}"\n    region       = "us-east-1"\n'
            f'    endpoint_url = "{url}"\n{extra}  }}\n}}\n\n')
