"""S3's and botocore's errors, as the S3 state backend reads them (which code means a
missing key, a held lock) and as a person reads them: one line saying what failed and
what to do, never with credentials."""
from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from rhplan.errors import StateError

READ_TIMEOUT = 30  # seconds, the client's read timeout (rhplan/state/s3.py)

LOCK_HELD = ("PreconditionFailed", "ConditionalRequestConflict")
_DENIED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
           "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled")
_WRONG_REGION = ("PermanentRedirect", "AuthorizationHeaderMalformed",
                 "IllegalLocationConstraintException")


def code_of(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def status_of(err: ClientError) -> int:
    return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def is_missing_key(err: ClientError) -> bool:
    return code_of(err) in ("NoSuchKey", "404", "NotFound")


def is_lock_held(err: ClientError) -> bool:
    return code_of(err) in LOCK_HELD or status_of(err) in (409, 412)


def s3_error(err: Exception, doing: str, url: str, bucket: str, region: str | None,
             endpoint_url: str | None) -> StateError:
    """One line for a person: what failed and what to do. Never includes credentials."""
    where = endpoint_url or "S3"
    if isinstance(err, ClientError):
        code = code_of(err)
        if code == "NoSuchBucket":
            return StateError(
                f"{url}: bucket {bucket!r} does not exist; create it "
                f"(aws s3 mb s3://{bucket}) or fix bucket in the backend \"s3\" block")
        if code in _DENIED or status_of(err) == 403:
            return StateError(
                f"{url}: access denied while trying to {doing} ({code or 403}); check "
                "which AWS credentials are in use (AWS_PROFILE, the backend's profile, "
                "`aws sts get-caller-identity`) and that they may get, put and delete "
                f"objects in bucket {bucket!r}")
        if code in _WRONG_REGION or status_of(err) == 301:
            return StateError(
                f"{url}: bucket {bucket!r} is in another region than "
                f"{region or 'the default one'}; set region in the backend \"s3\" block")
        message = err.response.get("Error", {}).get("Message", "")
        return StateError(f"{url}: cannot {doing}: {code or status_of(err)} {message}".rstrip())
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return StateError(
            f"{url}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, run `aws configure`, or set profile in the "
            "backend \"s3\" block")
    if isinstance(err, (EndpointConnectionError, ConnectTimeoutError)):
        return StateError(
            f"{url}: cannot reach {where} to {doing}; check the network"
            + (" and endpoint_url in the backend \"s3\" block" if endpoint_url
               else " and region in the backend \"s3\" block"))
    if isinstance(err, ReadTimeoutError):
        return StateError(f"{url}: {where} did not answer within {READ_TIMEOUT} s while "
                          f"trying to {doing}; try again")
    return StateError(f"{url}: cannot {doing}: {err}")
