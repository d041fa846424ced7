"""Turn declarations into values: variables, locals, and each resource's attributes
checked against its schema."""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rhplan.config import ast
from rhplan.config.evaluate import (
    UNKNOWN,
    InstanceMap,
    Instances,
    ResourceValue,
    Scope,
    SetValue,
    instances_message,
    parse_number,
    type_name,
)
from rhplan.config.load import (
    Config,
    ResourceConfig,
    parse_var_assignment,
    read_var_file,
)
from rhplan.config.parse import parse_text
from rhplan.config.schema import RESOURCE_SCHEMAS, BlockSchema
from rhplan.errors import ConfigError


def resolve_variables(cfg: Config, cli_vars: list[str] = (), var_files: list[str] = (),
                      order: list[str] | None = None, warnings: list[str] | None = None,
                      missing_unknown: bool = False) -> dict[str, Any]:
    """Terraform's precedence, later wins: defaults, TF_VAR_name / RHPLAN_VAR_name
    (RHPLAN_ wins when both are set), rhplan.tfvars, rhplan.tfvars.json, *.auto.tfvars and
    *.auto.tfvars.json in lexical order, then -var-file and -var in the order given
    (`order`: "var" / "var-file" per option as they came; else every file, then -var).
    Values for undeclared variables in auto-loaded files are warned about, not refused.
    missing_unknown (validate, as Terraform's): a variable without a value is unknown."""
    no_refs = Scope({}, _no_locals, _no_resources, cfg.dir)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}  # where a value not from the default came from (messages)
    for name, v in cfg.variables.items():
        if v.default is not None:
            values[name] = no_refs.evaluate(v.default, v.file)
    for name, (raw, var) in environment_variables().items():
        if name in cfg.variables:
            values[name] = _from_text(cfg, name, raw, var)
            origin[name] = var

    def from_file(path: Path, explicit: bool) -> None:
        assigned, display = read_var_file(path)
        for name, value in assigned.items():
            line = getattr(value, "line", None)
            if name not in cfg.variables:
                if not explicit and warnings is not None:
                    warnings.append(
                        f"Warning: {display}{f':{line}' if line else ''}: a value for "
                        f"undeclared variable {name!r} is ignored; declare variable "
                        f'"{name}" {{}} or remove it')
                    continue
                raise ConfigError(f"no variable {name!r} is declared; add variable \"{name}\" "
                                  "{} to the configuration or fix the name", display, line)
            values[name] = (no_refs.evaluate(value, display) if not isinstance(value, (str, int,
                            float, bool, list, dict)) and value is not None else value)
            origin[name] = display if not explicit else f"-var-file {display}"

    for path in auto_var_files(cfg.dir):
        from_file(path, explicit=False)
    files, texts = list(var_files), list(cli_vars)
    kinds = order if order is not None and sorted(order) == sorted(
        ["var-file"] * len(files) + ["var"] * len(texts)) else \
        ["var-file"] * len(files) + ["var"] * len(texts)
    for kind in kinds:
        if kind == "var-file":
            vf = files.pop(0)
            path = Path(vf) if Path(vf).is_absolute() else cfg.dir / vf
            if not path.is_file() and Path(vf).is_file():
                path = Path(vf)
            from_file(path, explicit=True)
            continue
        name, raw = parse_var_assignment(texts.pop(0))
        _check_declared(cfg, name, "-var")
        values[name] = _from_text(cfg, name, raw, f"-var {name}")
        origin[name] = f"-var {name}"
    for name, v in cfg.variables.items():
        if name not in values and missing_unknown:
            values[name] = UNKNOWN
        elif name not in values:
            raise ConfigError(
                f"variable {name!r} has no value; give it a default, or pass -var {name}=VALUE, "
                f"-var-file=FILE (a .json or HCL file setting {name}), write it in "
                f"rhplan.tfvars, or set RHPLAN_VAR_{name}", v.file, v.line)
        line = v.default.line if v.default is not None else v.line
        if values[name] is None and not v.nullable and v.default is not None:
            values[name] = no_refs.evaluate(v.default, v.file)  # null means "use the default"
        values[name] = _convert_variable(values[name], v, name, v.file, line, origin.get(name))
    from rhplan.config import variables
    for name, v in cfg.variables.items():  # once every value is known: rules may read others
        variables.check(v, values[name], values, cfg.variables, cfg.dir)
    return values


# variables read from the environment; the first prefix set for a name wins
ENV_PREFIXES = ("RHPLAN_VAR_", "TF_VAR_")


def environment_variables() -> dict[str, tuple[str, str]]:
    """name -> (text, the variable it came from) for RHPLAN_VAR_name and TF_VAR_name."""
    import os
    out: dict[str, tuple[str, str]] = {}
    for prefix in reversed(ENV_PREFIXES):
        for k, v in os.environ.items():
            if k.startswith(prefix) and len(k) > len(prefix):
                out[k[len(prefix):]] = (v, k)
    return out


def auto_var_files(directory: Path) -> list[Path]:
    """rhplan.tfvars, rhplan.tfvars.json, then *.auto.tfvars(.json) by name, as
    Terraform loads terraform.tfvars and *.auto.tfvars."""
    d = Path(directory)
    first = [d / "rhplan.tfvars", d / "rhplan.tfvars.json"]
    auto = sorted((p for p in d.iterdir() if p.name.endswith((".auto.tfvars",
                                                               ".auto.tfvars.json"))),
                  key=lambda p: p.name)
    return [p for p in [*first, *auto] if p.is_file()]


def _check_declared(cfg: Config, name: str, where: str) -> None:
    if name not in cfg.variables:
        raise ConfigError(f"{where}: no variable {name!r} is declared; add variable \"{name}\" {{}}"
                          " to the configuration or fix the name")


def _from_text(cfg: Config, name: str, raw: str, where: str) -> Any:
    """-var values are strings, except for list/map/number/bool variables, parsed as HCL."""
    t = cfg.variables[name].type
    if t in (None, "string", "any") or t is None:
        return raw
    if t == "number":
        try:
            return coerce(raw, "number")
        except TypeError:
            raise ConfigError(f"{where}: {raw!r} is not a number; give one, e.g. {name}=4"
                              ) from None
    if t == "bool":
        if raw not in ("true", "false"):
            raise ConfigError(f"{where}: {raw!r} is not a bool; give true or false")
        return raw == "true"
    try:
        f = parse_text(f"v = {raw}\n", where)
        return Scope({}, _no_locals, _no_resources, cfg.dir).evaluate(f.body.attrs["v"].expr,
                                                                     where)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {raw!r} is not a valid {t} ({exc.message}); write it in "
                          'HCL, e.g. ["a", "b"] or { k = "v" }') from None


def _convert_variable(value: Any, v: Any, name: str, file: str, line: int,
                      origin: str | None = None) -> Any:
    if v.type_spec is None:
        return value
    from rhplan.config import variables
    try:
        return variables.convert(value, v.type_spec, secret=v.sensitive)
    except TypeError as exc:
        given = f" (the value given by {origin})" if origin else ""
        if origin:  # the declaration's type is what the value must fit
            line = v.line
        raise ConfigError(f"variable {name!r}{given}: {exc}; its type is {v.type}", file, line
                          ) from None


def _no_locals(name: str, line: int) -> Any:
    from rhplan.config.evaluate import EvalError
    raise EvalError("variables cannot refer to locals", line)


def _no_resources(type_: str, name: str, line: int) -> ResourceValue:
    from rhplan.config.evaluate import EvalError
    raise EvalError("variables cannot refer to resources", line)


# the module path an address inside a module call starts with (module.m.module.n.)
_MODULE_PREFIX = re.compile(r'^(?:module\.[A-Za-z_][A-Za-z0-9_-]*'
                            r'(?:\[(?:[0-9]+|"(?:[^"\\]|\\.)*")\])?\.)+')  # module.m["a"].


def coerce(value: Any, t: str) -> Any:
    """Convert value to schema type t, or raise TypeError saying what was found."""
    if value is UNKNOWN or value is None:
        return value
    if t == "any":
        if isinstance(value, ResourceValue):
            raise TypeError(f"found the whole resource {value.address}")
        return value
    if t == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
    elif t == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            n = parse_number(value)  # never inf or nan: "1e999" is not a number here
            if n is not None:
                return n
    elif t == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
    elif t.startswith("list(") and isinstance(value, list):
        inner = t[5:-1]
        return [coerce(v, inner) for v in value]
    elif t.startswith("map(") and isinstance(value, dict):
        inner = t[4:-1]
        return {str(k): coerce(v, inner) for k, v in value.items()}
    elif t.startswith("ref("):
        want = t[4:-1]
        if isinstance(value, ResourceValue) and _MODULE_PREFIX.sub(
                "", value.address).startswith(want + "."):  # module.m.cluster.c is a cluster
            return value.address
        if isinstance(value, (Instances, InstanceMap)):
            raise TypeError(instances_message(value).replace("its attributes must be read",
                                                             "it must be referred to"))
        raise TypeError(f"expected a reference to a {want} (like {want}.NAME), found "
                        f"{_describe(value)}")
    raise TypeError(f"expected {t}, found {_describe(value)}")


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"string {value!r}"
    return type_name(value)


# locals evaluate recursively: a chain this long would near Python's recursion limit
MAX_LOCALS_CHAIN = 32


class Evaluation:
    """Evaluates locals (lazily, once) and resource blocks for one plan."""

    def __init__(self, cfg: Config, variables: dict[str, Any],
                 resolve: Callable[[str, str, int], ResourceValue], workspace: str = "default"):
        self.cfg = cfg
        self._locals: dict[str, Any] = {}
        self._evaluating: list[str] = []
        self.scope = Scope(variables, self._local, resolve, cfg.dir, workspace)
        sensitive_vars, self._sensitive_locals = secret_sources(cfg)
        self.scope.sensitive_vars = frozenset(sensitive_vars)
        self._local_marks: dict[str, str | None] = {}
        # count.index / each.* (and a dynamic block's iterator) while one instance of a
        # repeated block is evaluated; locals never see them
        self._bindings: dict[str, Any] | None = None
        # attribute paths ("env_vars", "env_vars.TOKEN") whose value is sensitive, by address
        self.sensitive_attrs = self.scope.sensitive_attrs
        # validate: a dynamic block's for_each may be unknown (set by workspace.validate)
        self.validating = False

    def _local(self, name: str, line: int) -> Any:
        if name in self._locals:
            self._carry(self._local_marks.get(name))
            return self._locals[name]
        value, mark = self.marked(name, line)
        self._local_marks[name] = mark
        self._carry(mark)
        return value

    def _carry(self, mark: str | None) -> None:
        if mark and self.scope.mark is None:
            self.scope.mark = mark

    def marked_evaluate(self, expr: ast.Expr, file: str) -> tuple[Any, str | None]:
        """expr's value, and the first sensitive value it was derived from (or None)."""
        outer = self.scope.mark
        self.scope.mark = None
        try:
            return self.scope.evaluate(expr, file, self._bindings), self.scope.mark
        finally:
            self.scope.mark = outer

    def output(self, o: Any) -> Any:
        """An output's value; one derived from a sensitive value must be declared
        sensitive, as Terraform requires."""
        value, mark = self.marked_evaluate(o.value, o.file)
        if mark and not o.sensitive:
            raise ConfigError(f"output {o.name!r} refers to sensitive values ({mark}); add "
                              "sensitive = true to the output block to confirm you mean to "
                              "export them (rhplan then shows it as (sensitive value))",
                              o.file, o.line)
        return value

    def marked(self, name: str, line: int) -> tuple[Any, str | None]:
        from rhplan.config.evaluate import EvalError
        if name not in self.cfg.locals:
            raise EvalError(f"unknown local.{name}; define it in a locals {{ }} block", line)
        if name in self._evaluating:  # a loop only provider blocks reach (load finds the rest)
            loop = " -> ".join(f"local.{n}" for n in [*self._evaluating, name])
            raise EvalError(f"locals refer to each other in a loop: {loop}", line)
        if len(self._evaluating) >= MAX_LOCALS_CHAIN:
            raise EvalError(f"local.{name} is reached through more than {MAX_LOCALS_CHAIN} "
                            "other locals; refer to values more directly", line)
        self._evaluating.append(name)
        bindings, self._bindings = self._bindings, None  # each.* is not for locals
        try:
            value, mark = self.marked_evaluate(self.cfg.locals[name].expr,
                                               self.cfg.local_files[name])
        finally:
            self._evaluating.pop()
            self._bindings = bindings
        if self.cfg.module_vars and name in self.cfg.module_vars:  # config/modules.py
            from rhplan.config.modules import module_variable
            value = module_variable(self.cfg, name, value)
            if mark is None and self.cfg.module_vars[name].sensitive:
                mark = name  # a module's sensitive variable: what it feeds is sensitive
        self._locals[name] = value
        if mark is None and name in self._sensitive_locals:
            mark = f"local.{name}"  # it feeds a secret's values
        return value, mark

    def evaluate(self, expr: ast.Expr, file: str) -> Any:
        return self.scope.evaluate(expr, file, self._bindings)

    def resource(self, rc: ResourceConfig) -> dict[str, Any]:
        """The resource's configured attributes, typed, defaults filled in."""
        outer, self._bindings = self._bindings, rc.bindings
        try:
            return self._resource(rc)
        finally:
            self._bindings = outer

    def _resource(self, rc: ResourceConfig) -> dict[str, Any]:
        schema = RESOURCE_SCHEMAS[rc.type]
        marks: list[str] = []
        attrs = self._block(rc.block, schema, f"{rc.type} {rc.block_name or rc.name!r}", marks)
        for sub_name, sub_schema in schema.blocks.items():
            subs = [(b, self._bindings) for b in rc.block.blocks_of(sub_name)]
            if not subs:
                subs = self._dynamic_blocks(rc, sub_name)
            if not subs:
                attrs[sub_name] = None
                continue
            block, bindings = subs[0]
            outer, self._bindings = self._bindings, bindings
            try:
                attrs[sub_name] = self._block(block, sub_schema, f"{sub_name} block", marks,
                                              f"{sub_name}.")
            finally:
                self._bindings = outer
        if marks:
            self.sensitive_attrs[rc.address] = marks
        else:
            self.sensitive_attrs.pop(rc.address, None)
        return attrs

    def _dynamic_blocks(self, rc: ResourceConfig, name: str
                        ) -> list[tuple[ast.Block, dict[str, Any] | None]]:
        """The blocks a `dynamic "NAME"` block makes: its content once per element of
        for_each, with ITERATOR.key / ITERATOR.value bound (rhplan's nested blocks are
        single, so at most one; none leaves the block out)."""
        dyn = next((d for d in rc.block.blocks_of("dynamic") if d.labels[0] == name), None)
        if dyn is None:
            return []
        fe = dyn.attrs["for_each"]
        value = self.evaluate(fe.expr, rc.file)
        it = dyn.attrs.get("iterator")
        var = it.expr.name if it is not None else name  # type: ignore[union-attr]
        content = dyn.blocks_of("content")[0]
        if value is UNKNOWN and self.validating:  # checked once, with an unknown element
            return [(content, {**(self._bindings or {}), var: {"key": UNKNOWN,
                                                                "value": UNKNOWN}})]
        if value is UNKNOWN:
            raise ConfigError(f"dynamic {name!r}: for_each is known only after apply; it "
                              "must be known while planning (use variables or locals)",
                              rc.file, fe.line)
        if isinstance(value, dict):
            items = sorted(value.items())
        elif isinstance(value, list):
            items = list(enumerate(value)) if not isinstance(value, SetValue) else [
                (v, v) for v in value]
        elif value is None:
            items = []
        else:
            raise ConfigError(f"dynamic {name!r}: for_each must be a list, set or map, not "
                              f"{type_name(value)}", rc.file, fe.line)
        if len(items) > 1:
            raise ConfigError(f"dynamic {name!r}: for_each gives {len(items)} elements, but "
                              f"{rc.type} takes one {name} block; give it at most one",
                              rc.file, fe.line)
        return [(content, {**(self._bindings or {}), var: {"key": k, "value": v}})
                for k, v in items]

    def _block(self, block: ast.Block, schema: BlockSchema, what: str,
               marks: list[str] | None = None, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in schema.attrs.items():
            if spec.computed:
                continue
            a = block.attrs.get(name)
            value = None
            if a is not None:
                value, mark = self.marked_evaluate(a.expr, block.file)
                if mark and marks is not None and not spec.sensitive:  # those are digested
                    marks.extend(self._marked_paths(prefix + name, a.expr, block.file))
                if value is UNKNOWN and self.validating:
                    value = _unknown_of(spec.type)
            if value is None:
                if spec.required:
                    line = a.line if a else block.line
                    raise ConfigError(f"{what} needs {name} = ...; it is required", block.file,
                                      line)
                value = _copy(spec.default)
            else:
                try:
                    value = coerce_attr(value, spec.type)
                except TypeError as exc:
                    raise ConfigError(f"{name}: {exc}", block.file, a.line) from None  # type: ignore[union-attr]
            out[name] = value
        return out


    def _marked_paths(self, path: str, expr: ast.Expr, file: str) -> list[str]:
        """The sensitive parts of a marked attribute: the keys of a map written out
        whose values are sensitive (env_vars.TOKEN), else the whole attribute."""
        if not isinstance(expr, ast.ObjectExpr):
            return [path]
        keys = []
        for k, v in expr.items:
            if self.marked_evaluate(v, file)[1]:
                key, mark = self.marked_evaluate(k, file)
                if mark or not isinstance(key, str):
                    return [path]
                keys.append(f"{path}.{key}")
        return keys or [path]


def secret_sources(cfg: Config) -> tuple[set[str], set[str]]:
    """Variables and locals whose values are sensitive: variables declared sensitive,
    and the variables and locals a sensitive attribute (a secret's values, an ssh
    password) is written from: their values are the secret's."""
    names = {n for n, v in cfg.variables.items() if v.sensitive}
    local_names: set[str] = set()
    for rc in cfg.resources.values():
        schema = RESOURCE_SCHEMAS.get(rc.type)
        if schema is None:
            continue
        exprs = [a.expr for n, a in rc.block.attrs.items()
                 if n in schema.attrs and schema.attrs[n].sensitive]
        for bname, bschema in schema.blocks.items():
            subs = rc.block.blocks_of(bname) + [c for d in rc.block.blocks_of("dynamic")
                                                if d.labels[0] == bname
                                                for c in d.blocks_of("content")]
            for sub in subs:
                exprs += [a.expr for n, a in sub.attrs.items()
                          if n in bschema.attrs and bschema.attrs[n].sensitive]
        while exprs:  # through the locals they read, too
            for n in ast.walk(exprs.pop()):
                if isinstance(n, ast.GetAttr) and isinstance(n.obj, ast.Name):
                    if n.obj.name == "var":
                        names.add(n.name)
                    elif n.obj.name == "local" and n.name not in local_names:
                        local_names.add(n.name)
                        if n.name in cfg.locals:
                            exprs.append(cfg.locals[n.name].expr)
    return names, local_names


def _unknown_of(t: str) -> Any:
    """validate: an attribute that is unknown as a whole (a variable without a value),
    shaped as its type so resource types check what they can: a list of one unknown
    element, an empty map."""
    if t.startswith(("list(", "set(")):
        return [UNKNOWN]
    if t.startswith(("map(", "object(")):
        return {}
    return UNKNOWN


def coerce_attr(value: Any, t: str) -> Any:
    if t == "list(req)":
        if not isinstance(value, list):
            raise TypeError(f"expected a list of packages, found {_describe(value)}")
        out = []
        for v in value:
            if isinstance(v, ResourceValue):
                if not v.address.startswith("package."):
                    raise TypeError(f"{v.address} is not a package")
                out.append(v.address)
            elif isinstance(v, str) or v is UNKNOWN:
                out.append(v)
            else:
                raise TypeError(f"a package must be a string or package.NAME, found {_describe(v)}")
        return out
    if t.startswith("list(ref("):
        if not isinstance(value, list):
            raise TypeError(f"expected a list of references, found {_describe(value)}")
        return [coerce(v, t[5:-1]) for v in value]
    return coerce(value, t)


def _copy(v: Any) -> Any:
    if isinstance(v, list):
        return list(v)
    if isinstance(v, dict):
        return dict(v)
    return v


def evaluate_providers(cfg: Config, variables: dict[str, Any], workspace: str = "default"
                       ) -> dict[str, dict[str, Any]]:
    """Each provider "NAME" { ... } block, evaluated with variables and locals (not
    resources: a provider is configured before anything is planned)."""
    from rhplan.config.schema import PROVIDER_SCHEMAS

    def no_resources(type_: str, name: str, line: int) -> Any:
        from rhplan.config.evaluate import EvalError
        raise EvalError(f"a provider block cannot refer to {type_}.{name}; use a variable",
                        line)

    out: dict[str, dict[str, Any]] = {}
    ev = Evaluation(cfg, variables, no_resources, workspace)
    for name, block in cfg.providers.items():
        schema = PROVIDER_SCHEMAS.get(name)
        if schema is None:
            raise ConfigError(f"unknown provider {name!r}; use one of "
                              f"{', '.join(sorted(PROVIDER_SCHEMAS))}", block.file, block.line)
        for attr in block.attrs.values():
            if attr.name not in schema.attrs:
                raise ConfigError(f"provider {name!r} has no attribute {attr.name!r}; it takes "
                                  f"{', '.join(schema.settable()) or 'none'}", block.file,
                                  attr.line)
        if block.blocks:
            raise ConfigError(f"provider {name!r} takes no nested blocks", block.file,
                              block.blocks[0].line)
        out[name] = ev._block(block, schema, f"provider {name!r}")
    return out
