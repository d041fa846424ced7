"""An instance's SSH host keys as EC2's console output shows them.

On first boot cloud-init prints the new host keys to the serial console, which only
the account can read (GetConsoleOutput), so they are a way to know the key before the
first SSH connection instead of trusting whatever answers:

    ec2: #############################################################
    ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
    ec2: 256 SHA256:0YnrbQ1s3Hc... root@ip-172-31-5-10 (ED25519)
    ec2: -----END SSH HOST KEY FINGERPRINTS-----
    ec2: #############################################################
    -----BEGIN SSH HOST KEY KEYS-----
    ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... root@ip-172-31-5-10
    -----END SSH HOST KEY KEYS-----

(the `ec2:` prefix is cloud-init's logger tag; lines may also carry kernel timestamps or
syslog prefixes). Fingerprints are read in OpenSSH's SHA256 form, or the MD5 form older
images print; the keys block adds the SHA256 fingerprint of each full key. Anything
outside the blocks is ignored, so boot noise cannot add a fingerprint.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re

FINGERPRINTS = ("-----BEGIN SSH HOST KEY FINGERPRINTS-----",
                "-----END SSH HOST KEY FINGERPRINTS-----")
KEYS = ("-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----")

_SHA256 = re.compile(r"(?<![A-Za-z0-9+/])SHA256:([A-Za-z0-9+/]{43})(?![A-Za-z0-9+/])")
_MD5 = re.compile(r"(?<![0-9a-fA-F:])(?:MD5:)?((?:[0-9a-f]{2}:){15}[0-9a-f]{2})(?![0-9a-f:])")
_KEY = re.compile(r"(?<!\S)((?:ssh|ecdsa|sk)-[a-z0-9@.-]+) ([A-Za-z0-9+/]+={0,2})(?!\S)")


def _blocks(text: str, begin: str, end: str) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if begin in line:
            current = []
        elif end in line:
            if current is not None:
                out.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return out  # a block without its end line (output cut short) is not trusted


def host_key_fingerprints(text: str) -> frozenset[str]:
    """Every host key fingerprint the console output publishes: 'SHA256:...' (as
    OpenSSH prints it) or 'MD5:aa:bb:...'; empty when it shows none."""
    found: set[str] = set()
    for block in _blocks(text, *FINGERPRINTS):
        for line in block:
            found.update(f"SHA256:{m}" for m in _SHA256.findall(line))
            found.update(f"MD5:{m}" for m in _MD5.findall(line))
    for block in _blocks(text, *KEYS):
        for line in block:
            for _kind, blob in _KEY.findall(line):
                try:
                    raw = base64.b64decode(blob, validate=True)
                except (binascii.Error, ValueError):
                    continue
                digest = base64.b64encode(hashlib.sha256(raw).digest()).decode()
                found.add("SHA256:" + digest.rstrip("="))
    return frozenset(found)
