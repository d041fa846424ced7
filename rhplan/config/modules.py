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
Terraform. A repeated call inside a module is refused for now.

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
from rhplan.errors import ConfigError

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

    stack = stack or (Path(cfg.dir).resolve(),)
    outputs: dict[str, set[str]] = {}
    args: list[str] = []  # the locals made of the calls' arguments (the caller's expressions)
    for call in calls:
        name = call.labels[0]
        meta = _meta_argument(call, nested=len(stack) > 1)
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
            outputs[name] = _Repeated(child.outputs)
            continue
        args += _add_variables(cfg, call, child, prefix)
        outputs[name] = set(child.outputs)
        _add_child(cfg, child, prefix, child_dir)
    cfg.module_outputs = outputs
    _rewrite_caller(cfg, args, lambda e: e)


def _rewrite_caller(cfg: Any, args: list[str], first: Any) -> None:
    """The caller's own expressions that read module.m.OUT (and the locals made of
    module arguments, `args`), each passed through `first`, then rewrite."""
    from rhplan.config.blocks import read_output
    from rhplan.config.resource_block import read_resource

    outputs = cfg.module_outputs
    for key, rc in list(cfg.resources.items()):
        if rc.module == "" and _mentions_module(rc.block):
            block = rc.block
            try:
                block = _map_block(block, first)
            except _Located as exc:
                raise ConfigError(exc.message, block.file, exc.line) from None
            new = read_resource(rewrite_block(block, "", cfg.dir, outputs))
            cfg.resources[key] = new
    for lname, attr in list(cfg.locals.items()):
        if ("." not in lname or lname in args) and _mentions_module_expr(attr.expr):
            try:
                attr = ast.Attribute(attr.name, first(attr.expr), attr.line)
                cfg.locals[lname] = _attr(attr, "", cfg.dir, outputs)
            except _Located as exc:
                raise ConfigError(exc.message, cfg.local_files[lname], exc.line) from None
    for oname, out in list(cfg.outputs.items()):
        if _mentions_module_expr(out.value):
            try:
                value = first(out.value)
            except _Located as exc:
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


class _Repeated(set):  # type: ignore[type-arg]
    """The output names of a call with count / for_each: `module.m` is then a list or
    map of instances, written out once its keys are known (expand_repeated)."""


def _meta_argument(call: ast.Block, nested: bool) -> ast.Attribute | None:
    """A call's count or for_each, checked as Terraform checks them on a resource."""
    name = call.labels[0]
    count, each = call.attrs.get("count"), call.attrs.get("for_each")
    if count is not None and each is not None:
        raise ConfigError(f'module {name!r} sets both "count" and "for_each"; use one of '
                          "them (for_each = a map or toset([...]), or count = N)",
                          call.file, max(count.line, each.line))
    meta = count if count is not None else each
    if meta is not None and nested:
        raise ConfigError(f"module {name!r}: {meta.name} on a module call inside a module is "
                          "not supported yet; repeat the outer module call instead",
                          call.file, meta.line)
    for a in call.attrs.values():
        for n in ast.walk(a.expr):
            if not (isinstance(n, ast.GetAttr) and isinstance(n.obj, ast.Name)):
                continue
            if n.obj.name in ("each", "count") and a.name in ("count", "for_each"):
                raise ConfigError(f"module {name!r}: {a.name} cannot use {n.obj.name}.*: it "
                                  "says how many instances there are", call.file, n.line)
            if n.obj.name == "each" and each is None:
                raise ConfigError(f'"each" is used in module {name!r}, which does not set '
                                  "for_each; add for_each = ... (a map or a set of strings) "
                                  "or remove each.key / each.value", call.file, n.line)
            if n.obj.name == "count" and count is None:
                raise ConfigError(f'"count.index" is used in module {name!r}, which does not '
                                  "set count; add count = N or remove count.index",
                                  call.file, n.line)
    return meta


_KEYS = re.compile(r'\[(?:[0-9]+|"(?:[^"\\]|\\.)*")\]')


def call_path(module: str) -> str:
    """module.m["a"].module.n[0]. -> module.m.module.n: the call, whatever the instance."""
    return _KEYS.sub("", module.rstrip("."))


def expand_repeated(cfg: Any, variables: dict[str, Any], workspace: str = "default") -> None:
    """Make the instances of the module calls with count / for_each, now that variables
    are known: each is flattened as a call of its own, prefix module.m["a"] (or
    module.m[0]), with each.* / count.index in its arguments replaced by the instance's
    values; the caller's `module.m` becomes a map (a list for count) of instance objects.
    The meta-argument may read variables, locals and literals, never a resource."""
    from rhplan.config.decode import Evaluation
    from rhplan.config.refs import resolve_local_refs
    from rhplan.names import instance_address

    pending, cfg.repeated_modules = cfg.repeated_modules, []
    if not pending:
        return
    evaluation = Evaluation(cfg, variables, _known_after_apply, workspace)
    shapes: dict[str, tuple[bool, list[Any] | None, list[str], int]] = {}
    args: list[str] = []
    for call, child, child_dir in pending:
        name = call.labels[0]
        pairs = _instances(evaluation, call, cfg)
        for key, bindings in pairs or ():
            prefix = instance_address("module", name, key)
            bound = ast.Block(call.type, call.labels, {
                k: ast.Attribute(a.name, _bind(a.expr, bindings, call.file), a.line)
                for k, a in call.attrs.items()}, call.blocks, call.file, call.line,
                call.end_line, call.extra)
            args += _add_variables(cfg, bound, child, prefix)
            _add_child(cfg, child, prefix, child_dir)
        known = pairs is not None
        shapes[name] = ("count" in call.attrs, [k for k, _ in pairs or ()] if known else None,
                        sorted(child.outputs), call.line)
    _rewrite_caller(cfg, args, lambda e: _replace(e, lambda n: _collection(n, shapes)))
    from rhplan.config.default_env import settle_bare_envs  # (it imports load)
    settle_bare_envs(cfg)
    resolve_module_depends_on(cfg, final=True)
    resolve_local_refs(cfg)


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


def _known_after_apply(type_: str, name: str, line: int) -> Any:
    from rhplan.config.evaluate import EvalError

    raise EvalError(f"a module's count / for_each reads {type_}.{name}, whose values are "
                    "known only after apply; build it from variables, locals and literals "
                    "(Terraform: Invalid for_each argument)", line)


def _instances(evaluation: Any, call: ast.Block, cfg: Any
               ) -> list[tuple[Any, dict[str, Any]]] | None:
    """(key, what each.* / count.index are) for each instance of a repeated call; None
    when they are unknown (validate without the variable's value)."""
    from rhplan.config.coerce import coerce
    from rhplan.config.evaluate import SetValue, is_known, type_name

    name = call.labels[0]
    meta = call.attrs.get("count") or call.attrs["for_each"]
    where = f"module {name!r}"
    value, mark = evaluation.marked_evaluate(meta.expr, call.file)
    if mark and meta.name == "for_each":
        raise ConfigError(f"{where}: for_each is derived from a sensitive value ({mark}); "
                          "its keys would show in every address: build the keys from values "
                          "that are not sensitive", call.file, meta.line)
    if not is_known(value) and not isinstance(value, (dict, list)):
        cfg.module_errors.append(ConfigError(
            f"{where}: {meta.name} depends on a value not known at plan (a variable without "
            "a value?); give it a value with -var, or build it from locals and literals",
            call.file, meta.line))
        return None  # validate: instances unknown (plan raises the error above)
    if meta.name == "count":
        try:
            n = coerce(value, "number") if not isinstance(value, bool) else None
        except TypeError:
            n = None
        if n is None or n != int(n) or n < 0:
            raise ConfigError(f"{where}: count must be a whole number, zero or more, not "
                              f"{type_name(value) if n is None else n}; e.g. count = 2",
                              call.file, meta.line)
        return [(i, {"count": {"index": i}}) for i in range(int(n))]
    if isinstance(value, dict):
        pairs = sorted(value.items())
    elif isinstance(value, SetValue):
        bad = next((v for v in value if not isinstance(v, str)), None)
        if bad is not None:
            raise ConfigError(f"{where}: for_each takes a set of strings, and this set holds "
                              f"a {type_name(bad)} ({bad!r}); convert its elements with "
                              "tostring, or use a map", call.file, meta.line)
        pairs = [(v, v) for v in sorted(value)]
    elif isinstance(value, list):
        raise ConfigError(f"{where}: for_each must be a map or a set of strings, and this is "
                          "a list; write toset([...]) to use its elements as keys, or a map "
                          "(e.g. { for v in LIST : v.name => v })", call.file, meta.line)
    else:
        raise ConfigError(f"{where}: for_each must be a map or a set of strings, not "
                          f"{type_name(value)}", call.file, meta.line)
    return [(k, {"each": {"key": k, "value": v}}) for k, v in pairs]


def raise_deferred(cfg: Any) -> None:
    """At plan (not validate): a repeated call whose count / for_each was unknown."""
    if cfg.module_errors:
        raise cfg.module_errors[0]


def _bind(e: ast.Expr, bindings: dict[str, Any], file: str) -> ast.Expr:
    """each.key / each.value / count.index in a call's argument: the instance's value."""
    def one(n: Any) -> Any:
        if type(n) is ast.GetAttr and type(n.obj) is ast.Name and n.obj.name in bindings:
            got = bindings[n.obj.name]
            if n.name not in got:
                raise ConfigError(f"{n.obj.name}.{n.name} does not exist; use "
                                  + ("each.key or each.value" if n.obj.name == "each"
                                     else "count.index"), file, n.line)
            return ast.Literal(got[n.name], n.line)
        return None
    return _replace(e, one)


def _collection(n: Any, shapes: dict[str, tuple[bool, list[Any] | None, list[str], int]]
                ) -> Any:
    """`module.m` of a repeated call: a list (count) or map (for_each) of objects holding
    each instance's outputs."""
    if not (type(n) is ast.GetAttr and type(n.obj) is ast.Name and n.obj.name == "module"
            and n.name in shapes):
        inner = n.obj if type(n) is ast.GetAttr else None
        if type(inner) is ast.GetAttr and type(inner.obj) is ast.Name \
                and inner.obj.name == "module" and inner.name in shapes:
            m, out = inner.name, n.name
            if shapes[m][0]:
                raise _Located(f"module.{m} sets count, so it is a list of instances: write "
                               f"module.{m}[0].{out} (one) or module.{m}[*].{out} (all)",
                               n.line)
            raise _Located(f'module.{m} sets for_each, so it is a map of instances: write '
                           f'module.{m}["KEY"].{out} (one) or [for k, m in module.{m} : '
                           f"m.{out}] (all)", n.line)
        return None
    from rhplan.names import instance_address

    is_count, keys, outs, _ = shapes[n.name]
    if keys is None:  # validate: how many instances is not known yet
        from rhplan.config.evaluate import UNKNOWN
        return ast.Literal(UNKNOWN, n.line)
    objects = [ast.ObjectExpr(tuple(
        (ast.Literal(o, n.line), ast.GetAttr(ast.Name("local", n.line),
         f"{instance_address('module', n.name, k)}.output.{o}", n.line)) for o in outs),
        n.line) for k in keys]
    if is_count:
        return ast.TupleExpr(tuple(objects), n.line)
    pairs = zip(keys, objects, strict=True)
    return ast.ObjectExpr(tuple((ast.Literal(k, n.line), o) for k, o in pairs), n.line)


def _replace(e: Any, fn: Any) -> Any:
    """e with every node for which fn gives a new node replaced by it."""
    new = fn(e)
    if new is not None:
        return new
    t = type(e)
    if t is ast.Literal or t is ast.Name:
        return e
    if t is ast.ObjectExpr:
        return ast.ObjectExpr(tuple((_replace(k, fn), _replace(v, fn)) for k, v in e.items),
                              e.line)
    changes = {}
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, tuple):
            changes[f.name] = tuple(x if type(x) is str else _replace(x, fn) for x in v)
        elif f.name != "line" and v is not None and not isinstance(v, (str, bool, int, float)):
            changes[f.name] = _replace(v, fn)
    return dataclasses.replace(e, **changes) if changes else e


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


def _add_variables(cfg: Any, call: ast.Block, child: Any, prefix: str) -> list[str]:
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


def _add_child(cfg: Any, child: Any, prefix: str, child_dir: Path) -> None:
    """Everything of the loaded module, under prefix, into the caller's Config."""
    for key, rc in child.resources.items():
        _check_refs(rc, child)
        address = f"{prefix}.{key}"
        if address in cfg.resources:  # cannot happen with distinct labels; kept honest
            raise ConfigError(f"{address} is declared twice", rc.file, rc.line)
        block = rewrite_block(rc.block, prefix, child_dir)
        module = f"{prefix}.{rc.module}"
        refs = {f"{prefix}.{r}" if not r.startswith("local.") else _local_ref(r, prefix)
                for r in rc.refs}
        refs |= {r for r in _block_refs(block) if r.startswith("local.")}
        cfg.resources[address] = dataclasses.replace(
            rc, block=block, refs=refs, depends_on=[f"{prefix}.{d}" for d in rc.depends_on],
            count=block.attrs.get("count"), for_each=block.attrs.get("for_each"),
            module=module, name=module_name(rc.label, module), block_name=rc.label,
            replace_triggered_by=tuple(dataclasses.replace(t, address=f"{prefix}.{t.address}")
                                       for t in rc.replace_triggered_by))
    for lname, attr in child.locals.items():
        new = _local_name(lname, prefix)
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


def _local_name(name: str, prefix: str) -> str:
    # a module's own local has no dot; a name with one was made by a nested call
    return f"{prefix}.{name}" if "." in name else f"{prefix}.local.{name}"


def _local_ref(ref: str, prefix: str) -> str:
    return "local." + _local_name(ref[6:], prefix)


def _block_refs(block: ast.Block) -> set[str]:
    from rhplan.config.refs import expr_refs

    out: set[str] = set()
    stack = [block]
    while stack:
        b = stack.pop()
        for a in b.attrs.values():
            out |= expr_refs(a.expr)
        stack.extend(b.blocks)
    return out


def _attr(attr: ast.Attribute, prefix: str, module_dir: Path,
          outputs: dict[str, set[str]] | None = None) -> ast.Attribute:
    return ast.Attribute(attr.name, rewrite(attr.expr, prefix, module_dir, outputs), attr.line)


def rewrite_block(b: ast.Block, prefix: str, module_dir: Path,
                  outputs: dict[str, set[str]] | None = None) -> ast.Block:
    try:
        return _rewrite_block(b, prefix, module_dir, outputs)
    except _Located as exc:
        raise ConfigError(exc.message, b.file, exc.line) from None


def _rewrite_block(b: ast.Block, prefix: str, module_dir: Path,
                   outputs: dict[str, set[str]] | None) -> ast.Block:
    return ast.Block(b.type, b.labels,
                     {k: _attr(a, prefix, module_dir, outputs) for k, a in b.attrs.items()},
                     [_rewrite_block(s, prefix, module_dir, outputs) for s in b.blocks],
                     b.file, b.line, b.end_line, b.extra)


def _mentions_module(b: ast.Block) -> bool:
    return any(_mentions_module_expr(a.expr) for a in b.attrs.values()) or any(
        _mentions_module(s) for s in b.blocks)


def _mentions_module_expr(e: ast.Expr) -> bool:
    return any(isinstance(n, ast.Name) and n.name == "module" for n in ast.walk(e))


def rewrite(e: Any, prefix: str, module_dir: Path,
            outputs: dict[str, set[str]] | None = None) -> Any:
    """e as its module's caller reads it (see the module docstring). prefix "" rewrites
    only `module.m.OUT` (checked against `outputs`: module name -> its output names)."""
    t = type(e)
    if t is ast.Literal or t is ast.Name:
        return e
    if t is ast.GetAttr:
        obj = e.obj
        if type(obj) is ast.GetAttr and type(obj.obj) is ast.Name and obj.obj.name == "module" \
                and not (outputs is not None and type(outputs.get(obj.name)) is _Repeated):
            if outputs is not None and obj.name in outputs and e.name not in outputs[obj.name]:
                have = ", ".join(sorted(outputs[obj.name])) or "none"
                raise _Located(f"module.{obj.name} has no output {e.name!r} (its outputs: "
                               f"{have}); declare output \"{e.name}\" in the module or fix "
                               "the name", e.line)
            if outputs is not None and obj.name not in outputs:
                raise _Located(f"unknown module.{obj.name}; declare module \"{obj.name}\" "
                               "{ source = ... }", e.line)
            pre = f"{prefix}." if prefix else ""
            return ast.GetAttr(ast.Name("local", e.line),
                               f"{pre}module.{obj.name}.output.{e.name}", e.line)
        if type(obj) is ast.Name and prefix:
            root = obj.name
            if root == "var":
                return ast.GetAttr(ast.Name("local", obj.line), f"{prefix}.var.{e.name}", e.line)
            if root == "local":
                return ast.GetAttr(obj, _local_name(e.name, prefix), e.line)
            if root in RESOURCE_TYPES or root.startswith("module."):
                return ast.GetAttr(ast.Name(f"{prefix}.{root}", obj.line), e.name, e.line)
            if root == "path" and e.name == "module":
                return ast.Literal(str(module_dir), e.line)
            return e
        return ast.GetAttr(rewrite(obj, prefix, module_dir, outputs), e.name, e.line)
    if t is ast.Template:
        return ast.Template(tuple(p if type(p) is str else rewrite(p, prefix, module_dir, outputs)
                                  for p in e.parts), e.line)
    if t is ast.ObjectExpr:
        return ast.ObjectExpr(tuple((rewrite(k, prefix, module_dir, outputs),
                                     rewrite(v, prefix, module_dir, outputs))
                                    for k, v in e.items), e.line)
    changes = {}
    for f in dataclasses.fields(e):
        v = getattr(e, f.name)
        if isinstance(v, tuple):
            changes[f.name] = tuple(x if type(x) is str else rewrite(x, prefix, module_dir, outputs)
                                    for x in v)
        elif f.name not in ("line",) and v is not None and not isinstance(v, (str, bool, int)):
            changes[f.name] = rewrite(v, prefix, module_dir, outputs)
    return dataclasses.replace(e, **changes) if changes else e


class _Located(ConfigError):
    """An error found while rewriting, whose file the caller of rewrite adds."""

    def __init__(self, message: str, line: int):
        super().__init__(message, None, line)


def module_variable(cfg: Any, local: str, value: Any) -> Any:
    """A module variable's value (the local `local`) converted to its type and checked by
    its validation rules, as a root variable is."""
    from rhplan.config import variables
    from rhplan.config.evaluate import is_known
    from rhplan.config.inputs import convert_variable

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
