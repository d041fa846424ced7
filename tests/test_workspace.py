"""rhplan/workspace/, below the CLI: each Workspace method the commands call, in-process,
on real configuration folders and real state files (package blocks need no host; the
fakecloud cluster is the out-of-tree test provider of tests/plugins, planned only).
The views used are real ones of the ApplyView protocol that keep what they are shown.
End to end, through the CLI, the same behaviour is in test_state.py, test_saved_plans.py,
test_refresh_only.py and test_json_ui.py."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from rhplan.errors import RhplanError, StalePlanError
from rhplan.plan.model import Plan
from rhplan.workspace import StateWorkspace, Workspace, plan_options
from rhplan.workspace.apply_run import ApplyRequest

PACKAGES = """
package "p" {
  git_url        = "https://example.com/p.git"
  revision       = "v1"
  install_method = "pip"
}
package "q" {
  for_each       = toset(["a", "b"])
  git_url        = "https://example.com/${each.key}.git"
  revision       = "v1"
  install_method = "pip"
}
output "rev" { value = package.p.revision }
"""


class Kept:
    """An ApplyView that answers `answer` when asked and keeps what it was shown."""

    def __init__(self, answer: bool = True):
        self.answer = answer
        self.seen: list[str] = []
        self.lines: list[str] = []
        self.outputs: dict[str, Any] | None = None

    def plan(self, plan: Plan, notes: list[str], saved: bool) -> None:
        self.seen.append(f"plan saved={saved} changes={plan.has_changes}")

    def confirm(self, what: str) -> bool:
        self.seen.append(f"asked: {what}")
        return self.answer

    def cancelled(self) -> None:
        self.seen.append("cancelled")

    def line(self, text: str) -> None:
        self.lines.append(text)

    def recorded(self, outputs: dict[str, Any]) -> None:
        self.seen.append("recorded")
        self.outputs = outputs

    def unchanged(self, destroy: bool, outputs: dict[str, Any]) -> None:
        self.seen.append("unchanged")
        self.outputs = outputs

    def finished(self, result: Any, destroy: bool, outputs: dict[str, Any]) -> None:
        self.seen.append(f"finished ok={result.ok} added={result.added} "
                         f"destroyed={result.destroyed}")
        self.outputs = outputs


@pytest.fixture(autouse=True)
def _selected_workspace(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RHPLAN_WORKSPACE", "TF_WORKSPACE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "main.hcl").write_text(PACKAGES)
    return tmp_path


def applied(folder: Path) -> Workspace:
    """The folder with its packages applied (a real state file written by apply)."""
    ws = Workspace(folder)
    done = ws.apply_changes(ApplyRequest(plan_options(), auto_approve=True), Kept())
    assert done.how == "applied", done
    return ws


def state_file(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "rhplan.state.json").read_text())


# ---- apply and destroy ----------------------------------------------------------------
def test_apply_asks_applies_then_has_nothing_to_do(folder: Path) -> None:
    no = Kept(answer=False)
    done = Workspace(folder).apply_changes(ApplyRequest(plan_options()), no)
    assert (done.how, done.ok) == ("cancelled", False)
    assert no.seen == ["plan saved=False changes=True", "asked: perform these actions",
                       "cancelled"]
    assert not (folder / "rhplan.state.json").exists()  # nothing written

    yes = Kept()
    done = Workspace(folder).apply_changes(ApplyRequest(plan_options()), yes)
    assert done.how == "applied" and done.result is not None and done.result.added == 3
    assert yes.seen[-1] == "finished ok=True added=3 destroyed=0"
    assert yes.outputs is not None and yes.outputs["rev"]["value"] == "v1"
    assert any(line.startswith("package.p: Creating") for line in yes.lines)

    again = Kept()
    done = Workspace(folder).apply_changes(ApplyRequest(plan_options()), again)
    assert done.how == "unchanged"
    assert again.seen == ["plan saved=False changes=False", "unchanged"]


def test_destroy_asks_its_own_question(folder: Path) -> None:
    applied(folder)
    view = Kept()
    done = Workspace(folder).apply_changes(ApplyRequest(plan_options(destroy=True)), view)
    assert done.how == "applied" and done.destroy
    assert "asked: destroy all resources" in view.seen
    assert view.seen[-1] == "finished ok=True added=0 destroyed=3"
    assert not state_file(folder)["resources"]


def test_refresh_only_with_nothing_found_records_nothing(folder: Path) -> None:
    applied(folder)
    serial = state_file(folder)["serial"]
    view = Kept()
    done = Workspace(folder).apply_changes(
        ApplyRequest(plan_options(refresh_only=True), auto_approve=True), view)
    assert done.how == "nothing" and view.seen == ["plan saved=False changes=False"]
    assert state_file(folder)["serial"] == serial


@pytest.mark.parametrize("flags, error", [
    ({"destroy": True}, "-refresh-only and -destroy cannot be used together"),
    ({"refreshing": False}, "-refresh-only with -refresh=false has nothing to do"),
    ({"replace": ["package.p"]}, "-replace cannot be used with -refresh-only"),
])
def test_refresh_only_takes_no_other_mode(flags: dict[str, Any], error: str) -> None:
    with pytest.raises(RhplanError, match=error):
        plan_options(refresh_only=True, **flags)


def test_plan_options_are_the_flags() -> None:
    opts = plan_options(True, ("package.p",), ("package.q",))
    assert (opts.destroy, opts.targets, opts.replace, opts.refresh_only) == (
        True, ["package.p"], ["package.q"], False)


# ---- saved plans --------------------------------------------------------------------
def test_a_saved_plan_applies_once_from_the_file_the_user_named(folder: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    ws = Workspace(folder)
    with ws.backend.locked("plan"):
        p, _, refreshed = ws.make_plan(plan_options(), saving=True)
    ws.save_plan(p, refreshed, "saved.plan")  # relative: under the folder
    assert (folder / "saved.plan").stat().st_mode & 0o777 == 0o600
    monkeypatch.chdir(folder.parent)
    view = Kept()
    done = Workspace(folder).apply_changes(ApplyRequest(plan_options(), plan_file="saved.plan"),
                                           view)
    assert done.how == "applied" and view.seen[0] == "plan saved=True changes=True"
    assert "asked" not in " ".join(view.seen)  # a saved plan is approved already
    with pytest.raises(StalePlanError, match="saved.plan is stale|made for another state"):
        Workspace(folder).apply_changes(ApplyRequest(plan_options(), plan_file="saved.plan"),
                                        Kept())


def test_a_fakecloud_plan_saved_and_made_again_matches(tmp_path: Path) -> None:
    (tmp_path / "main.hcl").write_text('cluster "fc" {\n  provider = "fakecloud"\n}\n')
    ws = Workspace(tmp_path)
    p, _, refreshed = ws.make_plan(plan_options(), saving=True)
    assert ("cluster.fc", "create") in [(c.address, c.action) for c in p.changes]
    ws.save_plan(p, refreshed, str(tmp_path / "fc.plan"))  # absolute: as given
    saved, again, _, _ = Workspace(tmp_path).replan_file(str(tmp_path / "fc.plan"))
    assert [c.to_key() for c in again.changes] == [c.to_key() for c in saved.changes]


# ---- refresh, state commands --------------------------------------------------------
def test_refresh_state_writes_only_what_changed(folder: Path) -> None:
    applied(folder)
    serial = state_file(folder)["serial"]
    found = Workspace(folder).refresh_state()
    assert (found.updated, found.drift, found.gone()) == (False, [], set())
    assert found.providers()["package.p"] == found.before.resources["package.p"].provider
    assert state_file(folder)["serial"] == serial


def test_state_commands_need_no_configuration_until_used(tmp_path: Path) -> None:
    ws = StateWorkspace(tmp_path / "missing")
    with pytest.raises(RhplanError, match="is not a resource address"):
        ws.move("bad addr", "package.x", dry_run=True, each=lambda a, b: None)
    with pytest.raises(RhplanError, match="does not exist; pass -chdir=DIR"):
        ws.addresses()


def test_files_the_user_names_are_read_as_given_else_under_chdir(
        folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder.parent)
    ws = StateWorkspace(folder.name)
    (folder / "here.json").write_text("{}")
    assert ws.user_file("here.json") == Path(folder.name) / "here.json"
    (folder.parent / "cwd.json").write_text("{}")
    assert ws.user_file("cwd.json") == Path("cwd.json")
    assert ws.out_file("cwd.json") == Path(folder.name) / "cwd.json"  # written under -chdir
    assert ws.out_file("/abs/x.plan") == Path("/abs/x.plan")


def test_addresses_remove_and_move(folder: Path) -> None:
    applied(folder)
    ws = StateWorkspace(folder)
    assert ws.addresses() == ["package.p", 'package.q["a"]', 'package.q["b"]']
    assert ws.addresses(["package.q"]) == ['package.q["a"]', 'package.q["b"]']

    heard: list[tuple[str, str]] = []
    assert ws.move("package.q", "package.r", True, lambda a, b: heard.append((a, b))) == 2
    assert heard[0] == ('package.q["a"]', 'package.r["a"]')
    assert ws.addresses(["package.r"]) == []  # a dry run writes nothing
    with pytest.raises(RhplanError, match="keep the type"):
        ws.move("package.q", "cluster.x", False, lambda a, b: None)
    with pytest.raises(RhplanError, match='package.q\\["a"\\] is already in the state'):
        ws.move("package.p", 'package.q["a"]', False, lambda a, b: None)
    ws.move('package.q["b"]', "package.z", False, lambda a, b: None)
    assert ws.addresses() == ["package.p", 'package.q["a"]', "package.z"]

    gone: list[str] = []
    assert ws.remove(["package.q", "package.z"], False, gone.append) == 2
    assert gone == ['package.q["a"]', "package.z"]
    assert [r["address"] for r in state_file(folder)["resources"]] == ["package.p"]
    with pytest.raises(RhplanError, match="no package.nope in the state"):
        ws.remove(["package.nope"], False, gone.append)


def test_push_refuses_another_lineage_or_an_older_serial_unless_forced(folder: Path) -> None:
    applied(folder)
    ws = StateWorkspace(folder)
    pulled = ws.pull()
    again = ws.push("-", False, io.BytesIO(json.dumps(pulled).encode()))
    assert again.serial == pulled["serial"] + 1  # written as the next serial
    older = {**pulled, "serial": pulled["serial"] - 1}
    (folder / "older.json").write_text(json.dumps(older))
    with pytest.raises(RhplanError, match="lower than the current state's"):
        ws.push("older.json", False)
    assert ws.push("older.json", True).serial == pulled["serial"] + 2  # max, then the next
    assert state_file(folder)["serial"] == pulled["serial"] + 2
    other = {**pulled, "lineage": "00000000-0000-0000-0000-000000000000"}
    with pytest.raises(RhplanError, match="another configuration's state"):
        ws.push("-", False, io.BytesIO(json.dumps(other).encode()))
    with pytest.raises(RhplanError, match="cannot read nofile.json"):
        ws.push("nofile.json", False)


def test_outputs_status_and_the_state_view(folder: Path) -> None:
    with pytest.raises(RhplanError, match="none \\(run rhplan apply\\)"):
        StateWorkspace(folder).output("rev")
    applied(folder)
    ws = StateWorkspace(folder)
    assert ws.output("rev") == "v1" and set(ws.outputs()) == {"rev"}
    with pytest.raises(RhplanError, match="no output 'nope' in the state; outputs: rev"):
        ws.output("nope")
    assert ws.status().clusters == []  # no cluster: nothing to ask
    state, hidden = Workspace.for_reading(folder).state_view()
    assert sorted(state.resources) == ["package.p", 'package.q["a"]', 'package.q["b"]']
    assert hidden == {}
