"""State model round trips, atomic writes with backups, and flock-based locking."""
from __future__ import annotations

import json
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

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
        private={"venv": "/opt/rhplan/envs/np_env"},
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
        f"{path}: state file is not valid JSON (line 3): restore {path}.backup or fix it"
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
