"""The gateway's fast path, on the head: each servlet started by this rhplan listens on
an abstract UNIX socket (servlet_socket), and the gateway keeps one connection to it,
shared by every caller, routing frames between them unchanged. Only the servlet
process recorded in the state (its pid and start time, when the caller names them) is
trusted at the other end. Standard library only.
"""
from __future__ import annotations

import os
import socket
import struct
import threading

if __package__:  # imported inside rhplan (tests, the caller's checks)
    from . import gateway as proto
    from . import servlet_wire as wire
else:  # on a node, beside gateway_main.py
    import gateway as proto  # type: ignore[no-redef]
    import servlet_wire as wire  # type: ignore[no-redef]


class Peer:
    """One end the gateway sends frames to (a caller, or a servlet's socket)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, pieces: list) -> None:
        if len(pieces) <= 2 and sum(len(p) for p in pieces) < wire.OUT_OF_BAND:
            data = b"".join(pieces)  # a header and a small body: one write
            with self.lock:
                self.sock.sendall(data)
            return
        with self.lock:
            for p in proto.wire.joined(pieces):
                self.sock.sendall(p)



class ServletLink:
    """The gateway's one connection to a servlet's socket, shared by every caller:
    requests are renumbered on the way in, answers routed back by that number."""

    def __init__(self, owner: SocketRoute, name: str, sock: socket.socket):
        self.owner, self.name = owner, name
        self.peer = Peer(sock)
        self.lock = threading.Lock()
        self.pending: dict[int, tuple[Peer, int, str]] = {}
        self.next_id = 1
        self.dead = False
        threading.Thread(target=self._read, daemon=True,
                         name=f"rhplan-gw servlet {name}").start()

    def forward(self, caller: Peer, req: int, payload, out: dict) -> bool:
        """Queue a caller's request for this servlet in out (sent by flush, with the
        others that arrived together); False if this link died first."""
        with self.lock:
            if self.dead:
                return False
            sid = self.next_id
            self.next_id = sid + 1 if sid < 0xFFFFFFFE else 1
            self.pending[sid] = (caller, req, self.name)
        out.setdefault(self, []).extend(proto.frame_pieces(sid, wire.REQUEST, [payload]))
        return True

    @staticmethod
    def flush(out: dict) -> None:
        """Send each servlet the requests queued for it, in one write where they fit."""
        for link, pieces in out.items():
            try:
                link.peer.send(pieces)
            except OSError:
                link._close()  # in-flight requests (these too) get an error answer
        out.clear()

    def _read(self) -> None:
        reader = wire.FrameReader(self.peer.sock.recv, self.peer.sock.recv_into)
        out: dict[Peer, list] = {}
        try:
            while True:
                sid, kind, body = reader.read()
                with self.lock:
                    if kind in (wire.RESULT, wire.ERROR):
                        to = self.pending.pop(sid, None)
                    else:
                        to = self.pending.get(sid)
                if to is not None:
                    out.setdefault(to[0], []).extend(proto.frame_pieces(to[1], kind, [body]))
                if not reader.buffered():  # send what came together, together
                    for caller, pieces in out.items():
                        try:
                            caller.send(pieces)
                        except OSError:
                            pass  # that caller is gone
                    out.clear()
        except (OSError, EOFError, ValueError, struct.error):
            pass
        self._close()

    def _close(self) -> None:
        with self.lock:
            self.dead = True
            pending, self.pending = self.pending, {}
        self.owner.forget(self)
        try:
            self.peer.sock.close()
        except OSError:
            pass
        lost = ConnectionResetError(f"servlet {proto.parse_key(self.name)[0]!r} stopped while "
                                    "answering; the "
                                    "request may or may not have run")
        body = proto.error_body(lost)
        for caller, req, _ in pending.values():
            try:
                caller.send([wire.HEADER.pack(req, wire.ERROR, len(body)), body])
            except OSError:
                pass


def peer_is(sock: socket.socket, pid: str, ticks: str) -> bool:
    """Whether the process listening at the other end of a UNIX socket is pid, started at
    ticks, and of this user (an abstract socket's name can be taken by anyone)."""
    creds = struct.Struct("3i")
    peer, uid, _ = creds.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                creds.size))
    return (uid == os.getuid() and str(peer) == pid
            and (not ticks or str(proto.wire.process_start_ticks(peer)) == ticks))


class SocketRoute:
    """The servlets' sockets of one cluster (address names them), by servlet key."""

    def __init__(self, address: str):
        self.address = address
        self.links: dict[str, ServletLink] = {}
        self.lock = threading.Lock()

    def link(self, name: str) -> ServletLink | None:
        """The shared connection to the named servlet's socket; None when it has none
        (or another process holds it): the request then goes through Ray."""
        with self.lock:
            link = self.links.get(name)
        if link is not None and not link.dead:
            return link
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        real, ident = proto.parse_key(name)
        try:
            sock.connect(wire.servlet_socket(self.address, real))
            if ident and ident[1] and not peer_is(sock, ident[1], ident[2]):
                raise OSError("not the recorded servlet process")
        except OSError:
            sock.close()
            # not running, started by an older rhplan, or someone else holds its socket:
            # through Ray, where the actor's id is checked
            return None
        with self.lock:
            link = self.links.get(name)
            if link is not None and not link.dead:  # another caller connected first
                sock.close()
                return link
            link = self.links[name] = ServletLink(self, name, sock)
        return link

    def forget(self, link: ServletLink) -> None:
        """A link that died: the next request connects again."""
        with self.lock:
            if self.links.get(link.name) is link:
                del self.links[link.name]
