"""A pytest plugin: at the end of the session, look for every canary secret value
(tests/support/canary.py) in every artifact the run produced, and fail the session on a hit.

Where it looks:
- the session's basetemp tree: configuration folders, state files and their .backup,
  saved plans, lock info, cluster root_dirs ("hosts"), driver scripts, background
  command logs, and CLI_LOG: the stdout/stderr of every `rhplan` command the tests ran
  (appended by conftest.Rhplan, see record_cli_output);
- the Ray temp dirs rhplan made for the tests' clusters (/tmp/rhplan-<uid>/*, and
  /tmp/rhplan-ray-* of older rhplan, changed
  since the session started; most are gone after destroy, so tests that apply also
  call scan_paths on theirs before destroying).

What it looks for: each value as is, and its simple encodings: JSON-escaped,
repr-escaped (tracebacks), shell-quoted, URL-quoted and base64.

What it skips, to stay fast (a few seconds for a full run): site-packages and the
Ray venvs (tens of thousands of installed files nobody writes a secret into), Ray's
own runtime_resources, sockets and other non-regular files, compiled or archive
files by suffix, and files over MAX_BYTES (counted and reported as skipped).

Allowed: the file an env keeps its secrets in on its host, ENV/rhplan/secrets.json,
and its provider secrets' credential files, ENV/rhplan/secret_files/*, which must hold
them; each such file found must be mode 0600, or that is a leak too.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shlex
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from canary import issued

# the one file meant to hold secret values: an env's secrets on its host (envs.SECRETS_FILE)
ALLOWED = re.compile(
    r"/envs/[A-Za-z_][A-Za-z0-9_-]*/rhplan/(secrets\.json|secret_files/[^/]+)$")
MAX_BYTES = 20 * 1024 * 1024
_SKIP_DIRS = {"site-packages", "ray-venv", "runtime_resources", "__pycache__", ".git"}
_SKIP_SUFFIXES = (".so", ".pyc", ".whl", ".zip", ".gz", ".tar", ".png", ".jpg", ".pickle",
                  ".pkl", ".db", ".sqlite")
RAY_TEMP_GLOB = f"rhplan-{os.geteuid()}/*"  # and rhplan-ray-* of older rhplan
CLI_LOG_NAME = "rhplan-cli-output.log"

_cli_log: Path | None = None


def record_cli_output(argv: Iterable[str], returncode: int, stdout: str, stderr: str) -> None:
    """Append one finished command's output to the session's CLI log (conftest.Rhplan)."""
    if _cli_log is None:
        return
    command = shlex.join(argv)
    for value in issued():  # a test may pass a canary as an argument (-var): that is input
        command = command.replace(shlex.quote(value), "CANARY").replace(value, "CANARY")
    with _cli_log.open("a", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(f"$ rhplan {command}  -> exit {returncode}\n{stdout}{stderr}\n")


def encodings(value: str) -> set[bytes]:
    """The forms a value takes when printed, dumped or passed around."""
    raw = value.encode("utf-8", "surrogateescape")
    forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1], shlex.quote(value),
             quote(value, safe="")}
    # the unique core alone ("canary-TAG-HEX"), so a clipped message counts too
    forms |= set(re.findall(r"canary-[A-Za-z0-9_]+-[0-9a-f]{32}", value))
    out = {f.encode("utf-8", "surrogateescape") for f in forms}
    out |= {base64.b64encode(raw), base64.urlsafe_b64encode(raw)}
    return {b for b in out if len(b) >= 12}  # a short needle would match by chance


@dataclass
class ScanReport:
    files: int = 0
    bytes: int = 0
    skipped_large: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)  # secrets files that hold values
    leaks: list[str] = field(default_factory=list)  # "path: what was found"

    def merge(self, other: ScanReport) -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.skipped_large += other.skipped_large
        self.allowed += other.allowed
        self.leaks += other.leaks


def _files(top: Path) -> Iterable[str]:
    if top.is_file():
        yield str(top)
        return
    for dirpath, dirnames, filenames in os.walk(top, onerror=lambda e: None):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for name in filenames:
            if not name.endswith(_SKIP_SUFFIXES):
                yield os.path.join(dirpath, name)


def scan_paths(paths: Iterable[Path], values: list[str] | None = None) -> ScanReport:
    """Look for the canary values (default: all issued so far) in files under paths."""
    needles = {v: encodings(v) for v in (issued() if values is None else values)}
    report = ScanReport()
    if not needles:
        return report
    for top in paths:
        for path in _files(Path(top)):
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if st.st_size > MAX_BYTES:
                    report.skipped_large.append(path)
                    continue
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue  # gone meanwhile (a destroy in the background) or unreadable
            report.files += 1
            report.bytes += len(data)
            found = [v for v, forms in needles.items() if any(f in data for f in forms)]
            if not found:
                continue
            if ALLOWED.search(path):
                report.allowed.append(path)
                if stat.S_IMODE(st.st_mode) != 0o600:
                    report.leaks.append(f"{path}: holds secrets with mode "
                                        f"{stat.S_IMODE(st.st_mode):o}, not 600")
                continue
            report.leaks += [f"{path}: {v!r}" for v in found]
    return report


def ray_temp_dirs(since: float) -> list[Path]:
    """Ray temp dirs of rhplan clusters touched since the session started."""
    out = []
    for p in [*Path("/tmp").glob(RAY_TEMP_GLOB), *Path("/tmp").glob("rhplan-ray-*")]:
        try:
            if p.stat().st_mtime >= since - 1:
                out.append(p)
        except OSError:
            pass
    return out


_started = time.time()


@pytest.hookimpl(trylast=True)  # after the tmp_path plugin has made its factory
def pytest_configure(config: pytest.Config) -> None:
    global _cli_log, _started
    _started = time.time()
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        _cli_log = factory.getbasetemp() / CLI_LOG_NAME
        _cli_log.touch()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not issued() or _cli_log is None:
        return
    t0 = time.monotonic()
    report = scan_paths([_cli_log.parent, *ray_temp_dirs(_started)])
    took = time.monotonic() - t0
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"RELIABILITY: secret scan: files={report.files} bytes={report.bytes} "
             f"canaries={len(issued())} leaks={len(report.leaks)} "
             f"allowed-secret-files={len(report.allowed)} skipped-large="
             f"{len(report.skipped_large)} seconds={took:.1f}"]
    lines += [f"  LEAK {leak}" for leak in report.leaks[:50]]
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)
    if report.leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
