"""Runs ON a host, with its python3: `ray_venv.py ROOT RAY_VERSION` makes rhplan's Ray
venv, ROOT/ray-venv, unless it is already there; prints {"ray_python": PATH}.

A new one is a link to this user's shared Ray venv for that Ray version and Python
(~/.cache/rhplan/ray-venvs/..., made once, then reused by every cluster and after every
destroy: Ray's modules stay compiled, ~5 s of a first `ray start`). It is made with a uv
the host already has (rhplan's shared copy, PATH, ~/.local/bin, ~/.cargo/bin), files
linked from uv's cache; only without any uv: python -m venv, then uv from PyPI (kept
for next time). uv trusts the host's certificate store (a proxy's CA lives there; an
SSH session has no SSL_CERT_FILE). Locks on the host keep two setups apart.
"""
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys

ENV = dict(os.environ, UV_SYSTEM_CERTS="1")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                     "rhplan")
SHARED_UV = os.path.join(CACHE, "bin", "uv")


def ok(argv):
    return subprocess.run(argv, capture_output=True, text=True, env=ENV)


def must(argv):
    r = ok(argv)
    if r.returncode:
        sys.stderr.write((r.stderr or r.stdout).strip() + "\n")
        sys.exit(1)


def mark_owned(root):
    """The folder is rhplan's from now on (a destroy removes only a folder with this
    marker), so what a setup that fails half-way leaves can be removed."""
    os.makedirs(root, exist_ok=True)
    marker = os.path.join(root, ".rhplan-cluster")
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write('{"owner": "rhplan"}')


def have(d, want):
    vpy = os.path.join(d, "bin", "python")
    r = ok([vpy, "-I", "-c", "from importlib.metadata import version; print(version('ray'))"]
           ) if os.path.exists(vpy) else None
    return r is not None and r.returncode == 0 and r.stdout.strip() == want


def find_uv():
    home = os.path.expanduser("~")
    for c in (SHARED_UV, shutil.which("uv"), home + "/.local/bin/uv", home + "/.cargo/bin/uv"):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def place(src, dst):
    """A hardlink where it can be (one file on disk), else a copy."""
    if os.path.exists(dst):
        return
    os.makedirs(os.path.dirname(dst), mode=0o700, exist_ok=True)
    tmp = f"{dst}.{os.getpid()}"
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def build(d, uv, want):
    """A venv with Ray `want` and uv in its bin, made anew."""
    if uv:
        must([uv, "venv", "-q", "--clear", "--python", sys.executable, d])
    else:
        must([sys.executable, "-m", "venv", "--clear", d])
        must([os.path.join(d, "bin", "python"), "-m", "pip", "install", "-q",
              "--disable-pip-version-check", "uv"])
        uv = os.path.join(d, "bin", "uv")
        place(uv, SHARED_UV)
    place(uv, os.path.join(d, "bin", "uv"))
    must([os.path.join(d, "bin", "uv"), "pip", "install", "-q", "--python",
          os.path.join(d, "bin", "python"), "ray==" + want])


def keep_own(venv, want):
    """A Ray venv of the host's own (an image with Ray) or of an older rhplan: kept,
    with Ray `want` and uv added where missing."""
    vpy, uv = os.path.join(venv, "bin", "python"), os.path.join(venv, "bin", "uv")
    if not have(venv, want):
        steps = []
        if not os.path.exists(vpy):
            steps.append([sys.executable, "-m", "venv", venv])
        if not os.path.exists(uv):
            steps.append([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          "uv"])
        steps.append([uv, "pip", "install", "-q", "--python", vpy, "ray==" + want])
        for argv in steps:
            must(argv)
    if not os.path.exists(uv):
        # an image with Ray but no uv: envs would fall back to pip (~4x slower per
        # env), so try to add uv; a host without PyPI keeps pip
        ok([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", "uv"])


def link_shared(venv, want):
    """venv as a link to the user's shared venv for Ray `want` and this Python."""
    key = hashlib.sha256(os.path.realpath(sys.executable).encode()).hexdigest()[:8]
    py = "%d.%d" % sys.version_info[:2]  # noqa: UP031 - any Python 3 runs this
    shared = os.path.join(CACHE, "ray-venvs", f"ray-{want}-py{py}-{key}")
    os.makedirs(os.path.dirname(shared), mode=0o700, exist_ok=True)
    with open(shared + ".lock", "w") as slock:
        fcntl.flock(slock, fcntl.LOCK_EX)
        done = os.path.join(shared, ".rhplan-complete")
        if not (os.path.exists(done) and have(shared, want)):
            build(shared, find_uv(), want)
            with open(done, "w") as f:
                f.write(want)
    if os.path.islink(venv) and os.readlink(venv) != shared:
        os.unlink(venv)
    if not os.path.lexists(venv):
        tmp = f"{venv}.{os.getpid()}"
        os.symlink(shared, tmp)
        os.replace(tmp, venv)


def main(root, want):
    venv = os.path.join(root, "ray-venv")
    mark_owned(root)
    with open(os.path.join(root, ".bootstrap.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.lexists(venv) and not os.path.islink(venv):
            keep_own(venv, want)
        else:
            link_shared(venv, want)
    print(json.dumps({"ray_python": os.path.join(venv, "bin", "python")}))


main(sys.argv[1], sys.argv[2])
