"""Each provider declares its own cluster settings in a light schema module
(providers/*/schema.py, tests/plugins/*/schema.py), merged into the core's cluster schema
when a cluster is first decoded (rhplan/config/provider_schema.py)."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

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


# Each cluster block is checked against its own provider's settings (and the core's),
# through the CLI on real files: validate and plan refuse another provider's setting at
# its line, naming whose it is.
SSH_HOSTS = '  ips      = ["127.0.0.1"]\n  ssh {\n    user = "me"\n'


@pytest.mark.parametrize("text, where, words", [
    pytest.param('cluster "c" {\n  provider      = "ssh"\n  instance_type = "t3.micro"\n'
                 '  ips           = ["127.0.0.1"]\n}\n',
                 "main.hcl:3", ["cluster 'c': instance_type is a setting of provider 'aws', "
                                "not of 'ssh'; remove it", "ssh { known_hosts, "],
                 id="aws-setting-on-ssh"),
    pytest.param('cluster "c" {\n  provider = "ssh"\n' + SSH_HOSTS +
                 '    host_key_check = "trust_on_first_use"\n  }\n}\n',
                 "main.hcl:6", ["ssh.host_key_check is a setting of provider 'aws', not of "
                                "'ssh'"], id="aws-ssh-block-setting-on-ssh"),
    pytest.param('cluster "c" {\n  provider = "local"\n  dynamic "ssh" {\n    for_each = [1]\n'
                 '    content {\n      user = "me"\n    }\n  }\n}\n',
                 "main.hcl:3", ["the ssh block is a setting of providers 'aws' and 'ssh', not "
                                "of 'local'", "provider 'local' takes only the core's"],
                 id="ssh-block-on-local"),
    pytest.param('cluster "c" {\n  provider = "fakecloud"\n  open_ports = [8080]\n}\n',
                 "main.hcl:3", ["open_ports is a setting of provider 'aws', not of "
                                "'fakecloud'"], id="aws-setting-on-plugin"),
])
def test_another_providers_setting_is_one_line_at_file_line(
        rh: Any, text: str, where: str, words: list[str]) -> None:
    rh.keep = True  # nothing is applied
    rh.write(text)
    for args in (("validate",), ("plan", "-refresh=false")):
        line = rh(*args).error_line()
        assert line.startswith(f"Error: {where}: "), (args, line)
        for w in words:
            assert w in line, (args, w, line)


def test_a_providers_own_settings_pass(rh: Any) -> None:
    """aws takes the ssh block's settings (its INCLUDES), and aws_launch_only aws's."""
    rh.keep = True
    rh.write('cluster "own" {\n  provider = "ssh"\n' + SSH_HOSTS + '    port = 22\n  }\n}\n'
             'cluster "cloud" {\n  provider      = "aws"\n  instance_type = "t3.micro"\n'
             '  ssh {\n    user           = "ubuntu"\n    private_key    = "~/.ssh/id"\n'
             '    host_key_check = "trust_on_first_use"\n  }\n}\n'
             'cluster "launch" {\n  provider   = "aws_launch_only"\n  open_ports = [8080]\n'
             '  ssh {\n    user = "ubuntu"\n  }\n}\n')
    rh("validate").ok()


def test_a_provider_known_only_from_a_variable(rh: Any) -> None:
    """validate without the variable's value keeps the merged schema; once the value is
    known (plan, or validate given it) the cluster is checked against that provider."""
    rh.keep = True
    rh.write('variable "p" {\n  type = string\n}\ncluster "c" {\n  provider   = var.p\n'
             '  open_ports = [8080]\n}\n')
    rh("validate").ok()
    for args in (("validate",), ("plan", "-refresh=false")):
        line = rh(*args, env={"RHPLAN_VAR_p": "local"}).error_line()
        assert line.startswith("Error: main.hcl:6: cluster 'c': open_ports is a setting of "
                               "provider 'aws', not of 'local'"), (args, line)


def test_includes_are_followed_and_a_missing_one_is_named(monkeypatch: Any) -> None:
    """INCLUDES of INCLUDES count (aws_launch_only -> aws -> ssh); including a provider
    that is not installed is a one-line error naming both."""
    assert {"instance_type", "ssh.user", "ssh.host_key_check"} <= \
        provider_schema.own_settings()["aws_launch_only"]
    assert "instance_type" not in provider_schema.own_settings()["ssh"]
    broken = types.SimpleNamespace(CLUSTER=(), INCLUDES=("gone",))
    monkeypatch.setattr(provider_schema, "declared", lambda: {"one": broken})
    monkeypatch.setattr(provider_schema, "installed_providers", lambda: {"one": None})
    provider_schema.own_settings.cache_clear()
    provider_schema.declared_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="provider 'one': its schema module includes "
                                              "the settings of provider 'gone', which is not "
                                              "installed"):
            provider_schema.own_settings()
    finally:
        provider_schema.own_settings.cache_clear()
        provider_schema.declared_settings.cache_clear()
