"""`rhplan console`: expressions from standard input, one per line, printed as
Terraform's console prints values; an error is one line naming <stdin>:LINE and the
console goes on; values come from variables, locals, functions, and resources (what
the state records once applied, the configured values before)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

CONFIG = """\
variable "greeting" {
  default = "hello"
}
variable "token" {
  default   = "s3cr3t-value"
  sensitive = true
}
variable "unset" {
  type = string
}

locals {
  team = "ml-platform"
}

cluster "c" {
  provider = "local"
}

env "e" {
  cluster  = cluster.c
  reqs     = ["pip:six==1.16.0"]
  env_vars = { TEAM = local.team }
}

secret "s" {
  values = { K = "v" }
}
"""

CASES = [
    ('upper("a")', '"A"'),
    ("var.greeting", '"hello"'),
    ("local.team", '"ml-platform"'),
    ("1.5 * 2", "3"),
    ("0.1", "0.1"),
    ("1e20", "100000000000000000000"),
    ("true && false", "false"),
    ("null", "null"),
    ("[]", "[]"),
    ("{}", "{}"),
    ('[1, "a", [true]]', '[\n  1,\n  "a",\n  [\n    true,\n  ],\n]'),
    ('toset(["b", "a", "b"])', 'toset([\n  "a",\n  "b",\n])'),
    ('{ b = 1, a = { c = "x" } }', '{\n  "a" = {\n    "c" = "x"\n  }\n  "b" = 1\n}'),
    ('"two\\nlines"', "<<EOT\ntwo\nlines\nEOT"),
    ('[for s in ["a", "b"] : upper(s)]', '[\n  "A",\n  "B",\n]'),
    ("var.unset", "(known after apply)"),  # no value: unknown, as in validate
    ("var.token", "(sensitive value)"),
    ('"${var.token}-x"', "(sensitive value)"),
    ("env.e.reqs", '[\n  "pip:six==1.16.0",\n]'),
    ("env.e.env_vars", '{\n  "TEAM" = "ml-platform"\n}'),
    ("cluster.c.ips", "(known after apply)"),
    ("secret.s.keys", "(known after apply)"),  # not applied yet
]


def test_console_prints_values_as_terraform(rhplan_in: Any, tmp_path: Path) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(CONFIG)
    res = rh("console", input="\n".join(e for e, _ in CASES) + "\n").ok()
    assert res.stdout == "".join(f"{want}\n" for _, want in CASES)
    assert res.stderr == ""
    assert "s3cr3t" not in res.output


def test_console_one_line_errors_and_goes_on(rhplan_in: Any, tmp_path: Path) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(CONFIG)
    lines = ['upper("a")', "1 +", "nope(1)", "var.missing", "", "cluster.c.bogus",
             'lower("B")', "exit", '"never read"']
    res = rh("console", input="\n".join(lines) + "\n")
    assert res.returncode == 1  # piped input: a failed expression fails the command
    assert res.stdout == '"A"\n"b"\n'
    errors = res.stderr.splitlines()
    assert len(errors) == 4, res.stderr
    assert errors[0].startswith("Error: <stdin>:2: syntax error at column 4"), errors[0]
    assert errors[1].startswith("Error: <stdin>:3: unknown function nope()"), errors[1]
    assert errors[2].startswith("Error: <stdin>:4: unknown variable var.missing"), errors[2]
    assert errors[3].startswith("Error: <stdin>:6: cluster.c has no attribute 'bogus'"), errors[3]


def test_console_reads_what_the_state_records(rhplan_in: Any, tmp_path: Path) -> None:
    """A secret needs no host: applied for real, its recorded keys are what the console
    shows (before the apply they are known only after it)."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write('secret "s" {\n  values = { K = "v" }\n}\n')
    assert rh("console", input="secret.s.keys\n").ok().stdout == "(known after apply)\n"
    rh("apply", "-auto-approve").ok()
    assert rh("console", input="secret.s.keys\n").ok().stdout == '[\n  "K",\n]\n'


@pytest.mark.parametrize("argv", [("console",), ("console", "-var", "unset=x")])
def test_console_needs_no_variable_values(rhplan_in: Any, tmp_path: Path,
                                          argv: tuple[str, ...]) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(CONFIG)
    want = '"x"\n' if len(argv) > 1 else "(known after apply)\n"
    assert rh(*argv, input="var.unset\n").ok().stdout == want


def test_console_refuses_a_broken_configuration_in_one_line(rhplan_in: Any,
                                                            tmp_path: Path) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write('cluster "c" {\n  provider = "local"\n  bogus    = 1\n}\n')
    assert rh("console", input="1\n").error_line().startswith("Error: main.hcl:3: ")


def test_console_reads_module_outputs(rhplan_in: Any, tmp_path: Path) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write('module "m" {\n  source = "./mod"\n  n      = 2\n}\n')
    rh.write('variable "n" {}\noutput "twice" {\n  value = var.n * 2\n}\n', "mod/main.hcl")
    res = rh("console", input="module.m.twice\nmodule.m.nope\n")
    assert res.returncode == 1 and res.stdout == "4\n"
    assert res.error_line().startswith(
        "Error: <stdin>:2: module.m has no output 'nope' (its outputs: twice)")


def test_console_fuzz_never_crashes(rhplan_in: Any, tmp_path: Path) -> None:
    """Random expressions (fragments of valid ones, shuffled): each is a value or one
    error line naming its input line; never a traceback or an internal error, and the
    console reads every line."""
    import random
    rng = random.Random(8)
    parts = ['upper("a")', "var.greeting", "local.team", "env.e", "env.e.reqs", "[1, 2]",
             '{ a = 1 }', "(", ")", "[", "]", "{", "}", ",", "+", "-", "*", "/", "%", "?",
             ":", "=>", "for", "in", "if", "x", ".", "[*]", '"${', "}\"", "!", "&&", "==",
             "null", "1e999", "0", "-1", "toset", "tolist", "length(", "jsonencode(",
             "cluster.c.ips[0]", "secret.s", "var.token", "each.key", "count.index",
             "module.x.y", "~", "<<EOT", "#", "//", "/*", "\\", "'", "$${"]
    lines = [" ".join(rng.choice(parts) for _ in range(rng.randint(1, 6))) for _ in range(300)]
    lines = [ln for ln in lines if ln.strip() != "exit"] + ['"last"']
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(CONFIG)
    res = rh("console", input="\n".join(lines) + "\n", timeout=120)
    assert "Traceback" not in res.output and "internal error" not in res.output, res.output
    for err in res.stderr.splitlines():
        assert err.startswith("Error: <stdin>:"), err
    assert res.stdout.endswith('"last"\n')  # every line was read
    assert "s3cr3t" not in res.output
