"""Runs ON a host, in an env's interpreter: one of the env's setup_cmds.

    setup_runner.py ENV_DIR CWD CMD ENV_VARS_FILE SECRETS_FILE

Loads the env's env vars and secrets from its files (relative to ENV_DIR; so values
never travel on a command line), puts the env's bin first on PATH (whose PATH only the
host knows), then runs CMD, the user's command, as a bash script in CWD (when given).
"""
import json
import os
import sys


def main():
    env_dir, cwd, cmd, *files = sys.argv[1:]
    for name in files:
        try:
            with open(os.path.join(env_dir, name), encoding="utf-8") as fh:
                os.environ.update({str(k): str(v) for k, v in json.load(fh).items()})
        except FileNotFoundError:
            pass
    os.environ["VIRTUAL_ENV"] = env_dir
    os.environ["PATH"] = os.path.join(env_dir, "bin") + os.pathsep + os.environ.get("PATH", "")
    if cwd:
        os.chdir(cwd)
    sys.stdout.flush()
    os.execvp("bash", ["bash", "-c", cmd, "rhplan-setup"])


main()
