"""Sensitive values stay sensitive (issue 14 item 5): a value derived from a sensitive
variable, or from a variable or local a secret's values are written from, is sensitive
through expressions, functions and interpolation; an output exposing one without
`sensitive = true` is a one-line file:line error, as in Terraform; plan, apply, show
(text and -json, saved plans too) print (sensitive value). The applied configurations
hold packages only: nothing runs on a host."""
from __future__ import annotations

import json
from typing import Any

import pytest

TOKEN = "tok-5e3c7a91"  # must never be printed
FED = "fed-84d2b6"  # a secret's value, given by a plain variable

VARS = f"""
variable "tok" {{
  default   = "{TOKEN}"
  sensitive = true
}}
variable "fed" {{ default = "{FED}" }}
variable "flag" {{ default = false }}
secret "s" {{ values = {{ K = var.fed }} }}
"""


@pytest.mark.parametrize(("value", "source"), [
    ("var.tok", "var.tok"),
    ('"prefix-${var.tok}"', "var.tok"),
    ("upper(var.tok)", "var.tok"),
    ("{ a = [join(\"\", [local.t])] }", "var.tok"),
    ("length(var.tok)", "var.tok"),
    ("var.fed", "var.fed"),
    ("package.p.git_url", "package.p.git_url"),
    ("var.flag ? \"x\" : var.tok", "var.tok"),
    ("sensitive(\"plain\")", "sensitive()"),
])
def test_an_output_exposing_a_sensitive_value_is_refused(rh: Any, value: str, source: str
                                                        ) -> None:
    rh.keep = True
    rh.write(VARS + f"""
locals {{ t = var.tok }}
package "p" {{ git_url = "https://x:${{var.tok}}@example.com/p.git" }}
output "o" {{
  value = {value}
}}
""")
    assert rh("validate").error_line() == (
        f"Error: main.hcl:11: output 'o' refers to sensitive values ({source}); add "
        "sensitive = true to the output block to confirm you mean to export them (rhplan "
        "then shows it as (sensitive value))")
    rh.edit(f"  value = {value}\n", f"  value = {value}\n  sensitive = true\n")
    rh("validate").ok()


def test_what_is_not_derived_from_a_sensitive_value_is_plain(rh: Any) -> None:
    rh.keep = True
    rh.write(VARS + """
output "picked" { value = var.flag ? var.tok : "plain" }
output "unwrapped" { value = nonsensitive(length(var.tok)) }
output "keys" { value = secret.s.keys }
""")
    out = rh("plan", "-no-color").ok().stdout
    assert '+ picked = "plain"' in out
    assert "+ unwrapped = 12" in out
    assert '+ keys = ["K"]' in out


def _never_shown(results: list[Any]) -> None:
    for r in results:
        assert TOKEN not in r.output and FED not in r.output, r.describe()


def test_plan_hides_attributes_and_map_keys_derived_from_sensitive_values(rh: Any) -> None:
    rh.keep = True
    rh.write(VARS + """
cluster "c" { provider = "local" }
env "e" {
  cluster  = cluster.c
  env_vars = { TOKEN = var.tok, PLAIN = "hello", FED = "${var.fed}!" }
}
""")
    out = rh("plan", "-no-color").ok().stdout
    assert '"FED" = (sensitive value)' in out
    assert '"PLAIN" = "hello"' in out
    assert '"TOKEN" = (sensitive value)' in out
    rh("plan", "-out", "j.plan").ok()
    data = json.loads(rh("show", "-json", "j.plan").ok().stdout)
    env = next(c for c in data["resource_changes"] if c["address"] == "env.e")
    assert env["change"]["after"]["env_vars"] == {
        "FED": "(sensitive value)", "PLAIN": "hello", "TOKEN": "(sensitive value)"}
    assert env["change"]["after_sensitive"] == {"env_vars": {"FED": True, "TOKEN": True}}
    assert env["change"]["before_sensitive"] is False
    _never_shown(rh.log)


def test_apply_show_and_saved_plans_hide_sensitive_values(rh: Any) -> None:
    rh.keep = True
    rh.write(VARS + """
package "p" { git_url = "https://x:${var.tok}@example.com/p.git" }
output "url" {
  value     = package.p.git_url
  sensitive = true
}
""")
    out = rh("plan", "-no-color", "-out", "p.plan").ok().stdout
    assert "+ git_url        = (sensitive value)" in out
    assert "+ spec           = (sensitive value)" in out  # worked out from git_url
    assert "+ url = (sensitive value)" in out
    assert "+ git_url        = (sensitive value)" in rh("show", "p.plan").ok().stdout
    saved = json.loads(rh("show", "-json", "p.plan").ok().stdout)
    p = next(c for c in saved["resource_changes"] if c["address"] == "package.p")
    assert p["change"]["after"]["git_url"] == "(sensitive value)"
    assert p["change"]["after_sensitive"] == {"git_url": True, "spec": True}
    assert saved["output_changes"]["url"]["after"] == "(sensitive value)"
    assert "url = <sensitive>" in rh("apply", "p.plan").ok().stdout
    shown = rh("show").ok().stdout
    assert "git_url        = (sensitive value)" in shown and "url = <sensitive>" in shown
    state = json.loads(rh("show", "-json").ok().stdout)
    rec = next(r for r in state["values"]["root_module"]["resources"]
               if r["address"] == "package.p")
    assert rec["values"]["git_url"] == "(sensitive value)"
    assert rec["sensitive_values"] == {"git_url": True, "spec": True}
    assert state["values"]["outputs"]["url"]["value"] == "(sensitive value)"
    rh.edit(f'default   = "{TOKEN}"', f'default   = "{TOKEN}-2"')
    out = rh("plan", "-no-color").ok().stdout
    assert "~ git_url        = (sensitive value)" in out
    assert "~ url = (sensitive value) -> (sensitive value)" in out
    out = rh("destroy", "-auto-approve", "-no-color").ok().stdout
    assert "- git_url        = (sensitive value)" in out
    _never_shown(rh.log)


def test_show_and_state_show_hide_without_the_variables_values(rh: Any) -> None:
    """Reading the state needs no variable values (as in Terraform), and still tells
    which recorded values came from sensitive ones."""
    rh.keep = True
    rh.write("""
variable "tok" { sensitive = true }
package "p" { git_url = "https://x:${var.tok}@example.com/p.git" }
""")
    rh("apply", "-auto-approve", env={"TF_VAR_tok": TOKEN}).ok()
    assert TOKEN in rh.state_path.read_text()  # the state holds it, as Terraform's does
    for args in (("show",), ("state", "show", "package.p")):
        out = rh(*args).ok().stdout
        assert "git_url        = (sensitive value)" in out
        assert "spec           = (sensitive value)" in out
    _never_shown(rh.log)
