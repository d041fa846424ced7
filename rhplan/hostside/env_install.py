"""Runs ON a host, in an env's interpreter, after env_packages.py: an install, then,
when it worked, what the env holds (report_env's line, last).

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


def run_install(flag, argv):
    if flag == "offline-first":
        quiet = subprocess.run([*argv, "--offline"], capture_output=True)
        if quiet.returncode == 0:
            sys.stdout.buffer.write(quiet.stdout)
            sys.stderr.buffer.write(quiet.stderr)
            return 0
    return subprocess.run(argv).returncode
