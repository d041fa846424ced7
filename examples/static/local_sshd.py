"""A throwaway OpenSSH server on 127.0.0.1 for the static example.

    python examples/static/local_sshd.py --background   # returns once sshd answers
    rhplan -chdir=examples/static apply   -var-file=host.json -auto-approve
    rhplan -chdir=examples/static destroy -var-file=host.json -auto-approve
    python examples/static/local_sshd.py --stop

It writes host.json (a -var-file: address, port, user, keys, known_hosts and a root_dir
of this checkout's own) next to this file, or where --var-file says. Without
--background it serves in the foreground until Ctrl-C. Either way SIGINT, SIGTERM and
SIGHUP stop sshd and every session it forked, and remove its temp folder (keys
included), the var file and the pid file.

It uses the same helper as rhplan's tests (tests/support/sshd.py): its own host key, client
key and known_hosts in a temp folder; the system's sshd and ~/.ssh are never touched.
Needs /usr/sbin/sshd (apt-get install openssh-server). examples/aws/local_moto.py
runs its servers the same way (`run_service` below).
"""
from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests" / "support"))

from sshd import SSHServer, ensure_sshd_installed  # noqa: E402

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_TIMEOUT = 30.0

# start(temp_dir, var_file, cleanups) -> (the var file's values, a line for the user).
# It appends a stop function to cleanups for everything it starts, as soon as it runs.
Start = Callable[[Path, Path, list[Callable[[], None]]], tuple[dict, str]]


class Stop(Exception):
    """A stop signal arrived."""


def _on_signal(signum: int, frame: object) -> None:
    raise Stop(signum)


def pid_file_for(var_file: Path) -> Path:
    return var_file.with_suffix(".pid")


def root_dir_for(name: str, config_dir: Path) -> str:
    """rhplan's folder on this machine as a host: one per user and per configuration
    folder, so two checkouts (or two people sharing one account) never share a Ray head
    or envs."""
    digest = hashlib.sha256(str(config_dir.resolve()).encode()).hexdigest()[:10]
    return f"{Path.home()}/.rhplan/clusters/{name}-{getpass.getuser()}-{digest}"


def start_sshd(root: Path, var_file: Path, cleanups: list[Callable[[], None]]
               ) -> tuple[dict, str]:
    ensure_sshd_installed()
    server = SSHServer(root)
    cleanups.append(server.stop)  # sshd and every session it forked
    server.start()
    values = {
        "ips": ["127.0.0.1"], "user": server.user, "port": server.port,
        "private_key": str(server.client_key), "known_hosts": str(server.known_hosts),
        "root_dir": root_dir_for("onprem", var_file.parent),
    }
    return values, f"sshd on 127.0.0.1:{server.port}"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)  # a reader sees the old file or the whole new one


def _say(text: str) -> None:
    try:
        print(text, flush=True)
    except OSError:  # the terminal is gone (SIGHUP) or the reader left
        pass


def serve(start: Start, prefix: str, var_file: Path, ready_fd: int | None) -> int:
    """Run what start() starts until a stop signal; clean up whatever happens."""
    for sig in STOP_SIGNALS:
        # set explicitly: a shell starts `cmd &` with SIGINT ignored, and Ctrl-C must work
        signal.signal(sig, _on_signal)
    pid_file = pid_file_for(var_file)
    root = Path(tempfile.mkdtemp(prefix=prefix))  # ours to remove, keys and all
    cleanups: list[Callable[[], None]] = []
    try:
        values, what = start(root, var_file, cleanups)
        _write_atomically(var_file, json.dumps(values, indent=2) + "\n")
        pid_file.write_text(f"{os.getpid()}\n")
        msg = f"{what} (pid {os.getpid()}, files in {root}); wrote {var_file}"
        if ready_fd is None:
            _say(msg + "; Ctrl-C stops it")
        else:
            os.write(ready_fd, (msg + "\n").encode())
            os.close(ready_fd)
            _detach_stderr()  # the parent that read it is gone
        while True:
            signal.pause()
    except Stop as stop:
        return 0 if stop.args[0] == signal.SIGINT else 128 + stop.args[0]
    finally:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up
        for stop_one in reversed(cleanups):
            try:
                stop_one()
            except Exception as exc:  # noqa: BLE001 - stop the rest whatever one does
                _say(f"while stopping: {exc}")
        shutil.rmtree(root, ignore_errors=True)
        for path in (var_file, pid_file):
            path.unlink(missing_ok=True)
        if ready_fd is None:
            _say(f"stopped; removed {root} and {var_file.name}")


def _detach_stderr() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def start_background(script: Path, var_file: Path, default_var_file: Path) -> int:
    """Start `script` serving in its own session; return once it is ready (or failed)."""
    hint = _stop_hint(script, var_file, default_var_file)
    running = _running_pid(var_file)
    if running:
        print(f"already running (pid {running}) for {var_file}; {hint}")
        return 0
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, str(script), "--var-file", str(var_file), "--ready-fd", str(write_fd)],
        pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        line = ready.readline().strip()  # EOF without a line: it failed before ready
    if not line:
        err = proc.communicate(timeout=STOP_TIMEOUT)[1].decode(errors="replace").strip()
        print(f"error: {script.name} did not start: {err.splitlines()[-1] if err else '?'}",
              file=sys.stderr)
        return 1
    assert proc.stderr is not None
    proc.stderr.close()
    print(f"{line}; {hint}")
    return 0


def stop_background(var_file: Path, force: bool = False) -> int:
    """SIGTERM the background server named by the pid file and wait until it is gone."""
    pid = _running_pid(var_file)
    if not pid:
        print(f"nothing is running for {var_file}")
        return 0
    applied = _recorded(var_file.parent / "rhplan.state.json")
    if applied and not force:
        # without these servers destroy cannot reach the hosts, and the Ray processes
        # rhplan started on this machine would outlive them
        print(f"error: {var_file.parent.name}/rhplan.state.json still records {applied}; run "
              f"rhplan -chdir={_shown(var_file.parent)} destroy -var-file={var_file.name} "
              "first (or pass --force)", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _is_ours(pid):
        if time.monotonic() > deadline:
            print(f"error: pid {pid} did not stop within {STOP_TIMEOUT:g} s", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"stopped pid {pid}; its temp folder and {var_file.name} are removed")
    return 0


def _recorded(state_path: Path) -> str:
    """The resources a state file still records, as "a, b" ("" if none)."""
    try:
        resources = json.loads(state_path.read_text()).get("resources") or []
    except (OSError, ValueError):
        return ""
    return ", ".join(str(r.get("address")) for r in resources)


def _running_pid(var_file: Path) -> int | None:
    try:
        pid = int(pid_file_for(var_file).read_text())
    except (OSError, ValueError):
        return None
    return pid if _is_ours(pid) else None


def _is_ours(pid: int) -> bool:
    """pid is alive and still one of these scripts (a recorded pid may have been reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # python running one of the scripts (not, say, an editor that has it open)
    return b"python" in Path(argv[0].decode(errors="replace")).name.encode() and any(
        a.endswith((b"local_sshd.py", b"local_moto.py")) for a in argv[1:2])


def _stop_hint(script: Path, var_file: Path, default_var_file: Path) -> str:
    where = "" if var_file == default_var_file else f" --var-file {var_file}"
    return f"stop it with: python {_shown(script)} --stop{where}"


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_service(argv: list[str] | None, script: Path, start: Start, prefix: str,
                default_var_file: Path, description: str) -> int:
    """The command line shared by local_sshd.py and local_moto.py."""
    ap = argparse.ArgumentParser(description=description)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--background", action="store_true",
                      help="detach once ready; stop it with --stop")
    mode.add_argument("--stop", action="store_true", help="stop a --background run")
    ap.add_argument("--force", action="store_true",
                    help="with --stop: stop even though the state still records resources")
    ap.add_argument("--var-file", type=Path, default=default_var_file,
                    help=f"where to write the -var-file (default: {default_var_file.name} "
                    "beside this script)")
    ap.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    var_file = args.var_file.resolve()
    if args.stop:
        return stop_background(var_file, args.force)
    if args.background:
        return start_background(script.resolve(), var_file, default_var_file)
    return serve(start, prefix, var_file, args.ready_fd)


if __name__ == "__main__":
    sys.exit(run_service(None, Path(__file__), start_sshd, "rhplan-local-sshd-",
                         HERE / "host.json", "A throwaway sshd on 127.0.0.1 for "
                         "examples/static; writes host.json (a -var-file)."))
