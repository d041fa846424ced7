"""The fast HCL reader (rhplan/config/fastparse.py) never disagrees with python-hcl2:
whatever it accepts, python-hcl2 accepts with the same tree (lines included), and
everything else (operators, heredocs, for expressions, errors) goes to python-hcl2."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from rhplan.config import fastparse, parse
from rhplan.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted(p for d in ("examples", "tests/plan_cases") for p in (ROOT / d).rglob("*.hcl"))


def slow(text: str) -> object:
    """python-hcl2's tree, the reference."""
    original = fastparse.parse

    def unsupported(*_: object) -> object:
        raise fastparse.Unsupported

    fastparse.parse = unsupported  # type: ignore[assignment]
    try:
        return parse.parse_text(text, "main.hcl")
    finally:
        fastparse.parse = original  # type: ignore[assignment]


def fast(text: str) -> object:
    return fastparse.parse(text if text.endswith("\n") else text + "\n", "main.hcl")


SAMPLE = '''# a comment
variable "team" { default = "ml" }
locals {
  pins = { numpy = "1.26.4" }   // another
}
cluster "c" {
  provider = "local"
  open_ports = [8080,
    8265, ]
}
env "e" {
  cluster = cluster.c
  reqs = [
    "pip:numpy==${local.pins.numpy}",  /* inline */
    "six",
  ]
  env_vars = {
    TEAM = var.team, "X-Y" = "a\\tb \\u0041 $5"
    UP   = upper(
      var.team)
    N    = 1.5e3
  }
  lifecycle { ignore_changes = [env_vars] }
}
x "a" b {}
'''


def test_examples_take_the_fast_path_with_the_same_tree() -> None:
    assert CORPUS
    for path in CORPUS + [None]:
        text = SAMPLE if path is None else path.read_text()
        assert fast(text) == slow(text), path


@pytest.mark.parametrize("text", [
    'x = 1 + 2\n', 'x = a ? b : c\n', 'x = -1\n', 'x = !true\n', 'x = [for v in l : v]\n',
    'x = <<EOT\nhello\nEOT\n', 'x = l[*].a\n', 'x = "$${a}"\n', 'x = f(l...)\n', 'x = (1)\n',
    'x = { a.b = 1 }\n', 'x = "a\nb"\n', 'a = 1 b = 2\n', 'x = 1\nx = 2\n', 'x = {\n',
    'b "${x}" {}\n', 'x = 1\r\n', 'x = a::b::c(1)\n',
])
def test_the_rest_goes_to_python_hcl2(text: str) -> None:
    with pytest.raises(fastparse.Unsupported):
        fast(text)
    try:
        expected = slow(text)
    except ConfigError as exc:
        with pytest.raises(ConfigError) as got:
            parse.parse_text(text, "main.hcl")
        assert str(got.value) == str(exc)  # the same one-line error as before
    else:
        assert parse.parse_text(text, "main.hcl") == expected


def test_mutated_files_never_disagree() -> None:
    """Random edits of the examples (deleted, inserted, duplicated characters): where the
    fast path accepts the result, python-hcl2 accepts it with the same tree."""
    rng = random.Random(17)
    corpus = [p.read_text() for p in CORPUS] + [SAMPLE]
    pieces = list('"{}[](),.=\n #$\\:*-+/ab1') + [
        "${", '}"', "//", "/*", "*/", "true", "null", " x = 1\n", "\t", '"a"', "in", "..",
        "=>", "==", "1.5", "1e3", "\\u0041", "\\ud800"]
    accepted = 0
    for _ in range(1500):
        t = rng.choice(corpus)
        for _ in range(rng.randint(1, 3)):
            p = rng.randrange(len(t) + 1)
            op = rng.random()
            if op < 0.4:
                t = t[:p] + t[p + rng.randint(1, 3):]
            elif op < 0.8:
                t = t[:p] + rng.choice(pieces) + t[p:]
            else:
                q = rng.randrange(len(t) + 1)
                t = t[:p] + t[q:q + rng.randint(1, 20)] + t[p:]
        try:
            tree = fast(t)
        except fastparse.Unsupported:
            continue
        accepted += 1
        assert tree == slow(t), t
    assert accepted > 200  # the check above really ran


@pytest.mark.parametrize("text", [
    'x = {}.a\n', 'x = [1][0]\n', 'x = "s"[0]\n', 'x = f(1).a\n', 'x = a[0].b[1]\n',
    'x = a . b\n', 'x = a [ 0 ]\n', 'x = f (1)\n', 'x = {"a"=1}\n', 'x = {a=1,}\n',
    'x = [1,]\n', 'x = f(1,)\n', 'x = f(\n1\n,\n2\n)\n', 'x = [\n1\n,\n2\n]\n', 'b\n{\n}\n',
    'b "x"\n{\n}\n', 'b x "y" {}\n', 'x = "${a}${b}"\n', 'x = "a${ a.b }b"\n',
    'x = "${"in"}"\n', 'x = "${[1,\n2]}"\n', 'x = 01\n', 'x = 1.5E-3\n',
    'x = "%{if a}b%{endif}"\n', 'x = "\\x41"\n', 'x = "é€"\n', 'x_y-z = a-b\n',
    'x = {\n # c\n a = 1 // d\n /* e */ b = 2\n}\n', 'b { a = 1 }\nc {}\n', 'x = f(\n)\n',
])
def test_tricky_forms_agree(text: str) -> None:
    assert fast(text) == slow(text)
