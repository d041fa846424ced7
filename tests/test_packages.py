"""Package strings, code roots and tree hashes (pure: no host involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rhplan.packages import Requirement, find_code_root, parse_requirement, tree_hash


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "src" / "mypkg").mkdir(parents=True)
    (tmp_path / "src" / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "requirements.txt").write_text("six==1.16.0\n")
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "x-1.0-py3-none-any.whl").write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize(
    "raw, kind, target, args, name",
    [
        ("pip:numpy==1.26.4", "pip", "numpy==1.26.4", (), "numpy"),
        ("numpy", "pip", "numpy", (), "numpy"),
        ("Foo_Bar[extra]>=1.0", "pip", "Foo_Bar[extra]>=1.0", (), "foo-bar"),
        ("numpy >= 1.26, < 2", "pip", "numpy >= 1.26, < 2", (), "numpy"),
        (
            "pip:torch --index-url https://download.pytorch.org/whl/cpu",
            "pip",
            "torch",
            ("--index-url", "https://download.pytorch.org/whl/cpu"),
            "torch",
        ),
        (
            "pip:foo @ https://example.com/foo-1.0.whl",
            "pip",
            "foo @ https://example.com/foo-1.0.whl",
            (),
            "foo",
        ),
        ("https://example.com/foo-1.0.whl", "pip", "https://example.com/foo-1.0.whl", (), None),
        ("conda:pytorch -c pytorch", "conda", "pytorch", ("-c", "pytorch"), None),
        (
            "git+https://github.com/huggingface/diffusers.git@v0.11.1",
            "git",
            "git+https://github.com/huggingface/diffusers.git@v0.11.1",
            (),
            None,
        ),
        (
            "git+ssh://git@github.com/org/repo.git@abc123#egg=My_Pkg",
            "git",
            "git+ssh://git@github.com/org/repo.git@abc123#egg=My_Pkg",
            (),
            "my-pkg",
        ),
    ],
)
def test_parse_specs(
    base: Path, raw: str, kind: str, target: str, args: tuple[str, ...], name: str | None
) -> None:
    assert parse_requirement(raw, base) == Requirement(raw, kind, target, args, name)


def test_parse_paths(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(base))
    src = str((base / "src" / "mypkg").resolve())
    for raw in (
        "./src/mypkg",
        "src/mypkg",
        str(base / "src" / "mypkg"),
        "~/src/mypkg",
        "local:./src/mypkg",
        "./src/../src/mypkg",
    ):
        req = parse_requirement(raw, base)
        assert (req.kind, req.target, req.name) == ("local", src, None), raw
    # reqs: the folder, whose requirements.txt is installed.
    assert parse_requirement("reqs:./", base).target == str(base.resolve())
    req = parse_requirement("reqs:deps --no-deps", base)
    assert (req.kind, req.target, req.args) == (
        "reqs",
        str((base / "deps").resolve()),
        ("--no-deps",),
    )
    # pip: with a path installs that path with pip.
    req = parse_requirement("pip:./dist/x-1.0-py3-none-any.whl", base)
    assert (req.kind, req.target) == (
        "pip",
        str((base / "dist" / "x-1.0-py3-none-any.whl").resolve()),
    )


def test_path_with_spaces_and_shell_characters_stays_one_target(base: Path) -> None:
    odd = base / "my dir; touch PWNED $(x) `y` 'q\""
    odd.mkdir()
    req = parse_requirement("./" + odd.name, base)
    assert (req.kind, req.target, req.args) == ("local", str(odd.resolve()), ())


@pytest.mark.parametrize(
    "raw, message",
    [
        ("", "empty package string"),
        ("   ", "empty package string"),
        ("pip:", "names no package"),
        ("npm:left-pad", "unknown install method 'npm'"),
        ("numpy torch", "write 'pip:numpy' and 'pip:torch' as two entries"),
        ("six==1.16.0; touch PWNED", "is not a valid package string"),
        ("pip:===", "is not a valid package string"),
        ("git+https://github.com/org/repo.git@", "has an empty revision"),
        ("git+scp:org/repo@v1", "is not a git URL"),
        ("./nope", "does not exist"),
        ("reqs:./src", "there is no requirements.txt"),
        ("reqs:./dist/x-1.0-py3-none-any.whl", "reqs: takes the folder"),
        ("./src/mypkg/__init__.py", "is a file, not a folder"),
        ("./nope/requirements.txt", "does not exist"),
        ("./dist/x-1.0-py3-none-any.whl", "write 'pip:./dist/x-1.0-py3-none-any.whl'"),
        ("pip:./nope.whl", "does not exist"),
        ("pip:torch --index-url 'x", "close the quotes"),
    ],
)
def test_invalid_strings_say_what_to_write(base: Path, raw: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_requirement(raw, base)
    assert message in str(info.value)


def test_find_code_root(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "src" / "pkg").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("")
    (proj / "src" / "pkg" / "mod.py").write_text("")
    assert find_code_root(proj / "src" / "pkg") == proj.resolve()
    assert find_code_root(proj / "src" / "pkg" / "mod.py") == proj.resolve()
    assert find_code_root(proj) == proj.resolve()
    # The nearest marker wins, and .git counts.
    (proj / "src" / ".git").mkdir()
    assert find_code_root(proj / "src" / "pkg") == (proj / "src").resolve()


def test_find_code_root_without_markers_is_the_path(tmp_path: Path) -> None:
    # tmp_path's ancestors may hold markers on some machines; only assert
    # when none exists, which is the case this checks.
    lone = tmp_path / "lone"
    lone.mkdir()
    markers = (".git", "setup.py", "setup.cfg", "pyproject.toml", "requirements.txt")
    if any((p / m).exists() for p in lone.resolve().parents for m in markers):
        pytest.skip("an ancestor of tmp_path is a code root")
    assert find_code_root(lone) == lone.resolve()


def _tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("X = 1\n")
    (root / "pkg" / "data.txt").write_text("data\n")


def test_tree_hash_is_stable_and_sees_changes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _tree(a)
    _tree(b)
    h = tree_hash(a)
    assert len(h) == 64 and h == tree_hash(a) == tree_hash(b)  # location does not matter
    (b / "pkg" / "__init__.py").write_text("X = 2\n")
    assert tree_hash(b) != h
    (b / "pkg" / "__init__.py").write_text("X = 1\n")
    assert tree_hash(b) == h
    # A rename with the same content is a change.
    (b / "pkg" / "data.txt").rename(b / "pkg" / "data2.txt")
    assert tree_hash(b) != h


def test_tree_hash_skips_caches_builds_and_gitignored(tmp_path: Path) -> None:
    root = tmp_path / "r"
    _tree(root)
    (root / ".gitignore").write_text("# comment\n*.log\n/out/\nsecret.env\ndocs/*.tmp\n!keep.log\n")
    h = tree_hash(root)
    for junk in (
        ".git/HEAD",
        "__pycache__/x.pyc",
        "pkg/__pycache__/y.pyc",
        "pkg/z.pyc",
        ".venv/bin/python",
        "build/lib/x.py",
        "pkg.egg-info/PKG-INFO",
        "run.log",
        "pkg/deep.log",
        "out/a.bin",
        "secret.env",
        "pkg/secret.env",
        "docs/x.tmp",
    ):
        p = root / junk
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("noise")
    assert tree_hash(root) == h
    # Not ignored: "/out/" is anchored to the top, "docs/*.tmp" to docs/.
    (root / "pkg" / "out").mkdir()
    (root / "pkg" / "out" / "a.bin").write_text("x")
    assert tree_hash(root) != h
    (root / "pkg" / "out" / "a.bin").unlink()
    (root / "pkg" / "out").rmdir()
    (root / "pkg" / "docs").mkdir()
    (root / "pkg" / "docs" / "x.tmp").write_text("x")
    assert tree_hash(root) != h


def test_tree_hash_of_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tree_hash(tmp_path / "nope")
