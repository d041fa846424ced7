"""Saved plans (issue 11, item 6): `apply FILE` never trusts the file's prior_state.

A plan records the digest of the state it read and whether its refresh changed it;
apply checks that digest against the backend's state, derives the refreshed state
itself (refreshing again when the plan's refresh changed something), and refuses a
file whose prior_state differs from what it derived: an edited private block, an
attribute, an output, a resource left out, even at the same serial.

The secrets-only configurations apply without touching any host; one test drives a
local cluster whose env drifted, so its plan's refresh found something.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

UV = str(Path(sys.executable).parent / "uv")

SECRETS = """
secret "a" {
  values = { K = "v1" }
}

secret "b" {
  values = { K = "b" }
}

output "keys" {
  value = secret.a.keys
}
"""


def edited(plan: Path, out: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads(plan.read_text())
    change(doc)
    out.write_text(json.dumps(doc, indent=1))
    return out


def resource(doc: dict[str, Any], address: str) -> dict[str, Any]:
    return next(r for r in doc["prior_state"]["resources"] if r["address"] == address)


def _private(doc: dict[str, Any]) -> None:
    resource(doc, "secret.b")["private"] = {"ray_temp_dir": "/"}


def _attribute(doc: dict[str, Any]) -> None:
    resource(doc, "secret.b")["attributes"]["keys"] = ["K", "EXTRA"]


def _output(doc: dict[str, Any]) -> None:
    doc["prior_state"]["outputs"]["keys"]["value"] = ["X"]


def _resource_left_out(doc: dict[str, Any]) -> None:
    doc["prior_state"]["resources"] = [r for r in doc["prior_state"]["resources"]
                                       if r["address"] != "secret.b"]


def _dependency(doc: dict[str, Any]) -> None:
    resource(doc, "secret.b")["dependencies"] = ["secret.a"]


def _refresh_claimed(doc: dict[str, Any]) -> None:
    # saying the refresh changed something makes apply refresh again: it derives the
    # same state, so the edited private block is still found
    doc["refresh_changed"] = True
    _private(doc)


EDITS = {
    "private": (_private, "secret.b differs in private"),
    "attribute": (_attribute, "secret.b differs in attributes.keys"),
    "output": (_output, "the state differs in outputs"),
    "resource left out": (_resource_left_out, "secret.b is in the state but not in the plan"),
    "dependency": (_dependency, "secret.b differs in dependencies"),
    "refresh claimed": (_refresh_claimed, "secret.b differs in private"),
}


@pytest.fixture
def planned(rh: Any) -> Any:
    """Secrets applied, then one changed and planned with -out."""
    rh.keep = True  # secrets only: nothing behind them to destroy
    rh.write(SECRETS)
    rh("apply", "-auto-approve").ok()
    rh.edit('K = "v1"', 'K = "v2"')
    res = rh("plan", "-out", "p.json").ok()
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in res.stdout
    return rh


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_prior_state_is_refused_and_the_untouched_plan_applies(
        planned: Any, edit: str) -> None:
    rh = planned
    change, words = EDITS[edit]
    bad = edited(rh.dir / "p.json", rh.dir / "edited.json", change)
    state = rh.state_path.read_bytes()
    line = rh("apply", bad.name).error_line()
    assert line.startswith("Error: the saved plan edited.json was made from a different "
                           "state ("), line
    assert words in line, line
    assert line.endswith("; run rhplan plan -out edited.json again"), line
    assert rh.state_path.read_bytes() == state, "a refused plan changed the state"
    # the plan as saved still applies, and does what it said
    rh("apply", "p.json").ok()
    assert rh.state()["serial"] == json.loads(state)["serial"] + 1
    assert "No changes." in rh("plan").ok().stdout


def test_a_state_edited_at_the_same_serial_refuses_the_plan(planned: Any) -> None:
    """The plan's digest of the state it read no longer matches the backend's."""
    rh = planned
    doc = rh.state()
    next(r for r in doc["resources"] if r["address"] == "secret.b")["private"] = {"x": 1}
    rh.state_path.write_text(json.dumps(doc, indent=2))
    state = rh.state_path.read_bytes()
    line = rh("apply", "p.json").error_line()
    assert line == (f"Error: the saved plan p.json was made from a different state (the "
                    f"recorded state does not match the one it was planned from, at the same "
                    f"serial {doc['serial']}); run rhplan plan -out p.json again"), line
    assert rh.state_path.read_bytes() == state


def test_a_plan_file_of_the_previous_format_is_refused(planned: Any) -> None:
    rh = planned
    old = edited(rh.dir / "p.json", rh.dir / "old.json",
                 lambda d: (d.update(format_version=1), d.pop("state_digest")))
    line = rh("apply", old.name).error_line()
    assert "old.json is not an rhplan plan file (or was made by another version)" in line


def test_a_plan_whose_refresh_found_drift_still_applies(rh: Any) -> None:
    """The plan's refresh found an uninstalled package: apply refreshes again (it never
    takes the refreshed state from the file), finds the same, and applies; an edit to
    the refreshed part of the file is refused."""
    rh.write("""
        cluster "main" {
          provider = "local"
        }

        env "app" {
          cluster = cluster.main
          reqs    = ["six==1.16.0"]
        }
    """)
    rh("apply", "-auto-approve").ok()
    env = rh.env_dir("main", "app")
    subprocess.run([UV, "pip", "uninstall", "--python", str(env / "bin" / "python"), "six"],
                   check=True, capture_output=True, timeout=60)
    res = rh("plan", "-out", "drift.json").ok()
    assert "Objects have changed outside" in res.stdout and "six" in res.stdout, res.stdout
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in res.stdout
    saved = json.loads((rh.dir / "drift.json").read_text())
    assert saved["refresh_changed"] is True

    def path_elsewhere(doc: dict[str, Any]) -> None:
        resource(doc, "env.app")["attributes"]["path"] = "/tmp/elsewhere"

    bad = edited(rh.dir / "drift.json", rh.dir / "bad.json", path_elsewhere)
    state = rh.state_path.read_bytes()
    line = rh("apply", bad.name).error_line()
    assert "the saved plan bad.json was made from a different state (refreshing now finds " \
           "env.app differs in attributes.path)" in line, line
    assert rh.state_path.read_bytes() == state

    rh("apply", "drift.json").ok()
    check = subprocess.run([str(env / "bin" / "python"), "-c", "import six"],
                           capture_output=True, timeout=60, check=False)
    assert check.returncode == 0, check.stderr
    res = rh("plan", "-detailed-exitcode")
    assert res.returncode == 0 and "No changes." in res.stdout, res.describe()
