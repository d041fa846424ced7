"""bench/remote_calls.py's setup: the ssh cluster it measures (a private sshd, a Ray venv,
one env), the drivers' Python, a Ray Client server with its port forwarded, the run at
another git revision (--compare), and the teardown. The measuring itself is in
remote_calls.py, which runs as the driver's __main__ (its noop is sent by value)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV = "bench"
NUMPY = "numpy==2.4.6"
RHPLAN = [sys.executable, "-m", "rhplan.cli"]
UV = str(Path(sys.executable).parent / "uv")
BASE_PY = os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def stop_gateway(root: Path) -> None:
    """Stop the cluster's gateway and remove its folder, as before its first use (the
    head is this machine: its pid is in the port file)."""
    for folder in (root / "ray").glob("gateway-*"):
        try:
            os.kill(json.loads((folder / "gateway.json").read_text())["pid"], 9)
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(folder, ignore_errors=True)


def driver_python(work: Path, rayclient: bool) -> str:
    """A Python of its own with numpy (and Ray Client's grpcio when measured) that also
    sees this venv's packages (rhplan, Ray) through a .pth file."""
    venv = work / "driver-venv"
    subprocess.run([UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True,
                   timeout=300)
    py = venv / "bin" / "python"
    extra = [f"ray[client]=={version('ray')}"] if rayclient else []
    subprocess.run([UV, "pip", "install", "-q", "--python", str(py), NUMPY, *extra],
                   check=True, timeout=600)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True
                          ).stdout.strip()
    import sysconfig
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "zz_rhplan_driver.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return str(py)


def start_ray_client(conn: Any, state: dict[str, Any]) -> int:
    """A Ray Client server on the head's loopback (what a Ray Client design would run);
    its port. Stopped with the cluster's Ray (its command line names the temp dir).
    Legacy mode (one server process): proxy mode's per-client server failed to start
    on rhplan's head ("Starting Ray client server failed", empty logs)."""
    from rhplan.ray.head import private_env
    cluster = next(r for r in state["resources"] if r["type"] == "cluster")
    a, p = cluster["attributes"], cluster["private"]["ray"]  # the core's part (state format 2)
    port_res = conn.run([a["ray_python"], "-c", "import socket; s = socket.socket(); "
                         "s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
    port = int(port_res.stdout)
    # Ray Client's server needs grpcio on the head: ray[client] in the cluster's Ray venv
    uv = str(Path(a["ray_python"]).parent / "uv")
    res = conn.run([uv, "pip", "install", "-q", "--python", a["ray_python"],
                    f"ray[client]=={a['ray_version']}"], env={"UV_SYSTEM_CERTS": "1"},
                   timeout=600)
    if not res.ok:
        raise RuntimeError(f"installing ray[client] on the head failed: {res.stderr[-500:]}")
    log = f"{a['root_dir']}/ray/ray-client.log"
    launcher = 'log=$1; shift; setsid "$@" >"$log" 2>&1 </dev/null &'
    # the temp dir rides on the command line (argv[1], dropped before the server reads
    # its arguments) so that destroying the cluster stops this server too
    run_server = ("import runpy, sys; sys.argv = ['ray-client-server'] + sys.argv[2:]; "
                  "runpy.run_module('ray.util.client.server', run_name='__main__')")
    conn.run(["sh", "-c", launcher, "sh", log, "env",
              *[f"{k}={v}" for k, v in private_env(p).items()], a["ray_python"], "-c",
              run_server, p["ray_temp_dir"], f"--address={a['ray_address']}",
              "--host=127.0.0.1", f"--port={port}", "--mode=legacy"], timeout=60)
    return port


def forward_port(server: Any, remote_port: int) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    proc = subprocess.Popen(
        ["ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={server.known_hosts}", "-i", server.client_key,
         "-p", str(server.port), "-L", f"{local}:127.0.0.1:{remote_port}",
         f"{server.user}@127.0.0.1"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", local), timeout=1).close()
            return proc, local
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("ssh -L did not come up")


def apply_cluster(work: Path, server: Any) -> tuple[Path, Path]:
    """A Ray venv for the head, then one ssh cluster on server with the bench's env,
    applied; (its config folder, its root_dir)."""
    infra = work / "infra"
    infra.mkdir()
    root = work / "cluster-root"
    venv = root / "ray-venv"
    for argv in ([UV, "venv", "-q", "--python", BASE_PY, str(venv)],
                 [UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                  f"ray=={version('ray')}", "uv"]):
        subprocess.run(argv, check=True, timeout=600)
    (infra / "main.hcl").write_text(f"""
cluster "b" {{
  provider = "ssh"
  ips      = ["127.0.0.1"]
  root_dir = {json.dumps(str(root))}
  python   = {json.dumps(BASE_PY)}
  ssh {{
    user        = {json.dumps(server.user)}
    private_key = {json.dumps(server.client_key)}
    port        = {server.port}
    known_hosts = {json.dumps(server.known_hosts)}
  }}
}}

env "{ENV}" {{
  cluster = cluster.b
  reqs    = ["pip:{NUMPY}"]
}}
""")
    env = {**os.environ, "NO_COLOR": "1"}
    t0 = time.monotonic()
    res = subprocess.run([*RHPLAN, f"-chdir={infra}", "apply", "-auto-approve"],
                         capture_output=True, text=True, timeout=900, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"apply failed:\n{res.stdout}\n{res.stderr}")
    print(f"applied in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return infra, root


def ray_client(infra: Path, server: Any) -> tuple[subprocess.Popen[bytes], str,
                                                    dict[str, str]]:
    """A Ray Client server on the head, its port forwarded by OpenSSH: (the forward,
    the address a driver joins, the env it needs: the cluster's token like any driver)."""
    from rhplan.hosts.ssh import SSHConnection
    from rhplan.ray.head import private_env
    state = json.loads((infra / "rhplan.state.json").read_text())
    with SSHConnection("127.0.0.1", port=server.port, user=server.user,
                       private_key=server.client_key, known_hosts=server.known_hosts) as conn:
        port = start_ray_client(conn, state)
    forward, local = forward_port(server, port)
    cl = next(r for r in state["resources"] if r["type"] == "cluster")
    return forward, f"ray://127.0.0.1:{local}", private_env(cl["private"]["ray"], driver=True)


def compare(rev: str, argv: list[str]) -> dict[str, Any]:
    """The ssh route measured with rhplan as of rev: rev's bench, run with that tree first
    on the import path (and as the working folder), so that the caller, the CLI and the
    files uploaded to the head are all rev's."""
    tree = Path(tempfile.mkdtemp(prefix="rhplan-bench-rev-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True,
                                 check=True, timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True, timeout=120)
        out = tree / "results.json"
        rest = [a for i, a in enumerate(argv) if a not in ("--compare", "--keep") and (
            i == 0 or argv[i - 1] != "--compare") and not a.startswith("--compare=")]
        print(f"measuring {rev} first (ssh route)...", file=sys.stderr)
        subprocess.run([sys.executable, str(tree / "bench" / "remote_calls.py"), *rest,
                        "--routes", "ssh", "--json-out", str(out)], cwd=tree,
                       # the providers too: the installed ones are this tree's (editable)
                       env={**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree}/providers"},
                       timeout=3600, check=False, stdout=sys.stderr)
        got: dict[str, Any] = json.loads(out.read_text()).get("ssh", {}) if out.exists() else {}
        return got or {"error": f"the bench at {rev} failed (its output is above)"}
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def teardown(infra: Path, server: Any, work: Path) -> None:
    subprocess.run([*RHPLAN, f"-chdir={infra}", "destroy", "-auto-approve"],
                   capture_output=True, text=True, timeout=600, check=False)
    server.close()
    shutil.rmtree(work, ignore_errors=True)
