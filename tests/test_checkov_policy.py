"""A real consumer of Terraform's plan JSON reads rhplan's (issue 14 item 9): checkov's
terraform_plan framework, as a subprocess, with a custom YAML policy on rhplan's own
resource types: "every aws cluster sets autostop_mins". The plan that breaks it fails
(exit 1, the cluster named), the plan that keeps it passes (exit 0).

checkov cannot share the test venv (it pins networkx < 3 and an older boto3), so it
lives in a venv of its own, .venv-checkov (made by .ci/run and README "Tests"; or name
the executable in RHPLAN_CHECKOV). It runs offline: no network namespace but loopback
when run as root, and told not to download anything. The plans are of aws clusters
planned, never applied: no AWS endpoint is called."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK_ID = "CKV2_RHPLAN_1"

POLICY = f"""\
metadata:
  id: "{CHECK_ID}"
  name: "Every aws cluster sets autostop_mins"
  category: "GENERAL_SECURITY"
definition:
  or:
    - cond_type: "attribute"
      resource_types: ["cluster"]
      attribute: "provider"
      operator: "not_equals"
      value: "aws"
    - cond_type: "attribute"
      resource_types: ["cluster"]
      attribute: "autostop_mins"
      operator: "greater_than"
      value: 0
"""


def aws_cluster(name: str, autostop: str) -> str:
    return f"""
cluster "{name}" {{
  provider      = "aws"
  instance_type = "m6i.large"
  image_id      = "ami-0123456789abcdef0"
  allowed_cidrs = []
  {autostop}
  ssh {{
    user        = "ubuntu"
    private_key = "~/.ssh/id_ed25519"
  }}
}}
"""


PROVIDER = """
provider "aws" {
  region       = "us-east-1"
  endpoint_url = "http://127.0.0.1:9"
}
cluster "laptop" { provider = "local" }
"""


def checkov() -> str:
    found = os.environ.get("RHPLAN_CHECKOV") or (
        str(ROOT / ".venv-checkov" / "bin" / "checkov")
        if (ROOT / ".venv-checkov" / "bin" / "checkov").exists() else shutil.which("checkov"))
    if not found:
        pytest.fail("checkov is not installed: run  uv venv .venv-checkov && uv pip install "
                    "-p .venv-checkov/bin/python checkov==3.3.30  (README, Tests)",
                    pytrace=False)
    return found


def run_checkov(plan_json: Path, checks: Path) -> subprocess.Popen[str]:
    argv = [checkov(), "-f", str(plan_json), "--framework", "terraform_plan",
            "--external-checks-dir", str(checks), "--check", CHECK_ID,
            "--skip-download", "-o", "json"]
    if os.geteuid() == 0 and shutil.which("unshare"):
        argv = ["unshare", "--net", *argv]  # proof that it needs (and sends) nothing out
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def planned(rh: Any, name: str, hcl: str) -> Path:
    rh.write(hcl)
    rh("plan", "-out", f"{name}.plan").ok()
    path = rh.dir / f"{name}.json"
    path.write_text(rh("show", "-json", f"{name}.plan").ok().stdout)
    return path


def test_checkov_fails_the_plan_that_breaks_a_policy_on_rhplan_types(rh: Any, tmp_path: Path
                                                                      ) -> None:
    rh.keep = True  # planned only
    checks = tmp_path / "policies"
    checks.mkdir()
    (checks / "autostop.yaml").write_text(POLICY)
    breaks = planned(rh, "breaks", PROVIDER + aws_cluster("gpu", "autostop_mins = 30")
                     + aws_cluster("cpu", ""))
    keeps = planned(rh, "keeps", PROVIDER + aws_cluster("gpu", "autostop_mins = 30")
                    + aws_cluster("cpu", "autostop_mins = 10"))
    runs = {name: run_checkov(path, checks) for name, path in
            (("breaks", breaks), ("keeps", keeps))}  # both at once: ~6 s each
    results = {}
    for name, proc in runs.items():
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"checkov on the {name} plan did not finish in 120 s: {err[-2000:]}")
        assert out.strip(), f"checkov printed nothing for {name} (exit {proc.returncode}): " \
                            f"{err[-2000:]}"
        results[name] = (proc.returncode, json.loads(out), err)

    code, report, err = results["breaks"]
    assert code == 1, err[-2000:]
    assert report["summary"]["resource_count"] >= 3  # clusters and their default envs
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    passed = [(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]]
    assert failed == [(CHECK_ID, "cluster.cpu")]
    assert sorted(passed) == [(CHECK_ID, "cluster.gpu"), (CHECK_ID, "cluster.laptop")]

    code, report, err = results["keeps"]
    assert code == 0, err[-2000:]
    assert report["summary"]["failed"] == 0 and report["summary"]["passed"] == 3
