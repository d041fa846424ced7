"""Runs ON a host, in an env's own Python: `in_env.py ENV_DIR PROGRAM ARGS...` execs
PROGRAM with the env's env vars and secrets (read here from its files, so their
values never pass a shell or a command line) and the env's bin first on PATH."""
import json
import os
import sys

env_dir = sys.argv[1]
for f in ("env_vars.json", "secrets.json"):
    p = os.path.join(env_dir, "rhplan", f)
    if os.path.exists(p):
        os.environ.update({k: str(v) for k, v in json.load(open(p)).items()})
os.environ["VIRTUAL_ENV"] = env_dir
os.environ["PATH"] = os.path.join(env_dir, "bin") + os.pathsep + os.environ["PATH"]
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except FileNotFoundError:
    sys.stderr.write(f"{sys.argv[2]}: command not found\n")
    sys.exit(127)
