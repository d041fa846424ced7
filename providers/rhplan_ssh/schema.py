"""The ssh provider's settings: its cluster blocks' ssh { ... } block (hosts are the
core's `ips`); its provider "ssh" { } block takes none. rhplan reads this file alone,
without importing the package (paramiko), while decoding a configuration
(rhplan/config/provider_schema.py)."""
from __future__ import annotations

from rhplan.plugin import Attr, BlockSchema

CLUSTER = (
    Attr("host_keys", "string", computed=True,
         doc="how new hosts' SSH host keys are checked"),
)

CLUSTER_BLOCKS = {
    "ssh": BlockSchema({a.name: a for a in (
        Attr("user", "string"),
        Attr("private_key", "string"),
        Attr("port", "number", default=22),
        Attr("password", "string", sensitive=True),
        Attr("known_hosts", "string"),
        Attr("proxy_command", "string"),
    )}),
}

PROVIDER = ()
