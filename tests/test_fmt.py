"""`rhplan fmt`: Terraform's canonical layout. Cases are data (before -> after, most of
them hclwrite's own format tests); every example and every .hcl under tests/ formats
to the same syntax tree, and formatting the result again changes nothing; the CLI's
flags and exit codes are Terraform's (-check exits 3, a file that does not parse 2)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rhplan.config.parse import parse_text
from rhplan.fmt import format_text

ROOT = Path(__file__).resolve().parent.parent
RHPLAN = [sys.executable, "-m", "rhplan.cli"]

CASES = [
    ("a=1", "a = 1\n"),
    ("a=b.c", "a = b.c\n"),
    ("a=b[c]", "a = b[c]\n"),
    ("a=b()[c]", "a = b()[c]\n"),
    ('a=["hello"][0]', 'a = ["hello"][0]\n'),
    ("x = ( a+-2 )", "x = (a + -2)\n"),
    ("x = (-2+1)", "x = (-2 + 1)\n"),
    ("x = foo(1, -2,a*b, b,c)", "x = foo(1, -2, a * b, b, c)\n"),
    ("x = foo(a,b...)", "x = foo(a, b...)\n"),
    ("x = ! true", "x = !true\n"),
    ('a="hello ${ name }"', 'a = "hello ${name}"\n'),
    ('a="hello ${~ name ~}"', 'a = "hello ${~name~}"\n'),
    ('a="${b}${c}${ d } ${e}"', 'a = "${b}${c}${d} ${e}"\n'),
    ('x = "%{if true}${var.foo}%{endif}"', 'x = "%{if true}${var.foo}%{endif}"\n'),
    ("b{}", "b {}\n"),
    ("x = a?b:c", "x = a ? b : c\n"),
    ("x = [ [ ] ]", "x = [[]]\n"),
    ("x = [for x in y : x]", "x = [for x in y : x]\n"),
    ("x = [for x in [y] : x]", "x = [for x in [y] : x]\n"),
    ("x = {for k,v in m : k=>v}", "x = { for k, v in m : k => v }\n"),
    ("x = a[*].b", "x = a[*].b\n"),
    ("b {\na = 1\n}\n", "b {\n  a = 1\n}\n"),
    ("b {a = 1}\n", "b { a = 1 }\n"),
    ("a = 1\nbungle = 2\n", "a      = 1\nbungle = 2\n"),
    ("a = 1\n\nbungle = 2\n", "a = 1\n\nbungle = 2\n"),
    ("a = 1 # foo\nbungle = 2\n", "a      = 1 # foo\nbungle = 2\n"),
    ('a = 1 # foo\nbungle = "bonce" # baz\nzebra = "striped" # baz\n',
     'a      = 1         # foo\nbungle = "bonce"   # baz\nzebra  = "striped" # baz\n'),
    ('a="apple"# foo\nbungle=(# woo parens\n"bonce"\n)# baz\nzebra="striped"# baz\n',
     'a = "apple" # foo\nbungle = (  # woo parens\n  "bonce"\n)                 # baz\n'
     'zebra = "striped" # baz\n'),
    ("foo {\n# ...\n}\n", "foo {\n  # ...\n}\n"),
    ("foo = [{\n# ...\n}]\n", "foo = [{\n  # ...\n}]\n"),
    ("foo {\nbar {\n// c\n}\n}\n", "foo {\n  bar {\n    // c\n  }\n}\n"),
    ("x = foo(\n1,\n- 2,\na*b,\nb,\nc,\n)\n", "x = foo(\n  1,\n  -2,\n  a * b,\n  b,\n  c,\n)\n"),
    ("x = [[\n[\na\n]]\n]\n", "x = [[\n  [\n    a\n  ]]\n]\n"),
    ('x = "${\nhello\n}"\n', 'x = "${\n  hello\n}"\n'),
    ("attr = provider :: framework :: example()", "attr = provider::framework::example()\n"),
    # heredocs: their text untouched (blank lines and spaces included)
    ("foo {\nbar = <<-EOT\n  Foo   bar\n\n\n  baz = 1\nEOT\n}\n",
     "foo {\n  bar = <<-EOT\n  Foo   bar\n\n\n  baz = 1\nEOT\n}\n"),
    ("foo {\nbar = <<EOT\nFoo bar baz\nEOT\nbaz = <<EOT\nx\nEOT\n}\n\nbar {\nfoo = \"bar\"\n}\n",
     "foo {\n  bar = <<EOT\nFoo bar baz\nEOT\n  baz = <<EOT\nx\nEOT\n}\n\nbar {\n"
     '  foo = "bar"\n}\n'),
    # what rhplan adds: runs of blank lines become one, none at the start or end, one
    # final newline; trailing spaces go; string text stays as written
    ("\n\n\na = 1\n\n\n\nb = 2\n\n\n", "a = 1\n\nb = 2\n"),
    ("a = 1   \n# note   \n", "a = 1\n# note\n"),
    ('a = "  two  spaces = \\"q\\" $${x} "', 'a = "  two  spaces = \\"q\\" $${x} "\n'),
    ('a="line\n  break"', 'a = "line\n  break"\n'),  # a newline in quotes: rhplan parses it
    ("/* a\n   block */\ncluster \"c\" {\nprovider = \"local\" /* inline */\n}\n",
     "/* a\n   block */\ncluster \"c\" {\n  provider = \"local\" /* inline */\n}\n"),
    ('cluster "c"   {\n  provider="local"\n    ssh {\n  user = "me"\n  private_key = "k"\n}\n}',
     'cluster "c" {\n  provider = "local"\n  ssh {\n    user        = "me"\n'
     '    private_key = "k"\n  }\n}\n'),
]


@pytest.mark.parametrize(("before", "after"), CASES)
def test_format_table(before: str, after: str) -> None:
    assert format_text(before) == after
    assert format_text(after) == after  # idempotent


def _shape(node: Any) -> Any:
    """A syntax tree without positions: what a file means, not where it says it."""
    if dataclasses.is_dataclass(node):
        return (type(node).__name__, *(_shape(getattr(node, f.name))
                                       for f in dataclasses.fields(node)
                                       if f.name not in ("line", "end_line", "file", "path")))
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_shape(v) for v in node]
    return node


FILES = sorted(p for d in ("examples", "tests") for p in (ROOT / d).rglob("*.hcl")
               if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_formats_to_the_same_tree_and_is_idempotent(path: Path) -> None:
    src = path.read_text()
    out = format_text(src, path.name)
    assert format_text(out, path.name) == out
    assert _shape(parse_text(out, path.name)) == _shape(parse_text(src, path.name))


def test_there_are_files_to_check() -> None:
    assert len(FILES) >= 20, FILES


def fmt(cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RHPLAN, f"-chdir={cwd}", "fmt", *args], capture_output=True,
                          text=True, timeout=60, input=stdin)


UGLY = 'cluster "c" {\nprovider="local"\n  num_instances=1 # one\n}\n\n\n\nvariable "x" {}\n'
PRETTY = ('cluster "c" {\n  provider      = "local"\n  num_instances = 1 # one\n}\n\n'
          'variable "x" {}\n')


def test_check_exit_codes_and_listing(tmp_path: Path) -> None:
    (tmp_path / "main.hcl").write_text(UGLY)
    (tmp_path / "ok.hcl").write_text(PRETTY)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "rhplan.tfvars").write_text('a=1\nbb="x"\n')
    p = fmt(tmp_path, "-check")
    assert (p.returncode, p.stdout, p.stderr) == (3, "main.hcl\n", "")
    assert (tmp_path / "main.hcl").read_text() == UGLY  # -check writes nothing
    p = fmt(tmp_path, "-check", "-recursive", "-list=false")
    assert (p.returncode, p.stdout) == (3, "")
    p = fmt(tmp_path, "-check", "ok.hcl")
    assert (p.returncode, p.stdout) == (0, "")
    p = fmt(tmp_path, "-check", "-diff", "sub")
    assert p.returncode == 3
    assert p.stdout == ("sub/rhplan.tfvars\n--- old/sub/rhplan.tfvars\n+++ new/sub/rhplan.tfvars\n"
                        "@@ -1,2 +1,2 @@\n-a=1\n-bb=\"x\"\n+a  = 1\n+bb = \"x\"\n")


def test_write_list_and_write_false(tmp_path: Path) -> None:
    (tmp_path / "main.hcl").write_text(UGLY)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.hcl").write_text("a=1\n")
    p = fmt(tmp_path, "-write=false")
    assert (p.returncode, p.stdout) == (0, "main.hcl\n")
    assert (tmp_path / "main.hcl").read_text() == UGLY
    p = fmt(tmp_path)
    assert (p.returncode, p.stdout) == (0, "main.hcl\n")
    assert (tmp_path / "main.hcl").read_text() == PRETTY
    assert (tmp_path / "sub" / "m.hcl").read_text() == "a=1\n"  # not without -recursive
    p = fmt(tmp_path, "-recursive")
    assert (p.returncode, p.stdout) == (0, "sub/m.hcl\n")
    assert (tmp_path / "sub" / "m.hcl").read_text() == "a = 1\n"
    assert fmt(tmp_path, "-check", "-recursive").returncode == 0


def test_stdin(tmp_path: Path) -> None:
    p = fmt(tmp_path, "-", stdin='x=upper( "a" )\n')
    assert (p.returncode, p.stdout) == (0, 'x = upper("a")\n')


def test_a_file_that_does_not_parse_is_reported_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "bad.hcl").write_text('cluster "c" {\n  provider = "local"\n')
    (tmp_path / "main.hcl").write_text(UGLY)
    p = fmt(tmp_path)
    assert p.returncode == 2
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: bad.hcl:"), p.stderr
    assert (tmp_path / "bad.hcl").read_text() == 'cluster "c" {\n  provider = "local"\n'
    assert (tmp_path / "main.hcl").read_text() == PRETTY  # the others are still formatted
    p = fmt(tmp_path, "nothere.hcl")
    assert p.returncode == 2 and p.stderr.startswith("Error: nothere.hcl: no such file"), p.stderr
    (tmp_path / "notes.txt").write_text("x")
    p = fmt(tmp_path, "notes.txt")
    assert p.returncode == 2 and "*.hcl and *.tfvars files only" in p.stderr


def test_mutated_files_format_or_are_refused(tmp_path: Path) -> None:
    """Fuzz: the examples and test files with characters deleted, inserted or lines repeated. What
    rhplan's parser accepts formats without error to the same syntax tree, idempotently;
    the formatter never raises anything but a ConfigError (one line, file:line)."""
    import random

    from rhplan.errors import ConfigError
    rng = random.Random(7)  # this seed found newlines inside quotes (the parser takes them)
    sources = [p.read_text() for p in FILES]
    alphabet = ' \t\n{}[]()"=#/*<>-+,.:?!$%~\\aZ0'
    tried = formatted = 0
    for _ in range(300):
        text = rng.choice(sources)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text))
            kind = rng.randrange(3)
            if kind == 0:
                text = text[:i] + text[i + 1:]
            elif kind == 1:
                text = text[:i] + rng.choice(alphabet) + text[i:]
            else:
                lines = text.splitlines(True)
                j = rng.randrange(len(lines))
                text = "".join(lines[:j + 1] + lines[j:])
        tried += 1
        try:
            tree = parse_text(text, "m.hcl")
        except ConfigError:
            continue  # fmt leaves a file that does not parse alone
        out = format_text(text, "m.hcl")
        assert format_text(out, "m.hcl") == out, text
        assert _shape(parse_text(out, "m.hcl")) == _shape(tree), text
        formatted += 1
    assert tried == 300 and formatted >= 60, (tried, formatted)


def test_a_symlinked_file_is_formatted_through_its_link(tmp_path: Path) -> None:
    (tmp_path / "shared.hcl.txt").write_text("a=1\n")
    (tmp_path / "main.hcl").symlink_to("shared.hcl.txt")
    assert fmt(tmp_path).returncode == 0
    assert (tmp_path / "main.hcl").is_symlink()
    assert (tmp_path / "shared.hcl.txt").read_text() == "a = 1\n"


def test_fmt_starts_without_the_state_or_package_metadata(tmp_path: Path) -> None:
    """fmt never locks or reads a state: its start imports neither rhplan.state nor
    importlib.metadata (~0.09 s of CPU; cli.execute imported them for -lock-timeout)."""
    (tmp_path / "main.hcl").write_text(PRETTY)
    probe = ("import sys\nfrom rhplan.cli import execute\ncode = execute(sys.argv[1:])\n"
             "print(code, sorted(m for m in sys.modules if m.startswith(('rhplan.state', "
             "'importlib.metadata'))))")
    p = subprocess.run([sys.executable, "-c", probe, f"-chdir={tmp_path}", "fmt", "-check"],
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "0 []", p.stdout + p.stderr
