"""`-json` as Terraform's machine-readable UI (issue 14 item 8): plan, apply and destroy
stream one JSON object per line (version, planned_change, change_summary, outputs,
apply_start, apply_complete, diagnostic, ...), each with @level, @message, @module,
@timestamp and type; validate -json prints Terraform's one validate document. The
configurations hold packages and secrets only (state only): nothing runs on a host.
resource_drift on real drift: tests/test_refresh_only.py."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rhplan.state.model import RHPLAN_VERSION
from rhplan.views.json_ui import JsonUI

TOKEN = "tok-4b1d9a"

CONFIG = f"""
variable "tok" {{
  default   = "{TOKEN}"
  sensitive = true
}}
package "p" {{
  for_each = toset(["a", "b"])
  git_url  = "https://git.example.com/${{each.key}}.git"
}}
package "q" {{ git_url = "https://git.example.com/q.git" }}
secret "s" {{ values = {{ K = var.tok }} }}
output "url" {{ value = package.q.git_url }}
output "tok" {{
  value     = var.tok
  sensitive = true
}}
"""


def stream(res: Any) -> list[dict[str, Any]]:
    assert TOKEN not in res.output
    msgs = [json.loads(line) for line in res.stdout.splitlines()]
    for m in msgs:
        assert {"@level", "@message", "@module", "@timestamp", "type"} <= set(m), m
        assert m["@module"] == "terraform.ui"
        datetime.fromisoformat(m["@timestamp"])
    assert msgs[0]["type"] == "version" and msgs[0]["terraform"] == RHPLAN_VERSION
    assert msgs[0]["ui"] == "1.2"
    return msgs


def of(msgs: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return [m for m in msgs if m["type"] == type_]


def test_plan_and_apply_stream_terraforms_ui(rh: Any) -> None:
    rh.keep = True
    rh.write(CONFIG)
    msgs = stream(rh("apply", "-json", "-auto-approve").ok())
    planned = {m["change"]["resource"]["addr"]: m["change"]["action"]
               for m in of(msgs, "planned_change")}
    assert planned == {'package.p["a"]': "create", 'package.p["b"]': "create",
                       "package.q": "create", "secret.s": "create"}
    starts = {m["hook"]["resource"]["addr"] for m in of(msgs, "apply_start")}
    done = {m["hook"]["resource"]["addr"]: m for m in of(msgs, "apply_complete")}
    assert starts == set(done) == set(planned)
    key = done['package.p["b"]']["hook"]["resource"]
    assert (key["resource_type"], key["resource_name"], key["resource_key"]) == ("package", "p",
                                                                                 "b")
    assert done["package.q"]["@message"].startswith("package.q: Creation complete after ")
    first, last = of(msgs, "change_summary")
    assert first["changes"] == {"add": 4, "change": 0, "import": 0, "remove": 0,
                                "operation": "plan"}  # apply's plan part, as Terraform
    assert last["@message"] == "Apply complete! Resources: 4 added, 0 changed, 0 destroyed."
    outputs = of(msgs, "outputs")[-1]["outputs"]
    assert outputs == {
        "tok": {"sensitive": True, "type": "string", "value": "(sensitive value)"},
        "url": {"sensitive": False, "type": "string", "value": "https://git.example.com/q.git"}}

    # a plan with each kind of change: no-ops are not listed, as in Terraform
    rh.edit('toset(["a", "b"])', 'toset(["a"])')
    rh.edit("com/q.git", "com/q2.git")
    msgs = stream(rh("plan", "-json", "-replace", "secret.s").ok())
    planned = {m["change"]["resource"]["addr"]: m["change"] for m in of(msgs, "planned_change")}
    assert {a: c["action"] for a, c in planned.items()} == {
        'package.p["b"]': "delete", "package.q": "update", "secret.s": "replace"}
    assert planned["secret.s"]["reason"] == "requested"
    assert planned['package.p["b"]']["reason"] == "delete_because_each_key"
    [summary] = of(msgs, "change_summary")
    assert summary["@message"] == "Plan: 1 to add, 1 to change, 2 to destroy."
    assert summary["changes"]["operation"] == "plan"
    assert of(msgs, "outputs")[0]["outputs"] == {"url": {"sensitive": False,
                                                         "action": "update"}}

    msgs = stream(rh("destroy", "-json", "-auto-approve").ok())
    last = of(msgs, "change_summary")[-1]
    assert last["changes"]["operation"] == "destroy"
    assert last["@message"] == "Destroy complete! Resources: 4 destroyed."
    assert {m["hook"]["action"] for m in of(msgs, "apply_start")} == {"delete"}


def test_an_error_is_a_diagnostic_and_one_line(rh: Any) -> None:
    rh.keep = True
    rh.write(CONFIG + 'output "bad" {\n  value = package.nope.git_url\n}\n')
    res = rh("plan", "-json")
    line = res.error_line()  # still one line on stderr
    [diag] = of(stream(res), "diagnostic")
    assert diag["@level"] == "error" and diag["@message"] == line
    d = diag["diagnostic"]
    assert d["severity"] == "error" and "package.nope" in d["summary"]
    assert d["range"]["filename"] == "main.hcl" and d["range"]["start"]["line"] == 17

    rh.write(CONFIG)
    line = rh("apply", "-json").error_line()
    assert "-json cannot ask for approval: add -auto-approve" in line, line


def test_validate_json_is_terraforms_document(rh: Any) -> None:
    rh.keep = True
    rh.write(CONFIG)
    ok = json.loads(rh("validate", "-json").ok().stdout)
    assert ok == {"format_version": "1.0", "valid": True, "error_count": 0,
                  "warning_count": 0, "diagnostics": []}
    rh.write(CONFIG + 'package "r" {\n  git_url = 5\n  nope = 1\n}\n')
    res = rh("validate", "-json")
    assert res.returncode == 1, res.describe()
    bad = json.loads(res.stdout)
    assert bad["valid"] is False and bad["error_count"] == 1
    [d] = bad["diagnostics"]
    assert d["severity"] == "error" and d["range"]["filename"] == "main.hcl"


def test_apply_progress_lines_become_hooks() -> None:
    """The apply engine's text lines (rhplan/apply.py's words) map onto hook messages."""
    out: list[dict[str, Any]] = []
    ui = JsonUI("1.0", lambda line: out.append(json.loads(line)))
    for line in ('env.x["a"]: Creating...', 'env.x["a"]: Still creating... [1m10s elapsed]',
                 'env.x["a"]: Creation complete after 1m12s', "module.m.env.y: Destroying...",
                 "Error: module.m.env.y: the host is gone", "something else"):
        ui.apply_line(line)
    assert [m["type"] for m in out] == ["apply_start", "apply_progress", "apply_complete",
                                        "apply_start", "apply_errored", "diagnostic", "log"]
    assert out[1]["hook"]["elapsed_seconds"] == 70 and out[2]["hook"]["elapsed_seconds"] == 72
    errored = out[4]["hook"]
    assert errored["action"] == "delete" and errored["resource"]["module"] == "module.m"
    assert errored["resource"]["resource"] == "env.y"
    assert out[4]["@message"].startswith("module.m.env.y: Destruction errored after ")
    assert out[5]["diagnostic"]["summary"] == "module.m.env.y: the host is gone"


def test_an_apply_that_did_not_finish_ends_with_its_error(rh: Any) -> None:
    """apply -json whose steps failed: the error, a warning per step not started, then
    the error the command ends with, as a diagnostic and as one line on stderr (exit 1).
    The fakecloud cluster (tests/plugins) cannot make its machine folder: a file is in
    the way; its env is skipped, the package applied."""
    rh.write('cluster "fc" {\n  provider = "fakecloud"\n}\nenv "app" {\n  cluster = '
             'cluster.fc\n}\npackage "q" { git_url = "https://git.example.com/q.git" }\n')
    (rh.dir / ".rhplan" / "fakecloud").mkdir(parents=True)
    (rh.dir / ".rhplan" / "fakecloud" / "fc").write_text("in the way")
    res = rh("apply", "-json", "-auto-approve")
    assert res.returncode == 1, res.describe()
    msgs = stream(res)
    ended = ("apply failed: 1 failed, 1 skipped; what finished is saved in the state; fix "
             "the cause and run apply again")
    assert res.error_line() == f"Error: {ended}"
    assert [(m["type"], m["@message"]) for m in msgs[-2:]] == [
        ("log", "env.app: skipped (not started)"), ("diagnostic", f"Error: {ended}")]
    assert msgs[-2]["@level"] == "warn" and msgs[-1]["diagnostic"]["summary"] == ended
    [errored] = of(msgs, "apply_errored")
    assert errored["hook"]["resource"]["addr"] == "cluster.fc"
    assert [m["hook"]["resource"]["addr"] for m in of(msgs, "apply_complete")] == ["package.q"]
    assert not of(msgs, "change_summary")[1:]  # only the plan's: no "Apply complete!"


def test_refresh_streams_terraforms_ui(rh: Any) -> None:
    """refresh -json: version, a log summary and the outputs (Terraform's refresh view);
    the state is read and written as without -json."""
    rh.keep = True
    rh.write(CONFIG)
    rh("apply", "-auto-approve").ok()
    msgs = stream(rh("refresh", "-json").ok())
    assert [m["type"] for m in msgs] == ["version", "log", "outputs"], msgs
    assert msgs[1]["@message"] == "No changes found outside rhplan."
    assert msgs[2]["outputs"]["url"] == {"sensitive": False, "type": "string",
                                         "value": "https://git.example.com/q.git"}
    assert msgs[2]["outputs"]["tok"]["value"] == "(sensitive value)"
    assert rh("refresh").ok().stdout == "No changes found outside rhplan.\n"


def test_refresh_drift_becomes_resource_drift_messages() -> None:
    """What refresh found (rhplan/plan/refresh.py's notes) maps onto resource_drift: a
    resource gone is a delete, one read with other values an update."""
    out: list[dict[str, Any]] = []
    ui = JsonUI("1.0", lambda line: out.append(json.loads(line)))
    ui.refreshed([{"address": "cluster.c", "message": "cluster.c no longer exists"},
                  {"address": 'env.e["a"]', "message": 'env.e["a"]: gone with cluster.c'},
                  {"address": "cluster.d", "message": "cluster.d: ips: [...] -> [...]"}],
                 {"cluster.c": "aws", "cluster.d": "ssh", 'env.e["a"]': "rhplan"},
                 {"cluster.c", 'env.e["a"]'}, "State updated: 3 change(s) found outside rhplan.",
                 {})
    assert [m["type"] for m in out] == ["resource_drift"] * 3 + ["log", "outputs"]
    changes = [(m["change"]["resource"]["addr"], m["change"]["resource"]["implied_provider"],
                m["change"]["action"]) for m in out[:3]]
    assert changes == [("cluster.c", "aws", "delete"), ('env.e["a"]', "rhplan", "delete"),
                       ("cluster.d", "ssh", "update")]
    assert out[1]["change"]["resource"]["resource_key"] == "a"
    assert out[0]["@message"] == "cluster.c no longer exists"


def test_a_deposed_object_is_planned_and_destroyed_as_a_delete(rh: Any) -> None:
    """An old object a create_before_destroy replacement left recorded (apply.py keeps it
    in the resource's private "deposed" list until destroyed): a planned_change delete
    of the instance's address, counted in change_summary, and apply hooks of that address
    with action delete, as Terraform streams a deposed object's delete."""
    rh.keep = True
    rh.write('package "p" { git_url = "https://git.example.com/p.git" }\n')
    rh("apply", "-auto-approve").ok()
    state = rh.state()
    [p] = state["resources"]
    old = json.loads(json.dumps(p))
    old["attributes"]["name"] = "p-old"
    p["private"]["deposed"] = [old]
    rh.state_path.write_text(json.dumps(state))
    msgs = stream(rh("plan", "-json").ok())
    planned = [(m["change"]["resource"]["addr"], m["change"]["action"], m["@message"])
               for m in of(msgs, "planned_change")]
    assert planned == [("package.p", "delete",
                        "package.p (deposed object 'p-old'): Plan to delete")], planned
    assert of(msgs, "change_summary")[0]["changes"]["remove"] == 1
    msgs = stream(rh("apply", "-json", "-auto-approve").ok())
    hooks = [(m["type"], m["hook"]["resource"]["addr"], m["hook"]["action"])
             for m in msgs if m["type"] in ("apply_start", "apply_complete")]
    assert hooks == [("apply_start", "package.p", "delete"),
                     ("apply_complete", "package.p", "delete")], msgs
    assert "deposed" not in rh.resources()["package.p"]["private"]
