"""Runs ON a host, with the Python of the cluster's Ray: hardlinks (else copies) the
compiled bytecode of the Ray venv's packages into an env that just installed the same
Ray: Ray's own modules and those of the packages Ray brought along (protobuf, grpc's
helpers, requests, urllib3, yaml, jsonschema...), which the servlet's worker imports too.

    seed_bytecode.py ENV_SITE_PACKAGES RAY_VERSION

Both installs link their .py files from uv's cache, so sources share mtime and size
and the .pyc files are valid for the env too: the servlet's first `import ray` then
reads ~1,000 modules instead of compiling them (~2 s; Ray's dependencies' ~170 another
~0.4 s of CPU). A .pyc is linked only beside a source of the same size and mtime (what
Python checks a .pyc against), so a dependency the env has at another version is left
to compile its own. Python still checks each .pyc against its source and recompiles a
stale one (an entry installed later may replace a dependency), writing a new file
(never into the shared one). Prints how many files it linked.
"""
import os
import shutil
import sys
import sysconfig
from importlib.metadata import version


def same_source(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return sa.st_size == sb.st_size and int(sa.st_mtime) == int(sb.st_mtime)


def link_folder(folder, files, there):
    """Link folder's (a __pycache__ of the Ray venv) .pyc files into there/__pycache__,
    each beside its source's twin; how many."""
    package = os.path.dirname(folder)
    target = os.path.join(there, "__pycache__")
    made, done = os.path.isdir(target), 0
    for name in files:
        if not name.endswith(".pyc") or os.path.exists(os.path.join(target, name)):
            continue
        module = name.split(".", 1)[0] + ".py"
        if not same_source(os.path.join(package, module), os.path.join(there, module)):
            continue
        if not made:
            os.makedirs(target, exist_ok=True)
            made = True
        try:
            os.link(os.path.join(folder, name), os.path.join(target, name))
        except OSError:
            shutil.copy2(os.path.join(folder, name), os.path.join(target, name))
        done += 1
    return done


def main(site_packages, ray_version):
    src = sysconfig.get_paths()["purelib"]
    if version("ray") != ray_version or not os.path.isdir(os.path.join(site_packages, "ray")):
        return 0
    done = 0
    # only the top-level folders the env has too (the Ray venv may be a big one: rhplan's
    # own on this machine)
    for entry in sorted(os.listdir(src)):
        top = os.path.join(src, entry)
        if entry == "__pycache__":  # single-module distributions (six.py...)
            done += link_folder(top, os.listdir(top), site_packages)
            continue
        if not os.path.isdir(os.path.join(site_packages, entry)) or not os.path.isdir(top):
            continue
        if os.path.islink(os.path.join(site_packages, entry)):
            continue  # the Ray venv's own folder, linked (ray_link.py): compiled in place
        for folder, _dirs, files in os.walk(top):
            if os.path.basename(folder) != "__pycache__":
                continue
            there = os.path.join(site_packages, os.path.relpath(os.path.dirname(folder), src))
            if os.path.isdir(there):
                done += link_folder(folder, files, there)
    return done


print(main(sys.argv[1], sys.argv[2]))
