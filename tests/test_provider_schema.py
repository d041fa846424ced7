"""Each provider declares its own cluster settings in a light schema module
(providers/*/schema.py, tests/plugins/*/schema.py), merged into the core's cluster schema
when a cluster is first decoded (rhplan/config/provider_schema.py)."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from rhplan.config import provider_schema
from rhplan.config.load import load_text
from rhplan.config.schema import CLUSTER_CORE, PROVIDER_SCHEMAS, RESOURCE_SCHEMAS, Attr
from rhplan.errors import ConfigError


def test_settings_come_from_their_providers() -> None:
    assert "instance_type" not in CLUSTER_CORE.attrs
    cluster = RESOURCE_SCHEMAS["cluster"]
    assert {"instance_type", "allowed_cidrs", "tags_all"} <= set(cluster.attrs)
    assert {"user", "proxy_command", "host_key_check"} <= set(cluster.blocks["ssh"].attrs)
    assert set(PROVIDER_SCHEMAS) == {"aws", "local", "ssh"}  # fakecloud declares none
    assert "endpoint_url" in PROVIDER_SCHEMAS["aws"].attrs


def test_schema_modules_load_without_the_provider_packages() -> None:
    """boto3 and paramiko stay out: only the schema files run."""
    code = ("import sys; from rhplan.config.schema import RESOURCE_SCHEMAS; "
            "RESOURCE_SCHEMAS['cluster']; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('boto3', 'paramiko', 'rhplan_aws', 'rhplan_ssh', 'rhplan_local')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['rhplan_aws.schema', 'rhplan_local.schema', 'rhplan_ssh.schema']"


@pytest.mark.parametrize("line, message", [
    ('  volume_size = 10', "main.hcl:3: unknown attribute 'volume_size' in cluster 'c'"),
    ('  ssh { color = "red" }', "main.hcl:3: unknown attribute 'color' in ssh block"),
])
def test_an_undeclared_setting_is_one_line_at_file_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_text(Path("."), {"main.hcl": f'cluster "c" {{\n  provider = "aws"\n{line}\n}}\n'})
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_two_providers_disagreeing_on_a_setting_are_named() -> None:
    a = types.SimpleNamespace(CLUSTER=(Attr("zone", "string"),))
    b = types.SimpleNamespace(CLUSTER=(Attr("zone", "number"),))
    old = provider_schema.declared
    provider_schema.declared = lambda: {"one": a, "two": b}  # type: ignore[assignment]
    try:
        with pytest.raises(ConfigError, match="providers 'one' and 'two' both declare the "
                                              "cluster setting 'zone', as string and number"):
            provider_schema.cluster_schema(CLUSTER_CORE)
    finally:
        provider_schema.declared = old  # type: ignore[assignment]
