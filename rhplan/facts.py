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
from rhplan.envs import PTH_PREFIX, PTH_VERSION, Installed
from rhplan.errors import ProviderError

# Runs on the host. argv[1]: JSON {"marker", "ray": {"temp_dir","token_path","port"} | null,
# "envs": {address: env_dir}, "servlets": {address: pid}}.
_FACTS = r"""
import glob, importlib.metadata as md, json, os, re, socket, sys
from urllib.parse import quote
ask = json.loads(sys.argv[1])
out = {"marker": bool(ask.get("marker")) and os.path.exists(ask["marker"]),
       "ray": None, "envs": {}, "servlets": {}}
r = ask.get("ray")
if r:
    temp_dir, token = r["temp_dir"].encode(), b"RAY_AUTH_TOKEN_PATH=" + r["token_path"].encode()
    parents, owned = {}, set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields[0] == b"Z":
            continue
        parents[int(p)] = int(fields[1])
        if temp_dir in cmd:
            owned.add(int(p))
    up = False
    try:
        socket.create_connection(("127.0.0.1" if r.get("local") else r["host"], r["port"]),
                                 timeout=2).close()
        up = True
    except OSError:
        pass
    out["ray"] = {"pids": len(owned), "gcs_up": up}
canon = lambda n: re.sub(r"[-_.]+", "-", n).lower()
for addr, env_dir in (ask.get("envs") or {}).items():
    py = os.path.join(env_dir, "bin", "python")
    if not (os.path.exists(py) and os.access(py, os.X_OK)):
        out["envs"][addr] = None
        continue
    site = sorted(glob.glob(os.path.join(env_dir, "lib", "python*", "site-packages")))
    dists = {}
    for d in md.distributions(path=site):
        name = d.metadata["Name"]
        if not name or canon(name) in dists:
            continue
        url = None
        try:
            url = json.loads(d.read_text("direct_url.json") or "null")["url"]
        except Exception:
            pass
        dists[canon(name)] = [d.version, url]
    for folder in site:
        for f in sorted(os.listdir(folder)):
            if f.startswith(PREFIX) and f.endswith(".pth"):
                with open(os.path.join(folder, f), encoding="utf-8") as fh:
                    target = fh.readline().rstrip("\n")
                dists[f[:-4]] = [VERSION, "file://" + quote(target)]
    out["envs"][addr] = dists
for addr, pid in (ask.get("servlets") or {}).items():
    alive = False
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            alive = f.read().startswith(b"ray::EnvServlet")
    except (OSError, ValueError, TypeError):
        pass
    out["servlets"][addr] = alive
print(json.dumps(out))
""".replace("PREFIX", repr(PTH_PREFIX)).replace("VERSION", repr(PTH_VERSION))


def gather(conn: Connection, python: str, ask: dict[str, Any]) -> dict[str, Any]:
    res = conn.run([python, "-I", "-c", _FACTS, json.dumps(ask)], timeout=120)
    if not res.ok:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProviderError(f"reading {conn.host} failed: {last}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def installed(dists: dict[str, list[Any]] | None) -> dict[str, Installed] | None:
    if dists is None:
        return None
    return {name: Installed(name, version, url) for name, (version, url) in dists.items()}
