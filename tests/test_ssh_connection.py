"""SSHConnection against a real OpenSSH server on 127.0.0.1 (see sshd.py).

The server runs on this machine as the current user, so what a command did
remotely (files, modes, leftover processes) is checked with plain os calls.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd import SSHServer, free_port

from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection
from rhplan.hosts.ssh import SSHConnection, close_all, get_connection

pytest.importorskip("paramiko")

# Python on the "remote" host is this one: it prints what it received, exactly.
SHOW_ARGV = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
SHOW_ENV = [sys.executable, "-c",
            "import json, os, sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"]


@pytest.fixture(scope="module")
def conn(server: SSHServer) -> Iterator[SSHConnection]:
    c = SSHConnection(server.host, port=server.port, user=server.user,
                      private_key=server.client_key, known_hosts=server.known_hosts)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _empty_pool() -> Iterator[None]:
    yield
    close_all()


def connect(server: SSHServer, **kw: object) -> SSHConnection:
    args: dict[str, object] = {"port": server.port, "user": server.user,
                               "private_key": server.client_key, "connect_timeout": 5}
    args.update(kw)
    return SSHConnection(server.host, **args)  # type: ignore[arg-type]


def one_line(exc: pytest.ExceptionInfo[ProviderError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


# -- commands -------------------------------------------------------------------


def test_is_a_connection(conn: SSHConnection) -> None:
    assert isinstance(conn, Connection)
    assert conn.host == "127.0.0.1"


def test_echo(conn: SSHConnection) -> None:
    before = conn.commands_run
    r = conn.run(["echo", "hello", "world"])
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello world\n", "")
    assert r.ok and r.argv == ("echo", "hello", "world")
    assert conn.commands_run == before + 1


def test_exit_codes(conn: SSHConnection) -> None:
    assert conn.run(["sh", "-c", "exit 3"]).returncode == 3
    missing = conn.run(["rhplan-no-such-program", "x"])
    assert missing.returncode == 127
    assert "rhplan-no-such-program" in missing.stderr
    # argv[0] is always a program, never shell syntax or a builtin.
    assert conn.run(["if"]).returncode == 127


def test_stdout_and_stderr_are_separate(conn: SSHConnection) -> None:
    r = conn.run(["sh", "-c", "echo out; echo err >&2; echo out2"])
    assert r.stdout == "out\nout2\n"
    assert r.stderr == "err\n"


def test_large_output_on_both_streams_does_not_deadlock(conn: SSHConnection) -> None:
    size = 4_000_000
    script = (f"head -c {size} /dev/zero | tr '\\0' o & "
              f"head -c {size} /dev/zero | tr '\\0' e >&2; wait")
    start = time.monotonic()
    r = conn.run(["sh", "-c", script], timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
    assert len(r.stdout) == size and set(r.stdout) == {"o"}
    assert len(r.stderr) == size and set(r.stderr) == {"e"}
    assert time.monotonic() - start < 30


def test_stdin(conn: SSHConnection) -> None:
    assert conn.run(["cat"], stdin=b"line 1\nline 2 \x00 end").stdout == "line 1\nline 2 \x00 end"
    big = os.urandom(3_000_000)
    r = conn.run(["sha256sum"], stdin=big, timeout=60)
    assert r.stdout.split()[0] == hashlib.sha256(big).hexdigest()
    # No stdin means EOF at once, not a command waiting forever.
    assert conn.run(["cat"], timeout=10).returncode == 0


HOSTILE = [
    "a;b",
    "$(touch {pwned})",
    "`touch {pwned}`",
    "'single' \"double\" \\back",
    "multi\nline\n",
    "; touch {pwned} #",
    "&& touch {pwned}",
    "| touch {pwned}",
    "$HOME ${{HOME}} *",
    "",
    " leading and trailing ",
    "-n",
    "ünïcødé ✓",
]


def test_hostile_argv_and_env_arrive_verbatim(conn: SSHConnection, tmp_path: Path) -> None:
    pwned = tmp_path / "PWNED"
    values = [v.format(pwned=pwned) for v in HOSTILE]
    r = conn.run([*SHOW_ARGV, *values])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == values

    env = {f"RHPLAN_T{i}": v for i, v in enumerate(values)}
    r = conn.run([*SHOW_ENV, *env], env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == env
    assert not pwned.exists()


def test_env_is_merged_onto_the_host_environment(conn: SSHConnection) -> None:
    r = conn.run([*SHOW_ENV, "PATH", "HOME", "EXTRA"], env={"EXTRA": "1"})
    got = json.loads(r.stdout)
    assert got["EXTRA"] == "1" and got["PATH"] and got["HOME"]


def test_bad_env_names_are_refused(conn: SSHConnection) -> None:
    for key in ("", "A=B"):
        with pytest.raises(ValueError):
            conn.run(["true"], env={key: "x"})


def test_cwd_with_spaces_and_quotes(conn: SSHConnection, tmp_path: Path) -> None:
    d = tmp_path / "dir with 'quotes' \"and\" spaces; $(touch PWNED)"
    d.mkdir()
    r = conn.run(["pwd"], cwd=str(d))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{d}\n"
    assert not (tmp_path / "PWNED").exists() and not (d / "PWNED").exists()
    with pytest.raises(FileNotFoundError, match="no such directory"):
        conn.run(["pwd"], cwd=str(tmp_path / "absent"))


def _processes_with(needle: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if needle.encode() in cmdline.replace(b"\0", b" "):
                pids.append(int(entry))
    return pids


def test_timeout_gives_124_and_kills_the_remote_command(conn: SSHConnection) -> None:
    # The odd durations name these sleeps, to find leftovers afterwards.
    script = "sleep 41.123 & sleep 42.123; echo never"
    start = time.monotonic()
    r = conn.run(["sh", "-c", script], timeout=1)
    elapsed = time.monotonic() - start
    assert r.returncode == 124
    assert "timed out after 1 s" in r.stderr
    assert "never" not in r.stdout
    assert 0.9 <= elapsed < 5, elapsed
    deadline = time.monotonic() + 5
    while _processes_with("sleep 4") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _processes_with("sleep 41.123") and not _processes_with("sleep 42.123")
    # The connection is still fine afterwards.
    assert conn.run(["echo", "ok"], timeout=10).stdout == "ok\n"


def test_fast_command_with_timeout_keeps_its_exit_code(conn: SSHConnection) -> None:
    assert conn.run(["sh", "-c", "exit 7"], timeout=30).returncode == 7
    assert conn.run(["sh", "-c", "exit 124"], timeout=30).returncode == 124


def test_which(conn: SSHConnection, tmp_path: Path) -> None:
    sh = conn.which("sh")
    assert sh is not None and sh.startswith("/") and sh.endswith("/sh")
    echo = conn.which("echo")  # a shell builtin too: the file is wanted
    assert echo is not None and echo.startswith("/")
    assert conn.which("rhplan-no-such-program") is None
    pwned = tmp_path / "PWNED"
    assert conn.which(f"x; touch {pwned}") is None
    assert conn.which(f"$(touch {pwned})") is None
    assert not pwned.exists()
    assert conn.which(sys.executable) == sys.executable


# -- files ------------------------------------------------------------------------


def test_put_and_get_bytes(conn: SSHConnection, tmp_path: Path) -> None:
    path = tmp_path / "new dir" / "deeper" / "secret.env"
    data = os.urandom(100_000) + b"\0end"
    conn.put_bytes(data, str(path), mode=0o600)
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o600
    assert conn.get_bytes(str(path)) == data
    # Overwrite, another mode; no temp files are left behind.
    conn.put_bytes(b"#!/bin/sh\necho hi\n", str(path), mode=0o755)
    assert path.stat().st_mode & 0o777 == 0o755
    assert conn.run([str(path)]).stdout == "hi\n"
    assert sorted(os.listdir(path.parent)) == ["secret.env"]
    conn.put_bytes(b"", str(tmp_path / "empty"))
    assert conn.get_bytes(str(tmp_path / "empty")) == b""
    assert (tmp_path / "empty").stat().st_mode & 0o777 == 0o644


def test_get_bytes_of_a_missing_file(conn: SSHConnection, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        conn.get_bytes(str(tmp_path / "absent"))


def test_large_file_round_trip(conn: SSHConnection, tmp_path: Path) -> None:
    data = os.urandom(8_000_000)
    path = tmp_path / "big.bin"
    conn.put_bytes(data, str(path))
    assert conn.get_bytes(str(path)) == data


# -- host keys ------------------------------------------------------------------


def test_trust_on_first_use_records_the_servers_fingerprint(server: SSHServer) -> None:
    first = connect(server)
    assert first.fingerprint == server.host_key_fingerprint
    first.close()
    again = connect(server, recorded_fingerprint=server.host_key_fingerprint)
    assert again.run(["true"]).ok
    again.close()


def test_known_hosts(server: SSHServer, tmp_path: Path) -> None:
    c = connect(server, known_hosts=server.known_hosts)
    assert c.fingerprint == server.host_key_fingerprint
    assert c.run(["true"]).ok
    c.close()

    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(ProviderError) as exc:
        connect(server, known_hosts=str(empty))
    msg = one_line(exc)
    assert "not in known_hosts" in msg and server.host_key_fingerprint in msg

    with pytest.raises(ProviderError) as exc:
        connect(server, known_hosts=str(tmp_path / "absent"))
    assert "does not exist" in one_line(exc)


def test_wrong_recorded_fingerprint_is_refused(server: SSHServer) -> None:
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(ProviderError) as exc:
        connect(server, recorded_fingerprint=wrong)
    msg = one_line(exc)
    assert f"host key of 127.0.0.1:{server.port} changed" in msg
    assert f"expected {wrong}, got {server.host_key_fingerprint}" in msg


@pytest.fixture
def rebuilt(tmp_path: Path) -> Iterator[SSHServer]:
    # Its own server: the key change must not disturb the module's.
    with SSHServer(tmp_path / "sshd") as srv:
        yield srv


def test_changed_host_key_is_refused(rebuilt: SSHServer, tmp_path: Path) -> None:
    old_fp = rebuilt.host_key_fingerprint
    old_known_hosts = tmp_path / "known_hosts.old"
    rebuilt.write_known_hosts(old_known_hosts)
    pooled = get_connection(rebuilt.host, port=rebuilt.port, user=rebuilt.user,
                            private_key=rebuilt.client_key)
    assert pooled.fingerprint == old_fp

    rebuilt.regenerate_host_key()
    new_fp = rebuilt.host_key_fingerprint
    assert new_fp != old_fp
    expected = (f"host key of 127.0.0.1:{rebuilt.port} changed "
                f"(expected {old_fp}, got {new_fp})")

    with pytest.raises(ProviderError) as exc:
        connect(rebuilt, known_hosts=str(old_known_hosts))
    msg = one_line(exc)
    assert msg.startswith(expected)
    assert "update known_hosts" in msg and "intercepting" in msg

    with pytest.raises(ProviderError) as exc:
        connect(rebuilt, recorded_fingerprint=old_fp)
    assert one_line(exc).startswith(expected)

    # A pooled connection whose server came back with another key reconnects
    # and refuses it too, though nothing was recorded (it saw the old key).
    with pytest.raises(ProviderError) as exc:
        pooled.run(["true"])
    assert one_line(exc).startswith(expected)

    # The new key is accepted where it is the trusted one.
    c = connect(rebuilt, known_hosts=rebuilt.known_hosts)
    assert c.run(["true"]).ok
    c.close()


# -- failures ----------------------------------------------------------------------


def test_unreachable_port_fails_fast(server: SSHServer) -> None:
    start = time.monotonic()
    with pytest.raises(ProviderError) as exc:
        connect(server, port=free_port())
    assert time.monotonic() - start < 5
    assert "cannot reach 127.0.0.1:" in one_line(exc)


def test_unknown_host_name(server: SSHServer) -> None:
    with pytest.raises(ProviderError) as exc:
        SSHConnection("rhplan-no-such-host.invalid", private_key=server.client_key,
                      connect_timeout=5)
    assert "cannot reach rhplan-no-such-host.invalid:22" in one_line(exc)


def test_not_an_ssh_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def greet() -> None:
            peer, _ = listener.accept()
            peer.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            peer.close()

        threading.Thread(target=greet, daemon=True).start()
        with pytest.raises(ProviderError) as exc:
            SSHConnection("127.0.0.1", port=port, password="x", connect_timeout=5)
        assert f"127.0.0.1:{port}" in one_line(exc)


def test_refused_login(server: SSHServer) -> None:
    with pytest.raises(ProviderError) as exc:
        connect(server, private_key=server.stranger_key)
    msg = one_line(exc)
    assert "refused to log in" in msg and server.stranger_key in msg


def test_missing_key_file(server: SSHServer, tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as exc:
        connect(server, private_key=str(tmp_path / "id_missing"))
    assert "does not exist" in one_line(exc)
    garbage = tmp_path / "id_garbage"
    garbage.write_text("not a key\n")
    with pytest.raises(ProviderError) as exc:
        connect(server, private_key=str(garbage))
    assert "cannot read SSH private key" in one_line(exc)


def test_proxy_command(server: SSHServer) -> None:
    c = connect(server, known_hosts=server.known_hosts, proxy_command=server.relay_command())
    assert c.run(["echo", "through the proxy"]).stdout == "through the proxy\n"
    c.put_bytes(b"x", f"/tmp/rhplan-proxy-{os.getpid()}")
    assert c.get_bytes(f"/tmp/rhplan-proxy-{os.getpid()}") == b"x"
    os.unlink(f"/tmp/rhplan-proxy-{os.getpid()}")
    c.close()


# -- reuse and concurrency ----------------------------------------------------------


def test_pool_reuses_one_connection(server: SSHServer) -> None:
    def get() -> SSHConnection:
        return get_connection(server.host, port=server.port, user=server.user,
                              private_key=server.client_key, known_hosts=server.known_hosts)

    logins_before = server.accepted_logins()
    first = get()
    assert get() is first
    transport = first._client.get_transport()
    for i in range(50):
        assert get().run(["echo", str(i)]).stdout == f"{i}\n"
    assert get() is first
    assert first._client.get_transport() is transport
    assert first.connects == 1
    assert first.commands_run == 50
    # sshd's own count: one login for all of it.
    assert server.accepted_logins() - logins_before == 1

    # The fingerprint it verified is checked against a recorded one.
    assert get_connection(server.host, port=server.port, user=server.user,
                          private_key=server.client_key, known_hosts=server.known_hosts,
                          recorded_fingerprint=first.fingerprint) is first
    with pytest.raises(ProviderError, match="changed"):
        get_connection(server.host, port=server.port, user=server.user,
                       private_key=server.client_key, known_hosts=server.known_hosts,
                       recorded_fingerprint="SHA256:" + "B" * 43)
    first.close()
    assert get() is not first


def test_concurrent_runs_from_8_threads(conn: SSHConnection, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    results: dict[int, list[str]] = {}
    overlaps: list[int] = []
    running = tmp_path / "running"
    running.mkdir()

    def work(n: int) -> None:
        try:
            out = []
            for j in range(5):
                # Each command marks itself running and counts who else is.
                r = conn.run(["sh", "-c", 'touch "$2/$1"; sleep 0.2; echo "$1"; ls "$2" | wc -l;'
                              ' rm "$2/$1"', "sh", f"{n}-{j}", str(running)],
                             stdin=b"x" * 1000, timeout=30)
                assert r.returncode == 0, r.stderr
                name, count = r.stdout.split()
                out.append(name)
                overlaps.append(int(count))
                path = tmp_path / f"f{n}-{j}"
                conn.put_bytes(f"{n}-{j}".encode(), str(path))
                assert conn.get_bytes(str(path)) == f"{n}-{j}".encode()
            results[n] = out
        except BaseException as exc:  # collected, then raised in the test thread
            errors.append(exc)

    connects = conn.connects
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert results == {n: [f"{n}-{j}" for j in range(5)] for n in range(8)}
    assert conn.connects == connects
    # Commands ran side by side on the one connection (serialised, each would see only
    # itself); a count, not a clock, so a loaded machine cannot fail it.
    assert max(overlaps) >= 2, overlaps


def test_more_threads_than_sshd_sessions(conn: SSHConnection) -> None:
    # sshd allows 10 sessions per connection; 20 callers must queue, not fail.
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            r = conn.run(["sh", "-c", "sleep 0.3; echo $1", "sh", str(n)], timeout=30)
            assert r.stdout == f"{n}\n", r
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_sessions_refused_by_max_sessions_are_asked_again(tmp_path: Path) -> None:
    """sshd counts a session until it has handled our close, so a burst of commands can
    meet MaxSessions even below rhplan's own limit of channels; the open is refused
    before anything runs, and rhplan asks again instead of failing the resource."""
    srv = SSHServer(tmp_path / "sshd")
    srv.extra_config = ["MaxSessions 3"]
    with srv:
        c = connect(srv, known_hosts=srv.known_hosts)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for j in range(2):
                    r = c.run(["sh", "-c", 'sleep 0.2; echo "$1"', "sh", f"{n}-{j}"])
                    assert (r.returncode, r.stdout) == (0, f"{n}-{j}\n"), r.stderr
            except BaseException as exc:  # collected, then raised in the test thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        c.close()
    assert not errors, errors
