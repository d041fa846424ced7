"""`rhplan providers`: the providers a configuration uses, as a Terraform-like tree of
the root module and its module calls, those the state records, and where each comes
from (the installed package's entry point, or rhplan itself)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = """\
cluster "cpu" {
  provider = "local"
}

module "pool" {
  source  = "./modules/pool"
  cluster = cluster.cpu
}

secret "s" {
  values = { K = "v" }
}
"""

POOL = """\
variable "cluster" {}

env "x" {
  cluster = var.cluster
}

module "inner" {
  source = "./inner"
}
"""

INNER = """\
cluster "far" {
  provider = "ssh"
  ips      = ["10.0.0.5"]
  ssh {
    user        = "me"
    private_key = "~/.ssh/id_ed25519"
  }
}

package "p" {
  git_url  = "https://example.com/p.git"
  revision = "v1"
}
"""


def test_providers_tree_state_and_origins(rhplan_in: Any, tmp_path: Path) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write(ROOT)
    rh.write(POOL, "modules/pool/main.hcl")
    rh.write(INNER, "modules/pool/inner/main.hcl")
    out = rh("providers").ok().stdout
    head, _, origins = out.partition("Where they come from:\n\n")
    assert head == (
        "Providers required by configuration:\n"
        ".\n"
        "├── provider[local]\n"
        "├── provider[rhplan]\n"
        "└── module.pool\n"
        "    ├── provider[local]\n"
        "    └── module.inner\n"
        "        ├── provider[rhplan]\n"
        "        └── provider[ssh]\n"
        "\n"
        "Providers required by state:\n"
        "\n"
        "    (none: nothing applied)\n"
        "\n")
    rows = origins.splitlines()
    assert [r.split()[0] for r in rows] == ["local", "rhplan", "ssh"]
    assert "entry point rhplan_local:LocalProvider" in rows[0]
    assert "built into rhplan" in rows[1]
    assert "entry point rhplan_ssh:SSHProvider" in rows[2]


def test_providers_lists_the_state_and_a_missing_provider(rhplan_in: Any,
                                                          tmp_path: Path) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write('secret "s" {\n  values = { K = "v" }\n}\n')
    rh("apply", "-auto-approve").ok()  # a secret needs no host: a real state
    rh.write('secret "s" {\n  values = { K = "v" }\n}\n\ncluster "g" {\n'
             '  provider = "gcp"\n}\n')
    out = rh("providers").ok().stdout
    assert "Providers required by state:\n\n    provider[rhplan]\n" in out
    assert "├── provider[gcp]\n└── provider[rhplan]\n" in out
    line = next(r for r in out.splitlines() if r.strip().startswith("gcp"))
    assert "NOT INSTALLED" in line and 'entry point "gcp"' in line


def test_providers_of_a_broken_configuration_is_one_line(rhplan_in: Any,
                                                         tmp_path: Path) -> None:
    rh = rhplan_in(tmp_path / "infra")
    rh.keep = True
    rh.write('cluster "c" {\n  provider = "local"\n')
    assert rh("providers").error_line().startswith("Error: main.hcl:")
