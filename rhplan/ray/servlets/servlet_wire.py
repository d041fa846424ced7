"""What the caller, the gateway (gateway.py) and the env servlets (servlet_env.py) must
agree on, in one file: frames, packing with out-of-band byte strings, a servlet's socket
name, and how an exception travels as plain data.

Standard library only: it runs on hosts, where rhplan is not installed. manage.py
uploads it beside gateway.py and host_script.py, which import it from there; a
servlet (servlet_env's EnvServlet, sent to the env's interpreter by value) carries it
along by value; the caller imports it as rhplan.ray.servlets.servlet_wire.
"""
from __future__ import annotations

import hashlib
import pickle
import struct
import sys
import traceback
import types

# The host-side modules of an env servlet (beside host_script.py, which starts it): what
# manage.py uploads to a host (their hash names the folder) and what host_script sends
# to the env's interpreter by value with the servlet (rhplan is not installed there).
SERVLET_MODULES = ("servlet_wire", "servlet_env", "servlet_code", "servlet_objects",
                   "servlet_output", "servlet_server")

HEADER_FMT = ">IBI"  # request id, kind, body length; then the body
HEADER = struct.Struct(HEADER_FMT)
HELLO, WELCOME, REQUEST, OUT, RESULT, ERROR, CHALLENGE, AUTH = range(1, 9)
OUT_OF_BAND = 64 * 1024  # byte strings this long travel after the pickle, not in it
CHUNK = 256 * 1024  # a reader takes this much at once: many small frames cost one read

# A call's target (besides a function or "module:qualname") naming an object the servlet
# keeps (remote objects, client.RemoteInstance): (NEW_INSTANCE, name, class or
# "module:Class") makes one and keeps it under name; (INSTANCE_METHOD, name, attribute)
# calls its method. Both travel as ordinary calls, so every route and every way a call's
# output and errors come back serve them unchanged.
NEW_INSTANCE = "rhplan:new"
INSTANCE_METHOD = "rhplan:method"


# -- frames: read by the caller, the gateway and the servlets -------------------------

def read_exact(recv, n: int) -> bytes:
    """n bytes from recv (a socket's or channel's), or EOFError."""
    if n == 0:
        return b""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        chunk = recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other side closed the connection")
        view[got:got + len(chunk)] = chunk
        got += len(chunk)
    return bytes(buf)


def read_frame(recv) -> tuple[int, int, bytes]:
    req, kind, length = HEADER.unpack(read_exact(recv, HEADER.size))
    return req, kind, read_exact(recv, length)


def frame(req: int, kind: int, body: bytes) -> bytes:
    return HEADER.pack(req, kind, len(body)) + body


class FrameReader:
    """Frames from a stream, read CHUNK at a time: frames that arrive together cost one
    read, and `buffered` tells whether another is already here (so a sender can wait
    for it and send both at once). A large body is read into its own buffer, once."""

    def __init__(self, recv, recv_into=None):
        # its own Struct: a servlet carries this class by value (cloudpickle), and a
        # module-level Struct cannot be pickled
        self.header = struct.Struct(HEADER_FMT)
        self.recv = recv
        self.recv_into = recv_into  # a socket's: a large body is read where it will lie
        self.buf = bytearray()
        self.pos = 0

    def _fill(self) -> None:
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        chunk = self.recv(CHUNK)
        if not chunk:
            raise EOFError("the other side closed the connection")
        self.buf += chunk

    def buffered(self) -> bool:
        have = len(self.buf) - self.pos
        if have < self.header.size:
            return False
        return have >= self.header.size + self.header.unpack_from(self.buf, self.pos)[2]

    def read(self) -> tuple[int, int, memoryview]:
        while len(self.buf) - self.pos < self.header.size:
            self._fill()
        req, kind, n = self.header.unpack_from(self.buf, self.pos)
        self.pos += self.header.size
        have = len(self.buf) - self.pos
        if have >= n:
            body = bytes(self.buf[self.pos:self.pos + n])
            self.pos += n
            return req, kind, memoryview(body)
        big = bytearray(n)
        view = memoryview(big)
        view[:have] = self.buf[self.pos:]
        self.buf.clear()
        self.pos = 0
        got = have
        while got < n:
            if self.recv_into is not None:
                size = self.recv_into(view[got:])
            else:
                # all that is left at once: paramiko's channel buffer moves what it
                # keeps to its front after every partial read (MBs, per read)
                chunk = self.recv(n - got)
                size = len(chunk)
                view[got:got + size] = chunk
            if not size:
                raise EOFError("the other side closed the connection")
            got += size
        return req, kind, view


class Outbox:
    """Frames queued by many threads, sent by one at a time: a thread that queues a frame
    while no thread is sending becomes the sender and sends, in one write, everything
    queued meanwhile (again, until nothing is left), so frames that come together share
    a write and, on SSH, a packet (whose cost is Python, and a wake-up of every process
    it passes). Small pieces are joined into one write; large ones (out-of-band
    buffers) are sent from where they lie. send(piece) does the writing (a socket's or
    a channel's sendall); if it fails, what was queued is dropped and the error raised
    to the sender."""

    def __init__(self, send):
        import threading

        self._send = send
        self.lock = threading.Lock()
        self.queued: list = []
        self.sending = False

    def put(self, pieces, hold: bool = False) -> bool:
        """Queue pieces; True when this thread is to send them (call drain): no other
        is sending, and the caller did not ask to hold them for a later flush."""
        with self.lock:
            self.queued.extend(pieces)
            if hold or self.sending:
                return False
            self.sending = True
            return True

    def flush(self) -> None:
        """Send what is queued, unless another thread is sending it already."""
        with self.lock:
            if self.sending or not self.queued:
                return
            self.sending = True
        self.drain()

    def drain(self) -> None:
        """Send until nothing is queued (only the thread put or flush chose)."""
        send = self._send
        try:
            while True:
                with self.lock:
                    batch, self.queued = self.queued, []
                    if not batch:
                        self.sending = False
                        return
                if len(batch) == 1 and len(batch[0]) < OUT_OF_BAND:
                    send(batch[0])  # one small frame: as it is
                    continue
                for piece in joined(batch):
                    send(piece)
        except BaseException:
            with self.lock:
                self.sending = False
                self.queued = []
            raise


def joined(pieces: list) -> list:
    """Small pieces joined into one (one send), large ones left where they lie."""
    out: list = []
    small: list = []
    for p in pieces:
        if memoryview(p).nbytes >= OUT_OF_BAND:
            if small:
                out.append(b"".join(small))
                small = []
            out.append(p)
        else:
            small.append(p)
    if small:
        out.append(b"".join(small))
    return out


# -- packing ---------------------------------------------------------------------------

def pack(obj) -> list:
    """obj as pieces to send one after the other: `>I` count, `>Q` lengths, a pickle,
    then the out-of-band buffers (byte strings wrapped in pickle.PickleBuffer, see
    out_of_band), which are sent from where they lie, never copied into the pickle."""
    bufs: list = []
    meta = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    if not bufs:  # the usual small answer: a count of 0, the pickle
        return [b"\0\0\0\0", meta]
    views = [b.raw() for b in bufs]
    head = struct.pack(f">I{len(views)}Q", len(views), *(v.nbytes for v in views))
    return [head, meta, *views]


def unpack(body, loads=pickle.loads):
    """What pack made, read with loads(data, buffers=...) (the caller passes one that
    accepts plain data only); out-of-band byte strings come back as memoryviews of body."""
    view = memoryview(body)
    n = struct.unpack_from(">I", view)[0]
    if not n:  # no out-of-band buffer: the pickle is the rest
        return loads(view[4:], buffers=())
    lens = struct.unpack_from(f">{n}Q", view, 4)
    end = len(view) - sum(lens)
    bufs, pos = [], end
    for size in lens:
        bufs.append(view[pos:pos + size])
        pos += size
    return loads(view[4 + 8 * n:end], buffers=bufs)


def _long_bytes(value) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview)) and len(value) >= OUT_OF_BAND


def out_of_band(value):
    """value with its long byte strings (at the top, or in a top-level tuple) marked to
    travel out of band by pack."""
    if _long_bytes(value):
        return pickle.PickleBuffer(value)
    if isinstance(value, tuple) and any(_long_bytes(v) for v in value):
        return tuple(pickle.PickleBuffer(v) if _long_bytes(v) else v for v in value)
    return value  # the usual small call: nothing to mark, nothing to copy


# -- where a servlet listens -----------------------------------------------------------

def servlet_socket(key: str, name: str) -> str:
    """The abstract UNIX socket servlet name of the cluster whose Ray address is key
    listens on (no file: nothing to clean up when the servlet dies, no path length
    limit; only processes of the servlet's own user are answered)."""
    digest = hashlib.sha256(f"{key}\0{name}".encode()).hexdigest()[:32]
    return f"\0rhplan-servlet-{digest}"


def process_start_ticks(pid: int) -> int | None:
    """When process pid started (clock ticks since boot, /proc/PID/stat field 22): with
    the pid, who a servlet is (a pid alone is reused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return int(stat[stat.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


# -- exceptions, as plain data ---------------------------------------------------------

def error_parts(exc: BaseException) -> tuple:
    """What an ERROR frame or a failed call carries: (describe_exception, type name,
    message, traceback text)."""
    return (describe_exception(exc), type(exc).__name__, str(exc),
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def describe_exception(exc: BaseException) -> bytes:
    """exc as plain data, never as its own pickle: the caller (which holds cloud keys)
    must not run whatever __reduce__ an exception of the env names. A pickle of a dict
    of str/int/float/bytes/None/tuple/list/dict only: the class's module and qualname,
    the cloudpickle tracker id of a class the caller sent by value, and the arguments
    and state of its __reduce__ when they are plain data and it rebuilds the class
    itself (as BaseException's does). The caller's side is remote_errors.py."""
    cls = type(exc)
    desc = {"module": getattr(cls, "__module__", ""), "qualname": cls.__qualname__,
            "tracker": None, "args": None, "state": None}
    # only where cloudpickle is loaded already: a class can have come by value only
    # through it, and importing Ray (~0.5 s) in a gateway that never needs it is waste
    cp = sys.modules.get("ray.cloudpickle.cloudpickle")
    try:
        desc["tracker"] = cp._DYNAMIC_CLASS_TRACKER_BY_CLASS.get(cls) if cp else None
    except Exception:  # noqa: BLE001 - Ray's cloudpickle changed: no id
        pass
    try:
        reduced = exc.__reduce_ex__(5)
        if (isinstance(reduced, tuple) and reduced[0] is cls and plain(reduced[1])
                and (len(reduced) < 3 or plain(reduced[2]))):
            desc["args"] = tuple(reduced[1])
            desc["state"] = reduced[2] if len(reduced) > 2 and isinstance(
                reduced[2], dict) else None
    except Exception:  # noqa: BLE001 - a __reduce__ that fails: the text still goes back
        pass
    return pickle.dumps(desc, protocol=5)


def plain(value, depth: int = 0) -> bool:
    """Whether value is plain data (what a pickle with no globals can hold)."""
    if value is None or type(value) in (bool, int, float, str, bytes):
        return True
    if depth > 20:
        return False
    if type(value) in (tuple, list):
        return all(plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(plain(k, depth + 1) and plain(v, depth + 1) for k, v in value.items())
    return False


# -- functions sent by value: when one pickle (or one rebuilt function) can serve again --

_ATOMS = (type(None), bool, int, float, complex, str, bytes, type(Ellipsis))
_BY_NAME = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)


def reuse_key(fn, cp, _seen=None):
    """A fingerprint of all that cloudpickle (module cp) captures when it sends function
    fn by value: its code, names, defaults, closure and the globals it uses, recursively
    for the functions it uses that travel by value too. Equal fingerprints, the same
    pickle: the caller pickles fn once and the servlet rebuilds it once, not per call.
    None when fn holds anything that can change without the fingerprint seeing it (a
    list, a dict, an instance, a class sent by value...): such a function is pickled and
    rebuilt every call, as before. The fingerprint holds what it names (code, modules,
    importable functions and classes: compared by identity), so none is freed and
    replaced by another at the same address meanwhile."""
    if not isinstance(fn, types.FunctionType) or _writes_shared_state(fn.__code__):
        return None
    seen = set() if _seen is None else _seen
    if id(fn) in seen:
        return ("again", fn)  # a function that refers to itself
    seen.add(id(fn))
    # the code by identity (equal code from another file pickles another file name)
    parts: list = [id(fn.__code__), fn.__code__, fn.__name__, fn.__qualname__, fn.__module__,
                   fn.__doc__]
    values: list = [*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).items(),
                    *fn.__dict__.items(), *getattr(fn, "__annotations__", {}).items()]
    for cell in fn.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            values.append(("empty cell",))
    names = fn.__globals__
    for name in cp._extract_code_globals(fn.__code__):
        values.append((name, names[name]) if name in names else ("absent", name))
    for value in values:
        k = _value_key(value, cp, seen)
        if k is None:
            return None
        parts.append(k)
    return tuple(parts)


_WRITES: dict = {}  # code -> whether it rebinds a global or a variable it closes over


def _writes_shared_state(code) -> bool:
    """Whether code (or code nested in it) rebinds a global or a variable of an enclosing
    function: one rebuilt copy, shared by calls, would then carry that from call to call."""
    found = _WRITES.get(code)
    if found is None:
        import dis

        free = set(code.co_freevars)
        todo, found = [code], False
        while todo and not found:
            c = todo.pop()
            todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
            found = any(i.opname in ("STORE_GLOBAL", "DELETE_GLOBAL") or (
                i.opname in ("STORE_DEREF", "DELETE_DEREF") and i.argval in free)
                for i in dis.get_instructions(c))
        if len(_WRITES) > 4096:
            _WRITES.clear()
        _WRITES[code] = found
    return found


def _value_key(value, cp, seen):
    if type(value) in _ATOMS:
        if type(value) in (float, complex):  # -0.0 == 0.0, yet they pickle apart
            return (type(value).__name__, repr(value))
        return (type(value).__name__, value)
    if type(value) in (tuple, frozenset):
        parts = tuple(_value_key(v, cp, seen) for v in value)
        return None if None in parts else (type(value).__name__, parts)
    if isinstance(value, _BY_NAME):
        try:
            if cp._should_pickle_by_reference(value):
                return ("by name", value)
        except Exception:  # noqa: BLE001 - cloudpickle cannot tell: no reuse
            return None
        if isinstance(value, types.FunctionType):
            return reuse_key(value, cp, seen)
    return None
