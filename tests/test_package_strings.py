"""Package strings as Runhouse reads them (issue 13, item 2).

- "requirements.txt" and "./path/requirements.txt" are that file (as reqs:DIR);
- a bare https://github.com/org/repo (or any URL ending in .git) is a git package;
  without @REV it is the repository's default branch, whose commit is resolved while
  planning and recorded, so a new upstream commit is a planned change. Tested with a
  real git repository made here, served through a file:// URL (no network);
- conda stays refused at plan time, saying why.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rhplan.packages import Requirement, parse_requirement, pinned, unpinned


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@example.com",
                           "-c", "user.name=t", *args], capture_output=True, text=True,
                          timeout=60, check=True)
    return proc.stdout.strip()


def make_repo(where: Path, value: int) -> Path:
    """A git repository holding an installable package `gitpkg` (VALUE = value)."""
    repo = where / "gitpkg.git"
    (repo / "gitpkg").mkdir(parents=True)
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = '
        '"setuptools.build_meta"\n[project]\nname = "gitpkg"\nversion = "0.1"\n'
        '[tool.setuptools]\npackages = ["gitpkg"]\n')
    (repo / "gitpkg" / "__init__.py").write_text(f"VALUE = {value}\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, timeout=60)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_strings_runhouse_users_write(tmp_path: Path) -> None:
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "requirements.txt").write_text("six\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    for raw, folder in (("requirements.txt", tmp_path), ("./deps/requirements.txt",
                                                         tmp_path / "deps"),
                        ("reqs:./deps/requirements.txt", tmp_path / "deps")):
        req = parse_requirement(raw, tmp_path)
        assert (req.kind, req.target) == ("reqs", str(folder.resolve())), raw
    with pytest.raises(ValueError, match="does not exist"):
        parse_requirement("./nope/requirements.txt", tmp_path)
    gh = parse_requirement("https://github.com/org/repo", tmp_path)
    assert gh == Requirement(gh.raw, "git", "git+https://github.com/org/repo", (), None)
    assert unpinned(gh) and pinned(gh, "a" * 40).target == \
        f"git+https://github.com/org/repo@{'a' * 40}"
    assert parse_requirement("https://github.com/org/repo@v1", tmp_path).target == \
        "git+https://github.com/org/repo@v1"
    assert parse_requirement("file:///srv/x/repo.git", tmp_path).kind == "git"
    assert unpinned(parse_requirement("git+https://host/r.git#egg=r", tmp_path))
    # archives and wheels stay pip targets
    for raw in ("https://github.com/org/repo/archive/v1.zip", "https://x.org/a-1.0.whl"):
        assert parse_requirement(raw, tmp_path).kind == "pip", raw
    with pytest.raises(ValueError, match="empty revision"):
        parse_requirement("git+https://host/r.git@", tmp_path)


def test_conda_is_refused_saying_why(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.write("""
        cluster "c" {
          provider = "local"
        }
        env "e" {
          cluster = cluster.c
          reqs    = ["conda:pytorch"]
        }
    """)
    msg = rh("plan", "-refresh=false").error_line()
    assert "main.hcl:6:" in msg and "does not install conda on hosts" in msg, msg


@pytest.mark.long  # a real git repository and install (~20 s); parsing tests run by default
def test_default_branch_commit_is_recorded_and_a_new_one_is_a_change(
        tmp_path: Path, rhplan_in: Any) -> None:
    repo = make_repo(tmp_path, 1)
    first = _git(repo, "rev-parse", "HEAD")
    rh = rhplan_in(tmp_path / "infra")
    (rh.dir / "deps").mkdir(parents=True)
    (rh.dir / "deps" / "requirements.txt").write_text("tomli_w==1.0.0\n")
    rh.write(f"""
        cluster "c" {{
          provider = "local"
        }}
        env "e" {{
          cluster = cluster.c
          reqs    = ["{repo.as_uri()}", "./deps/requirements.txt"]
        }}
    """)
    try:
        out = rh("plan", "-no-color").ok().stdout
        assert first in out and "git_commits" in out, out  # the resolved commit
        rh("apply", "-auto-approve").ok()
        attrs = rh.resources()["env.e"]["attributes"]
        assert attrs["git_commits"] == {repo.as_uri(): first}
        assert attrs["installed"][repo.as_uri()][0] == "gitpkg==0.1", attrs["installed"]
        check = [sys.executable, "-c", "import gitpkg, tomli_w; print(gitpkg.VALUE)"]
        assert rh("run", "e", "--", "python", *check[1:]).ok().stdout.strip() == "1"
        assert rh("plan", "-detailed-exitcode").returncode == 0
        # a new commit upstream: a planned update that installs it
        (repo / "gitpkg" / "__init__.py").write_text("VALUE = 2\n")
        _git(repo, "commit", "-q", "-am", "second")
        second = _git(repo, "rev-parse", "HEAD")
        res = rh("plan", "-no-color", "-detailed-exitcode")
        assert res.returncode == 2 and f'"{first}" -> "{second}"' in res.stdout, res.stdout
        rh("apply", "-auto-approve").ok()
        assert rh("run", "e", "--", "python", *check[1:]).ok().stdout.strip() == "2"
        assert rh.resources()["env.e"]["attributes"]["git_commits"] == {repo.as_uri(): second}
    finally:
        rh("destroy", "-auto-approve")


def test_validate_reaches_no_repository_and_plan_says_which_it_could_not(
        tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.write(f"""
        cluster "c" {{
          provider = "local"
        }}
        env "e" {{
          cluster = cluster.c
          reqs    = ["{(tmp_path / 'nowhere.git').as_uri()}"]
        }}
    """)
    rh("validate").ok()  # as Terraform: validate reaches nothing outside this machine
    msg = rh("plan", "-refresh=false").error_line()
    assert "main.hcl:6:" in msg and "cannot resolve its default branch" in msg, msg
    assert "pin a revision" in msg, msg
