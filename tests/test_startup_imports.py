"""The commands users run most start fast: `validate`, `plan` and `--help` import none of
the libraries only apply or a servlet needs (Ray, paramiko, boto3, networkx,
cryptography); importing them cost ~1 s of every start (issue 17 item 2). Each command
runs in a fresh interpreter, which then lists what it imported."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("ray", "paramiko", "boto3", "botocore", "networkx", "cryptography", "invoke")

CONFIG = """\
variable "team" { default = "ml" }
cluster "c" {
  provider = "local"
}
env "e" {
  cluster  = cluster.c
  reqs     = ["pip:six==1.16.0"]
  env_vars = { TEAM = var.team }
}
"""

# runs one command the way main() does, then prints the heavy modules it imported
_PROBE = """
import json, sys
from rhplan.cli import execute
code = execute(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(%r)))
print("\\n" + json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.parametrize("argv", [
    ["validate"],
    ["plan", "-refresh=false"],
    ["plan"],
    ["--help"],
    ["plan", "--help"],
], ids=lambda a: " ".join(a))
def test_command_imports_nothing_heavy(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "main.hcl").write_text(CONFIG)
    p = subprocess.run([sys.executable, "-c", _PROBE % json.dumps(HEAVY), f"-chdir={tmp_path}",
                        *argv], capture_output=True, text=True, timeout=120)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, p.stdout + p.stderr
    assert result["heavy"] == [], f"rhplan {' '.join(argv)} imported {result['heavy']}"


CLUSTER_ONLY = """\
cluster "c" {
  provider = "local"
}
"""


@pytest.mark.parametrize("argv", [["validate"], ["plan", "-refresh=false"], ["plan"]],
                         ids=lambda a: " ".join(a))
def test_no_pip_reqs_no_packaging(tmp_path: Path, argv: list[str]) -> None:
    """packaging (~20 ms of import: its regexes) parses pip reqs and checks pins against
    Ray's requirements; a configuration with no pip req (a cluster and its default env,
    as in bench/aws_scale.py) never reads one, so it must not import it."""
    (tmp_path / "main.hcl").write_text(CLUSTER_ONLY)
    p = subprocess.run([sys.executable, "-c", _PROBE % json.dumps(["packaging"]),
                        f"-chdir={tmp_path}", *argv], capture_output=True, text=True,
                       timeout=120)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, p.stdout + p.stderr
    assert result["heavy"] == [], f"rhplan {' '.join(argv)} imported {result['heavy']}"


def test_servlet_manager_needs_no_ssh() -> None:
    """A local cluster's apply and refresh go through the servlet manager; it only
    catches ConnectionLost, so it must not bring paramiko (~0.3 s) with it."""
    code = "import sys, rhplan.ray.servlets.manage; print(sorted({m.split('.')[0] for m in " \
           f"sys.modules}} & set({list(HEAVY)!r})))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["rhplan_ssh", "rhplan_aws", "rhplan_aws_launch_only"])
def test_ssh_and_aws_providers_load_without_ssh(module: str) -> None:
    """Every command that loads the ssh or aws provider (plan, a refresh of 1,000 EC2
    instances, destroy) imports it; paramiko and invoke (~0.1 s of CPU) come only when
    a host is reached (SSHHosts.connect_to)."""
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & " \
           "{'paramiko', 'invoke', 'cryptography', 'nacl'}))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
