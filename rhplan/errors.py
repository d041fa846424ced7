"""Every error rhplan reports to a user, in one small hierarchy.

The CLI turns any RhplanError into one line on stderr and exit code 1. Anything
else is a bug: rhplan.cli.execute prints it as one `Error: internal error (...)` line
(its traceback with RHPLAN_TRACEBACK=1), and the fuzz tests count such a line as a
failure, so bad input must raise a RhplanError where it is found.
"""
from __future__ import annotations


class RhplanError(Exception):
    """Base of every error meant for a person: the message says what to do."""


class ConfigError(RhplanError):
    """The configuration is wrong at a known place (file:line)."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")


class CycleError(ConfigError):
    """Resources depend on each other in a loop."""


class StateError(RhplanError):
    """The state file cannot be read or written."""


class StateLockedError(StateError):
    """Another operation holds the state lock."""


class StalePlanError(RhplanError):
    """A saved plan was made against a state that has changed since."""


class ProviderError(RhplanError):
    """A provider operation (create, read, update, delete) failed on a host."""


class ConnectionLost(ProviderError):
    """The SSH connection broke while a command ran: it may or may not have finished
    on the host. Commands that are safe to repeat may be retried. (Defined here, not in
    rhplan.hosts.ssh, so code that only catches it does not import paramiko.)"""


class PartialFailure(ProviderError):
    """Part of a resource was set up (some hosts of a cluster): record that part, then
    report the failure; the next plan offers to finish the rest."""

    def __init__(self, message: str, attributes: dict, private: dict):
        super().__init__(message)
        self.attributes = attributes
        self.private = private
        self.resource_state: object | None = None  # set by the resource type
