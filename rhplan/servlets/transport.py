"""The caller's side of a cluster's gateway (gateway.py): servlets through SSH alone.

One Gateway per cluster per process, shared by every handle and thread: one SSH
connection (the provider's pooled one), one `direct-tcpip` channel on it to the
gateway on the head's loopback, and many requests in flight on that channel at once,
told apart by id. The gateway is started on first use, through the same SSH
connection, and the cluster's token is read over it (SFTP): the token never crosses
a network in the clear.

Faults: when the channel or the connection dies, every request in flight fails with
GatewayLost naming the cluster, and the next request connects again (bounded by the
SSH connect timeout). A request waits for its answer only as long as its caller asked
(timeout); connecting and the handshake are always bounded.
"""
from __future__ import annotations

import atexit
import hmac
import itertools
import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from rhplan.errors import ProviderError, RhplanError
from rhplan.servlets import gateway as proto
from rhplan.servlets.remote_errors import RemoteError as RemoteError  # re-exported
from rhplan.servlets.remote_errors import error_frame, unpack_data

HANDSHAKE_TIMEOUT = 10.0
_LOST = -1  # a frame kind of this side only: the connection died
# the first thread to send waits up to this long for threads just handed their answers
# to queue their next requests: one SSH packet for all (only while others are on the way)
LINGER = 0.0002


class GatewayLost(RhplanError):
    """The connection to a cluster's gateway broke while a request was in flight (it
    may or may not have run); the next request connects again."""


# (channel-like object with recv/sendall/close, cluster's {"ray", "python"} versions)
Opener = Callable[[], tuple[Any, dict[str, Any]]]


class _Link:
    """One live channel to the gateway: its outbox and the requests waiting."""

    def __init__(self, chan: Any, welcome: dict[str, Any]):
        self.chan = chan
        self.welcome = welcome
        self.pending: dict[int, queue.SimpleQueue[tuple[int, Any]]] = {}
        self.lock = threading.Lock()
        self.dead: str | None = None
        self.outbox: list[Any] = []
        self.sending = False
        self.woken = 0  # threads handed their answer that have not sent again since

    def send(self, pieces: list[Any]) -> None:
        """Queue a frame's pieces; the first thread to find no sender at work sends
        everything queued meanwhile, together: under concurrency, several requests share
        one SSH packet (paramiko's per-packet cost is Python, and each packet costs sshd,
        the gateway and the servlet a wake-up) instead of one each. While threads that
        were just handed their answers have not sent again (they are on their way to
        their next request, or done), the sender waits for them, LINGER at most. A lone
        thread never waits: its own send is the one it was woken for."""
        with self.lock:
            self.outbox.extend(pieces)
            if self.woken > 0:
                self.woken -= 1
            if self.sending:
                return
            self.sending = True
        try:
            if self.woken > 0:
                self._linger()
            while True:
                with self.lock:
                    batch, self.outbox = self.outbox, []
                    if not batch:
                        self.sending = False
                        return
                if len(batch) == 1 and len(batch[0]) < proto.OUT_OF_BAND:  # one small frame
                    self.chan.sendall(batch[0])
                    continue
                for piece in proto.joined(batch):
                    # paramiko's sendall keeps what is left with s = s[sent:]: a
                    # memoryview makes that free (bytes recopied the rest: quadratic)
                    self.chan.sendall(memoryview(piece).cast("B"))
        except BaseException as exc:
            with self.lock:
                self.sending = False
                self.outbox = []
            self.fail_all(str(exc) or type(exc).__name__)

    def _linger(self) -> None:
        deadline = time.perf_counter() + LINGER
        while self.woken > 0:
            if time.perf_counter() >= deadline:  # those not here yet are not coming soon
                with self.lock:
                    self.woken = 0
                return
            time.sleep(0)  # lets them run (the GIL) to their send

    def fail_all(self, reason: str) -> None:
        with self.lock:
            self.dead = self.dead or reason
            waiting = list(self.pending.values())
        for q in waiting:
            q.put((_LOST, self.dead))


class _Inbox:
    """Stands in for a paramiko channel's receive buffer (`chan.in_buffer`): paramiko's
    transport thread, which decrypts each SSH packet, hands the frames in it straight to
    the requests waiting for them. A reader thread of ours (woken by paramiko, then
    waking the callers) was one thread hand-off more per batch of answers, most of
    the caller's CPU per call besides Python's own work. Also acks the channel's
    window as recv() did; nothing calls recv() on the channel any more."""

    @staticmethod
    def fits(chan: Any) -> bool:
        return all(hasattr(chan, a) for a in (
            "in_buffer", "_check_add_window", "transport", "remote_chanid"))

    @staticmethod
    def install(link: _Link) -> None:
        inbox = _Inbox(link)
        chan = link.chan
        with inbox.lock:  # what the old buffer still holds goes first
            old, chan.in_buffer = chan.in_buffer, inbox
            left = old.empty() if len(old) else b""
            if left:
                inbox._take(left)

    def __init__(self, link: _Link):
        self.link = link
        self.chan = link.chan
        self.lock = threading.Lock()
        self.buf = bytearray()
        self.big: tuple[int, int, bytearray, int] | None = None  # req, kind, body, got

    # what paramiko's Channel calls on its in_buffer
    def feed(self, data: bytes) -> None:
        try:
            with self.lock:
                self._take(data)
        except Exception as exc:  # noqa: BLE001 - never into paramiko's transport thread
            self.link.fail_all(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:  # EOF or the channel closed (or the connection died)
        self.link.fail_all("the connection was closed")
        # closing takes the channel's lock, which paramiko may hold while calling this
        threading.Thread(target=self._close_channel, daemon=True).start()

    def read_ready(self) -> bool:
        return False

    def read(self, nbytes: int, timeout: float | None = None) -> bytes:
        return b""

    def empty(self) -> bytes:
        return b""

    def set_event(self, event: Any) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def _close_channel(self) -> None:
        try:
            self.chan.close()
        except Exception:  # noqa: BLE001
            pass

    def _take(self, data: bytes) -> None:
        self._ack(len(data))
        view = memoryview(data)
        if self.big is not None:  # the rest of a large body
            req, kind, body, got = self.big
            n = min(len(body) - got, len(view))
            body[got:got + n] = view[:n]
            got += n
            if got < len(body):
                self.big = (req, kind, body, got)
                return
            self.big = None
            self._hand(req, kind, memoryview(body))
            view = view[n:]
        buf = self.buf
        buf += view
        pos, end, size = 0, len(buf), proto.HEADER.size
        while end - pos >= size:
            req, kind, n = proto.HEADER.unpack_from(buf, pos)
            if end - pos - size >= n:
                self._hand(req, kind, memoryview(bytes(buf[pos + size:pos + size + n])))
                pos += size + n
                continue
            if n >= proto.OUT_OF_BAND:  # a large body: gathered where it will lie, once
                body = bytearray(n)
                have = end - pos - size
                body[:have] = buf[pos + size:end]
                self.big = (req, kind, body, have)
                pos = end
            break
        del buf[:pos]

    def _hand(self, req: int, kind: int, body: memoryview) -> None:
        link = self.link
        with link.lock:
            q = link.pending.get(req)
            if q is not None and kind != proto.OUT:  # its thread will likely send again
                link.woken += 1
        if q is not None:
            q.put((kind, body))

    def _ack(self, n: int) -> None:
        """Let the gateway send more (paramiko's recv did this per read)."""
        ack = self.chan._check_add_window(n)
        if ack <= 0:
            return
        transport = self.chan.transport
        if transport.clear_to_send.is_set():  # not mid key exchange: sent at once
            self._send_ack(ack)
        else:  # mid key exchange this (transport) thread must not wait for its end
            threading.Thread(target=self._send_ack, args=(ack,), daemon=True).start()

    def _send_ack(self, ack: int) -> None:
        from paramiko.common import cMSG_CHANNEL_WINDOW_ADJUST
        from paramiko.message import Message

        m = Message()
        m.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
        m.add_int(self.chan.remote_chanid)
        m.add_int(ack)
        try:
            self.chan.transport._send_user_message(m)
        except Exception as exc:  # noqa: BLE001 - the connection is going: say so
            self.link.fail_all(f"{type(exc).__name__}: {exc}")


class Gateway:
    """A cluster's gateway, as this process sees it."""

    def __init__(self, label: str, opener: Opener):
        self.label = label  # e.g. "cluster.gpu", for error messages
        self._open = opener
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._ids = itertools.count(1)
        self.connects = 0

    @property
    def versions(self) -> dict[str, Any]:
        return self._connected().welcome

    def _connected(self) -> _Link:
        link = self._link  # the usual case, without the lock: 8 threads call this per call
        if link is not None and link.dead is None:
            return link
        with self._lock:
            link = self._link
            if link is not None and link.dead is None:
                return link
            chan, welcome = self._open()
            link = self._link = _Link(chan, welcome)
            self.connects += 1
            if _Inbox.fits(chan):  # an SSH channel: answers handed on as they arrive
                _Inbox.install(link)
            else:  # a plain socket (the head is this machine, tests): a reader thread
                threading.Thread(target=self._read, args=(link,), daemon=True,
                                 name=f"rhplan-gateway {self.label}").start()
            return link

    def _read(self, link: _Link) -> None:
        reason = "the connection was closed"
        try:
            reader = proto.FrameReader(link.chan.recv, getattr(link.chan, "recv_into", None))
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
                if kind == proto.OUT:
                    out(data[0], bytes(data[1:]))
                elif kind == proto.RESULT:
                    return unpack_data(data)  # plain data only: see remote_errors.py
                elif kind == proto.ERROR:
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


# -- opening: SSH connection, gateway started if absent, token, channel, handshake ------

def handshake(chan: Any, token: bytes, where: str) -> dict[str, Any]:
    """Prove to each other that both hold the cluster's token (it is never sent); the
    gateway's versions. Bounded."""
    chan.settimeout(HANDSHAKE_TIMEOUT)
    ours = os.urandom(16).hex()
    try:
        hello = json.dumps({"protocol": proto.PROTOCOL, "nonce": ours})
        chan.sendall(proto.frame(0, proto.HELLO, hello.encode()))
        _, kind, body = proto.read_frame(chan.recv)
        challenge = json.loads(body) if kind == proto.CHALLENGE else {}
        theirs = str(challenge.get("nonce", ""))
        if not hmac.compare_digest(str(challenge.get("proof", "")),
                                   proto.proof(token, "gateway", ours, theirs)):
            chan.close()
            raise ProviderError(f"the process at rhplan's gateway port on {where} does not "
                                "hold the cluster's token; run rhplan apply if the token "
                                "changed, else check who listens there")
        auth = json.dumps({"proof": proto.proof(token, "caller", ours, theirs)})
        chan.sendall(proto.frame(0, proto.AUTH, auth.encode()))
        _, kind, body = proto.read_frame(chan.recv)
    except (TimeoutError, EOFError, OSError, ValueError) as exc:
        chan.close()
        raise ProviderError(f"rhplan's gateway on {where} refused the handshake "
                            f"({exc or 'closed'}); the cluster's token may have changed: "
                            "run rhplan apply") from None
    chan.settimeout(None)
    if kind != proto.WELCOME:
        chan.close()
        raise ProviderError(f"rhplan's gateway on {where} answered the handshake with frame "
                            f"{kind}; it speaks another protocol")
    welcome: dict[str, Any] = json.loads(body)
    return welcome


def ssh_opener(conn_factory: Callable[[], Any], cluster: dict[str, Any],
               private: dict[str, Any], node: str = "") -> Opener:
    """How to reach the gateway of a cluster through its provider's connection: a
    direct-tcpip channel over SSH, or a plain socket when the head is this machine.
    node: a worker host (conn_factory connects to it; private is that node's)."""
    from rhplan.servlets import manage

    def open_() -> tuple[Any, dict[str, Any]]:
        conn = conn_factory()
        token = conn.get_bytes(private["ray_token_path"])
        known = manage.read_gateway(conn, cluster, node)
        if known is not None:  # the usual case: no command to run on the head
            try:
                chan = _channel(conn, int(known["port"]))
                return chan, handshake(chan, token, conn.host)
            except (ProviderError, OSError):
                pass  # gone (or not ours): make sure one runs
        for attempt in (0, 1):
            info = manage.ensure_gateway(conn, cluster, private, node=node)
            try:
                chan = _channel(conn, int(info["port"]))
                break
            except (ProviderError, OSError):
                if attempt:  # it stopped between ensure and connect: start it again once
                    raise
        return chan, handshake(chan, token, conn.host)

    return open_


def _channel(conn: Any, port: int) -> Any:
    if hasattr(conn, "open_tunnel"):
        return conn.open_tunnel("127.0.0.1", port)
    if getattr(conn, "host", "") != "localhost":  # never this machine's port by mistake
        raise ProviderError(f"the connection to {conn.host} cannot open a tunnel to rhplan's "
                            "gateway; use a provider whose hosts are reached over SSH")
    sock = socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


_gateways: dict[tuple[Any, ...], Gateway] = {}
_gateways_lock = threading.Lock()


def gateway_for(key: tuple[Any, ...], label: str, opener: Opener) -> Gateway:
    """The process's one Gateway for a cluster (key names the cluster)."""
    with _gateways_lock:
        gw = _gateways.get(key)
        if gw is None:
            gw = _gateways[key] = Gateway(label, opener)
        return gw


def close_all() -> None:
    with _gateways_lock:
        gws = list(_gateways.values())
        _gateways.clear()
    for gw in gws:
        gw.close()


atexit.register(close_all)
