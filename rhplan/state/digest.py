"""Keyed digests of secret values: what the state and saved plans keep instead of them.

A plain sha256 of a short value ("hunter2") is found again by hashing guesses, so
the state and saved plans keep an HMAC-SHA256 under a key that lives outside the
state, beside it in its backend (a file under `.rhplan/` next to a local state, an
object next to an S3 one). A reader of the state alone learns only whether a value
changed. Each digest names its key by a short id, so a plan can tell "the value
changed" from "the key changed (it was lost or replaced)".

States written before keyed digests hold plain sha256 ones (`legacy_hex`); the
planner replaces those in place when the plain digest still matches the value.

A lost key is made again on first use. Digests made with the old one can then not be
compared, so every secret is planned as written again, saying so, and the servlets
using them restart: the plan converges instead of refusing every run until a key that
may be gone for good is found. The key belongs to the state: moving a state to another
backend (state pull / push) means copying its key too (.rhplan/digest.key beside a
local state, KEY.digest-key beside an S3 one).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rhplan.errors import StateError

if TYPE_CHECKING:
    from rhplan.provider import RunContext

PREFIX = "hmac-sha256:"
LEGACY_PREFIX = "sha256:"  # how states before keyed digests marked a sensitive attribute
KEY_BYTES = 32
_KEY_ID_CHARS = 8
# where a RunContext keeps its key: with the other per-run reads (it may come from S3)
CACHE_KEY = ("digest-key",)


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> bytes:
    """A key as stored: hex text and a newline, so it survives copying by hand."""
    return key.hex().encode("ascii") + b"\n"


def decode_key(raw: bytes, where: str) -> bytes:
    """A stored key, or a one-line StateError naming `where` and what to do."""
    text = raw.decode("ascii", errors="replace").strip()
    if len(text) != 2 * KEY_BYTES or any(c not in string.hexdigits for c in text):
        raise StateError(
            f"{where}: the digest key of this state is damaged (expected {2 * KEY_BYTES} hex "
            "digits); restore it, or delete it to make a new one (every secret is then "
            "planned as written again, and the servlets using it restart)")
    return bytes.fromhex(text)


def key_id(key: bytes) -> str:
    """A short name of a key, not of any value: which key a digest was made with."""
    return hashlib.sha256(b"rhplan digest key id\0" + key).hexdigest()[:_KEY_ID_CHARS]


def _canonical(value: Any) -> bytes:
    # the same text the plain digests were taken of, so an old one can be recognised
    return json.dumps(value, sort_keys=True).encode()


def keyed(key: bytes, value: Any) -> str:
    """hmac-sha256:KEYID:HEX of a JSON value."""
    mac = hmac.new(key, _canonical(value), hashlib.sha256).hexdigest()
    return f"{PREFIX}{key_id(key)}:{mac}"


def legacy_hex(value: Any) -> str:
    """The plain sha256 that states before keyed digests recorded."""
    return hashlib.sha256(_canonical(value)).hexdigest()


def is_keyed(text: Any) -> bool:
    if not isinstance(text, str) or not text.startswith(PREFIX):
        return False
    kid, _, mac = text[len(PREFIX):].partition(":")
    return len(kid) == _KEY_ID_CHARS and len(mac) == 64


def key_id_of(text: Any) -> str | None:
    return text[len(PREFIX):].partition(":")[0] if is_keyed(text) else None


class _LazyKey:
    """A key fetched on first use, once, from any thread."""

    def __init__(self, source: Callable[[], bytes]):
        self.source = source
        self._lock = threading.Lock()
        self._key: bytes | None = None

    def get(self) -> bytes:
        with self._lock:
            if self._key is None:
                self._key = self.source()
            return self._key


def use_key(ctx: RunContext, source: Callable[[], bytes]) -> None:
    """Digests made with ctx use the key source() gives (fetched when first needed)."""
    if not isinstance(ctx.cache.get(CACHE_KEY), _LazyKey) or \
            ctx.cache[CACHE_KEY].source != source:
        ctx.cache[CACHE_KEY] = _LazyKey(source)


def ctx_key(ctx: RunContext) -> bytes:
    """ctx's key. Without one set (validate, the planner used as a library) a key of this
    run only: its digests are compared with nothing recorded."""
    return ctx.cache.setdefault(CACHE_KEY, _LazyKey(new_key)).get()  # type: ignore[no-any-return]


def digest(ctx: RunContext, value: Any) -> str:
    return keyed(ctx_key(ctx), value)
