"""The caller's side of a cluster's gateway (gateway.py): servlets through SSH alone.

One Gateway per cluster per process, shared by every handle and thread: one SSH
connection (the provider's pooled one), one `direct-tcpip` channel on it to the
gateway on the head's loopback, and many requests in flight on that channel at once,
told apart by id. The gateway is started on first use, through the same SSH
connection, and the cluster's token is read over it (SFTP): the token never crosses
a network in the clear.

The channel, its batched sends and the answers handed on are link.py's; opening it
(SSH, starting the gateway, the token, the handshake) is gateway_open.py's.

Faults: when the channel or the connection dies, every request in flight fails with
GatewayLost naming the cluster, and the next request connects again (bounded by the
SSH connect timeout). A request waits for its answer only as long as its caller asked
(timeout); connecting and the handshake are always bounded.
"""
from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rhplan.errors import RhplanError
from rhplan.ray.servlets import gateway as proto
from rhplan.ray.servlets import servlet_wire as wire
from rhplan.ray.servlets.gateway_open import Opener
from rhplan.ray.servlets.link import Inbox, Link
from rhplan.ray.servlets.remote_errors import error_frame, unpack_data
from rhplan.registry import Registry


class GatewayLost(RhplanError):
    """The connection to a cluster's gateway broke while a request was in flight (it
    may or may not have run); the next request connects again."""


class Gateway:
    """A cluster's gateway, as this process sees it."""

    def __init__(self, label: str, opener: Opener):
        self.label = label  # e.g. "cluster.gpu", for error messages
        self._open = opener
        self._lock = threading.Lock()
        self._link: Link | None = None
        self._ids = itertools.count(1)
        self.connects = 0

    @property
    def versions(self) -> dict[str, Any]:
        return self._connected().welcome

    def _connected(self) -> Link:
        link = self._link  # the usual case, without the lock: 8 threads call this per call
        if link is not None and link.dead is None:
            return link
        with self._lock:
            link = self._link
            if link is not None and link.dead is None:
                return link
            chan, welcome = self._open()
            link = self._link = Link(chan, welcome)
            self.connects += 1
            if Inbox.fits(chan):  # an SSH channel: answers handed on as they arrive
                Inbox.install(link)
            else:  # a plain socket (the head is this machine, tests): a reader thread
                threading.Thread(target=self._read, args=(link,), daemon=True,
                                 name=f"rhplan-gateway {self.label}").start()
            return link

    def _read(self, link: Link) -> None:
        reason = "the connection was closed"
        try:
            reader = wire.FrameReader(link.chan.recv, getattr(link.chan, "recv_into", None))
            while True:
                req, kind, body = reader.read()
                with link.lock:
                    q = link.pending.get(req)
                if q is not None:
                    q.put((kind, body))
        except (EOFError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - paramiko's own errors: the link is dead
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            link.fail_all(reason)
            try:
                link.chan.close()
            except Exception:  # noqa: BLE001
                pass

    def request(self, op: str, servlet: str, args: tuple = (), timeout: float | None = None,
                on_output: Callable[[int, bytes], None] | None = None) -> Any:
        """Send one request and wait for its answer (output chunks go to on_output, or to
        this process's stdout/stderr); the servlet's exception is raised as itself."""
        link = self._connected()
        req = next(self._ids)
        name = servlet.partition("\0")[0]  # servlet: gateway.servlet_key, for messages
        q: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        with link.lock:
            if link.dead is not None:
                raise self._lost(op, name, link.dead)
            link.pending[req] = q
        try:
            link.send(proto.request_frame(req, servlet, op, args))
            deadline = None if timeout is None else time.monotonic() + timeout
            out = on_output or write_output
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    kind, data = q.get(timeout=left)
                except queue.Empty:
                    raise TimeoutError(f"servlet {name!r} on {self.label} did not answer "
                                       f"{op} within {timeout:g} s") from None
                if kind == wire.OUT:
                    out(data[0], bytes(data[1:]))
                elif kind == wire.RESULT:
                    return unpack_data(data)  # plain data only: see remote_errors.py
                elif kind == wire.ERROR:
                    raise error_frame(name, data)
                else:
                    raise self._lost(op, name, data)
        finally:
            with link.lock:
                link.pending.pop(req, None)

    def _lost(self, op: str, servlet: str, why: str) -> GatewayLost:
        return GatewayLost(f"lost the connection to {self.label} during {op} on servlet "
                           f"{servlet!r} ({why}); it may or may not have run there; the next "
                           "call connects again")

    def close(self) -> None:
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            try:
                link.chan.close()
            except Exception:  # noqa: BLE001
                pass


def write_output(stream: int, data: bytes) -> None:
    target = sys.stdout if stream == 1 else sys.stderr
    buf = getattr(target, "buffer", None)
    if buf is not None:
        target.flush()
        buf.write(data)
        buf.flush()
    else:  # a notebook's stream has no buffer
        target.write(data.decode("utf-8", "replace"))
        target.flush()


_gateways: Registry[tuple[Any, ...], Gateway] = Registry()


def gateway_for(key: tuple[Any, ...], label: str, opener: Opener) -> Gateway:
    """The process's one Gateway for a cluster (key names the cluster)."""
    return _gateways.get_or_make(key, lambda: Gateway(label, opener))


def gateways() -> list[Gateway]:
    """The gateways the process holds now (tests count them and their connects)."""
    return _gateways.values()


close_all = _gateways.close_all
