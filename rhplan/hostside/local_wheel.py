"""Runs ON a host, in an env's interpreter: install a local package folder from a wheel
built once per content, instead of having uv build it again for every env.

    local_wheel.py FOLDER FILE_URL UV ARGS...

uv rebuilds a local folder given explicitly on every install (1.5-3 s with setuptools,
the same for every env of a cluster). Here the folder's content is hashed (paths, exec
bits, bytes; build output such as build/ and *.egg-info left out), with this
interpreter's version and platform, into a key; a wheel built for that key is kept in
the user's cache (~/.cache/rhplan/wheels/KEY/) and installed as is, so the second env
with the same folder installs in a fraction of that time. A changed file is a new key,
so a new build.

The installed distribution then says it came from the folder (its direct_url.json holds
FILE_URL and dir_info, as a plain `uv pip install FOLDER` writes it; RECORD's hash of it
updated): what refresh and the drift check read is the same either way.

ARGS are uv pip install's other arguments (the servlet's Ray pin, -c constraints). The
build and the install are first resolved from uv's cache alone (--offline), as envs.py
does for an exact pin, then with the index if that fails (env_install.py's
offline_first, which runs before this script's text). Any
step that cannot use the cache (a folder too large to hash, a symlinked folder inside, a
failed build) falls back to `uv pip install FILE_URL ARGS` as before, so an error reads
as it always did. uv's output passes through, then a line {"wheel": PATH|null, "hit":
BOOL}; main() returns uv's exit code (envs.py then reads the env's packages in the same
process, printing them last). A folder that is missing, or holds no pyproject.toml,
setup.py or setup.cfg, is not installed: {"local": "missing"} (exit 96) or {"local":
"plain"} (exit 95).
"""
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile

CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                     "rhplan", "wheels")
# build output and tool caches that builds write into the folder: not its content
SKIP_DIRS = {".git", ".hg", "__pycache__", "build", "dist", ".venv", ".tox", ".nox", ".eggs",
             ".mypy_cache", ".pytest_cache", ".ruff_cache"}
MAX_FILES = 20000
MAX_BYTES = 200 * 1024 * 1024
KEEP_DAYS = 30  # a cached wheel not used for this long is removed at the next build


def tree_key(folder):
    """The folder's content and this interpreter, hashed; None when it cannot be told
    cheaply (too large) or surely (a symlinked folder, whose target the walk skips)."""
    h = hashlib.sha256(b"rhplan-local-wheel-1\0")
    for part in (sys.version, sys.platform, sysconfig.get_platform(),
                 os.path.realpath(sys.base_prefix)):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    files = size = 0
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for d in dirs:
            if os.path.islink(os.path.join(top, d)):
                return None
        for name in sorted(names):
            path = os.path.join(top, name)
            try:
                st = os.stat(path)
            except OSError:
                return None  # a dangling link: let the build say what it makes of it
            files, size = files + 1, size + st.st_size
            if files > MAX_FILES or size > MAX_BYTES:
                return None
            rel = os.path.relpath(path, folder)
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            h.update(b"x" if st.st_mode & 0o111 else b"-")
            with open(path, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:40]


def cached_wheel(key):
    folder = os.path.join(CACHE, key)
    try:
        wheels = [n for n in os.listdir(folder) if n.endswith(".whl")]
    except OSError:
        return None
    if len(wheels) != 1:
        return None
    os.utime(folder)  # in use: kept by the pruning below
    return os.path.join(folder, wheels[0])


def build(key, folder, uv, env):
    """Build the folder's wheel into the cache; its path, or None when the build failed
    (the fallback install then says why)."""
    os.makedirs(CACHE, mode=0o700, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=CACHE)
    try:
        # its build backend from uv's cache first (env_install.py's offline_first)
        code = offline_first(  # noqa: F821
            [uv, "build", "--wheel", "--python", sys.executable, "--out-dir", tmp, folder],
            env=env, quiet=True)
        wheels = [n for n in os.listdir(tmp) if n.endswith(".whl")]
        if code != 0 or len(wheels) != 1:
            return None
        for name in os.listdir(tmp):  # uv leaves a .gitignore beside the wheel
            if not name.endswith(".whl"):
                os.remove(os.path.join(tmp, name))
        final = os.path.join(CACHE, key)
        try:
            os.rename(tmp, final)
        except OSError:  # another install built the same content meanwhile
            pass
        prune()
        return cached_wheel(key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prune():
    limit = time.time() - KEEP_DAYS * 86400
    for name in os.listdir(CACHE):
        path = os.path.join(CACHE, name)
        try:
            if os.stat(path).st_mtime < limit:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def say_folder(wheel, file_url):
    """The installed distribution's direct_url.json names the folder, as uv's own
    install of the folder writes it; RECORD lists its new hash and size."""
    with zipfile.ZipFile(wheel) as z:
        info = next((n.split("/")[0] for n in z.namelist()
                     if n.split("/")[0].endswith(".dist-info")), None)
    if info is None:
        return
    dist = os.path.join(sysconfig.get_paths()["purelib"], info)
    data = json.dumps({"url": file_url, "dir_info": {}}, separators=(",", ":")).encode()
    with open(os.path.join(dist, "direct_url.json"), "wb") as fh:
        fh.write(data)
    record = os.path.join(dist, "RECORD")
    try:
        with open(record, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return
    entry = f"{info}/direct_url.json,{record_hash(data)},{len(data)}"
    lines = [ln for ln in lines if not ln.startswith(f"{info}/direct_url.json,")] + [entry]
    with open(record, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main():
    folder, file_url, uv, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    # no package here (envs.py then says so, or puts the folder on the path)
    if not os.path.isdir(folder):
        print(json.dumps({"local": "missing"}))
        return 96
    if not any(os.path.isfile(os.path.join(folder, f))
               for f in ("pyproject.toml", "setup.py", "setup.cfg")):
        print(json.dumps({"local": "plain"}))
        return 95
    env = dict(os.environ, UV_SYSTEM_CERTS="1")
    install = [uv, "pip", "install", "--python", sys.executable]
    key = tree_key(folder)
    wheel = hit = None
    if key is not None:
        wheel = cached_wheel(key)
        hit = wheel is not None
        if wheel is None:
            wheel = build(key, folder, uv, env)
    sys.stdout.flush()
    if wheel is None:
        code = subprocess.run([*install, file_url, *args], env=env).returncode
    else:
        name = os.path.basename(wheel).split("-")[0]
        # a reinstall every time, as for the folder itself (uv always rebuilds those);
        # resolved from uv's cache alone first, as envs.py does for an exact pin
        code = offline_first([*install, wheel, "--reinstall-package", name, *args],  # noqa: F821
                             env=env)
        if code == 0:
            say_folder(wheel, file_url)
    print(json.dumps({"wheel": wheel, "hit": bool(hit)}))
    return code

