"""paramiko, imported once for the package (None when the "ssh" extra is missing), and
the transport rhplan uses."""
from __future__ import annotations

import logging

try:
    import paramiko
except ImportError:  # pragma: no cover - the "ssh" extra is not installed
    paramiko = None

# paramiko logs connection failures with tracebacks at ERROR level; without a
# handler Python's last-resort handler would print them under our one-line
# error. Applications that configure logging still see them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

if paramiko is not None:
    class Transport(paramiko.Transport):
        """paramiko's transport, AES-GCM first: one C call per packet where its default
        (aes128-ctr, then a separate HMAC) costs ~30% more of the caller's CPU per
        packet (docs/remote.md: 10 MB sent 30 -> 21 ms of CPU, a small round trip
        117 -> 88 us). A server without GCM gets paramiko's usual order."""

        _preferred_ciphers = tuple(sorted(paramiko.Transport._preferred_ciphers,
                                          key=lambda c: "-gcm@" not in c))
