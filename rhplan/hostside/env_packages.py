"""Runs ON a host: what an env holds. Used by the scripts that read envs (refresh's
facts.py, the read after every install in env_install.py, local_wheel.py); never run
on its own. The script that uses it defines PTH_PREFIX and PTH_VERSION first (from
rhplan.hosts.envs: the .pth files rhplan writes for plain folders and the version they report).

read_dists(site): the distributions in the given site-packages folders (canonical name ->
[version, direct url, vcs commit]) and the folders rhplan put on the path with .pth
files (reported as version PTH_VERSION); a Ray whose link into the shared Ray venv no
longer resolves is reported at version BROKEN_LINK. marker_env(version): the values PEP 508
markers are evaluated against, for an interpreter of that version on this host (the
env's own interpreter passes None), without `packaging`, which a fresh env lacks.
report_env(): the running env's packages and markers as one JSON line.
"""
import importlib.metadata as md
import json
import os
import platform
import re
import sys
import sysconfig
from urllib.parse import quote

BROKEN_LINK = "0+broken.link"


def read_dists(site):
    dists, pth = {}, {}
    for d in md.distributions(path=site):
        name = d.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in dists:
            continue
        url = commit = None
        try:
            direct = json.loads(d.read_text("direct_url.json") or "null")
            url = direct["url"]
            commit = (direct.get("vcs_info") or {}).get("commit_id")
        except Exception:
            pass
        dists[key] = [d.version, url, commit]
    for folder in site:
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            if f.startswith(PTH_PREFIX) and f.endswith(".pth"):  # noqa: F821
                with open(os.path.join(folder, f), encoding="utf-8") as fh:
                    target = fh.readline().rstrip("\n")
                dists[f[:-4]] = [PTH_VERSION, "file://" + quote(target), None]  # noqa: F821
                pth[f[:-4]] = os.path.join(folder, f)
    # Ray linked from the cluster's shared Ray venv (ray_link.py) whose link no longer
    # resolves (that venv was removed): its dist-info is still here, but `import ray`
    # fails. Reported at a version no Ray has (an uninstall still finds its record)
    for folder in site:
        link = os.path.join(folder, "ray")
        if "ray" in dists and os.path.islink(link) and not os.path.exists(link):
            dists["ray"][0] = BROKEN_LINK
    return dists, pth


def marker_env(version=None):
    impl = sys.implementation
    iv = f"{impl.version.major}.{impl.version.minor}.{impl.version.micro}"
    if impl.version.releaselevel != "final":
        iv += impl.version.releaselevel[0] + str(impl.version.serial)
    full = version or platform.python_version()
    return {"implementation_name": impl.name,
            "implementation_version": full if version else iv,
            "os_name": os.name, "platform_machine": platform.machine(),
            "platform_release": platform.release(), "platform_system": platform.system(),
            "platform_version": platform.version(), "python_full_version": full,
            "platform_python_implementation": platform.python_implementation(),
            "python_version": ".".join(full.split(".")[:2]), "sys_platform": sys.platform}


def venv_version(env_dir):
    try:
        with open(os.path.join(env_dir, "pyvenv.cfg"), encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition("=")
                if key.strip() in ("version_info", "version"):
                    return value.strip()
    except OSError:
        pass
    return None


def report_env():
    """Run inside the env's interpreter (with -I, so neither the working folder nor
    PYTHON* variables leak in). Only site-packages is read: a folder a .pth puts on the
    path may hold stray *.egg-info that is not installed."""
    paths = sysconfig.get_paths()
    site = []
    for key in ("purelib", "platlib"):
        if paths[key] not in site:
            site.append(paths[key])
    dists, pth = read_dists(site)
    print(json.dumps({"site_packages": site[0], "dists": dists, "pth": pth,
                      "markers": marker_env()}))


def report_after(rc):
    """After an install that printed its own output: exit with its code if it failed,
    else print the env's packages last (one command where there were two)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if rc:
        sys.exit(rc)
    report_env()
