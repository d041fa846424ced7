"""Runs ON a host, in an env's interpreter, after env_packages.py: an install, then,
when it worked, what the env holds (report_env's line, last). local_wheel.py uses its
offline_first too.

    env_install.py FLAG INSTALLER_ARGV...

FLAG "offline-first": the install is first resolved from uv's cache alone. uv asks the
index again for every package it resolves (~0.4 s an install, Ray's ~35 pages each
time), though a second env of a cluster wants what the first one fetched; a cache that
cannot answer (or any failure) runs it as usual, whose error is reported. What an exact
pin depends on without a pin may so be the newest version uv has cached, not the
index's. FLAG "online": as usual.
"""
import subprocess
import sys


def offline_first(argv, env=None, quiet=False):
    """Run uv's argv from its cache alone (--offline), then, when that fails, with the
    index; the exit code. The cache's try is quiet (its output shown only when it
    worked); quiet: the index's try too (a caller that has a fallback saying why)."""
    cached = subprocess.run([*argv, "--offline"], capture_output=True, env=env)
    if cached.returncode == 0:
        sys.stdout.buffer.write(cached.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(cached.stderr)
        return 0
    if quiet:
        return subprocess.run(argv, capture_output=True, env=env).returncode
    return subprocess.run(argv, env=env).returncode


def run_install(flag, argv):
    if flag == "offline-first":
        return offline_first(argv)
    return subprocess.run(argv).returncode
