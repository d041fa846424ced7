"""Recorded state: the model and where it is stored."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rhplan.state.backend import Backend
from rhplan.state.local import LocalBackend
from rhplan.state.lockinfo import LockInfo
from rhplan.state.model import ResourceState, State

if TYPE_CHECKING:
    from rhplan.state.s3 import S3Backend

__all__ = ["Backend", "LocalBackend", "LockInfo", "ResourceState", "S3Backend", "State"]


def __getattr__(name: str) -> Any:
    # boto3 takes a third of a second to import: only a configuration using the
    # s3 backend pays for it.
    if name == "S3Backend":
        from rhplan.state.s3 import S3Backend
        return S3Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
