"""env_file on an env (issue 13, item 4): real dotenv files read while planning, a real
local cluster (its own Ray head, a uv venv, a servlet) applied once for the module.

- comments, quotes, `export`, multi-line values, parsed by python-dotenv;
- env_vars win over file values; later files win over earlier ones;
- the plan and the state show the keys of a file marked sensitive, never its values;
  editing it is a planned update that restarts the servlet;
- setup_cmds see the env's vars and secrets;
- a line dotenv cannot parse is one error line naming the .env file and its line.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from canary import canary_secret

from rhplan.hosts.connection import LocalConnection
from rhplan.hosts.envs import create_venv, run_setup_cmds, write_env_files

TOKEN = canary_secret("envfile")
TOKEN2 = canary_secret("envfile2")
SECRET_VAR = "RHPLAN_TEST_ENVFILE_SECRET"
SECRET = canary_secret("envfile-block")

DOTENV = """\
# a comment, then the forms dotenv reads
export PLAIN="hello world"
SINGLE='single # not a comment'
MULTI="line one
line two"
OVERRIDE=from-file
EMPTY=
"""

# what setup_cmds saw, written where the test reads it (then removes it: it holds secrets)
SETUP = ('printf "%s|%s|%s|%s|%s" "$PLAIN" "$OVERRIDE" "$TOKEN" "$' + SECRET_VAR
         + '" "$MULTI" > "$VIRTUAL_ENV/setup_saw.txt"')

HCL = f"""
cluster "c" {{
  provider  = "local"
  resources = {{ CPU = 2, GPU = 0 }}
}}

secret "s" {{
  from_env = ["{SECRET_VAR}"]
}}

env "e" {{
  cluster    = cluster.c
  env_file   = [".env", {{ path = "secret.env", sensitive = true }}]
  env_vars   = {{ OVERRIDE = "from-hcl" }}
  secrets    = [secret.s]
  setup_cmds = [{json.dumps(SETUP)}]
}}
"""


def test_setup_cmds_see_the_env_vars_and_secrets(tmp_path: Path) -> None:
    """Before: setup_cmds ran with VIRTUAL_ENV only; the env's files were not read."""
    conn = LocalConnection()
    env_dir = str(tmp_path / "envs" / "e")  # secrets.json where the secret scan allows it
    create_venv(conn, env_dir)
    write_env_files(conn, env_dir, {"PLAIN": "p v", "SHARED": "plain"},
                    {"TOKEN": TOKEN, "SHARED": "secret wins"})
    out = tmp_path / "out.txt"
    run_setup_cmds(conn, env_dir, [f'printf "%s|%s|%s|%s" "$PLAIN" "$TOKEN" "$SHARED" '
                                   f'"$VIRTUAL_ENV" > {out}'], {"TOKEN": TOKEN})
    assert out.read_text() == f"p v|{TOKEN}|secret wins|{env_dir}"
    out.unlink()  # it holds a secret value
    # a failure's message never shows a secret value, even when the command prints it
    with pytest.raises(Exception) as info:
        run_setup_cmds(conn, env_dir, ['echo "bad $TOKEN" >&2; exit 3'], {"TOKEN": TOKEN})
    assert "exit code 3" in str(info.value) and TOKEN not in str(info.value)


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> Iterator[Any]:
    rh = rhplan_in(tmp_path_factory.mktemp("envfile") / "infra", env={SECRET_VAR: SECRET})
    rh.write(HCL)
    (rh.dir / ".env").write_text(DOTENV)
    (rh.dir / "secret.env").write_text(f"# sensitive\nTOKEN={TOKEN}\n")
    try:
        yield rh
    finally:
        rh("destroy", "-auto-approve").ok()
        (rh.dir / "secret.env").unlink()  # the user's own secrets file


def test_plan_shows_file_keys_never_sensitive_values(applied: Any) -> None:
    rh = applied
    res = rh("plan", "-no-color").ok()
    out = res.output
    assert '"PLAIN" = "hello world"' in out, out
    assert '"SINGLE" = "single # not a comment"' in out, out
    assert "line one" in out and "line two" in out, out
    assert '"TOKEN"' in out and TOKEN not in out, out  # the key, never the value
    assert "from-file" not in out, out  # env_vars win
    # the plan JSON, too
    rh("plan", "-out", "p.plan").ok()
    js = rh("show", "-json", "p.plan").ok().stdout
    assert TOKEN not in js and "TOKEN" in js


def test_apply_gives_the_servlet_and_setup_cmds_every_value(applied: Any) -> None:
    rh = applied
    rh("apply", "-auto-approve").ok()
    env_dir = rh.env_dir("c", "e")
    env_vars = json.loads((env_dir / "rhplan" / "env_vars.json").read_text())
    assert env_vars == {"PLAIN": "hello world", "SINGLE": "single # not a comment",
                        "MULTI": "line one\nline two", "OVERRIDE": "from-hcl", "EMPTY": ""}
    secrets = json.loads((env_dir / "rhplan" / "secrets.json").read_text())
    assert secrets == {"TOKEN": TOKEN, SECRET_VAR: SECRET}
    saw = env_dir / "setup_saw.txt"
    assert saw.read_text() == f"hello world|from-hcl|{TOKEN}|{SECRET}|line one\nline two"
    saw.unlink()  # it holds secret values
    assert TOKEN not in rh.state_path.read_text()
    attrs = rh.resources()["env.e"]["attributes"]
    assert attrs["env_file_secret_keys"] == ["TOKEN"] and attrs["env_file_sha256"]
    # the servlet reads the same files: a call sees the values
    res = rh("run", "e", "--", sys.executable, "-c",
             "import os; print(os.environ['PLAIN'], os.environ['OVERRIDE'], "
             "os.environ['TOKEN'] == " + repr(TOKEN) + ")").ok()
    assert res.stdout.strip() == "hello world from-hcl True", res.describe()
    assert rh("plan", "-detailed-exitcode").returncode == 0  # nothing left to do


def test_editing_a_sensitive_file_is_a_planned_update(applied: Any) -> None:
    rh = applied
    pid = rh.resources()["env.e"]["attributes"]["servlet_pid"]
    (rh.dir / "secret.env").write_text(f"TOKEN={TOKEN2}\n")
    res = rh("plan", "-no-color", "-detailed-exitcode")
    assert res.returncode == 2, res.describe()
    assert "env.e will be updated in-place" in res.stdout, res.stdout
    assert "env_file_sha256 changed" in res.stdout, res.stdout
    assert "servlet restarts to pick up the new environment" in res.stdout, res.stdout
    assert TOKEN2 not in res.output and TOKEN not in res.output
    rh("apply", "-auto-approve").ok()
    secrets = json.loads((rh.env_dir("c", "e") / "rhplan" / "secrets.json").read_text())
    assert secrets["TOKEN"] == TOKEN2
    assert rh.resources()["env.e"]["attributes"]["servlet_pid"] != pid
    # a plain file's edit shows its new value
    (rh.dir / ".env").write_text(DOTENV.replace("hello world", "hello again"))
    res = rh("plan", "-no-color").ok()
    assert '"hello again"' in res.stdout and "env_file_vars" in res.stdout, res.stdout


def test_a_bad_dotenv_line_names_its_file_and_line(tmp_path: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.write("""
        cluster "c" {
          provider = "local"
        }
        env "e" {
          cluster  = cluster.c
          env_file = "conf/app.env"
        }
    """)
    (rh.dir / "conf").mkdir()
    (rh.dir / "conf" / "app.env").write_text(f"OK=1\n# fine\nTOKEN {TOKEN} oops\nLATER=2\n")
    for args in (("validate",), ("plan", "-refresh=false")):
        msg = rh(*args).error_line()
        assert f"{rh.dir / 'conf' / 'app.env'}:3:" in msg, msg
        assert TOKEN not in msg, msg
    (rh.dir / "conf" / "app.env").unlink()
    msg = rh("plan", "-refresh=false").error_line()
    assert "main.hcl:6:" in msg and "does not exist" in msg, msg
    rh.edit('env_file = "conf/app.env"', "env_file = { path = 1 }")
    msg = rh("plan", "-refresh=false").error_line()
    assert "main.hcl:6:" in msg and "env_file" in msg, msg
    assert not rh.resources()
