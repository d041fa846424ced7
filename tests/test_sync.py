"""sync_folder with real files: LocalConnection into tmp_path, and one test over a
real OpenSSH server (sshd.py). What the host holds is checked with plain os calls."""
from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rhplan.errors import ConfigError
from rhplan.hosts import sync as sync_mod
from rhplan.hosts.connection import CommandResult, LocalConnection
from rhplan.hosts.sync import MANIFEST_NAME, SyncResult, remote_tree_hash, sync_folder
from rhplan.packages import tree_hash

HOSTILE_NAMES = [
    "a; touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "new\nline.py",
    "it's \"quoted\" & spaced.txt",
    "-rf",
]


class CountingConnection(LocalConnection):
    """LocalConnection that also records every command, put and get."""

    def __init__(self) -> None:
        super().__init__()
        self.argvs: list[tuple[str, ...]] = []
        self.puts: list[str] = []
        self.gets: list[str] = []

    def run(self, argv, **kw):  # type: ignore[no-untyped-def, override]
        self.argvs.append(tuple(argv))
        return super().run(argv, **kw)

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        self.puts.append(path)
        super().put_bytes(data, path, mode)

    def get_bytes(self, path: str) -> bytes:
        self.gets.append(path)
        return super().get_bytes(path)

    def reset(self) -> None:
        self.commands_run = 0
        self.argvs.clear()
        self.puts.clear()
        self.gets.clear()


@pytest.fixture
def conn() -> CountingConnection:
    return CountingConnection()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A small package folder."""
    root = tmp_path / "src" / "proj"
    (root / "mypkg" / "sub").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'mypkg'\n")
    (root / "mypkg" / "__init__.py").write_text("VALUE = 1\n")
    (root / "mypkg" / "sub" / "mod.py").write_text("X = 2\n")
    (root / "mypkg" / "data.bin").write_bytes(bytes(range(256)) * 64)
    return root


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return tmp_path / "host" / "pkgs" / "proj"


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Anything a command might create by accident lands where tests look for it.
    monkeypatch.chdir(tmp_path)


def remote_files(remote: Path) -> dict[str, bytes]:
    """Every file under remote except the manifest, by relative path."""
    out = {}
    for dirpath, _, filenames in os.walk(remote):
        for f in filenames:
            rel = os.path.relpath(os.path.join(dirpath, f), remote).replace(os.sep, "/")
            if rel != MANIFEST_NAME:
                out[rel] = Path(dirpath, f).read_bytes()
    return out


def local_files(root: Path) -> dict[str, bytes]:
    return remote_files(root)


def one_line(exc: pytest.ExceptionInfo[Exception]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


# -- what travels ------------------------------------------------------------------


def test_first_sync_sends_everything(conn: CountingConnection, src: Path, remote: Path) -> None:
    result = sync_folder(conn, src, str(remote))

    assert isinstance(result, SyncResult)
    assert result.files_total == result.files_sent == 4
    assert result.files_deleted == 0
    assert result.bytes_sent == sum(len(b) for b in local_files(src).values())
    assert remote_files(remote) == local_files(src)
    assert conn.commands_run == 0  # nothing to delete: uploads are not commands
    manifest = json.loads((remote / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == set(local_files(src))
    assert conn.puts[-1] == str(remote / MANIFEST_NAME)  # the manifest goes last


def test_second_sync_sends_nothing_and_runs_no_command(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    first = sync_folder(conn, src, str(remote))
    conn.reset()

    second = sync_folder(conn, src, str(remote))

    assert (second.files_total, second.files_sent, second.files_deleted, second.bytes_sent) == (
        4, 0, 0, 0)
    assert not second.changed
    assert second.tree_hash == first.tree_hash
    assert conn.commands_run == 0
    assert conn.puts == []  # not even the manifest is rewritten
    assert conn.gets == [str(remote / MANIFEST_NAME)]  # one read of the manifest


def test_editing_one_file_sends_exactly_that_file(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    first = sync_folder(conn, src, str(remote))
    (src / "mypkg" / "sub" / "mod.py").write_text("X = 3\n")
    conn.reset()

    result = sync_folder(conn, src, str(remote))

    assert result.sent == ("mypkg/sub/mod.py",)
    assert (result.files_sent, result.files_deleted, result.bytes_sent) == (1, 0, 6)
    assert result.tree_hash != first.tree_hash
    assert conn.commands_run == 0
    assert conn.puts == [str(remote / "mypkg/sub/mod.py"), str(remote / MANIFEST_NAME)]
    assert (remote / "mypkg" / "sub" / "mod.py").read_text() == "X = 3\n"


def test_deleting_one_file_deletes_it_remotely_with_one_command(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    sync_folder(conn, src, str(remote))
    (src / "mypkg" / "data.bin").unlink()
    conn.reset()

    result = sync_folder(conn, src, str(remote))

    assert result.deleted == ("mypkg/data.bin",)
    assert (result.files_total, result.files_sent, result.files_deleted) == (3, 0, 1)
    assert not (remote / "mypkg" / "data.bin").exists()
    assert remote_files(remote) == local_files(src)
    assert conn.argvs == [("rm", "-f", "--", str(remote / "mypkg" / "data.bin"))]
    assert "mypkg/data.bin" not in json.loads((remote / MANIFEST_NAME).read_text())["files"]


def test_many_deletes_are_batched_under_the_command_line_limit(
    conn: CountingConnection, src: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(30):
        (src / f"file_{i:02d}.txt").write_text(str(i))
    sync_folder(conn, src, str(remote))
    for i in range(30):
        (src / f"file_{i:02d}.txt").unlink()
    conn.reset()
    monkeypatch.setattr(sync_mod, "_ARGV_BUDGET", 2000)  # ~a dozen paths per command

    result = sync_folder(conn, src, str(remote))

    assert result.files_deleted == 30
    assert 2 <= conn.commands_run <= 5
    assert all(len(" ".join(a)) < 2200 for a in conn.argvs)
    assert remote_files(remote) == local_files(src)


def test_exec_bit_and_private_modes_are_kept(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    script = src / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    secret = src / "private.cfg"
    secret.write_text("token\n")
    secret.chmod(0o600)

    sync_folder(conn, src, str(remote))

    assert stat.S_IMODE((remote / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((remote / "private.cfg").stat().st_mode) == 0o600
    assert stat.S_IMODE((remote / "pyproject.toml").stat().st_mode) == (
        stat.S_IMODE((src / "pyproject.toml").stat().st_mode))

    # A mode change alone is a change: the file is sent again with its new mode.
    script.chmod(0o644)
    result = sync_folder(conn, src, str(remote))
    assert result.sent == ("run.sh",)
    assert stat.S_IMODE((remote / "run.sh").stat().st_mode) == 0o644


def test_gitignored_files_and_caches_are_not_sent(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    (src / ".gitignore").write_text("# data\n*.log\ndata/\n/secret.env\n")
    (src / "run.log").write_text("noise")
    (src / "data").mkdir()
    (src / "data" / "big.csv").write_text("1,2,3")
    (src / "secret.env").write_text("KEY=1")
    for cache in ("__pycache__", "mypkg/__pycache__", ".git", ".venv", "build",
                  "mypkg.egg-info"):
        (src / cache).mkdir(parents=True, exist_ok=True)
        (src / cache / "junk").write_text("junk")
    (src / "mypkg" / "stale.pyc").write_bytes(b"\0")

    result = sync_folder(conn, src, str(remote))

    assert sorted(remote_files(remote)) == sorted([
        ".gitignore", "pyproject.toml", "mypkg/__init__.py", "mypkg/sub/mod.py",
        "mypkg/data.bin"])
    assert result.files_total == 5


def test_hostile_file_names_stay_data(
    conn: CountingConnection, src: Path, remote: Path, tmp_path: Path
) -> None:
    weird = src / "mypkg" / "we ird; $(touch PWNED)"
    weird.mkdir()
    for name in HOSTILE_NAMES:
        (src / name).write_text(name)
        (weird / name).write_text(name)
    home_pwned = Path.home() / "PWNED"
    had_home_pwned = home_pwned.exists()

    first = sync_folder(conn, src, str(remote))
    assert first.files_sent == 4 + 2 * len(HOSTILE_NAMES)
    assert remote_files(remote) == local_files(src)
    assert sync_folder(conn, src, str(remote)).files_sent == 0

    # Removing them goes through rm's argv: still data.
    for name in HOSTILE_NAMES:
        (src / name).unlink()
        (weird / name).unlink()
    conn.reset()
    second = sync_folder(conn, src, str(remote))

    assert second.files_deleted == 2 * len(HOSTILE_NAMES)
    assert conn.commands_run == 1
    assert remote_files(remote) == local_files(src)
    assert [p for p in tmp_path.rglob("*") if p.name == "PWNED"] == []
    assert home_pwned.exists() == had_home_pwned


def test_symlinks_inside_are_copied_outside_ones_are_not(
    conn: CountingConnection, src: Path, remote: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "id_rsa").write_text("PRIVATE KEY")
    (src / "inside_link.py").symlink_to("mypkg/__init__.py")
    (src / "outside_link").symlink_to(outside / "id_rsa")
    (src / "dangling").symlink_to(tmp_path / "nope")
    (src / "dir_link").symlink_to(outside, target_is_directory=True)
    (src / "escape").symlink_to("../../outside/id_rsa")

    result = sync_folder(conn, src, str(remote))

    assert (remote / "inside_link.py").read_text() == "VALUE = 1\n"
    assert not (remote / "inside_link.py").is_symlink()
    for name in ("outside_link", "dangling", "dir_link", "escape"):
        assert not os.path.lexists(remote / name), name
    assert sorted(result.skipped) == ["dangling", "dir_link", "escape", "outside_link"]
    assert b"PRIVATE KEY" not in b"".join(remote_files(remote).values())
    assert result.tree_hash == tree_hash(src)


def test_tree_hash_equals_packages_tree_hash(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    (src / ".gitignore").write_text("*.log\n")
    (src / "x.log").write_text("ignored")
    (src / "mypkg" / "__pycache__").mkdir()
    (src / "mypkg" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    (src / "Zed.py").write_text("")  # sort order: uppercase before lowercase
    (src / "a b").mkdir()
    (src / "a b" / "c\nd").write_text("odd")
    (src / MANIFEST_NAME).write_text("{}")  # a file that cannot be sent under its name

    result = sync_folder(conn, src, str(remote))

    assert result.tree_hash == tree_hash(src)
    assert remote_tree_hash(conn, str(remote)) == result.tree_hash
    assert MANIFEST_NAME in result.skipped
    # A second, unchanged sync reports the same identity.
    assert sync_folder(conn, src, str(remote)).tree_hash == tree_hash(src)


def test_remote_tree_hash_of_a_never_synced_folder(conn: CountingConnection,
                                                   remote: Path) -> None:
    assert remote_tree_hash(conn, str(remote)) is None


# -- what is refused ---------------------------------------------------------------


def test_refuses_root(conn: CountingConnection, remote: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        sync_folder(conn, Path("/"), str(remote))
    assert "refusing to sync /" in one_line(exc)
    assert conn.commands_run == 0 and conn.gets == [] and conn.puts == []


def test_refuses_home_and_its_parents(
    conn: CountingConnection, tmp_path: Path, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "users" / "me"
    (home / "project").mkdir(parents=True)
    (home / "project" / "main.py").write_text("")
    monkeypatch.setenv("HOME", str(home))

    for folder, words in ((home, "your home folder"), (home.parent, "holds your home"),
                          (tmp_path, "holds your home"), (Path("~"), "your home folder")):
        with pytest.raises(ConfigError) as exc:
            sync_folder(conn, folder, str(remote))
        assert words in one_line(exc), folder
    assert conn.gets == [] and conn.puts == []

    # A project inside home is fine.
    assert sync_folder(conn, home / "project", str(remote)).files_sent == 1


def test_refuses_a_folder_over_the_size_limit(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    (src / "checkpoints").mkdir()
    (src / "checkpoints" / "model.bin").write_bytes(b"\0" * 300_000)

    with pytest.raises(ConfigError) as exc:
        sync_folder(conn, src, str(remote), max_bytes=200_000)

    msg = one_line(exc)
    assert "309.0 KiB" in msg and "195.3 KiB limit" in msg, msg
    assert "'checkpoints/' 293.0 KiB" in msg and ".gitignore" in msg, msg
    assert conn.gets == [] and conn.puts == [] and not remote.exists()

    # Ignoring it is the way out the message names.
    (src / ".gitignore").write_text("checkpoints/\n")
    assert sync_folder(conn, src, str(remote), max_bytes=200_000).files_sent == 5


def test_refuses_missing_folder_file_and_bad_remote(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    for local, dest, words in (
        (src / "nope", str(remote), "does not exist"),
        (src / "pyproject.toml", str(remote), "is a file"),
        (src, "~/pkgs", "not expanded"),
        (src, "/", "into /"),
        (src, "", "empty"),
    ):
        with pytest.raises(ConfigError) as exc:
            sync_folder(conn, local, dest)
        assert words in one_line(exc)


# -- changes of shape and interrupted syncs ----------------------------------------


def test_file_becomes_folder_and_back(conn: CountingConnection, src: Path,
                                      remote: Path) -> None:
    (src / "thing").write_text("a file")
    sync_folder(conn, src, str(remote))

    (src / "thing").unlink()
    (src / "thing").mkdir()
    (src / "thing" / "inner.py").write_text("now a folder")
    sync_folder(conn, src, str(remote))
    assert remote_files(remote) == local_files(src)

    # Python leaves caches behind on the host; the folder still gives way.
    (remote / "thing" / "__pycache__").mkdir()
    (remote / "thing" / "__pycache__" / "inner.cpython-311.pyc").write_bytes(b"\0")
    (src / "thing" / "inner.py").unlink()
    (src / "thing").rmdir()
    (src / "thing").write_text("a file again")
    conn.reset()
    result = sync_folder(conn, src, str(remote))
    assert result.sent == ("thing",) and result.deleted == ("thing/inner.py",)
    assert conn.commands_run == 1
    assert remote_files(remote) == local_files(src)


class FailingConnection(CountingConnection):
    """Breaks (like a dropped connection) on the n-th put of a file."""

    def __init__(self, fail_on_put: int) -> None:
        super().__init__()
        self.fail_on_put = fail_on_put

    def put_bytes(self, data: bytes, path: str, mode: int = 0o644) -> None:
        if len(self.puts) + 1 == self.fail_on_put:
            self.puts.append(path)
            raise OSError(104, "Connection reset by peer")
        super().put_bytes(data, path, mode)


def test_interrupted_sync_is_finished_by_the_next(src: Path, remote: Path) -> None:
    sync_folder(CountingConnection(), src, str(remote))
    for name in ("new_a.py", "new_b.py", "new_c.py"):
        (src / name).write_text(name)
    (src / "mypkg" / "__init__.py").write_text("VALUE = 2\n")

    # Puts in tree order: 1 the pending manifest, 2 new_a.py, 3 new_b.py, 4 breaks.
    with pytest.raises(Exception, match="Connection reset"):
        sync_folder(FailingConnection(fail_on_put=4), src, str(remote))
    assert (remote / "new_a.py").exists()

    # Meanwhile new_a.py is deleted locally: the next sync must not orphan it.
    (src / "new_a.py").unlink()
    conn = CountingConnection()
    result = sync_folder(conn, src, str(remote))

    assert "new_a.py" in result.deleted
    assert remote_files(remote) == local_files(src)
    assert sync_folder(conn, src, str(remote)).files_sent == 0


def test_hostile_remote_manifest_cannot_delete_outside(
    conn: CountingConnection, src: Path, remote: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    remote.mkdir(parents=True)
    entry = {"sha256": "0" * 64, "mode": 0o644}
    (remote / MANIFEST_NAME).write_text(json.dumps({
        "format": "rhplan-sync-manifest", "version": 1, "tree_hash": "x",
        "files": {"../../../victim.txt": entry, str(victim): entry, "a/./b": entry,
                  "ok.txt": entry}}))
    (remote / "ok.txt").write_text("stale")

    result = sync_folder(conn, src, str(remote))

    assert victim.read_text() == "keep me"
    assert result.deleted == ("ok.txt",)
    assert remote_files(remote) == local_files(src)


def test_garbage_remote_manifest_means_send_everything(
    conn: CountingConnection, src: Path, remote: Path
) -> None:
    remote.mkdir(parents=True)
    (remote / MANIFEST_NAME).write_text("not json")
    assert sync_folder(conn, src, str(remote)).files_sent == 4
    assert sync_folder(conn, src, str(remote)).files_sent == 0


def test_force_sends_everything(conn: CountingConnection, src: Path, remote: Path) -> None:
    sync_folder(conn, src, str(remote))
    assert sync_folder(conn, src, str(remote), force=True).files_sent == 4


def test_failed_rm_is_a_provider_error(src: Path, remote: Path) -> None:
    from rhplan.errors import ProviderError

    class NoRm(CountingConnection):
        def run(self, argv, **kw):  # type: ignore[no-untyped-def, override]
            return CommandResult(tuple(argv), 1, "", "rm: cannot remove 'x': Permission denied")

    sync_folder(NoRm(), src, str(remote))
    (src / "pyproject.toml").unlink()
    with pytest.raises(ProviderError) as exc:
        sync_folder(NoRm(), src, str(remote))
    assert "Permission denied" in one_line(exc)
    # The manifest was not advanced: the next working sync deletes it.
    assert sync_folder(CountingConnection(), src, str(remote)).deleted == ("pyproject.toml",)


# -- over SSH ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_conn() -> Iterator[object]:
    pytest.importorskip("paramiko")
    from sshd import SSHServer

    from rhplan.hosts.ssh import SSHConnection

    with SSHServer() as server:
        c = SSHConnection(server.host, port=server.port, user=server.user,
                          private_key=server.client_key, known_hosts=server.known_hosts)
        yield c
        c.close()


def test_sync_over_ssh(ssh_conn: object, src: Path, remote: Path, tmp_path: Path) -> None:
    from rhplan.hosts.ssh import SSHConnection

    assert isinstance(ssh_conn, SSHConnection)
    for name in HOSTILE_NAMES:
        (src / name).write_text(name)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    home_pwned = Path.home() / "PWNED"
    had_home_pwned = home_pwned.exists()
    before = ssh_conn.commands_run

    first = sync_folder(ssh_conn, src, str(remote))
    assert first.files_sent == first.files_total == 5 + len(HOSTILE_NAMES)
    assert remote_files(remote) == local_files(src)
    assert stat.S_IMODE((remote / "run.sh").stat().st_mode) == 0o755

    second = sync_folder(ssh_conn, src, str(remote))
    assert second.files_sent == 0 and second.files_deleted == 0
    assert ssh_conn.commands_run == before

    for name in HOSTILE_NAMES:
        (src / name).unlink()
    third = sync_folder(ssh_conn, src, str(remote))
    assert third.files_deleted == len(HOSTILE_NAMES)
    assert ssh_conn.commands_run == before + 1
    assert remote_files(remote) == local_files(src)
    assert remote_tree_hash(ssh_conn, str(remote)) == tree_hash(src) == third.tree_hash
    assert [p for p in tmp_path.rglob("*") if p.name == "PWNED"] == []
    assert home_pwned.exists() == had_home_pwned


def test_fast_path_over_ssh_is_one_command(ssh_conn: object, src: Path, remote: Path,
                                           tmp_path: Path) -> None:
    """With a cache of the manifest this machine wrote, a re-sync is one command that
    carries every change on stdin: hostile names stay data, deletions included."""
    from rhplan.hosts.ssh import SSHConnection

    assert isinstance(ssh_conn, SSHConnection)
    cache = tmp_path / "cache"
    first = sync_folder(ssh_conn, src, str(remote), cache=cache)
    assert first.files_sent == first.files_total == 4
    for name in HOSTILE_NAMES:
        (src / name).write_text(name)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    before = ssh_conn.commands_run
    second = sync_folder(ssh_conn, src, str(remote), cache=cache)
    assert second.files_sent == 1 + len(HOSTILE_NAMES) and ssh_conn.commands_run == before + 1
    assert remote_files(remote) == local_files(src)
    assert stat.S_IMODE((remote / "run.sh").stat().st_mode) == 0o755
    for name in HOSTILE_NAMES:
        (src / name).unlink()
    third = sync_folder(ssh_conn, src, str(remote), cache=cache)
    assert third.files_deleted == len(HOSTILE_NAMES) and ssh_conn.commands_run == before + 2
    assert remote_files(remote) == local_files(src)
    assert remote_tree_hash(ssh_conn, str(remote)) == tree_hash(src) == third.tree_hash
    assert [p for p in tmp_path.rglob("*") if p.name == "PWNED"] == []
