"""What the caller and a cluster's gateway agree on: the gateway's protocol (frames,
the handshake's proof, how a request names its servlet), imported by the caller
(transport.py, link.py, gateway_open.py, as `proto`) and by the gateway's own modules
on the head. Standard library only, like everything uploaded to the hosts (rhplan is
not installed there): nothing at module level may need Ray.

The gateway runs ON a cluster's head, in the Python that runs Ray there (and on each
worker node that serves an env, a gateway of its own): gateway_main.py starts it,
gateway_server.py serves its callers, gateway_links.py relays to the servlets' own
sockets, gateway_ray.py reaches servlets through Ray. gateway_start.py uploads them
(with servlet_wire.py and output_tail.py) into one folder named by their hash.

Callers anywhere reach a cluster's servlets through SSH alone: rhplan opens a
`direct-tcpip` channel on its SSH connection to the gateway, which listens on the
head's 127.0.0.1 only, and relays requests to the env servlets by name (through
each servlet's own socket, or as a Ray driver calling the named actor).

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

import hmac
import pickle
import struct

if __package__:  # imported by the caller (transport.py), inside rhplan
    from . import servlet_wire as wire
else:  # on a node: beside the gateway's other files (gateway_main.py put them on the path)
    import servlet_wire as wire  # type: ignore[no-redef]

# what this module's request frames are built from (everything else of the wire is
# servlet_wire's, imported from there by the caller, the gateway and the tests)
HEADER, OUT_OF_BAND, REQUEST = wire.HEADER, wire.OUT_OF_BAND, wire.REQUEST
out_of_band = wire.out_of_band

PROTOCOL = 2
NAMESPACE = "rhplan"


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


def proof(token: bytes, who: str, caller_nonce: str, gateway_nonce: str) -> str:
    """What shows a side holds the token, for this one handshake."""
    msg = f"{who}:{caller_nonce}:{gateway_nonce}".encode()
    return hmac.new(token.strip(), msg, "sha256").hexdigest()


def error_body(exc: BaseException) -> bytes:
    """An ERROR frame's body: wire.error_parts of the servlet's own exception (e.g.
    KeyError from get) rather than Ray's wrapper."""
    cause = getattr(exc, "cause", None)
    parts = wire.error_parts(cause if isinstance(cause, BaseException) else exc)
    return pickle.dumps(parts, protocol=5)
