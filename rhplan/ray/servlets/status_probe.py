"""Runs ON each node of a cluster (the head, and each worker in parallel), with any
Python 3 (standard library only; no annotations an older host Python could not read):
what `rhplan status` shows of that node, read from its process table, without a Ray
driver.

A Ray driver costs 1-4 s to start on the head and hangs (bounded, but long) when the
head's Ray is half down; reading /proc costs milliseconds and works when Ray does not.
rhplan sends this file on the command's stdin after ray_head.OWNED_PIDS_FN (which
defines owned_pids, raylet_up and gcs_up), so nothing is copied to the host first:

    python -I - TEMP_DIR TOKEN_PATH GCS_HOST GCS_PORT GATEWAY_ROOT ENVS_JSON [NODE]

ENVS_JSON maps the name of each env placed on this node to its folder; on a worker,
TEMP_DIR is that node's Ray temp dir, GCS_HOST:GCS_PORT the head's (can the node still
reach it) and NODE its host: its own gateway is GATEWAY_ROOT/gateway-*/node-NODE
(servlets/gateway_start.py gateway_dir). Prints one JSON line:
{"ray": {"pids", "gcs_up", "raylet_up"}, "gateway": {"pid", "port"} or null,
 "servlets": {name: {"alive", "pid", "uptime"}}, "memory": {"total", "used"} or null}
(memory in bytes: used is MemTotal - MemAvailable, what the kernel could not hand out).

A servlet counts as alive when a live worker of this cluster's Ray (owned_pids) is
titled ray::EnvServlet and has the env's own files mapped (its interpreter loads Ray
from the env's site-packages): Ray ends that process when the actor dies.
"""
import json
import os
import sys


def _uptime(pid, now, tick):
    """Seconds since pid started (from /proc/PID/stat field 22, in clock ticks)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    return max(0.0, now - int(fields[19]) / tick)


def servlets(owned, envs):
    with open("/proc/uptime") as fh:
        now = float(fh.read().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pid in owned:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if not fh.read().startswith(b"ray::EnvServlet"):
                    continue
            with open(f"/proc/{pid}/maps", "rb") as fh:
                maps = fh.read()
        except OSError:
            continue
        for name, env_dir in envs.items():
            if (env_dir.rstrip("/") + "/").encode() not in maps:
                continue
            up = _uptime(pid, now, tick)
            if up is None:
                continue
            seen = found.get(name)
            if seen is None or up < seen["uptime"]:  # a restarted one: the newest counts
                found[name] = {"alive": True, "pid": pid, "uptime": up}
    return {name: found.get(name, {"alive": False}) for name in envs}


def gateway(root, node=""):
    """The newest running gateway (any rhplan version) under ROOT/ray, if any; a worker
    node's own one (node: its host) in its node-NODE folder."""
    best = None
    try:
        names = os.listdir(root)
    except OSError:
        return None
    for name in names:
        if not name.startswith("gateway-"):
            continue
        path = os.path.join(root, name, f"node-{node}" if node else "", "gateway.json")
        try:
            with open(path) as fh:
                info = json.load(fh)
            os.kill(int(info["pid"]), 0)
            when = os.stat(path).st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if best is None or when > best[0]:
            best = (when, {"pid": int(info["pid"]), "port": info.get("port")})
    return best[1] if best else None


def memory():
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh if ":" in line)
        total = int(info["MemTotal"].split()[0]) * 1024
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return {"total": total, "used": total - available}


def probe(owned_pids, raylet_up, gcs_up):
    temp_dir, token_path, host, port, gateway_root, envs_json = sys.argv[1:7]
    node = sys.argv[7] if len(sys.argv) > 7 else ""
    owned = owned_pids(temp_dir, token_path)
    report = {
        "ray": {"pids": len(owned), "raylet_up": raylet_up(temp_dir),
                "gcs_up": int(port) > 0 and gcs_up(host, port)},
        "gateway": gateway(gateway_root, node) if gateway_root else None,
        "servlets": servlets(owned, json.loads(envs_json)),
        "memory": memory(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    g = globals()  # defined by ray_head.OWNED_PIDS_FN, sent before this file
    probe(g["owned_pids"], g["raylet_up"], g["gcs_up"])
