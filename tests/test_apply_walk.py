"""The apply walk, in-process: rhplan/apply/walk.py on graphs of plain step names (the
order steps start in, how many run at once, what a failure, a block, an interrupt or a
cycle stops), then rhplan.apply.Applier on real plans of a real configuration folder
(the order of creates and deletes, a failed step stopping only what depends on it).
Steps are real Python callables run on the walk's own thread pool; nothing here starts
a process, so the file runs in about a second."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rhplan.apply import ApplyResult
from rhplan.apply.walk import walk
from rhplan.workspace import Workspace, plan_options


class Steps:
    """The steps of one walk: each records when it starts and ends; a step named in
    `fail` raises, one with an action in `do` runs it first."""

    def __init__(self, fail: dict[str, Exception] | None = None,
                 do: dict[str, object] | None = None):
        self.fail = fail or {}
        self.do = do or {}
        self.events: list[str] = []  # "+a" when a starts, "-a" when it ends
        self.running = 0
        self.most = 0  # the most steps ever running at once
        self.failed: list[tuple[str, Exception]] = []
        self.skipped: list[str] = []
        self._lock = threading.Lock()

    def run(self, name: str) -> None:
        with self._lock:
            self.events.append(f"+{name}")
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            action = self.do.get(name)
            if callable(action):
                action()
            if name in self.fail:
                raise self.fail[name]
        finally:
            with self._lock:
                self.running -= 1
                self.events.append(f"-{name}")

    def started(self) -> list[str]:
        return [e[1:] for e in self.events if e[0] == "+"]

    def walk(self, g: dict[str, list[str]], parallelism: int = 1, **kw: object) -> None:
        walk(g, self.run, parallelism, failed=lambda a, e: self.failed.append((a, e)),
             skipped=self.skipped, **kw)  # type: ignore[arg-type]


# ---- order ----------------------------------------------------------------------------
def test_a_step_starts_after_everything_it_waits_for_has_finished() -> None:
    # d waits for b and c, which wait for a (g: step -> the steps that wait for it)
    s = Steps()
    s.walk({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}, parallelism=4)
    ev = s.events
    assert ev.index("-a") < min(ev.index("+b"), ev.index("+c"))
    assert ev.index("+d") > max(ev.index("-b"), ev.index("-c"))
    assert sorted(s.started()) == ["a", "b", "c", "d"] and not s.skipped and not s.failed


def test_ready_steps_start_in_name_order() -> None:
    # b and c are ready first: b (name order); then a (freed by b) comes before c
    s = Steps()
    s.walk({"c": [], "b": ["a"], "a": []}, parallelism=1)
    assert s.started() == ["b", "a", "c"]
    s = Steps()
    s.walk({f"s{i:02d}": [] for i in reversed(range(12))}, parallelism=1)
    assert s.started() == [f"s{i:02d}" for i in range(12)]


# ---- parallelism ----------------------------------------------------------------------
def test_up_to_parallelism_steps_run_at_once_and_never_more() -> None:
    # each step waits until two others run beside it: the walk must start three at once
    three = threading.Barrier(3, timeout=10)
    s = Steps(do={f"s{i}": three.wait for i in range(6)})
    s.walk({f"s{i}": [] for i in range(6)}, parallelism=3)
    assert s.most == 3 and not s.failed, s.failed
    assert len(s.started()) == 6


def test_parallelism_one_runs_one_step_at_a_time() -> None:
    s = Steps()
    s.walk({f"s{i}": [] for i in range(8)}, parallelism=1)
    assert s.most == 1 and len(s.started()) == 8
    assert all(s.events[i][1:] == s.events[i + 1][1:] for i in range(0, 16, 2))


# ---- failures, blocks, interrupts, cycles ----------------------------------------------
def test_a_failed_step_stops_only_what_waits_for_it() -> None:
    boom = RuntimeError("boom")
    s = Steps(fail={"a": boom})
    # a -> b -> c fail together; x -> y are independent; z waits for a and for x
    s.walk({"a": ["b", "z"], "b": ["c"], "c": [], "x": ["y", "z"], "y": [], "z": []},
           parallelism=2)
    assert s.failed == [("a", boom)]  # the exception itself, once
    assert sorted(s.skipped) == ["b", "c", "z"]
    assert sorted(s.started()) == ["a", "x", "y"]


def test_failures_in_both_branches_skip_each_branch_once() -> None:
    s = Steps(fail={"a": ValueError("a"), "x": ValueError("x")})
    s.walk({"a": ["b", "m"], "b": [], "x": ["y", "m"], "y": [], "m": []}, parallelism=2)
    assert sorted(a for a, _ in s.failed) == ["a", "x"]
    assert sorted(s.skipped) == ["b", "m", "y"]  # m waits for both: skipped once
    assert sorted(s.started()) == ["a", "x"]


def test_blocked_steps_and_what_waits_for_them_never_start() -> None:
    """A replace whose delete failed is blocked in the create walk: it is not created,
    nor is what waits for it; it is not listed again (its delete's failure says so).
    (Before, the blocked step itself ran, and one with a dependent crashed the walk
    with a KeyError.)"""
    s = Steps()
    s.walk({"a": ["b"], "b": ["c"], "c": [], "d": []}, parallelism=2,
           blocked={"b", "not-in-this-walk"})
    assert s.skipped == ["c"]
    assert sorted(s.started()) == ["a", "d"] and not s.failed
    # a blocked step that waits for another blocked one is listed by neither
    s = Steps()
    s.walk({"cluster": ["env", "pkg"], "env": ["job"], "pkg": [], "job": []}, parallelism=2,
           blocked={"env", "cluster"})
    assert s.skipped == ["job", "pkg"] and s.started() == []


def test_an_interrupt_starts_nothing_new_but_lets_running_steps_finish() -> None:
    stop = threading.Event()
    b_may_finish = threading.Event()

    def a() -> None:  # the interrupt arrives while b is running
        stop.set()
        b_may_finish.set()

    s = Steps(do={"a": a, "b": lambda: b_may_finish.wait(10)})
    s.walk({"a": [], "b": [], "c": [], "d": ["e"], "e": []}, parallelism=2,
           interrupted=stop.is_set)
    assert sorted(s.started()) == ["a", "b"]
    assert s.events.count("-b") == 1  # b was not abandoned
    assert s.skipped == ["c", "d", "e"] and not s.failed


def test_a_cycle_runs_none_of_its_steps_and_does_not_hang() -> None:
    s = Steps()
    s.walk({"a": ["b"], "b": ["a"], "c": []}, parallelism=2)
    assert s.started() == ["c"]
    assert s.skipped == ["a", "b"]


# ---- the Applier: a real plan ---------------------------------------------------------
PACKAGES = """
package "a" {
  git_url        = "https://example.com/a.git"
  revision       = "v1"
  install_method = "pip"
}
package "b" {
  git_url        = "https://example.com/b.git"
  revision       = package.a.revision
  install_method = "pip"
}
package "c" {
  git_url        = "https://example.com/c.git"
  revision       = package.b.revision
  install_method = "pip"
}
"""


def apply_folder(folder: Path, destroy: bool = False) -> tuple[ApplyResult, list[str]]:
    """Plan and apply the folder, as `apply -auto-approve` does; the apply's lines."""
    ws = Workspace(folder)
    lines: list[str] = []
    with ws.backend.locked("apply"):
        plan, planner, refreshed = ws.make_plan(plan_options(destroy=destroy))
        result = ws.apply(plan, planner, refreshed, 10, lines.append)
    return result, lines


def test_creates_follow_references_and_deletes_go_the_other_way(tmp_path: Path) -> None:
    (tmp_path / "main.hcl").write_text(PACKAGES)
    result, lines = apply_folder(tmp_path)
    assert (result.ok, result.added) == (True, 3), lines
    done = [line.split(":")[0] for line in lines if "Creation complete" in line]
    assert done == ["package.a", "package.b", "package.c"]
    for first, then in (("a", "b"), ("b", "c")):
        assert lines.index(next(x for x in lines if x.startswith(f"package.{first}: Creation"))) \
            < lines.index(f"package.{then}: Creating...")

    result, lines = apply_folder(tmp_path, destroy=True)
    assert (result.ok, result.destroyed) == (True, 3), lines
    done = [line.split(":")[0] for line in lines if "Destruction complete" in line]
    assert done == ["package.c", "package.b", "package.a"]
    assert not Workspace(tmp_path).backend.read().resources


def test_a_failed_create_skips_its_dependents_and_records_the_rest(tmp_path: Path) -> None:
    """The fakecloud cluster (the test provider of tests/plugins) cannot make its machine
    folder: a file is in the way. Its env is skipped; the packages, independent, are
    applied and recorded."""
    (tmp_path / "main.hcl").write_text(
        'cluster "fc" {\n  provider = "fakecloud"\n}\n'
        'env "app" {\n  cluster = cluster.fc\n}\n' + PACKAGES)
    cloud = tmp_path / ".rhplan" / "fakecloud"
    cloud.mkdir(parents=True)
    (cloud / "fc").write_text("in the way")
    result, lines = apply_folder(tmp_path)
    assert not result.ok
    assert list(result.failed) == ["cluster.fc"]
    # not a RhplanError: reported with its type, as an unexpected error
    assert result.failed["cluster.fc"].startswith("NotADirectoryError: "), result.failed
    assert f"Error: cluster.fc: {result.failed['cluster.fc']}" in lines
    assert result.skipped == ["env.app"] and result.added == 3
    assert not any(line.startswith("env.app") for line in lines), lines
    recorded = Workspace(tmp_path).backend.read().resources
    assert sorted(recorded) == ["package.a", "package.b", "package.c"]


@pytest.mark.parametrize("parallelism", [0, -3])
def test_the_applier_runs_at_least_one_step_at_a_time(tmp_path: Path, parallelism: int) -> None:
    (tmp_path / "main.hcl").write_text(PACKAGES)
    ws = Workspace(tmp_path)
    lines: list[str] = []
    with ws.backend.locked("apply"):
        plan, planner, refreshed = ws.make_plan(plan_options())
        result = ws.apply(plan, planner, refreshed, parallelism, lines.append)
    assert (result.ok, result.added) == (True, 3), lines
