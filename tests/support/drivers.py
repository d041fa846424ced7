"""Drivers of an applied configuration in the tests: a script run in a fresh Python
(a process drives one Ray cluster) over a route a caller can take ("direct" or "ssh",
RHPLAN_SERVLET_ROUTE), reporting through one RESULT line. The remote-objects,
continuity and provider-secrets suites drive their clusters through Cluster; every other
suite runs its own drivers through run_driver (or, streaming a driver's lines itself,
reads its end through driver_result), so a driver's failure reads the same everywhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DRIVER_TIMEOUT = 120.0

PRELUDE = """
import json, os, sys
import rhplan
CHDIR = sys.argv[1]
def emit(**values):
    print("RESULT " + json.dumps(values), flush=True)
def catch(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except BaseException as exc:
        return {"type": type(exc).__name__, "msg": str(exc),
                "notes": "\\n".join(getattr(exc, "__notes__", []))}
    return None
"""


@dataclass
class Cluster:
    rh: Any
    scripts: Path

    def drive(self, body: str, route: str, files: dict[str, str] | None = None
              ) -> dict[str, Any]:
        """Run PRELUDE + body in a fresh Python, over route; what it emitted."""
        where = self.scripts / uuid.uuid4().hex[:8]
        where.mkdir()
        for name, text in (files or {}).items():
            (where / name).write_text(textwrap.dedent(text))
        script = where / "driver.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        return run_driver(script, self.rh.dir, env={**os.environ, "RHPLAN_SERVLET_ROUTE": route},
                          cwd=where)


def run_driver(script: Path, chdir: Path, *args: str, python: str = sys.executable,
               env: dict[str, str] | None = None, cwd: Path | None = None,
               timeout: float = DRIVER_TIMEOUT, launcher: Sequence[str] = (),
               output: bool = False) -> Any:
    """Run a driver script (given chdir, the configuration folder, then args as its
    arguments) in a fresh, unbuffered `python` (started through the launcher argv
    prefix if one is given, e.g. `unshare --net`), within timeout; the values of the one
    RESULT line it printed (with its whole "_stdout" and "_stderr" if output). A
    timeout, a non-zero exit or not exactly one RESULT line fails the test with the
    driver's output."""
    # -u: a driver killed or crashed midway still shows all it printed
    argv = [*launcher, python, "-u", str(script), str(chdir), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              check=False, cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"driver {script} did not finish within {timeout} s:\n"
                    f"{exc.stdout!r}\n{exc.stderr!r}")
    return driver_result(proc.returncode, proc.stdout, proc.stderr, script=script,
                         output=output)


def driver_result(code: int, out: str, err: str, *, script: Path | str = "",
                  output: bool = False) -> Any:
    """What a finished driver emitted: the values of its one RESULT line (with its whole
    "_stdout" and "_stderr" if output). A non-zero exit or not exactly one RESULT line
    fails the test with the driver's output. run_driver's end; the tests that stream a
    driver's lines (Popen) call it themselves."""
    report = f"driver {script} -> exit {code}\n{out}\n{err}"
    assert code == 0, report
    lines = [ln[len("RESULT "):] for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, report
    values = json.loads(lines[0])
    if output:
        values["_stdout"], values["_stderr"] = out, err
    return values
