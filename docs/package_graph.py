"""The package graph of docs/ARCHITECTURE.md, made from the source: which layer of
rhplan imports which (read with ast, nothing is imported). Each module belongs to one
layer (LAYERS below: a module not named there is a layer of its own, so a new module
shows up rather than hides); an edge is "some module of A imports one of B".

    python docs/package_graph.py           print the graph (Mermaid)
    python docs/package_graph.py --write   put it into docs/ARCHITECTURE.md
    python docs/package_graph.py --check   exit 1 if the file is not up to date

tests/test_layers.py runs the check, and reads imports with this file's imports().
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
BEGIN = "<!-- package graph: made by docs/package_graph.py --write -->"
END = "<!-- end of package graph -->"
PROVIDERS = ("rhplan_ssh", "rhplan_aws", "rhplan_local")
# layer: the modules (or packages) in it, by name below rhplan (providers by package);
# a two-part name (hosts.ssh) takes its modules out of the one-part package's layer
LAYERS = {
    "cli": ["cli", "workspace_cli", "cli_state", "cli_options", "fmt_cli", "console",
            "providers_list", "__init__"],
    "views": ["views"],
    "workspace": ["workspace", "status", "gitignore", "env_lookup"],
    "config": ["config", "names", "env_files", "secret_providers", "fmt"],
    "plan": ["plan", "graph"],
    "apply": ["apply"],
    "state": ["state"],
    "resources": ["resources"],
    "providers": ["provider", "plugin", *PROVIDERS],
    "ray": ["ray"],
    "hosts": ["hosts", "packages", "pyproject_reqs", "tree_files", "working_dir", "tls"],
    "ssh": ["hosts.ssh"],
    "hostside": ["hostside"],
    "base": ["hosts.connection", "errors", "lazy", "registry"],
}
OWNER = {m: layer for layer, mods in LAYERS.items() for m in mods}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "providers" if "providers" in path.parts else ROOT)
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, function-level ones too; `from
    rhplan import x` counts as rhplan.x."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module in ("rhplan", *PROVIDERS):
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def sources() -> list[Path]:
    return sorted([*ROOT.glob("rhplan/**/*.py"), *ROOT.glob("providers/rhplan_*/**/*.py")])


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] in PROVIDERS:
        return OWNER[parts[0]]
    if parts[0] != "rhplan":
        return None
    if len(parts) > 2 and ".".join(parts[1:3]) in OWNER:
        return OWNER[".".join(parts[1:3])]
    key = parts[1] if len(parts) > 1 else "__init__"
    return OWNER.get(key, key)


def edges() -> set[tuple[str, str]]:
    out = set()
    for path in sources():
        src = layer(module_name(path))
        for _, name in imports(path):
            dst = layer(name)
            if src and dst and dst != src:
                out.add((src, dst))
    return out


def mermaid() -> str:
    lines = ["```mermaid", "graph TD"]
    lines += [f"  {a} --> {b}" for a, b in sorted(edges())]
    return "\n".join([*lines, "```"])


def block() -> str:
    return f"{BEGIN}\n{mermaid()}\n{END}"


def current() -> str:
    text = DOC.read_text()
    start, end = text.find(BEGIN), text.find(END)
    return text[start:end + len(END)] if start >= 0 and end > start else ""


def main(argv: list[str]) -> int:
    if "--write" in argv:
        text = DOC.read_text()
        old = current()
        DOC.write_text(text.replace(old, block()) if old else text + "\n" + block() + "\n")
        return 0
    if "--check" in argv:
        if current() != block():
            print(f"{DOC.relative_to(ROOT)}: the package graph is out of date; run "
                  "python docs/package_graph.py --write", file=sys.stderr)
            return 1
        return 0
    print(mermaid())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
