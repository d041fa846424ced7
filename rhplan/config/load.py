"""Load a configuration directory: every *.hcl file → one Config of typed declarations
(config/model.py), each top-level block read by its reader (resources:
config/resource_block.py; backend, variables, outputs: config/blocks.py), then module
calls expanded, bare default envs added and references through locals resolved.

Nothing is evaluated here; each resource keeps its syntax tree plus the addresses it
refers to, which is all the graph needs. Evaluation happens while planning, in
dependency order, because attributes may refer to other resources' planned values.
"""
from __future__ import annotations

import os
from pathlib import Path

from rhplan.config import ast
from rhplan.config.blocks import read_backend, read_output, read_variable
from rhplan.config.evaluate import RESOURCE_TYPES
from rhplan.config.model import Backend, Config
from rhplan.config.parse import parse_file, parse_text
from rhplan.config.refactor_blocks import BLOCK_TYPES as REFACTOR_BLOCKS
from rhplan.config.refactor_blocks import read_block as read_refactor_block
from rhplan.config.refs import resolve_local_refs
from rhplan.config.resource_block import read_resource
from rhplan.errors import ConfigError
from rhplan.names import NAME_RULE, valid_name

__all__ = ["build_config", "load_config", "load_module", "load_text", "parse_cache_dir"]

TOP_LEVEL = ("rhplan", "variable", "locals", "provider", "output", "module") + RESOURCE_TYPES + \
    REFACTOR_BLOCKS


def load_config(directory: Path | str) -> Config:
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"configuration directory {str(d)!r} does not exist; pass -chdir=DIR")
    paths = sorted(p for p in d.glob("*.hcl") if p.is_file())
    if not paths:
        raise ConfigError(f"no *.hcl files in {str(d)!r}; write a main.hcl there or pass "
                          "-chdir=DIR")
    cache_dir = parse_cache_dir()
    files = [parse_file(p, p.name, cache_dir) for p in paths]
    return build_config(d, files)


def parse_cache_dir() -> Path:
    """Parsed files are pickled, so the cache lives in the user's own cache folder,
    never in the configuration directory, where a committed file could plant one."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rhplan" / "hcl"


def load_text(directory: Path, sources: dict[str, str]) -> Config:
    """Build a Config from in-memory sources (tests, golden cases)."""
    return build_config(directory, [parse_text(t, n) for n, t in sorted(sources.items())])


def load_module(directory: Path, stack: tuple[Path, ...], root: Path) -> Config:
    """A module's folder, its files named relative to the root configuration."""
    paths = sorted(p for p in directory.glob("*.hcl") if p.is_file())
    if not paths:
        raise ConfigError(f"module folder {os.path.relpath(directory, root)!r} has no *.hcl "
                          "files; write the module's main.hcl there or fix source")
    cache_dir = parse_cache_dir()
    files = [parse_file(p, os.path.relpath(p, root), cache_dir) for p in paths]
    return build_config(directory, files, stack)


def build_config(directory: Path, files: list[ast.File],
                 module_stack: tuple[Path, ...] = ()) -> Config:
    cfg = Config(directory, [f.path for f in files], Backend("local", {"path": "rhplan.state.json"},
                 None, None), {}, {}, {}, {}, {}, {})
    seen: dict[str, tuple[str, int]] = {}
    backend_seen = False
    module_calls: list[ast.Block] = []
    for f in files:
        if f.body.attrs:
            a = next(iter(f.body.attrs.values()))
            raise ConfigError(
                f"{a.name!r} is set outside any block; put it inside a block", f.path, a.line)
        for b in f.body.blocks:
            if b.type not in TOP_LEVEL:
                raise ConfigError(
                    f"unknown block type {b.type!r}; use one of: {', '.join(TOP_LEVEL)}",
                    f.path, b.line)
            if b.type == "rhplan":
                if backend_seen:
                    raise ConfigError("a second rhplan block; keep one", f.path, b.line)
                backend_seen = True
                cfg.backend = read_backend(b)
                continue
            if b.type == "locals":
                _expect_labels(b, 0)
                for name, attr in b.attrs.items():
                    if name in cfg.locals:
                        raise ConfigError(
                            f"local.{name} is defined twice (also {cfg.local_files[name]}:"
                            f"{cfg.locals[name].line}); rename one", f.path, attr.line)
                    cfg.locals[name] = attr
                    cfg.local_files[name] = f.path
                continue
            if b.type in REFACTOR_BLOCKS:
                read_refactor_block(b, cfg)
                continue
            _expect_labels(b, 1)
            name = b.labels[0]
            if not valid_name(name):
                # a label becomes an address, and for resources a folder name on a host
                raise ConfigError(f"{b.type} name {name!r} is not allowed: a name must "
                                  f"{NAME_RULE}", f.path, b.line)
            key = f"{b.type}.{name}"
            if key in seen:
                pf, pl = seen[key]
                raise ConfigError(
                    f"{b.type} {name!r} is declared twice (first at {pf}:{pl}); rename one",
                    f.path, b.line)
            seen[key] = (f.path, b.line)
            if b.type == "variable":
                cfg.variables[name] = read_variable(b)
            elif b.type == "provider":
                cfg.providers[name] = b
            elif b.type == "output":
                cfg.outputs[name] = read_output(b)
            elif b.type == "module":
                module_calls.append(b)
            else:
                cfg.resources[key] = read_resource(b)
    if module_calls:
        from rhplan.config import modules
        modules.expand(cfg, module_calls, module_stack)
    if module_calls or any(d[:7] == "module." for rc in cfg.resources.values()
                           for d in rc.depends_on):
        from rhplan.config.modules import resolve_module_depends_on
        resolve_module_depends_on(cfg)
    # after the modules: an env inside a module call may name the caller's cluster
    from rhplan.config.default_env import add_bare_envs  # (it imports this module)
    add_bare_envs(cfg)
    resolve_local_refs(cfg)
    return cfg


def _expect_labels(b: ast.Block, n: int) -> None:
    if len(b.labels) != n:
        want = "no label" if n == 0 else "one label (its name)"
        example = f'{b.type} {{ ... }}' if n == 0 else f'{b.type} "NAME" {{ ... }}'
        raise ConfigError(f"a {b.type} block takes {want}: write {example}", b.file, b.line)
