"""fakecloud's settings beside the core's cluster settings: the id of its machine,
known once made. It takes no provider block (rhplan/config/provider_schema.py reads
this file without importing the package)."""
from __future__ import annotations

from rhplan.plugin import Attr

CLUSTER = (
    Attr("instance_ids", "list(string)", computed=True),
)
