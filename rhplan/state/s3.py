"""The S3 state backend: the state is one object, locked the way Terraform 1.10+
does with `use_lockfile`.

- The state is KEY; before each write the current object is copied to KEY.backup.
- The lock is KEY.tflock, created with `If-None-Match: *` (rhplan/state/s3_lock.py,
  the S3Lock this backend is).
- The digest key of the state's keyed digests (rhplan.state.digest) is KEY.digest-key,
  created with `If-None-Match: *` too, so of two first runs only one stores its key
  (the other is told to run again).
- Writes are conditional too (`If-Match` on the ETag this backend last read or
  wrote), so even a writer that lost its lock (force-unlocked while hung) cannot
  silently overwrite a newer state: it gets an error instead.

Credentials come only from boto3's usual chain (environment, profile, instance
role); nothing here stores or prints them.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ProfileNotFound,
)

from rhplan.errors import StateError
from rhplan.state import digest
from rhplan.state.lockinfo import LockInfo, print_notice
from rhplan.state.model import RHPLAN_VERSION, State, parse_state
from rhplan.state.s3_errors import READ_TIMEOUT, is_lock_held, is_missing_key, s3_error
from rhplan.state.s3_lock import S3Lock

# Throttling (503 SlowDown) and transient errors are retried with backoff; the
# timeouts make sure an unreachable endpoint fails instead of hanging.
RETRIES: dict[str, Any] = {"mode": "adaptive", "max_attempts": 8}
CONNECT_TIMEOUT = 10


class _Unseen:
    def __repr__(self) -> str:
        return "<not read yet>"


_UNSEEN = _Unseen()


class S3Backend(S3Lock):
    """State in s3://BUCKET/KEY, with KEY.backup and the lock KEY.tflock beside it."""

    def __init__(self, bucket: str, key: str, region: str | None = None,
                 endpoint_url: str | None = None, profile: str | None = None) -> None:
        self.bucket = bucket
        self.key = key
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.backup_key = f"{key}.backup"
        self.lock_key = f"{key}.tflock"
        self.digest_key_key = f"{key}.digest-key"
        self._digest_key_url = f"s3://{bucket}/{self.digest_key_key}"
        self._unsaved_key: bytes | None = None  # made by digest_key(), not stored yet
        self.url = f"s3://{bucket}/{key}"
        self.backup_url = f"s3://{bucket}/{self.backup_key}"
        self.lock_url = f"s3://{bucket}/{self.lock_key}"
        self._client_lock = threading.Lock()
        self._s3: Any = None  # the boto3 client, made on first use
        # apply writes from worker threads; this also guards _etag
        self._write_lock = threading.Lock()
        # ETag of the state object as last read or written: None when it did not
        # exist, _UNSEEN before the first read. Writes are conditional on it.
        self._etag: str | None | object = _UNSEEN
        self._held: LockInfo | None = None
        self.notify: Callable[[str], None] = print_notice  # a cleared stale lock is told here

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r})"

    # -- the client ----------------------------------------------------------

    def _client(self) -> Any:
        with self._client_lock:
            if self._s3 is None:
                import boto3  # slow to import: only when the s3 backend is used

                config = Config(retries=RETRIES, connect_timeout=CONNECT_TIMEOUT,
                                read_timeout=READ_TIMEOUT)
                try:
                    session = boto3.session.Session(profile_name=self.profile)
                except ProfileNotFound:
                    raise StateError(
                        f"{self.url}: AWS profile {self.profile!r} (backend \"s3\" profile) "
                        "is not in ~/.aws/config or ~/.aws/credentials; fix the name or "
                        "run `aws configure --profile NAME`") from None
                self._s3 = session.client("s3", region_name=self.region,
                                          endpoint_url=self.endpoint_url, config=config)
            return self._s3

    def _error(self, err: Exception, doing: str, url: str | None = None) -> StateError:
        """One line for a person: what failed and what to do (rhplan/state/s3_errors.py)."""
        return s3_error(err, doing, url or self.url, self.bucket, self.region,
                        self.endpoint_url)

    @contextlib.contextmanager
    def _calling(self, doing: str, url: str | None = None) -> Iterator[None]:
        """Turn botocore errors raised in the body into one-line StateErrors."""
        try:
            yield
        except (ClientError, BotoCoreError) as err:
            raise self._error(err, doing, url) from None

    # -- state ---------------------------------------------------------------

    def read(self) -> State:
        """The recorded state, or a fresh one if nothing was written yet."""
        s3 = self._client()
        with self._write_lock:
            try:
                resp = s3.get_object(Bucket=self.bucket, Key=self.key)
                raw = resp["Body"].read()
            except ClientError as err:
                if not is_missing_key(err):
                    raise self._error(err, "read the state") from None
                self._etag = None
                return State.new()
            except BotoCoreError as err:
                raise self._error(err, "read the state") from None
            self._etag = resp.get("ETag")
        # Every way the bytes can be wrong is one line naming KEY.backup.
        return parse_state(raw, self.url)  # names KEY.backup, our backup_url

    def write(self, state: State) -> None:
        """Bump state.serial and put the object, after copying the old one to KEY.backup.

        The put is conditional on the ETag last read or written here, so an object
        someone else wrote in between is never overwritten.
        """
        self.store_digest_key()  # never a state holding digests under a key not stored
        s3 = self._client()
        with self._write_lock:
            old_serial, old_version = state.serial, state.rhplan_version
            state.serial += 1
            state.rhplan_version = RHPLAN_VERSION
            payload = state.dumps()
            try:
                self._etag = self._put_state(s3, payload)
            except BaseException:
                # Leave the in-memory state as the object still is, so a retry is consistent.
                state.serial, state.rhplan_version = old_serial, old_version
                raise

    def _put_state(self, s3: Any, payload: bytes) -> str | None:
        etag = self._etag
        if etag is not None:  # there is (or may be) a current object: back it up
            copy: dict[str, Any] = {"Bucket": self.bucket, "Key": self.backup_key,
                                    "CopySource": {"Bucket": self.bucket, "Key": self.key}}
            if isinstance(etag, str):
                # Back up exactly the version we read. AWS honours this; moto 5.2
                # ignores it, and the conditional put below still catches a change.
                copy["CopySourceIfMatch"] = etag
            try:
                s3.copy_object(**copy)
            except ClientError as err:
                if is_missing_key(err) and not isinstance(etag, str):
                    pass  # never read, and there is nothing yet: nothing to back up
                elif is_lock_held(err) or is_missing_key(err):
                    raise self._changed_error() from None
                else:
                    raise self._error(err, f"copy the state to {self.backup_url}") from None
            except BotoCoreError as err:
                raise self._error(err, f"copy the state to {self.backup_url}") from None
        put: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key, "Body": payload,
                               "ContentType": "application/json"}
        if isinstance(etag, str):
            put["IfMatch"] = etag  # lost-update guard; moto 5.2 and AWS both enforce it
        elif etag is None:
            put["IfNoneMatch"] = "*"  # we saw no state: someone else must not have made one
        try:
            resp = s3.put_object(**put)
        except ClientError as err:
            if is_lock_held(err) or (isinstance(etag, str) and is_missing_key(err)):
                if self._already_there(s3, payload):
                    return self._current_etag(s3)
                raise self._changed_error() from None
            raise self._error(err, "write the state") from None
        except BotoCoreError as err:
            raise self._error(err, "write the state") from None
        return str(resp["ETag"]) if resp.get("ETag") else None

    def _already_there(self, s3: Any, payload: bytes) -> bool:
        # A put whose response was lost is retried by botocore, and the retry then
        # fails its own condition: if the object is what we meant to write, it worked.
        try:
            return bool(s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
                        == payload)
        except (ClientError, BotoCoreError):
            return False

    def _current_etag(self, s3: Any) -> str | None:
        with self._calling("read the state"):
            return str(s3.head_object(Bucket=self.bucket, Key=self.key)["ETag"])

    def _changed_error(self) -> StateError:
        return StateError(
            f"{self.url}: the state was changed by someone else since this rhplan read it "
            "(was the lock force-unlocked?); nothing was written: run `rhplan refresh`, "
            "then plan again")

    def digest_key(self) -> bytes:
        """KEY.digest-key; if there is none yet, a new key kept in memory until
        store_digest_key(), so a command that fails leaves nothing behind."""
        if self._unsaved_key is not None:
            return self._unsaved_key
        stored = self._read_digest_key()
        if stored is None:
            self._unsaved_key = digest.new_key()
            return self._unsaved_key
        return stored

    def store_digest_key(self) -> None:
        """Store the key digest_key() made, once the plan that used it succeeded, with
        a conditional put: if another rhplan stored one first, what this one digested
        must not be kept."""
        key = self._unsaved_key
        if key is None:
            return
        try:
            self._client().put_object(Bucket=self.bucket, Key=self.digest_key_key,
                                      Body=digest.encode_key(key), ContentType="text/plain",
                                      IfNoneMatch="*")
        except ClientError as err:
            if not is_lock_held(err):  # a key is there: ours (a retried put) or not
                raise self._error(err, "create the digest key", self._digest_key_url) from None
        except BotoCoreError as err:
            raise self._error(err, "create the digest key", self._digest_key_url) from None
        self._unsaved_key = None
        if self._read_digest_key() != key:
            raise StateError(f"{self._digest_key_url}: another rhplan stored a digest key "
                             "while this one ran, so its digests cannot be kept; nothing "
                             "was written: run the command again")

    def _read_digest_key(self) -> bytes | None:
        url = self._digest_key_url
        try:
            raw = self._client().get_object(Bucket=self.bucket,
                                            Key=self.digest_key_key)["Body"].read()
        except ClientError as err:
            if is_missing_key(err):
                return None
            raise self._error(err, "read the digest key", url) from None
        except BotoCoreError as err:
            raise self._error(err, "read the digest key", url) from None
        return digest.decode_key(raw, url)

    # -- workspaces (rhplan.state.workspaces) ---------------------------------

    def list_keys(self, prefix: str) -> list[str]:
        """Every object key in the bucket under prefix."""
        keys: list[str] = []
        with self._calling("list the workspaces", f"s3://{self.bucket}/{prefix}"):
            pages = self._client().get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                keys.extend(o["Key"] for o in page.get("Contents", []))
        return keys

    def delete_state(self) -> None:
        """Delete the state, its backup and its digest key (a deleted workspace)."""
        for key in (self.key, self.backup_key, self.digest_key_key):
            with self._calling("delete the workspace's state", f"s3://{self.bucket}/{key}"):
                self._client().delete_object(Bucket=self.bucket, Key=key)
