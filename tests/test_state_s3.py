"""The S3 state backend against a real moto server process (tests/support/motoserver.py):
reads and conditional writes with a backup object, Terraform-style lock objects
(`KEY.tflock` created with If-None-Match), and the CLI end to end on a
configuration whose state lives in S3, including moving a local state there with
`state pull` / `state push`, and applies racing for the lock.

Every test has its own bucket. The configurations hold only a secret and a
package, which apply without touching any host.
"""
from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from motoserver import aws_env, free_port
from state_backends import KEY, dead_pid, info_of, race_for_lock, s3_block

from rhplan.errors import StateError, StateLockedError
from rhplan.state import Backend, LocalBackend, ResourceState, State, digest
from rhplan.state.s3 import S3Backend

DIGEST_KEY = f"{KEY}.digest-key"  # the key of the state's keyed secret digests


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process talks to moto with fake credentials, never to real AWS."""
    env = aws_env()
    for k in set(os.environ) - set(env):
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def bucket(moto: Any) -> str:
    name = f"rhplan-test-{uuid.uuid4().hex[:16]}"
    moto.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(moto: Any) -> Any:
    return moto.client("s3")


@pytest.fixture
def backend(moto: Any, bucket: str, aws: None) -> Callable[..., S3Backend]:
    """backend(key=KEY) -> a new S3Backend on this test's bucket (a new one per call,
    as separate processes would have)."""
    def make(key: str = KEY) -> S3Backend:
        return S3Backend(bucket, key, region="us-east-1", endpoint_url=moto.url)
    return make


def _keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def _body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _state() -> State:
    state = State.new()
    state.resources["secret.s"] = ResourceState(
        address="secret.s", type="secret", name="s", provider="rhplan",
        attributes={"keys": ["a"]})
    state.outputs["x"] = {"value": 1, "sensitive": False}
    return state


# -- read and write ---------------------------------------------------------------


def test_both_backends_satisfy_the_protocol(backend: Callable[..., S3Backend],
                                            tmp_path: Path) -> None:
    assert isinstance(backend(), Backend)
    assert isinstance(LocalBackend(tmp_path / "s.json"), Backend)


def test_round_trip_bumps_serial_and_keeps_backup(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    b = backend()
    assert b.read().serial == 0 and not b.read().resources  # nothing there yet
    assert _keys(s3, bucket) == []
    state = _state()
    b.write(state)
    assert state.serial == 1 and _keys(s3, bucket) == [KEY]  # no backup of nothing
    first = _body(s3, bucket, KEY)
    state.outputs["x"]["value"] = 2
    b.write(state)
    assert state.serial == 2
    assert _keys(s3, bucket) == [KEY, f"{KEY}.backup"]
    assert _body(s3, bucket, f"{KEY}.backup") == first
    assert backend().read() == state  # as another process sees it
    assert json.loads(_body(s3, bucket, KEY))["serial"] == 2


def test_concurrent_writes_from_threads(backend: Callable[..., S3Backend]) -> None:
    b = backend()
    state = b.read()
    threads = [threading.Thread(target=b.write, args=(state,)) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert backend().read().serial == 12


def test_corrupted_state_is_refused_naming_the_backup(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key=KEY, Body=b'{\n  "serial": 1,\n  oops\n}\n')
    with pytest.raises(StateError) as exc:
        backend().read()
    assert str(exc.value) == (
        f"s3://{bucket}/{KEY}: not a state file (invalid JSON at line 3: Expecting property "
        "name enclosed in double quotes); "
        f"restore s3://{bucket}/{KEY}.backup or fix it")
    assert exc.value.__suppress_context__


def test_a_write_never_overwrites_a_newer_state(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    """The put is conditional on the ETag last seen: a writer that lost the race
    (e.g. its lock was force-unlocked) gets an error instead of a lost update."""
    backend().write(_state())
    a, b = backend(), backend()
    sa, sb = a.read(), b.read()
    sa.outputs["x"]["value"] = "from a"
    a.write(sa)
    written = _body(s3, bucket, KEY)
    sb.outputs["x"]["value"] = "from b"
    with pytest.raises(StateError, match="changed by someone else"):
        b.write(sb)
    assert sb.serial == 1  # as it was: a retry after reading again is consistent
    assert _body(s3, bucket, KEY) == written
    # and nobody may create the state behind a reader that saw none
    c, d = backend("other.json"), backend("other.json")
    sc, sd = c.read(), d.read()
    c.write(sc)
    with pytest.raises(StateError, match="changed by someone else"):
        d.write(sd)


def test_missing_bucket_is_one_line_saying_what_to_do(moto: Any, aws: None) -> None:
    b = S3Backend("rhplan-no-such-bucket", KEY, endpoint_url=moto.url)
    for call in (b.read, lambda: b.lock("plan"), b.lock_info):
        with pytest.raises(StateError) as exc:
            call()
        msg = str(exc.value)
        assert "bucket 'rhplan-no-such-bucket' does not exist" in msg, msg
        assert "\n" not in msg and exc.value.__suppress_context__


def test_unreachable_endpoint_is_one_line(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import rhplan.state.s3 as s3mod
    monkeypatch.setattr(s3mod, "RETRIES", {"mode": "adaptive", "max_attempts": 1})
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StateError) as exc:
        S3Backend("bkt", KEY, endpoint_url=url).read()
    assert str(exc.value).startswith(f"s3://bkt/{KEY}: cannot reach {url} to read the state")
    assert "endpoint_url" in str(exc.value)


def test_client_uses_adaptive_retries_and_timeouts(backend: Callable[..., S3Backend]) -> None:
    config = backend()._client().meta.config
    # botocore counts max_attempts as retries: 8 retries after the first try
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 9}
    assert (config.connect_timeout, config.read_timeout) == (10, 30)


# -- locking --------------------------------------------------------------------


def test_lock_object_and_contention(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    holder, other = backend(), backend()
    info = holder.lock("apply")
    body = json.loads(_body(s3, bucket, f"{KEY}.tflock"))
    assert body == info.to_json() and body["path"] == f"s3://{bucket}/{KEY}"
    assert other.lock_info() == info
    with pytest.raises(StateLockedError) as exc:
        other.lock("plan")
    assert str(exc.value) == (
        f"state s3://{bucket}/{KEY} is locked by {info.who} (apply since {info.created}, "
        f"lock ID {info.id}); wait for it to finish, or run "
        f"`rhplan force-unlock {info.id}` if that process is gone")
    assert f"pid {os.getpid()}" in str(exc.value)
    holder.unlock(info.id)
    assert _keys(s3, bucket) == []  # unlock leaves no lock object
    with other.locked("plan") as taken:
        assert holder.lock_info() == taken
    assert _keys(s3, bucket) == [] and other.lock_info() is None


def test_locked_releases_when_the_body_fails(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    b = backend()
    with pytest.raises(RuntimeError, match="boom"), b.locked("apply"):
        raise RuntimeError("boom")
    assert _keys(s3, bucket) == []


def test_unlock_only_with_our_id(backend: Callable[..., S3Backend]) -> None:
    b = backend()
    info = b.lock("apply")
    with pytest.raises(StateError, match=f"we hold lock ID {info.id}"):
        b.unlock("not-ours")
    b.unlock(info.id)
    with pytest.raises(StateError, match="we hold no lock"):
        b.unlock(info.id)


def test_force_unlock_wrong_and_right_id(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    gone = backend()
    held = gone.lock("apply")  # its process "dies": the lock object stays
    b = backend()
    with pytest.raises(StateError) as exc:
        b.force_unlock("not-the-id")
    assert str(exc.value) == (
        f"lock ID not-the-id does not match the lock on s3://{bucket}/{KEY}, which is "
        f"{held.id} (held by {held.who} for apply); check the ID")
    assert _keys(s3, bucket) == [f"{KEY}.tflock"]
    b.force_unlock(held.id)
    assert _keys(s3, bucket) == []
    with pytest.raises(StateError, match=f"no lock is held on s3://{bucket}/{KEY}"):
        b.force_unlock(held.id)
    # the old holder, back from the dead, must not delete the new holder's lock
    mine = b.lock("apply")
    gone.unlock(held.id)
    assert b.lock_info() == mine
    b.unlock(mine.id)
    assert _keys(s3, bucket) == []


def test_unreadable_lock_object(backend: Callable[..., S3Backend], s3: Any,
                                bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key=f"{KEY}.tflock", Body=b"not json")
    with pytest.raises(StateError, match=r"lock info is unreadable.*aws s3 rm s3://"):
        backend().lock("apply")


# -- the CLI ----------------------------------------------------------------------

HCL = """\
variable "va" {
  default = "1"
}

variable "vb" {
  default = "1"
}

secret "a" {
  values = { k = var.va }
}

secret "b" {
  values = { k = var.vb }
}

package "p" {
  git_url        = "https://github.com/example/p.git"
  install_method = "pip"
}
"""


@pytest.fixture
def cli(tmp_path: Path, rhplan_in: Any, cleanups: Any) -> Iterator[Any]:
    """The CLI in a fresh folder, with fake AWS credentials for moto."""
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    rh.keep = True  # secrets and packages only: nothing real to destroy afterwards
    yield rh
    cleanups.add(rh)  # waits for any background command


def _s3_state(s3: Any, bucket: str) -> dict[str, Any]:
    return dict(json.loads(_body(s3, bucket, KEY)))


def test_cli_apply_plan_pull(cli: Any, moto: Any, s3: Any, bucket: str) -> None:
    cli.write(s3_block(bucket, moto.url) + HCL)
    out = cli("apply", "-auto-approve").ok().stdout
    assert "Apply complete! Resources: 3 added" in out
    assert not cli.state_path.exists()  # the state went to S3, not to a local file
    # backup: the state before the last write; the digest key of the secrets beside it
    assert _keys(s3, bucket) == [KEY, f"{KEY}.backup", DIGEST_KEY]
    state = _s3_state(s3, bucket)
    assert sorted(r["address"] for r in state["resources"]) == [
        "package.p", "secret.a", "secret.b"]
    assert "No changes." in cli("plan", "-detailed-exitcode").ok().stdout
    pulled = json.loads(cli("state", "pull").ok().stdout)
    assert pulled == state
    assert cli("state", "list").ok().stdout.split() == ["package.p", "secret.a", "secret.b"]


def test_cli_config_errors(cli: Any, moto: Any) -> None:
    cli.write('rhplan {\n  backend "s3" {\n    bucket = "b"\n  }\n}\n' + HCL)
    line = cli("validate").error_line()
    assert line.startswith("Error: main.hcl:2: ") and "needs key" in line, line
    cli.write('rhplan {\n  backend "s3" {\n    bucket = "b"\n    key = "k"\n'
              '    use_lockfile = true\n  }\n}\n' + HCL)
    line = cli("validate").error_line()
    assert line.startswith("Error: main.hcl:5: unknown attribute 'use_lockfile' in backend "
                           '"s3"; it takes bucket, key, region, endpoint_url, profile'), line
    cli.write(s3_block("rhplan-no-such-bucket", moto.url) + HCL)
    line = cli("plan").error_line()
    assert "bucket 'rhplan-no-such-bucket' does not exist" in line, line


def test_cli_migrate_local_to_s3(cli: Any, moto: Any, s3: Any, bucket: str) -> None:
    cli.write(HCL)  # the local backend
    cli("apply", "-auto-approve").ok()
    local = cli.state()
    pulled = cli("state", "pull").ok().stdout
    assert json.loads(pulled) == local
    (cli.dir / "s.json").write_text(pulled)
    cli.write(s3_block(bucket, moto.url) + HCL)
    cli("state", "push", "s.json").ok()
    moved = _s3_state(s3, bucket)
    assert moved["lineage"] == local["lineage"] and moved["serial"] == local["serial"] + 1
    assert moved["resources"] == local["resources"]
    assert _keys(s3, bucket) == [KEY]  # the push took and released the lock
    # the secrets' digests were made with the local digest key: it moves too
    s3.put_object(Bucket=bucket, Key=DIGEST_KEY,
                  Body=(cli.dir / ".rhplan" / "digest.key").read_bytes())
    assert "No changes." in cli("plan", "-detailed-exitcode").ok().stdout


def test_cli_push_refusals(cli: Any, moto: Any, s3: Any, bucket: str) -> None:
    cli.write(s3_block(bucket, moto.url) + HCL)
    cli("apply", "-auto-approve").ok()
    current = _s3_state(s3, bucket)
    before = _body(s3, bucket, KEY)

    def push(data: Any, *flags: str) -> Any:
        path = cli.dir / "push.json"
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return cli("state", "push", *flags, str(path))

    cases = [
        ("{ not json", "not a state file"),
        (json.dumps({"format_version": 1, "serial": 1}), "lineage must be"),
        ({**current, "lineage": "another-lineage"}, "has lineage another-lineage"),
        ({**current, "serial": current["serial"] - 1}, "lower than the current"),
    ]
    for data, words in cases:
        line = push(data).error_line()
        assert words in line, line
        assert _body(s3, bucket, KEY) == before, f"{words}: the state changed"
    line = cli("state", "push", str(cli.dir / "missing.json")).error_line()
    assert "cannot read" in line, line
    assert _keys(s3, bucket) == [KEY, f"{KEY}.backup", DIGEST_KEY]  # no lock left behind

    # -force replaces the state anyway; the serial still only goes up
    push({**current, "lineage": "another-lineage", "serial": 0}, "-force").ok()
    forced = _s3_state(s3, bucket)
    assert forced["lineage"] == "another-lineage"
    assert forced["serial"] == current["serial"] + 1
    # the same lineage and a higher (or equal) serial needs no -force
    push({**forced, "resources": []}).ok()
    assert _s3_state(s3, bucket)["resources"] == []


def test_cli_apply_refused_while_locked_then_succeeds(
        cli: Any, moto: Any, s3: Any, bucket: str, backend: Callable[..., S3Backend]) -> None:
    cli.write(s3_block(bucket, moto.url) + HCL)
    holder = backend()
    info = holder.lock("apply")
    res = cli("apply", "-auto-approve")
    line = res.error_line()
    assert f"locked by {info.who} (apply since {info.created}, lock ID {info.id})" in line
    assert f"rhplan force-unlock {info.id}" in line
    assert _keys(s3, bucket) == [f"{KEY}.tflock"]  # no state written
    holder.unlock(info.id)
    cli("apply", "-auto-approve").ok()
    assert _s3_state(s3, bucket)["serial"] >= 1 and _keys(s3, bucket) == [
        KEY, f"{KEY}.backup", DIGEST_KEY]


def test_cli_force_unlock(cli: Any, moto: Any, s3: Any, bucket: str,
                          backend: Callable[..., S3Backend]) -> None:
    cli.write(s3_block(bucket, moto.url) + HCL)
    held = backend().lock("apply")  # a holder that is gone: its lock object stays
    line = cli("force-unlock", "not-the-id").error_line()
    assert f"does not match the lock on s3://{bucket}/{KEY}, which is {held.id}" in line
    assert _keys(s3, bucket) == [f"{KEY}.tflock"]
    assert "successfully unlocked" in cli("force-unlock", held.id).ok().stdout
    assert _keys(s3, bucket) == []
    cli("apply", "-auto-approve").ok()


def test_cli_concurrent_applies_never_lose_an_update(
        cli: Any, moto: Any, s3: Any, bucket: str) -> None:
    """Two applies started at once, each changing its own secret: one is refused by
    the lock, or both run one after the other; what succeeded is always in the state."""
    cli.write(s3_block(bucket, moto.url) + HCL)
    cli("apply", "-auto-approve").ok()
    values = {"a": "1", "b": "1"}
    serial = _s3_state(s3, bucket)["serial"]
    for round_ in range(2, 5):
        v = str(round_)
        runs = {name: cli.start("apply", "-auto-approve", f"-target=secret.{name}",
                                f"-var=v{name}={v}", log_name=f"{name}{v}")
                for name in ("a", "b")}
        results = {name: bg.finish() for name, bg in runs.items()}
        ok = sorted(n for n, r in results.items() if r.returncode == 0)

        assert ok, "\n".join(r.describe() for r in results.values())
        for name, r in results.items():
            if r.returncode != 0:
                assert "is locked by" in r.stdout and "(apply since" in r.stdout, r.describe()
            else:
                values[name] = v
        state = _s3_state(s3, bucket)
        assert state["serial"] > serial
        serial = state["serial"]
        # every change that succeeded is in the state: planning with those values
        # finds nothing to do
        res = cli("plan", "-detailed-exitcode", f"-var=va={values['a']}",
                  f"-var=vb={values['b']}")
        assert res.returncode == 0 and "No changes." in res.stdout, (
            f"lost update in round {round_} ({ok} succeeded)\n{res.describe()}")
        assert _keys(s3, bucket) == [KEY, f"{KEY}.backup", DIGEST_KEY]  # no lock left


def test_cli_state_in_s3_holds_only_keyed_digests(cli: Any, moto: Any, s3: Any,
                                                   bucket: str) -> None:
    """The secrets' digests are HMACs under KEY.digest-key, not plain sha256 digests
    anyone reading the state could check guesses against."""
    cli.write(s3_block(bucket, moto.url) + HCL)
    cli("apply", "-auto-approve").ok()
    text = _body(s3, bucket, KEY).decode()
    assert digest.legacy_hex({"k": "1"}) not in text  # secret.a and secret.b: k = "1"
    key = digest.decode_key(_body(s3, bucket, DIGEST_KEY), DIGEST_KEY)
    secrets = [r["attributes"] for r in _s3_state(s3, bucket)["resources"]
               if r["type"] == "secret"]
    assert [digest.key_id_of(a["sha256"]) for a in secrets] == [digest.key_id(key)] * 2
    assert "No changes." in cli("plan", "-detailed-exitcode").ok().stdout
    # a changed value is a change; the same value again is none
    res = cli("plan", "-detailed-exitcode", "-var=va=2")
    assert res.returncode == 2 and "# secret.a will be updated in-place" in res.stdout
    assert "secret.b will be" not in res.stdout


def test_digest_key_is_stored_once_for_racing_first_runs(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    """Every first run puts its own key conditionally once its plan stands; S3 takes
    one, which every later run reads, and the others are told to run again."""
    stored: list[bytes] = []
    refused: list[str] = []
    start = threading.Barrier(8)

    def first_run() -> None:
        b = backend()
        key = b.digest_key()
        start.wait(timeout=30)
        try:
            b.store_digest_key()
            stored.append(key)
        except StateError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=first_run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(stored) == 1 and len(refused) == 7, (stored, refused)
    assert all("another rhplan stored a digest key" in r for r in refused), refused
    assert _keys(s3, bucket) == [DIGEST_KEY]
    assert backend().digest_key() == stored[0]
    s3.put_object(Bucket=bucket, Key=DIGEST_KEY, Body=b"damaged")
    with pytest.raises(StateError, match=f"s3://{bucket}/{DIGEST_KEY}: the digest key of "
                                         "this state is damaged"):
        backend().digest_key()


# -- a lock whose holder is gone -------------------------------------------------------


def test_one_of_many_contenders_clears_a_stale_lock(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    """A lock left by a process of this machine that is gone: ten contenders find it
    at once; the conditional delete (If-Match on its ETag) lets exactly one of them
    clear it, and exactly one then holds the lock; the others are refused naming it."""
    rounds, figures = 3, []
    contenders = [backend() for _ in range(10)]
    notices: list[str] = []
    for b in contenders:
        b._client()  # made beforehand, so that the barrier lines up the requests
        b.notify = notices.append
    for _ in range(rounds):
        notices.clear()
        stale = info_of(dead_pid(), path=f"s3://{bucket}/{KEY}")
        s3.put_object(Bucket=bucket, Key=f"{KEY}.tflock",
                      Body=json.dumps(stale.to_json()).encode())
        won, refused = race_for_lock(contenders)
        assert len(won) == 1 and len(refused) == 9, (won, refused)
        assert len(notices) == 1 and f"lock ID {stale.id}): that process is gone" in notices[0]
        holder, info = won[0]
        assert all(f"lock ID {info.id}" in r for r in refused), refused
        assert backend().lock_info() == info
        holder.unlock(info.id)
        figures.append(len(refused))
    print(f"\nRELIABILITY: stale S3 lock raced by 10 contenders x {rounds}: 1 cleared it, "
          f"1 holder, {sum(figures)} refused naming the holder")


def test_a_lock_delete_judged_on_an_old_etag_removes_nothing(
        backend: Callable[..., S3Backend], s3: Any, bucket: str) -> None:
    """What makes clearing race-free: a delete carries the ETag of the lock it judged,
    so once someone else has replaced that lock, the delete leaves the new one alone
    (moto 5.2 and S3 answer 412; a missing object, 404)."""
    stale = info_of(dead_pid())
    s3.put_object(Bucket=bucket, Key=f"{KEY}.tflock", Body=json.dumps(stale.to_json()))
    judge = backend()
    seen, etag = judge._read_lock()
    assert seen == stale and etag
    taker = backend()
    taker.notify = lambda line: None
    mine = taker.lock("apply")  # clears the stale lock and takes it
    assert not judge._delete_lock(etag)
    assert backend().lock_info() == mine
    taker.unlock(mine.id)
    assert not judge._delete_lock(etag)  # and nothing there: nothing to remove either
