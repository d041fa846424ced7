"""A real moto server process on 127.0.0.1: the AWS endpoint the tests point boto3 at.

Started once per test session (see the `moto` fixture in conftest.py), so every AWS
call in the tests goes over HTTP the way it does against AWS itself. Each test works
in its own state lineage (instances are tagged with it) and its own bucket, so tests
do not see each other's resources; reset() wipes everything for a benchmark.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# moto accepts any credentials; these make sure a developer's real ones are never used
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# what a developer's shell might set that would send boto3 somewhere else
AWS_LOGIN_VARS = ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                  "AWS_ENDPOINT_URL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def aws_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a process that talks to moto, never to real AWS."""
    env = dict(os.environ if base is None else base)
    for k in AWS_LOGIN_VARS:
        env.pop(k, None)
    env.update(FAKE_CREDENTIALS)
    return env


def image_catalogue(path: Path, *ami_ids: str) -> dict[str, str]:
    """The server environment for a catalogue of only these images (as moto's built-in
    amis.json describes them), written to path: MOTO_AMIS_PATH, which moto reads in
    place of its ~1,300 images (a benchmark's leaner moto; the tests' has them all)."""
    import gzip
    import json
    from importlib.resources import files
    builtin = json.loads(gzip.decompress(
        (files("moto") / "ec2" / "resources" / "amis.json.gz").read_bytes()))
    path.write_text(json.dumps([a for a in builtin if a["ami_id"] in ami_ids]))
    return {"MOTO_AMIS_PATH": str(path)}


class MotoServer:
    def __init__(self, log_dir: Path | None = None, env: dict[str, str] | None = None
                 ) -> None:
        """env: more environment for the server process only (a benchmark's
        MOTO_AMIS_PATH, say); the tests' server gets none."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = (log_dir or Path("/tmp")) / f"moto-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = dict(env or {})

    def start(self, timeout: float = 30.0) -> MotoServer:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the server writes to it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env={**aws_env(), **self.env},
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server on {self.url} did not answer in {timeout} s")

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def client(self, service: str, region: str = "us-east-1"):  # noqa: ANN201 - boto3 client
        import boto3
        return boto3.client(service, region_name=region, endpoint_url=self.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
