"""The provider plugin API (rhplan/plugin.py, docs/PROVIDERS.md).

tests/plugins/ is a provider package written outside rhplan, installed into the test
venv (`uv pip install -e tests/plugins`, as .ci/run does) and found by rhplan through
its `rhplan.providers` entry points. Its `fakecloud` provider imports rhplan only
through rhplan.plugin: here it plans, applies (a real Ray head, a real env and servlet
on this machine), reads, and destroys a cluster through the real CLI. What it does not
exercise: several hosts per cluster (its machines all share this machine).
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from crash_harness import processes_with

from rhplan.plugin import (
    MARKER,
    Capabilities,
    ClusterRecord,
    Connection,
    Node,
    Provider,
    ProviderContext,
    ProviderError,
)
from rhplan.provider import ProviderHooks, RunContext

TESTS = Path(__file__).parent
PLUGIN = TESTS / "plugins" / "rhplan_fakecloud"
ROOT = TESTS.parent

FAKECLOUD_HCL = """
cluster "fc" {
  provider = "fakecloud"
}

env "e" {
  cluster = cluster.fc
  reqs    = []
}
"""


def installed() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group="rhplan.providers")}


def test_the_outside_provider_is_registered_and_uses_only_the_plugin_api() -> None:
    eps = installed()
    assert eps.get("fakecloud") == "rhplan_fakecloud:FakeCloudProvider", (
        f"tests/plugins is not installed in this venv (found {eps}): "
        "uv pip install -e tests/plugins")
    used = set()
    for path in PLUGIN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                used.add(node.module)
            elif isinstance(node, ast.Import):
                used.update(a.name for a in node.names)
    assert {m for m in used if m.split(".")[0].startswith("rhplan")} == {"rhplan.plugin"}


def test_fakecloud_plans_applies_and_destroys(rh: Any) -> None:
    rh.write(FAKECLOUD_HCL)
    out = rh("plan").ok().stdout
    assert '+ cluster "fc"' in out and "instance_ids  = (known after apply)" in out, out
    machine = rh.dir / ".rhplan" / "fakecloud" / "fc"
    assert not machine.exists()  # planning makes nothing

    rh("apply", "-auto-approve").ok()
    cluster = rh.resources()["cluster.fc"]
    a, p = cluster["attributes"], cluster["private"]["provider"]
    assert a["ray_status"] == "running" and a["ray_address"].startswith("127.0.0.1:"), a
    assert a["instance_ids"] == [p["machine_id"]]
    assert json.loads((machine / "machine.json").read_text())["id"] == p["machine_id"]
    assert (machine / "rhplan" / MARKER).exists()
    # Ray and a servlet really run on the provider's host
    call = subprocess.run(
        [sys.executable, "-c", "import rhplan; print(rhplan.servlet('e').call(pow, 2, 10))"],
        cwd=rh.dir, env=rh.env, capture_output=True, text=True, timeout=120)
    assert call.stdout.strip().splitlines()[-1:] == ["1024"], call.stderr[-2000:]
    # settle keeps the recorded machine id: nothing to do
    assert "No changes." in rh("plan").ok().stdout
    # the same state as rhplan wrote it before the private record was split (format 1,
    # tests/state_cases): upgraded on read, it plans and applies nothing, and destroy
    # below stops Ray and removes the machine from it
    rh.state_path.write_text(json.dumps(as_format_1(json.loads(rh.state_path.read_text()))))
    assert "No changes." in rh("plan").ok().stdout
    assert "No changes." in rh("apply", "-auto-approve").ok().stdout
    assert json.loads(rh.state_path.read_text())["format_version"] == 1  # nothing written

    temp_dir = cluster["private"]["ray"]["ray_temp_dir"]
    assert processes_with((temp_dir,)), "no Ray process runs in the cluster's temp dir"
    rh("destroy", "-auto-approve").ok()
    assert not rh.resources()
    assert not machine.exists()
    assert not processes_with((temp_dir,)), "Ray outlived destroy"


def as_format_1(doc: dict[str, Any]) -> dict[str, Any]:
    """A state as format 1 held it: a cluster's private parts side by side in one
    object, as in the recorded tests/state_cases/format1_fakecloud.json."""
    recorded = json.loads((TESTS / "state_cases" / "format1_fakecloud.json").read_text())
    for r in doc["resources"]:
        if r["type"] == "cluster":
            r["private"] = {**r["private"]["ray"], **r["private"]["provider"]}
            old = next(o for o in recorded["resources"] if o["type"] == "cluster")
            assert set(r["private"]) == set(old["private"]), "not the recorded format 1"
    return {**doc, "format_version": 1}


def test_fakecloud_refuses_what_it_cannot_do_at_file_line(rh: Any) -> None:
    rh.write(FAKECLOUD_HCL.replace('provider = "fakecloud"',
                                   'provider = "fakecloud"\n  num_instances = 2'))
    res = rh("plan")
    assert res.returncode == 1, res.describe()
    assert re.search(r"main\.hcl:1\b.*a fakecloud cluster has one machine", res.stderr), \
        res.stderr


def test_a_missing_provider_names_the_installed_ones(rh: Any) -> None:
    rh.write(FAKECLOUD_HCL.replace('"fakecloud"', '"nocloud"'))
    res = rh("plan")
    assert res.returncode == 1
    assert "main.hcl:2" in res.stderr and "'nocloud' is installed" in res.stderr, res.stderr
    assert "fakecloud" in res.stderr, res.stderr  # the outside one is listed


# ---- the contract itself -------------------------------------------------------------

class OneHost(Provider):
    """The required hooks only."""

    name = "onehost"

    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: ProviderContext, file: str,
                     line: int) -> dict[str, Any]:
        return attrs

    def create(self, attrs: dict[str, Any], ctx: ProviderContext) -> ClusterRecord:
        return ClusterRecord(attrs)

    def read(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
             ) -> dict[str, Any] | None:
        return attrs

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: ProviderContext) -> ClusterRecord:
        return ClusterRecord(after, private)

    def delete(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> None:
        return None

    def connect(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> Connection:
        from rhplan.plugin import LocalConnection
        return LocalConnection()

    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: ProviderContext) -> str:
        return sys.executable


def test_optional_hooks_have_their_documented_defaults(tmp_path: Path) -> None:
    p, ctx = OneHost(), ProviderContext(config_dir=tmp_path)
    attrs = {"ips": ["10.0.0.1", "10.0.0.2"]}
    assert p.capabilities == Capabilities(local_filesystem=False, grows=False, runs_ray=True)
    assert p.replacement({}, {}, ["x"]) == ([], "")
    assert p.leftovers(attrs, {}, ctx) == []
    after = {"a": 1}
    p.settle({"a": 0}, after)
    assert after == {"a": 1}
    assert [ip for ip, _ in p.hosts(attrs, {}, ctx)] == ["10.0.0.1"]
    assert p.node("10.0.0.2", attrs, {}) == Node("10.0.0.2", None)
    assert p.connect_host("10.0.0.1", attrs, {}, ctx) is not None
    with pytest.raises(ProviderError, match="cannot reach host 10.0.0.2"):
        p.connect_host("10.0.0.2", attrs, {}, ctx)


class Scribbler(OneHost):
    """Writes into everything it is handed, and returns changed records of its own."""

    name = "scribbler"

    def _scribble(self, *records: Any) -> None:
        for r in records:
            r["scribbled"] = True
            for v in r.values():
                if isinstance(v, list):
                    v.append("scribbled")
                elif isinstance(v, dict):
                    v["scribbled"] = True

    def settle(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        self._scribble(before)
        after["settled"] = True  # its own copy: what it leaves there is the result

    def create(self, attrs: dict[str, Any], ctx: ProviderContext) -> ClusterRecord:
        self._scribble(attrs)
        return ClusterRecord({"ips": ["10.0.0.9"]}, {"id": "i-1"})

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: ProviderContext) -> ClusterRecord:
        self._scribble(before, after, private)
        with pytest.raises(TypeError):
            ctx.provider_configs["mine"] = {}  # type: ignore[index]
        with pytest.raises(TypeError):
            ctx.sensitive["cluster.d"] = {}  # type: ignore[index]
        ctx.sensitive["cluster.c"]["password"] = "x"  # a copy: the core's stays
        with pytest.raises(AttributeError):
            ctx.lineage = "other"  # type: ignore[misc]
        ctx.cache["seen"] = ctx.cache.get("seen", 0) + 1
        return ClusterRecord({"ips": ["10.0.0.2"]}, {"id": "i-2"})


def test_a_provider_gets_copies_and_a_frozen_view_and_the_core_records_its_answer(
        tmp_path: Path) -> None:
    """What the core hands a hook is the provider's own (writing into it changes no
    record of the core's), the run is a frozen, read-only ProviderContext, and what a
    hook returns is what the core gets back."""
    run = RunContext(config_dir=tmp_path, lineage="L1",
                     provider_configs={"scribbler": {"region": "r"}},
                     sensitive={"cluster.c": {"password": "pw"}})
    hooks = ProviderHooks(Scribbler())
    before = {"ips": ["10.0.0.1"], "hosts": {"10.0.0.1": "ready"}}
    planned = {"ips": ["10.0.0.1", "10.0.0.2"], "hosts": {}}
    private = {"id": "i-1", "keys": {"10.0.0.1": "k"}}
    records = json.dumps([before, planned, private, run.provider_configs, run.sensitive],
                         sort_keys=True)

    assert hooks.settle(before, planned) == {**planned, "settled": True}
    assert hooks.create(planned, run) == ({"ips": ["10.0.0.9"]}, {"id": "i-1"})
    assert hooks.update(before, planned, private, run) == (
        {"ips": ["10.0.0.2"]}, {"id": "i-2"})
    assert hooks.update(before, planned, private, run)[1] == {"id": "i-2"}
    assert json.dumps([before, planned, private, run.provider_configs, run.sensitive],
                      sort_keys=True) == records, "a provider's write reached the core"
    # the provider's memo lasts the run and is its own (not the core's cache)
    assert run.provider_caches == {"scribbler": {"seen": 2}} and not run.cache


class WrongShapes(OneHost):
    """Returns what the contract does not allow."""

    name = "wrongshapes"

    def create(self, attrs: dict[str, Any], ctx: ProviderContext) -> Any:
        return attrs  # not ClusterRecord(attributes, private record)

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: ProviderContext) -> Any:
        return after, private  # a pair, not a ClusterRecord

    def import_cluster(self, attrs: dict[str, Any], id_: str, ctx: ProviderContext) -> Any:
        return ClusterRecord(attrs, ["i-1"])  # type: ignore[arg-type]

    def read(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> Any:
        return ["127.0.0.1"]


def test_what_a_provider_returns_in_the_wrong_shape_is_named_in_one_line(
        tmp_path: Path) -> None:
    hooks, run = ProviderHooks(WrongShapes()), RunContext(config_dir=tmp_path)
    with pytest.raises(ProviderError, match=r"^provider 'wrongshapes': its create hook "
                       r"returned dict, not ClusterRecord\(attributes, private record as "
                       r"a dict\); fix"):
        hooks.create({"ips": ["127.0.0.1"]}, run)
    with pytest.raises(ProviderError, match=r"its update hook returned tuple, not "
                                            r"ClusterRecord"):
        hooks.update({}, {}, {}, run)
    with pytest.raises(ProviderError, match=r"its import_cluster hook returned a private "
                                            r"record of type list, not ClusterRecord"):
        hooks.import_cluster({}, "i-1", run)
    with pytest.raises(ProviderError, match=r"^provider 'wrongshapes': its read hook "
                       r"returned list, not the cluster's attributes"):
        hooks.read({}, {}, run)


def test_a_provider_missing_a_required_hook_cannot_be_made() -> None:
    partial = type("Partial", (Provider,), {"name": "partial"})
    with pytest.raises(TypeError, match="abstract methods? .*connect"):
        partial()


def test_the_core_calls_only_declared_hooks_and_never_probes() -> None:
    """Every provider method the core calls is declared on Provider, and none is looked
    up by hasattr/getattr (a hook must be declared with its default instead)."""
    declared = {n for n in dir(Provider) if not n.startswith("_")}
    called: dict[str, str] = {}
    for path in sorted((ROOT / "rhplan").rglob("*.py")):
        text = path.read_text()
        where = str(path.relative_to(ROOT))
        for m in re.finditer(r"(?:\bprovider|ctx\.provider\([^()]*\))\.(\w+)\(", text):
            called.setdefault(m.group(1), where)
        assert not re.search(r"(hasattr|getattr)\((self\.)?provider\b|"
                             r"(hasattr|getattr)\(ctx\.provider\(", text), where
    assert called, "no provider call found: the pattern is out of date"
    assert {h: w for h, w in called.items() if h not in declared} == {}
