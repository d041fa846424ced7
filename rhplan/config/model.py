"""The loaded configuration as values: Config (what a directory declares) and its
parts, ResourceConfig, Variable, Output, Backend. Made by config/load.py, read by the
graph, the planner and the resources."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhplan.config import ast
from rhplan.errors import ConfigError
from rhplan.names import instance_address


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

