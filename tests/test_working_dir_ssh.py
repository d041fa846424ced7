"""A working_dir end to end on an ssh cluster (issue 13 item 1): a real sshd on
127.0.0.1, real Ray and a real uv env on that "host". The caller's function imports a
module of its own project, synced to the host; one file is edited, apply re-syncs it
without restarting the servlet, and the next call runs the new code."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from drivers import run_driver
from rayprocs import temp_dir_for
from ssh_cluster import (
    APPLY_TIMEOUT,
    cluster_hcl,
    destroy_and_check,
    hcl_str,
    ssh_block,
)
from sshd import SSHServer, ensure_sshd_installed

DRIVER = """
import json, sys
import rhplan

def probe():
    import os, mylib
    return {"value": mylib.value(), "cwd": os.getcwd(), "pid": os.getpid()}

print("RESULT " + json.dumps(rhplan.servlet("e", chdir=sys.argv[1]).call(probe)), flush=True)
"""


def call(rh: Any, scripts: Path) -> dict[str, Any]:
    script = scripts / "driver.py"
    script.write_text(DRIVER)
    return run_driver(script, rh.dir)


@pytest.mark.long  # its own ssh cluster (Ray head, an env): ~35 s under load
def test_an_edited_file_reaches_the_running_servlet_over_ssh(tmp_path: Path,
                                                             rhplan_in: Any) -> None:
    ensure_sshd_installed()
    project = tmp_path / "project"
    (project / "helpers").mkdir(parents=True)
    (project / "mylib.py").write_text("from helpers import twice\n\n"
                                      "def value():\n    return twice(1)\n")
    (project / "helpers" / "__init__.py").write_text("def twice(x):\n    return 2 * x\n")
    root, scripts = tmp_path / "root", tmp_path / "scripts"
    scripts.mkdir()
    with SSHServer() as server:
        rh = rhplan_in(tmp_path / "infra")
        rh.write(cluster_hcl("box", ["127.0.0.1"], root, ssh_block(server))
                 + f'\nenv "e" {{\n  cluster     = cluster.box\n'
                   f"  working_dir = {hcl_str(str(project))}\n}}\n")
        try:
            rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
            copy = root / "workdirs" / "e"
            first = call(rh, scripts)
            assert first["value"] == 2 and first["cwd"] == str(copy), first
            # one file changes: planned as a re-sync that keeps the servlet
            (project / "helpers" / "__init__.py").write_text(
                "def twice(x):\n    return 20 * x\n")
            out = rh("plan", "-no-color").ok().stdout
            assert "code re-synced; its servlet keeps running and re-imports the changed " \
                   "modules on the next call" in out, out
            t0 = time.monotonic()
            res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT).ok()
            print(f"WORKDIR-SSH: apply of a one-file edit {time.monotonic() - t0:.2f} s")
            assert "Resources: 0 added, 1 changed, 0 destroyed." in res.stdout, res.describe()
            assert (copy / "helpers" / "__init__.py").read_text().endswith("20 * x\n")
            second = call(rh, scripts)
            assert second == {**first, "value": 20}, (first, second)  # same servlet
            assert rh("plan", "-detailed-exitcode").returncode == 0
        finally:
            destroy_and_check(rh, root, [temp_dir_for(str(root))])
