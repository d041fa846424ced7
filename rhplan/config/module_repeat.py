"""count / for_each on a module call: its instances are made when variable values are
known, at the start of planning (expand_repeated, called by the Planner), each flattened
as a call of its own under module.m["a"] / module.m[0]; the caller's `module.m` becomes
a map or list of the instances' outputs (config/modules.py says more)."""
from __future__ import annotations

from typing import Any

from rhplan.config import ast
from rhplan.config.module_rewrite import Located, bind, replace
from rhplan.config.modules import (
    add_child,
    add_variables,
    resolve_module_depends_on,
    rewrite_caller,
)
from rhplan.errors import ConfigError


def meta_argument(call: ast.Block, nested: bool) -> ast.Attribute | None:
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
                k: ast.Attribute(a.name, bind(a.expr, bindings, call.file), a.line)
                for k, a in call.attrs.items()}, call.blocks, call.file, call.line,
                call.end_line, call.extra)
            args += add_variables(cfg, bound, child, prefix)
            add_child(cfg, child, prefix, child_dir)
        known = pairs is not None
        shapes[name] = ("count" in call.attrs, [k for k, _ in pairs or ()] if known else None,
                        sorted(child.outputs), call.line)
    rewrite_caller(cfg, args, lambda e: replace(e, lambda n: _collection(n, shapes)))
    from rhplan.config.default_env import settle_bare_envs  # (it imports load)
    settle_bare_envs(cfg)
    resolve_module_depends_on(cfg, final=True)
    resolve_local_refs(cfg)


def _known_after_apply(type_: str, name: str, line: int) -> Any:
    from rhplan.config.values import EvalError

    raise EvalError(f"a module's count / for_each reads {type_}.{name}, whose values are "
                    "known only after apply; build it from variables, locals and literals "
                    "(Terraform: Invalid for_each argument)", line)


def _instances(evaluation: Any, call: ast.Block, cfg: Any
               ) -> list[tuple[Any, dict[str, Any]]] | None:
    """(key, what each.* / count.index are) for each instance of a repeated call; None
    when they are unknown (validate without the variable's value)."""
    from rhplan.config.coerce import coerce
    from rhplan.config.values import SetValue, is_known, type_name

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
                raise Located(f"module.{m} sets count, so it is a list of instances: write "
                               f"module.{m}[0].{out} (one) or module.{m}[*].{out} (all)",
                               n.line)
            raise Located(f'module.{m} sets for_each, so it is a map of instances: write '
                           f'module.{m}["KEY"].{out} (one) or [for k, m in module.{m} : '
                           f"m.{out}] (all)", n.line)
        return None
    from rhplan.names import instance_address

    is_count, keys, outs, _ = shapes[n.name]
    if keys is None:  # validate: how many instances is not known yet
        from rhplan.config.values import UNKNOWN
        return ast.Literal(UNKNOWN, n.line)
    objects = [ast.ObjectExpr(tuple(
        (ast.Literal(o, n.line), ast.GetAttr(ast.Name("local", n.line),
         f"{instance_address('module', n.name, k)}.output.{o}", n.line)) for o in outs),
        n.line) for k in keys]
    if is_count:
        return ast.TupleExpr(tuple(objects), n.line)
    pairs = zip(keys, objects, strict=True)
    return ast.ObjectExpr(tuple((ast.Literal(k, n.line), o) for k, o in pairs), n.line)
