"""State model round trips, atomic writes with backups, and flock-based locking, with
the proof that clears a lock left by a process that is gone."""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from state_backends import dead_pid, info_of, race_for_lock

from rhplan.errors import StateError, StateLockedError
from rhplan.state import LocalBackend, LockInfo, ResourceState, State

# Bound on every wait for the child process: generous, but a hang fails the test.
CHILD_TIMEOUT = 30.0

# Holds the lock from another process until its stdin closes (or it is killed).
HOLDER = """
import json, sys
from rhplan.state import LocalBackend
backend = LocalBackend(sys.argv[1])  # kept alive: the lock lives as long as it does
info = backend.lock("apply")
print(json.dumps(info.to_json()), flush=True)
sys.stdin.read()
"""


def _sample_state() -> State:
    state = State.new()
    state.resources["env.np_env"] = ResourceState(
        address="env.np_env",
        type="env",
        name="np_env",
        provider="local",
        attributes={"reqs": ["pip:numpy==1.26.4"], "env_vars": {"USER": "me"}},
        dependencies=["cluster.rh-cpu"],
        private={"venv": "/opt/rhplan/hosts/envs/np_env"},
    )
    state.resources["cluster.rh-cpu"] = ResourceState(
        address="cluster.rh-cpu",
        type="cluster",
        name="rh-cpu",
        provider="local",
        attributes={"ips": ["127.0.0.1"]},
    )
    state.outputs["head_ip"] = {"value": "127.0.0.1", "sensitive": False}
    return state


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], LockInfo]]:
    """A child process holding the lock on tmp_path/state.json, and its LockInfo."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "state.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], CHILD_TIMEOUT)
        assert ready, "lock holder did not report within the timeout"
        line = proc.stdout.readline()
        assert line, f"lock holder exited early with code {proc.wait(CHILD_TIMEOUT)}"
        yield proc, LockInfo.from_json(json.loads(line))
    finally:
        proc.kill()
        proc.wait(CHILD_TIMEOUT)


# -- model ---------------------------------------------------------------------


def test_round_trip() -> None:
    state = _sample_state()
    data = state.to_json()
    assert list(data) == [
        "format_version", "rhplan_version", "serial", "lineage", "resources", "outputs",
    ]
    assert [r["address"] for r in data["resources"]] == ["cluster.rh-cpu", "env.np_env"]
    assert list(data["resources"][1]) == [
        "address", "type", "name", "provider", "attributes", "dependencies", "private",
    ]
    again = State.from_json(json.loads(json.dumps(data)), source="mem")
    assert again == state


def test_copy_is_deep() -> None:
    state = _sample_state()
    other = state.copy()
    other.resources["env.np_env"].attributes["reqs"].append("pip:pandas")
    assert state.resources["env.np_env"].attributes["reqs"] == ["pip:numpy==1.26.4"]


def test_new_states_have_distinct_lineages() -> None:
    assert State.new().lineage != State.new().lineage
    assert State.new().serial == 0


def test_newer_format_version_says_upgrade() -> None:
    data = _sample_state().to_json()
    data["format_version"] = State.FORMAT_VERSION + 1
    with pytest.raises(StateError, match=r"^remote/key: .*upgrade rhplan"):
        State.from_json(data, source="remote/key")


# A state file as rhplan wrote it before a cluster's private record was split (format
# 1): recorded from a real apply of a fakecloud cluster (tests/plugins) and its env.
FORMAT_1 = Path(__file__).parent / "state_cases" / "format1_fakecloud.json"


def test_a_format_1_state_is_upgraded_on_read() -> None:
    old = json.loads(FORMAT_1.read_text())
    assert old["format_version"] == 1
    state = State.from_json(old, source=str(FORMAT_1))
    cluster, env = state.resources["cluster.fc"], state.resources["env.fc_default"]
    flat = next(r["private"] for r in old["resources"] if r["address"] == "cluster.fc")
    # the provider's keys and the core's Ray record, each in its own part
    assert cluster.provider_private == {"machine": flat["machine"],
                                        "machine_id": flat["machine_id"]}
    assert cluster.private == {k: v for k, v in flat.items() if k.startswith("ray_")}
    assert {"ray_temp_dir", "ray_token_path", "ray_worker_temp_dirs"} <= set(cluster.private)
    # an env's private record stays one object (it has no provider of its own)
    assert env.private == old["resources"][1]["private"] and not env.provider_private
    written = json.loads(state.dumps())
    assert written["format_version"] == State.FORMAT_VERSION == 2
    assert written["resources"][0]["private"] == {"ray": cluster.private,
                                                  "provider": cluster.provider_private}
    assert State.from_json(written, source="again") == state


def test_a_format_1_resource_of_the_wrong_shape_is_refused_in_one_line() -> None:
    # the upgrade leaves what it cannot read to the reader (found by test_fuzz_inputs:
    # a type that was an object made the upgrade raise TypeError)
    old = json.loads(FORMAT_1.read_text())
    old["resources"][0]["type"] = {"cluster": 1}
    with pytest.raises(StateError, match=r"^old\.json: "):
        State.from_json(old, source="old.json")


def test_a_cluster_private_record_of_another_shape_is_refused() -> None:
    data = _sample_state().to_json()
    data["resources"][0]["private"] = {"ray": {}, "instances": []}
    with pytest.raises(StateError, match=r"^s\.json: .*cluster\.rh-cpu.*ray and provider"):
        State.from_json(data, source="s.json")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("lineage"),
        lambda d: d.update(resources={"env.x": {}}),
        lambda d: d["resources"][0].pop("attributes"),
        lambda d: d.update(outputs={"x": 1}),
        lambda d: d.update(format_version="1"),
    ],
)
def test_wrong_shape_names_source(mutate: object) -> None:
    data = _sample_state().to_json()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(StateError, match=r"^s\.json: "):
        State.from_json(data, source="s.json")


# -- local backend: read and write ----------------------------------------------


def test_read_missing_file_gives_fresh_state(tmp_path: Path) -> None:
    state = LocalBackend(tmp_path / "state.json").read()
    assert state.serial == 0 and state.resources == {}


def test_write_bumps_serial_and_keeps_backup(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    backend = LocalBackend(path)
    state = _sample_state()
    backend.write(state)
    assert state.serial == 1
    assert not (tmp_path / "state.json.backup").exists()

    del state.resources["env.np_env"]
    backend.write(state)
    assert state.serial == 2
    assert backend.read() == state
    previous = json.loads((tmp_path / "state.json.backup").read_text())
    assert previous["serial"] == 1
    assert "env.np_env" in [r["address"] for r in previous["resources"]]


def test_write_leaves_no_temp_files(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state.json")
    state = State.new()
    for _ in range(3):
        backend.write(state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.backup"]


def test_concurrent_writes_from_threads(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state.json")
    state = State.new()
    threads = [threading.Thread(target=backend.write, args=(state,)) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CHILD_TIMEOUT)
    assert state.serial == 16
    assert backend.read().serial == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.backup"]


def test_bad_json_is_a_one_line_state_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{\n  "serial": 1,\n  oops\n}\n')
    with pytest.raises(StateError) as exc:
        LocalBackend(path).read()
    msg = str(exc.value)
    assert msg == (
        f"{path}: not a state file (invalid JSON at line 3: Expecting property name enclosed "
        f"in double quotes); restore {path}.backup or fix it"
    )
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


# -- local backend: locking -----------------------------------------------------


def test_lock_and_unlock(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "state.json")
    with backend.locked("plan") as info:
        assert info.operation == "plan"
        assert backend.lock_info() == info
        with pytest.raises(StateLockedError, match=info.id):
            LocalBackend(tmp_path / "state.json").lock("apply")
    assert backend.lock_info() is None
    backend.unlock(backend.lock("apply").id)


def test_lock_held_by_another_process(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], LockInfo]
) -> None:
    proc, held = holder
    backend = LocalBackend(tmp_path / "state.json")
    with pytest.raises(StateLockedError) as exc:
        backend.lock("apply")
    msg = str(exc.value)
    assert f"pid {proc.pid}" in msg
    assert f"rhplan force-unlock {held.id}" in msg

    # flock dies with its process: no stale lock after a SIGKILL.
    proc.kill()
    proc.wait(CHILD_TIMEOUT)
    info = backend.lock("apply")
    assert info.id != held.id and backend.lock_info() == info
    backend.unlock(info.id)


def test_force_unlock_frees_a_hung_holder(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], LockInfo]
) -> None:
    proc, held = holder
    backend = LocalBackend(tmp_path / "state.json")
    with pytest.raises(StateError, match=held.id):
        backend.force_unlock("not-the-id")
    backend.force_unlock(held.id)
    assert proc.poll() is None  # the holder still runs, yet no longer blocks us
    info = backend.lock("apply")
    backend.unlock(info.id)


def test_force_unlock_without_a_lock(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no lock is held on"):
        LocalBackend(tmp_path / "state.json").force_unlock("x")


# -- proof that a lock's holder is gone ------------------------------------------------


def test_lock_info_records_what_proves_its_holder_gone() -> None:
    info = LockInfo.new("apply", "state.json")
    assert info.pid == os.getpid() and f"pid {os.getpid()}" in info.who
    assert info.host == socket.gethostname()
    assert info.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    assert info.start_time == int(stat.rpartition(")")[2].split()[19])  # field 22
    assert LockInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    assert not info.gone()  # this very process


def test_gone_needs_proof() -> None:
    me = os.getpid()
    assert info_of(dead_pid()).gone()  # pid no longer runs
    assert info_of(me, start_time=info_of(me).start_time + 1).gone()  # pid reused
    zombie = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    try:
        held = info_of(zombie.pid)
        assert not held.gone()  # alive, with the start time it recorded
        assert zombie.stdin is not None
        zombie.stdin.close()  # it exits; not reaped yet, it holds nothing
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not held.gone():
            assert time.monotonic() < deadline, "an exited, unreaped child is not seen as gone"
            time.sleep(0.01)
        assert Path(f"/proc/{zombie.pid}/stat").exists()  # still a zombie, yet gone
    finally:
        zombie.wait(CHILD_TIMEOUT)
    dead = dead_pid()
    # no proof: another host, another boot, another pid namespace, or old lock info
    assert not info_of(dead, host="build-7").gone()
    assert not info_of(dead, boot_id=str(uuid.uuid4())).gone()
    assert not info_of(dead, pid_ns="pid:[1]").gone()
    old = LockInfo.from_json({"id": "x", "who": f"me@h pid {dead}", "operation": "apply",
                              "created": "2024-01-01T00:00:00Z", "path": "p"})
    assert old.pid is None and old.boot_id is None and not old.gone()


def test_killed_holder_leaves_info_the_next_lock_clears_with_a_notice(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], LockInfo]
) -> None:
    proc, held = holder
    proc.kill()
    proc.wait(CHILD_TIMEOUT)
    backend = LocalBackend(tmp_path / "state.json")
    assert backend.lock_info() == held  # the kernel dropped the flock, the info stays
    notices: list[str] = []
    backend.notify = notices.append
    info = backend.lock("plan")
    assert notices == [f"Note: cleared the lock of {held.who} (apply since {held.created}, "
                       f"lock ID {held.id}): that process is gone"]
    assert backend.lock_info() == info
    backend.unlock(info.id)


def test_one_of_many_contenders_clears_a_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    stale = info_of(dead_pid())
    Path(f"{path}.lock.info").write_text(json.dumps(stale.to_json()))
    backends = [LocalBackend(path) for _ in range(10)]
    notices: list[str] = []
    for b in backends:
        b.notify = notices.append
    won, refused = race_for_lock(backends)
    assert len(won) == 1 and len(refused) == 9 and len(notices) == 1, (won, refused, notices)
    assert all(f"lock ID {won[0][1].id}" in r for r in refused), refused  # named the winner
    assert stale.id in notices[0]


def test_holder_that_wrote_no_info_is_named_by_its_flock(tmp_path: Path) -> None:
    """A process holds the flock but has not (yet) said who it is, and the info there
    is a dead process's: after a short wait the error names the flock's real holder
    from /proc/locks, never the dead one, and never says to delete the lock file."""
    path = tmp_path / "state.json"
    Path(f"{path}.lock.info").write_text(json.dumps(info_of(dead_pid()).to_json()))
    proc = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a+b'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         f"{path}.lock"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        t0 = time.monotonic()
        with pytest.raises(StateLockedError) as exc:
            LocalBackend(path).lock("apply")
        assert 1.5 < time.monotonic() - t0 < CHILD_TIMEOUT
        assert str(exc.value) == (
            f"state {path} is locked by process {proc.pid}, which has not recorded who it "
            f"is in {path}.lock.info; wait for it to finish (it holds a flock on "
            f"{path}.lock: never delete that file while it runs)")
    finally:
        proc.kill()
        proc.wait(CHILD_TIMEOUT)


def test_lock_info_from_another_machine_is_not_cleared_by_a_flock(tmp_path: Path) -> None:
    """On a shared folder the other machine's flock may not reach us: our flock
    proves nothing, so its info is refused until force-unlock."""
    path = tmp_path / "state.json"
    foreign = info_of(4242, host="build-7", boot_id=str(uuid.uuid4()),
                       who="ci@build-7 pid 4242")
    Path(f"{path}.lock.info").write_text(json.dumps(foreign.to_json()))
    backend = LocalBackend(path)
    for _ in range(2):
        with pytest.raises(StateLockedError) as exc:
            backend.lock("apply")
        assert f"locked by ci@build-7 pid 4242 (apply since {foreign.created}" in str(exc.value)
    assert backend.force_unlock(foreign.id) == foreign
    backend.unlock(backend.lock("apply").id)
