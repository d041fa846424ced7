"""Runs ON a host, after ray_host.py and env_packages.py (whose
owned_pids, gcs_up, raylet_up, read_dists, marker_env and venv_version it calls):
everything refresh needs to know about the host, in one command.

argv[1]: JSON {"marker": PATH, "ray": {"temp_dir","token_path","port","host"} | null,
"envs": {address: env_dir}, "servlets": {address: pid}}. Prints one JSON line.
"""
import glob
import json
import os
import sys


def servlet_alive(pid):
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return f.read().startswith(b"ray::EnvServlet")
    except (OSError, ValueError, TypeError):
        return False


def gather(ask):
    out = {"marker": bool(ask.get("marker")) and os.path.exists(ask["marker"]),
           "ray": None, "envs": {}, "servlets": {}, "markers": {}}
    r = ask.get("ray")
    if r:
        out["ray"] = {"pids": len(owned_pids(r["temp_dir"], r["token_path"])),  # noqa: F821
                      "gcs_up": gcs_up(r["host"], r["port"])  # noqa: F821
                      and raylet_up(r["temp_dir"])}  # noqa: F821
    for addr, env_dir in (ask.get("envs") or {}).items():
        py = os.path.join(env_dir, "bin", "python")
        if not (os.path.exists(py) and os.access(py, os.X_OK)):
            out["envs"][addr] = None
            continue
        site = sorted(glob.glob(os.path.join(env_dir, "lib", "python*", "site-packages")))
        out["envs"][addr] = read_dists(site)[0]  # noqa: F821
        # markers of the env's interpreter: this host's, at the env's Python version
        out["markers"][addr] = marker_env(venv_version(env_dir))  # noqa: F821
    for addr, pid in (ask.get("servlets") or {}).items():
        out["servlets"][addr] = servlet_alive(pid)
    return out


print(json.dumps(gather(json.loads(sys.argv[1]))))
