"""Workspaces (issue 14 item 4): one state per workspace, as Terraform keeps them: the
local backend's default state where it always was, others in rhplan.state.d/NAME/, the
S3 backend's under env:/NAME/KEY (a real moto server); the selection in
.rhplan/environment, RHPLAN_WORKSPACE / TF_WORKSPACE overriding it; rhplan.workspace
in expressions. The configurations hold packages and secrets only: nothing runs."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from motoserver import aws_env

HCL = """
package "p" {
  git_url = "https://example.com/${rhplan.workspace}.git"
}

output "ws" { value = terraform.workspace }
"""


def _addresses(path: Path) -> list[str]:
    return sorted(r["address"] for r in json.loads(path.read_text())["resources"])


def test_each_workspace_has_its_own_state(rh: Any) -> None:
    rh.keep = True
    rh.write(HCL)
    assert rh("workspace", "show").ok().stdout == "default\n"
    rh("apply", "-auto-approve").ok()
    default_state = rh.state_path.read_text()

    out = rh("workspace", "new", "dev").ok().stdout
    assert 'Created and switched to workspace "dev"!' in out
    assert (rh.dir / ".rhplan" / "environment").read_text() == "dev\n"
    assert rh("workspace", "list").ok().stdout == "  default\n* dev\n"
    plan = rh("plan", "-no-color").ok().stdout  # an empty state: everything is new
    assert '+ git_url        = "https://example.com/dev.git"' in plan
    assert '+ ws = "dev"' in plan
    rh("apply", "-auto-approve").ok()
    dev = rh.dir / "rhplan.state.d" / "dev" / "rhplan.state.json"
    assert _addresses(dev) == ["package.p"]
    assert rh("output", "ws").ok().stdout == '"dev"\n'
    assert rh.state_path.read_text() == default_state  # the default state is untouched

    assert rh("workspace", "select", "default").ok().stdout == \
        'Switched to workspace "default".\n'
    assert rh("output", "ws").ok().stdout == '"default"\n'
    assert "No changes." in rh("plan").ok().stdout
    assert rh("state", "list").ok().stdout == "package.p\n"


def test_overrides_and_refusals(rh: Any) -> None:
    rh.keep = True
    rh.write(HCL)
    rh("workspace", "new", "dev").ok()
    rh("apply", "-auto-approve").ok()
    # RHPLAN_WORKSPACE wins over TF_WORKSPACE, which wins over .rhplan/environment
    both = {"RHPLAN_WORKSPACE": "ci", "TF_WORKSPACE": "other"}
    assert rh("workspace", "show", env=both).ok().stdout == "ci\n"
    assert rh("workspace", "show", env={"TF_WORKSPACE": "other"}).ok().stdout == "other\n"
    assert rh("output", "ws", env={"TF_WORKSPACE": "ci"}).returncode == 1  # no state there yet
    rh("apply", "-auto-approve", env={"TF_WORKSPACE": "ci"}).ok()
    assert rh("output", "ws", env={"TF_WORKSPACE": "ci"}).ok().stdout == '"ci"\n'
    line = rh("workspace", "select", "default", env={"TF_WORKSPACE": "ci"}).error_line()
    assert "chosen by TF_WORKSPACE" in line and "unset TF_WORKSPACE" in line
    assert "chosen by TF_WORKSPACE" in rh("workspace", "new", "x", env={"TF_WORKSPACE": "y"}
                                          ).error_line()
    rh("workspace", "new", "ci2", env={"TF_WORKSPACE": "ci2"}).ok()  # the name it sets
    rh("workspace", "select", "dev").ok()

    assert "cannot be deleted" in rh("workspace", "delete", "default").error_line()
    assert "is the one in use" in rh("workspace", "delete", "dev").error_line()
    rh("workspace", "select", "default").ok()
    line = rh("workspace", "delete", "dev").error_line()
    assert 'workspace "dev" still tracks 1 resource(s) (package.p)' in line
    assert "-force" in line
    assert (rh.dir / "rhplan.state.d" / "dev" / "rhplan.state.json").exists()  # kept
    out = rh("workspace", "delete", "-force", "dev").ok().stdout
    assert 'Deleted workspace "dev"!' in out and "no longer managed" in out
    assert not (rh.dir / "rhplan.state.d" / "dev").exists()
    assert rh("workspace", "list").ok().stdout == "* default\n  ci\n  ci2\n"

    assert "does not exist" in rh("workspace", "select", "gone").error_line()
    assert rh("workspace", "select", "-or-create", "gone").ok()
    assert "already exists" in rh("workspace", "new", "gone").error_line()
    rh("workspace", "select", "default").ok()
    assert rh("workspace", "delete", "gone").ok()  # empty: no -force needed
    for bad in ("a/b", "..", "", "a b"):
        assert "is not allowed" in rh("workspace", "new", bad).error_line()
    line = rh("plan", env={"RHPLAN_WORKSPACE": "../x"}).error_line()
    assert line.startswith("Error: RHPLAN_WORKSPACE: the workspace name '../x' is not allowed")
    (rh.dir / ".rhplan" / "environment").write_text("no/pe\n")
    assert ".rhplan/environment: the workspace name" in rh("plan").error_line()


def test_unknown_attribute_of_rhplan_is_one_line(rh: Any) -> None:
    rh.keep = True
    rh.write('output "x" { value = rhplan.nope }\n')
    assert rh("validate").error_line() == (
        "Error: main.hcl:1: unknown rhplan.nope; rhplan.workspace is the one attribute there")


@pytest.fixture
def s3_cli(tmp_path: Path, rhplan_in: Any, moto: Any, cleanups: Any) -> Any:
    bucket = f"rhplan-ws-{uuid.uuid4().hex[:12]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    rh.keep = True
    rh.write(f'rhplan {{\n  backend "s3" {{\n    bucket = "{bucket}"\n    key = "team/s.json"\n'
             f'    region = "us-east-1"\n    endpoint_url = "{moto.url}"\n  }}\n}}\n' + HCL)
    yield rh, bucket
    cleanups.add(rh)


def _keys(moto: Any, bucket: str) -> list[str]:
    got = moto.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in got)


def test_s3_workspaces_live_under_env_prefix(s3_cli: Any, moto: Any) -> None:
    rh, bucket = s3_cli
    rh("apply", "-auto-approve").ok()
    rh("workspace", "new", "prod").ok()
    rh("apply", "-auto-approve").ok()
    rh("workspace", "new", "qa").ok()
    assert _keys(moto, bucket) == [
        "env:/prod/team/s.json", "env:/prod/team/s.json.backup", "env:/qa/team/s.json",
        "team/s.json", "team/s.json.backup"]
    assert rh("workspace", "list").ok().stdout == "  default\n  prod\n* qa\n"
    rh("workspace", "select", "prod").ok()
    assert rh("output", "ws").ok().stdout == '"prod"\n'
    body = moto.client("s3").get_object(Bucket=bucket, Key="env:/prod/team/s.json")["Body"]
    assert json.loads(body.read())["outputs"]["ws"]["value"] == "prod"
    rh("workspace", "select", "default").ok()
    assert "still tracks 1 resource(s)" in rh("workspace", "delete", "prod").error_line()
    rh("workspace", "delete", "qa").ok()
    rh("workspace", "delete", "-force", "prod").ok()
    assert _keys(moto, bucket) == ["team/s.json", "team/s.json.backup"]
    assert rh("workspace", "list").ok().stdout == "* default\n"


# ---- variable values: auto-loaded files and TF_VAR_ (issue 14 item 4) ------------------

VARS = 'variable "a" { default = "default" }\nvariable "n" {\n  type = number\n  default = 0\n}\n'


def _resolve(tmp_path: Path, files: dict[str, str], cli: list[str] = (),
             var_files: list[str] = (), order: list[str] | None = None
             ) -> tuple[dict[str, Any], list[str]]:
    from rhplan.config.inputs import resolve_variables
    from rhplan.config.load import load_text
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    warnings: list[str] = []
    cfg = load_text(tmp_path, {"main.hcl": VARS})
    return resolve_variables(cfg, list(cli), list(var_files), order, warnings), warnings


def test_variable_precedence_is_terraforms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    for k in [k for k in __import__("os").environ if k.startswith(("RHPLAN_VAR_", "TF_VAR_"))]:
        monkeypatch.delenv(k)
    assert _resolve(tmp_path, {})[0] == {"a": "default", "n": 0}
    monkeypatch.setenv("TF_VAR_a", "tf")
    monkeypatch.setenv("TF_VAR_n", "4")  # typed as the declaration says
    assert _resolve(tmp_path, {})[0] == {"a": "tf", "n": 4}
    monkeypatch.setenv("RHPLAN_VAR_a", "rhplan")  # beside TF_VAR_a: RHPLAN_ wins
    assert _resolve(tmp_path, {})[0]["a"] == "rhplan"
    assert _resolve(tmp_path, {"rhplan.tfvars": 'a = "tfvars"\n'})[0]["a"] == "tfvars"
    assert _resolve(tmp_path, {"rhplan.tfvars.json": '{"a": "json"}'})[0]["a"] == "json"
    # auto files after rhplan.tfvars(.json), in lexical order of their names
    got, _ = _resolve(tmp_path, {"b.auto.tfvars.json": '{"a": "b"}', "c.auto.tfvars": 'a = "c"'})
    assert got["a"] == "c"
    (tmp_path / "c.auto.tfvars").unlink()
    assert _resolve(tmp_path, {})[0]["a"] == "b"
    # -var-file and -var after every auto-loaded file, in the order given
    files = {"f1.tfvars": 'a = "f1"\n', "f2.tfvars": 'a = "f2"\n'}
    assert _resolve(tmp_path, files, ["a=cli"], ["f1.tfvars"], ["var", "var-file"]
                    )[0]["a"] == "f1"
    assert _resolve(tmp_path, files, ["a=cli"], ["f1.tfvars"], ["var-file", "var"]
                    )[0]["a"] == "cli"
    assert _resolve(tmp_path, files, ["a=cli"], ["f2.tfvars", "f1.tfvars"],
                    ["var-file", "var", "var-file"])[0]["a"] == "f1"


def test_auto_file_warns_of_undeclared_and_explicit_file_refuses(tmp_path: Path) -> None:
    from rhplan.errors import ConfigError
    got, warnings = _resolve(tmp_path, {"x.auto.tfvars": 'a = "x"\nnope = 1\n'})
    assert got["a"] == "x"
    assert warnings == ["Warning: x.auto.tfvars:2: a value for undeclared variable 'nope' is "
                        'ignored; declare variable "nope" {} or remove it']
    (tmp_path / "x.auto.tfvars").unlink()
    (tmp_path / "e.tfvars").write_text("nope = 1\n")
    with pytest.raises(ConfigError, match="^e.tfvars:1: no variable 'nope' is declared"):
        _resolve(tmp_path, {}, var_files=["e.tfvars"])
    (tmp_path / "bad.auto.tfvars").write_text('n = "four"\n')
    with pytest.raises(ConfigError, match="the value given by bad.auto.tfvars"):
        _resolve(tmp_path, {})


def test_cli_takes_var_and_var_file_in_the_order_given(rh: Any) -> None:
    rh.keep = True
    rh.write('variable "a" { default = "d" }\noutput "a" { value = var.a }\n')
    rh.write('a = "f1"\n', "f1.tfvars")
    rh.write('a = "auto"\nnope = 1\n', "x.auto.tfvars")
    out = rh("plan", "-no-color").ok().stdout
    assert '+ a = "auto"' in out and "undeclared variable 'nope' is ignored" in out
    assert '+ a = "f1"' in rh("plan", "-var", "a=cli", "-var-file=f1.tfvars").ok().stdout
    assert '+ a = "cli"' in rh("plan", "-var-file", "f1.tfvars", "-var=a=cli").ok().stdout
    assert '+ a = "auto"' in rh("plan", env={"TF_VAR_a": "tf"}).ok().stdout


def test_a_local_cluster_of_another_workspace_lives_apart(rh: Any) -> None:
    """Same cluster name, same machine: each workspace's local cluster has its own folder
    (Ray head, envs), so destroying staging's never reaches the default one's."""
    rh.keep = True
    rh.write('cluster "c" { provider = "local" }\n')
    def planned(**env: str) -> dict[str, Any]:
        rh("plan", "-out", "p.plan", env=env).ok()
        shown = json.loads(rh("show", "-json", "p.plan", env=env).ok().stdout)
        return shown["resource_changes"][0]["change"]

    default = planned()
    assert default["after"]["root_dir"] == str(rh.dir / ".rhplan" / "clusters" / "c")
    staging = planned(RHPLAN_WORKSPACE="staging")
    assert staging["after"]["root_dir"] == str(
        rh.dir / ".rhplan" / "workspaces" / "staging" / "clusters" / "c")


def test_workspace_dir_and_key_prefix_are_terraforms_settings(rh: Any, rhplan_in: Any,
                                                              moto: Any, tmp_path: Path,
                                                              cleanups: Any) -> None:
    rh.keep = True
    rh.write('rhplan {\n  backend "local" { workspace_dir = "states" }\n}\n' + HCL)
    rh("workspace", "new", "qa").ok()
    assert (rh.dir / "states" / "qa" / "rhplan.state.json").exists()
    assert rh("workspace", "list").ok().stdout == "  default\n* qa\n"
    rh.edit('workspace_dir = "states"', 'workspace_dir = "../elsewhere"')
    assert rh("workspace", "list").error_line() == (
        'Error: main.hcl:2: backend "local" workspace_dir must be a folder inside the '
        'configuration folder, like "rhplan.state.d"')

    bucket = f"rhplan-ws-{uuid.uuid4().hex[:12]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    s3 = rhplan_in(tmp_path / "s3", env=aws_env())
    s3.keep = True
    cleanups.add(s3)
    s3.write(f'rhplan {{\n  backend "s3" {{\n    bucket = "{bucket}"\n    key = "s.json"\n'
             f'    region = "us-east-1"\n    endpoint_url = "{moto.url}"\n'
             '    workspace_key_prefix = "teams/ml"\n  }\n}\n' + HCL)
    s3("workspace", "new", "qa").ok()
    assert _keys(moto, bucket) == ["teams/ml/qa/s.json"]
    assert s3("workspace", "list").ok().stdout == "  default\n* qa\n"


def test_a_saved_plan_applies_only_in_its_workspace(rh: Any) -> None:
    rh.keep = True
    rh.write(HCL)
    rh("plan", "-out", "p.plan").ok()
    line = rh("apply", "p.plan", env={"TF_WORKSPACE": "fresh"}).error_line()
    assert line == ("Error: p.plan was made in workspace 'default', but the workspace in use "
                    "is 'fresh'; run rhplan workspace select default, or plan again here")
    assert not (rh.dir / "rhplan.state.d" / "fresh" / "rhplan.state.json").exists()
    rh("apply", "p.plan").ok()
