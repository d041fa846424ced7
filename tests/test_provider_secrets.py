"""Provider secrets: `secret "aws" { provider = "aws" profile = "..." }` and its kin
(huggingface, gcp, ssh) read credentials on this machine and put them on the env's
hosts as 0600 files, with the env vars tools read pointed at them.

The local credentials are files made in a temp dir outside pytest's basetemp (the
fake HOME / AWS_SHARED_CREDENTIALS_FILE / HF_HOME / GOOGLE_APPLICATION_CREDENTIALS
point there; removed at the end), their values canaries (tests/support/canary.py), so the
session's secret scan and the scans here find any copy outside the env's own 0600
files. One local cluster (real Ray, a real uv env with boto3, which resolves the AWS
credentials as any AWS tool would) is applied once; the tests walk it in order.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from canary import canary_secret
from drivers import Cluster
from secret_scan import scan_paths

from rhplan.secret_providers import MissingCredentials, read_local, shown_keys

BOTO3 = "1.43.11"  # rhplan's own: in uv's cache already
AWS_KEY, AWS_SECRET = canary_secret("aws-key"), canary_secret("aws-secret")
OTHER_PROFILE_SECRET = canary_secret("aws-other-profile")  # must never leave this machine
HF_TOKEN = canary_secret("hf")
GCP_KEY = canary_secret("gcp")
SSH_KEY = canary_secret("ssh")


def _aws_file(key: str, secret: str) -> str:
    return (f"[default]\naws_access_key_id = AKIDEFAULT\n"
            f"aws_secret_access_key = {OTHER_PROFILE_SECRET}\n\n"
            f"[rhplan-test]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")


def _make_home(home: Path) -> dict[str, Path]:
    files = {"aws": home / ".aws" / "credentials",
             "hf": home / ".cache" / "huggingface" / "token",
             "gcp": home / "gcp-sa.json",
             "ssh": home / ".ssh" / "id_ed25519"}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    files["aws"].write_text(_aws_file(AWS_KEY, AWS_SECRET))
    files["hf"].write_text(HF_TOKEN + "\n")
    files["gcp"].write_text(json.dumps({"type": "service_account", "private_key": GCP_KEY}))
    files["ssh"].write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SSH_KEY}\n"
                            "-----END OPENSSH PRIVATE KEY-----\n")
    for path in files.values():
        path.chmod(0o600)
    return files


@pytest.fixture(scope="module")
def home() -> Iterator[dict[str, Path]]:
    where = Path(tempfile.mkdtemp(prefix="rhplan-fake-home-"))
    try:
        yield _make_home(where)
    finally:
        shutil.rmtree(where, ignore_errors=True)


# -- reading the local credentials: no hosts needed ------------------------------------

def test_aws_takes_only_the_named_profile(home: dict[str, Path]) -> None:
    env = {"HOME": str(home["aws"].parent.parent)}
    values = read_local("aws", "rhplan-test", None, env)
    assert shown_keys(values) == ["AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"]
    text = values["@file:AWS_SHARED_CREDENTIALS_FILE:aws_credentials"]
    assert text == (f"[rhplan-test]\naws_access_key_id = {AWS_KEY}\n"
                    f"aws_secret_access_key = {AWS_SECRET}\n")
    assert OTHER_PROFILE_SECRET not in json.dumps(values)
    assert values["AWS_PROFILE"] == "rhplan-test"
    # AWS_PROFILE picks the profile when the secret names none, as the AWS CLI does
    assert read_local("aws", None, None, {**env, "AWS_PROFILE": "default"})["AWS_PROFILE"] \
        == "default"


def test_missing_local_credentials_name_the_file(tmp_path: Path,
                                                 home: dict[str, Path]) -> None:
    empty = {"HOME": str(tmp_path)}
    cases = {
        "aws": f"no AWS credentials file at {tmp_path}/.aws/credentials",
        "huggingface": f"no Hugging Face token file at {tmp_path}/.cache/huggingface/token",
        "gcp": f"no Google credentials file at {tmp_path}/.config/gcloud/"
               "application_default_credentials.json",
        "ssh": f"no SSH private key at {tmp_path}/.ssh/id_ed25519, {tmp_path}/.ssh/id_ecdsa",
    }
    for provider, start in cases.items():
        with pytest.raises(MissingCredentials) as err:
            read_local(provider, None, None, empty)
        assert str(err.value).startswith(start), (provider, str(err.value))
        assert "\n" not in str(err.value)
    with pytest.raises(MissingCredentials, match=r"no profile \[nope\] with aws_access_key_id"):
        read_local("aws", "nope", str(home["aws"]), empty)
    with pytest.raises(MissingCredentials, match="is not an SSH private key"):
        read_local("ssh", None, str(home["gcp"]), empty)


def test_huggingface_token_from_env_or_file(home: dict[str, Path]) -> None:
    from_env = read_local("huggingface", environ={"HF_TOKEN": "hf_from_env"})
    assert from_env == {"@file:HF_TOKEN_PATH:hf_token": "hf_from_env", "HF_TOKEN": "hf_from_env"}
    from_file = read_local("huggingface", environ={"HOME": str(home["hf"].parents[2])})
    assert from_file["HF_TOKEN"] == HF_TOKEN  # stripped of its newline


def test_bad_provider_settings_are_one_line_at_their_line(tmp_path: Path,
                                                          rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    for body, want in (
            ('provider = "azure"', 'main.hcl:2: secret.s: unknown provider \'azure\'; use one '
                                   'of aws, huggingface, gcp, ssh'),
            ('\n  profile = "ml"', "main.hcl:3: secret.s: profile needs provider"),
            ('provider = "gcp"\n  profile = "ml"',
             'main.hcl:3: secret.s: profile is for provider "aws" only')):
        rh.write(f'secret "s" {{\n  {body}\n}}\n')
        line = rh("plan").error_line()
        assert want in line, line


def test_a_relative_path_starts_at_the_configuration_folder(tmp_path: Path,
                                                            rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.write('secret "git" {\n  provider = "ssh"\n  path     = "keys/id_git"\n}\n')
    line = rh("plan").error_line()  # from elsewhere: rhplan runs with -chdir
    assert f"main.hcl:2: secret.git: no SSH private key at {rh.dir}/keys/id_git" in line, line
    (rh.dir / "keys").mkdir()
    key = "not-a-canary-" + "k" * 20  # this file stays under basetemp: no canary in it
    (rh.dir / "keys" / "id_git").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{key}\n"
                                             "-----END OPENSSH PRIVATE KEY-----\n")
    res = rh("plan").ok()
    assert '"GIT_SSH_COMMAND"' in res.stdout and key not in res.output, res.describe()


# -- on a cluster ---------------------------------------------------------------------

@dataclass
class Applied:
    cluster: Cluster
    files: dict[str, Path]

    @property
    def rh(self) -> Any:
        return self.cluster.rh

    def secret_files(self) -> Path:
        return self.rh.env_dir("c", "creds") / "rhplan" / "secret_files"


HCL = f"""
cluster "c" {{
  provider  = "local"
  resources = {{ CPU = 2, GPU = 0 }}
}}

secret "aws" {{
  provider = "aws"
  profile  = "rhplan-test"
}}
secret "hf" {{ provider = "huggingface" }}
secret "gcp" {{ provider = "gcp" }}
secret "git" {{
  provider = "ssh"
  path     = "~/.ssh/id_ed25519"
}}

env "creds" {{
  cluster = cluster.c
  reqs    = ["pip:boto3=={BOTO3}"]
  secrets = [secret.aws, secret.hf, secret.gcp, secret.git]
}}
"""

SEEN = """
def seen():
    import json, os, boto3
    creds = boto3.Session().get_credentials()
    def read(var):
        path = os.environ.get(var)
        return None if not path or not os.path.exists(path) else open(path).read()
    return {"aws_key": creds.access_key if creds else None,
            "aws_profile": os.environ.get("AWS_PROFILE"),
            "aws_file": os.environ.get("AWS_SHARED_CREDENTIALS_FILE"),
            "hf_token": os.environ.get("HF_TOKEN"), "hf_file": read("HF_TOKEN_PATH"),
            "gcp": json.loads(read("GOOGLE_APPLICATION_CREDENTIALS") or "{}").get("type"),
            "git_ssh": os.environ.get("GIT_SSH_COMMAND")}

s = rhplan.servlet("creds", chdir=CHDIR)
emit(**s.call(seen))
"""


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any,
            home: dict[str, Path]) -> Iterator[Applied]:
    base = tmp_path_factory.mktemp("provider-secrets")
    fake_home = home["aws"].parent.parent
    rh = rhplan_in(base / "infra", env={
        "HOME": str(fake_home), "AWS_SHARED_CREDENTIALS_FILE": str(home["aws"]),
        "GOOGLE_APPLICATION_CREDENTIALS": str(home["gcp"]),
        "HF_HOME": str(home["hf"].parent),
        # uv keeps using the real cache (HOME moved): the env's packages come from there
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")})
    for var in ("HF_TOKEN", "HF_TOKEN_PATH", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        rh.env.pop(var, None)
    rh.write(HCL)
    (base / "scripts").mkdir()
    app = Applied(Cluster(rh, base / "scripts"), home)
    try:
        rh("apply", "-auto-approve").ok()
        yield app
    finally:
        rh("destroy", "-auto-approve").ok()


def _leaks(app: Applied, *texts: str) -> list[str]:
    """Canary values of this module anywhere but the env's own 0600 files: the config
    folder (state, its backup, saved plans, the cluster's folder) and the given output."""
    values = [AWS_KEY, AWS_SECRET, OTHER_PROFILE_SECRET, HF_TOKEN, GCP_KEY, SSH_KEY]
    found = scan_paths([app.rh.dir], values).leaks
    return found + [f"output holds {v!r}" for v in values if any(v in t for t in texts)]


def test_hosts_get_0600_files_and_tools_find_them(applied: Applied) -> None:
    folder = applied.secret_files()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["aws_credentials", "gcp_credentials.json", "git_ssh_key", "hf_token"]
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert OTHER_PROFILE_SECRET not in (folder / "aws_credentials").read_text()

    got = applied.cluster.drive(SEEN, "direct")
    assert got["aws_key"] == AWS_KEY  # boto3's own credential chain found them
    assert got["aws_profile"] == "rhplan-test"
    assert got["aws_file"] == str(folder / "aws_credentials")
    assert got["hf_token"] == HF_TOKEN and got["hf_file"] == HF_TOKEN
    assert got["gcp"] == "service_account"
    assert got["git_ssh"] == f"ssh -i {folder / 'git_ssh_key'} -o IdentitiesOnly=yes"

    secrets = {a: r["attributes"] for a, r in applied.rh.resources().items()
               if a.startswith("secret.")}
    assert secrets["secret.aws"]["keys"] == ["AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"]
    assert secrets["secret.hf"]["keys"] == ["HF_TOKEN", "HF_TOKEN_PATH"]
    assert secrets["secret.git"]["keys"] == ["GIT_SSH_COMMAND"]
    assert not _leaks(applied, *(r.output for r in applied.rh.log))


def test_rotated_credentials_are_a_planned_update(applied: Applied) -> None:
    rh = applied.rh
    new_key = canary_secret("aws-key-rotated")
    applied.files["aws"].write_text(_aws_file(new_key, AWS_SECRET))
    res = rh("plan", "-detailed-exitcode", "-out", "rotate.plan")
    assert res.returncode == 2, res.describe()
    assert "secret.aws will be updated in-place" in res.stdout, res.stdout
    assert "env.creds will be updated in-place" in res.stdout, res.stdout
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in res.stdout, res.stdout
    res = rh("apply", "rotate.plan").ok()
    got = applied.cluster.drive(SEEN, "ssh")
    assert got["aws_key"] == new_key
    res = rh("plan")  # the rotation is applied: nothing more planned for the secret
    assert res.returncode == 0 and "secret.aws" not in res.stdout, res.describe()
    assert "secrets_sha256" not in res.stdout, res.describe()
    leaks = _leaks(applied, *(r.output for r in rh.log))
    assert not [x for x in leaks if new_key in x or AWS_KEY in x], leaks


def test_a_secret_dropped_from_the_env_leaves_no_file(applied: Applied) -> None:
    rh = applied.rh
    rh.edit("secret.aws, secret.hf, secret.gcp, secret.git]", "secret.aws]")
    rh("apply", "-auto-approve").ok()
    assert sorted(p.name for p in applied.secret_files().iterdir()) == ["aws_credentials"]


def test_missing_credentials_fail_the_plan_in_one_line(applied: Applied,
                                                      tmp_path: Path) -> None:
    rh = applied.rh
    gone = tmp_path / "no-such-credentials"
    res = rh("plan", env={"AWS_SHARED_CREDENTIALS_FILE": str(gone)})
    line = res.error_line()
    assert "main.hcl:7" in line and f"no AWS credentials file at {gone}" in line, line
    assert "secret.aws" in line, line


if sys.platform != "linux":  # the servlet's files and Ray's local cluster: Linux only
    pytestmark = pytest.mark.skip("Linux only")


@pytest.mark.long  # a second cluster (sshd): the files written over SFTP, not locally
def test_a_provider_secret_on_an_ssh_host(tmp_path_factory: pytest.TempPathFactory,
                                          rhplan_in: Any, home: dict[str, Path]) -> None:
    from ssh_cluster import cluster_hcl, provision_ray_venv, ssh_block
    from sshd import SSHServer, ensure_sshd_installed

    ensure_sshd_installed()
    base = tmp_path_factory.mktemp("ssh-provider-secret")
    root = base / "root"
    provision_ray_venv(root)
    with SSHServer() as server:
        rh = rhplan_in(base / "infra", env={"AWS_SHARED_CREDENTIALS_FILE": str(home["aws"])})
        rh.env.pop("AWS_PROFILE", None)
        rh.write(cluster_hcl("box", ["127.0.0.1"], root, ssh_block(server)) + """
            secret "aws" {
              provider = "aws"
              profile  = "rhplan-test"
            }

            env "remote" {
              cluster = cluster.box
              reqs    = ["pip:six==1.16.0"]
              secrets = [secret.aws]
            }
        """)
        placed = root / "envs" / "remote" / "rhplan" / "secret_files" / "aws_credentials"
        try:
            rh("apply", "-auto-approve").ok()
            run = rh("run", "remote", "--", "sh", "-c", 'stat -c %a "$AWS_SHARED_CREDENTIALS_FILE"'
                     '; echo "$AWS_PROFILE"; grep -c aws_access_key_id '
                     '"$AWS_SHARED_CREDENTIALS_FILE"').ok()
            assert run.stdout == "600\nrhplan-test\n1\n", run.describe()
            assert AWS_KEY in placed.read_text() and OTHER_PROFILE_SECRET not in placed.read_text()
            assert not scan_paths([rh.dir, rh.state_path], [AWS_KEY, AWS_SECRET]).leaks
        finally:
            rh("destroy", "-auto-approve").ok()
        assert not placed.exists()
