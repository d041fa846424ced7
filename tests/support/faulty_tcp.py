"""A fault-injecting TCP proxy in front of a real server (a test sshd on 127.0.0.1).

    proxy = FaultyTCP(server.port).start()     # rhplan connects to proxy.port
    proxy.reset_now()                          # RST every open connection (both sides)
    proxy.reset_after(4096)                    # RST the next connection after 4 KiB down
    proxy.hang()                               # stop forwarding, keep the sockets open
    proxy.heal()                               # forward again (new connections)

SSH is encrypted, so faults are not triggered by content: a test triggers them on a
condition it can see (a file a remote command made, a byte count). A reset is a real
RST (SO_LINGER 0) to both peers, what a crashed middlebox or a rebooted NAT sends. A
hang is a black hole: the proxy keeps both sockets open and drops what arrives in
either direction, so neither peer hears anything, not even a close, until a peer closes
its own side. What the proxy did is counted, for the figures a test prints.
"""
from __future__ import annotations

import select
import socket
import struct
import threading
from dataclasses import dataclass, field


def _rst(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket
    index: int  # the how-manieth connection since start()
    down: int = 0  # bytes forwarded upstream -> client
    up: int = 0  # bytes forwarded client -> upstream
    reset_at: int | None = None  # reset once `down` reaches this
    hung: bool = False
    closed: bool = False


@dataclass
class FaultyTCP:
    upstream_port: int
    upstream_host: str = "127.0.0.1"
    connections: int = 0
    resets: int = 0
    hangs: int = 0
    _pairs: list[_Pair] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _hang_new: bool = False
    _reset_next: int | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FaultyTCP:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="faulty-tcp accept", daemon=True).start()
        return self

    # -- faults ---------------------------------------------------------------

    def reset_now(self) -> int:
        """RST every open connection; returns how many."""
        with self._lock:
            pairs = [p for p in self._pairs if not p.closed]
            for p in pairs:
                self._close(p, reset=True)
        return len(pairs)

    def reset_after(self, down_bytes: int) -> None:
        """The next connection is reset once it has carried down_bytes to the client."""
        with self._lock:
            self._reset_next = down_bytes

    def hang(self) -> None:
        """Black-hole every open connection and every new one."""
        with self._lock:
            self._hang_new = True
            for p in self._pairs:
                if not p.closed and not p.hung:
                    p.hung = True
                    self.hangs += 1

    def heal(self) -> None:
        """New connections are forwarded again (hung ones stay hung: their peers have
        lost them already)."""
        with self._lock:
            self._hang_new = False
            self._reset_next = None

    def bytes_down(self, since: int = 0) -> list[int]:
        """Bytes each connection carried to the client, for connections since index."""
        with self._lock:
            return [p.down for p in self._pairs if p.index >= since]

    def open_connections(self) -> int:
        with self._lock:
            return sum(not p.closed for p in self._pairs)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for p in self._pairs:
                if not p.closed:
                    self._close(p, reset=False)

    # -- forwarding -----------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.upstream_host, self.upstream_port),
                                                    timeout=10)
            except OSError:
                _rst(client)
                continue
            with self._lock:
                pair = _Pair(client, upstream, self.connections)
                self.connections += 1
                if self._hang_new:
                    pair.hung = True
                    self.hangs += 1
                if self._reset_next is not None:
                    pair.reset_at, self._reset_next = self._reset_next, None
                self._pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True,
                             name=f"faulty-tcp {pair.index}").start()

    def _close(self, pair: _Pair, reset: bool) -> None:
        """Hold _lock."""
        if pair.closed:
            return
        pair.closed = True
        if reset:
            self.resets += 1
        for s in (pair.client, pair.upstream):
            if reset:
                _rst(s)
            else:
                s.close()

    def _pump(self, pair: _Pair) -> None:
        socks = [pair.client, pair.upstream]
        while not pair.closed:
            try:
                readable, _, _ = select.select(socks, [], [], 0.05)
            except (OSError, ValueError):
                break  # closed by another thread
            for src in readable:
                dst = pair.upstream if src is pair.client else pair.client
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                with self._lock:
                    if pair.closed:
                        return
                    if not data:  # a peer closed its side: close the other one too
                        self._close(pair, reset=False)
                        return
                    if pair.hung:
                        continue  # the black hole
                    if src is pair.upstream and pair.reset_at is not None:
                        room = pair.reset_at - pair.down
                        if len(data) >= room:
                            # forward up to the kill point, then reset both sides
                            try:
                                dst.sendall(data[:max(room, 0)])
                            except OSError:
                                pass
                            pair.down += max(room, 0)
                            self._close(pair, reset=True)
                            return
                try:
                    dst.sendall(data)
                except OSError:
                    with self._lock:
                        self._close(pair, reset=False)
                    return
                with self._lock:
                    if src is pair.client:
                        pair.up += len(data)
                    else:
                        pair.down += len(data)
