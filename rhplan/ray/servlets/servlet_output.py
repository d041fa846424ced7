"""Runs ON a host, in an env's servlet (servlet_env.py): where what a call prints goes
while it runs. A streamed call's thread writes to that call's sink (a file the
gateway tails, or OUT frames on the servlet's socket: servlet_server.py); every other
thread writes where Ray pointed the worker's stdout/stderr. Also a command run with
its output streamed the same way.

Standard library only (rhplan is not installed on hosts); uploaded beside
host_script.py and sent to the env's interpreter by value with the servlet.
"""
from __future__ import annotations

import os
import subprocess
import sys


def streamed_into(sink, work):
    """work(), with what it prints (sys.stdout, sys.stderr, logging to them) going to
    sink.write(stream, data); sink is closed after."""
    tls = stream_router()
    tls.sink = sink
    try:
        return work()
    finally:
        tls.sink = None
        sink.close()


def run_into(argv: list, timeout, sink, cwd: str) -> dict:
    """argv run in cwd, its output going to sink.write(stream, data) as it comes and
    returned as run() returns it."""
    import threading

    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, cwd=cwd)
    except FileNotFoundError:
        sink.close()
        return {"returncode": 127, "stdout": "", "stderr": f"{argv[0]}: command not found"}
    got: dict = {1: [], 2: []}

    def pump(stream, fd: int) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            got[fd].append(chunk)
            sink.write(fd, chunk)

    pumps = [threading.Thread(target=pump, args=(p.stdout, 1), daemon=True),
             threading.Thread(target=pump, args=(p.stderr, 2), daemon=True)]
    for t in pumps:
        t.start()
    try:
        code = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        code = 124
    for t in pumps:
        t.join(5)
    sink.close()
    text = {fd: b"".join(v).decode("utf-8", "replace") for fd, v in got.items()}
    return {"returncode": code, "stdout": text[1],
            "stderr": text[2] + ("timed out" if code == 124 and timeout else "")}


class Sink:
    """Output records appended to a file (one write per record, so threads interleave
    whole records), made on the first write: a call that prints nothing costs no file."""

    def __init__(self, path: str):
        import threading

        self.path = path
        self.fd = -1
        self.lock = threading.Lock()

    def write(self, stream: int, data) -> None:
        data = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        if not data:
            return
        record = memoryview(stream.to_bytes(1, "big") + len(data).to_bytes(4, "big") + data)
        with self.lock:
            if self.fd == -2:
                return  # the file cannot be made here: see below
            if self.fd < 0:
                try:
                    self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                      0o600)
                except OSError:
                    # a servlet on a worker node, asked by the head's gateway whose folder
                    # is on the head only: its output is not streamed, the call goes on
                    self.fd = -2
                    return
            while record:
                record = record[os.write(self.fd, record):]

    def close(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


class _Router:
    """sys.stdout / sys.stderr of a servlet: a thread running a streamed call writes to
    that call's sink, every other thread to the stream Ray gave the worker."""

    _rhplan_router = True

    def __init__(self, orig, stream: int, tls):
        self._orig, self._stream, self._tls = orig, stream, tls

    def write(self, text) -> int:
        sink = getattr(self._tls, "sink", None)
        if sink is None:
            return self._orig.write(text)
        sink.write(self._stream, text)
        return len(text)

    def flush(self) -> None:
        if getattr(self._tls, "sink", None) is None:
            self._orig.flush()

    def __getattr__(self, name: str):
        return getattr(self._orig, name)


def stream_router():
    """The thread-local that routes this process's prints (installed on first use)."""
    import threading

    if not getattr(sys.stdout, "_rhplan_router", False):
        tls = threading.local()
        sys.stdout = _Router(sys.stdout, 1, tls)
        sys.stderr = _Router(sys.stderr, 2, tls)
    return sys.stdout._tls
