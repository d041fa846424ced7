"""One module per resource type: what it computes while planning, and how it is
created, read, updated and deleted."""
from __future__ import annotations

from rhplan.resources.base import ResourceType
from rhplan.resources.cluster import ClusterType
from rhplan.resources.env import EnvType
from rhplan.resources.package import PackageType
from rhplan.resources.secret import SecretType

TYPES: dict[str, ResourceType] = {
    "cluster": ClusterType(),
    "env": EnvType(),
    "package": PackageType(),
    "secret": SecretType(),
}

__all__ = ["TYPES", "ResourceType"]
