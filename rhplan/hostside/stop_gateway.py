"""Runs ON a node: stops every rhplan gateway (any version) kept under one folder.

    stop_gateway.py RAY_FOLDER

Each gateway-*/gateway.json names its pid.
"""
import json
import os
import signal
import sys


def main(folder):
    for name in os.listdir(folder):
        if not name.startswith("gateway-"):
            continue
        try:
            with open(os.path.join(folder, name, "gateway.json")) as fh:
                os.kill(int(json.load(fh)["pid"]), signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass


main(sys.argv[1])
