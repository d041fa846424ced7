"""Runs ON a cluster's head, in the Python that runs Ray there: the cluster's gateway
(and on each worker node that serves an env, a gateway of its own: see socket_only).

Callers anywhere reach a cluster's servlets through SSH alone: rhplan opens a
`direct-tcpip` channel on its SSH connection to this process, which listens on the
head's 127.0.0.1 only, and relays requests to the env servlets by name (through
each servlet's own socket, or as a Ray driver calling the named actor). Standard
library and Ray only, like
host_script.py (rhplan is not installed on hosts); the caller imports this file too,
for the frame format, so nothing at module level may need Ray.

    python gateway.py ensure ADDRESS TEMP_DIR TOKEN_PATH STATE_DIR
        start the gateway unless one answers already; print its {"port", "pid"}
    python gateway.py serve  ADDRESS TEMP_DIR TOKEN_PATH STATE_DIR
        the gateway itself (started detached by ensure)

TEMP_DIR (the cluster's Ray temp dir) is on the command line so that stopping the
cluster's Ray (by its temp dir) stops the gateway too; the gateway also exits by
itself when the Ray head stops answering.

The protocol, on one stream: frames of `>IBI` (request id, kind, body length) then
the body. Both sides prove they hold the cluster's token without sending it (so a
process squatting on a dead gateway's port learns nothing): the caller sends HELLO
{"protocol", "nonce"}; the gateway answers CHALLENGE {"nonce", "proof"} with proof =
HMAC(token, "gateway" + both nonces), which the caller checks; the caller sends AUTH
{"proof": HMAC(token, "caller" + both nonces)}; a wrong one closes the connection.
After WELCOME (JSON: ray and python versions), the caller sends REQUEST frames with
ids of its choosing, many at once: `>H` length + the servlet's name + a packed (op,
args) (see pack: a pickle whose large byte strings travel after it, out of band, so
no side copies or re-pickles them). Each gets OUT frames (1 byte stream, 1 stdout 2
stderr, then the bytes) while it runs and ends with one RESULT (packed) or ERROR
(pickled) frame. User objects stay cloudpickled bytes end to end: only the env's own
interpreter unpickles them, so the gateway needs none of their modules.

The fast path does not go through Ray: a servlet started by this rhplan listens on an
abstract UNIX socket of the head named after the cluster and the servlet
(servlet_socket; only processes of its own user are answered), and the gateway only
routes frames between callers and servlets, unchanged. A servlet without that socket
(started by an older rhplan) is called through Ray as before. The gateway listens
before it joins Ray, so a first caller does not wait for a Ray driver to start.
"""
from __future__ import annotations

import functools
import hmac
import json
import os
import pickle
import socket
import struct
import sys
import threading
import time
import uuid

if __package__:  # imported by the caller (transport.py), inside rhplan
    from . import servlet_wire as wire
else:  # run on a head: the copy manage.py uploaded beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import servlet_wire as wire  # type: ignore[no-redef]

# the shared parts, also under the names the caller and the tests use (gateway.pack...)
HEADER, OUT_OF_BAND, CHUNK = wire.HEADER, wire.OUT_OF_BAND, wire.CHUNK
pack, unpack, out_of_band = wire.pack, wire.unpack, wire.out_of_band
read_exact, read_frame, frame, FrameReader = (
    wire.read_exact, wire.read_frame, wire.frame, wire.FrameReader)
servlet_socket, describe_exception = wire.servlet_socket, wire.describe_exception
HELLO, WELCOME, REQUEST, OUT, RESULT, ERROR, CHALLENGE, AUTH = (
    wire.HELLO, wire.WELCOME, wire.REQUEST, wire.OUT, wire.RESULT, wire.ERROR, wire.CHALLENGE,
    wire.AUTH)

PROTOCOL = 2
NAMESPACE = "rhplan"
HANDSHAKE_TIMEOUT = 10.0
WORKERS = 64  # requests served at once through Ray (servlets without their own socket)
POLL = (0.002, 0.05)  # output is looked for this often while a call runs (min, max)
GCS_MISSES = 3  # the gateway exits after this many failed checks, 5 s apart
RAY_WAIT = 120.0  # a request that needs Ray waits this long for the gateway to join it


# -- frames (used by both sides) --------------------------------------------------------

def request_frame(req: int, name: str, op: str, args: tuple) -> list:
    """A REQUEST frame, as pieces: which servlet, then the packed (op, args). A small
    one is one piece (built with as little Python as can be: it is per call)."""
    raw = name.encode()
    for a in args:
        if isinstance(a, (bytes, bytearray, memoryview)) and len(a) >= OUT_OF_BAND:
            break
    else:  # the usual small request: no out-of-band buffer (count 0), one pickle
        meta = pickle.dumps((op, args), protocol=5)
        n = len(raw)
        return [b"".join((HEADER.pack(req, REQUEST, n + 6 + len(meta)), n.to_bytes(2, "big"),
                          raw, b"\0\0\0\0", meta))]
    bufs: list = []
    meta = pickle.dumps((op, out_of_band(args)), protocol=5, buffer_callback=bufs.append)
    views = [b.raw() for b in bufs]
    head = struct.pack(f">H{len(raw)}sI{len(views)}Q", len(raw), raw, len(views),
                       *(v.nbytes for v in views))
    size = len(head) + len(meta) + sum(v.nbytes for v in views)
    first = HEADER.pack(req, REQUEST, size) + head + meta
    return [first, *views] if views else [first]


def split_request(body) -> tuple[str, memoryview]:
    view = memoryview(body)
    n = struct.unpack_from(">H", view)[0]
    return bytes(view[2:2 + n]).decode(), view[2 + n:]


def frame_pieces(req: int, kind: int, pieces: list) -> list:
    size = sum(memoryview(p).nbytes for p in pieces)
    return [HEADER.pack(req, kind, size), *pieces]


def servlet_key(name: str, identity: dict | None) -> str:
    """What a caller names a servlet by in a REQUEST: its name, and when the caller knows
    it (from the state), the identity recorded when it started: only that actor (through
    Ray) or that process (on the servlet's socket) is trusted to answer."""
    if not identity:
        return name
    return "\0".join([name, str(identity.get("actor_id") or ""), str(identity.get("pid") or ""),
                      str(identity.get("start_ticks") or "")])


def parse_key(key: str) -> tuple[str, list[str]]:
    """servlet_key's name and identity fields (actor id, pid, start ticks; "" if unknown)."""
    name, *ident = key.split("\0")
    return name, (ident + ["", "", ""])[:3] if ident else []


def not_started_by_rhplan(name: str, what: str) -> PermissionError:
    """The one error a caller gets for an impostor (tests and client.py match on it)."""
    return PermissionError(f"servlet {name!r}: {what} is not the servlet rhplan started; "
                           "nothing was sent to it; run rhplan apply to restart the servlet")


def _peer_is(sock: socket.socket, pid: str, ticks: str) -> bool:
    """Whether the process listening at the other end of a UNIX socket is pid, started at
    ticks, and of this user (an abstract socket's name can be taken by anyone)."""
    creds = struct.Struct("3i")
    peer, uid, _ = creds.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                creds.size))
    return (uid == os.getuid() and str(peer) == pid
            and (not ticks or str(wire.process_start_ticks(peer)) == ticks))


def proof(token: bytes, who: str, caller_nonce: str, gateway_nonce: str) -> str:
    """What shows a side holds the token, for this one handshake."""
    msg = f"{who}:{caller_nonce}:{gateway_nonce}".encode()
    return hmac.new(token.strip(), msg, "sha256").hexdigest()


# -- the gateway (head side) --------------------------------------------------------

class _Peer:
    """One end the gateway sends frames to (a caller, or a servlet's socket)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.lock = threading.Lock()

    def send(self, pieces: list) -> None:
        if len(pieces) <= 2 and sum(len(p) for p in pieces) < OUT_OF_BAND:
            data = b"".join(pieces)  # a header and a small body: one write
            with self.lock:
                self.sock.sendall(data)
            return
        with self.lock:
            for p in wire.joined(pieces):
                self.sock.sendall(p)


class _ServletLink:
    """The gateway's one connection to a servlet's socket, shared by every caller:
    requests are renumbered on the way in, answers routed back by that number."""

    def __init__(self, gw: Gateway, name: str, sock: socket.socket):
        self.gw, self.name = gw, name
        self.peer = _Peer(sock)
        self.lock = threading.Lock()
        self.pending: dict[int, tuple[_Peer, int, str]] = {}
        self.next_id = 1
        self.dead = False
        threading.Thread(target=self._read, daemon=True,
                         name=f"rhplan-gw servlet {name}").start()

    def forward(self, caller: _Peer, req: int, payload, out: dict) -> bool:
        """Queue a caller's request for this servlet in out (sent by flush, with the
        others that arrived together); False if this link died first."""
        with self.lock:
            if self.dead:
                return False
            sid = self.next_id
            self.next_id = sid + 1 if sid < 0xFFFFFFFE else 1
            self.pending[sid] = (caller, req, self.name)
        out.setdefault(self, []).extend(frame_pieces(sid, REQUEST, [payload]))
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
        reader = FrameReader(self.peer.sock.recv, self.peer.sock.recv_into)
        out: dict[_Peer, list] = {}
        try:
            while True:
                sid, kind, body = reader.read()
                with self.lock:
                    if kind in (RESULT, ERROR):
                        to = self.pending.pop(sid, None)
                    else:
                        to = self.pending.get(sid)
                if to is not None:
                    out.setdefault(to[0], []).extend(frame_pieces(to[1], kind, [body]))
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
        self.gw.forget(self)
        try:
            self.peer.sock.close()
        except OSError:
            pass
        lost = ConnectionResetError(f"servlet {parse_key(self.name)[0]!r} stopped while "
                                    "answering; the "
                                    "request may or may not have run")
        body = pickle.dumps(_error(lost), protocol=5)
        for caller, req, _ in pending.values():
            try:
                caller.send([HEADER.pack(req, ERROR, len(body)), body])
            except OSError:
                pass


class Gateway:
    def __init__(self, address: str, token: bytes):
        self.address = address
        self.token = token
        self.ray = None
        self.ray_ready = threading.Event()
        self.ray_error = ""
        self.joining = False
        self.actors: dict[str, object] = {}
        self.links: dict[str, _ServletLink] = {}
        self.lock = threading.Lock()
        self.log_dir = ""
        self._pool = None
        # a worker node's gateway (manage.gateway_dir(root, node)): every servlet there
        # was started with its socket, and its Ray may be the dead node's, so it never
        # joins Ray (which would outlive the node's temp dir it is named by)
        self.socket_only = False

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
            if not _gcs_up(self.address):  # ray.init retries a dead address for minutes
                raise ConnectionError(f"Ray at {self.address} is not answering")
            import ray

            ray.init(address=self.address, namespace=NAMESPACE, logging_level="ERROR",
                     log_to_driver=False, configure_logging=False)
            self.ray = ray
        except BaseException as exc:  # noqa: BLE001 - told to each request that needs Ray
            self.ray_error = f"the gateway could not join Ray at {self.address}: {exc}"
        self.ray_ready.set()

    def _need_ray(self):
        self.join_ray()
        if not self.ray_ready.wait(RAY_WAIT):
            raise TimeoutError(f"the gateway did not join Ray at {self.address} within "
                               f"{RAY_WAIT:g} s")
        if self.ray is None:
            raise RuntimeError(self.ray_error)
        return self.ray

    # -- the fast path: the servlet's own socket
    def link(self, name: str) -> _ServletLink | None:
        with self.lock:
            link = self.links.get(name)
        if link is not None and not link.dead:
            return link
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        real, ident = parse_key(name)
        try:
            sock.connect(servlet_socket(self.address, real))
            if ident and ident[1] and not _peer_is(sock, ident[1], ident[2]):
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
            link = self.links[name] = _ServletLink(self, name, sock)
        return link

    def forget(self, link: _ServletLink) -> None:
        with self.lock:
            if self.links.get(link.name) is link:
                del self.links[link.name]

    # -- through Ray: servlets by name; one restarted (by apply) is found by name again
    def actor(self, name: str, fresh: bool = False):
        ray = self._need_ray()
        with self.lock:
            actor = None if fresh else self.actors.get(name)
        if actor is None:
            real, ident = parse_key(name)
            try:
                actor = ray.get_actor(real, namespace=NAMESPACE)
            except ValueError:
                raise LookupError(f"servlet {real!r} is not running; rhplan plan shows it "
                                  "as drift and rhplan apply starts it") from None
            if ident and actor._actor_id.hex() != ident[0]:
                raise not_started_by_rhplan(real, f"the actor answering to "
                                            f"{NAMESPACE}/{real} ({actor._actor_id.hex()})")
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
        ray = self.ray
        if log is None:
            return ray.get(ref)
        offset = 0
        poll = POLL[0]
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=poll)
                offset = self._forward(log, offset, send_out)
                if ready:
                    return ray.get(ref)
                poll = min(POLL[1], poll * 2)
        finally:
            self._forward(log, offset, send_out)
            try:
                os.unlink(log)
            except OSError:
                pass  # nothing was printed: the servlet made no file

    @staticmethod
    def _forward(log: str, offset: int, send_out) -> int:
        """Send the whole records written to log since offset; the new offset."""
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

    def handle(self, op: str, name: str, args: tuple, send_out):
        """One request through Ray."""
        if self.socket_only:
            real, _ = parse_key(name)
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

    # -- callers
    def serve_connection(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        caller = _Peer(sock)

        def send(req: int, kind: int, body: bytes) -> None:
            caller.send([HEADER.pack(req, kind, len(body)), body])

        out: dict[_ServletLink, list] = {}  # requests that arrived together, per servlet
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            _, kind, body = read_frame(sock.recv)
            hello = json.loads(body) if kind == HELLO else {}
            theirs, ours = str(hello.get("nonce", "")), os.urandom(16).hex()
            if len(theirs) < 32:
                return
            send(0, CHALLENGE, json.dumps({
                "nonce": ours, "proof": proof(self.token, "gateway", theirs, ours)}).encode())
            _, kind, body = read_frame(sock.recv)
            given = str((json.loads(body) if kind == AUTH else {}).get("proof", ""))
            if not hmac.compare_digest(given, proof(self.token, "caller", theirs, ours)):
                return  # no answer to a wrong token: the connection just closes
            send(0, WELCOME, json.dumps({
                "protocol": PROTOCOL, "ray": _ray_version(),
                "python": list(sys.version_info[:3]), "pid": os.getpid()}).encode())
            sock.settimeout(None)
            reader = FrameReader(sock.recv, sock.recv_into)
            while True:
                req, kind, body = reader.read()
                if kind == REQUEST:
                    name, payload = split_request(body)
                    link = self.link(name)
                    if link is None or not link.forward(caller, req, payload, out):
                        self.pool.submit(self.answer, req, name, payload, send)
                if out and not reader.buffered():  # forwarded together: one write
                    _ServletLink.flush(out)
        except (OSError, EOFError, ValueError, struct.error, UnicodeDecodeError):
            pass
        finally:
            _ServletLink.flush(out)  # what came before the caller went: sent, as it came
            sock.close()

    def answer(self, req: int, name: str, payload, send) -> None:
        """A request through Ray (the servlet has no socket of its own)."""
        def send_out(chunk: bytes) -> None:
            send(req, OUT, chunk)

        try:
            op, args = unpack(payload)
            result = self.handle(op, name, args, send_out)
            reply = (RESULT, b"".join(bytes(p) for p in pack(out_of_band(result))))
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the caller
            reply = (ERROR, pickle.dumps(_error(exc), protocol=5))
        try:
            send(req, *reply)
        except OSError:
            pass  # the caller is gone


@functools.cache
def _ray_version() -> str:
    """This Python's Ray version, without importing Ray (~0.5 s): from the name of its
    dist-info folder beside it (importlib.metadata scans every distribution, ~70 ms
    of a cold first handle)."""
    try:
        import glob
        from importlib.util import find_spec

        spec = find_spec("ray")
        where = os.path.dirname(list(spec.submodule_search_locations)[0])
        found = glob.glob(os.path.join(where, "ray-*.dist-info"))
        if len(found) == 1:
            return os.path.basename(found[0])[len("ray-"):-len(".dist-info")]
        from importlib.metadata import version
        return version("ray")
    except Exception:  # noqa: BLE001 - a Ray not installed as a distribution
        import ray
        return ray.__version__


def _error(exc: BaseException) -> tuple:
    """wire.error_parts of the servlet's own exception (e.g. KeyError from get) rather
    than Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    return wire.error_parts(cause if isinstance(cause, BaseException) else exc)


def _gcs_up(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return True
    except OSError:
        return False


def _write_json(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def serve(address: str, temp_dir: str, token_path: str, state_dir: str) -> int:
    del temp_dir  # on the command line only, so the cluster's Ray owns this process
    if not _gcs_up(address):
        print(f"Ray at {address} is not answering", file=sys.stderr)
        return 1
    with open(token_path, "rb") as fh:
        token = fh.read().strip()
    gw = Gateway(address, token)
    gw.socket_only = os.path.basename(os.path.normpath(state_dir)).startswith("node-")
    gw.log_dir = os.path.join(state_dir, "gateway-out")
    os.makedirs(gw.log_dir, mode=0o700, exist_ok=True)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))  # loopback only: callers come through SSH
    srv.listen(64)
    info = os.path.join(state_dir, "gateway.json")
    _write_json(info, {"port": srv.getsockname()[1], "pid": os.getpid(),
                       "protocol": PROTOCOL})

    def watch() -> None:
        misses = 0
        while misses < GCS_MISSES:
            time.sleep(5)
            misses = 0 if _gcs_up(address) else misses + 1
        try:
            with open(info) as fh:
                if json.load(fh).get("pid") == os.getpid():
                    os.unlink(info)
        except (OSError, ValueError):
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=gw.serve_connection, args=(conn,), daemon=True).start()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def _running(info_path: str) -> dict | None:
    try:
        with open(info_path) as fh:
            info = json.load(fh)
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if info.get("protocol") == PROTOCOL and _answers(int(info["port"])) else None


def ensure(address: str, temp_dir: str, token_path: str, state_dir: str,
           wait: float = 90.0) -> dict:
    """The running gateway, or a new one (one at a time: callers may race here)."""
    import fcntl
    import subprocess

    os.makedirs(state_dir, exist_ok=True)
    info_path = os.path.join(state_dir, "gateway.json")
    with open(os.path.join(state_dir, "gateway.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = _running(info_path)
        if info is not None:
            return info
        try:
            os.unlink(info_path)
        except FileNotFoundError:
            pass
        log = open(os.path.join(state_dir, "gateway.log"), "ab")
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "serve", address, temp_dir,
             token_path, state_dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.time() + wait
        while time.time() < deadline:
            info = _running(info_path)
            if info is not None:
                return info
            if proc.poll() is not None:
                break
            time.sleep(0.01)  # it listens within ~0.1 s: no Ray to join first
        if proc.poll() is None:
            proc.kill()
        with open(os.path.join(state_dir, "gateway.log"), "rb") as fh:
            tail = fh.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        return {"error": "the gateway did not start: "
                         + (tail[-1] if tail else f"no answer within {wait:.0f}s")}


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        sys.exit(serve(*args))
    result = ensure(*args)
    print(json.dumps(result))
    sys.exit(1 if "error" in result else 0)
