"""Envs built for real on this machine: uv venvs, real installs from PyPI.

One env is shared by the module (uv makes each step ~0.1 s, but creating
fewer envs keeps the suite quick); tests that need a clean or odd env make
their own. Each test installs what it needs, so order does not matter.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from rhplan.errors import ProviderError
from rhplan.hosts.connection import CommandResult, Connection, LocalConnection
from rhplan.hosts.envs import (
    Installed,
    create_venv,
    delete_env,
    env_python,
    find_uv,
    install,
    install_entry,
    local_dist_name,
    make_env,
    read_installed,
    requirement_drift,
    run_setup_cmds,
    uninstall,
    write_env_files,
)
from rhplan.packages import parse_requirement

# Every shell-meaningful character that could turn data into a command.
NASTY = "a; touch PWNED $(touch PWNED) `touch PWNED` 'q\" \\ & | > <"


@pytest.fixture(scope="module")
def conn() -> LocalConnection:
    c = LocalConnection()
    assert c.which("uv"), "uv is a dependency of rhplan and must be next to the venv's python"
    return c


@pytest.fixture(scope="module")
def env(conn: LocalConnection, tmp_path_factory: pytest.TempPathFactory) -> str:
    env_dir = str(tmp_path_factory.mktemp("envs") / "shared")
    create_venv(conn, env_dir)
    return env_dir


def _py(env_dir: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [env_python(env_dir), "-c", code], capture_output=True, text=True, check=False
    )


def _pyproject_pkg(root: Path, name: str, value: int, deps: tuple[str, ...] = ()) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        "[build-system]\n"
        'requires = ["setuptools>=61"]\n'
        'build-backend = "setuptools.build_meta"\n'
        "[project]\n"
        f'name = "{name}"\n'
        'version = "0.1"\n'
        f"dependencies = {list(deps)!r}\n"
        "[tool.setuptools]\n"
        f'packages = ["{name}"]\n'
    )
    (root / name / "__init__.py").write_text(f"VALUE = {value}\n")
    return root


# --- connection -----------------------------------------------------------


def test_local_connection_run(conn: LocalConnection, tmp_path: Path) -> None:
    assert isinstance(conn, Connection)
    res = conn.run(
        ["sh", "-c", 'printf "%s|%s" "$1" "$RH_X"; cat; echo err >&2; exit 3', "sh", NASTY],
        env={"RH_X": "v"},
        cwd=str(tmp_path),
        stdin=b"in",
    )
    assert res == CommandResult(res.argv, 3, f"{NASTY}|vin", "err\n") and not res.ok
    missing = conn.run(["no-such-program-rhplan"])
    assert missing.returncode == 127 and "command not found" in missing.stderr
    start = time.monotonic()
    slow = conn.run(["sleep", "30"], timeout=0.2)
    assert slow.returncode == 124 and "timed out" in slow.stderr
    assert time.monotonic() - start < 10


def test_local_connection_files(conn: LocalConnection, tmp_path: Path) -> None:
    path = str(tmp_path / "a" / "b" / "secret.json")
    conn.put_bytes(b"one", path, 0o600)
    assert conn.get_bytes(path) == b"one"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    conn.put_bytes(b"two", path, 0o644)  # replaced whole, no temp files left
    assert conn.get_bytes(path) == b"two" and os.listdir(tmp_path / "a" / "b") == ["secret.json"]
    with pytest.raises(FileNotFoundError):
        conn.get_bytes(str(tmp_path / "nope"))
    assert conn.which("sh") and conn.which("no-such-program-rhplan") is None


# --- building envs ----------------------------------------------------------


def test_created_env_is_empty_and_reads_in_one_command(
    conn: LocalConnection, tmp_path: Path
) -> None:
    env_dir = str(tmp_path / "fresh")
    python = create_venv(conn, env_dir)
    assert python == env_python(env_dir) and os.access(python, os.X_OK)
    before = conn.commands_run
    assert read_installed(conn, env_dir) == {}  # uv does not seed pip
    assert conn.commands_run == before + 1


def test_install_pip_package(conn: LocalConnection, env: str, tmp_path: Path) -> None:
    req = parse_requirement("pip:six==1.16.0", tmp_path)
    install(conn, env, req)  # may be there already from another test
    installed = read_installed(conn, env)
    assert installed is not None
    assert installed["six"] == Installed("six", "1.16.0", None)
    assert _py(env, "import six; print(six.__version__)").stdout.strip() == "1.16.0"
    assert install(conn, env, req) == []  # nothing changes the second time


def test_install_reports_changes(conn: LocalConnection, tmp_path: Path) -> None:
    env_dir = str(tmp_path / "e")
    create_venv(conn, env_dir)
    assert install(conn, env_dir, parse_requirement("six==1.16.0", tmp_path)) == ["six==1.16.0"]
    assert install(conn, env_dir, parse_requirement("pip:six==1.17.0", tmp_path)) == ["six==1.17.0"]
    # A local package with a dependency: its own distribution comes first
    # (callers uninstall only that one), then what it brought along.
    _pyproject_pkg(tmp_path / "zpkg-src", "zpkg", 1, deps=("six==1.16.0",))
    req = parse_requirement("./zpkg-src", tmp_path)
    assert install(conn, env_dir, req) == ["zpkg==0.1", "six==1.16.0"]


def test_install_local_package_with_metadata(
    conn: LocalConnection, env: str, tmp_path: Path
) -> None:
    root = _pyproject_pkg(tmp_path / "tinypkg-src", "tinypkg", 1)
    req = parse_requirement("./tinypkg-src", tmp_path)
    assert install(conn, env, req) == ["tinypkg==0.1"]
    assert _py(env, "import tinypkg; print(tinypkg.VALUE)").stdout.strip() == "1"
    dist = (read_installed(conn, env) or {})["tinypkg"]
    assert dist.direct_url and dist.direct_url.startswith("file://")
    # Not editable: a code change shows up only after a reinstall, which
    # reports the package as changed though its version did not move.
    (root / "tinypkg" / "__init__.py").write_text("VALUE = 2\n")
    assert _py(env, "import tinypkg; print(tinypkg.VALUE)").stdout.strip() == "1"
    assert install(conn, env, req) == ["tinypkg==0.1"]
    assert _py(env, "import tinypkg; print(tinypkg.VALUE)").stdout.strip() == "2"


def test_local_folder_without_metadata_goes_on_the_path(
    conn: LocalConnection, env: str, tmp_path: Path
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "plainmod.py").write_text("VALUE = 'plain'\n")
    req = parse_requirement(str(folder), tmp_path)
    name = local_dist_name(req.target)
    assert install(conn, env, req) == [f"{name}==0"]
    assert _py(env, "import plainmod; print(plainmod.VALUE)").stdout.strip() == "plain"
    entry = (read_installed(conn, env) or {})[name]
    assert entry.direct_url == f"file://{folder.resolve()}"
    # Edits are live: the env imports the folder itself.
    (folder / "plainmod.py").write_text("VALUE = 'edited'\n")
    assert _py(env, "import plainmod; print(plainmod.VALUE)").stdout.strip() == "edited"
    uninstall(conn, env, [name])
    assert name not in (read_installed(conn, env) or {})
    assert _py(env, "import plainmod").returncode != 0


def test_reqs_folder(conn: LocalConnection, env: str, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    install(conn, env, parse_requirement("reqs:./", tmp_path))
    assert (read_installed(conn, env) or {})["six"].version == "1.16.0"


def test_uninstall_removes_only_the_named_dist(
    conn: LocalConnection, env: str, tmp_path: Path
) -> None:
    _pyproject_pkg(tmp_path / "keep-src", "keeppkg", 1)
    install(conn, env, parse_requirement("pip:six==1.16.0", tmp_path))
    install(conn, env, parse_requirement("./keep-src", tmp_path))
    uninstall(
        conn, env, ["Six", "not-installed-at-all"]
    )  # names are canonicalized; missing is fine
    after = read_installed(conn, env) or {}
    assert "six" not in after and "keeppkg" in after
    assert _py(env, "import six").returncode != 0
    assert _py(env, "import keeppkg").returncode == 0
    uninstall(conn, env, [])  # nothing to do, no command
    with pytest.raises(ProviderError, match="not a distribution name"):
        uninstall(conn, env, ["-r /etc/passwd"])


def test_recreate_replaces_an_env_but_not_other_folders(
    conn: LocalConnection, tmp_path: Path
) -> None:
    env_dir = str(tmp_path / "again")
    create_venv(conn, env_dir)
    install(conn, env_dir, parse_requirement("six==1.16.0", tmp_path))
    create_venv(conn, env_dir)
    assert read_installed(conn, env_dir) == {}
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ProviderError, match="not a Python env"):
        create_venv(conn, str(busy))
    assert (busy / "notes.txt").read_text() == "mine"


def test_delete_env(conn: LocalConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_dir = str(tmp_path / "doomed")
    create_venv(conn, env_dir)
    delete_env(conn, env_dir)
    assert read_installed(conn, env_dir) is None and not os.path.exists(env_dir)
    delete_env(conn, env_dir)  # already gone: fine
    # The home folder and its parents are refused (a fake home keeps this safe).
    home = tmp_path / "home" / "me"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for path in (str(home), str(home) + "/", str(tmp_path / "home"), str(home) + "/.."):
        with pytest.raises(ProviderError, match="refusing"):
            delete_env(conn, path)
    assert home.is_dir()
    with pytest.raises(ProviderError, match="refusing"):
        delete_env(conn, "/")
    with pytest.raises(ProviderError, match="absolute path"):
        delete_env(conn, "relative/env")


# An installer left behind by a killed apply: it keeps adding folders and files inside
# the env (never the env folder itself, as uv writes into site-packages) for a while.
_LINGERING_WRITER = r"""
import os, sys, time
root, deadline, n = sys.argv[1], time.monotonic() + float(sys.argv[2]), 0
open(os.path.join(root, "started"), "w").close()
while time.monotonic() < deadline:
    try:
        os.mkdir(os.path.join(root, f"pkg{n}"))
        for i in range(20):
            open(os.path.join(root, f"pkg{n}", f"m{i}.py"), "w").close()
    except OSError:  # the env folder went away under it, as uv's writes would fail
        pass
    n += 1
"""


def test_delete_env_outlasts_an_installer_still_writing_into_it(
    conn: LocalConnection, tmp_path: Path
) -> None:
    """SIGKILL of an apply mid-install leaves its uv writing into the env for a few
    seconds; the next apply's delete must not fail with 'Directory not empty'."""
    env_dir = tmp_path / "busy"
    for n in range(200):  # enough for rm -rf to take a while
        (env_dir / f"old{n}").mkdir(parents=True)
    writer = subprocess.Popen([sys.executable, "-c", _LINGERING_WRITER, str(env_dir), "2"])
    try:
        deadline = time.monotonic() + 10
        while not (env_dir / "started").exists():
            assert time.monotonic() < deadline and writer.poll() is None, "writer did not start"
            time.sleep(0.01)
        delete_env(conn, str(env_dir))
        assert writer.wait(timeout=10) == 0
    finally:
        writer.kill()
    assert not env_dir.exists()


def test_write_env_files(conn: LocalConnection, env: str) -> None:
    write_env_files(conn, env, {"USER": "me", "EMPTY": ""}, {"HF_TOKEN": "hf_secret"})
    root = Path(env) / "rhplan"
    assert json.loads((root / "env_vars.json").read_text()) == {"USER": "me", "EMPTY": ""}
    assert json.loads((root / "secrets.json").read_text()) == {"HF_TOKEN": "hf_secret"}
    assert stat.S_IMODE((root / "env_vars.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "secrets.json").stat().st_mode) == 0o600
    with pytest.raises(ProviderError) as info:
        write_env_files(conn, env, {}, {"BAD=NAME": "hf_secret"})
    assert "hf_secret" not in str(info.value)


def test_setup_cmds_run_in_the_env(conn: LocalConnection, env: str, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    run_setup_cmds(
        conn,
        env,
        [
            f'python -c "import sys; print(sys.prefix)" > {out}',
            f'echo "$VIRTUAL_ENV" >> {out} && test -f "$VIRTUAL_ENV/pyvenv.cfg"',
        ],
    )
    assert out.read_text().splitlines() == [env, env]
    with pytest.raises(ProviderError, match=r"setup command 2 .* exit code 7: boom"):
        run_setup_cmds(conn, env, ["true", "echo boom >&2; exit 7", f"touch {tmp_path}/never"])
    assert not (tmp_path / "never").exists()


# --- failures ---------------------------------------------------------------


def test_bad_package_is_a_provider_error(conn: LocalConnection, env: str, tmp_path: Path) -> None:
    req = parse_requirement("pip:rhplan-no-such-package-zzq==1.0", tmp_path)
    with pytest.raises(ProviderError) as info:
        install(conn, env, req)
    msg = str(info.value)
    assert msg.startswith(
        f"installing 'pip:rhplan-no-such-package-zzq==1.0' into env at {env} failed: "
    )
    assert "rhplan-no-such-package-zzq" in msg.split("failed: ", 1)[1] and "\n" not in msg


def test_conda_and_missing_env_are_provider_errors(
    conn: LocalConnection, env: str, tmp_path: Path
) -> None:
    with pytest.raises(ProviderError, match="conda packages need a conda env"):
        install(conn, env, parse_requirement("conda:pytorch", tmp_path))
    with pytest.raises(ProviderError, match="there is no env there"):
        install(conn, str(tmp_path / "none"), parse_requirement("six", tmp_path))
    assert read_installed(conn, str(tmp_path / "none")) is None


def test_build_failure_names_the_reason(conn: LocalConnection, env: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "setup.py").write_text("raise SystemExit('setup.py says no')\n")
    with pytest.raises(ProviderError, match="setup.py says no"):
        install(conn, env, parse_requirement("./broken", tmp_path))


class _NoUvConnection(LocalConnection):
    """A host without uv: envs fall back to the stdlib venv module and pip."""

    def which(self, program: str) -> str | None:
        return None if program == "uv" else super().which(program)


def test_without_uv_pip_does_the_work(tmp_path: Path) -> None:
    conn = _NoUvConnection()
    env_dir = str(tmp_path / "pipenv")
    create_venv(conn, env_dir)  # the slow part (~3 s): ensurepip seeds pip
    assert "pip" in (read_installed(conn, env_dir) or {})
    assert install(conn, env_dir, parse_requirement("pip:six==1.16.0", tmp_path)) == ["six==1.16.0"]
    with pytest.raises(ProviderError, match="No matching distribution found for rhplan-no-such"):
        install(conn, env_dir, parse_requirement("rhplan-no-such-package-zzq", tmp_path))
    uninstall(conn, env_dir, ["six"])
    assert "six" not in (read_installed(conn, env_dir) or {})


# --- injection ----------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # A command that escaped into a shell would create PWNED in the working folder.
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not list(tmp_path.rglob("PWNED")), "a value was run as a shell command"
    assert not Path("PWNED").exists()


def test_hostile_strings_stay_data(conn: LocalConnection, in_tmp: Path) -> None:
    tmp_path = in_tmp
    nasty_nl = NASTY + "\nline two $(touch PWNED)"
    env_dir = str(tmp_path / ("env " + nasty_nl))
    create_venv(conn, env_dir)
    install(conn, env_dir, parse_requirement("pip:six==1.16.0", tmp_path))

    # Env vars and secrets are stored verbatim.
    values = {"PLAIN": nasty_nl, "NASTY_" + "X": "`touch PWNED`\n'\"$HOME"}
    write_env_files(conn, env_dir, values, {"TOKEN": nasty_nl})
    assert json.loads(conn.get_bytes(env_dir + "/rhplan/env_vars.json")) == values
    assert json.loads(conn.get_bytes(env_dir + "/rhplan/secrets.json")) == {"TOKEN": nasty_nl}

    # A setup command sees the odd env folder exactly.
    out = tmp_path / "prefix.txt"
    run_setup_cmds(conn, env_dir, [f'printf %s "$VIRTUAL_ENV" > {out}'])
    assert out.read_text() == env_dir

    # A local package and a plain folder with odd names install and import.
    pkg = _pyproject_pkg(tmp_path / ("pkg " + nasty_nl), "oddpkg", 7)
    assert install(conn, env_dir, parse_requirement(str(pkg), tmp_path)) == ["oddpkg==0.1"]
    plain = tmp_path / ("plain " + NASTY)
    plain.mkdir()
    (plain / "oddmod.py").write_text("VALUE = 8\n")
    install(conn, env_dir, parse_requirement(str(plain), tmp_path))
    assert (
        _py(env_dir, "import oddpkg, oddmod; print(oddpkg.VALUE, oddmod.VALUE)").stdout == "7 8\n"
    )
    # A newline cannot go into a .pth file (its lines may be run as code).
    plain_nl = tmp_path / ("plain " + nasty_nl)
    plain_nl.mkdir()
    with pytest.raises(ProviderError, match="line break"):
        install(conn, env_dir, parse_requirement(str(plain_nl), tmp_path))

    # Package strings with shell syntax are rejected before any command.
    with pytest.raises(ValueError):
        parse_requirement("six==1.16.0; touch PWNED", tmp_path)
    with pytest.raises(ProviderError):
        install(conn, env_dir, parse_requirement("pip:six --index-url=$(touch PWNED)", tmp_path))

    delete_env(conn, env_dir)
    assert not os.path.exists(env_dir) and read_installed(conn, env_dir) is None


# --- what a refresh checks (issue 11, item 1) --------------------------------------


def test_refresh_checks_each_requirement_by_its_specifier_and_markers(
    conn: LocalConnection, tmp_path: Path
) -> None:
    import sys

    from rhplan.hosts import facts
    from rhplan.hosts.envs import read_env, spec_drift

    env_dir = str(tmp_path / "d")
    create_venv(conn, env_dir)
    install(conn, env_dir, parse_requirement("pip:six==1.16.0", tmp_path))
    got = read_env(conn, env_dir)
    assert got is not None
    own = _py(env_dir, "import platform; print(platform.python_version())").stdout.strip()
    assert got.markers["python_full_version"] == own
    dists, markers = got.dists, got.markers
    assert spec_drift("six==1.16.0", dists, markers) == []
    assert spec_drift("six>=1.17", dists, markers) == ["six is 1.16.0, not >=1.17"]
    assert spec_drift("Absent_Pkg", dists, markers) == ["absent-pkg missing"]
    # a requirement whose marker excludes this interpreter is skipped, as installers do
    assert spec_drift('absent-pkg; python_version < "3"', dists, markers) == []
    assert spec_drift(f'absent-pkg; python_version == "{markers["python_version"]}"',
                      dists, markers) == ["absent-pkg missing"]
    # the host-wide read (another interpreter: Ray's) tells the same, in the same command
    before = conn.commands_run
    seen = facts.gather(conn, sys.executable, {"envs": {"env.x": env_dir}})
    assert conn.commands_run == before + 1
    assert facts.installed(seen["envs"]["env.x"]) == dists
    theirs = facts.markers(seen, "env.x")
    assert {k: theirs[k] for k in ("python_version", "python_full_version", "sys_platform")} \
        == {k: markers[k] for k in ("python_version", "python_full_version", "sys_platform")}


def test_a_pin_ray_cannot_live_with_is_named_with_both_sides_by_uv_and_by_pip(
    conn: LocalConnection, tmp_path: Path
) -> None:
    """The resolver's answer for the pins and the servlet's ray==X, installing nothing
    (issue 11, item 3): uv says it in one line, pip over several, joined into one."""
    import importlib.metadata as md

    from rhplan.hosts.envs import check_resolvable, constraint_lines, write_constraints

    pins = constraint_lines([parse_requirement(raw, tmp_path) for raw in
                             ("pip:packaging<24", "pip:six", "./", "pip:idna[all]>=3")])
    assert pins == ["packaging<24", "idna>=3"]  # names with versions only, no extras
    for c, name in ((conn, "uv"), (_NoUvConnection(), "pip")):
        env_dir = str(tmp_path / name)
        create_venv(c, env_dir)
        path = write_constraints(c, env_dir, pins)
        assert Path(path).read_text() == "packaging<24\nidna>=3\n"
        why = check_resolvable(c, env_dir, [f"ray=={md.version('ray')}"], path)
        assert why is not None and "packaging<24" in why and "packaging>=24" in why, why
        assert "\n" not in why
        have = read_installed(c, env_dir) or {}
        assert "ray" not in have and "packaging" not in have, sorted(have)
        assert check_resolvable(c, env_dir, ["six==1.16.0"], path) is None


def test_a_local_package_is_built_once_per_content_and_still_reads_as_the_folder(
    conn: LocalConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uv rebuilds a folder given explicitly on every install (issue 17: 1.5-3 s of each
    # env); the wheel built for the folder's content is installed again instead
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = _pyproject_pkg(tmp_path / "once pkg src", "oncepkg", 1)
    builds = tmp_path / "builds.log"  # outside the folder: not part of its content
    (root / "setup.py").write_text(
        "import os\nfrom setuptools import setup\n"
        f"with open({str(builds)!r}, 'a') as fh:\n    fh.write('build\\n')\nsetup()\n")
    req = parse_requirement(str(root), tmp_path)
    runs = []  # setuptools runs setup.py a few times per build
    for name in ("first", "second"):
        env_dir = str(tmp_path / name)
        create_venv(conn, env_dir)
        assert install(conn, env_dir, req) == ["oncepkg==0.1"]
        assert _py(env_dir, "import oncepkg; print(oncepkg.VALUE)").stdout.strip() == "1"
        runs.append(builds.read_text().count("build\n"))
    assert runs[0] > 0 and runs[1] == runs[0]  # the second env built nothing
    second = env_dir
    dist = (read_installed(conn, second) or {})["oncepkg"]
    # what refresh reads is what an install of the folder itself records
    assert dist.direct_url == f"file://{quote(str(root))}"
    assert requirement_drift(req, read_installed(conn, second) or {}) == []
    record = next((Path(second) / "lib").glob("python*/site-packages/oncepkg-0.1.dist-info"))
    assert json.loads((record / "direct_url.json").read_text())["dir_info"] == {}
    # changed content is a new build, installed as changed
    (root / "oncepkg" / "__init__.py").write_text("VALUE = 2\n")
    assert install(conn, second, req) == ["oncepkg==0.1"]
    assert _py(second, "import oncepkg; print(oncepkg.VALUE)").stdout.strip() == "2"
    assert builds.read_text().count("build\n") > runs[1]


def test_an_exact_pin_installs_from_uvs_cache_without_asking_the_index(
    conn: LocalConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uv asks the index again for every package it resolves (~0.4 s an install, issue
    # 17); a second env's exact pins are what the first env put in uv's cache
    first = str(tmp_path / "first")
    create_venv(conn, first)
    install(conn, first, parse_requirement("pip:six==1.16.0", tmp_path))
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens: no index
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    second = str(tmp_path / "second")
    create_venv(conn, second)
    assert install(conn, second, parse_requirement("pip:six==1.16.0", tmp_path)) == [
        "six==1.16.0"]
    # an open requirement still asks the index (whose newest version it wants)
    with pytest.raises(ProviderError):
        install(conn, second, parse_requirement("pip:idna", tmp_path))


def test_an_install_and_the_read_after_it_are_one_command(
    conn: LocalConnection, tmp_path: Path
) -> None:
    # over SSH every command is a round trip: an env's entries are installed one by one,
    # each followed by a read of what changed (issue 17: a second env in <= 3 s)
    env_dir = str(tmp_path / "onecmd")
    create_venv(conn, env_dir)
    first = install_entry(conn, env_dir, parse_requirement("pip:six==1.16.0", tmp_path))
    before = conn.commands_run
    res = install_entry(conn, env_dir, parse_requirement("idna==3.7", tmp_path),
                        before=first.after)
    assert conn.commands_run == before + 1
    assert res.changes == ["idna==3.7"] and res.own is not None and res.own.version == "3.7"
    assert set(res.after.dists) >= {"six", "idna"}
    # a failed install still says why, and reads nothing
    with pytest.raises(ProviderError, match="no-such-package-rhplan"):
        install_entry(conn, env_dir, parse_requirement("no-such-package-rhplan==1.0", tmp_path),
                      before=res.after)


def test_making_an_env_is_one_command(conn: LocalConnection, tmp_path: Path) -> None:
    # the look at the folder and the venv itself: one SSH round trip, not two
    find_uv(conn)  # known once per connection
    env_dir = str(tmp_path / "onecreate")
    for _ in range(2):  # made, then replaced
        before = conn.commands_run
        create_venv(conn, env_dir)
        assert conn.commands_run == before + 1
        assert read_installed(conn, env_dir) == {}
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ProviderError, match="not a Python env is already there"):
        create_venv(conn, str(busy))
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


def test_a_local_package_installs_in_one_command(
    conn: LocalConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the look at the folder (package, plain folder, missing) is the wheel script's own
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env_dir = str(tmp_path / "onelocal")
    create_venv(conn, env_dir)
    _pyproject_pkg(tmp_path / "one-src", "onepkg", 1)
    req = parse_requirement("./one-src", tmp_path)
    first = install_entry(conn, env_dir, req)  # builds the wheel
    before = conn.commands_run
    res = install_entry(conn, env_dir, req, before=first.after)
    assert conn.commands_run == before + 1
    assert res.changes == ["onepkg==0.1"]
    plain = tmp_path / "plain-one"
    plain.mkdir()
    (plain / "plainone.py").write_text("VALUE = 1\n")
    assert install_entry(conn, env_dir, parse_requirement(str(plain), tmp_path)).changes == [
        f"{local_dist_name(str(plain))}==0"]
    gone = parse_requirement(str(plain), tmp_path)  # parsed while there, then removed
    (plain / "plainone.py").unlink()
    plain.rmdir()
    with pytest.raises(ProviderError, match="is not on"):
        install_entry(conn, env_dir, gone)


def test_a_new_env_over_leftovers_is_one_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 17: the uv beside the cluster's Ray interpreter, the removal of what an
    # interrupted create left, and the venv: one SSH round trip where there were three
    conn = LocalConnection()  # nothing known of its uv yet
    env_dir = tmp_path / "leftover"
    (env_dir / "lib").mkdir(parents=True)
    (env_dir / "lib" / "half-written.py").write_text("x = 1\n")
    assert make_env(conn, str(env_dir), ray_python=sys.executable) == env_python(str(env_dir))
    assert conn.commands_run == 1
    assert read_installed(conn, str(env_dir)) == {}
    assert not (env_dir / "lib" / "half-written.py").exists()
    assert conn.commands_run == 2
    make_env(conn, str(env_dir))  # its uv known now: made again, one command
    assert conn.commands_run == 3
    # no uv beside that interpreter: found as before (which, delete, venv)
    other = LocalConnection()
    make_env(other, str(env_dir), ray_python=str(tmp_path / "no-venv" / "bin" / "python"))
    assert other.commands_run == 3 and read_installed(other, str(env_dir)) == {}
    # the home folder and its parents are refused, nothing removed
    home = tmp_path / "home" / "me"
    home.mkdir(parents=True)
    (home / "notes.txt").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    for path in (str(home), str(tmp_path / "home")):
        with pytest.raises(ProviderError, match="refusing to delete"):
            make_env(conn, path, ray_python=sys.executable)
    assert (home / "notes.txt").read_text() == "mine"
    with pytest.raises(ProviderError, match="refusing"):
        make_env(conn, "/", ray_python=sys.executable)


def test_an_install_into_an_env_not_read_yet_is_one_command(
    conn: LocalConnection, tmp_path: Path
) -> None:
    # the read before (what the install changed is told from it), the install and the
    # read after: one command
    env_dir = str(tmp_path / "unread")
    create_venv(conn, env_dir)
    before = conn.commands_run
    res = install_entry(conn, env_dir, parse_requirement("pip:six==1.16.0", tmp_path))
    assert conn.commands_run == before + 1
    assert res.changes == ["six==1.16.0"] and set(res.after.dists) == {"six"}
    again = install_entry(conn, env_dir, parse_requirement("pip:six==1.16.0", tmp_path))
    assert again.changes == []  # there already: nothing changed
    with pytest.raises(ProviderError, match="there is no env there"):
        install_entry(conn, str(tmp_path / "never-made"),
                      parse_requirement("pip:six==1.16.0", tmp_path))


def test_bytecode_is_seeded_only_beside_a_source_python_would_accept(tmp_path: Path) -> None:
    # issue 17: the servlet's worker imports Ray's dependencies too (~170 modules); their
    # bytecode comes from the Ray venv when the env's source is the same file for Python
    # (size and mtime), and a dependency at another version compiles its own
    from importlib import resources

    text = resources.files("rhplan.hostside").joinpath("seed_bytecode.py").read_text()
    ns: dict[str, object] = {"__name__": "seed"}
    exec(text.rsplit("print(main(", 1)[0], ns)  # the functions, not the run
    src, dst = tmp_path / "ray-venv" / "pkg", tmp_path / "env" / "pkg"
    for d in (src / "__pycache__", dst):
        d.mkdir(parents=True)
    for name, same in (("same", True), ("moved", False), ("gone", None)):
        (src / f"{name}.py").write_text(f"X = '{name}'\n")
        (src / "__pycache__" / f"{name}.cpython-311.pyc").write_bytes(b"pyc " + name.encode())
        if same is None:
            continue
        (dst / f"{name}.py").write_text(f"X = '{name}'\n" if same else f"X = '{name}!'\n")
        stamp = (src / f"{name}.py").stat().st_mtime
        os.utime(dst / f"{name}.py", (stamp, stamp))
    pycache = str(src / "__pycache__")
    assert ns["link_folder"](pycache, os.listdir(pycache), str(dst)) == 1  # type: ignore[operator]
    assert sorted(p.name for p in (dst / "__pycache__").iterdir()) == ["same.cpython-311.pyc"]
    linked = dst / "__pycache__" / "same.cpython-311.pyc"
    assert linked.stat().st_ino == (src / "__pycache__" / "same.cpython-311.pyc").stat().st_ino
    assert ns["link_folder"](pycache, os.listdir(pycache), str(dst)) == 0  # type: ignore[operator]


def test_pins_another_env_of_the_cluster_was_built_with_are_not_checked_again(
    tmp_path: Path
) -> None:
    # issue 17: a second env with the first one's packages skips the dry run of its pins
    # with the cluster's Ray (that env installed them together with that Ray)
    from rhplan.provider import RunContext
    from rhplan.resources.env_packages import pins_proven
    from rhplan.state.model import ResourceState, State

    def env(name: str, reqs: list[str], ray: str | None, cluster: str = "cluster.c"
            ) -> ResourceState:
        return ResourceState(f"env.{name}", "env", name, "local",
                             {"cluster": cluster, "reqs": reqs, "installed": {}},
                             private={"ray": ray} if ray else {})

    state = State(lineage="x")
    state.resources["cluster.c"] = ResourceState("cluster.c", "cluster", "c", "local",
                                                 {"ray_version": "2.60.0"})
    state.resources["env.first"] = env("first", ["pip:six==1.16.0", "idna==3.7", "./src"],
                                       "2.60.0")
    ctx = RunContext(config_dir=tmp_path)
    new = env("second", [], None)
    assert pins_proven(new, ["six==1.16.0"], ctx, state)
    assert pins_proven(new, ["idna==3.7", "six==1.16.0"], ctx, state)
    assert not pins_proven(new, ["six==1.15.0"], ctx, state)  # a pin never installed
    assert not pins_proven(new, ["six==1.16.0", "attrs==23.1"], ctx, state)
    state.resources["env.first"].private["ray"] = "2.59.0"  # built with another Ray
    assert not pins_proven(new, ["six==1.16.0"], ctx, state)
    state.resources["env.other"] = env("other", ["six==1.16.0"], "2.60.0", "cluster.d")
    assert not pins_proven(new, ["six==1.16.0"], ctx, state)  # another cluster's


def _shared_ray_venv(root: Path) -> tuple[str, str]:
    """rhplan's shared Ray venv for the driver's Ray (made by hostside/ray_venv.py as on
    any SSH host: a link ROOT/ray-venv to ~/.cache/rhplan/ray-venvs/..., reused when
    there); its interpreter and Ray version."""
    from importlib import metadata, resources

    version = metadata.version("ray")
    script = resources.files("rhplan.hostside").joinpath("ray_venv.py").read_text()
    proc = subprocess.run(["python3", "-I", "-c", script, str(root), version],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])["ray_python"], version


def test_a_new_env_links_the_shared_ray_venvs_ray_and_keeps_the_rest_its_own(
    conn: LocalConnection, tmp_path: Path
) -> None:
    # issue 17: Ray's ~2,800 files are one link into the cluster's shared Ray venv; Ray's
    # dependencies are the env's own; an uninstall, or a failed install, removes the link
    # and never the Ray venv's files
    ray_python, version = _shared_ray_venv(tmp_path / "root")
    shared = Path(ray_python).parent.parent.resolve()
    ray_req = parse_requirement(f"pip:ray=={version}", tmp_path)
    env_dir = make_env(conn, str(tmp_path / "linked")).rsplit("/bin/", 1)[0]
    res = install_entry(conn, env_dir, ray_req, link_ray=(ray_python, version))
    site = Path(res.after.site_packages)
    assert (site / "ray").is_symlink() and (site / "ray").resolve().is_relative_to(shared)
    assert not (site / "packaging").is_symlink() and (site / "packaging").is_dir()
    assert f"ray=={version}" in res.changes and len(res.changes) > 5  # and its dependencies
    assert _py(env_dir, "import ray, packaging; print(ray.__version__, packaging.__file__)"
               ).stdout.split() == [version, str(site / "packaging" / "__init__.py")]
    assert (Path(env_dir) / "bin" / "ray").exists()
    uninstall(conn, env_dir, ["ray"])
    assert not os.path.lexists(site / "ray") and not (Path(env_dir) / "bin" / "ray").exists()
    assert (shared / "bin" / "ray").exists() and list(shared.glob("lib/*/site-packages/ray/"
                                                                   "__init__.py"))
    # an install that fails (Ray refused by a constraint) leaves no link behind
    again = make_env(conn, str(tmp_path / "refused")).rsplit("/bin/", 1)[0]
    limits = tmp_path / "limits.txt"
    limits.write_text("ray<1\n")
    with pytest.raises(ProviderError):
        install_entry(conn, again, ray_req, constraints=str(limits),
                      link_ray=(ray_python, version))
    assert read_installed(conn, again) == {}
    # a Ray venv that is not rhplan's shared one for that version (here: rhplan's own,
    # a user's venv) is never linked: Ray is installed into the env as before
    own = make_env(conn, str(tmp_path / "copied")).rsplit("/bin/", 1)[0]
    res = install_entry(conn, own, ray_req, link_ray=(sys.executable, version))
    assert not (Path(res.after.site_packages) / "ray").is_symlink()
    assert f"ray=={version}" in res.changes


def test_a_ray_link_that_no_longer_resolves_reads_as_broken_and_is_linked_again(
    conn: LocalConnection, tmp_path: Path
) -> None:
    # issue 17's linked Ray, when the shared venv it points into is gone: its dist-info
    # is still in the env but `import ray` fails, so an env read (refresh's, the read
    # around every install) reports it at a version no Ray has; an uninstall still
    # removes it, and the next install links it again. (Refresh and apply on an ssh
    # cluster: test_env_drift's ray_link test, -m long.) The env's link is pointed at a
    # folder that does not exist: the shared venv is other tests' too.
    ray_python, version = _shared_ray_venv(tmp_path / "root")
    ray_req = parse_requirement(f"pip:ray=={version}", tmp_path)
    env_dir = make_env(conn, str(tmp_path / "linked")).rsplit("/bin/", 1)[0]
    site = Path(install_entry(conn, env_dir, ray_req,
                              link_ray=(ray_python, version)).after.site_packages)
    shared = (site / "ray").resolve()
    (site / "ray").unlink()
    (site / "ray").symlink_to(tmp_path / "removed-ray-venv" / "ray")
    assert (read_installed(conn, env_dir) or {})["ray"].version == "0+broken.link"
    uninstall(conn, env_dir, ["ray"])
    assert not os.path.lexists(site / "ray") and "ray" not in (read_installed(conn, env_dir) or {})
    install_entry(conn, env_dir, ray_req, link_ray=(ray_python, version))
    assert (site / "ray").is_symlink() and (site / "ray").resolve() == shared
    assert (read_installed(conn, env_dir) or {})["ray"].version == version
