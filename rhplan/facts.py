"""Refresh in one round trip per host: everything a plan needs to know about a host
(rhplan's folder, its Ray node, every env's installed packages, whether each servlet
process lives) is read by one script, run by the host's Ray Python.

Resource reads take their answers from here (ctx.cache), so a no-change plan costs
one command per host however many envs the cluster has.
"""
from __future__ import annotations

import json
from typing import Any

from rhplan.connection import Connection
from rhplan.envs import DISTS_FN, MARKERS_FN, Installed, installed_from
from rhplan.errors import ProviderError
from rhplan.ray_head import OWNED_PIDS_FN

# Runs on the host. argv[1]: JSON {"marker", "ray": {"temp_dir","token_path","port","host"}
# | null, "envs": {address: env_dir}, "servlets": {address: pid}}.
_FACTS = OWNED_PIDS_FN + DISTS_FN + MARKERS_FN + r"""
import glob, sys
ask = json.loads(sys.argv[1])
out = {"marker": bool(ask.get("marker")) and os.path.exists(ask["marker"]),
       "ray": None, "envs": {}, "servlets": {}, "markers": {}}
r = ask.get("ray")
if r:
    out["ray"] = {"pids": len(owned_pids(r["temp_dir"], r["token_path"])),
                  "gcs_up": gcs_up(r["host"], r["port"]) and raylet_up(r["temp_dir"])}
for addr, env_dir in (ask.get("envs") or {}).items():
    py = os.path.join(env_dir, "bin", "python")
    if not (os.path.exists(py) and os.access(py, os.X_OK)):
        out["envs"][addr] = None
        continue
    site = sorted(glob.glob(os.path.join(env_dir, "lib", "python*", "site-packages")))
    out["envs"][addr] = read_dists(site)[0]
    # markers of the env's interpreter: this host's, at the env's Python version
    out["markers"][addr] = marker_env(venv_version(env_dir))
for addr, pid in (ask.get("servlets") or {}).items():
    alive = False
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            alive = f.read().startswith(b"ray::EnvServlet")
    except (OSError, ValueError, TypeError):
        pass
    out["servlets"][addr] = alive
print(json.dumps(out))
"""


def gather(conn: Connection, python: str, ask: dict[str, Any]) -> dict[str, Any]:
    res = conn.run([python, "-I", "-c", _FACTS, json.dumps(ask)], timeout=120)
    if not res.ok:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProviderError(f"reading {conn.host} failed: {last}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def installed(dists: dict[str, list[Any]] | None) -> dict[str, Installed] | None:
    return None if dists is None else installed_from(dists)


def markers(known: dict[str, Any], address: str) -> dict[str, str]:
    """The marker values of an env's interpreter, as read with its host ({} if unread)."""
    return (known.get("markers") or {}).get(address) or {}
