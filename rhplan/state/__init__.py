"""Recorded state: the model and where it is stored."""
from rhplan.state.local import LocalBackend, LockInfo
from rhplan.state.model import ResourceState, State

__all__ = ["LocalBackend", "LockInfo", "ResourceState", "State"]
