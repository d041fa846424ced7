"""The gateway's path through Ray, on the head: for a servlet without a socket of its
own (started by an older rhplan) or one that does not answer on it, the gateway joins
the cluster's Ray as a driver (on first need only: ~0.5-1 s of CPU) and calls the named
actor, trusting only the actor id the caller names; a call's output is tailed from its
per-call file meanwhile (output_tail.py). Standard library, and Ray once joined.
"""
from __future__ import annotations

import os
import socket
import threading
import uuid

if __package__:  # imported inside rhplan (tests, the caller's checks)
    from . import gateway as proto
    from . import servlet_wire as wire
    from .output_tail import wait_tailing
else:  # on a node, beside gateway_main.py
    import gateway as proto  # type: ignore[no-redef]
    import servlet_wire as wire  # type: ignore[no-redef]
    from output_tail import wait_tailing  # type: ignore[no-redef]

WORKERS = 64  # requests served at once through Ray (servlets without their own socket)
RAY_WAIT = 120.0  # a request that needs Ray waits this long for the gateway to join it


class RayRoute:
    """The servlets of one cluster's Ray (address: its GCS), called as Ray actors."""

    def __init__(self, address: str, log_dir: str = "", socket_only: bool = False):
        self.address = address
        self.ray = None
        self.ray_ready = threading.Event()
        self.ray_error = ""
        self.joining = False
        self.actors: dict[str, object] = {}
        self.lock = threading.Lock()
        self.log_dir = log_dir  # where servlets write a call's output for the gateway
        self._pool = None
        # a worker node's gateway (gateway_start.gateway_dir(root, node)): every servlet
        # there was started with its socket, and its Ray may be the dead node's, so it
        # never joins Ray (which would outlive the node's temp dir it is named by)
        self.socket_only = socket_only

    @property
    def pool(self):
        """Threads for requests through Ray (made on first need: not at start)."""
        with self.lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor
                self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="rhplan-gw")
            return self._pool

    def join_ray(self) -> None:
        """Become a driver of the cluster's Ray: only when a request needs it (a servlet
        without its own socket, or one that does not answer on it). Not at start: Ray's
        import and driver start (~0.5-1 s of CPU) would slow every first caller."""
        with self.lock:
            if self.joining:
                return
            self.joining = True
        try:
            if not gcs_up(self.address):  # ray.init retries a dead address for minutes
                raise ConnectionError(f"Ray at {self.address} is not answering")
            import ray

            ray.init(address=self.address, namespace=proto.NAMESPACE, logging_level="ERROR",
                     log_to_driver=False, configure_logging=False)
            self.ray = ray
        except BaseException as exc:  # noqa: BLE001 - told to each request that needs Ray
            self.ray_error = f"the gateway could not join Ray at {self.address}: {exc}"
        self.ray_ready.set()

    def _need_ray(self):
        """Ray, once this gateway has joined it (joining now if no request has yet)."""
        self.join_ray()
        if not self.ray_ready.wait(RAY_WAIT):
            raise TimeoutError(f"the gateway did not join Ray at {self.address} within "
                               f"{RAY_WAIT:g} s")
        if self.ray is None:
            raise RuntimeError(self.ray_error)
        return self.ray

    def actor(self, name: str, fresh: bool = False):
        """The named servlet's actor (a servlet key: its recorded id is checked); one
        restarted by an apply is found by name again (fresh)."""
        ray = self._need_ray()
        with self.lock:
            actor = None if fresh else self.actors.get(name)
        if actor is None:
            real, ident = proto.parse_key(name)
            try:
                actor = ray.get_actor(real, namespace=proto.NAMESPACE)
            except ValueError:
                raise LookupError(f"servlet {real!r} is not running; rhplan plan shows it "
                                  "as drift and rhplan apply starts it") from None
            if ident and actor._actor_id.hex() != ident[0]:
                raise proto.not_started_by_rhplan(
                    real, f"the actor answering to {proto.NAMESPACE}/{real} "
                    f"({actor._actor_id.hex()})")
            with self.lock:
                self.actors[name] = actor
        return actor

    def has(self, name: str, method: str) -> bool:
        """Whether the servlet knows method (one started by an older rhplan may not)."""
        try:
            getattr(self.actor(name), method)
            return True
        except AttributeError:
            return False

    def wait(self, name: str, method: str, args: tuple, send_out, log: str | None):
        """Call method on the named servlet and wait for it. A handle to a servlet that
        was replaced (by an apply) fails with RayActorError: ask again by name, once."""
        ray = self._need_ray()
        for attempt in (0, 1):
            ref = getattr(self.actor(name), method).remote(*args)
            try:
                return self._wait_ref(ref, send_out, log)
            except ray.exceptions.RayActorError:
                if attempt:
                    raise
                old = self.actors.get(name)
                new = self.actor(name, fresh=True)
                if getattr(new, "_actor_id", None) == getattr(old, "_actor_id", None):
                    raise
        raise AssertionError("unreachable")

    def _wait_ref(self, ref, send_out, log: str | None):
        if log is None:
            return self.ray.get(ref)
        return wait_tailing(self.ray, ref, log, send_out)

    def handle(self, op: str, name: str, args: tuple, send_out):
        """One request through Ray."""
        if self.socket_only:
            real, _ = proto.parse_key(name)
            raise LookupError(f"servlet {real!r} is not running; rhplan plan shows it as "
                              "drift and rhplan apply starts it")
        # Ray pickles its arguments: the memoryviews unpack gave become bytes
        args = tuple(bytes(a) if isinstance(a, memoryview) else a for a in args)
        log = os.path.join(self.log_dir, f"{uuid.uuid4().hex}.out")
        if op == "find":
            self.actor(name, fresh=True)
            return True
        if op == "call":
            payload, stream = args
            if stream and self.has(name, "call_streamed"):
                return self.wait(name, "call_streamed", (payload, log), send_out, log)
            return self.wait(name, "call", (payload,), send_out, None)
        if op == "run":
            cmd, timeout, stream = args
            if stream and self.has(name, "run_streamed"):
                return self.wait(name, "run_streamed", (cmd, timeout, log), send_out, log)
            return self.wait(name, "run", (cmd, timeout), send_out, None)
        if op == "put":
            return self.wait(name, "put_pickled", args, send_out, None)
        if op == "get":
            return self.wait(name, "get_pickled", args, send_out, None)
        if op in ("keys", "delete", "status"):
            return self.wait(name, op, args, send_out, None)
        raise ValueError(f"unknown request {op!r}")

    def answer(self, req: int, name: str, payload, send) -> None:
        """A request through Ray (the servlet has no socket of its own)."""
        def send_out(chunk: bytes) -> None:
            send(req, wire.OUT, chunk)

        try:
            op, args = wire.unpack(payload)
            result = self.handle(op, name, args, send_out)
            reply = (wire.RESULT,
                     b"".join(bytes(p) for p in wire.pack(wire.out_of_band(result))))
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the caller
            reply = (wire.ERROR, proto.error_body(exc))
        try:
            send(req, *reply)
        except OSError:
            pass  # the caller is gone


def gcs_up(address: str) -> bool:
    """Whether the cluster's Ray GCS accepts a connection (within 5 s)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return True
    except OSError:
        return False
