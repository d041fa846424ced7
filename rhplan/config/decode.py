"""Turn declarations into values: locals, outputs, provider blocks and each resource's
attributes, evaluated and checked against its schema (Evaluation). Variable values
come from config/inputs.py, type conversion from config/coerce.py."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rhplan.config import ast
from rhplan.config.coerce import coerce_attr, unknown_of
from rhplan.config.evaluate import Scope
from rhplan.config.model import Config, ResourceConfig
from rhplan.config.provider_schema import check_own
from rhplan.config.schema import RESOURCE_SCHEMAS, BlockSchema
from rhplan.config.values import UNKNOWN, ResourceValue, SetValue, type_name
from rhplan.errors import ConfigError

__all__ = ["Evaluation", "evaluate_providers", "secret_sources"]


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
        from rhplan.config.values import EvalError
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
        if rc.type == "cluster":  # the core's settings and its own provider's only
            check_own(attrs.get("provider"), rc.block, f"cluster {rc.block_name or rc.name!r}")
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
                    value = unknown_of(spec.type)
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
        from rhplan.config.values import EvalError
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

