"""Variable values from outside the configuration, with Terraform's precedence:
defaults, the environment (RHPLAN_VAR_ / TF_VAR_), rhplan.tfvars and *.auto.tfvars,
-var-file and -var; each converted to its declared type and checked by its rules."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rhplan.config.coerce import coerce
from rhplan.config.evaluate import Scope
from rhplan.config.model import Config
from rhplan.config.parse import parse_text
from rhplan.config.values import UNKNOWN, ResourceValue
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
    no_refs = Scope({}, no_locals, no_resources, cfg.dir)
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
        values[name] = convert_variable(values[name], v, name, v.file, line, origin.get(name))
    from rhplan.config import variables
    for name, v in cfg.variables.items():  # once every value is known: rules may read others
        variables.check(v, values[name], values, cfg.variables, cfg.dir)
    return values


# variables read from the environment; the first prefix set for a name wins
ENV_PREFIXES = ("RHPLAN_VAR_", "TF_VAR_")


def environment_variables() -> dict[str, tuple[str, str]]:
    """name -> (text, the variable it came from) for RHPLAN_VAR_name and TF_VAR_name."""
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
        return Scope({}, no_locals, no_resources, cfg.dir).evaluate(f.body.attrs["v"].expr,
                                                                     where)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {raw!r} is not a valid {t} ({exc.message}); write it in "
                          'HCL, e.g. ["a", "b"] or { k = "v" }') from None


def convert_variable(value: Any, v: Any, name: str, file: str, line: int,
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


def no_locals(name: str, line: int) -> Any:
    from rhplan.config.values import EvalError
    raise EvalError("variables cannot refer to locals", line)


def no_resources(type_: str, name: str, line: int) -> ResourceValue:
    from rhplan.config.values import EvalError
    raise EvalError("variables cannot refer to resources", line)


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

