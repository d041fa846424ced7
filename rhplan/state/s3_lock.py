"""The S3 backend's lock, KEY.tflock, as Terraform 1.10+ locks with `use_lockfile`
(rhplan/state/s3.py's S3Backend is this plus the state and its digest key).

The lock object is created with `If-None-Match: *`, so S3 itself refuses a second
holder (412 PreconditionFailed, or 409 ConditionalRequestConflict while two creates
race). It holds the holder's LockInfo as JSON. Unlike a flock it outlives a killed
process: `rhplan force-unlock ID` removes it, and so does the next rhplan on the same
machine once it can prove that process is gone (LockInfo.gone). Every delete of the
lock is conditional (`If-Match` on the ETag of the lock object it read), so a delete
can only remove the very lock it judged.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from rhplan.errors import StateError, StateLockedError
from rhplan.state import lockwait
from rhplan.state.lockinfo import (
    LockInfo,
    check_id,
    check_ours,
    cleared_notice,
    locked_error_message,
)
from rhplan.state.s3_errors import is_lock_held, is_missing_key

# A force-unlock can delete the lock between our refused create and our read of
# who holds it; then we try to take it again, this many times.
_LOCK_ATTEMPTS = 5


class S3Lock:
    """Locking for S3Backend, which sets these attributes and gives the client."""

    bucket: str
    url: str  # s3://BUCKET/KEY, the state the lock guards
    lock_key: str
    lock_url: str
    _held: LockInfo | None
    notify: Callable[[str], None]  # a cleared stale lock is told here

    def _client(self) -> Any:
        raise NotImplementedError

    def _error(self, err: Exception, doing: str, url: str | None = None) -> StateError:
        raise NotImplementedError

    def lock(self, operation: str) -> LockInfo:
        """Create KEY.tflock for `operation`, or raise StateLockedError at once."""
        for _ in range(_LOCK_ATTEMPTS):
            info = LockInfo.new(operation, self.url)
            if self._create_lock(info):
                self._held = info
                return info
        raise StateLockedError(
            f"state {self.url} is being locked and unlocked repeatedly; try again later")

    def _create_lock(self, info: LockInfo) -> bool:
        """True if we now hold the lock, False if it went away while we looked (try
        again); StateLockedError if someone else holds it."""
        body = json.dumps(info.to_json(), indent=2).encode()
        try:
            self._client().put_object(Bucket=self.bucket, Key=self.lock_key, Body=body,
                                      ContentType="application/json", IfNoneMatch="*")
            return True
        except ClientError as err:
            if not is_lock_held(err):
                raise self._error(err, "create the lock", self.lock_url) from None
        except BotoCoreError as err:
            raise self._error(err, "create the lock", self.lock_url) from None
        holder, etag = self._read_lock()
        if holder is None:
            return False  # released (or force-unlocked) meanwhile
        if holder.id == info.id:
            return True  # our own create, retried by botocore after its answer was lost
        if not holder.gone():
            raise StateLockedError(locked_error_message(self.url, holder))
        # Left by a process on this machine that is gone: remove exactly that object.
        # If another contender cleared it first, our delete fails and we simply try
        # to create the lock again, like everyone else.
        if self._delete_lock(etag):
            self.notify(cleared_notice(holder))
        return False

    def unlock(self, lock_id: str) -> None:
        """Release a lock this backend took with lock(): delete KEY.tflock if it is ours."""
        check_ours(self._held, lock_id, self.url)
        self._held = None
        try:
            current, etag = self._read_lock()
            if current is None or current.id != lock_id:
                return  # force-unlocked, and maybe someone else's lock by now: leave it
            self._delete_lock(etag)  # refused only if it was force-unlocked since we read it
        except StateError as err:
            raise StateError(
                f"{err}; the lock stays until `rhplan force-unlock {lock_id}`") from None

    def locked(self, operation: str) -> AbstractContextManager[LockInfo]:
        """Hold the state lock for the body of a `with` block (waiting for it up to
        -lock-timeout: rhplan/state/lockwait.py)."""
        return lockwait.holding(lambda: self.lock(operation), self.unlock)

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Break a lock whose holder is gone or hung; lock_id must match, as a safety check.
        Returns the lock it removed."""
        found, etag = self._read_lock()
        info = check_id(found, lock_id, self.url)
        if not self._delete_lock(etag):
            raise StateError(
                f"the lock on {self.url} changed while it was being removed (its holder "
                f"released it, or someone else took it): nothing was removed; run "
                f"`rhplan plan` to see who holds it now")
        if self._held is not None and self._held.id == lock_id:
            self._held = None
        return info

    def lock_info(self) -> LockInfo | None:
        """What KEY.tflock says, or None if there is no lock."""
        return self._read_lock()[0]

    def _read_lock(self) -> tuple[LockInfo | None, str | None]:
        """KEY.tflock's lock info and ETag, or (None, None) if there is no lock."""
        try:
            resp = self._client().get_object(Bucket=self.bucket, Key=self.lock_key)
            raw = resp["Body"].read()
        except ClientError as err:
            if is_missing_key(err):
                return None, None
            raise self._error(err, "read the lock", self.lock_url) from None
        except BotoCoreError as err:
            raise self._error(err, "read the lock", self.lock_url) from None
        try:
            return LockInfo.from_json(json.loads(raw.decode("utf-8"))), resp.get("ETag")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StateError(
                f"{self.lock_url}: lock info is unreadable; if no rhplan is running, "
                f"delete it (aws s3 rm {self.lock_url})"
            ) from None

    def _delete_lock(self, etag: str | None) -> bool:
        """Delete KEY.tflock if it is still the object with this ETag; False if it is
        gone or was replaced since it was read (S3 answers 404 or 412)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.lock_key}
        if etag:
            args["IfMatch"] = etag
        try:
            self._client().delete_object(**args)
            return True
        except ClientError as err:
            if is_missing_key(err) or is_lock_held(err):
                return False
            raise self._error(err, "delete the lock", self.lock_url) from None
        except BotoCoreError as err:
            raise self._error(err, "delete the lock", self.lock_url) from None
