"""Injection and traversal (issue 6, item 4): hostile strings in every field a user
writes are either refused while planning, in ONE line naming file:line, or carried
as data to the host, where no shell ever reads them, on a local and on an SSH host.

What rhplan allows and refuses (the rules these tests pin down):
- names of envs, secrets and packages (labels and `name =`): Terraform's rule, a
  letter or '_' then letters, digits, '_' and '-'. They become folder names under
  root_dir/envs, Ray actor names and state addresses; "../x", "/abs", "a;b" and line
  breaks are refused.
- package strings: a pip spec must parse as one (so "six; touch x", "$(...)", "`...`",
  a second line and a leading '-' option are refused, while a real environment marker
  "six ; python_version >= '3'" is data). Text from the first " -" on is install args:
  passed to the installer as separate argv items, never through a shell (documented).
  Local folders may be anywhere (relative to the configuration's folder, absolute or
  ~/...): a path is data, whatever characters it holds; /, the home folder and folders
  above it are refused (a sync would ship a whole disk).
- git URLs and revisions: a revision is a tag, branch or commit ("--upload-pack=...",
  "v1;x", spaces, line breaks and ".." refused), and a host starting with '-' (an ssh
  option) is refused, in `reqs` and in `package` blocks alike.
- env var names may hold anything but '=' and NUL (refused at plan time, file:line);
  values and secret values anything but NUL.
- root_dir and the configuration's folder may hold any character: they are paths.

A canary: every hostile string that could run as a command would create a file named
after MARK (shared with tests/test_ssh_provider.py); after all cases, no such file may
exist in the configuration folders, the host roots, /tmp, $HOME, the cwd or /.
"""
from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from canary import canary_secret
from rayprocs import temp_dir_for
from secret_scan import record_cli_output, scan_paths
from ssh_cluster import (
    APPLY_TIMEOUT,
    KEY,
    MARK,
    PAYLOAD,
    cluster_hcl,
    destroy_and_check,
    find_marks,
    hcl_str,
    provision_ray_venv,
    ssh_block,
)

SECRET_VAR = "RHPLAN_INJECTION_SECRET"
SECRET = canary_secret("injection", f"; touch {MARK}_s1 $(touch {MARK}_s2) `touch {MARK}_s3` "
                                    f"'\"\ntouch /tmp/{MARK}_s4")
# characters a shell would act on, for folder names (no '/', which a name cannot hold)
HOSTILE_NAME = f"x $(touch {MARK}_n1) ;touch {MARK}_n2 `touch {MARK}_n3` 'q' \"dq\" &|<>"
MARKER_SPEC = "pip:six==1.16.0 ; python_version >= '3'"  # a real marker: ';' is data here
ARGS_SPEC = f"pip:idna==3.7 --config-settings 'x=$(touch {MARK}_a1); touch {MARK}_a2'"


@dataclass
class Tally:
    """Counts for the RELIABILITY line, over the whole module."""

    refused: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)


TALLY = Tally()


def canary_hits(*trees: Path) -> list[str]:
    """Files named like MARK: anywhere under the trees the cases used (configuration
    folders, host roots), and directly in every other folder a command's relative or
    /tmp path lands in (/tmp, $HOME: an SSH login, the cwd, /). Not all of /tmp
    recursively: other runs' venvs make that take tens of seconds."""
    return find_marks(*trees, shallow=(Path("/tmp"), Path.home(), Path.cwd(), Path("/")))


# --------------------------------------------------------------------------
# refused while planning: one line with file:line, exit 1, nothing written
# --------------------------------------------------------------------------

CLUSTER = 'cluster "c" {\n  provider = "local"\n}\n'  # lines 1-3


def env_with(reqs: list[str] | None = None, name_attr: str | None = None,
             env_vars: dict[str, str] | None = None, label: str = "e") -> str:
    """An env block starting on line 4; reqs on line 6, name / env_vars on line 7."""
    lines = [f"env {hcl_str(label)} {{", "  cluster  = cluster.c",
             f"  reqs     = [{', '.join(hcl_str(r) for r in reqs or [])}]"]
    if name_attr is not None:
        lines.append(f"  name     = {hcl_str(name_attr)}")
    if env_vars is not None:
        lines.append("  env_vars = {" + ", ".join(f"{hcl_str(k)} = {hcl_str(v)}"
                                                 for k, v in env_vars.items()) + "}")
    return CLUSTER + "\n".join(lines) + "\n}\n"


def package_with(url: str, revision: str | None = None, label: str = "p") -> str:
    """A package block on line 4: git_url on line 5, revision on line 6."""
    rev = f"  revision = {hcl_str(revision)}\n" if revision is not None else ""
    return f'{CLUSTER}package {hcl_str(label)} {{\n  git_url  = {hcl_str(url)}\n{rev}}}\n'


M = MARK
# (case, configuration, line the error names, words the error holds)
REFUSED: list[tuple[str, str, int, str]] = [
    # names: folders on the host, Ray actor names, addresses
    ("env label ../x", env_with(label="../x"), 4, "env name '../x' is not allowed"),
    ("env label /abs", env_with(label="/abs"), 4, "env name '/abs' is not allowed"),
    ("env label a;b", env_with(label=f"a;touch {M}"), 4, "is not allowed"),
    ("env label newline", env_with(label=f"a\ntouch {M}"), 4, "is not allowed"),
    ("env label $()", env_with(label=f"$(touch {M})"), 4, "is not allowed"),
    ("env name = ../../x", env_with(name_attr="../../x"), 7, "env name '../../x'"),
    ("env name = /abs", env_with(name_attr="/tmp/x"), 7, "env name '/tmp/x'"),
    ("env name = newline", env_with(name_attr=f"x\ntouch {M}"), 7, "is not allowed"),
    ("secret label", CLUSTER + f'secret "a;touch {M}" {{\n}}\n', 4, "secret name"),
    ("package label", package_with("https://h/r.git", "v1", label="../p"), 4, "package name"),
    # env var names: anything but '=' and NUL (and not empty)
    ("env var name =", env_with(env_vars={f"A=$(touch {M})": "v"}), 7, "cannot be set"),
    ("env var name empty", env_with(env_vars={"": "v"}), 7, "cannot be set"),
    ("secret key =", CLUSTER + f'secret "s" {{\n  values = {{ "K=$(touch {M})" = "v" }}\n}}\n',
     5, "cannot be set"),
    # package strings
    ("pip ; command", env_with([f"six==1.16.0; touch {M}"]), 6, "not a valid package string"),
    ("pip $()", env_with([f"$(touch {M})"]), 6, "not a valid package string"),
    ("pip backticks", env_with([f"`touch {M}`"]), 6, "not a valid package string"),
    ("pip newline", env_with([f"six==1.16.0\ntouch {M}"]), 6, "not a valid package string"),
    ("pip:$()", env_with([f"pip:$(touch {M})"]), 6, "not a valid package string"),
    ("option -e", env_with(["-e ./x"]), 6, "reads as an option"),
    ("option --index-url", env_with(["--index-url=http://127.0.0.1:9/ six"]), 6,
     "reads as an option"),
    ("pip:-r file", env_with(["pip:-r /etc/passwd"]), 6, "reads as an option"),
    ("pip:--upload-pack", env_with([f"pip:--upload-pack=/tmp/{M}"]), 6, "reads as an option"),
    ("local /", env_with(["/"]), 6, "refusing to sync /"),
    ("local /..", env_with(["local:/.."]), 6, "refusing to sync /"),
    ("local ~", env_with(["~"]), 6, "home folder"),
    ("reqs:/", env_with(["reqs:/"]), 6, "no requirements.txt"),
    # git revisions and URLs (git reads them as arguments)
    ("git rev --upload-pack", env_with([f"git+file:///tmp/r.git@--upload-pack=/tmp/{M}"]),
     6, "is not a tag, branch or commit"),
    ("git rev ;", env_with([f"git+https://h/r.git@v1;id>{M}"]), 6,
     "is not a tag, branch or commit"),
    ("git rev space", env_with([f"git+https://h/r.git@v1 touch {M}"]), 6, "no spaces"),
    ("git rev newline", env_with([f"git+https://h/r.git@v1\ntouch {M}"]), 6, "no spaces"),
    ("git rev ..", env_with(["git+https://h/r.git@a..b"]), 6, "no '..'"),
    ("git ssh host -o", env_with([f"git+ssh://-oProxyCommand=/tmp/{M}/r.git@v1"]), 6,
     "read as an option"),
    ("package revision option", package_with("https://h/r.git", f"--upload-pack=/tmp/{M}"),
     6, "is not a tag, branch or commit"),
    ("package revision ;", package_with("https://h/r.git", f"v1;id>{M}"), 6,
     "is not a tag, branch or commit"),
    ("package url ext::", package_with(f"ext::sh -c 'touch {M}'"), 5, "is not a git URL"),
    ("package url scp -o", package_with(f"git@-oProxyCommand=/tmp/{M}:r.git", "v1"), 5,
     "read as an option"),
    ("package url newline", package_with(f"https://h/r.git\n--upload-pack=touch {M}", "v1"),
     5, "no spaces or line breaks"),
]


# Runs every case through rhplan.cli.run (the path `rhplan` itself takes: main() is
# run() plus sys.exit) in ONE fresh Python, so ~40 cases cost one interpreter start;
# the long test below runs each as its own `rhplan` process.
BATCH = r"""
import contextlib, io, json, sys
from rhplan import cli
out = []
for d in sys.argv[1:]:
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            cli.main([f"-chdir={d}", "plan"])
        except SystemExit as exc:
            code = exc.code
    out.append({"returncode": code, "stdout": std.getvalue(), "stderr": err.getvalue()})
print("BATCH " + json.dumps(out))
"""


def check_refusal(case: str, line: int, words: str, returncode: int, stderr: str,
                  folder: Path) -> list[str]:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if returncode != 1 or len(lines) != 1 or "Traceback" in stderr:
        return [f"{case}: not refused in one line (exit {returncode}): {stderr!r}"]
    problems = []
    if f"main.hcl:{line}: " not in lines[0] or words not in lines[0]:
        problems.append(f"{case}: expected main.hcl:{line} and {words!r}: {lines[0]}")
    if (folder / "rhplan.state.json").exists() or (folder / ".rhplan").exists():
        problems.append(f"{case}: the plan wrote a state or a cluster folder in {folder}")
    return problems


def write_cases(rhplan_in: Any, tmp_path: Path) -> list[Any]:
    out = []
    for i, (_, hcl, _, _) in enumerate(REFUSED):
        rh = rhplan_in(tmp_path / f"case{i:02d}")
        rh.write(hcl)
        out.append(rh)
    return out


def test_hostile_config_values_are_refused_in_one_line(rhplan_in: Any,
                                                       tmp_path: Path) -> None:
    rhs = write_cases(rhplan_in, tmp_path)
    proc = subprocess.run([sys.executable, "-c", BATCH, *[str(rh.dir) for rh in rhs]],
                          capture_output=True, text=True, timeout=300, env=rhs[0].env,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BATCH ")]
    assert proc.returncode == 0 and len(lines) == 1, f"{proc.stdout}\n{proc.stderr}"
    results = json.loads(lines[0][len("BATCH "):])
    problems = []
    for (case, _, line, words), rh, res in zip(REFUSED, rhs, results, strict=True):
        record_cli_output(("plan",), res["returncode"], res["stdout"], res["stderr"])
        problems += check_refusal(case, line, words, res["returncode"], res["stderr"], rh.dir)
        TALLY.refused.append(case)
    assert not problems, "\n".join(problems)
    assert not canary_hits(tmp_path)


@pytest.mark.long
def test_each_refusal_through_its_own_cli_process(rhplan_in: Any, tmp_path: Path) -> None:
    problems = []
    for (case, _, line, words), rh in zip(REFUSED, write_cases(rhplan_in, tmp_path),
                                          strict=True):
        res = rh("plan")
        problems += check_refusal(case, line, words, res.returncode, res.stderr, rh.dir)
        TALLY.refused.append(f"{case} (own process)")
    assert not problems, "\n".join(problems)
    assert not canary_hits(tmp_path)


# --------------------------------------------------------------------------
# carried as data: a local cluster whose very folder holds shell syntax
# --------------------------------------------------------------------------

def hostile_packages(where: Path) -> tuple[Path, Path]:
    """Two local folders with hostile names beside the configuration: a project
    (pyproject, installed) and a plain folder of modules (put on the path by a .pth)."""
    project = where / f"proj {HOSTILE_NAME}"
    (project / "injpkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "injpkg"
        version = "0.1.0"
    """))
    (project / "injpkg" / "__init__.py").write_text("VALUE = 'project'\n")
    plain = where / f"plain {HOSTILE_NAME}"
    plain.mkdir()
    (plain / "plainmod.py").write_text("VALUE = 'plain'\n")
    return project, plain


def hostile_env(cluster: str, project: Path, plain: Path) -> str:
    return textwrap.dedent(f"""
        secret "s" {{
          from_env = ["{SECRET_VAR}"]
        }}

        env "hostile" {{
          cluster  = cluster.{cluster}
          reqs     = [{hcl_str(MARKER_SPEC)}, {hcl_str(ARGS_SPEC)},
                      {hcl_str("../" + project.name)}, {hcl_str(str(plain))}]
          env_vars = {{
            INJECTED = {hcl_str(PAYLOAD)}
            {hcl_str(KEY)} = "key-arrived"
          }}
          secrets  = [secret.s]
        }}
    """)


# Runs in the env (via `rhplan run`): what arrived, as JSON.
PROBE = ("import json, os, sys, injpkg, plainmod, six, idna; print(json.dumps({"
         "'env': {k: os.environ.get(k) for k in json.loads(sys.argv[1])}, "
         "'mods': [injpkg.VALUE, plainmod.VALUE], 'argv': sys.argv[2:]}))")
DATA_ITEMS = ["configuration folder", "root_dir", "marker spec", "install args",
              "project folder", "plain folder", "env var name", "env var value",
              "secret value", "run argv"]


def check_env_got_data(rh: Any, env_dir: Path) -> None:
    """Everything hostile arrived verbatim, ran nothing, and the secret file is 0600."""
    expected = {"INJECTED": PAYLOAD, KEY: "key-arrived", SECRET_VAR: SECRET}
    res = rh("run", "hostile", "--", "python", "-c", PROBE, json.dumps(sorted(expected)),
             PAYLOAD, KEY).ok()
    got = json.loads(res.stdout)
    assert got == {"env": expected, "mods": ["project", "plain"], "argv": [PAYLOAD, KEY]}
    secrets = env_dir / "rhplan" / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(secrets.read_text()) == {SECRET_VAR: SECRET}
    # its servlet started: Ray got the env's interpreter path, quoted, and ran it
    status = json.loads(rh("status", "-json").ok().stdout)
    assert [s["alive"] for c in status for s in c["servlets"]] == [True], status


@dataclass
class Applied:
    rh: Any
    root: Path
    temp_dirs: list[str]


@pytest.fixture(scope="module")
def local_hostile(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any
                  ) -> Iterator[Applied]:
    base = tmp_path_factory.mktemp("inj-local")
    rh = rhplan_in(base / f"cfg {HOSTILE_NAME}", env={SECRET_VAR: SECRET})
    project, plain = hostile_packages(base)
    rh.write('cluster "here" {\n  provider = "local"\n}\n' + hostile_env("here", project,
                                                                          plain))
    root = rh.cluster_dir("here")
    applied = Applied(rh, root, [temp_dir_for(str(root))])
    try:
        res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
        assert res.returncode == 0, res.describe()
        yield applied
    finally:
        destroy_and_check(rh, root, applied.temp_dirs)


def test_hostile_values_are_data_on_a_local_cluster(local_hostile: Applied) -> None:
    rh = local_hostile.rh
    check_env_got_data(rh, rh.env_dir("here", "hostile"))
    assert rh.resources()["env.hostile"]["attributes"]["reqs"][0] == MARKER_SPEC
    # no leak in the cluster's Ray logs either (they go away with destroy)
    report = scan_paths([Path(d) for d in local_hostile.temp_dirs] + [rh.dir])
    assert report.files and not report.leaks, report.leaks
    assert not canary_hits(rh.dir.parent), "an injected command ran"
    TALLY.data += [f"local: {item}" for item in DATA_ITEMS]


# --------------------------------------------------------------------------
# carried as data over SSH: the same, with a root_dir that holds shell syntax
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")  # used by a long test only
def ssh_hostile(server: Any, tmp_path_factory: pytest.TempPathFactory,  # noqa: F811
                rhplan_in: Any) -> Iterator[Applied]:
    base = tmp_path_factory.mktemp("inj-ssh")
    rh = rhplan_in(base / "infra", env={SECRET_VAR: SECRET})
    project, plain = hostile_packages(base)
    root = base / f"root {HOSTILE_NAME}"
    provision_ray_venv(root)  # a host image with Ray (the provider checks and keeps it)
    rh.write(cluster_hcl("far", ["127.0.0.1"], root, ssh_block(server))
             + hostile_env("far", project, plain))
    applied = Applied(rh, root, [temp_dir_for(str(root))])
    try:
        res = rh("apply", "-auto-approve", timeout=APPLY_TIMEOUT)
        assert res.returncode == 0, res.describe()
        yield applied
    finally:
        destroy_and_check(rh, root, applied.temp_dirs)


@pytest.mark.long  # ~2 min on a loaded 2-core machine: Ray head, a setuptools build and
# Ray in the env, all over SSH (test_ssh_provider's box covers env vars, secrets and
# `run` argv over SSH in the default run)
def test_hostile_values_are_data_on_an_ssh_host(ssh_hostile: Applied) -> None:
    rh, root = ssh_hostile.rh, ssh_hostile.root
    check_env_got_data(rh, root / "envs" / "hostile")
    # the project folder was synced to the host under its own (hostile) name
    synced = [p.name for p in (root / "src").iterdir()]
    assert any(n.startswith("proj x $(touch") for n in synced), synced
    report = scan_paths([Path(d) for d in ssh_hostile.temp_dirs] + [rh.dir, root])
    assert report.files and not report.leaks, report.leaks
    assert report.allowed == [str(root / "envs" / "hostile" / "rhplan" / "secrets.json")]
    assert not canary_hits(rh.dir.parent), "an injected command ran"
    TALLY.data += [f"ssh: {item}" for item in DATA_ITEMS]


@pytest.fixture(scope="module", autouse=True)
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the module's cases (default run or -m long), no file named like MARK
    exists anywhere a command could have made one; print the figures."""
    yield
    hits = canary_hits(tmp_path_factory.getbasetemp())
    total = len(TALLY.refused) + len(TALLY.data)
    print(f"\nRELIABILITY: injection: cases={total} refused={len(TALLY.refused)} "
          f"treated-as-data={len(TALLY.data)} canary-created={len(hits)}")
    assert not hits, hits


def test_a_cluster_name_cannot_leave_the_clusters_folder(rh: Any) -> None:
    rh.write('cluster "../../../../../../../../tmp/victim" {\n  provider = "local"\n}\n')
    line = rh("plan").error_line()
    assert line.startswith("Error: main.hcl:1: ") and "not allowed" in line, line
