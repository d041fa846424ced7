"""Runs ON a host, in an env's servlet: the servlet's own socket, through which the
gateway on this host (gateway.py) reaches it without a Ray call per request. An
abstract UNIX socket named after the cluster and the servlet (servlet_wire's
servlet_socket), answering only processes of the servlet's own user; frames and
packing are servlet_wire.py's. servlet is what runs a request (servlet_env's
EnvServlet.serve_request).

Standard library only (rhplan is not installed on hosts); uploaded beside
host_script.py and sent to the env's interpreter by value with the servlet.
"""
from __future__ import annotations

import os
import time

from servlet_wire import (
    ERROR,
    HEADER_FMT,
    OUT,
    REQUEST,
    RESULT,
    FrameReader,
    Outbox,
    error_parts,
    out_of_band,
    pack,
    unpack,
)

READY_TIMEOUT = float(os.environ.get("RHPLAN_SERVLET_TIMEOUT", "120"))
SERVLET_CONCURRENCY = 32  # calls one servlet serves at once (one thread each)
TAKEOVER = 0.004  # a request on the socket running longer hands the reading on (s)


class _FrameSink:
    """Where a request's output goes on the socket path: OUT frames, as it comes."""

    def __init__(self, send, req: int):
        self.send, self.req = send, req

    def write(self, stream: int, data) -> None:
        data = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        if data:
            self.send(self.req, OUT, [bytes([stream]) + data])

    def close(self) -> None:
        pass


def listen(servlet, address: str) -> None:
    """Serve the gateway on address, in the background. Only processes of this user are
    answered (the socket has no file permissions): the gateway runs as the user that
    runs the cluster's Ray, as this servlet does."""
    import threading

    threading.Thread(target=_accept, args=(servlet, address, _Workers()), daemon=True,
                     name="rhplan-servlet listen").start()


class _Workers:
    """Threads that take over the reading of a connection (see _GatewayConn.watch), made
    as needed, SERVLET_CONCURRENCY at most: jobs wait in a plain queue, cheaper per
    request than an executor's futures."""

    def __init__(self):
        import queue
        import threading

        self.work: queue.SimpleQueue = queue.SimpleQueue()
        self.count = {"made": 0, "idle": 0, "queued": 0}
        self.lock = threading.Lock()

    def _worker(self) -> None:
        count = self.count
        while True:
            with self.lock:
                count["idle"] += 1
            job = self.work.get()
            with self.lock:
                count["idle"] -= 1
                count["queued"] -= 1
            job[0](*job[1:])

    def submit(self, *job) -> None:
        import threading

        count = self.count
        with self.lock:  # a thread more whenever requests outnumber idle threads
            count["queued"] += 1
            more = count["queued"] > count["idle"] and count["made"] < SERVLET_CONCURRENCY
            if more:
                count["made"] += 1
        if more:
            threading.Thread(target=self._worker, daemon=True, name="rhplan-servlet").start()
        self.work.put(job)


def _accept(servlet, address: str, workers: _Workers) -> None:
    import socket
    import struct
    import threading

    creds = struct.Struct("3i")  # pid, uid, gid
    deadline = time.time() + READY_TIMEOUT
    while True:
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            srv.bind(address)
            break
        except OSError:  # the servlet this one replaces is still exiting
            srv.close()
            if time.time() > deadline:
                return  # the gateway calls this servlet through Ray instead
            time.sleep(0.05)
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        _, uid, _ = creds.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                 creds.size))
        if uid != os.getuid():
            conn.close()
            continue
        threading.Thread(target=_GatewayConn(servlet, conn, workers).serve, daemon=True,
                         name="rhplan-servlet gateway").start()


class _GatewayConn:
    """One gateway connection. The thread that reads a request runs it itself (no
    hand-off to a worker per request: the thread wake-ups were most of a small call's
    cost here), and holds its answer while more requests are already read, so that
    answers that finish together go back in one write. A request that runs longer than
    TAKEOVER (a slow call, one waiting for another request) hands the reading on to a
    worker (watch), so it holds up the others by that much at most."""

    def __init__(self, servlet, conn, workers: _Workers):
        import struct
        import threading

        self.servlet, self.conn, self.workers = servlet, conn, workers
        self.header = struct.Struct(HEADER_FMT)
        self.outbox = Outbox(conn.sendall)
        # who reads: role["gen"] names the reader; role["busy"] = the request it runs
        self.role = {"gen": 0, "busy": None, "seq": 0, "closed": False, "parked": False}
        self.role_lock = threading.Lock()
        self.wake = threading.Event()  # the watcher, parked while the connection is idle
        self.frames = FrameReader(conn.recv, conn.recv_into)

    def serve(self) -> None:
        import threading

        threading.Thread(target=self.watch, daemon=True, name="rhplan-servlet watch").start()
        self.lead(0)

    def send(self, req: int, kind: int, pieces: list, hold: bool = False) -> None:
        """Queue a frame; unless held (flush sends it), send all that is queued meanwhile
        in one write (servlet_wire.Outbox): answers that finish together reach the
        caller in one SSH packet (whose cost there is Python, per packet)."""
        size = sum(memoryview(p).nbytes for p in pieces)
        if self.outbox.put([self.header.pack(req, kind, size), *pieces], hold):
            self.outbox.drain()

    def flush(self) -> None:
        self.outbox.flush()

    def answer(self, req: int, payload, hold: bool) -> None:
        try:
            op, args = unpack(payload)
            result = self.servlet.serve_request(op, args, _FrameSink(self.send, req))
            self.send(req, RESULT, pack(out_of_band(result)), hold)
        except BaseException as exc:  # the caller re-raises it
            import pickle

            try:
                self.send(req, ERROR, [pickle.dumps(error_parts(exc), protocol=5)], hold)
            except OSError:
                pass  # the gateway is gone

    def lead(self, gen: int) -> None:
        """Read and run requests until the watcher hands the reading on."""
        role, role_lock, frames = self.role, self.role_lock, self.frames
        try:
            while True:
                if not frames.buffered():
                    self.flush()  # nothing more came with them: the held answers go
                req, kind, body = frames.read()
                if kind != REQUEST:
                    continue
                with role_lock:
                    role["seq"] += 1
                    role["busy"] = role["seq"]
                    parked, role["parked"] = role["parked"], False
                if parked:
                    self.wake.set()
                try:
                    self.answer(req, body, hold=True)
                finally:
                    with role_lock:
                        moved = role["gen"] != gen
                        if not moved:  # (else busy is the new reader's)
                            role["busy"] = None
                if moved:  # another thread reads now: this one's answer goes at once
                    self.flush()
                    return
        except (OSError, ValueError, EOFError):
            with role_lock:
                role["closed"] = True
            self.wake.set()
            try:
                self.flush()
            except OSError:
                pass
            self.conn.close()

    def watch(self) -> None:
        """Hand the reading to a worker when a request runs past TAKEOVER; parked (no
        wake-ups) after a second with nothing to run."""
        role, role_lock = self.role, self.role_lock
        seen, idle = None, 0
        while True:
            time.sleep(TAKEOVER / 2)
            with role_lock:
                if role["closed"]:
                    return
                busy = role["busy"]
                if busy is not None and busy == seen:
                    role["gen"] += 1
                    gen = role["gen"]
                    role["busy"] = None  # the new reader's, from now on
                else:
                    # (quick requests between two looks count as idle: the watcher
                    # parks, and the next request to start wakes it)
                    gen, seen = None, busy
                    idle = 0 if busy is not None else idle + 1
                    if idle * TAKEOVER / 2 >= 1.0:
                        role["parked"] = True
                        self.wake.clear()
            if gen is not None:
                seen = None
                try:
                    self.flush()  # what the slow request held back
                except OSError:
                    pass
                self.workers.submit(self.lead, gen)
            elif role["parked"]:
                self.wake.wait()
                idle = 0
