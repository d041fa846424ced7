"""Runs ON a host, with the Python of the cluster's Ray: hardlinks (else copies) the
compiled bytecode of Ray's own modules into an env that just installed the same Ray.

    seed_bytecode.py ENV_SITE_PACKAGES RAY_VERSION

Both installs link their .py files from uv's cache, so sources share mtime and size
and the .pyc files are valid for the env too: the servlet's first `import ray` then
reads ~1,000 modules instead of compiling them (~2 s). Python still checks each .pyc
against its source (mtime and size) and recompiles a stale one, writing a new file
(never into the shared one). Prints how many files it linked.
"""
import os
import shutil
import sys
import sysconfig
from importlib.metadata import version


def main(site_packages, ray_version):
    src = os.path.join(sysconfig.get_paths()["purelib"], "ray")
    dst = os.path.join(site_packages, "ray")
    if version("ray") != ray_version or not os.path.isdir(dst):
        return 0
    done = 0
    for folder, _dirs, files in os.walk(src):
        if os.path.basename(folder) != "__pycache__":
            continue
        target = os.path.join(dst, os.path.relpath(folder, src))
        if not os.path.isdir(os.path.dirname(target)):
            continue
        os.makedirs(target, exist_ok=True)
        for name in files:
            if not name.endswith(".pyc") or os.path.exists(os.path.join(target, name)):
                continue
            try:
                os.link(os.path.join(folder, name), os.path.join(target, name))
            except OSError:
                shutil.copy2(os.path.join(folder, name), os.path.join(target, name))
            done += 1
    return done


print(main(sys.argv[1], sys.argv[2]))
