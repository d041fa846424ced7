"""Secrets (issue 6, item 5): no secret value in the state, its backup, saved plans,
plan/apply/destroy output, `show -json`, `state show`/`pull`, outputs, an error that
a secret caused, or the Ray logs of the cluster; the file that must hold them on a
host (ENV/rhplan/secrets.json) is mode 0600, on a local and on an SSH host.

The values are canaries (tests/support/canary.py): the session-end scan
(tests/support/secret_scan.py) looks for them again in everything the run left. These
tests look in each artifact right where it is made, so a leak names the command or file
that made it.
"""
from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary import canary_secret
from rayprocs import temp_dir_for
from secret_scan import encodings, scan_paths
from ssh_cluster import destroy_and_check
from sshd import SSHServer

from rhplan.hosts.envs import SECRETS_FILE, write_env_files
from rhplan.hosts.ssh import SSHConnection

SECRET_VAR = "RHPLAN_LEAK_TEST_SECRET"
# hostile characters too: a leak in an escaped form (JSON, repr, shell) must be seen
SECRET = canary_secret("leaks", " 'q' \"dq\" \\ $(x)\nsecond line")
# a setup command that reads the secret from its file and fails with it in its message,
# as a misconfigured `curl -H "Authorization: ..."` would
LEAKY_SETUP = ('python -c "import json, os, sys; v = json.load(open(os.environ[\'VIRTUAL_ENV\']'
               f' + \'/rhplan/secrets.json\'))[\'{SECRET_VAR}\']; sys.exit(\'bad token: %r\' % v)"')

CONFIG = f"""
cluster "c" {{
  provider           = "local"
  create_default_env = false # two envs, no default_env: these tests are about the secret
}}

secret "s" {{
  from_env = ["{SECRET_VAR}"]
}}

env "app" {{
  cluster  = cluster.c
  env_vars = {{ MODE = "test" }}
  secrets  = [secret.s]
}}

env "broken" {{
  cluster    = cluster.c
  secrets    = [secret.s]
  setup_cmds = [{json.dumps(LEAKY_SETUP)}]
}}

output "keys" {{
  value = secret.s.keys
}}
"""


def leaked(text: str | bytes) -> list[str]:
    """The encodings of SECRET found in text."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return [f.decode(errors="replace") for f in encodings(SECRET) if f in data]


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("leaks")
    rh = rhplan_in(base / "infra", env={SECRET_VAR: SECRET})
    rh.write(CONFIG)
    root = rh.cluster_dir("c")
    try:
        yield rh
    finally:
        # the cluster's Ray logs go away with it: look at them first
        report = scan_paths([Path(temp_dir_for(str(root)))], [SECRET])
        destroy_and_check(rh, root, [temp_dir_for(str(root))])
        destroy = rh.log[-1]
        assert not leaked(destroy.output), f"destroy printed the secret: {destroy.output}"
        assert not report.leaks, f"the secret is in the cluster's Ray files: {report.leaks}"


def test_no_secret_in_any_artifact_of_a_local_apply(applied: Any) -> None:
    rh = applied
    checked: list[str] = []

    def clean(name: str, text: str | bytes) -> None:
        assert not leaked(text), f"the secret value is in {name}: {leaked(text)}"
        checked.append(name)

    plan_file = rh.dir / "tfplan"
    res = rh("plan", "-out", str(plan_file))
    assert res.returncode == 0 and "# secret.s will be created" in res.stdout, res.describe()
    clean("plan output", res.output)
    clean("saved plan", plan_file.read_bytes())
    clean("show PLAN", rh("show", str(plan_file)).ok().output)
    shown = rh("show", "-json", str(plan_file)).ok().output
    assert '"resource_changes"' in shown
    clean("show -json PLAN", shown)
    # the apply of the saved plan: env.app is built; env.broken fails in its setup
    # command, whose output holds the secret: the error names the failure, redacted
    res = rh("apply", str(plan_file))
    assert res.returncode == 1, res.describe()
    errors = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "setup command 1" in errors[0], res.describe()
    assert "bad token: '(sensitive value)'" in errors[0], errors  # its repr, redacted
    clean("failed apply output", res.output)
    assert set(rh.resources()) == {"cluster.c", "secret.s", "env.app"}
    for path in (rh.state_path, rh.state_path.with_name("rhplan.state.json.backup")):
        clean(path.name, path.read_bytes())
    for args in (("show",), ("show", "-json"), ("state", "show", "secret.s"),
                 ("state", "show", "env.app"), ("state", "pull"), ("output", "-json"),
                 ("plan",)):
        res = rh(*args)
        assert res.returncode == 0, res.describe()
        clean(" ".join(args), res.output)
    # the one file meant to hold it, on the (local) host: its owner only
    secrets = rh.env_dir("c", "app") / SECRETS_FILE
    assert json.loads(secrets.read_text()) == {SECRET_VAR: SECRET}
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    # everything in the configuration folder and the host root, at once
    report = scan_paths([rh.dir], [SECRET])
    assert not report.leaks, report.leaks
    assert str(secrets) in report.allowed
    print(f"\nRELIABILITY: secret leaks (local apply): artifacts checked={len(checked)} "
          f"files scanned={report.files} leaks=0")


def test_a_secrets_file_on_an_ssh_host_is_0600(server: SSHServer,  # noqa: F811
                                                tmp_path: Path) -> None:
    """Over SFTP, the file is 0600 from its first byte to its rename, also when it
    replaces one that was readable by others."""
    env_dir = tmp_path / "envs" / "e"
    target = env_dir / SECRETS_FILE
    target.parent.mkdir(parents=True)
    target.write_text("{}")
    target.chmod(0o644)  # left behind readable, e.g. by a copy
    with SSHConnection(server.host, port=server.port, user=server.user,
                       private_key=server.client_key, known_hosts=server.known_hosts) as conn:
        write_env_files(conn, str(env_dir), {"MODE": "x"}, {SECRET_VAR: SECRET})
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == {SECRET_VAR: SECRET}
    assert stat.S_IMODE((env_dir / "rhplan" / "env_vars.json").stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".rhplan-tmp")] == []


@pytest.mark.long  # a slower variation, left to `pytest -m long` (README "Tests")
def test_a_secret_from_a_variable_stays_out_of_the_saved_plan(rh: Any, tmp_path: Path) -> None:
    token = canary_secret("leaksvar")
    rh.keep = True  # a secret alone has nothing behind it to destroy
    rh.write("""
        variable "token" {
          type = string
        }

        secret "s" {
          values = { TOKEN = var.token }
        }
    """)
    plan_file = tmp_path / "tfplan"
    res = rh("plan", "-var", f"token={token}", "-out", str(plan_file))
    assert res.returncode == 0 and token not in res.output, res.describe()
    assert token.encode() not in plan_file.read_bytes(), "the saved plan holds the secret"
    # the plan keeps only a digest, so applying it takes the value again and checks it
    other = rh("apply", "-var", "token=not-the-planned-value", str(plan_file))
    line = other.error_line()
    assert "sensitive variable 'token' only as a digest" in line, line
    assert not rh.state_path.exists() or "secret.s" not in rh.resources()
    res = rh("apply", "-var", f"token={token}", str(plan_file)).ok()
    assert token not in res.output
    assert "secret.s" in rh.resources()
