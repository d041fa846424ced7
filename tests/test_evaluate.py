"""The evaluator, in-process (rhplan/config/evaluate.py and the values of
config/values.py): operators and their conversions, references to variables, locals,
resources and repeated resources, unknown values ("known after apply") and how they
travel, sensitive marks, and the errors (one line, file:line, static or not).
Expressions go through the real parser into a real Scope; the functions themselves are
test_functions.py's. Nothing starts a process: the file runs in well under a second."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from rhplan.config.evaluate import Scope
from rhplan.config.parse import parse_text
from rhplan.config.values import (
    UNKNOWN,
    EvalError,
    InstanceMap,
    Instances,
    ResourceValue,
    index_value,
    is_known,
    parse_number,
    to_str,
)
from rhplan.errors import ConfigError

VARIABLES = {"n": 4, "name": "ray", "on": True, "later": UNKNOWN, "names": ["a", "b", "c"],
             "tags": {"team": "ml", "env": "prod"}, "token": "s3cret", "half": 1.5}
LOCALS = {"region": "eu-west-1", "twice": 8}
GPU = ResourceValue("cluster.gpu", {"name": "gpu", "ips": UNKNOWN, "head": "10.0.0.1"},
                    frozenset({"name", "ips", "head"}))
WORKERS = Instances("env.w", [ResourceValue(f"env.w[{i}]", {"name": f"w{i}"},
                                            frozenset({"name"})) for i in range(3)])
BY_KEY = InstanceMap("env.k", {k: ResourceValue(f'env.k["{k}"]', {"name": k},
                                                frozenset({"name"})) for k in ("x", "y")})
RESOURCES = {("cluster", "gpu"): GPU, ("env", "w"): WORKERS, ("env", "k"): BY_KEY}


def _local(name: str, line: int) -> Any:
    if name not in LOCALS:
        raise EvalError(f"unknown local.{name}", line)
    return LOCALS[name]


def _resolve(type_: str, name: str, line: int) -> Any:
    if (type_, name) not in RESOURCES:
        raise EvalError(f"unknown resource {type_}.{name}", line)
    return RESOURCES[type_, name]


def scope() -> Scope:
    s = Scope(dict(VARIABLES), _local, _resolve, Path("/configs/app"), workspace="staging")
    s.sensitive_vars = frozenset({"token"})
    s.sensitive_attrs = {"cluster.gpu": ["head"]}
    return s


def evaluate(src: str, s: Scope | None = None, bindings: dict[str, Any] | None = None) -> Any:
    """src on line 3 of main.hcl (so the line of an error is checkable)."""
    f = parse_text(f"# two lines\n# before\nx = {src}\n", "main.hcl")
    return (s or scope()).evaluate(f.body.attrs["x"].expr, "main.hcl", bindings)


def error(src: str) -> str:
    with pytest.raises(ConfigError) as info:
        evaluate(src)
    assert (info.value.file, info.value.line) == ("main.hcl", 3), str(info.value)
    assert "\n" not in str(info.value)
    return info.value.message


# ---- operators ------------------------------------------------------------------------
@pytest.mark.parametrize("src, value", [
    ("1 + 2 * 3", 7),
    ("(1 + 2) * 3", 9),
    ("7 / 2", 3.5),
    ("6 / 3", 2),  # a whole quotient is an int: prints as 2, not 2.0
    ("7 % 3", 1),
    ("-var.n + 1", -3),
    ('"2" * 3', 6),  # a string that spells a number is one
    ("var.half * 2", 3.0),
    ("!var.on", False),
    ('var.n >= 4 && var.name == "ray"', True),
    ('1 == "1"', False),  # no conversion for equality, as in Terraform
    ("[1, 2] == [1, 2]", True),
    ('var.on ? "yes" : "no"', "yes"),
    ("true ? 1 : 1 / 0", 1),  # the branch not taken is not evaluated
    ("false && 1 / 0 == 0", False),  # && and || stop at a deciding left side
    ("true || 1 / 0 == 0", True),
])
def test_operators(src: str, value: Any) -> None:
    got = evaluate(src)
    assert got == value and type(got) is type(value), (src, got)


@pytest.mark.parametrize("src, value", [
    ('"${var.name}-${var.n}"', "ray-4"),
    ('"n=${var.half * 2}"', "n=3"),  # Terraform's one number type: 3, not 3.0
    ('"${var.half * 2}"', 3.0),  # one interpolation alone is its value, not a string
    ('"on=${var.on}"', "on=true"),
    ('"${local.region}/${rhplan.workspace}/${terraform.workspace}"', "eu-west-1/staging/staging"),
    ("path.module", "/configs/app"),
    ('"%{ for n in var.names }${n};%{ endfor }"', "a;b;c;"),
])
def test_templates_and_names(src: str, value: Any) -> None:
    assert evaluate(src) == value


# ---- collections, for, splat, resources -----------------------------------------------
def test_for_expressions_walk_lists_in_order_and_maps_in_key_order() -> None:
    assert evaluate('[for i, n in var.names : "${i}${n}" if n != "b"]') == ["0a", "2c"]
    assert evaluate("[for k, v in var.tags : k]") == ["env", "team"]
    assert evaluate("{for n in var.names : n => upper(n)}") == {"a": "A", "b": "B", "c": "C"}
    assert evaluate('{for n in ["a", "bb", "cc"] : length(n) => n...}') == {
        "1": ["a"], "2": ["bb", "cc"]}  # ... groups the values of one key
    assert evaluate("[for n in var.names : n]", bindings={"n": "outer"}) == ["a", "b", "c"]


def test_resources_and_their_instances() -> None:
    assert evaluate("cluster.gpu.name") == "gpu"
    assert evaluate("[cluster.gpu]") == [GPU]  # a list of references keeps the resource
    assert evaluate("env.w[1].name") == "w1"
    assert evaluate("env.w[*].name") == ["w0", "w1", "w2"]
    assert evaluate('env.k["y"].name') == "y"
    assert evaluate("[for k, v in env.k : v.name]") == ["x", "y"]


def test_indexing() -> None:
    assert evaluate("var.names[1]") == "b" and evaluate("var.names[1.0]") == "b"
    assert evaluate('var.tags["team"]') == "ml"
    assert evaluate("var.tags.env") == "prod"
    assert index_value(GPU, "missing", 1) is UNKNOWN  # a resource's unset attribute


# ---- unknown values ------------------------------------------------------------------
@pytest.mark.parametrize("src", [
    "var.later", "var.later + 1", '"x-${var.later}"', "upper(var.later)", "var.names[var.later]",
    "var.later ? 1 : 2", "[for n in var.later : n]", "{(var.later) = 1}", "var.later && true",
    "true && var.later", "!var.later", "cluster.gpu.ips", "length([var.later])",
])
def test_an_unknown_value_makes_what_uses_it_unknown(src: str) -> None:
    assert evaluate(src) is UNKNOWN


def test_unknowns_inside_collections_stay_where_they_are() -> None:
    got = evaluate('{a = [1, var.later], b = "x"}')
    assert got == {"a": [1, UNKNOWN], "b": "x"}
    assert not is_known(got) and is_known({"a": [1, {"b": None}]})
    assert evaluate("var.later == null ? 1 : 2") is UNKNOWN
    # what does not need the unknown part decides without it
    assert evaluate("false && var.later") is False and evaluate("true || var.later") is True
    # one value everywhere, also once pickled (plans and the parse cache are pickled)
    assert pickle.loads(pickle.dumps([UNKNOWN]))[0] is UNKNOWN
    assert repr(UNKNOWN) == "(known after apply)"


# ---- sensitive marks -------------------------------------------------------------------
def test_reading_a_sensitive_value_marks_the_evaluation() -> None:
    s = scope()
    assert evaluate('"Bearer ${upper(var.token)}"', s) == "Bearer S3CRET"
    assert s.mark == "var.token"
    s.mark = None
    assert evaluate("nonsensitive(var.token)", s) == "s3cret" and s.mark is None
    assert evaluate('sensitive("plain")', s) == "plain" and s.mark == "sensitive()"
    s.mark = None
    assert evaluate("cluster.gpu.head", s) == "10.0.0.1" and s.mark == "cluster.gpu.head"
    s.mark = None
    assert evaluate("cluster.gpu.name", s) == "gpu" and s.mark is None


# ---- errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("src, message", [
    ("var.missing", 'unknown variable var.missing; declare it with variable "missing" {}'),
    ("local.missing", "unknown local.missing"),
    ("each.key", '"each" can be used only in a resource block that sets for_each'),
    ("count.index", '"count" (count.index) can be used only in a resource block'),
    ("server.x", "unknown reference 'server'; write var.NAME, local.NAME, or TYPE.NAME.ATTR"),
    ("terraform.env", "unknown terraform.env; terraform.workspace is the one attribute there"),
    ("path.home", "unknown path.home; use path.module"),
    ("cluster.gpu + 1", "cluster.gpu is a whole resource here; use one of its attributes "
                        "(head, ips, name)"),
    ("cluster.gpu.size", "cluster.gpu has no attribute 'size'; it has: head, ips, name"),
    ("env.w.name", 'because env.w has "count" set, its attributes must be read on one instance'),
    ("env.k[*].name", 'env.k has "for_each" set, so it is a map: write values(env.k)[*].name'),
    ("var.names[3]", "index 3 is out of range for a list of 3 element(s)"),
    ('var.names["a"]', "a list index must be a number, not 'a'"),
    ('var.tags["owner"]', "the map has no key 'owner' (keys: env, team)"),
    ("var.n[0]", "cannot index number with 0"),
    ("1 / 0", "division by zero"),
    ("1e300 * 1e300", "the result is too large a number"),
    ('"a" + 1', "cannot use 'a' as a number"),
    ("true + 1", "cannot use a bool as a number"),
    ('"x" ? 1 : 2', "cannot use 'x' as a bool"),
    ('"x${var.names}"', "cannot use a list as a string"),
    ("{for n in [1, 1] : n => n}", "two elements produce the key '1' in this for expression"),
    ("[for n in 5 : n]", "a for expression needs a list or a map"),
    ("uper(var.name)", "unknown function uper(); did you mean upper()?"),
    ("upper(var.name, 1)", "upper() does not take 2 argument(s); write upper(text)"),
    ("merge(var.n)", "merge(): argument 1 must be a map or object, not a number"),
    ("max(var.n...)", "max(...): the argument before ... must be a list"),
    ('sensitive("a", "b")', "sensitive() takes one argument; write sensitive(value)"),
])
def test_errors_say_what_is_wrong_at_file_and_line(src: str, message: str) -> None:
    assert error(src).startswith(message), (src, error(src))


def test_try_hides_evaluation_errors_but_not_mistakes_in_the_configuration() -> None:
    assert evaluate('try(var.tags.owner, "nobody")') == "nobody"
    assert evaluate("can(var.names[5])") is False and evaluate("can(var.names[0])") is True
    # static: an undeclared variable or an unknown function is a mistake try() does not hide
    assert error('try(var.owner, "nobody")').startswith("unknown variable var.owner")
    assert error("can(nosuch(1))").startswith("unknown function nosuch()")


# ---- the values' conversions -----------------------------------------------------------
def test_numbers_from_strings_and_numbers_as_strings() -> None:
    assert [parse_number(t) for t in (" 4 ", "1.5e3", "-.5", "+2")] == [4, 1500.0, -0.5, 2]
    for bad in ("0x10", "1e400", "nan", "inf", "1_000", "", "4 4", "9" * 401):
        assert parse_number(bad) is None, bad
    assert [to_str(v, 1) for v in (3.0, 2.5, True, 7, "s")] == ["3", "2.5", "true", "7", "s"]
    assert to_str(1e21, 1) == "1e+21"  # no 22-digit int for a huge float
    with pytest.raises(EvalError, match="cannot use a null as a string"):
        to_str(None, 9)
