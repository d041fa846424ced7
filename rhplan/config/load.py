"""Load a configuration directory: every *.hcl file → one Config of typed declarations.

Nothing is evaluated here; each resource keeps its syntax tree plus the addresses it
refers to, which is all the graph needs. Evaluation happens while planning, in
dependency order, because attributes may refer to other resources' planned values.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhplan.config import ast, lifecycle
from rhplan.config.evaluate import RESOURCE_TYPES
from rhplan.config.parse import parse_file, parse_text
from rhplan.config.refactor_blocks import BLOCK_TYPES as REFACTOR_BLOCKS
from rhplan.config.refactor_blocks import module_path
from rhplan.config.refactor_blocks import read_block as read_refactor_block
from rhplan.config.schema import META_ATTRS, META_BLOCKS, RESOURCE_SCHEMAS
from rhplan.errors import ConfigError
from rhplan.names import NAME_RULE, block_address, instance_address, valid_name

TOP_LEVEL = ("rhplan", "variable", "locals", "provider", "output", "module") + RESOURCE_TYPES + \
    REFACTOR_BLOCKS


@dataclass
class Variable:
    name: str
    default: ast.Expr | None
    type: str | None
    description: str
    sensitive: bool
    file: str
    line: int
    type_spec: Any = None  # rhplan.config.variables.Type; `type` is its Terraform spelling
    nullable: bool = True
    validations: list[Any] = field(default_factory=list)


@dataclass
class Output:
    name: str
    value: ast.Expr
    sensitive: bool
    description: str
    file: str
    line: int
    refs: set[str] = field(default_factory=set)


@dataclass
class ResourceConfig:
    type: str
    name: str
    block: ast.Block
    refs: set[str]  # addresses referenced in attributes (through locals too)
    depends_on: list[str]
    prevent_destroy: bool
    ignore_changes: list[str]
    # repetition (Terraform's meta-arguments); at most one of them is set
    count: ast.Attribute | None = None
    for_each: ast.Attribute | None = None
    # set on one instance of a repeated block (the planner makes them): its index or
    # key, its block's label (`name` is then the instance's on-host name, which a
    # block moved from env.x[0] keeps too) and what count.index / each.* are inside it
    key: int | str | None = None
    block_name: str = ""
    bindings: dict[str, Any] | None = None
    instance: str = ""  # an instance's address, worked out once (read many times a plan)

    module: str = ""  # "module.m." inside a module call (rhplan/config/modules.py)
    # set on the bare env rhplan adds for a cluster without a default env of its own:
    # that cluster's address, and what it declares instead (rhplan/config/default_env.py)
    bare_default_of: str = ""
    bare_why: str = ""

    @property
    def address(self) -> str:
        if self.key is None:
            return f"{self.module}{self.type}.{self.block_name or self.name}"
        return self.instance or instance_address(self.type, self.block_name, self.key)

    @property
    def label(self) -> str:
        """The block's label (`env "x"`), also for an instance."""
        return self.block_name or self.name

    @property
    def block_address(self) -> str:
        return f"{self.module}{self.type}.{self.label}"

    # "count" or "for_each" for a repeated block, else None (a field: read per reference)
    repeated: str | None = None
    # lifecycle's other settings (rhplan/config/lifecycle.py, rhplan/plan/lifecycle.py)
    create_before_destroy: bool = False
    replace_triggered_by: tuple[Any, ...] = ()

    @property
    def file(self) -> str:
        return self.block.file

    @property
    def line(self) -> int:
        return self.block.line


@dataclass
class Backend:
    type: str
    attrs: dict[str, Any]
    file: str | None
    line: int | None


@dataclass
class Config:
    dir: Path
    files: list[str]
    backend: Backend
    variables: dict[str, Variable]
    locals: dict[str, ast.Attribute]
    local_files: dict[str, str]
    providers: dict[str, ast.Block]
    resources: dict[str, ResourceConfig]
    outputs: dict[str, Output]
    # moved / removed / import blocks (rhplan/config/refactor_blocks.py)
    moved: list[Any] = field(default_factory=list)
    removed: list[Any] = field(default_factory=list)
    imports: list[Any] = field(default_factory=list)
    # module variables, by the local that holds each one's value (module.m.var.x)
    module_vars: dict[str, Variable] = field(default_factory=dict)
    # module calls by name, as written (show -json's module_calls); the calls with count /
    # for_each, made into instances once variables are known (modules.expand_repeated);
    # each call's output names; errors those instances must raise when planning
    module_calls: dict[str, tuple[ast.Block, frozenset[str]]] = field(default_factory=dict)
    repeated_modules: list[Any] = field(default_factory=list)
    module_outputs: dict[str, set[str]] = field(default_factory=dict)
    module_errors: list[ConfigError] = field(default_factory=list)

    def resource(self, address: str) -> ResourceConfig | None:
        return self.resources.get(address)


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
                cfg.backend = _backend(b)
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
                cfg.variables[name] = _variable(b)
            elif b.type == "provider":
                cfg.providers[name] = b
            elif b.type == "output":
                cfg.outputs[name] = _output(b)
            elif b.type == "module":
                module_calls.append(b)
            else:
                cfg.resources[key] = _resource(b)
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
    _resolve_local_refs(cfg)
    return cfg


def _expect_labels(b: ast.Block, n: int) -> None:
    if len(b.labels) != n:
        want = "no label" if n == 0 else "one label (its name)"
        example = f'{b.type} {{ ... }}' if n == 0 else f'{b.type} "NAME" {{ ... }}'
        raise ConfigError(f"a {b.type} block takes {want}: write {example}", b.file, b.line)


def _const(expr: ast.Expr, file: str, what: str) -> Any:
    """Values in the rhplan block must be literal: they are read before anything else."""
    if isinstance(expr, ast.Literal):
        return expr.value
    if isinstance(expr, ast.TupleExpr):
        return [_const(i, file, what) for i in expr.items]
    raise ConfigError(f"{what} must be a literal value (no references)", file, expr.line)


# what each backend "TYPE" block takes (checked further, with types, in workspace.backend_for)
BACKEND_ATTRS = {
    "local": ("path", "workspace_dir"),
    "s3": ("bucket", "key", "region", "endpoint_url", "profile", "workspace_key_prefix"),
}


def _backend(b: ast.Block) -> Backend:
    for a in b.attrs.values():
        raise ConfigError(f"unknown attribute {a.name!r} in the rhplan block; "
                          "only a backend block goes here", b.file, a.line)
    backend = Backend("local", {"path": "rhplan.state.json"}, b.file, b.line)
    for sub in b.blocks:
        if sub.type != "backend" or len(sub.labels) != 1:
            raise ConfigError('the rhplan block holds one backend "TYPE" { ... } block',
                              b.file, sub.line)
        if sub.labels[0] not in BACKEND_ATTRS:
            raise ConfigError(f'unknown backend {sub.labels[0]!r}; use "local" or "s3"',
                              b.file, sub.line)
        attrs = {k: _const(a.expr, b.file, f"backend attribute {k}") for k, a in sub.attrs.items()}
        allowed = BACKEND_ATTRS[sub.labels[0]]
        unknown = sorted(set(attrs) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown attribute {unknown[0]!r} in backend "
                              f'"{sub.labels[0]}"; it takes {", ".join(allowed)}',
                              b.file, sub.attrs[unknown[0]].line)
        if sub.labels[0] == "local":
            attrs.setdefault("path", "rhplan.state.json")
        backend = Backend(sub.labels[0], attrs, b.file, sub.line)
    return backend


_VARIABLE_ATTRS = {"default", "type", "description", "sensitive", "nullable"}


def _variable(b: ast.Block) -> Variable:
    from rhplan.config import variables  # type constraints and validation rules

    for name, a in b.attrs.items():
        if name not in _VARIABLE_ATTRS:
            raise ConfigError(f"unknown attribute {name!r} in variable {b.labels[0]!r}; "
                              f"use {', '.join(sorted(_VARIABLE_ATTRS))}", b.file, a.line)
    type_spec = variables.parse_type(b.attrs["type"].expr, b.file) if "type" in b.attrs else None
    desc = b.attrs.get("description")
    sens = b.attrs.get("sensitive")
    nullable = True
    if "nullable" in b.attrs:
        nullable = _const(b.attrs["nullable"].expr, b.file, "nullable")
        if not isinstance(nullable, bool):
            raise ConfigError("nullable must be true or false", b.file, b.attrs["nullable"].line)
        default = b.attrs.get("default")
        if not nullable and default is not None and isinstance(default.expr, ast.Literal) \
                and default.expr.value is None:
            raise ConfigError(f"variable {b.labels[0]!r} has nullable = false, so its default "
                              "cannot be null; remove the default or give a value",
                              b.file, default.line)
    return Variable(
        b.labels[0], b.attrs["default"].expr if "default" in b.attrs else None,
        variables.type_text(type_spec) if type_spec is not None else None,
        _const(desc.expr, b.file, "description") if desc else "",
        bool(_const(sens.expr, b.file, "sensitive")) if sens else False, b.file, b.line,
        type_spec, nullable, variables.read_validations(b, b.labels[0]))


def _output(b: ast.Block) -> Output:
    allowed = {"value", "sensitive", "description", "depends_on"}
    for name, a in b.attrs.items():
        if name not in allowed:
            raise ConfigError(f"unknown attribute {name!r} in output {b.labels[0]!r}; "
                              f"use {', '.join(sorted(allowed))}", b.file, a.line)
    if "value" not in b.attrs:
        raise ConfigError(f"output {b.labels[0]!r} needs a value = ...", b.file, b.line)
    sens = b.attrs.get("sensitive")
    desc = b.attrs.get("description")
    out = Output(b.labels[0], b.attrs["value"].expr,
                 bool(_const(sens.expr, b.file, "sensitive")) if sens else False,
                 _const(desc.expr, b.file, "description") if desc else "", b.file, b.line)
    out.refs = expr_refs(b.attrs["value"].expr) - _REPETITION_NAMES
    return out


def _resource(b: ast.Block) -> ResourceConfig:
    schema = RESOURCE_SCHEMAS[b.type]
    refs: set[str] = set()
    for name, a in b.attrs.items():
        if name in META_ATTRS:
            continue
        spec = schema.attrs.get(name)
        if spec is None or spec.computed:
            hint = (f"{name!r} is computed by rhplan and cannot be set" if spec else
                    f"unknown attribute {name!r} in {b.type} {b.labels[0]!r}")
            raise ConfigError(f"{hint}; {b.type} takes: {', '.join(schema.settable())}",
                              b.file, a.line)
        refs |= expr_refs(a.expr)
    prevent_destroy = False
    ignore: list[str] = []
    nested_seen: set[str] = set()
    cbd, triggers = False, ()
    for sub in b.blocks:
        if sub.type == "lifecycle":
            prevent_destroy, ignore = _lifecycle(sub, schema)
            cbd, triggers = lifecycle.read_extras(sub)
            refs |= {block_address(t.address) for t in triggers}  # planned after them
            continue
        if sub.type == "dynamic":
            label = _dynamic(sub, b, schema)
            if label in nested_seen:
                raise ConfigError(f"a second {label} block; keep one", b.file, sub.line)
            nested_seen.add(label)
            for part in (sub, *sub.blocks):
                for a in part.attrs.values():
                    if a.name != "iterator":
                        refs |= expr_refs(a.expr)
            continue
        if sub.type not in schema.blocks:
            raise ConfigError(
                f"unknown block {sub.type!r} in {b.type} {b.labels[0]!r}; "
                f"{b.type} takes: {', '.join(schema.settable() + sorted(META_BLOCKS))}",
                b.file, sub.line)
        if sub.type in nested_seen:
            raise ConfigError(f"a second {sub.type} block; keep one", b.file, sub.line)
        nested_seen.add(sub.type)
        sub_schema = schema.blocks[sub.type]
        for name, a in sub.attrs.items():
            if name not in sub_schema.attrs:
                raise ConfigError(f"unknown attribute {name!r} in {sub.type} block; it takes: "
                                  f"{', '.join(sub_schema.settable())}", b.file, a.line)
            refs |= expr_refs(a.expr)
    depends_on: list[str] = []
    if "depends_on" in b.attrs:
        dep = b.attrs["depends_on"]
        items = dep.expr.items if isinstance(dep.expr, ast.TupleExpr) else None
        if items is None:
            raise ConfigError("depends_on must be a list of resources, e.g. [cluster.gpu]",
                              b.file, dep.line)
        for item in items:
            # a module call (module.m, module.m["k"]): all inside it (config/modules.py)
            addr = _address_of(item) or module_path(item, b, "depends_on", item.line)
            if addr is None:
                raise ConfigError("depends_on entries must be resources like cluster.gpu "
                                  "or module calls like module.pool", b.file, item.line)
            depends_on.append(addr)
    count, for_each = b.attrs.get("count"), b.attrs.get("for_each")
    if count is not None and for_each is not None:
        raise ConfigError(f'{b.type} {b.labels[0]!r} sets both "count" and "for_each"; use '
                          "one of them (for_each = toset(...) or a map, or count = N)",
                          b.file, max(count.line, for_each.line))
    for meta in (count, for_each):
        if meta is not None:
            _no_self_reference(meta, b)
            refs |= expr_refs(meta.expr)
    used = refs & _REPETITION_NAMES
    if used:
        refs -= used
        _check_repetition_names(b, used, count is not None, for_each is not None)
    rc = ResourceConfig(b.type, b.labels[0], b, refs, depends_on, prevent_destroy, ignore,
                        count, for_each, repeated="count" if count is not None else (
                            "for_each" if for_each is not None else None))
    rc.create_before_destroy, rc.replace_triggered_by = cbd, triggers
    return rc


def _no_self_reference(meta: ast.Attribute, b: ast.Block) -> None:
    """count / for_each are read before any instance exists: they cannot use each,
    count or the block itself (Terraform: "Invalid count argument")."""
    for n in ast.walk(meta.expr):
        if isinstance(n, ast.Name) and n.name in ("each", "count"):
            raise ConfigError(f'{meta.name} cannot use "{n.name}": it decides how many '
                              "instances there are; use variables, locals or other "
                              "resources", b.file, n.line)


def _check_repetition_names(b: ast.Block, used: set[str], has_count: bool,
                            has_for_each: bool) -> None:
    """each.* only where for_each is set, count.* only where count is (Terraform's
    "Reference to "each" in context without for_each"). `used`: the ones the block's
    expressions read (found by expr_refs' walk); only a mistake walks again, for its line."""
    wrong = ("each" in used and not has_for_each) or ("count" in used and not has_count)
    if not wrong:
        return
    exprs = [a.expr for a in b.attrs.values() if a.name not in ("count", "for_each")]
    for sub in b.blocks:
        for part in (sub, *sub.blocks):
            exprs += [a.expr for a in part.attrs.values() if a.name != "iterator"]
    for expr in exprs:
        for n in ast.walk(expr):
            if not isinstance(n, ast.GetAttr) or not isinstance(n.obj, ast.Name):
                continue
            if n.obj.name == "each" and not has_for_each:
                raise ConfigError(f'"each" is used in {b.type} {b.labels[0]!r}, which does '
                                  "not set for_each; add for_each = ... (a map or a set of "
                                  "strings) or remove each.key / each.value", b.file, n.line)
            if n.obj.name == "count" and not has_count:
                raise ConfigError(f'"count.index" is used in {b.type} {b.labels[0]!r}, which '
                                  "does not set count; add count = N or remove count.index",
                                  b.file, n.line)


def _dynamic(sub: ast.Block, b: ast.Block, schema: Any) -> str:
    """Check a `dynamic "NAME" { for_each = ...  iterator = I  content { ... } }` block;
    returns NAME. Only nested blocks may be dynamic, as in Terraform."""
    if len(sub.labels) != 1:
        raise ConfigError('a dynamic block takes one label, the nested block it makes: '
                          'dynamic "ssh" { ... }', b.file, sub.line)
    label = sub.labels[0]
    if label not in schema.blocks:
        nested = ", ".join(sorted(schema.blocks)) or "none"
        raise ConfigError(f"dynamic {label!r}: {b.type} has no nested block {label!r} "
                          f"(its nested blocks: {nested}; lifecycle cannot be dynamic)",
                          b.file, sub.line)
    for name, a in sub.attrs.items():
        if name not in ("for_each", "iterator"):
            raise ConfigError(f"unknown attribute {name!r} in dynamic {label!r}; it takes "
                              "for_each, iterator and a content block", b.file, a.line)
    if "for_each" not in sub.attrs:
        raise ConfigError(f"dynamic {label!r} needs for_each = ... (a list, set or map)",
                          b.file, sub.line)
    it = sub.attrs.get("iterator")
    if it is not None and not isinstance(it.expr, ast.Name):
        raise ConfigError(f"dynamic {label!r}: iterator must be a bare name, e.g. "
                          "iterator = item", b.file, it.line)
    contents = sub.blocks_of("content")
    if len(contents) != 1 or len(sub.blocks) != 1:
        raise ConfigError(f"dynamic {label!r} holds exactly one content {{ ... }} block",
                          b.file, sub.line)
    sub_schema = schema.blocks[label]
    for name, a in contents[0].attrs.items():
        if name not in sub_schema.attrs:
            raise ConfigError(f"unknown attribute {name!r} in {label} block; it takes: "
                              f"{', '.join(sub_schema.settable())}", b.file, a.line)
    return label


def _lifecycle(sub: ast.Block, schema: Any) -> tuple[bool, list[str]]:
    prevent = False
    ignore: list[str] = []
    for name, a in sub.attrs.items():
        if name == "prevent_destroy":
            v = _const(a.expr, sub.file, "prevent_destroy")
            if not isinstance(v, bool):
                raise ConfigError("prevent_destroy must be true or false", sub.file, a.line)
            prevent = v
        elif name == "ignore_changes":
            # Terraform writes bare attribute names here: ignore_changes = [env_vars]
            e = a.expr
            if isinstance(e, ast.Name) and e.name == "all":
                ignore = ["all"]
                continue
            if not isinstance(e, ast.TupleExpr):
                raise ConfigError("ignore_changes must be a list of attribute names or all",
                                  sub.file, a.line)
            for item in e.items:
                n = item.name if isinstance(item, ast.Name) else (
                    item.value if isinstance(item, ast.Literal) else None)
                if not isinstance(n, str) or n not in schema.attrs:
                    raise ConfigError(
                        f"ignore_changes: {n!r} is not an attribute of this resource",
                        sub.file, item.line)
                ignore.append(n)
        elif name in ("create_before_destroy", "replace_triggered_by"):
            continue  # lifecycle.read_extras
        else:
            raise ConfigError(f"unknown lifecycle setting {name!r}; use prevent_destroy, "
                              "ignore_changes, create_before_destroy or replace_triggered_by",
                              sub.file, a.line)
    return prevent, ignore


def _address_of(e: ast.Expr) -> str | None:
    if isinstance(e, ast.Index) and isinstance(e.key, ast.Literal):
        e = e.obj  # env.x[0] / env.x["a"]: an order between blocks, as for env.x
    if isinstance(e, ast.GetAttr) and isinstance(e.obj, ast.Name) and e.obj.name in RESOURCE_TYPES:
        return f"{e.obj.name}.{e.name}"
    return None


def expr_refs(expr: ast.Expr) -> set[str]:
    """Addresses (cluster.x) and locals (local.y) an expression mentions, and "each" /
    "count" when it reads each.* / count.* (_resource takes those out again)."""
    # a walk by exact type, literals first: this ran over every expression of every
    # resource at load (~0.3 s for 2,000 envs through ast.walk's isinstance chain)
    out: set[str] = set()
    stack = [expr]
    while stack:
        n = stack.pop()
        t = type(n)
        if t is ast.Literal or t is ast.Name:
            continue
        if t is ast.GetAttr:
            obj = n.obj
            if type(obj) is ast.Name:
                if obj.name in _REF_ROOTS:
                    out.add(f"{obj.name}.{n.name}")
                elif obj.name in _REPETITION_NAMES:
                    out.add(obj.name)
                elif obj.name[:7] == "module.":  # a module's resource (config/modules.py)
                    out.add(f"{obj.name}.{n.name}")
            else:
                stack.append(obj)
        elif t is ast.TupleExpr:
            stack.extend(n.items)
        elif t is ast.ObjectExpr:
            for k, v in n.items:
                stack.append(k)
                stack.append(v)
        elif t is ast.Template:
            stack.extend(p for p in n.parts if type(p) is not str)
        else:
            stack.extend(ast.children(n))
    return out


_REPETITION_NAMES = frozenset(("each", "count"))
_REF_ROOTS = frozenset(RESOURCE_TYPES) | {"local"}


def _resolve_local_refs(cfg: Config) -> None:
    """Replace local.X in each resource's refs by the resources that local needs."""
    memo: dict[str, set[str]] = {}

    def of_local(name: str, stack: tuple[str, ...]) -> set[str]:
        if name in memo:
            return memo[name]
        if name in stack:
            cycle = " -> ".join(f"local.{n}" for n in stack + (name,))
            raise ConfigError(f"locals refer to each other in a loop: {cycle}",
                              cfg.local_files[name], cfg.locals[name].line)
        if name not in cfg.locals:
            return set()  # reported with a file:line when evaluated
        out: set[str] = set()
        for r in expr_refs(cfg.locals[name].expr):
            if r.startswith("local."):
                out |= of_local(r[6:], stack + (name,))
            elif r not in _REPETITION_NAMES:  # reported when evaluated
                out.add(r)
        memo[name] = out
        return out

    def expand(refs: set[str]) -> set[str]:
        out: set[str] = set()
        for r in refs:
            out |= of_local(r[6:], ()) if r.startswith("local.") else {r}
        return out

    for rc in cfg.resources.values():
        rc.refs = expand(rc.refs)
    for out in cfg.outputs.values():
        out.refs = expand(out.refs)


def parse_var_assignment(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"-var {text!r}: write -var NAME=VALUE")
    k, v = text.split("=", 1)
    return k.strip(), v


def read_var_file(path: Path) -> tuple[dict[str, Any], str]:
    """A -var-file: HCL (`name = value` lines) or JSON when it ends in .json."""
    if not path.is_file():
        raise ConfigError(f"-var-file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"-var-file {str(path)!r} cannot be read: "
                          f"{getattr(exc, 'strerror', None) or exc}; save it as UTF-8 text"
                          ) from None
    if path.suffix == ".json":
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not valid JSON: {exc.msg}", path.name, exc.lineno) from None
        except (ValueError, RecursionError) as exc:  # NaN, a 5,000-digit number, deep nesting
            raise ConfigError(f"not a usable JSON variable file: {str(exc)[:100]}",
                              path.name) from None
        if not isinstance(data, dict):
            raise ConfigError('a JSON variable file holds one object: { "name": value }',
                              path.name, 1)
        return data, path.name
    f = parse_text(text, path.name)
    return {k: a.expr for k, a in f.body.attrs.items()}, path.name


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number rhplan can use")


def env_var_overrides() -> dict[str, str]:
    prefix = "RHPLAN_VAR_"
    return {k[len(prefix):]: v for k, v in os.environ.items() if k.startswith(prefix)}
