"""EC2 through boto3: one client per (region, profile, endpoint), bounded retries, AWS's
own error messages, and the few batched calls the provider is built from.

Every call here works on all of a cluster's instances at once (one run_instances for a
launch, one terminate_instances, one create_tags), so the number of API calls an
apply makes does not grow with the number of instances.
"""
from __future__ import annotations

import atexit
import gc
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from rhplan.plugin import ProviderError

# Tags rhplan puts on everything it creates: which state and which resource own it.
LINEAGE_TAG = "rhplan:lineage"
ADDRESS_TAG = "rhplan:address"
# which launch made an instance, tagged by rhplan before the ClientToken was read for
# it (instances.generation_of): still read, and never taken for a user's tag
GENERATION_TAG = "rhplan:generation"
RHPLAN_TAGS = (LINEAGE_TAG, ADDRESS_TAG, GENERATION_TAG)

# how long a waiter polls before giving up (a real instance is running in ~30 s)
WAIT_SECONDS = float(os.environ.get("RHPLAN_AWS_WAIT_SECONDS", "600"))
# per HTTP attempt: connecting, and waiting for an answer (a slow answer past it is
# retried like a dropped one, within the retry budget, so no call hangs forever)
CONNECT_TIMEOUT = float(os.environ.get("RHPLAN_AWS_CONNECT_TIMEOUT", "10"))
READ_TIMEOUT = float(os.environ.get("RHPLAN_AWS_READ_TIMEOUT", "60"))

_clients: dict[tuple[str, str | None, str | None], Any] = {}
_clients_lock = threading.Lock()
_clients_made: list[bool] = []
_call_log_lock = threading.Lock()


def _log_call(operation: str) -> None:
    # RHPLAN_AWS_API_LOG=FILE: one line per EC2/S3 API call (bench/aws_scale.py counts them)
    path = os.environ.get("RHPLAN_AWS_API_LOG")
    if path:
        with _call_log_lock, open(path, "a") as fh:
            fh.write(operation + "\n")


def client(region: str, profile: str | None = None, endpoint_url: str | None = None,
           service: str = "ec2") -> Any:
    """A botocore client (what boto3.client makes, without importing boto3: ~40 ms a
    command) with adaptive retries (throttling and 5xx are retried with backoff,
    bounded) and timeouts, so no call hangs forever. Credentials come from botocore's
    usual chain (boto3's) and are never read by rhplan itself."""
    key = (f"{service}:{region}", profile, endpoint_url)
    with _clients_lock:
        if key in _clients:
            return _clients[key]
        import botocore.session
        from botocore.config import Config
        from botocore.exceptions import ConfigParseError, ProfileNotFound

        from rhplan_aws.ec2_parse import FastParserFactory
        core = botocore.session.Session(profile=profile)
        # EC2's largest answers read in ~40 % of botocore's CPU (ec2_parse.py); and
        # timestamps stay the strings AWS sent: rhplan reads none of them, and
        # dateutil's parsing of the three per instance is a fifth of the CPU of reading
        # a 1,000-instance answer
        factory = FastParserFactory()
        factory.set_parser_defaults(timestamp_parser=str)
        core.register_component("response_parser_factory", factory)
        cfg = Config(retries={"mode": "adaptive", "max_attempts": int(
            os.environ.get("RHPLAN_AWS_MAX_ATTEMPTS", "8"))},
            connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
        try:
            c = core.create_client(service, region_name=region, endpoint_url=endpoint_url,
                                   config=cfg)
        except (ProfileNotFound, ConfigParseError) as exc:
            raise ProviderError(f"AWS profile {profile!r}: {exc}") from None
        c.meta.events.register("before-call", lambda model, **_: _log_call(model.name))
        _clients[key] = c
        if not _clients_made:
            _clients_made.append(True)
            # botocore's service model (~100,000 objects) lives to the end: without this,
            # the collection at interpreter exit walks it (~0.2 s of CPU per command)
            atexit.register(gc.freeze)
        return c


def call(fn: Callable[..., Any], what: str, **kwargs: Any) -> Any:
    """fn(**kwargs), with AWS's error turned into one line saying what failed."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    try:
        return fn(**kwargs)
    except NoCredentialsError:
        raise ProviderError(f"{what}: no AWS credentials found; set AWS_PROFILE or "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run aws configure"
                            ) from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise ProviderError(f"{what}: {err.get('Code', '?')}: {err.get('Message', exc)}"
                            ) from None
    except BotoCoreError as exc:
        raise ProviderError(f"{what}: {exc}") from None


def error_code(exc: BaseException) -> str:
    from botocore.exceptions import ClientError
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in sorted(tags.items())]


def tag_dict(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or []}


def describe_lineage(ec2: Any, lineage: str) -> list[dict[str, Any]]:
    """Every instance of one state (all clusters, terminated ones too while EC2 lists
    them): the ids tagged with the lineage (DescribeTags), then those ids described.
    Against EC2 this is one more call than a tag-filtered describe; against moto it
    spares a walk of every tag of the account per instance in it (its tag filter is
    quadratic: ~1 s of 1,000 instances' ~4 s describe). An id gone in between (EC2
    forgets a terminated instance after about an hour) falls back to the tag filter, and
    so does finding none: a create's search for a killed apply's instances then asks
    DescribeInstances before it launches (moto then walks only the account's other
    instances' tags), so a DescribeInstances that keeps failing fails the create before
    anything is launched, not in the wait after it (tests/test_faults.py)."""
    ids = lineage_ids(ec2, lineage)
    try:
        if ids:
            return describe_ids(ec2, ids)
    except ProviderError as exc:
        if "InvalidInstanceID.NotFound" not in str(exc):
            raise
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{LINEAGE_TAG}", "Values": [lineage]}])
    return [i for page in call(lambda: list(pages), "describing instances")
            for r in page["Reservations"] for i in r["Instances"]]


def lineage_ids(ec2: Any, lineage: str) -> list[str]:
    """The ids of the instances tagged with the lineage, in one paginated call."""
    pages = ec2.get_paginator("describe_tags").paginate(Filters=[
        {"Name": "resource-type", "Values": ["instance"]},
        {"Name": "key", "Values": [LINEAGE_TAG]}, {"Name": "value", "Values": [lineage]}])
    found = call(lambda: list(pages), "listing the state's instances")
    return list(dict.fromkeys(t["ResourceId"] for page in found for t in page["Tags"]))


def describe_ids(ec2: Any, ids: list[str], states: Iterable[str] = ()
                 ) -> list[dict[str, Any]]:
    """The instances with these ids (only those in `states`, if given)."""
    if not ids:
        return []
    filters = [{"Name": "instance-state-name", "Values": sorted(states)}] if states else []
    pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=ids, Filters=filters)
    return [i for page in call(lambda: list(pages), "describing instances")
            for r in page["Reservations"] for i in r["Instances"]]


# every state an instance can be in
STATES = frozenset({"pending", "running", "shutting-down", "terminated", "stopping",
                    "stopped"})


def wait_until(ec2: Any, ids: list[str], states: Iterable[str], what: str) -> None:
    """Poll until every instance is in one of states, asking each round only for the
    instances still in another state: a describe of 1,000 instances costs seconds on
    both ends, one of none costs next to nothing. Bounded by WAIT_SECONDS. For waits
    whose answer is not needed (stopped, terminated); wait_running returns the
    instances."""
    want = set(states)
    deadline = time.monotonic() + WAIT_SECONDS
    delay = 0.2
    while True:
        try:
            late = describe_ids(ec2, ids, STATES - want)
        except ProviderError as exc:
            # EC2 is eventually consistent: a just-launched id may be "not found" briefly
            if "InvalidInstanceID.NotFound" not in str(exc) or time.monotonic() > deadline:
                raise
            late = [{"InstanceId": "?"}]
        if not late:
            return
        bad = [i for i in late if i.get("State", {}).get("Name") in
               {"terminated", "shutting-down"} - want]
        if bad:
            reason = (bad[0].get("StateReason") or {}).get("Message", "no reason given")
            raise ProviderError(f"{what}: instance {bad[0]['InstanceId']} was terminated "
                                f"({reason})")
        if time.monotonic() > deadline:
            raise ProviderError(f"{what}: {len(late)} instance(s) not {'/'.join(sorted(want))} "
                                f"after {WAIT_SECONDS:.0f} s "
                                f"({', '.join(i['InstanceId'] for i in late[:3])})")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def wait_running(ec2: Any, known: list[dict[str, Any]], what: str,
                 stale: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Wait until every instance runs with an address; return them, in order, as last
    known. The polls ask only for the instances not running yet (wait_until), then
    one describe asks for those whose address is not known for good: a public IP in
    an answer (the launch's, or an earlier describe's) stays until the instance stops,
    and a running instance's private IP is final; `stale` ones (started again since)
    are asked anyway. A launch of 1,000 whose answer holds the public IPs is then
    never described in full again; bounded by WAIT_SECONDS."""
    ids = [i["InstanceId"] for i in known]
    wait_until(ec2, ids, {"running"}, what)
    by_id = {i["InstanceId"]: i for i in known}
    stale = set(stale)
    ask = [i for i in ids if i in stale or not _final_ip(by_id[i])]
    deadline = time.monotonic() + WAIT_SECONDS
    delay = 0.2
    while ask:
        found = {i["InstanceId"]: i for i in describe_ids(ec2, ask)}
        bad = [i for i in found.values() if i["State"]["Name"] in ("terminated",
                                                                   "shutting-down")]
        if bad:
            reason = (bad[0].get("StateReason") or {}).get("Message", "no reason given")
            raise ProviderError(f"{what}: instance {bad[0]['InstanceId']} was terminated "
                                f"({reason})")
        by_id.update(found)
        ask = [i for i in ask if not (i in found and found[i]["State"]["Name"] == "running"
                                      and _ip(found[i]))]
        if not ask:
            break
        if time.monotonic() > deadline:
            raise ProviderError(f"{what}: {len(ask)} instance(s) not running with an "
                                f"address after {WAIT_SECONDS:.0f} s ({', '.join(ask[:3])})")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    return [by_id[i] for i in ids]


def _final_ip(inst: dict[str, Any]) -> bool:
    return bool(inst.get("PublicIpAddress") or (
        inst.get("State", {}).get("Name") == "running" and inst.get("PrivateIpAddress")))


def _ip(inst: dict[str, Any]) -> str | None:
    return inst.get("PublicIpAddress") or inst.get("PrivateIpAddress")


def address_of(inst: dict[str, Any]) -> str:
    """Where rhplan reaches an instance: its public IP, else its private one."""
    ip = _ip(inst)
    if not ip:
        raise ProviderError(f"instance {inst['InstanceId']} has no IP address yet")
    return ip
