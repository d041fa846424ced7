"""Variables as Terraform declares them: object/tuple/map/list/set type constraints with
conversion, `validation` blocks, `nullable = false`; each bad input is one line with
file:line. Table-driven, through the real loader (HCL text → Config) and
resolve_variables (defaults, -var, -var-file); nothing here starts a process."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rhplan.config.inputs import resolve_variables
from rhplan.config.load import load_text
from rhplan.errors import ConfigError


def resolve(tmp_path: Path, hcl: str, cli: list[str] = (), var_file: dict | None = None
            ) -> dict[str, Any]:
    files: list[str] = []
    if var_file is not None:
        (tmp_path / "v.json").write_text(json.dumps(var_file))
        files = ["v.json"]
    cfg = load_text(tmp_path, {"main.hcl": hcl})
    return resolve_variables(cfg, list(cli), files)


OBJ = """\
variable "pool" {
  type = object({
    name      = string
    size      = optional(number, 2)
    gpu       = optional(bool)
    tags      = optional(map(string), {})
    ports     = list(number)
  })
  default = { name = "gpu", ports = ["22", 8080] }
}
"""

# (declaration, -var arguments, var-file, variable name, converted value)
CONVERSIONS = [
    pytest.param(OBJ, [], None, "pool",
                 {"name": "gpu", "size": 2, "gpu": None, "tags": {}, "ports": [22, 8080]},
                 id="object-optional-defaults"),
    pytest.param(OBJ, ['pool={ name = "x", size = "4", ports = [], extra = 1 }'], None, "pool",
                 {"name": "x", "size": 4, "gpu": None, "tags": {}, "ports": []},
                 id="object-from-var-drops-extra"),
    pytest.param(OBJ, [], {"pool": {"name": "j", "gpu": "true", "ports": [1],
                                    "tags": {"a": 1}}}, "pool",
                 {"name": "j", "size": 2, "gpu": True, "tags": {"a": "1"}, "ports": [1]},
                 id="object-from-json-var-file"),
    pytest.param('variable "t" {\n  type = tuple([string, number, bool])\n'
                 '  default = [1, "2", "true"]\n}\n', [], None, "t", ["1", 2, True],
                 id="tuple"),
    pytest.param('variable "s" {\n  type = set(string)\n  default = ["b", "a", "b"]\n}\n',
                 [], None, "s", ["a", "b"], id="set-dedupes-and-sorts"),
    pytest.param('variable "m" {\n  type = map(number)\n  default = { a = "1", b = 2.5 }\n}\n',
                 [], None, "m", {"a": 1, "b": 2.5}, id="map-of-number"),
    pytest.param('variable "l" {\n  type = list(object({ n = string }))\n'
                 '  default = [{ n = 1 }, { n = "x", y = 2 }]\n}\n', [], None, "l",
                 [{"n": "1"}, {"n": "x"}], id="list-of-objects"),
    pytest.param('variable "l" {\n  type = list(string)\n}\n', ['l=["a", 1]'], None, "l",
                 ["a", "1"], id="list-from-var"),
    pytest.param('variable "n" {\n  type     = string\n  default  = "d"\n  nullable = false\n}\n',
                 [], {"n": None}, "n", "d", id="nullable-false-null-takes-default"),
    pytest.param('variable "n" {\n  type    = string\n  default = "d"\n}\n',
                 [], {"n": None}, "n", None, id="nullable-by-default"),
    pytest.param('variable "a" {\n  type = any\n  default = { x = [1] }\n}\n', [], None, "a",
                 {"x": [1]}, id="any"),
    pytest.param('variable "o" {\n  type    = object({})\n  default = { a = 1 }\n}\n', [], None,
                 "o", {}, id="empty-object"),
]


@pytest.mark.parametrize(("hcl", "cli", "var_file", "name", "want"), CONVERSIONS)
def test_type_constraints_convert(tmp_path: Path, hcl: str, cli: list[str], var_file: Any,
                                  name: str, want: Any) -> None:
    assert resolve(tmp_path, hcl, cli, var_file)[name] == want


VALIDATED = """\
variable "region" {
  type    = string
  default = "us-east-1"
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+-[0-9]$", var.region))
    error_message = "The region must look like us-east-1."
  }
}
variable "size" {
  type    = number
  default = 2
  validation {
    condition     = var.size >= 1 && var.size <= var.max_size
    error_message = "size must be between 1 and ${var.max_size}, not ${var.size}."
  }
}
variable "max_size" {
  default = 8
}
"""


def test_validation_passes(tmp_path: Path) -> None:
    got = resolve(tmp_path, VALIDATED, ["region=eu-west-3", "size=8"])
    assert got["region"] == "eu-west-3" and got["size"] == 8


# (declaration, -var arguments, var-file, where, words): one line, file:line first
ERRORS = [
    pytest.param(VALIDATED, ["region=Frankfurt"], None, "main.hcl:5",
                 ["invalid value for variable 'region'", "The region must look like us-east-1."],
                 id="validation-fails"),
    pytest.param(VALIDATED, ["size=9"], None, "main.hcl:13",
                 ["invalid value for variable 'size'", "between 1 and 8, not 9."],
                 id="validation-message-interpolates"),
    pytest.param('variable "v" {\n  default = "x"\n  validation {\n    condition = var.v\n'
                 '    error_message = "Bad."\n  }\n}\n', [], None, "main.hcl:4",
                 ["validation condition", "must be true or false", "string 'x'"],
                 id="validation-condition-not-bool"),
    pytest.param('variable "v" {\n  default = "x"\n  validation {\n'
                 '    condition = length(var.v) > 0\n  }\n}\n', [], None, "main.hcl:3",
                 ["validation needs error_message"], id="validation-without-message"),
    pytest.param('variable "v" {\n  default = "x"\n  validation {\n    condition = true\n'
                 '    error_message = "Bad."\n  }\n}\n', [], None, "main.hcl:4",
                 ["must refer to var.v"], id="validation-not-about-the-variable"),
    pytest.param('variable "v" {\n  default = "x"\n  validation {\n'
                 '    condition = var.v != local.x\n    error_message = "Bad."\n  }\n}\n',
                 [], None, "main.hcl:4", ["refer only to variables", "local.x"],
                 id="validation-refers-to-local"),
    pytest.param('variable "v" {\n  default = "x"\n  validation {\n'
                 '    condition = var.v != ""\n    error_message = ""\n  }\n}\n',
                 [], None, "main.hcl:5", ["error_message must be a non-empty string"],
                 id="validation-empty-message"),
    pytest.param('variable "v" {\n  default = "x"\n  validation {\n'
                 '    condition = var.v.nope\n    error_message = "Bad."\n  }\n}\n',
                 [], None, "main.hcl:4", ["cannot index string"],
                 id="validation-condition-errors"),
    pytest.param('variable "key" {\n  default = "hunter2"\n  sensitive = true\n  validation {\n'
                 '    condition     = length(var.key) > 10\n'
                 '    error_message = "Too short: ${var.key}."\n  }\n}\n', [], None,
                 "main.hcl:5", ["invalid value for variable 'key'", "sensitive var.key",
                                "not shown"], id="validation-message-hides-sensitive"),
    pytest.param('variable "key" {\n  type = object({ n = number })\n  sensitive = true\n}\n',
                 ['key={ n = "hunter2" }'], None, "main.hcl:1",
                 ["attribute 'n': a number is required, found a string"],
                 id="type-error-hides-sensitive-value"),
    pytest.param('variable "v" {\n  default = 1\n  check {\n  }\n}\n', [], None, "main.hcl:3",
                 ["only validation { } blocks"], id="unknown-nested-block"),
    pytest.param(OBJ, ['pool={ name = "x" }'], None, "main.hcl:1",
                 ["variable 'pool' (the value given by -var pool)",
                  "attribute 'ports' is required", "its type is object({"],
                 id="object-missing-attribute"),
    pytest.param(OBJ, [], {"pool": {"name": "x", "ports": ["http"]}}, "main.hcl:1",
                 ["(the value given by -var-file v.json)",
                  "attribute 'ports': element 0: a number is required, found string 'http'"],
                 id="object-nested-wrong-type"),
    pytest.param('variable "t" {\n  type = tuple([string, number])\n  default = ["a"]\n}\n',
                 [], None, "main.hcl:3", ["a tuple of 2 element(s) is required, found 1"],
                 id="tuple-wrong-length"),
    pytest.param('variable "m" {\n  type = map(string)\n  default = ["a"]\n}\n',
                 [], None, "main.hcl:3", ["a map is required, found list"], id="map-given-list"),
    pytest.param('variable "s" {\n  type = set(string)\n  default = ["a", null]\n}\n',
                 [], None, "main.hcl:3", ["a set cannot hold null"], id="set-with-null"),
    pytest.param('variable "t" {\n  type = strin\n}\n', [], None, "main.hcl:2",
                 ["unknown type 'strin'"], id="unknown-type"),
    pytest.param('variable "t" {\n  type = object({ a = optional(number, "x") })\n}\n',
                 [], None, "main.hcl:2", ["default of optional attribute 'a'",
                                          "a number is required"], id="bad-optional-default"),
    pytest.param('variable "t" {\n  type = optional(string)\n}\n', [], None, "main.hcl:2",
                 ["optional(...) marks an attribute of an object type"], id="optional-outside"),
    pytest.param('variable "t" {\n  type = tuple(string)\n}\n', [], None, "main.hcl:2",
                 ["tuple takes a list of element types"], id="tuple-without-list"),
    pytest.param('variable "n" {\n  default  = "d"\n  nullable = false\n}\n', [],
                 {"n": None}, None, [], id="nullable-false-null-uses-default-ok"),
    pytest.param('variable "n" {\n  type     = string\n  nullable = false\n}\n', [],
                 {"n": None}, "main.hcl:1", ["must not be null (nullable = false)"],
                 id="nullable-false-null-without-default"),
    pytest.param('variable "n" {\n  default  = null\n  nullable = false\n}\n', [], None,
                 "main.hcl:2", ["nullable = false", "default", "cannot be null"],
                 id="nullable-false-null-default"),
    pytest.param('variable "n" {\n  nullable = "no"\n}\n', [], None, "main.hcl:2",
                 ["nullable must be true or false"], id="nullable-not-bool"),
]


@pytest.mark.parametrize(("hcl", "cli", "var_file", "where", "words"), ERRORS)
def test_bad_variable_is_one_line(tmp_path: Path, hcl: str, cli: list[str], var_file: Any,
                                  where: str | None, words: list[str]) -> None:
    if where is None:  # a case that must NOT fail
        resolve(tmp_path, hcl, cli, var_file)
        return
    with pytest.raises(ConfigError) as info:
        resolve(tmp_path, hcl, cli, var_file)
    line = str(info.value)
    assert line.startswith(f"{where}: "), line
    assert "\n" not in line
    for w in words:
        assert w in line, f"{w!r} not in {line!r}"
    assert "hunter2" not in line
