"""-lock-timeout=DURATION (issue 14 item 8): a command that finds the state locked waits
up to DURATION, then fails in one line saying so; when the holder lets go in time it
goes on. The holder is this test process, holding the real lock through the backend
(a flock and lock info beside a local state, a KEY.tflock object in moto's S3), as
another rhplan would. The configurations hold a package only: nothing runs on a host.
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from motoserver import aws_env

from rhplan.state import LocalBackend
from rhplan.state.s3 import S3Backend

HCL = 'package "p" { git_url = "https://git.example.com/p.git" }\n'


def _waits_then_fails(rh: Any, *args: str) -> str:
    t0 = time.monotonic()
    res = rh(*args, "-lock-timeout=1s")
    waited = time.monotonic() - t0
    assert res.returncode == 1, res.describe()
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("Acquiring the state lock (waiting up to 1s): "), res.stderr
    assert len(lines) == 2 and "still locked after -lock-timeout=1s" in lines[1], res.stderr
    assert "is locked by" in lines[1] and "test holder" in lines[1], res.stderr
    assert waited >= 1.0, waited
    return lines[1]


def _waits_then_goes_on(rh: Any, release: Any, wait_for: Any, *args: str) -> str:
    bg = rh.start(*args, "-lock-timeout=2m", log_name=f"wait-{uuid.uuid4().hex[:6]}")
    wait_for(lambda: "Acquiring the state lock" in bg.out_path.read_text(), 60,
             "the command to wait for the lock")
    assert bg.proc.poll() is None  # still waiting: the lock is held
    release()
    assert bg.proc.wait(timeout=120) == 0, bg.out_path.read_text()
    return bg.out_path.read_text()


def test_a_local_lock_is_waited_for(rh: Any, wait_for: Any) -> None:
    rh.write(HCL)
    holder = LocalBackend(rh.state_path)
    held = holder.lock("test holder")
    try:
        at_once = rh("plan")  # no -lock-timeout: fails at once, as before
        assert "is locked by" in at_once.error_line() and "still locked" not in at_once.stderr
        _waits_then_fails(rh, "plan")
        _waits_then_fails(rh, "state", "rm", "package.p")
        out = _waits_then_goes_on(rh, lambda: holder.unlock(held.id), wait_for,
                                  "apply", "-auto-approve")
    finally:
        if holder._held is not None:
            holder.unlock(held.id)
    assert "Apply complete! Resources: 1 added" in out, out
    assert set(rh.resources()) == {"package.p"}


@pytest.mark.parametrize("value", ["5", "abc", "1x", "-1s"])
def test_a_duration_without_its_unit_is_refused(rh: Any, value: str) -> None:
    rh.keep = True
    rh.write(HCL)
    line = rh("plan", f"-lock-timeout={value}").error_line()
    assert "is not a duration; write e.g. 30s, 5m or 1m30s" in line, line


def test_an_s3_lock_is_waited_for(moto: Any, rhplan_in: Any, tmp_path: Any,
                                  wait_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in aws_env().items():  # this process takes the lock, as the CLI would
        monkeypatch.setenv(k, v)
    bucket = f"rhplan-lock-{uuid.uuid4().hex[:12]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    rh.keep = True  # a package only, recorded in the bucket
    rh.write(f'rhplan {{\n  backend "s3" {{\n    bucket       = "{bucket}"\n'
             f'    key          = "t/rhplan.state.json"\n    region       = "us-east-1"\n'
             f'    endpoint_url = "{moto.url}"\n  }}\n}}\n\n' + HCL)
    holder = S3Backend(bucket, "t/rhplan.state.json", region="us-east-1",
                       endpoint_url=moto.url)
    held = holder.lock("test holder")
    _waits_then_fails(rh, "plan")
    out = _waits_then_goes_on(rh, lambda: holder.unlock(held.id), wait_for,
                              "apply", "-auto-approve")
    assert "Apply complete! Resources: 1 added" in out, out


def test_with_json_the_wait_is_a_json_message(rh: Any) -> None:
    """-json: the lock-wait notice is a message of the stream on stdout (Terraform's
    JSON state locker: type state_lock_acquire), not a text line on stderr."""
    rh.keep = True
    rh.write(HCL)
    holder = LocalBackend(rh.state_path)
    held = holder.lock("test holder")
    try:
        res = rh("plan", "-json", "-lock-timeout=1s")
    finally:
        holder.unlock(held.id)
    assert res.returncode == 1, res.describe()
    msgs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [m["type"] for m in msgs] == ["version", "state_lock_acquire", "diagnostic"], msgs
    assert msgs[1]["@message"].startswith("Acquiring the state lock (waiting up to 1s): ")
    assert "test holder" in msgs[1]["@message"] and msgs[1]["@level"] == "info"
    assert "still locked after -lock-timeout=1s" in msgs[2]["@message"]
    assert "Acquiring" not in res.stderr, res.stderr  # stderr keeps the one error line
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
