"""Drivers of an applied configuration in the tests: a script run in a fresh Python
(a process drives one Ray cluster) over a route a caller can take ("direct" or "ssh",
RHPLAN_SERVLET_ROUTE), reporting through one RESULT line. The remote-objects,
continuity and provider-secrets suites drive their clusters through Cluster; the servlets
and ssh provider suites run their own drivers through run_driver."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
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


def run_driver(script: Path, chdir: Path, *, python: str = sys.executable,
               env: dict[str, str] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """Run a driver script (given chdir, the configuration folder, as its argument) in a
    fresh `python`, within DRIVER_TIMEOUT; the values of the one RESULT line it printed.
    A timeout, a non-zero exit or not exactly one RESULT line fails the test with the
    driver's output."""
    try:
        proc = subprocess.run([python, str(script), str(chdir)], capture_output=True,
                              text=True, timeout=DRIVER_TIMEOUT, env=env, check=False, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"driver {script} did not finish within {DRIVER_TIMEOUT} s:\n"
                    f"{exc.stdout!r}\n{exc.stderr!r}")
    report = f"driver {script} -> exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, report
    lines = [ln[len("RESULT "):] for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, report
    return json.loads(lines[0])
