"""One live channel to a cluster's gateway, as the caller holds it (transport.py's
Gateway opens it and sends requests on it).

Link: the channel, the requests waiting for answers, and the outbox: a thread with a
frame to send sends what other threads queued meanwhile in the same write, so under
concurrency requests share SSH packets. Inbox: on an SSH channel, paramiko's transport
thread hands each answer frame straight to the request waiting for it (no reader thread
of ours in between).
"""
from __future__ import annotations

import queue
import threading
from typing import Any

from rhplan.ray.servlets import servlet_wire as wire
from rhplan.ray.servlets.servlet_wire import Outbox

LOST = -1  # a frame kind of this side only: the connection died
# the first thread to send waits up to this long for threads just handed their answers
# to queue their next requests: one SSH packet for all (only while others are on the way).
# 8 threads on one handle (bench/remote_calls.py, same cluster, load 4-5): 0.2 ms let
# ~5 requests share a packet, 0.6 ms ~7 (CPU per call, all processes, 157-172 -> 128-134
# us); 1 and 2 ms gained nothing more. A lone thread never waits.
LINGER = 0.0006


class Link:
    """One live channel to the gateway: its outbox and the requests waiting."""

    def __init__(self, chan: Any, welcome: dict[str, Any]):
        self.chan = chan
        self.welcome = welcome
        self.pending: dict[int, queue.SimpleQueue[tuple[int, Any]]] = {}
        self.lock = threading.Lock()
        self.dead: str | None = None
        # paramiko's sendall keeps what is left with s = s[sent:]: a memoryview makes
        # that free (bytes recopied the rest: quadratic in a large frame)
        self.outbox = Outbox(lambda piece: chan.sendall(memoryview(piece).cast("B")))
        self.woken = 0  # threads handed their answer that have not sent again since
        # a lingering sender blocks on gate (held once by itself), which the last of the
        # woken threads to queue releases: one wake-up instead of spinning on the GIL
        self.gate = threading.Lock()
        self.lingering = False

    def send(self, pieces: list[Any]) -> None:
        """Queue a frame's pieces; the first thread to find no sender at work sends
        everything queued meanwhile, together (servlet_wire.Outbox): under concurrency,
        several requests share one SSH packet (paramiko's per-packet cost is Python, and
        each packet costs sshd, the gateway and the servlet a wake-up) instead of one
        each. While threads that were just handed their answers have not sent again
        (they are on their way to their next request, or done), the sender waits for
        them, LINGER at most. A lone thread never waits: its own send is the one it was
        woken for."""
        mine = self.outbox.put(pieces)
        with self.lock:  # after the put: a lingering sender woken at 0 finds it queued
            if self.woken > 0:
                self.woken -= 1
                if self.woken == 0 and self.lingering:
                    self.lingering = False
                    self.gate.release()
        if not mine:
            return
        try:
            if self.woken > 0:
                self._linger()
            self.outbox.drain()
        except BaseException as exc:
            self.fail_all(str(exc) or type(exc).__name__)

    def _linger(self) -> None:
        """Wait until the woken threads have all queued, LINGER at most. Blocked, not
        polling: a sender that spun on time.sleep(0) took the GIL back between every
        two of them (8 threads, alternated on one cluster: the caller's CPU per call
        was lower in 13 of 16 pairs; see docs/remote.md, run 13)."""
        gate = self.gate
        with self.lock:
            if self.woken <= 0:
                return
            gate.acquire()  # free: only the Outbox's one sender lingers, and it leaves
            self.lingering = True  # it free on every way out (below)
        got = False
        try:
            got = gate.acquire(timeout=LINGER)  # released by the last of them
        finally:
            with self.lock:
                if self.lingering:  # none did: those not here yet are not coming soon
                    self.lingering = False
                    self.woken = 0
                    gate.release()
                elif got:
                    gate.release()

    def fail_all(self, reason: str) -> None:
        with self.lock:
            self.dead = self.dead or reason
            waiting = list(self.pending.values())
        for q in waiting:
            q.put((LOST, self.dead))


class Inbox:
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
    def install(link: Link) -> None:
        inbox = Inbox(link)
        chan = link.chan
        with inbox.lock:  # what the old buffer still holds goes first
            old, chan.in_buffer = chan.in_buffer, inbox
            left = old.empty() if len(old) else b""
            if left:
                inbox._take(left)

    def __init__(self, link: Link):
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
        pos, end, size = 0, len(buf), wire.HEADER.size
        while end - pos >= size:
            req, kind, n = wire.HEADER.unpack_from(buf, pos)
            if end - pos - size >= n:
                self._hand(req, kind, memoryview(bytes(buf[pos + size:pos + size + n])))
                pos += size + n
                continue
            if n >= wire.OUT_OF_BAND:  # a large body: gathered where it will lie, once
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
            if q is not None and kind != wire.OUT:  # its thread will likely send again
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
