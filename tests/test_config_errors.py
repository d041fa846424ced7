"""Bad input never crashes rhplan: it prints ONE line, `Error: FILE:LINE: message`,
naming the file and line of the problem, exits 1, prints no traceback, and leaves an
existing state file byte-for-byte as it was.

A case is data: (files, expected location, expected words, command). Every case runs
in its own folder that already holds a real state (made once by a real apply of a
secret, which needs no cluster), and is checked with each of its commands.
"""
from __future__ import annotations

import re
import shutil
from typing import Any

import pytest

VALIDATE = ("validate",)
PLAN = ("plan", "-refresh=false")
BOTH = (VALIDATE, PLAN)

# lines 1-3 of most cases
CLUSTER = """\
cluster "c" {
  provider = "local"
}
"""


def env(body: str) -> str:
    """CLUSTER, then an env whose body starts on line 5."""
    return CLUSTER + 'env "e" {\n' + body + "}\n"


CASES = [
    pytest.param(
        {"main.hcl": env("  cluster = cluster.c\n  bogus   = 1\n")},
        "main.hcl:6", ["unknown attribute 'bogus'", "env takes"], BOTH,
        id="unknown-attribute"),
    pytest.param(
        {"main.hcl": CLUSTER + 'secret "s" {\n  values = { K = "v" }\n  lifecycle {\n'
                               '    bogus = true\n  }\n}\n'},
        "main.hcl:7", ["bogus", "prevent_destroy"], BOTH,
        id="unknown-lifecycle-setting"),
    pytest.param(
        {"main.hcl": env('  cluster = cluster.c\n  reqs    = "six"\n')},
        "main.hcl:6", ["reqs", "list"], BOTH,
        id="wrong-type-reqs-string"),
    pytest.param(
        {"main.hcl": 'cluster "c" {\n  provider      = "local"\n  num_instances = "two"\n}\n'},
        "main.hcl:3", ["num_instances", "number"], BOTH,
        id="wrong-type-number"),
    pytest.param(
        {"main.hcl": env('  reqs = ["six==1.16.0"]\n')},
        "main.hcl:4", ["cluster", "required"], BOTH,
        id="missing-required-cluster"),
    pytest.param(
        {"main.hcl": env("  cluster = cluster.nope\n")},
        "main.hcl:5", ["cluster.nope"], BOTH,
        id="unknown-reference-resource"),
    pytest.param(
        {"main.hcl": env("  cluster  = cluster.c\n  env_vars = { A = var.nope }\n")},
        "main.hcl:6", ["var.nope"], BOTH,
        id="unknown-reference-variable"),
    pytest.param(
        {"main.hcl": env('  cluster  = cluster.c\n  env_vars = { A = "${local.nope}" }\n')},
        "main.hcl:6", ["local.nope"], BOTH,
        id="unknown-reference-local"),
    pytest.param(
        {"main.hcl": env("  cluster  = cluster.c\n  env_vars = { A = cluster.c.nope }\n")},
        "main.hcl:6", ["cluster.c has no attribute 'nope'"], BOTH,
        id="unknown-attribute-reference"),
    pytest.param(
        {"main.hcl": CLUSTER + '\noutput "o" {\n  value = env.nope.python\n}\n'},
        "main.hcl:6", ["env.nope"], BOTH,
        id="unknown-reference-in-output"),
    pytest.param(
        {"main.hcl": CLUSTER, "other.hcl": '# more clusters\n\ncluster "c" {\n'
                                           '  provider = "local"\n}\n'},
        "other.hcl:3", ["declared twice", "main.hcl:1"], BOTH,
        id="duplicate-resource-across-files"),
    pytest.param(
        {"main.hcl": env('  cluster = cluster.c\n  reqs = = ["six"]\n')},
        "main.hcl:6", ["syntax error"], BOTH,
        id="syntax-error"),
    pytest.param(
        {"main.hcl": CLUSTER, "b.hcl": 'secret "s" {\n  values = { K = "v }\n}\n'},
        "b.hcl:2", ["syntax error"], BOTH,
        id="syntax-error-unclosed-string-second-file"),
    pytest.param(
        {"main.hcl": CLUSTER + '\nwidget "w" {\n}\n'},
        "main.hcl:5", ["unknown block type 'widget'"], BOTH,
        id="unknown-block-type"),
    pytest.param(
        {"main.hcl": CLUSTER
         + 'env "a" {\n  cluster    = cluster.c\n  depends_on = [env.b]\n}\n'
         + 'env "b" {\n  cluster    = cluster.c\n  depends_on = [env.x]\n}\n'
         + 'env "x" {\n  cluster    = cluster.c\n  depends_on = [env.a]\n}\n'},
        "main.hcl:4", ["cycle", "env.a", "env.b", "env.x"], BOTH,
        id="dependency-cycle"),
    pytest.param(
        {"main.hcl": env('  cluster = cluster.c\n  reqs    = ["six=="]\n')},
        "main.hcl:6", ["'six=='", "not a valid package"], BOTH,
        id="bad-package-string"),
    pytest.param(
        {"main.hcl": env('  cluster = cluster.c\n  reqs    = ["nope:thing"]\n')},
        "main.hcl:6", ["unknown install method 'nope'"], BOTH,
        id="unknown-install-method"),
    pytest.param(
        {"main.hcl": env('  cluster = cluster.c\n  reqs    = ["./no/such/dir"]\n')},
        "main.hcl:6", ["does not exist"], BOTH,
        id="missing-local-package-folder"),
    pytest.param(
        {"main.hcl": env('  cluster  = cluster.c\n  env_vars = { A = nosuchfn("x") }\n')},
        "main.hcl:6", ["unknown function nosuchfn"], BOTH,
        id="unknown-function"),
    pytest.param(
        {"main.hcl": 'secret "s" {\n  values = { K = upper("a", "b") }\n}\n'},
        "main.hcl:2", ["upper()"], BOTH,
        id="function-wrong-arguments"),
    pytest.param(
        {"main.hcl": 'secret "s" {\n  values = { K = jsondecode("{nope") }\n}\n'},
        "main.hcl:2", ["jsondecode()", "not valid JSON"], BOTH,
        id="function-bad-value"),
    pytest.param(
        {"main.hcl": 'secret "s" {\n  values = { K = templatefile("t.tftpl", {}) }\n}\n',
         "t.tftpl": "# template\nhello ${name}\n"},
        "main.hcl:2", ["templatefile()", "t.tftpl:2", "name"], BOTH,
        id="templatefile-missing-variable"),
    pytest.param(
        {"main.hcl": 'variable "region" {\n  default = "Frankfurt"\n  validation {\n'
                     '    condition     = can(regex("^[a-z]+-[a-z]+-[0-9]$", var.region))\n'
                     '    error_message = "The region must look like us-east-1."\n  }\n}\n'},
        "main.hcl:4", ["invalid value for variable 'region'", "must look like us-east-1"],
        (PLAN,), id="variable-validation-fails"),
    pytest.param(
        {"main.hcl": 'variable "pool" {\n  type = object({ name = string })\n'
                     '  default = { size = 2 }\n}\n'},
        "main.hcl:3", ["variable 'pool'", "attribute 'name' is required"], (PLAN,),
        id="variable-object-type"),
    pytest.param(
        {"main.hcl": 'variable "v" {\n  default = "x"\n}\n'},
        "-var", ["no variable 'nope'"],
        (("validate", "-var", "nope=1"), ("plan", "-refresh=false", "-var=nope=1")),
        id="wrong-var-name"),
    pytest.param(
        {"main.hcl": 'variable "v" {\n  default = "x"\n}\n',
         "vars.rhvars": '# values for CI\n\nnope = "1"\n'},
        "vars.rhvars:3", ["no variable 'nope'"],
        (("validate", "-var-file", "vars.rhvars"),),
        id="wrong-var-name-in-var-file"),
    pytest.param(
        {"main.hcl": 'variable "n" {\n  type = number\n}\n'},
        "-var n", ["number"],
        (("validate", "-var", "n=abc"),),
        id="var-value-of-wrong-type"),
    pytest.param(
        {"main.hcl": 'variable "v" {\n  description = "needed"\n}\n\n'
                     'secret "s" {\n  values = { K = var.v }\n}\n'},
        "main.hcl:1", ["variable 'v' has no value", "-var v="], (PLAN,),  # validate: unknown
        id="missing-variable-value"),
    pytest.param(
        {"main.hcl": 'variable "n" {\n  type    = number\n  default = "x"\n}\n'},
        "main.hcl:3", ["number"], BOTH,
        id="variable-default-of-wrong-type"),
    pytest.param(
        {"main.hcl": 'secret "keep" {\n  values = { K = "v" }\n\n  lifecycle {\n'
                     '    prevent_destroy = true\n  }\n}\n'},
        "main.hcl:1", ["secret.keep", "prevent_destroy"],
        (("destroy", "-auto-approve"), ("plan", "-destroy", "-refresh=false")),
        id="prevent-destroy-blocks-destroy"),
    pytest.param(
        {"main.hcl": 'cluster "c" {\n  provider = "nope"\n}\n'},
        "main.hcl:2", ["no provider 'nope'"], BOTH,
        id="unknown-provider"),
    pytest.param(
        {"main.hcl": 'secret "s" {\n  from_env = ["RHPLAN_TEST_NEVER_SET_VAR"]\n}\n'},
        "main.hcl:2", ["RHPLAN_TEST_NEVER_SET_VAR", "not set"], (PLAN,),  # validate reads none
        id="secret-env-var-not-set"),
]


@pytest.fixture(scope="session")
def recorded_state(tmp_path_factory: pytest.TempPathFactory, rhplan_in: Any) -> bytes:
    """A real state file, written by a real apply (a secret: no cluster, no Ray)."""
    rh = rhplan_in(tmp_path_factory.mktemp("seed") / "infra")
    rh.write("""
        secret "keep" {
          values = { K = "v" }

          lifecycle {
            prevent_destroy = true
          }
        }
    """)
    rh("apply", "-auto-approve").ok()
    assert "secret.keep" in rh.resources()
    return rh.state_path.read_bytes()


@pytest.mark.parametrize(("files", "where", "words", "commands"), CASES)
def test_bad_input_gives_one_line_with_file_and_line(
        rh: Any, recorded_state: bytes, files: dict[str, str], where: str, words: list[str],
        commands: tuple[tuple[str, ...], ...]) -> None:
    rh.keep = True  # the copied state stands for nothing real: nothing to destroy
    for name, text in files.items():
        (rh.dir / name).write_text(text)
    rh.state_path.write_bytes(recorded_state)
    for args in commands:
        res = rh(*args)
        line = res.error_line()  # exit 1, one line on stderr, no traceback anywhere
        assert line.startswith(f"Error: {where}: "), f"{args}: {line}"
        for w in words:
            assert w in line, f"{args}: {w!r} not in {line!r}"
        for internal in ("<lambda>", "object at 0x", "NoneType", "KeyError"):
            assert internal not in line, f"{args}: Python internals in {line!r}"
        assert "Traceback" not in res.stdout
        assert rh.state_path.read_bytes() == recorded_state, f"{args} changed the state"
        assert not rh.lock_info_path.exists(), f"{args} left the state locked"


def test_every_case_names_a_line_that_exists() -> None:
    """The cases themselves: the expected line is in the file (guards typos here)."""
    for case in CASES:
        files, where = case.values[0], case.values[1]
        m = re.fullmatch(r"([\w.]+):(\d+)", where)
        if m is None:
            continue
        text = files[m.group(1)]
        assert 1 <= int(m.group(2)) <= len(text.splitlines()), case.id


def test_bad_state_file_is_one_line_and_untouched(rh: Any) -> None:
    rh.keep = True
    rh.write('secret "s" {\n  values = { K = "v" }\n}\n')
    rh.state_path.write_text('{"format_version": 1, "resources": [\n')
    before = rh.state_path.read_bytes()
    line = rh("plan").error_line()
    assert "rhplan.state.json: not a state file (invalid JSON" in line, line
    assert f"restore {rh.state_path}.backup" in line, line
    assert rh.state_path.read_bytes() == before


def test_no_configuration_files(rh: Any) -> None:
    line = rh("validate").error_line()
    assert "no *.hcl files" in line, line
    empty = rh.dir / "missing"
    shutil.rmtree(empty, ignore_errors=True)
    line = rh(f"-chdir={empty}", "validate").error_line()
    assert "does not exist" in line, line
