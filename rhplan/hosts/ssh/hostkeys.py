"""Host keys are never accepted silently: with a known_hosts file the key must be in
it; with `published` fingerprints (a cloud's console output lists them) the key must
be one of them, checked during the key exchange, before any login; otherwise the first
key seen is trusted and exposed as a fingerprint ("SHA256:...", as OpenSSH prints it)
for the caller to record, and a recorded fingerprint that no longer matches is refused.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Any

from rhplan.errors import ProviderError
from rhplan.hosts.ssh._paramiko import paramiko


def fingerprint_of(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko key: 'SHA256:<base64, no padding>'."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def md5_fingerprint_of(key: Any) -> str:
    """The older form ssh-keygen printed (and old cloud-init images still do):
    'MD5:aa:bb:...'."""
    digest = hashlib.md5(key.asbytes(), usedforsecurity=False).hexdigest()
    return "MD5:" + ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def published_match(key: Any, published: frozenset[str]) -> bool:
    return fingerprint_of(key) in published or md5_fingerprint_of(key) in published


class HostKeyChanged(Exception):
    def __init__(self, expected: str, got: str):
        super().__init__(f"expected {expected}, got {got}")
        self.expected = expected
        self.got = got


class HostKeyUnknown(Exception):
    def __init__(self, got: str):
        super().__init__(got)
        self.got = got


class HostKeyNotPublished(Exception):
    def __init__(self, got: str):
        super().__init__(got)
        self.got = got


if paramiko is not None:

    class _FingerprintPolicy(paramiko.MissingHostKeyPolicy):
        """Trust on first use: accept any key when nothing was recorded, else
        only the recorded fingerprint. Only used without a known_hosts file."""

        def __init__(self, expected: str | None, published: frozenset[str] | None = None):
            self.expected = expected
            self.published = published

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            got = fingerprint_of(key)
            if self.expected is not None and got != self.expected:
                raise HostKeyChanged(self.expected, got)
            if self.published is not None and not published_match(key, self.published):
                raise HostKeyNotPublished(got)

    class _RejectUnknown(paramiko.RejectPolicy):
        """paramiko's RejectPolicy, raising something we can tell apart."""

        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise HostKeyUnknown(fingerprint_of(key))


def checking_client(known_hosts: str | None, expected: str | None,
                    published: frozenset[str] | None, where: str) -> Any:
    """A client that checks host keys: against known_hosts if given (only that file:
    never the user's ~/.ssh/known_hosts behind the caller's back), else the expected
    fingerprint (trust on first use when there is none), else the published ones."""
    client = paramiko.SSHClient()
    if known_hosts is None:
        # published fingerprints matter until a key is verified (then it is expected)
        client.set_missing_host_key_policy(
            _FingerprintPolicy(expected, published if expected is None else None))
        return client
    try:
        client.load_host_keys(known_hosts)
    except FileNotFoundError:
        raise ProviderError(
            f"known_hosts file {known_hosts} does not exist (for {where}); "
            "fix the path or create it with ssh-keyscan"
        ) from None
    except (OSError, paramiko.SSHException) as exc:
        raise ProviderError(
            f"cannot read known_hosts file {known_hosts} (for {where}): {exc}"
        ) from None
    client.set_missing_host_key_policy(_RejectUnknown())
    return client


def changed_error(where: str, expected: str, got: str) -> ProviderError:
    return ProviderError(
        f"host key of {where} changed (expected {expected}, got {got}); if the host "
        "was rebuilt on purpose, update known_hosts / remove its recorded fingerprint "
        "from the state; otherwise someone may be intercepting the connection"
    )


def not_published_error(where: str, got: str, published: frozenset[str] | None,
                        published_by: str) -> ProviderError:
    listed = ", ".join(sorted(published or ())) or "none"
    return ProviderError(
        f"host key of {where} ({got}) is not one of those {published_by} "
        f"lists ({listed}); someone may be intercepting the connection, or the "
        "instance was rebuilt: nothing was recorded and no login was tried"
    )
