"""`rhplan validate` as Terraform's: it needs no variable values, secrets, state or
network. A variable without a value is unknown, a secret's from_env and a provider
secret's credentials are not read, and no provider is loaded or asked to plan (the aws
provider would look up this machine's public address for allowed_cidrs). Configuration
errors are still one line with file:line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

UNKNOWNS = """\
variable "ips" {
  type = list(string)
}
variable "n" {
  type = number
  validation {
    condition     = var.n < 10
    error_message = "n must be below 10."
  }
}
variable "token" {
  type      = string
  sensitive = true
}
variable "names" {
  type = set(string)
}

cluster "c" {
  provider = "ssh"
  ips      = var.ips
  ssh {
    user        = "me"
    private_key = "~/.ssh/id_ed25519"
  }
}

env "counted" {
  count    = var.n
  cluster  = cluster.c
  env_vars = { TOKEN = var.token }
}

env "each" {
  for_each = var.names
  cluster  = cluster.c
  env_vars = { NAME = each.key }
}

output "head" {
  value = cluster.c.ips[0]
}
"""


def test_validate_needs_no_variable_values(rhplan_in: Any, tmp_path: Path) -> None:
    """Before: 'variable 'ips' has no value' (validate resolved values as plan does)."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(UNKNOWNS)
    assert rh("validate").ok().stdout == "Success! The configuration is valid.\n"
    # plan still needs them, and says which
    msg = rh("plan", "-refresh=false").error_line()
    assert msg.startswith("Error: main.hcl:1: variable 'ips' has no value"), msg


def test_validate_checks_the_values_it_is_given(rhplan_in: Any, tmp_path: Path) -> None:
    """A value given (-var, default) is still typed and its validation rules run."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(UNKNOWNS)
    msg = rh("validate", "-var", "n=12").error_line()
    assert msg.startswith("Error: main.hcl:"), msg
    assert "n must be below 10." in msg
    msg = rh("validate", "-var", "n=abc").error_line()
    assert msg.startswith("Error: -var n: ") and "not a number" in msg, msg


SECRETS = """\
cluster "c" {
  provider = "local"
}

secret "from_env" {
  from_env = ["RHPLAN_TEST_NEVER_SET_A9"]
}

secret "aws" {
  provider = "aws"
  path     = "no-such-folder/credentials"
}

env "e" {
  cluster = cluster.c
  secrets = [secret.from_env, secret.aws]
}
"""


def test_validate_reads_no_secrets(rhplan_in: Any, tmp_path: Path) -> None:
    """Before: 'secret.from_env reads $RHPLAN_TEST_NEVER_SET_A9, which is not set'."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(SECRETS)
    assert rh("validate").ok().stdout == "Success! The configuration is valid.\n"
    msg = rh("plan", "-refresh=false").error_line()  # plan reads them
    assert msg.startswith("Error: main.hcl:10: secret.aws: no AWS credentials file"), msg
    rh.edit("secret.aws]", "]")
    rh.edit('secret "aws" {\n  provider = "aws"\n  path     = "no-such-folder/credentials"\n}\n',
            "")
    msg = rh("plan", "-refresh=false").error_line()
    assert msg.startswith("Error: main.hcl:6: ") and "RHPLAN_TEST_NEVER_SET_A9" in msg, msg
    assert not (rh.dir / ".rhplan").exists()  # validate made no digest key, no state


AWS = """\
rhplan {
  backend "s3" {
    bucket = "no-such-bucket"
    key    = "infra/rhplan.state.json"
  }
}

variable "image_id" {
  type = string
}

provider "aws" {
  region = "us-east-1"
}

cluster "gpu" {
  provider      = "aws"
  instance_type = "CPU:2+"
  image_id      = var.image_id
}

env "e" {
  cluster = cluster.gpu
  reqs    = ["pip:six==1.16.0"]
}

output "head" {
  value = cluster.gpu.ips[0]
}
"""

# runs one command as main() does with every way out to the network refused and
# recorded, then prints what it tried and which provider / cloud modules it imported
# (a provider's schema module, read alone for its settings, does not count: it is
# stdlib + rhplan.plugin, rhplan/config/provider_schema.py)
_PROBE = """
import json, socket, sys
tried = []
def refuse(*args, **kwargs):
    tried.append(repr(args[:2]))
    raise OSError("network refused by the test")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
socket.create_connection = refuse
from rhplan.cli import execute
code = execute(sys.argv[1:])
mods = sorted(m for m in sys.modules if m.split(".")[0] in
              ("rhplan_aws", "rhplan_ssh", "rhplan_local", "boto3", "botocore", "urllib3")
              and not m.endswith(".schema"))
print("\\n" + json.dumps({"code": code, "tried": tried, "modules": mods}))
"""


def test_validate_reaches_no_provider_backend_or_network(tmp_path: Path) -> None:
    """Before: the aws provider was loaded and planned the cluster, which (no
    allowed_cidrs) looked up this machine's public address over the network."""
    d = tmp_path / "infra"
    d.mkdir()
    (d / "main.hcl").write_text(AWS)
    p = subprocess.run([sys.executable, "-c", _PROBE, f"-chdir={d}", "validate"],
                       capture_output=True, text=True, timeout=120)
    result = json.loads(p.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "tried": [], "modules": []}, p.stdout + p.stderr
    assert "Success! The configuration is valid." in p.stdout


CLUSTER = 'cluster "c" {\n  provider = "local"\n}\n'


@pytest.mark.parametrize(("text", "line", "words"), [
    pytest.param('variable "n" {\n  type    = number\n  default = "abc"\n}\n' + CLUSTER,
                 3, ["'n'", "number"], id="default-of-wrong-type"),
    pytest.param('variable "n" {\n  default = 12\n  validation {\n    condition     = '
                 'var.n < 10\n    error_message = "Too many."\n  }\n}\n' + CLUSTER,
                 4, ["Too many."], id="default-breaks-validation"),
    pytest.param('rhplan {\n  backend "s3" {\n    bucket = "b"\n  }\n}\n' + CLUSTER,
                 2, ['backend "s3" needs key'], id="backend-settings"),
    pytest.param('variable "x" {}\ncluster "c" {\n  provider = "gcp"\n}\n',
                 3, ["no provider 'gcp' is installed"], id="provider-not-installed"),
    pytest.param('variable "x" {}\ncluster "c" {\n  provider   = "local"\n'
                 '  open_ports = "all"\n}\n', 4, ["open_ports", "list"],
                 id="type-error-beside-unknowns"),
    pytest.param('variable "x" {}\n' + CLUSTER + 'env "e" {\n  cluster  = cluster.c\n'
                 '  env_vars = { X = var.y }\n}\n', 7, ["var.y"], id="undeclared-variable"),
    pytest.param('variable "x" {}\n' + CLUSTER + 'secret "s" {\n  provider = "vault"\n}\n',
                 6, ["unknown provider 'vault'"], id="secret-provider-unknown"),
    pytest.param('variable "x" {}\n' + CLUSTER + 'secret "s" {\n  profile = var.x\n}\n',
                 6, ["profile needs provider"], id="secret-profile-without-provider"),
    pytest.param('variable "x" {}\n' + CLUSTER + 'env "e" {\n  cluster = cluster.c\n'
                 '  reqs    = ["pip:six", "pip:six"]\n}\n', 7, ["listed twice"],
                 id="env-reqs-twice"),
    pytest.param('variable "x" {}\n' + CLUSTER + 'env "a" {\n  cluster    = cluster.c\n'
                 '  depends_on = [env.b]\n}\nenv "b" {\n  cluster    = cluster.c\n'
                 '  depends_on = [env.a]\n}\n', None, ["cycle"], id="cycle"),
])
def test_validate_still_reports_config_errors(rhplan_in: Any, tmp_path: Path, text: str,
                                              line: int | None, words: list[str]) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(text)
    msg = rh("validate").error_line()
    assert msg.startswith(f"Error: main.hcl:{line or ''}"), msg
    for w in words:
        assert w in msg, (w, msg)


DYNAMIC = """\
variable "keys" {
  type = map(string)
}
variable "l" {
  type = list(string)
}

cluster "c" {
  provider = "ssh"
  ips      = ["10.0.0.1"]
  dynamic "ssh" {
    for_each = var.keys
    content {
      user        = ssh.key
      private_key = ssh.value
    }
  }
}

env "e" {
  cluster     = cluster.c
  count       = length(var.l)
  working_dir = var.l[0]
  env_file    = var.l[1]
  env_vars = {
    A = join(",", [for k, v in var.keys : "${k}=${upper(v)}"])
    B = format("%s-%d", var.l[0], length(var.keys))
    C = try(var.keys["x"], "none")
  }
}

output "first" {
  value = coalesce(var.l[0], "x")
}
"""


def test_validate_takes_unknowns_through_dynamic_blocks_and_functions(
        rhplan_in: Any, tmp_path: Path) -> None:
    """Before: 'dynamic 'ssh': for_each is known only after apply' (validate evaluated
    dynamic blocks as plan does)."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(DYNAMIC)
    assert rh("validate").ok().stdout == "Success! The configuration is valid.\n"
    msg = rh("plan", "-refresh=false").error_line()
    assert "has no value" in msg, msg


PER_HOST = """\
variable "ips" {
  type = list(string)
}

cluster "a" {
  provider                 = "ssh"
  ips                      = var.ips
  custom_resources         = { acc = 1 }
  custom_resources_by_host = { "10.0.0.2" = { acc = 2 } }
  ssh {
    user        = "me"
    private_key = "~/.ssh/id_ed25519"
  }
}

env "e" {
  cluster = cluster.a
  compute = { acc = 2 }
}
"""


def test_validate_with_hosts_from_a_variable_without_a_value(rhplan_in: Any,
                                                             tmp_path: Path) -> None:
    """Before: 'custom_resources_by_host needs the hosts listed in ips', then 'env 'e'
    asks for acc = 2, but cluster.a has 1' (which host offers what is not known yet)."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(PER_HOST)
    assert rh("validate").ok().stdout == "Success! The configuration is valid.\n"
    assert rh("validate", '-var=ips=["10.0.0.1", "10.0.0.2"]').ok()
    msg = rh("validate", '-var=ips=["10.0.0.1"]').error_line()
    assert msg.startswith("Error: main.hcl:9: cluster 'a': custom_resources_by_host names "
                          "'10.0.0.2', which is not in ips"), msg


EVERYTHING_FROM_VARIABLES = """\
variable "url" { type = string }
variable "rev" { type = string }
variable "method" { type = string }
variable "vals" { type = map(string) }
variable "names" { type = list(string) }
variable "kind" { type = string }
variable "n" { type = number }

package "p" {
  git_url        = var.url
  revision       = var.rev
  install_method = var.method
}

secret "a" {
  values = var.vals
}

secret "b" {
  from_env = var.names
}

secret "c" {
  values = { K = var.url }
}

cluster "c" {
  provider         = var.kind
  num_instances    = var.n
  open_ports       = [var.n]
  custom_resources = { x = var.n }
}

env "e" {
  cluster    = cluster.c
  reqs       = concat(var.names, [package.p])
  secrets    = [secret.a, secret.b, secret.c]
  setup_cmds = var.names
  env_vars   = var.vals
  compute    = { CPU = var.n, x = var.n }
}

output "spec" {
  value = package.p.spec
}
"""


def test_validate_with_every_setting_from_variables_without_values(
        rhplan_in: Any, tmp_path: Path) -> None:
    """Before: 'install_method (known after apply) is not supported', then internal errors
    (a digest of an unknown secret value; reqs 'found _Unknown')."""
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(EVERYTHING_FROM_VARIABLES)
    assert rh("validate").ok().stdout == "Success! The configuration is valid.\n"
    assert rh("console", input="package.p.spec\n").ok().stdout == "(known after apply)\n"
    msg = rh("validate", "-var", "method=conda").error_line()
    assert msg.startswith("Error: main.hcl:12: install_method 'conda' is not supported"), msg
