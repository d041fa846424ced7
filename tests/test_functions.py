"""Terraform's built-in functions, `try`/`can` and `%{ }` template directives, table-driven.

Each case is HCL source → the value Terraform documents for it (the examples of
developer.hashicorp.com/terraform/language/functions/NAME and of Terraform's own
internal/lang/functions_test.go). Error cases must give ONE line naming file:line.
Expressions go through the real parser and evaluator (no mocks); nothing here starts a
process, so the file runs in about a second.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rhplan.config.evaluate import Scope
from rhplan.config.parse import parse_text
from rhplan.config.values import UNKNOWN, EvalError
from rhplan.errors import ConfigError

VARIABLES = {"names": ["a", "b"], "on": True, "off": False, "later": UNKNOWN,
             "tags": {"team": "ml", "env": "prod"}, "empty": []}


def _no_locals(name: str, line: int) -> Any:
    raise EvalError(f"unknown local.{name}", line)


def _no_resources(type_: str, name: str, line: int) -> Any:
    raise EvalError(f"unknown resource {type_}.{name}", line)


def evaluate(src: str, base_dir: Path = Path("/nonexistent")) -> Any:
    """src on line 3 of main.hcl (so a file:line in an error is checkable)."""
    f = parse_text(f"# two lines\n# before\nx = {src}\n", "main.hcl")
    scope = Scope(VARIABLES, _no_locals, _no_resources, base_dir)
    return scope.evaluate(f.body.attrs["x"].expr, "main.hcl")


# (expression, Terraform's documented result)
CASES: dict[str, list[tuple[str, Any]]] = {
    "jsonencode": [
        ('jsonencode({"hello"="world"})', '{"hello":"world"}'),
        ('jsonencode({"hello"="<cats & kittens>"})',
         '{"hello":"\\u003ccats \\u0026 kittens\\u003e"}'),
        ('jsonencode(["a", 1, 2.5, true, null])', '["a",1,2.5,true,null]'),
        ("jsonencode({b = 1, a = [2]})", '{"a":[2],"b":1}'),  # keys in order, as cty does
    ],
    "jsondecode": [
        ('jsondecode("{\\"hello\\": \\"world\\"}")', {"hello": "world"}),
        ('jsondecode("true")', True),
        ('jsondecode("[1, 2.5, null]")', [1, 2.5, None]),
    ],
    "yamlencode": [
        ('yamlencode(["foo", "bar", true])', '- "foo"\n- "bar"\n- true\n'),
        ('yamlencode({a = "b", c = "d"})', '"a": "b"\n"c": "d"\n'),
        ("yamlencode(true)", "true\n...\n"),
        ('yamlencode({"foo":[1, 2, 3], "bar": "baz"})', '"bar": "baz"\n"foo":\n- 1\n- 2\n- 3\n'),
        ('yamlencode({"foo":[1, {"a":"b","c":"d"}, 3], "bar": "baz"})',
         '"bar": "baz"\n"foo":\n- 1\n- "a": "b"\n  "c": "d"\n- 3\n'),
        # go-cty-yaml: a string with a newline is a literal block; empty collections flow
        ('yamlencode({a = "x\\ny", b = [], c = {}})', '"a": |-\n  x\n  y\n"b": []\n"c": {}\n'),
    ],
    "yamldecode": [
        ('yamldecode("true")', True),
        ('yamldecode("key: 0ba")', {"key": "0ba"}),
        ('yamldecode("~")', None),
        ('yamldecode("hello: world")', {"hello": "world"}),
        ('yamldecode("- a\\n- 1\\n- 2.5")', ["a", 1, 2.5]),
        ('yamldecode("d: 2001-12-14")', {"d": "2001-12-14"}),  # no time type: a string
        ('yamldecode("[y, N, yes, off, \\"y\\"]")', [True, False, True, False, "y"]),  # YAML 1.1
    ],
    "base64encode": [
        ("base64encode(\"abc123!?$*&()'-=@~\")", "YWJjMTIzIT8kKiYoKSctPUB+"),
        ('base64encode("Hello World")', "SGVsbG8gV29ybGQ="),
    ],
    "base64decode": [
        ('base64decode("YWJjMTIzIT8kKiYoKSctPUB+")', "abc123!?$*&()'-=@~"),
        ('base64decode("SGVsbG8gV29ybGQ=")', "Hello World"),
    ],
    "sha256": [("sha256(\"test\")",
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")],
    "sha1": [('sha1("test")', "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3")],
    "sha512": [('sha512("test")',
                "ee26b0dd4af7e749aa1a8ee3c10ae9923f618980772e473f8819a5d4940e0db27ac185f8a0e1d5f"
                "84f88bc887fd67b143732c304cc5fa9ad8e6f57f50028a8ff")],
    "base64sha256": [('base64sha256("test")', "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=")],
    "md5": [('md5("tada")', "ce47d07243bb6eaf5e1322c81baf9bbf"),
            ('md5("hello world")', "5eb63bbbe01eeed093cb22bb8f5acdc3")],
    "urlencode": [('urlencode("foo:bar@localhost?foo=bar&bar=baz")',
                   "foo%3Abar%40localhost%3Ffoo%3Dbar%26bar%3Dbaz")],
    "toset": [
        ('toset(["a", "b", "c"])', ["a", "b", "c"]),
        ('toset(["c", "b", "b"])', ["b", "c"]),
        ('toset(["a", "b", 3])', ["3", "a", "b"]),  # one element type: strings
        ("toset([3, 1, 2, 1])", [1, 2, 3]),
    ],
    "tolist": [
        ('tolist(["a", "b", "c"])', ["a", "b", "c"]),
        ('tolist(["a", "b", 3])', ["a", "b", "3"]),
    ],
    "tomap": [
        ('tomap({"a" = 1, "b" = 2})', {"a": 1, "b": 2}),
        ('tomap({"a" = "foo", "b" = true})', {"a": "foo", "b": "true"}),
    ],
    "tostring": [('tostring("a")', "a"), ("tostring(1)", "1"), ("tostring(true)", "true"),
                 ("tostring(null)", None)],
    "tonumber": [('tonumber("42")', 42), ("tonumber(1)", 1), ('tonumber("6.02")', 6.02)],
    "tobool": [('tobool("false")', False), ("tobool(true)", True), ("tobool(null)", None)],
    "flatten": [
        ('flatten([["a", "b"], ["c", "d"]])', ["a", "b", "c", "d"]),
        ('flatten([["a", "b"], [], ["c"]])', ["a", "b", "c"]),
        ('flatten([[["a", "b"], []], ["c"]])', ["a", "b", "c"]),
    ],
    "element": [
        ('element(["hello"], 0)', "hello"),
        ('element(["a", "b", "c"], 1)', "b"),
        ('element(["a", "b", "c"], 3)', "a"),  # wraps around
        ('element(["a", "b", "c"], length(["a", "b", "c"])-1)', "c"),
        ('element(["a", "b", "c"], -1)', "c"),  # cty wraps negative indexes too
    ],
    "range": [
        ("range(3)", [0, 1, 2]),
        ("range(1, 4)", [1, 2, 3]),
        ("range(1, 8, 2)", [1, 3, 5, 7]),
        ("range(1, 4, 0.5)", [1, 1.5, 2, 2.5, 3, 3.5]),
        ("range(4, 1)", [4, 3, 2]),
        ("range(10, 5, -2)", [10, 8, 6]),
        ("range(0)", []),
        ("range(-3)", [0, -1, -2]),
    ],
    "zipmap": [
        ('zipmap(["hello", "bar"], ["world", "baz"])', {"hello": "world", "bar": "baz"}),
        ('zipmap(["a", "b"], [1, 2])', {"a": 1, "b": 2}),
    ],
    "try": [
        ('try({}.baz, "fallback")', "fallback"),
        ('try("fallback")', "fallback"),
        ('try(var.tags.owner, var.tags.team, "none")', "ml"),
        ('try(tonumber("x"), 0)', 0),
        ('try(var.later, "x")', UNKNOWN),  # undecidable until apply
    ],
    "can": [
        ("can(true)", True),
        ("can({}.baz)", False),
        ('can(regex("^[a-z]+$", "abc"))', True),
        ('can(regex("^[a-z]+$", "ABC"))', False),
        ("can(var.later)", UNKNOWN),
    ],
    "substr": [
        ('substr("hello world", 1, 4)', "ello"),
        ('substr("🤔🤷", 0, 1)', "🤔"),
        ('substr("hello world", -5, -1)', "world"),
        ('substr("hello world", 6, 10)', "world"),
        ('substr("abc", 5, 1)', ""),  # past the end: empty, as cty does
        ('substr("abc", -9, 2)', "ab"),
        ('substr("abc", 1, -5)', "bc"),
    ],
    "regex": [
        ('regex("(\\\\d+)([a-z]+)", "aaa111bbb222")', ["111", "bbb"]),
        ('regex("[a-z]+", "53453453.345345aaabbbccc23454")', "aaabbbccc"),
        ('regex("(\\\\d\\\\d\\\\d\\\\d)-(\\\\d\\\\d)-(\\\\d\\\\d)", "2019-02-01")',
         ["2019", "02", "01"]),
        ('regex("^(?:(?P<scheme>[^:/?#]+):)?(?://(?P<authority>[^/?#]*))?", '
         '"https://terraform.io/docs/")', {"scheme": "https", "authority": "terraform.io"}),
    ],
    "regexall": [
        ('regexall("(\\\\d+)([a-z]+)", "...111aaa222bbb...")', [["111", "aaa"], ["222", "bbb"]]),
        ('regexall("[a-z]+", "1234abcd5678efgh9")', ["abcd", "efgh"]),
        ('length(regexall("[a-z]+", "1234abcd5678efgh9"))', 2),
        ('length(regexall("[a-z]+", "123456789")) > 0', False),
    ],
    "sort": [
        ('sort(["e", "d", "a", "x"])', ["a", "d", "e", "x"]),
        ('sort(["banana", "apple"])', ["apple", "banana"]),
        ("sort([10, 9, 1])", ["1", "10", "9"]),  # strings, lexically
    ],
    "distinct": [('distinct(["a", "b", "a", "c", "d", "b"])', ["a", "b", "c", "d"]),
                 ("distinct([1, true, 1, \"1\"])", [1, True, "1"])],
    "keys": [('keys({a=1, c=2, d=3})', ["a", "c", "d"]),
             ('keys({"hello"=1, "goodbye"=42})', ["goodbye", "hello"])],
    "values": [('values({a=3, c=2, d=1})', [3, 2, 1]),
               ("values({\"hello\"=\"world\", \"what's\"=\"up\"})", ["world", "up"])],
    "formatlist": [
        ('formatlist("Hello, %s!", ["Valentina", "Ander", "Olivia", "Sam"])',
         ["Hello, Valentina!", "Hello, Ander!", "Hello, Olivia!", "Hello, Sam!"]),
        ('formatlist("%s, %s!", "Salutations", ["Valentina", "Ander"])',
         ["Salutations, Valentina!", "Salutations, Ander!"]),
    ],
    "templatefile": [
        ('templatefile("hello.tmpl", {name = "Jodie"})', "Hello, Jodie!"),
        ('templatefile("backends.tftpl", { port = 8080, ip_addrs = ["10.0.0.1", "10.0.0.2"] })',
         "backend 10.0.0.1:8080\nbackend 10.0.0.2:8080\n"),
        ('templatefile("config.tftpl", { config = { "x" = "y", "foo" = "bar" } })',
         "[config]\nfoo = bar\nx = y\n"),
    ],
    "trimprefix": [('trimprefix("helloworld", "hello")', "world"),
                   ('trimprefix("helloworld", "cat")', "helloworld")],
    "trimsuffix": [('trimsuffix("helloworld", "world")', "hello")],
    "trim": [('trim("?!hello?!", "!?")', "hello")],
    "startswith": [('startswith("hello world", "hello")', True),
                   ('startswith("hello world", "world")', False),
                   ('startswith("hello world", "")', True), ('startswith("", "hello")', False)],
    "endswith": [('endswith("hello world", "world")', True),
                 ('endswith("hello world", "hello")', False),
                 ('endswith("hello world", "")', True), ('endswith("", " ")', False)],
    "alltrue": [('alltrue(["true", true])', True), ("alltrue([true, false])", False),
                ("alltrue([])", True)],
    "anytrue": [("anytrue([])", False), ('anytrue(["true"])', True),
                ("anytrue([true, false])", True), ("anytrue([false])", False)],
    "coalescelist": [
        ('coalescelist(["a", "b"], ["c", "d"])', ["a", "b"]),
        ('coalescelist([], ["c", "d"])', ["c", "d"]),
        ('coalescelist([["a", "b"], ["c", "d"]]...)', ["a", "b"]),
    ],
    "one": [("one([])", None), ("one([true])", True), ('one(["hello"])', "hello"),
            ("one(toset([]))", None)],
    "sum": [("sum([2340.5,10,3])", 2353.5), ("sum([10, 13, 6, 4.5])", 33.5),
            ("sum([1, 2])", 3)],
    # the common ones
    "lower": [('lower("HELLO")', "hello")],
    "upper": [('upper("hello")', "HELLO")],
    "title": [('title("hello world")', "Hello World")],
    "length": [('length(["the", "quick", "brown", "bear"])', 4), ("length([])", 0),
               ('length({"a" = "b"})', 1), ('length("hello")', 5), ('length("👾🕹️")', 3)],
    "concat": [('concat(["a", ""], ["b", "c"])', ["a", "", "b", "c"])],
    "merge": [('merge({"a"="b"}, {"c"="d"})', {"a": "b", "c": "d"}),
              ('merge({a="b", c="d"}, {e="f", c="z"})', {"a": "b", "c": "z", "e": "f"})],
    "lookup": [('lookup({hello=1, goodbye=42}, "goodbye")', 42),
               ('lookup({a="ay", b="bee"}, "c", "what?")', "what?")],
    "contains": [('contains(["a", "b"], "a")', True), ('contains(["a", "b", "c"], "d")', False),
                 ('contains(toset(["a", "b"]), "a")', True)],
    "index": [('index(["a", "b", "c"], "b")', 1)],
    "replace": [('replace("hello", "hel", "bel")', "bello"),
                ('replace("1 + 2 + 3", "+", "-")', "1 - 2 - 3"),
                ('replace("hello world", "/w.*d/", "everybody")', "hello everybody"),
                ('replace("hello", "/(h)(e)/", "$2$1")', "ehllo")],
    "split": [('split(" ", "Hello World")', ["Hello", "World"]), ('split(",", "foo")', ["foo"]),
              ('split(",", "")', [""])],
    "join": [('join(", ", ["foo", "bar", "baz"])', "foo, bar, baz"),
             ('join(", ", ["foo"])', "foo")],
    "coalesce": [('coalesce("a", "b")', "a"), ('coalesce("", "b")', "b"), ("coalesce(1, 2)", 1),
                 ('coalesce(null, "x")', "x")],
    "min": [("min(12, 54, 3)", 3), ("min([12, 54, 3]...)", 3), ("min(60, [12, 54]...)", 12),
            ("min([12, 54, 3] ...)", 3)],
    "max": [("max(12, 54, 3)", 54), ("max([12, 54, 3]...)", 54)],
    "abs": [("abs(23)", 23), ("abs(0)", 0), ("abs(-12.4)", 12.4)],
    "ceil": [("ceil(5)", 5), ("ceil(5.1)", 6)],
    "floor": [("floor(5)", 5), ("floor(4.9)", 4), ("floor(-1.8)", -2)],
    "signum": [("signum(-13)", -1), ("signum(0)", 0), ("signum(344)", 1)],
    "pow": [("pow(3, 2)", 9), ("pow(4, 0)", 1)],
    "parseint": [('parseint("100", 10)', 100), ('parseint("FF", 16)', 255),
                 ('parseint("-10", 16)', -16), ('parseint("1011111011101111", 2)', 48879)],
    "trimspace": [('trimspace("  hello\\n\\n")', "hello")],
    "chomp": [('chomp("hello\\n")', "hello"), ('chomp("hello\\r\\n")', "hello"),
              ('chomp("hello\\n\\n")', "hello")],
    "indent": [('"items: ${indent(2, "[\\n  foo,\\n  bar,\\n]\\n")}"',
                "items: [\n    foo,\n    bar,\n  ]\n  ")],
    "strrev": [('strrev("hello")', "olleh")],
    "strcontains": [('strcontains("hello world", "wor")', True),
                    ('strcontains("hello world", "wod")', False)],
    "slice": [('slice(["a", "b", "c", "d"], 1, 3)', ["b", "c"])],
    "reverse": [("reverse([1, 2, 3])", [3, 2, 1])],
    "compact": [('compact(["a", "", "b", null, "c"])', ["a", "b", "c"])],
    "chunklist": [('chunklist(["a", "b", "c", "d", "e"], 2)', [["a", "b"], ["c", "d"], ["e"]])],
    "setunion": [('setunion(["a", "b"], ["b", "c"], ["d"])', ["a", "b", "c", "d"])],
    "setintersection": [('setintersection(["a", "b"], ["b", "c"], ["b", "d"])', ["b"])],
    "setsubtract": [('setsubtract(["a", "b", "c"], ["a", "c"])', ["b"])],
    "cidrhost": [('cidrhost("192.168.1.0/24", 5)', "192.168.1.5"),
                 ('cidrhost("10.12.112.0/20", 16)', "10.12.112.16"),
                 ('cidrhost("10.12.112.0/20", 268)', "10.12.113.12"),
                 ('cidrhost("10.12.112.0/20", -1)', "10.12.127.255"),
                 ('cidrhost("fd00:fd12:3456:7890:00a2::/72", 34)', "fd00:fd12:3456:7890::22")],
    "cidrnetmask": [('cidrnetmask("172.16.0.0/12")', "255.240.0.0"),
                    ('cidrnetmask("192.168.1.0/24")', "255.255.255.0")],
    "cidrsubnet": [('cidrsubnet("172.16.0.0/12", 4, 2)', "172.18.0.0/16"),
                   ('cidrsubnet("10.1.2.0/24", 4, 15)', "10.1.2.240/28"),
                   ('cidrsubnet("fd00:fd12:3456:7890::/56", 16, 162)',
                    "fd00:fd12:3456:7800:a200::/72"),
                   ('cidrsubnet("192.168.2.0/20", 4, 6)', "192.168.6.0/24")],
    "cidrsubnets": [
        ('cidrsubnets("10.1.0.0/16", 4, 4, 8, 4)',
         ["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"]),
        ('cidrsubnets("10.0.0.0/8", 8, 8, 16, 8)',
         ["10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/24", "10.3.0.0/16"]),
        ('cidrsubnets("fd00:fd12:3456:7890::/56", 16, 16, 16, 32)',
         ["fd00:fd12:3456:7800::/72", "fd00:fd12:3456:7800:100::/72",
          "fd00:fd12:3456:7800:200::/72", "fd00:fd12:3456:7800:300::/88"]),
    ],
    "setproduct": [('setproduct(["development", "staging", "production"], ["app1", "app2"])',
                    [["development", "app1"], ["development", "app2"], ["staging", "app1"],
                     ["staging", "app2"], ["production", "app1"], ["production", "app2"]])],
    "transpose": [('transpose({"a" = ["1", "2"], "b" = ["2", "3"]})',
                   {"1": ["a"], "2": ["a", "b"], "3": ["b"]})],
    "matchkeys": [('matchkeys(["a", "b", "c"], ["ref1", "ref2", "ref3"], ["ref1"])', ["a"]),
                  ('matchkeys(["a", "b", "c"], [1, 2, 3], [1, "3"])', ["a", "c"])],
    "log": [("log(1, 10)", 0.0), ("log(16, 2)", 4.0)],
    "uuidv5": [('uuidv5("dns", "tada")', "faa898db-9b9d-5b75-86a9-149e7bb8e3b8"),
               ('uuidv5("url", "tada")', "2c1ff6b4-211f-577e-94de-d978b0caa16e"),
               ('uuidv5("oid", "tada")', "61eeea26-5176-5288-87fc-232d6ed30d2f"),
               ('uuidv5("x500", "tada")', "7e12415e-f7c9-57c3-9e43-52dc9950d264"),
               ('uuidv5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "tada")',
                "faa898db-9b9d-5b75-86a9-149e7bb8e3b8")],
    "base64sha512": [('base64sha512("test")', "7iaw3Ur350mqGo7jwQrpkj9hiYB3Lkc/iBml1JQODbJ6wYX4"
                      "oOHV+E+IvIh/1nsUNzLDBMxfqa2Ob1f1ACio/w==")],
    "filebase64": [('filebase64("hello.txt")', "aGVsbG8h")],
    "filemd5": [('filemd5("hello.txt")', "5a8dd3ad0756a93ded72b823b19dd877")],
    "filesha1": [('filesha1("hello.txt")', "8f7d88e901a5ad3a05d8cc0de93313fd76028f8c")],
    "filesha256": [('filesha256("hello.txt")',
                    "ce06092fb948d9ffac7d1a376e404b26b7575bcc11ee05a4615fef4fec3a308b")],
    "filesha512": [('filesha512("hello.txt")',
                    "c6f81db0e9f8206c971c9e5826e3ba823ffbb1a3a900f8047652a8bf78ea98fdfc745855a"
                    "3853a635675458eb6d1aaf1209e88ead2d192382b5c4cbdd6850e02")],
    "file": [('file("hello.txt")', "hello!")],
    "fileexists": [('fileexists("hello.txt")', True), ('fileexists("nope.txt")', False)],
    "fileset": [('fileset(".", "hello.*")', ["hello.tmpl", "hello.txt"]),
                ('fileset(".", "*/hello.*")', ["subdirectory/hello.tmpl",
                                               "subdirectory/hello.txt"]),
                ('fileset("subdirectory", "hello.*")', ["hello.tmpl", "hello.txt"])],
    "templatestring": [('templatestring(file("hello.tmpl"), { name = "Arthur" })',
                        "Hello, Arthur!")],
    "basename": [('basename("foo/bar/baz.txt")', "baz.txt"),
                 ('basename("testdata/hello.txt")', "hello.txt")],
    "dirname": [('dirname("foo/bar/baz.txt")', "foo/bar"),
                ('dirname("testdata/hello.txt")', "testdata")],
    "abspath": [('abspath("/etc/../etc/hosts")', "/etc/hosts")],
    "pathexpand": [('pathexpand("/etc/resolv.conf")', "/etc/resolv.conf")],
    "env": [('env("RHPLAN_TEST_FUNCTIONS_UNSET", "fallback")', "fallback")],  # rhplan's own
    "format": [
        ('format("Hello, %s!", "Ander")', "Hello, Ander!"),
        ('format("There are %d lights", 4)', "There are 4 lights"),
        ('format("%#v", "hello")', '"hello"'),
        ('format("%#v", true)', "true"),
        ('format("%#v", 1)', "1"),
        ('format("%#v", {a = 1})', '{"a":1}'),
        ('format("%#v", null)', "null"),
        ('format("%v", true)', "true"),
        ('format("%t", true)', "true"),
        ('format("%.2f", 3.14159)', "3.14"),
        ('format("%5d|%-5s|", 42, "ab")', "   42|ab   |"),
        ('format("%x", 255)', "ff"),
        ('format("%q", "hi")', '"hi"'),
        ('format("%%d is %d", 1)', "%d is 1"),
        ('format("%[2]s %[1]s", "a", "b")', "b a"),
        # cty's %v writes numbers as Go's shortest %g: exponent form from 1e+06
        ('format("%v", 123456)', "123456"),
        ('format("%v", 1000000)', "1e+06"),
        ('format("%v", 2.5)', "2.5"),
        ('format("%v", "x")', "x"),
        ('format("%v", [1, "a"])', '[1,"a"]'),
        ('format("%.3s|%.0s", "abcdef", "xy")', "abc|xy"),
    ],
}

TEMPLATES = {
    "hello.tmpl": "Hello, ${name}!",
    "backends.tftpl": "%{ for addr in ip_addrs ~}\nbackend ${addr}:${port}\n%{ endfor ~}\n",
    "config.tftpl": "[config]\n%{ for config_key, config_value in config ~}\n"
                    "${config_key} = ${config_value}\n%{ endfor ~}\n",
    "uses_var.tmpl": "region ${var.region}\n",
    "unknown_name.tmpl": "line one\nHello, ${nme}!\n",
    "open_for.tmpl": "a\n%{ for x in xs }\n${x}\n",
    "hello.txt": "hello!",
    "subdirectory/hello.txt": "hello!",
    "subdirectory/hello.tmpl": "Hello, ${name}!",
}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("templates")
    for name, text in TEMPLATES.items():
        (d / name).parent.mkdir(exist_ok=True)
        (d / name).write_text(text)
    return d


# functions whose result is a set: a list in Terraform's order that remembers it is a set
# (for_each takes a set of strings and refuses a list)
SET_RESULTS = {"toset", "setunion", "setintersection", "setsubtract", "fileset"}


@pytest.mark.parametrize(("name", "src", "want"), [
    pytest.param(name, src, want, id=f"{name}-{i}")
    for name, cases in CASES.items() for i, (src, want) in enumerate(cases)])
def test_function_matches_terraform(name: str, src: str, want: Any, templates: Path) -> None:
    from rhplan.config.values import SetValue
    got = evaluate(src, templates)
    want_type = SetValue if name in SET_RESULTS else type(want)
    assert got == want and type(got) is want_type, f"{src} gave {got!r}, want {want!r}"


def test_every_function_has_cases() -> None:
    from rhplan.config import functions
    assert not [f for f in functions.names() if f not in CASES]


def test_every_required_function_has_cases() -> None:
    """Issue 14 item 7's list, each with table cases here."""
    required = ("jsonencode jsondecode yamlencode yamldecode base64encode base64decode sha256 "
                "md5 toset tolist tomap flatten element range zipmap try can substr regex "
                "regexall sort distinct keys values formatlist templatefile trimprefix "
                "trimsuffix startswith endswith alltrue anytrue coalescelist one sum").split()
    assert not [f for f in required if f not in CASES]


# (expression, words the one-line error must hold); every error names main.hcl:3
ERRORS = [
    ('jsondecode("{nope")', ["jsondecode()", "not valid JSON"]),
    ('yamldecode("a: [")', ["yamldecode()", "not valid YAML"]),
    ('base64decode("not base64!")', ["base64decode()", "failed to decode base64",
                                     "a string of 11 character(s)"]),
    ('base64decode("/w==")', ["not valid UTF-8"]),
    ('sha256(["a"])', ["sha256()", "must be a string, not a list"]),
    ('md5({})', ["md5()", "must be a string"]),
    ('toset(["a", ["b"]])', ["toset()", "same type"]),
    ('tolist("a")', ["tolist()", "must be a list"]),
    ('tomap(["a"])', ["tomap()", "map"]),
    ('tomap({a = "x", b = ["y"]})', ["tomap()", "same type"]),
    ('flatten("a")', ["flatten()", "must be a list"]),
    ("element([], 0)", ["cannot use element function with an empty list"]),
    ("range(1, 5, -1)", ["end must be less than start when step is negative"]),
    ("range(5, 1, 1)", ["end must be greater than start when step is positive"]),
    ("range(1, 2, 0)", ["step must not be zero"]),
    ("range(2000)", ["more than 1024 values"]),
    ("range(1, 2, 3, 4)", ["range()", "range(start, limit, step)"]),
    ('zipmap(["a", "b"], [1])', ["number of keys (2) does not match number of values (1)"]),
    ("try({}.a, {}.b)", ["try(): no argument succeeded", "no key 'b'"]),
    ("try(var.nope, 1)", ["unknown variable var.nope"]),  # a mistake try does not hide
    ("try(nosuch(1), 1)", ["unknown function nosuch()"]),
    ("can(1, 2)", ["can() takes one argument"]),
    ('substr("abc", 1.5, 1)', ["substr()", "the offset must be a whole number"]),
    ('regex("[a-z]+", "123")', ["regex()", "pattern did not match"]),
    ('regex("(", "x")', ["regex()", "invalid regular expression"]),
    ('regexall("[", "x")', ["regexall()", "invalid regular expression"]),
    ('sort(["a", null])', ["sort()", "null"]),
    ('sort(["a", ["b"]])', ["sort()", "must be a string, not a list"]),
    ('distinct("a")', ["distinct()", "must be a list"]),
    ('keys(["a"])', ["keys()", "map"]),
    ('values("a")', ["values()", "map"]),
    ('formatlist("%s %s", ["a", "b"], ["c"])', ["formatlist()", "inconsistent"]),
    ('templatefile("missing.tmpl", {})', ["templatefile()", "no such file"]),
    ('templatefile("unknown_name.tmpl", {name = "x"})',
     ["unknown_name.tmpl:2", "nme", "not among the variables passed", "name"]),
    ('templatefile("uses_var.tmpl", {})', ["uses_var.tmpl:1", "only the variables passed"]),
    ('templatefile("open_for.tmpl", {xs = []})', ["open_for.tmpl:2", "never closed",
                                                 "endfor"]),
    ('templatefile("hello.tmpl", {"bad name" = 1})', ["invalid template variable name"]),
    ('trimprefix(["a"], "a")', ["trimprefix()", "must be a string"]),
    ('trimsuffix("a", {})', ["trimsuffix()", "must be a string"]),
    ('startswith("a", ["b"])', ["startswith()", "must be a string"]),
    ('endswith(1, [])', ["endswith()", "must be a string"]),
    ('alltrue(["yes"])', ["alltrue()", "must be a bool"]),
    ("anytrue([1])", ["anytrue()", "must be a bool"]),
    ('coalescelist([], [])', ["coalescelist()", "no non-null, non-empty list"]),
    ('coalescelist("a")', ["coalescelist()", "must be a list"]),
    ('one(["a", "b"])', ["one()", "either zero or one elements"]),
    ("sum([])", ["sum()", "cannot sum an empty list"]),
    ('max("a"...)', ["max(...): the argument before ... must be a list"]),
    ('sum(["x"])', ["sum()", "must be a number"]),
    ("jsonencode()", ["jsonencode() does not take 0 argument(s)", "jsonencode(v)"]),
    ('yamlencode(1, 2)', ["yamlencode() does not take 2 argument(s)"]),
    ('format("%d", "x")', ["format()", "must be a number"]),
    ('format("%s %s", "a")', ["format()", "not enough arguments"]),
    ('format("%s", "a", "b")', ["format()", "too many arguments"]),
    ('format("%z", 1)', ["format()", "unrecognized format verb %z"]),
    ('format("%x", "ab")', ["format()", "must be a number"]),
    ('lookup({a = 1}, "b")', ["lookup()", "failed to find key 'b'"]),
    ("coalesce()", ["coalesce()", "no non-null, non-empty-string arguments"]),
    ("min()", ["min()", "at least one number"]),
    ('parseint("zz", 10)', ["parseint()", "cannot parse"]),
    ('tonumber("x")', ["tonumber()", "cannot convert"]),
    ('tobool("yes")', ["tobool()", "cannot convert"]),
    ('slice(["a"], 0, 5)', ["slice()", "start (0) and end (5)"]),
    ("sha256s(1)", ["unknown function sha256s()", "did you mean sha256()"]),
    ('cidrhost("10.0.0.0/30", 4)', ["prefix of 30 does not accommodate a host numbered 4"]),
    ('cidrsubnet("10.0.0.0/30", 4, 0)', ["insufficient address space to extend prefix of 30"]),
    ('cidrsubnet("10.0.0.0/16", 2, 4)', ["does not accommodate a subnet numbered 4"]),
    ('cidrsubnets("10.0.0.0/30", 1, 1, 1)', ["not enough remaining address space",
                                             "after 10.0.0.2/31"]),
    ('cidrnetmask("nope")', ["invalid CIDR expression"]),
    ('uuidv5("nope", "x")', ["uuidv5 namespace must be"]),
    ("setproduct([1])", ["at least two arguments"]),
    ("matchkeys([1], [1, 2], [])", ["length of keys and values should be equal"]),
    ('filesha256("nope.txt")', ["filesha256()", "no such file"]),
    # a few characters must not ask for gigabytes
    ('format("%999999999d", 1)', ["format()", "at most 10000"]),
    ('indent(999999999, "a\\nb")', ["indent()", "at most 10000"]),
    ("setproduct(range(1000), range(1000), range(1000))", ["setproduct()", "more than 1000000"]),
    ('yamldecode("a: &a [1,1,1,1,1,1,1,1,1,1]\\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\\n'
     'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\\n'
     'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\\n'
     'g: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]")', ["yamldecode()", "more than 1000000 values"]),
    ('fileset(".", "/abs")', ["fileset()", "invalid pattern"]),
    ('templatestring("$${x}", {})', ["templatestring()", "x", "not among the variables"]),
    ('"%{ if var.on }yes"', ["%{ if } is never closed"]),
    ('"%{ endif }"', ["%{ endif } without an open %{ if }"]),
    ('"%{ while x }"', ["unknown template directive"]),
    ('"%{ for x in 5 }${x}%{ endfor }"', ["%{ for } needs a list or a map, not a number"]),
]


def test_directive_error_in_a_heredoc_names_its_own_line() -> None:
    src = "<<EOT\nline 4\n${var.names[0]}\n%{ if var.on }\nnever closed\nEOT\n"
    with pytest.raises(ConfigError) as info:
        evaluate(src)
    assert str(info.value).startswith("main.hcl:6: %{ if } is never closed"), info.value


@pytest.mark.parametrize(("src", "words"), [pytest.param(s, w, id=s[:40]) for s, w in ERRORS])
def test_bad_call_is_one_line_naming_file_and_line(src: str, words: list[str],
                                                    templates: Path) -> None:
    with pytest.raises(ConfigError) as info:
        evaluate(src, templates)
    line = str(info.value)
    assert line.startswith("main.hcl:3: "), line
    assert "\n" not in line, line
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"
    for internal in ("Traceback", "<lambda>", "object at 0x", "NoneType"):
        assert internal not in line


# ---- %{ } directives in strings and heredocs -----------------------------------------

DIRECTIVES = [
    ('"a %{ for s in var.names }${s},%{ endfor } b"', "a a,b, b"),
    ('"%{ for i, s in var.names }${i}=${s} %{ endfor }"', "0=a 1=b "),
    ('"%{ for k, v in var.tags }${k}:${v};%{ endfor }"', "env:prod;team:ml;"),
    ('"%{ if var.on }yes%{ else }no%{ endif }"', "yes"),
    ('"%{ if var.off }yes%{ else }no%{ endif }"', "no"),
    ('"%{ if var.off }yes%{ endif }"', ""),
    # python-hcl2's grammar ends a quoted string at any '"', so quotes inside a
    # directive need a heredoc
    ('<<EOT\nHello, %{ if var.tags.team != "" }${var.tags.team}%{ else }unnamed%{ endif }!\n'
     'EOT\n', "Hello, ml!\n"),
    ('"%%{ literal } and $${ literal }"', "%{ literal } and ${ literal }"),
    ('"x %{ for s in var.empty }${s}%{ endfor }y"', "x y"),
    ('<<EOT\n%{ for s in var.names }%{ if s == "b" }[${s}]%{ endif }%{ endfor }\nEOT\n',
     "[b]\n"),
    ("<<EOT\n%{ for s in var.names ~}\n- ${s}\n%{ endfor ~}\nEOT\n", "- a\n- b\n"),
    ("<<-EOT\n  %{~ for s in var.names ~}\n  ${s}\n  %{~ endfor ~}\n  EOT\n", "ab"),
    ('"%{ for s in var.later }${s}%{ endfor }"', UNKNOWN),
]


@pytest.mark.parametrize(("src", "want"), [pytest.param(s, w, id=s[:40]) for s, w in DIRECTIVES])
def test_template_directives(src: str, want: Any) -> None:
    assert evaluate(src) == want


def test_for_expression_walks_a_map_in_key_order() -> None:
    """Terraform iterates a map or object by key, whatever order it was written in."""
    assert evaluate('[for k, v in { b = 2, a = 1, c = 3 } : "${k}=${v}"]') == ["a=1", "b=2",
                                                                             "c=3"]
    assert evaluate('"%{ for k, v in { z = 1, y = 2 } }${k}%{ endfor }"') == "yz"


def test_whole_numbers_print_without_a_fraction() -> None:
    """Terraform has one number type: 1.5 * 2 interpolates as 3 (Python would say 3.0)."""
    assert evaluate('"${1.5 * 2}-${0.5}"') == "3-0.5"
    assert evaluate("tostring(1.5 * 2)") == "3"
    assert evaluate('{ (1.5 * 2) = "k" }') == {"3": "k"}


def test_for_expression_groups_with_an_ellipsis_and_refuses_duplicate_keys() -> None:
    """As Terraform: `k => v...` groups values by key; a duplicate key without it is an
    error (it silently kept the last value)."""
    assert evaluate('{ for s in ["a1", "b1", "a2"] : substr(s, 0, 1) => s... }') == {
        "a": ["a1", "a2"], "b": ["b1"]}
    with pytest.raises(ConfigError) as info:
        evaluate('{ for s in ["a1", "b1", "a2"] : substr(s, 0, 1) => s }')
    assert str(info.value).startswith("main.hcl:3: two elements produce the key 'a'"), info.value
    assert "write ... after the value" in str(info.value)


def test_fileset_refuses_to_walk_too_many_files(templates: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """fileset("/", "**/*") would walk the whole disk: past a bound it is an error (the
    bound is lowered here so the test's folder is enough)."""
    from rhplan.config.functions import files
    monkeypatch.setattr(files, "MAX_FILESET", 3)
    with pytest.raises(ConfigError) as info:
        evaluate('fileset(".", "**/*")', templates)
    assert str(info.value).startswith("main.hcl:3: fileset(): the pattern matches more than 3")
