"""A pyproject.toml at the working_dir's root (issue 13 item 1): its [project]
dependencies are installed as Runhouse's reqs:./ does (`uv pip install -r
pyproject.toml`: the dependencies, not the project, whose code the working_dir already
puts on the servlet's sys.path), planned like a requirements.txt (the entry reqs:./, its
file's hash), and an edit of it re-plans the install. A requirements.txt beside it wins.
Bad TOML is one line naming pyproject.toml:line, before anything is built."""
from __future__ import annotations

from typing import Any

import pytest

HCL = """
cluster "c" {
  provider  = "local"
  resources = { CPU = 2, GPU = 0 }
}

env "e" {
  cluster     = cluster.c
  working_dir = "."
}
"""

PYPROJECT = """[project]
name = "myproj"
version = "0.1"
dependencies = ["tomli_w==1.0.0"]

[tool.ruff]
line-length = 99
"""


def test_a_pyproject_is_planned_as_reqs_and_an_edit_replans_it(rh: Any) -> None:
    rh.write(HCL)
    (rh.dir / "pyproject.toml").write_text("[tool.ruff]\nline-length = 99\n")
    out = rh("plan", "-no-color").ok().stdout
    assert "reqs:./" not in out, out  # tool settings only: nothing to install
    (rh.dir / "pyproject.toml").write_text(PYPROJECT)
    out = rh("plan", "-no-color").ok().stdout
    assert '+ reqs               = [\n          "reqs:./",\n        ]' in out, out
    (rh.dir / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies [\n")
    res = rh("plan")
    assert res.returncode == 1 and res.error_line() == (
        f"Error: pyproject.toml:3: env 'e': working_dir {rh.dir}: pyproject.toml is not "
        "valid TOML (Expected '=' after a key in a key/value pair); fix it, or add a "
        "requirements.txt, which rhplan reads first"), res.describe()
    (rh.dir / "pyproject.toml").write_text(PYPROJECT.replace('"tomli_w==1.0.0"', '"no good"'))
    res = rh("plan")
    assert res.returncode == 1 and res.error_line().startswith(
        f"Error: main.hcl:8: env 'e': working_dir {rh.dir}: pyproject.toml: dependency "
        "'no good' is not a valid requirement ("), res.describe()


@pytest.mark.long  # its own real local cluster, built and updated (~30 s under load)
def test_a_pyproject_is_installed_and_an_edit_reinstalls_it(rh: Any) -> None:
    rh.write(HCL)
    (rh.dir / "pyproject.toml").write_text(PYPROJECT)
    rh("apply", "-auto-approve").ok()
    env = rh.resources()["env.e"]["attributes"]
    assert env["reqs"] == ["reqs:./"], env
    assert [i.partition("==")[0] for i in env["installed"]["reqs:./"]] == ["tomli-w"], env
    res = rh("run", "e", "--", "python", "-c", "import tomli_w, sys; print(tomli_w.__name__)")
    assert (res.returncode, res.stdout) == (0, "tomli_w\n"), res.describe()
    assert rh("plan", "-detailed-exitcode").returncode == 0
    (rh.dir / "pyproject.toml").write_text(PYPROJECT.replace("==1.0.0", ">=1.0"))
    out = rh("plan", "-no-color").ok().stdout
    assert "# env.e will be updated in-place" in out and "reqs:./" in out, out
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in out, out
    rh("apply", "-auto-approve").ok()
    assert rh("plan", "-detailed-exitcode").returncode == 0
    rh("destroy", "-auto-approve").ok()
