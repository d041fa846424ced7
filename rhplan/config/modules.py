"""Modules: `module "m" { source = "./modules/gpu-pool"  size = 2 }`.

A module call is flattened into its caller's Config at load time, so the graph, the
planner and the state see ordinary resources, only with longer addresses
(`module.m.env.x`). What the module's expressions mean is kept by rewriting them once:

- its resources: `env.x` -> a reference whose root is `module.m.env` (the evaluator and
  the planner resolve `ROOT.NAME`, which is the full address);
- its variables, locals and outputs become the caller's locals `module.m.var.V`,
  `module.m.local.L` and `module.m.output.O` (a variable's local is the caller's
  argument expression, or the variable's default; its type and validation rules are
  applied when it is evaluated, see decode.Evaluation);
- `module.m.O` in the caller reads the local `module.m.output.O`;
- `path.module` is the module's folder.

Nested modules are the same step applied again: the inner call is flattened into the
module's Config first, and those names (all with a dot) are prefixed once more.

`count` / `for_each` on a call (Terraform's meta-arguments): the module is loaded and
checked at load time like any call, but its instances are made when variable values are
known, at the start of planning (expand_repeated, called by the Planner): the
meta-argument is evaluated from variables, locals and literals only (a resource in it is
"known only after apply", an error naming its line), and each instance is flattened as a
call of its own with prefix `module.m["a"]` (for_each) or `module.m[0]` (count), its
arguments with each.key / each.value / count.index replaced by that instance's values.
So the graph, the planner and the state see `module.m["a"].env.x` as an ordinary
address, changing one key plans only that instance's resources, and on-host names stay
apart (module_name hashes the whole address, key included). In the caller `module.m`
becomes a map (for_each) or list (count) of objects holding each instance's outputs, so
`module.m["a"].OUT`, `module.m[0].OUT`, `[for k, m in module.m : m.OUT]` all read as in
Terraform. A repeated call inside a module is refused for now. (Rewriting:
config/module_rewrite.py; repeated calls: config/module_repeat.py.)

A module's own `moved` and `removed` blocks name its addresses: they are the caller's
with the call's (or instance's) prefix, like its resources; `import` blocks are the root
configuration's only, as in Terraform.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from rhplan.config import ast
from rhplan.config.evaluate import RESOURCE_TYPES
from rhplan.config.module_rewrite import (
    Located,
    Repeated,
    block_refs,
    local_name,
    local_ref,
    mentions_module,
    mentions_module_expr,
    rewrite,
    rewrite_attr,
    rewrite_block,
)
from rhplan.errors import ConfigError

__all__ = ["META_ARGS", "add_child", "add_variables", "call_path", "expand", "expand_targets",
           "module_name", "module_variable", "resolve_module_depends_on", "rewrite_caller"]

# what a module block takes besides the module's variables
META_ARGS = ("source", "count", "for_each", "depends_on", "providers", "version")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def module_name(label: str, module: str) -> str:
    """The on-host name of resource `label` inside module `module` ("module.m."):
    env "x" in module.gpu -> x-gpu-1a2b3c4d, apart from the root's x and from the same
    block in another module call (the hash is of the whole address)."""
    path = module.rstrip(".")
    slug = _UNSAFE.sub("-", path.replace("module.", "")).strip("-")[:40]
    tag = hashlib.sha256(f"{path}.{label}".encode()).hexdigest()[:8]
    return f"{label[:72]}-{slug}-{tag}"


def expand(cfg: Any, calls: list[ast.Block], stack: tuple[Path, ...]) -> None:
    """Flatten each module call of cfg into cfg (resources, locals), then rewrite the
    caller's own `module.m.OUT` references. stack: the folders being loaded, the root
    configuration's first (cycle detection, file names relative to the root)."""
    from rhplan.config.load import load_module
    from rhplan.config.module_repeat import meta_argument  # (it imports this module)

    stack = stack or (Path(cfg.dir).resolve(),)
    outputs: dict[str, set[str]] = {}
    args: list[str] = []  # the locals made of the calls' arguments (the caller's expressions)
    for call in calls:
        name = call.labels[0]
        meta = meta_argument(call, nested=len(stack) > 1)
        child_dir = _source_dir(call, cfg.dir, stack)
        child = load_module(child_dir, stack + (child_dir,), stack[0])
        # (the call as written, and which of its arguments are sensitive): show -json
        cfg.module_calls[f"module.{name}"] = (call, frozenset(
            v for v, var in child.variables.items() if var.sensitive))
        prefix = f"module.{name}"
        for block in child.imports:
            raise ConfigError("an import block may only be in the root configuration (as in "
                              "Terraform); write it there with the full address "
                              f"(to = module.{name}.TYPE.NAME)", block.file, block.line)
        _check_outputs(child)
        if meta is not None:  # instances made when variables are known (expand_repeated)
            _check_arguments(call, child)
            cfg.repeated_modules.append((call, child, child_dir))
            outputs[name] = Repeated(child.outputs)
            continue
        args += add_variables(cfg, call, child, prefix)
        outputs[name] = set(child.outputs)
        add_child(cfg, child, prefix, child_dir)
    cfg.module_outputs = outputs
    rewrite_caller(cfg, args, lambda e: e)


def rewrite_caller(cfg: Any, args: list[str], first: Any) -> None:
    """The caller's own expressions that read module.m.OUT (and the locals made of
    module arguments, `args`), each passed through `first`, then rewrite."""
    from rhplan.config.blocks import read_output
    from rhplan.config.resource_block import read_resource

    outputs = cfg.module_outputs
    for key, rc in list(cfg.resources.items()):
        if rc.module == "" and mentions_module(rc.block):
            block = rc.block
            try:
                block = _map_block(block, first)
            except Located as exc:
                raise ConfigError(exc.message, block.file, exc.line) from None
            new = read_resource(rewrite_block(block, "", cfg.dir, outputs))
            cfg.resources[key] = new
    for lname, attr in list(cfg.locals.items()):
        if ("." not in lname or lname in args) and mentions_module_expr(attr.expr):
            try:
                attr = ast.Attribute(attr.name, first(attr.expr), attr.line)
                cfg.locals[lname] = rewrite_attr(attr, "", cfg.dir, outputs)
            except Located as exc:
                raise ConfigError(exc.message, cfg.local_files[lname], exc.line) from None
    for oname, out in list(cfg.outputs.items()):
        if mentions_module_expr(out.value):
            try:
                value = first(out.value)
            except Located as exc:
                raise ConfigError(exc.message, out.file, exc.line) from None
            block = ast.Block("output", (oname,), {
                "value": ast.Attribute("value", value, out.value.line)}, [],
                out.file, out.line)
            new_out = read_output(rewrite_block(block, "", cfg.dir, outputs))
            new_out.sensitive, new_out.description = out.sensitive, out.description
            cfg.outputs[oname] = new_out


def _map_block(b: ast.Block, fn: Any) -> ast.Block:
    # (depends_on names module calls as addresses: resolve_module_depends_on)
    return ast.Block(b.type, b.labels, {k: ast.Attribute(a.name, fn(a.expr), a.line)
                                        if k != "depends_on" else a
                                        for k, a in b.attrs.items()},
                     [_map_block(s, fn) for s in b.blocks], b.file, b.line, b.end_line,
                     b.extra)


_KEYS = re.compile(r'\[(?:[0-9]+|"(?:[^"\\]|\\.)*")\]')


def call_path(module: str) -> str:
    """module.m["a"].module.n[0]. -> module.m.module.n: the call, whatever the instance."""
    return _KEYS.sub("", module.rstrip("."))


def resolve_module_depends_on(cfg: Any, final: bool = False) -> None:
    """depends_on = [module.m] (or module.m["k"]): every resource inside that call (or
    instance). A repeated call's instances exist only when planning (final): until then
    the entry is kept."""
    from rhplan.names import is_module_address

    pending = {f"module.{c[0].labels[0]}" for c in cfg.repeated_modules}
    for rc in cfg.resources.values():
        if not any(d[:7] == "module." and is_module_address(d) for d in rc.depends_on):
            continue
        out: list[str] = []
        for d in rc.depends_on:
            if not is_module_address(d):
                out.append(d)
                continue
            inside = sorted(a for a in cfg.resources
                            if a.startswith(d + ".") or a.startswith(d + "["))
            call = call_path(d)
            if not final and call in pending:
                out.append(d)
            elif call not in cfg.module_calls:
                raise ConfigError(f"depends_on names {d}, which is not declared; declare "
                                  f'module "{d.split(".")[1].split("[")[0]}" or fix the name',
                                  rc.file, rc.line)
            else:
                out += [a for a in inside if a not in out]
        rc.depends_on = out


def _source_dir(call: ast.Block, caller_dir: Path, stack: tuple[Path, ...]) -> Path:
    name = call.labels[0]
    src = call.attrs.get("source")
    if src is None:
        raise ConfigError(f'module {name!r} needs source = "./modules/NAME" (a local folder)',
                          call.file, call.line)
    if not isinstance(src.expr, ast.Literal) or not isinstance(src.expr.value, str):
        raise ConfigError(f"module {name!r}: source must be a literal string, e.g. "
                          '"./modules/gpu-pool"', call.file, src.line)
    text = src.expr.value
    if text not in (".", "..") and not text.startswith(("./", "../")):
        raise ConfigError(f"module {name!r}: source {text!r} is not a local path; rhplan reads "
                          'modules from local folders only: write source = "./modules/NAME" '
                          "(a registry or git source is not supported)", call.file, src.line)
    d = (Path(caller_dir) / text).resolve()
    if not d.is_dir():
        raise ConfigError(f"module {name!r}: source folder {text!r} does not exist (looked in "
                          f"{d}); create it or fix source", call.file, src.line)
    if not any(p.is_file() for p in d.glob("*.hcl")):
        raise ConfigError(f"module {name!r}: source folder {text!r} has no *.hcl files; write "
                          "the module's main.hcl there or fix source", call.file, src.line)
    if d in stack:
        chain = " -> ".join(_shown(p, stack[0]) for p in (*stack[1:], d)) or _shown(d, stack[0])
        raise ConfigError(f"module {name!r} includes {text!r}, which is already being loaded "
                          f"({chain}): a module cannot include itself; remove the call",
                          call.file, call.line)
    return d


def _shown(p: Path, root: Path) -> str:
    return os.path.relpath(p, root)


def _check_outputs(child: Any) -> None:
    """An output may read only what its module declares (Terraform checks this at
    validate, not when the caller happens to use the output)."""
    for out in child.outputs.values():
        for n in ast.walk(out.value):
            if not isinstance(n, ast.GetAttr) or not isinstance(n.obj, ast.Name):
                continue
            root, what = n.obj.name, None
            if root == "var" and n.name not in child.variables:
                what = f"var.{n.name}"
            elif root == "local" and n.name not in child.locals:
                what = f"local.{n.name}"
            elif root in RESOURCE_TYPES and f"{root}.{n.name}" not in child.resources:
                what = f"{root}.{n.name}"
            if what:
                raise ConfigError(f"output {out.name!r} refers to {what}, which this module "
                                  "does not declare; declare it or fix the reference",
                                  out.file, n.line)


def _check_arguments(call: ast.Block, child: Any) -> None:
    name = call.labels[0]
    for arg, a in call.attrs.items():
        if arg not in META_ARGS and arg not in child.variables:
            have = ", ".join(sorted(child.variables)) or "none"
            raise ConfigError(f"module {name!r} has no variable {arg!r} (its variables: "
                              f"{have}); remove the argument or declare variable \"{arg}\" "
                              "in the module", call.file, a.line)


def add_variables(cfg: Any, call: ast.Block, child: Any, prefix: str) -> list[str]:
    name = call.labels[0]
    args = []
    _check_arguments(call, child)
    for vname, v in child.variables.items():
        lname = f"{prefix}.var.{vname}"
        given = call.attrs.get(vname)
        if given is not None:
            cfg.locals[lname] = ast.Attribute(lname, given.expr, given.line)
            cfg.local_files[lname] = call.file
            args.append(lname)
        elif v.default is not None:
            cfg.locals[lname] = ast.Attribute(lname, v.default, v.default.line)
            cfg.local_files[lname] = v.file
        else:
            raise ConfigError(f"module {name!r} needs a value for variable {vname!r} (declared "
                              f"at {v.file}:{v.line}, without a default); add {vname} = ... "
                              "to the module block", call.file, call.line)
        cfg.module_vars[lname] = v
    return args


def add_child(cfg: Any, child: Any, prefix: str, child_dir: Path) -> None:
    """Everything of the loaded module, under prefix, into the caller's Config."""
    for key, rc in child.resources.items():
        _check_refs(rc, child)
        address = f"{prefix}.{key}"
        if address in cfg.resources:  # cannot happen with distinct labels; kept honest
            raise ConfigError(f"{address} is declared twice", rc.file, rc.line)
        block = rewrite_block(rc.block, prefix, child_dir)
        module = f"{prefix}.{rc.module}"
        refs = {f"{prefix}.{r}" if not r.startswith("local.") else local_ref(r, prefix)
                for r in rc.refs}
        refs |= {r for r in block_refs(block) if r.startswith("local.")}
        cfg.resources[address] = dataclasses.replace(
            rc, block=block, refs=refs, depends_on=[f"{prefix}.{d}" for d in rc.depends_on],
            count=block.attrs.get("count"), for_each=block.attrs.get("for_each"),
            module=module, name=module_name(rc.label, module), block_name=rc.label,
            replace_triggered_by=tuple(dataclasses.replace(t, address=f"{prefix}.{t.address}")
                                       for t in rc.replace_triggered_by))
    for lname, attr in child.locals.items():
        new = local_name(lname, prefix)
        cfg.locals[new] = ast.Attribute(new, rewrite(attr.expr, prefix, child_dir), attr.line)
        cfg.local_files[new] = child.local_files[lname]
    for oname, out in child.outputs.items():
        new = f"{prefix}.output.{oname}"
        cfg.locals[new] = ast.Attribute(new, rewrite(out.value, prefix, child_dir), out.line)
        cfg.local_files[new] = out.file
    for vname, v in child.module_vars.items():
        cfg.module_vars[f"{prefix}.{vname}"] = v
    for pname, p in child.providers.items():
        cfg.providers.setdefault(pname, p)
    # a module's moved / removed blocks name its own addresses: the caller's, prefixed
    cfg.moved += [dataclasses.replace(m, source=f"{prefix}.{m.source}", to=f"{prefix}.{m.to}")
                  for m in child.moved]
    cfg.removed += [dataclasses.replace(r, source=f"{prefix}.{r.source}") for r in child.removed]
    for path, c in child.module_calls.items():  # nested calls, by their path without keys
        cfg.module_calls.setdefault(f"{call_path(prefix)}.{path}", c)
    cfg.files.extend(child.files)


def _check_refs(rc: Any, child: Any) -> None:
    """A reference to a resource the module does not declare, named as the module's
    author wrote it (the graph would name the prefixed address)."""
    for ref in sorted(rc.refs | set(rc.depends_on)):
        if not ref.startswith("local.") and ref not in child.resources:
            raise ConfigError(f"{rc.address} refers to {ref}, which this module does not "
                              "declare; declare it in the module, pass it in as a variable, "
                              "or fix the name", rc.file, _line_of(rc.block, ref))


def _line_of(block: ast.Block, ref: str) -> int:
    """The line of the first attribute that mentions ref (the block's line if none)."""
    from rhplan.config.refs import address_of, expr_refs

    stack = [block]
    while stack:
        b = stack.pop(0)
        for a in b.attrs.values():
            if ref in expr_refs(a.expr) or (a.name == "depends_on" and any(
                    address_of(i) == ref for i in ast.children(a.expr))):
                return a.line
        stack.extend(b.blocks)
    return block.line


def module_variable(cfg: Any, local: str, value: Any) -> Any:
    """A module variable's value (the local `local`) converted to its type and checked by
    its validation rules, as a root variable is."""
    from rhplan.config import variables
    from rhplan.config.inputs import convert_variable
    from rhplan.config.values import is_known

    v = cfg.module_vars[local]
    if not is_known(value):
        return value
    if value is None and v.default is not None and not v.nullable:  # null: the default
        from rhplan.config.evaluate import Scope
        from rhplan.config.inputs import no_locals, no_resources
        value = Scope({}, no_locals, no_resources, cfg.dir).evaluate(v.default, v.file)
    value = convert_variable(value, v, local,
                              cfg.local_files[local], cfg.locals[local].line)
    variables.check(v, value, {v.name: value}, {v.name: v}, cfg.dir)
    return value


def expand_targets(targets: list[str], cfg: Any, state: Any) -> list[str]:
    """-target module.m means every resource inside it (nested calls too), as in
    Terraform; other addresses are kept as given."""
    from rhplan.names import block_address, is_module_address

    out: list[str] = []
    for t in targets:
        inside: set[str] = set()
        if is_module_address(t):
            inside = {a for a in cfg.resources if a.startswith(t + ".")}
            inside |= {block_address(a) for a in state.resources if a.startswith(t + ".")}
        out += sorted(inside) if inside else [t]
    return out
