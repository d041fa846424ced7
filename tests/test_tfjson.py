"""`rhplan show -json` in Terraform's JSON output format (issue 14 item 9): a saved
plan as Terraform's plan representation, the state as its state representation
(values.root_module). The configurations hold packages and secrets (state only) and a
local cluster that is planned, never applied: nothing runs on a host.
tests/test_checkov_policy.py has a real consumer read the same JSON."""
from __future__ import annotations

import json
import re
from typing import Any

from rhplan.state.model import RHPLAN_VERSION

TOKEN = "tok-9f1c2e"  # a sensitive variable's value: never printed

CONFIG = f"""
variable "tok" {{
  default   = "{TOKEN}"
  sensitive = true
}}
variable "team" {{ default = "ml" }}
cluster "c" {{ provider = "local" }}
package "p" {{
  for_each = toset(["a", "b"])
  git_url  = "https://git.example.com/${{each.key}}.git"
  revision = "v1"
}}
secret "s" {{ values = {{ TOKEN = var.tok }} }}
env "e" {{
  cluster  = cluster.c
  reqs     = [package.p["a"]]
  env_vars = {{ TEAM = var.team, TOKEN = var.tok }}
}}
module "pool" {{ source = "./modules/pool" }}
output "team" {{ value = var.team }}
"""

MODULE = 'package "inner" { git_url = "https://git.example.com/inner.git" }\n' \
         'output "url" { value = package.inner.git_url }\n'


def _show(rh: Any, *plan_args: str) -> dict[str, Any]:
    rh("plan", "-out", "p.plan", *plan_args).ok()
    out = rh("show", "-json", "p.plan").ok().stdout
    assert TOKEN not in out
    return json.loads(out)


def test_a_saved_plan_is_terraforms_plan_representation(rh: Any) -> None:
    rh.keep = True
    rh.write(CONFIG)
    rh.write(MODULE, "modules/pool/main.hcl")
    data = _show(rh)
    assert data["format_version"] == "1.2"
    assert data["terraform_version"] == RHPLAN_VERSION
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["timestamp"])
    assert data["errored"] is False and data["applyable"] is True
    assert data["variables"] == {"team": {"value": "ml"},
                                 "tok": {"value": "(sensitive value)"}}

    # planned_values: the root module's instances, a module's under child_modules
    root = data["planned_values"]["root_module"]
    by_addr = {r["address"]: r for r in root["resources"]}
    assert sorted(by_addr) == ["cluster.c", "env.e", 'package.p["a"]', 'package.p["b"]',
                               "secret.s"]
    p = by_addr['package.p["b"]']
    assert {k: p[k] for k in ("mode", "type", "name", "index", "schema_version")} == {
        "mode": "managed", "type": "package", "name": "p", "index": "b", "schema_version": 0}
    assert p["provider_name"] == "registry.terraform.io/rhplan/rhplan"
    assert p["values"]["git_url"] == "https://git.example.com/b.git"
    assert by_addr["cluster.c"]["provider_name"] == "registry.terraform.io/rhplan/local"
    env = by_addr["env.e"]
    assert env["values"]["env_vars"] == {"TEAM": "ml", "TOKEN": "(sensitive value)"}
    assert env["sensitive_values"] == {"env_vars": {"TOKEN": True}}
    assert "index" not in env
    [child] = root["child_modules"]
    assert child["address"] == "module.pool"
    assert [r["address"] for r in child["resources"]] == ["module.pool.package.inner"]
    assert data["planned_values"]["outputs"] == {"team": {"sensitive": False, "type": "string",
                                                          "value": "ml"}}

    # resource_changes: Terraform's change representation
    changes = {c["address"]: c for c in data["resource_changes"]}
    inner = changes["module.pool.package.inner"]
    assert inner["module_address"] == "module.pool"
    assert (inner["type"], inner["name"]) == ("package", "inner")
    change = changes["env.e"]["change"]
    assert change["actions"] == ["create"] and change["before"] is None
    assert change["after_unknown"]["servlet_pid"] is True  # known after apply
    assert change["before_sensitive"] is False
    assert change["after_sensitive"] == {"env_vars": {"TOKEN": True}}
    assert data["output_changes"]["team"]["actions"] == ["create"]
    assert data["resource_drift"] == []
    # what the changes read (Terraform's heuristic): env.e reads cluster.c, package.p["a"]
    assert data["relevant_attributes"] == [{"resource": "cluster.c", "attribute": []},
                                           {"resource": 'package.p["a"]', "attribute": []}]
    assert data["prior_state"]["values"]["root_module"] == {"resources": []}

    # configuration: what was written, constants and references
    conf = data["configuration"]["root_module"]
    res = {r["address"]: r for r in conf["resources"]}
    assert res["env.e"]["expressions"]["cluster"] == {"references": ["cluster.c"]}
    assert res["env.e"]["expressions"]["env_vars"] == {"references": ["var.team", "var.tok"]}
    assert res["package.p"]["for_each_expression"] == {}  # a function call: no constant
    assert res["package.p"]["expressions"]["revision"] == {"constant_value": "v1"}
    assert res["cluster.c"]["provider_config_key"] == "local"
    assert res["secret.s"]["expressions"]["values"] == {"references": ["var.tok"]}
    assert conf["variables"]["tok"] == {"sensitive": True}  # no default shown
    assert conf["variables"]["team"] == {"default": "ml"}
    assert conf["outputs"]["team"] == {"expression": {"references": ["var.team"]}}
    pool = conf["module_calls"]["pool"]["module"]
    assert [r["address"] for r in pool["resources"]] == ["package.inner"]


def test_the_state_is_values_root_module(rh: Any) -> None:
    rh.keep = True
    rh.write(CONFIG.replace('cluster "c" { provider = "local" }', "").split('env "e"')[0]
             + 'module "pool" { source = "./modules/pool" }\n'
             + 'output "url" {\n  value     = secret.s.keys\n}\n')
    rh.write(MODULE, "modules/pool/main.hcl")
    empty = json.loads(rh("show", "-json").ok().stdout)
    assert empty == {"format_version": "1.0", "terraform_version": RHPLAN_VERSION}
    rh("apply", "-auto-approve").ok()
    out = rh("show", "-json").ok().stdout
    assert TOKEN not in out
    data = json.loads(out)
    assert data["format_version"] == "1.0"
    root = data["values"]["root_module"]
    assert [r["address"] for r in root["resources"]] == [
        'package.p["a"]', 'package.p["b"]', "secret.s"]
    secret = root["resources"][2]
    assert secret["mode"] == "managed" and secret["type"] == "secret"
    assert secret["values"]["keys"] == ["TOKEN"]  # the state keeps keys and a digest only
    assert root["child_modules"][0]["address"] == "module.pool"
    assert root["child_modules"][0]["resources"][0]["values"]["git_url"] == \
        "https://git.example.com/inner.git"
    assert data["values"]["outputs"] == {"url": {"sensitive": False, "type": ["tuple", ["string"]],
                                                 "value": ["TOKEN"]}}


def test_action_reasons_are_terraforms(rh: Any) -> None:
    rh.keep = True
    rh.write("""
package "p" {
  for_each = toset(["a", "b"])
  git_url  = "https://git.example.com/${each.key}.git"
}
package "q" { git_url = "https://git.example.com/q.git" }
package "r" { git_url = "https://git.example.com/r.git" }
""")
    rh("apply", "-auto-approve").ok()
    rh.edit('toset(["a", "b"])', 'toset(["a"])')
    rh.edit('package "q" { git_url = "https://git.example.com/q.git" }\n', "")
    data = _show(rh, "-replace", "package.r")
    reasons = {c["address"]: (c["change"]["actions"], c.get("action_reason"))
               for c in data["resource_changes"]}
    assert reasons == {
        'package.p["a"]': (["no-op"], None),
        'package.p["b"]': (["delete"], "delete_because_each_key"),
        "package.q": (["delete"], "delete_because_no_resource_config"),
        "package.r": (["delete", "create"], "replace_by_request"),
    }
    prior = data["prior_state"]["values"]["root_module"]["resources"]
    assert [r["address"] for r in prior] == ['package.p["a"]', 'package.p["b"]', "package.q",
                                            "package.r"]


def test_a_damaged_configuration_in_a_plan_file_is_one_line(rh: Any) -> None:
    rh.keep = True
    rh.write(CONFIG.split("cluster")[0])  # the variables only
    rh("plan", "-out", "p.plan").ok()
    data = json.loads((rh.dir / "p.plan").read_text())
    data["configuration"]["root_module"] = 5
    (rh.dir / "p.plan").write_text(json.dumps(data))
    line = rh("show", "-json", "p.plan").error_line()
    assert line == ("Error: p.plan is damaged or was edited (configuration.root_module must be "
                    "an object whose variables are objects); run rhplan plan -out again"), line


def test_references_keep_index_keys_and_list_each_prefix(rh: Any) -> None:
    """Terraform's jsonconfig lists a reference in full, then each shorter traversal down
    to the object, and a keyed instance also without its key; a non-literal index ends
    the traversal and its key's references follow."""
    rh.keep = True
    rh.write("""
variable "k" { default = "a" }
package "p" {
  for_each = toset(["a", "b"])
  git_url  = "https://git.example.com/${each.key}.git"
}
package "q" { git_url = "${package.p["a"].git_url}/q" }
package "r" { git_url = package.p[var.k].git_url }
output "first" { value = package.p["b"].revision }
""")
    conf = _show(rh)["configuration"]["root_module"]
    res = {r["address"]: r["expressions"] for r in conf["resources"]}
    assert res["package.q"]["git_url"] == {"references": [
        'package.p["a"].git_url', 'package.p["a"]', "package.p"]}
    assert res["package.r"]["git_url"] == {"references": ["package.p", "var.k"]}
    assert res["package.p"]["git_url"] == {"references": ["each.key"]}
    assert conf["outputs"]["first"]["expression"] == {"references": [
        'package.p["b"].revision', 'package.p["b"]', "package.p"]}


def test_deposed_objects_are_changes_and_prior_state_entries_of_their_own(rh: Any) -> None:
    """An old object a create_before_destroy replacement left recorded (an apply stopped
    between creating the new one and destroying the old: apply.py records it in the
    resource's private "deposed" list) is, as in Terraform, a delete of its own in
    resource_changes ("deposed": its key) and an entry with "deposed_key" in prior_state."""
    rh.keep = True
    rh.write('package "p" { git_url = "https://git.example.com/p.git" }\n')
    rh("apply", "-auto-approve").ok()
    state = rh.state()
    [p] = state["resources"]
    old = json.loads(json.dumps(p))
    old["attributes"]["git_url"] = "https://git.example.com/old.git"
    old["attributes"]["name"] = "p-old"
    p["private"]["deposed"] = [old]
    rh.state_path.write_text(json.dumps(state))
    data = _show(rh)
    changes = [(c["address"], c.get("deposed"), c["change"]["actions"])
               for c in data["resource_changes"]]
    assert changes == [("package.p", None, ["no-op"]), ("package.p", "p-old", ["delete"])]
    gone = data["resource_changes"][1]
    assert gone["change"]["before"]["git_url"] == "https://git.example.com/old.git"
    assert gone["change"]["after"] is None and "action_reason" not in gone
    assert (gone["mode"], gone["type"], gone["name"]) == ("managed", "package", "p")
    prior = data["prior_state"]["values"]["root_module"]["resources"]
    assert [(r["address"], r.get("deposed_key")) for r in prior] == [
        ("package.p", None), ("package.p", "p-old")]
    assert prior[1]["values"]["git_url"] == "https://git.example.com/old.git"


def test_relevant_attributes_are_what_the_changes_read(rh: Any) -> None:
    """Terraform's relevant_attributes: the resource attributes a changing instance (or
    changing root output) reads, followed through the attribute's own expression, a
    for_each's each.key and a module variable's argument in the call: drift elsewhere is
    left out of its renderer. Nothing drifted here, so the old "drifted attributes" gave
    []. A module's names are written as in the module (module.m.rev, package.inner), not
    as the loader flattened them."""
    rh.keep = True
    rh.write('package "inner" { git_url = "https://git.example.com/inner.git" }\n'
             'variable "size" { default = "s" }\nlocals { tag = "t" }\n'
             'package "dep" { git_url = "${package.inner.git_url}/${var.size}/${local.tag}" }\n'
             'output "rev" { value = package.inner.revision }\n', "modules/m/main.hcl")
    rh.write("""
package "base" { git_url = "https://git.example.com/base.git" }
package "p" {
  for_each = toset([package.base.revision == null ? "a" : "b", "c"])
  git_url  = "https://git.example.com/${each.key}.git"
}
package "q" {
  git_url  = "${package.p["a"].git_url}/q"
  revision = module.m.rev
}
package "other" { git_url = "https://git.example.com/other.git" }
module "m" {
  source = "./modules/m"
  size   = package.base.git_url
}
""")
    rh("apply", "-auto-approve").ok()
    rh.edit("}/q", "}/q2")
    rh.edit('tag = "t"', 'tag = "t2"', "modules/m/main.hcl")
    data = _show(rh)
    assert [c["address"] for c in data["resource_changes"] if c["change"]["actions"] != [
        "no-op"]] == ["module.m.package.dep", "package.q"]
    assert data["relevant_attributes"] == [
        {"resource": "module.m.package.inner", "attribute": ["git_url"]},  # dep reads it
        {"resource": "package.base", "attribute": ["git_url"]},  # dep's var.size
        {"resource": "package.base", "attribute": ["revision"]},  # q's package.p each.key
        {"resource": 'package.p["a"]', "attribute": ["git_url"]}]
    conf = data["configuration"]["root_module"]
    q = next(r for r in conf["resources"] if r["address"] == "package.q")
    assert q["expressions"]["revision"] == {"references": ["module.m.rev", "module.m"]}
    inner = conf["module_calls"]["m"]["module"]["resources"]
    dep = next(r for r in inner if r["address"] == "package.dep")
    assert dep["expressions"]["git_url"] == {"references": [
        "package.inner.git_url", "package.inner", "var.size", "local.tag"]}
