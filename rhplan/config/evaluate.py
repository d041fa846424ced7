"""Evaluate expressions: references, interpolation, operators and functions, in a
Scope (what an expression can see).

Values are plain Python (str, int, float, bool, None, list, dict), plus UNKNOWN for a
value only apply can tell (Terraform's "known after apply") and ResourceValue for a
whole resource (`cluster.gpu`), which attributes that take a reference accept; they and
their conversions are in config/values.py.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rhplan.config import ast, functions
from rhplan.config.values import (
    UNKNOWN,
    EvalError,
    InstanceMap,
    Instances,
    ResourceValue,
    finite,
    index_value,
    instances_message,
    is_known,
    to_bool,
    to_num,
    to_str,
    type_name,
)
from rhplan.errors import ConfigError

__all__ = ["RESOURCE_TYPES", "Scope", "make_evaluator"]

RESOURCE_TYPES = ("cluster", "env", "package", "secret")

Resolver = Callable[[str, str, int], ResourceValue]


class Scope:
    """Everything an expression can see."""

    def __init__(
        self,
        variables: dict[str, Any],
        local_value: Callable[[str, int], Any],
        resolve: Resolver,
        base_dir: Path,
        workspace: str = "default",
    ):
        self.variables = variables
        self.local_value = local_value
        self.resolve = resolve
        self.base_dir = base_dir
        self.workspace = workspace  # rhplan.workspace (Terraform's terraform.workspace)
        # Sensitive values, as Terraform marks them: what an evaluation read that is
        # sensitive is noted in `mark` (the first such reference, for messages), so a
        # value derived from one is known to be sensitive too. Readers reset it first.
        self.mark: str | None = None
        self.sensitive_vars: frozenset[str] = frozenset()
        self.sensitive_attrs: dict[str, list[str]] = {}  # address -> marked attribute paths

    def evaluate(self, expr: ast.Expr, file: str, bindings: dict[str, Any] | None = None) -> Any:
        try:
            return _Evaluator(self, bindings or {}).eval(expr)
        except EvalError as exc:
            raise ConfigError(exc.message, file, exc.line) from None


# per Template node: whether its text holds a %{ } directive (kept with the node, so a
# reused id is noticed)
_DIRECTIVES: dict[int, tuple[ast.Template, bool]] = {}


def make_evaluator(scope: Scope, bindings: dict[str, Any]) -> _Evaluator:
    """An evaluator whose errors stay EvalErrors (templatefile renders with one)."""
    return _Evaluator(scope, bindings)


class _Evaluator:
    def __init__(self, scope: Scope, bindings: dict[str, Any]):
        self.scope = scope
        self.bindings = bindings

    def bound(self, names: dict[str, Any]) -> _Evaluator:
        """This evaluator with more names bound (a for loop's variables)."""
        return _Evaluator(self.scope, {**self.bindings, **names})

    def eval(self, e: ast.Expr) -> Any:
        if isinstance(e, ast.Literal):
            if type(e.value) is str and "%{" in e.value:
                return self.directives(e, (e.value,), e.value)
            return e.value
        if isinstance(e, ast.Template):
            seen = _DIRECTIVES.get(id(e))  # scanning the parts each time costs ~15%
            if seen is None or seen[0] is not e:
                seen = _DIRECTIVES[id(e)] = (e, any(type(p) is str and "%{" in p
                                                    for p in e.parts))
            if seen[1]:
                return self.directives(e, e.parts, None)
            out = []
            for p in e.parts:
                if isinstance(p, str):
                    out.append(p)
                    continue
                v = self.eval(p)
                if v is UNKNOWN:
                    return UNKNOWN
                out.append(to_str(v, e.line))
            return "".join(out)
        if isinstance(e, ast.Name):
            if e.name in self.bindings:
                return self.bindings[e.name]
            raise EvalError(_bare_name_message(e.name), e.line, static=True)
        if isinstance(e, ast.GetAttr):
            return self.get_attr(e)
        if isinstance(e, ast.Index):
            obj = self.value(self.eval(e.obj), e.line)
            key = self.eval(e.key)
            if obj is UNKNOWN or key is UNKNOWN:
                return UNKNOWN
            return index_value(obj, key, e.line)
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.TupleExpr):
            return [self.value(self.eval(i), e.line, keep_ref=True) for i in e.items]
        if isinstance(e, ast.ObjectExpr):
            out_map: dict[str, Any] = {}
            for k, v in e.items:
                key = self.eval(k)
                if key is UNKNOWN:
                    return UNKNOWN
                out_map[to_str(key, e.line)] = self.value(self.eval(v), e.line, keep_ref=True)
            return out_map
        if isinstance(e, ast.Unary):
            v = self.value(self.eval(e.operand), e.line)
            if v is UNKNOWN:
                return UNKNOWN
            if e.op == "!":
                return not to_bool(v, e.line)
            return -to_num(v, e.line)
        if isinstance(e, ast.Binary):
            return self.binary(e)
        if isinstance(e, ast.Conditional):
            c = self.value(self.eval(e.cond), e.line)
            if c is UNKNOWN:
                return UNKNOWN
            return self.eval(e.then if to_bool(c, e.line) else e.otherwise)
        if isinstance(e, ast.Splat):
            obj = self.value(self.eval(e.obj), e.line)
            if obj is UNKNOWN:
                return UNKNOWN
            if isinstance(obj, InstanceMap):
                attr = ".".join(e.names) or "ATTR"
                raise EvalError(f'{obj.address} has "for_each" set, so it is a map: write '
                                f"values({obj.address})[*].{attr} or "
                                f"[for k, v in {obj.address} : v.{attr}]", e.line)
            items = obj if isinstance(obj, list) else [obj]
            out_list = []
            for item in items:
                for n in e.names:
                    item = index_value(item, n, e.line)
                out_list.append(item)
            return out_list
        if isinstance(e, ast.ForExpr):
            return self.for_expr(e)
        raise EvalError(f"unsupported expression {type(e).__name__}", getattr(e, "line", 0))

    def value(self, v: Any, line: int, keep_ref: bool = False) -> Any:
        """A whole resource is only a value where a reference is expected (lists of refs)."""
        if isinstance(v, ResourceValue) and not keep_ref:
            raise EvalError(
                f"{v.address} is a whole resource here; use one of its attributes "
                f"({', '.join(sorted(v.valid))})", line)
        return v

    def get_attr(self, e: ast.GetAttr) -> Any:
        if isinstance(e.obj, ast.Name) and e.obj.name not in self.bindings:
            root = e.obj.name
            if root == "var":
                if e.name not in self.scope.variables:
                    raise EvalError(
                        f"unknown variable var.{e.name}; declare it with "
                        f"variable \"{e.name}\" {{}}",
                        e.line, static=True)
                if e.name in self.scope.sensitive_vars and self.scope.mark is None:
                    self.scope.mark = f"var.{e.name}"
                return self.scope.variables[e.name]
            if root == "local":
                return self.scope.local_value(e.name, e.line)
            if root in RESOURCE_TYPES or root[:7] == "module.":  # module.m.env: modules.py
                return self.scope.resolve(root, e.name, e.line)
            if root in ("rhplan", "terraform"):
                if e.name == "workspace":
                    return self.scope.workspace
                raise EvalError(f"unknown {root}.{e.name}; {root}.workspace is the one "
                                "attribute there", e.line, static=True)
            if root == "path":
                if e.name in ("module", "root", "cwd"):
                    return str(self.scope.base_dir)
                raise EvalError(f"unknown path.{e.name}; use path.module", e.line)
            raise EvalError(_bare_name_message(root), e.line, static=True)
        obj = self.eval(e.obj)
        if obj is UNKNOWN:
            return UNKNOWN
        if isinstance(obj, (Instances, InstanceMap)):
            raise EvalError(instances_message(obj), e.line)
        if isinstance(obj, ResourceValue):
            if e.name not in obj.valid:
                raise EvalError(
                    f"{obj.address} has no attribute {e.name!r}; it has: "
                    f"{', '.join(sorted(obj.valid))}", e.line)
            marked = self.scope.sensitive_attrs.get(obj.address)
            if marked and self.scope.mark is None and any(
                    p == e.name or p.startswith(e.name + ".") for p in marked):
                self.scope.mark = f"{obj.address}.{e.name}"
            return obj.attrs.get(e.name)
        return index_value(obj, e.name, e.line)

    def binary(self, e: ast.Binary) -> Any:
        op = e.op
        left = self.value(self.eval(e.left), e.line)
        if op == "&&" and left is not UNKNOWN and not to_bool(left, e.line):
            return False
        if op == "||" and left is not UNKNOWN and to_bool(left, e.line):
            return True
        right = self.value(self.eval(e.right), e.line)
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        if op in ("&&", "||"):
            return to_bool(right, e.line)
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        a, b = to_num(left, e.line), to_num(right, e.line)
        if op == "+":
            return finite(a + b, e.line)
        if op == "-":
            return finite(a - b, e.line)
        if op == "*":
            return finite(a * b, e.line)
        if op in ("/", "%"):
            if b == 0:
                raise EvalError("division by zero", e.line)
            if op == "%":
                return a % b
            try:
                q = a / b
            except OverflowError:  # a huge int over a small one
                raise EvalError("the result is too large a number", e.line) from None
            return int(q) if q == int(q) else q
        if op == "<":
            return a < b
        if op == ">":
            return a > b
        if op == "<=":
            return a <= b
        if op == ">=":
            return a >= b
        raise EvalError(f"unknown operator {op}", e.line)

    def for_expr(self, e: ast.ForExpr) -> Any:
        coll = self.value(self.eval(e.collection), e.line)
        if coll is UNKNOWN:
            return UNKNOWN
        if isinstance(coll, dict):
            pairs = sorted(coll.items())  # Terraform walks a map in key order
        elif isinstance(coll, list):
            pairs = list(enumerate(coll))
        else:
            raise EvalError("a for expression needs a list or a map", e.line)
        out_list: list[Any] = []
        out_map: dict[str, Any] = {}
        for k, v in pairs:
            b = dict(self.bindings)
            b[e.value_var] = v
            if e.key_var:
                b[e.key_var] = k
            sub = _Evaluator(self.scope, b)
            if e.cond is not None and not to_bool(sub.eval(e.cond), e.line):
                continue
            if e.key is not None:
                key = to_str(sub.eval(e.key), e.line)
                if e.group:
                    out_map.setdefault(key, []).append(sub.eval(e.value))
                elif key in out_map:
                    raise EvalError(f"two elements produce the key {key!r} in this for "
                                    "expression; make the keys unique, or write ... after "
                                    "the value to group them into lists", e.line)
                else:
                    out_map[key] = sub.eval(e.value)
            else:
                out_list.append(sub.eval(e.value))
        return out_map if e.key is not None else out_list

    def directives(self, e: ast.Expr, parts: tuple[Any, ...], plain: Any) -> Any:
        """A string holding %{ for } / %{ if } directives (python-hcl2 leaves them raw)."""
        from rhplan.config import template  # only strings with directives need it

        tree = template.compiled(e, parts)
        return plain if tree is None else template.render(tree, self)

    def call(self, e: ast.Call) -> Any:
        if e.name in ("sensitive", "nonsensitive"):
            return self.mark_call(e)
        lazy = functions.LAZY.get(e.name)
        if lazy is not None:  # try() / can(): they catch their arguments' errors
            return lazy(lambda x: self.value(self.eval(x), e.line), e.args, e.line)
        fn = functions.FUNCTIONS.get(e.name)
        if fn is None:
            raise EvalError(_unknown_function_message(e.name), e.line, static=True)
        args = [self.value(self.eval(a), e.line) for a in e.args]
        if e.expand_last and args:
            last = args.pop()
            if not isinstance(last, list):
                raise EvalError(f"{e.name}(...): the argument before ... must be a list", e.line)
            args.extend(last)
        if any(not is_known(a) for a in args):
            return UNKNOWN
        try:
            _signature(fn).bind(self.scope, *args)
        except TypeError:
            raise EvalError(f"{e.name}() does not take {len(args)} argument(s); "
                            f"{_usage(e.name)}", e.line) from None
        try:
            return finite(fn(self.scope, *args), e.line)
        except EvalError as exc:
            if not exc.line:  # raised by a helper that does not know the line
                exc.line = e.line
            raise
        except (TypeError, AttributeError):
            # the functions are plain Python: a value of the wrong type they do not check
            # shows up as one of these (fuzzing found lower(1), split(1, 2) and merge(1))
            raise EvalError(f"{e.name}(): an argument has the wrong type "
                            f"({', '.join(type_name(a) for a in args)}); "
                            f"{_usage(e.name)}", e.line) from None
        except (ValueError, OSError, KeyError, ArithmeticError, RecursionError) as exc:
            raise EvalError(f"{e.name}(): {exc}", e.line) from None


    def mark_call(self, e: ast.Call) -> Any:
        """sensitive(v) marks v sensitive; nonsensitive(v) drops the mark of v alone."""
        if len(e.args) != 1 or e.expand_last:
            raise EvalError(f"{e.name}() takes one argument; write {e.name}(value)", e.line)
        before = self.scope.mark
        self.scope.mark = None
        try:
            value = self.value(self.eval(e.args[0]), e.line)
        finally:
            self.scope.mark = before if e.name == "nonsensitive" else (
                before or self.scope.mark or "sensitive()")
        return value


def _unknown_function_message(name: str) -> str:
    import difflib  # only on this error path

    close = difflib.get_close_matches(name, functions.names(), n=3)
    hint = (f"did you mean {' or '.join(c + '()' for c in close)}?" if close else
            "the README's language section lists the functions")
    return f"unknown function {name}(); {hint}"


@functools.cache
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """A function's signature, worked out once: inspect.signature on every call was
    about a tenth of a 2,000-env plan's CPU."""
    return inspect.signature(fn)


def _usage(name: str) -> str:
    params = list(_signature(functions.FUNCTIONS[name]).parameters.values())[1:]  # not scope
    shown = ", ".join(("..." + p.name) if p.kind is p.VAR_POSITIONAL else
                      (f"{p.name}?" if p.default is not p.empty else p.name) for p in params)
    return f"write {name}({shown})"


def _bare_name_message(name: str) -> str:
    if name == "each":
        return ('"each" can be used only in a resource block that sets for_each; add '
                "for_each = ... to the block, or use a value that does not need it")
    if name == "count":
        return ('"count" (count.index) can be used only in a resource block that sets '
                "count; add count = ... to the block, or use a value that does not need it")
    return (f"unknown reference {name!r}; write var.NAME, local.NAME, or TYPE.NAME.ATTR "
            f"for a resource (types: {', '.join(RESOURCE_TYPES)})")
