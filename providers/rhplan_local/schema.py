"""The local provider's settings: none beyond the core's cluster settings, and an
empty provider "local" { } block (rhplan/config/provider_schema.py reads this file)."""
from __future__ import annotations

CLUSTER = ()
PROVIDER = ()
