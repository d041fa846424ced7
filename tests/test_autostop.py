"""autostop_mins: an idle watchdog on the cluster's head runs the autostop command
after N minutes without servlet activity. Tested on a local cluster with a short
timeout and a harmless command (touch a file) instead of a shutdown."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

RHPLAN = str(Path(sys.executable).parent / "rhplan")


def rhplan(cfg: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RHPLAN, f"-chdir={cfg}", *args], capture_output=True, text=True,
                          timeout=timeout)


def wait_for(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_idle_watchdog_runs_the_autostop_command_only_after_idle(tmp_path: Path) -> None:
    marker = tmp_path / "STOPPED"
    config = textwrap.dedent('''
        cluster "c" {{
          provider         = "local"
          resources        = {{ CPU = 1, GPU = 0 }}
          {autostop}
        }}
        env "e" {{
          cluster = cluster.c
        }}
    ''')
    # the env first (a cold build can take longer than the 6 s limit), then autostop:
    # an in-place update that starts the watchdog
    (tmp_path / "main.hcl").write_text(config.format(autostop=""))
    try:
        r = rhplan(tmp_path, "apply", "-auto-approve")
        assert r.returncode == 0, r.stdout + r.stderr
        (tmp_path / "main.hcl").write_text(config.format(
            autostop=f'autostop_mins = 0.1  # 6 seconds\n  autostop_command = "touch {marker}"'))
        r = rhplan(tmp_path, "apply", "-auto-approve")
        assert r.returncode == 0 and "1 changed" in r.stdout, r.stdout + r.stderr
        # keep the servlet busy for longer than the limit: no autostop meanwhile
        busy = subprocess.run([sys.executable, "-c", textwrap.dedent(f'''
            import time, rhplan
            s = rhplan.servlet("e", chdir={str(tmp_path)!r})
            end = time.time() + 9
            while time.time() < end:
                s.keys(); time.sleep(0.5)
            print("busy done")
        ''')], capture_output=True, text=True, timeout=120)
        assert "busy done" in busy.stdout, busy.stderr
        assert not marker.exists(), "autostop ran while the servlet was in use"
        # then idle: the command runs within the limit plus a poll or two
        assert wait_for(marker.exists, timeout=30), "autostop never ran on an idle cluster"
    finally:
        d = rhplan(tmp_path, "destroy", "-auto-approve")
        assert d.returncode == 0, d.stdout + d.stderr
