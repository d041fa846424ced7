"""Secret digests (issue 11, item 7): the state and saved plans keep a keyed digest
(HMAC-SHA256) of each secret and sensitive value, never a plain sha256 that a guess
("hunter2") could be checked against. The key lives beside the state, outside it
(.rhplan/digest.key for a local state; the S3 case is in test_state_s3.py).

- the same values plan no change; a changed value plans an update of that secret only;
- a lost key is made again: every secret is planned as written again, saying why
  (rhplan cannot tell whether the values changed), and the servlets using them restart;
- a state written with plain digests plans no change, and its digests are upgraded in
  place by the next apply without restarting any servlet.

Secrets (and a recorded cluster and env planned with -refresh=false) apply without
touching any host.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from canary import canary_secret

from rhplan.errors import StateError
from rhplan.state import LocalBackend, digest

CASES = Path(__file__).parent / "plan_cases"
ENV_VAR = "RHPLAN_DIGEST_TEST_SECRET"
SHORT = "hunter2"  # the kind of value a plain sha256 gives away

CONFIG = f"""
variable "token" {{
  type      = string
  sensitive = true
}}

secret "short" {{
  values = {{ PW = "{SHORT}" }}
}}

secret "env" {{
  from_env = ["{ENV_VAR}"]
}}

secret "var" {{
  values = {{ TOKEN = var.token }}
}}
"""


def plain_digests(values: dict[str, str]) -> set[str]:
    """Every plain sha256 an rhplan before keyed digests wrote of these values (and of
    each value alone, which a careless digest might take)."""
    out = {digest.legacy_hex(values)}
    for v in values.values():
        out |= {digest.legacy_hex(v), hashlib.sha256(v.encode()).hexdigest()}
    return out


def key_path(rh: Any) -> Path:
    return rh.dir / ".rhplan" / "digest.key"


def secret_attrs(rh: Any, address: str) -> dict[str, Any]:
    return dict(rh.resources()[address]["attributes"])


@pytest.fixture
def secrets(rh: Any) -> Any:
    rh.keep = True  # secrets only: nothing behind them to destroy
    rh.env[ENV_VAR] = canary_secret("digest")
    rh.token = canary_secret("digestvar")
    rh.write(CONFIG)
    return rh


def test_the_state_and_a_saved_plan_hold_only_keyed_digests(secrets: Any) -> None:
    rh = secrets
    var = f"-var=token={rh.token}"
    rh("plan", var, "-out", "p.json").ok()
    rh("apply", var, "p.json").ok()
    rh("apply", var, "-auto-approve").ok()  # nothing to do; the backup exists from here
    plain = (plain_digests({"PW": SHORT}) | plain_digests({ENV_VAR: rh.env[ENV_VAR]})
             | plain_digests({"TOKEN": rh.token}) | {digest.legacy_hex(rh.token)})
    for path in (rh.state_path, rh.dir / "rhplan.state.json.backup", rh.dir / "p.json"):
        text = path.read_text()
        found = [d for d in plain if d in text]
        assert not found, f"{path.name} holds a plain sha256 of a secret: {found}"
    key = key_path(rh)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    kid = digest.key_id(digest.decode_key(key.read_bytes(), str(key)))
    for name in ("short", "env", "var"):
        attrs = secret_attrs(rh, f"secret.{name}")
        assert digest.key_id_of(attrs["sha256"]) == kid, attrs
    # the saved plan keeps the sensitive variable as a keyed digest too
    saved = json.loads((rh.dir / "p.json").read_text())["variables"]["token"]
    assert digest.key_id_of(saved["$sensitive_sha256"]) == kid

    # the same values: two plans agree with the state and with each other
    for _ in range(2):
        res = rh("plan", var, "-detailed-exitcode")
        assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
    # a changed value is a change of that secret only
    rh.edit(f'PW = "{SHORT}"', 'PW = "hunter3"')
    res = rh("plan", var, "-detailed-exitcode")
    assert res.returncode == 2, res.describe()
    assert "# secret.short will be updated in-place\n  # (values changed)" in res.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in res.stdout
    assert "hunter3" not in res.output and SHORT not in res.output


def test_a_lost_key_is_made_again_and_the_secrets_planned_as_written_again(
        secrets: Any) -> None:
    """Without the key rhplan cannot tell whether a value changed: it makes a new key
    and plans every secret as written again (what Terraform does when it cannot
    compare: converge), saying why, rather than refusing every plan until a key that
    may be gone for good is found."""
    rh = secrets
    var = f"-var=token={rh.token}"
    rh("apply", var, "-auto-approve").ok()
    old = key_path(rh).read_bytes()
    key_path(rh).unlink()
    res = rh("plan", var, "-detailed-exitcode")
    assert res.returncode == 2, res.describe()
    why = ("(recorded with another digest key, so whether the values changed cannot be "
           "told; they are written again)")
    for name in ("short", "env", "var"):
        assert f"# secret.{name} will be updated in-place\n  # {why}" in res.stdout
    assert "Plan: 0 to add, 3 to change, 0 to destroy." in res.stdout
    rh("apply", var, "-auto-approve").ok()
    new = key_path(rh).read_bytes()
    assert new != old
    res = rh("plan", var, "-detailed-exitcode")
    assert res.returncode == 0 and "No changes." in res.stdout, res.describe()


def test_a_state_with_plain_digests_is_upgraded_without_restarting_servlets(rh: Any) -> None:
    """An env's recorded secrets_sha256 came from its secrets' plain digests: a plain
    digest that still matches is replaced in place, the env's too, so nothing is planned
    (a changed secrets_sha256 would restart the servlet)."""
    rh.keep = True  # a recorded cluster and env with no host behind them
    case = CASES / "legacy_digests"
    shutil.copy(case / "main.hcl", rh.dir / "main.hcl")
    shutil.copy(case / "state.json", rh.state_path)
    before = {r["address"]: r for r in rh.state()["resources"]}
    legacy = plain_digests({"HF_TOKEN": "hf_example"})
    assert before["secret.hf"]["attributes"]["sha256"] in legacy
    res = rh("plan", "-refresh=false", "-detailed-exitcode")
    assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
    res = rh("apply", "-refresh=false", "-auto-approve").ok()
    assert "No changes." in res.stdout
    after = {r["address"]: r for r in rh.state()["resources"]}
    text = rh.state_path.read_text()
    assert not [d for d in legacy if d in text], "the upgraded state keeps a plain digest"
    hf = after["secret.hf"]["attributes"]
    assert digest.is_keyed(hf["sha256"]) and digest.is_keyed(hf["values"])
    np_before, np_after = before["env.np"]["attributes"], after["env.np"]["attributes"]
    assert np_after["secrets_sha256"] != np_before["secrets_sha256"]
    assert {k: v for k, v in np_after.items() if k != "secrets_sha256"} == {
        k: v for k, v in np_before.items() if k != "secrets_sha256"}  # servlet_pid kept
    assert after["env.other"] == before["env.other"]
    # the cluster is as it was, its private record in state format 2's two parts
    assert {k: v for k, v in after["cluster.cpu"].items() if k != "private"} == {
        k: v for k, v in before["cluster.cpu"].items() if k != "private"}
    assert before["cluster.cpu"]["private"] == {}
    assert after["cluster.cpu"]["private"] == {"ray": {}, "provider": {}}
    res = rh("plan", "-refresh=false", "-detailed-exitcode")
    assert res.returncode == 0 and "No changes." in res.stdout, res.describe()


def test_first_runs_racing_store_one_key(tmp_path: Path) -> None:
    """Each first run makes a key and, once its plan stands, hard-links it into place:
    one link wins and is every later run's key; the others are told to run again
    (their digests were made with a key that is not the state's)."""
    stored: list[bytes] = []
    refused: list[str] = []
    start = threading.Barrier(12)

    def first_run() -> None:
        backend = LocalBackend(tmp_path / "rhplan.state.json")
        key = backend.digest_key()
        start.wait(timeout=30)
        try:
            backend.store_digest_key()
            stored.append(key)
        except StateError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=first_run) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(stored) == 1 and len(refused) == 11, (stored, refused)
    assert all("another rhplan stored a digest key while this one ran" in r and
               r.endswith("run the command again") for r in refused), refused
    assert sorted(p.name for p in (tmp_path / ".rhplan").iterdir()) == ["digest.key"]
    assert LocalBackend(tmp_path / "rhplan.state.json").digest_key() == stored[0]


def test_a_refused_plan_stores_no_key(secrets: Any) -> None:
    """The key is stored once a plan made with it stands: a plan refused after its
    secrets were digested leaves nothing behind."""
    rh = secrets
    rh.write(CONFIG + '\noutput "bad" {\n  value = secret.nope.keys\n}\n')
    line = rh("plan", f"-var=token={rh.token}").error_line()
    assert "secret.nope" in line, line
    assert not (rh.dir / ".rhplan").exists() and not rh.state_path.exists()


def test_a_damaged_key_is_one_line_naming_it(secrets: Any) -> None:
    rh = secrets
    key_path(rh).parent.mkdir(parents=True)
    key_path(rh).write_text("not a key\n")
    line = rh("plan", f"-var=token={rh.token}").error_line()
    assert line.startswith(f"Error: {key_path(rh)}: the digest key of this state is "
                           "damaged"), line
    assert "restore it, or delete it to make a new one" in line


def test_validate_makes_no_key(secrets: Any) -> None:
    rh = secrets
    rh("validate", f"-var=token={rh.token}").ok()
    assert not key_path(rh).exists()


def test_keyed_digests() -> None:
    a, b = digest.new_key(), digest.new_key()
    value = {"PW": SHORT}
    assert digest.keyed(a, value) == digest.keyed(a, {"PW": SHORT})
    assert digest.keyed(a, value) != digest.keyed(b, value)
    assert digest.keyed(a, value) != digest.keyed(a, {"PW": "hunter3"})
    assert digest.legacy_hex(value) not in digest.keyed(a, value)
    assert digest.key_id_of(digest.keyed(a, value)) == digest.key_id(a)
    assert not digest.is_keyed("sha256:" + digest.legacy_hex(value))
    assert digest.decode_key(digest.encode_key(a), "k") == a


def test_a_plain_digest_of_an_ssh_password_is_upgraded_in_place(tmp_path: Path) -> None:
    """Every sensitive attribute is upgraded the same way, in blocks too (the planner
    alone, no host: the recorded cluster is made from its own plan)."""
    from rhplan.config.inputs import resolve_variables
    from rhplan.config.load import load_config
    from rhplan.config.values import UNKNOWN
    from rhplan.plan.planner import Planner, PlanOptions
    from rhplan.provider import RunContext
    from rhplan.state import ResourceState, State

    (tmp_path / "main.hcl").write_text(f"""
cluster "onprem" {{
  provider = "ssh"
  ips      = ["10.0.0.5"]
  root_dir = "/srv/rh"
  ssh {{
    user     = "me"
    password = "{SHORT}"
  }}
}}
""")
    cfg = load_config(tmp_path)
    key = digest.new_key()

    def planner() -> Planner:
        ctx = RunContext(tmp_path)
        digest.use_key(ctx, lambda: key)
        return Planner(cfg, ctx, resolve_variables(cfg))

    created = planner().plan(State.new(), PlanOptions()).changes[0]
    attrs = {k: "recorded" if v is UNKNOWN else v for k, v in (created.after or {}).items()}
    assert digest.key_id_of(attrs["ssh"]["password"]) == digest.key_id(key)
    attrs["ssh"] = {**attrs["ssh"], "password": "sha256:" + digest.legacy_hex(SHORT)}
    state = State(lineage="l", serial=1, resources={"cluster.onprem": ResourceState(
        "cluster.onprem", "cluster", "onprem", "ssh", attrs)})
    plan = planner().plan(state, PlanOptions())
    assert [c.action for c in plan.changes if c.type == "cluster"] == ["no-op"]
    recorded = state.resources["cluster.onprem"].attributes["ssh"]["password"]
    assert digest.key_id_of(recorded) == digest.key_id(key)
