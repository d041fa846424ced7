"""Runs ON a host, in a new env's interpreter, before Ray's install into it (after
env_packages.py and env_install.py in the same text). link_ray(RAY_PYTHON, VERSION)
gives the env the cluster's Ray package as a link to the Ray venv's own `ray` folder
instead of a copy of its ~2,800 files (~0.3 s of a new env over SSH); the install
that follows (`uv pip install ray==VERSION`, resolved with the env's entries) finds Ray
there and adds only what Ray needs, into the env itself.

What stays the env's own: every other package, Ray's dependencies included, installed
in its site-packages and resolved together with its entries under its pins (nothing else
of the Ray venv is on its path). Only the `ray` folder is shared, and only from a Ray
venv that is rhplan's shared one for exactly this Ray version (ray_venv.py's
.rhplan-complete says VERSION: nobody installs into it, a new Ray version gets a venv of
its own), for this Python (its lib/pythonX.Y, and Ray's compiled _raylet loads in this
interpreter). Anything else (a host's own Ray venv, rhplan's own on this machine, an
env that has a `ray` already) is left to the usual install, as are all failures.

The link is recorded as a distribution of the env (ray-VERSION.dist-info: Ray's
METADATA, a RECORD naming only the link, these files and the console scripts written
into the env's bin), so an uninstall or another Ray version removes the link, never the
Ray venv's files. Prints nothing; True when it linked. unlink_ray(VERSION) undoes it
when the install that follows fails.
"""
import glob
import importlib.machinery
import os
import shutil
import sys
import sysconfig

KEPT = ("METADATA", "WHEEL", "top_level.txt", "entry_points.txt")


def link_ray(ray_python, version):
    site = sysconfig.get_paths()["purelib"]
    venv = os.path.realpath(os.path.dirname(os.path.dirname(ray_python)))
    src = os.path.join(venv, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")  # noqa: UP031
    dist = "ray-%s.dist-info" % version  # noqa: UP031
    try:
        with open(os.path.join(venv, ".rhplan-complete"), encoding="utf-8") as fh:
            if fh.read().strip() != version:
                return False
    except OSError:
        return False
    raylet = glob.glob(os.path.join(src, "ray", "_raylet*.so"))
    if (not raylet or not os.path.isfile(os.path.join(src, dist, "METADATA"))
            or not any(raylet[0].endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)
            or os.path.lexists(os.path.join(site, "ray"))
            or glob.glob(os.path.join(site, "ray-*.dist-info"))):
        return False
    tmp = os.path.join(site, ".%s.%d" % (dist, os.getpid()))  # noqa: UP031
    made = []
    try:
        os.makedirs(tmp)
        for name in KEPT:
            if os.path.exists(os.path.join(src, dist, name)):
                shutil.copyfile(os.path.join(src, dist, name), os.path.join(tmp, name))
        record = ["ray,,"] + [f"{dist}/{name}" + ",," for name in os.listdir(tmp)]
        for script in _scripts(os.path.join(tmp, "entry_points.txt")):
            made.append(script)
            record.append(os.path.relpath(script, site) + ",,")
        with open(os.path.join(tmp, "INSTALLER"), "w", encoding="utf-8") as fh:
            fh.write("rhplan\n")
        record += [f"{dist}/INSTALLER,,", f"{dist}/RECORD,,"]
        with open(os.path.join(tmp, "RECORD"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(record) + "\n")
        # the record first, then the link: an env never has a `ray` link that no record
        # names (an install would write through it into the Ray venv)
        os.rename(tmp, os.path.join(site, dist))
        os.symlink(os.path.join(src, "ray"), os.path.join(site, "ray"))
        return True
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(os.path.join(site, dist), ignore_errors=True)
        for script in made:
            if os.path.lexists(script):
                os.unlink(script)
        return False


def unlink_ray(version):
    """Undo link_ray (its install failed: an env is left as it was, without Ray): what
    its RECORD names, then the record itself."""
    site = sysconfig.get_paths()["purelib"]
    dist = os.path.join(site, "ray-%s.dist-info" % version)  # noqa: UP031
    try:
        with open(os.path.join(dist, "INSTALLER"), encoding="utf-8") as fh:
            if fh.read().strip() != "rhplan":
                return
        with open(os.path.join(dist, "RECORD"), encoding="utf-8") as fh:
            paths = [line.split(",", 1)[0] for line in fh if line.strip()]
    except OSError:
        return
    for rel in paths:
        path = os.path.normpath(os.path.join(site, rel))
        if not rel.startswith(os.path.basename(dist) + "/") and os.path.lexists(path):
            os.unlink(path)  # the link or a console script: never followed
    shutil.rmtree(dist, ignore_errors=True)


def _scripts(entry_points):
    """Write the console scripts of entry_points.txt (ray, serve, tune) into the env's bin,
    as an installer does: a setup command may run `ray`. Their paths."""
    import configparser

    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str
    try:
        parser.read(entry_points, encoding="utf-8")
    except configparser.Error:
        return []
    if not parser.has_section("console_scripts"):
        return []
    out = []
    bin_dir = os.path.join(sys.prefix, "bin")
    for name, target in parser.items("console_scripts"):
        module, _, attr = target.strip().partition(":")
        if not name.replace("-", "").replace("_", "").isalnum() or not attr:
            continue
        path = os.path.join(bin_dir, name)
        if os.path.lexists(path):
            continue
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"#!{sys.executable}\nimport sys\nfrom {module.strip()} import "
                     f"{attr.strip().split('.')[0]}\nif __name__ == \"__main__\":\n"
                     f"    sys.exit({attr.strip()}())\n")
        os.chmod(path, 0o755)
        out.append(path)
    return out
