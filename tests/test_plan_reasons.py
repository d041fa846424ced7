"""What a change's reason line says when refresh found drift (rendered as `# (REASON)`)."""
from __future__ import annotations

from rhplan.plan.diff import drift_reason


def test_drift_joins_a_reason_of_its_own_in_brackets() -> None:
    assert drift_reason("env_vars changed", ["its servlet is not running"]) == (
        "env_vars changed (found outside rhplan: its servlet is not running)")


def test_drift_alone_is_no_empty_bracket() -> None:
    # a cluster whose worker's Ray died changes only attributes the type explains itself:
    # its reason was "" and the plan printed "# ( (found outside rhplan: …))"
    notes = ["node 10.0.0.6's Ray is down; apply starts it and joins it again", "x"]
    assert drift_reason("", notes) == (
        "found outside rhplan: node 10.0.0.6's Ray is down; apply starts it and joins it "
        "again; x")
