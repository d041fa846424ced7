"""Imports run only downward (issue 15 items 3 and 4), for the packages split so far: a
new import of a higher layer (plan, config, resources, servlets, the CLI, a provider) from
the SSH transport, the host scripts or Ray's head, or of the commands or views from the
workspace, fails here, naming file:line. Read
from the source (ast), nothing is imported. Host scripts (rhplan/hostside/*.py but
__init__) run on hosts where rhplan is not installed: the standard library only."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("package_graph", ROOT / "docs" / "package_graph.py")
assert _spec is not None and _spec.loader is not None
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)
imports, module_name, sources, PROVIDERS = (graph.imports, graph.module_name, graph.sources,
                                            graph.PROVIDERS)

BASE = {"rhplan.hosts.connection", "rhplan.errors", "rhplan.registry"}
# what each module may import of rhplan and its providers (a prefix allows what is
# under it). A provider reaches the core through rhplan.plugin (the provider API);
# the ssh and aws providers also use the transport and host layers (Ray on the hosts is
# the core's: no provider starts or stops it).
ALLOWED: dict[str, set[str]] = {
    "rhplan.hosts.ssh": BASE | {"rhplan.hosts.ssh"},
    "rhplan.hostside": BASE,
    "rhplan.ray.head": BASE | {"rhplan.hostside"},
    "rhplan.hosts.facts": BASE | {"rhplan.hostside", "rhplan.hosts.envs"},
    # the servlets' callers and host files: handed what they need (the env's and its
    # cluster's records, how to connect) by the layer above (rhplan.env_lookup); they
    # never read a configuration, a state or a provider themselves
    "rhplan.ray.servlets": BASE | {"rhplan.ray.servlets", "rhplan.hostside", "rhplan.ray.head",
                               "rhplan.tls"},
    "rhplan_local": {"rhplan.plugin"},
    "rhplan_ssh": BASE | {"rhplan.hostside", "rhplan.plugin", "rhplan.hosts.ssh", "rhplan_ssh"},
    "rhplan_aws": BASE | {"rhplan.plugin", "rhplan_ssh", "rhplan_aws"},
}

# The CLI's own layers (issue 15 item 4): commands parse options, call the workspace and
# print through the views. The workspace (and what it runs: status, gitignore) knows
# neither the commands nor how its results are printed, and needs no click; the views
# import no command.
COMMANDS = ("rhplan.cli", "rhplan.cli_state", "rhplan.workspace_cli", "rhplan.fmt_cli",
            "rhplan.console", "rhplan.providers_list", "rhplan.cli_options")
VIEWS = ("rhplan.views",)
# the first key a module is within holds: views.json_ui before views
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "rhplan.workspace": (*COMMANDS, *VIEWS, "click"),
    "rhplan.status": (*COMMANDS, *VIEWS, "click"),
    "rhplan.gitignore": (*COMMANDS, *VIEWS, "click"),
    # -json writes whole lines to stdout itself, not through click
    "rhplan.views.json_ui": (*COMMANDS, "click"),
    "rhplan.views": COMMANDS,
}


def ours(name: str) -> bool:
    return name.split(".")[0] in ("rhplan", *PROVIDERS)


def within(name: str, allowed: set[str]) -> bool:
    return any(name == a or name.startswith(a + ".") for a in allowed)


def problem(module: str, name: str) -> str | None:
    """Why `module` may not import `name`, or None."""
    if module.startswith("rhplan") and not module.startswith(PROVIDERS) \
            and name.split(".")[0] in PROVIDERS:
        return f"the core imports provider {name}"
    rule = next((ALLOWED[k] for k in sorted(ALLOWED, key=len, reverse=True)
                 if module == k or module.startswith(k + ".")), None)
    if rule is not None and ours(name) and not within(name, rule):
        return f"{module} imports {name}, a layer above it"
    banned = next((v for k, v in FORBIDDEN.items() if within(module, {k})), ())
    if within(name, set(banned)):
        return f"{module} imports {name}, a layer above it"
    return None


def violations(path: Path, module: str) -> list[str]:
    where = path.relative_to(ROOT)
    return [f"{where}:{line}: {why}" for line, name in imports(path)
            if (why := problem(module, name))]


def test_imports_run_downward() -> None:
    problems = [v for p in sources() for v in violations(p, module_name(p))]
    assert not problems, "\n".join(problems)


def test_host_scripts_need_only_the_standard_library() -> None:
    scripts = [p for p in (ROOT / "rhplan" / "hostside").glob("*.py") if p.name != "__init__.py"]
    assert scripts
    problems = [f"{p.relative_to(ROOT)}:{line}: imports {name}, not in the standard library"
                for p in scripts for line, name in imports(p)
                if name.split(".")[0] not in sys.stdlib_module_names]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module, source", [
    ("rhplan.hosts.ssh.pool", "from rhplan.plan.model import Plan\n"),
    ("rhplan.hosts.ssh.channel", "def f():\n    from rhplan.ray import servlets\n"),
    ("rhplan.ray.head", "import rhplan.resources.cluster\n"),
    ("rhplan.ray.servlets.client", "def f():\n    from rhplan.workspace import backend_for\n"),
    ("rhplan.ray.servlets.handle", "from rhplan.config.load import load_config\n"),
    ("rhplan.ray.servlets.route", "from rhplan.state.local import LocalBackend\n"),
    ("rhplan.ray.servlets.cluster_gateway", "from rhplan.provider import RunContext\n"),
    ("rhplan.apply", "from rhplan_aws import AWSProvider\n"),
    ("rhplan_ssh.hosts", "from rhplan_aws.account import Account\n"),
    ("rhplan.workspace.state_ops", "def f():\n    from rhplan import views\n"),
    ("rhplan.workspace", "import click\n"),
    ("rhplan.views", "from rhplan.cli import _ARGS\n"),
    ("rhplan.workspace.providers", "from rhplan.views.providers import Providers\n"),
    ("rhplan.views.json_ui", "import click\n"),
])
def test_an_upward_import_is_caught(tmp_path: Path, module: str, source: str) -> None:
    """The check itself: each of these would be a new arrow running back up."""
    fake = tmp_path / "probe.py"
    fake.write_text(source)
    assert [name for _, name in imports(fake) if problem(module, name)], \
        f"{module}: {source!r} was not caught"


def test_the_package_graph_in_the_docs_is_current() -> None:
    """docs/ARCHITECTURE.md's picture of which layer imports which is made from the
    source; a new arrow between layers shows there (or this fails)."""
    assert graph.current() == graph.block(), (
        "docs/ARCHITECTURE.md: the package graph is out of date; run "
        "python docs/package_graph.py --write and look at what changed")


def test_the_gateways_files_need_only_the_standard_library_and_ray() -> None:
    """The gateway's files (gateway_start.GATEWAY_FILES) are uploaded to hosts where
    rhplan is not installed and run there by the cluster's Ray Python: they import the
    standard library, Ray and each other only."""
    start = ROOT / "rhplan" / "ray" / "servlets" / "gateway_start.py"
    files = next(ast.literal_eval(node.value) for node in ast.walk(ast.parse(start.read_text()))
                 if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "GATEWAY_FILES" for t in node.targets))
    allowed = set(sys.stdlib_module_names) | {"ray"} | {f.removesuffix(".py") for f in files}
    problems = [f"rhplan/ray/servlets/{f}:{line}: imports {name}"
                for f in files for line, name in imports(ROOT / "rhplan" / "ray" / "servlets" / f)
                if name.split(".")[0] not in allowed]
    assert len(files) > 2 and not problems, "\n".join(problems)
