"""moved and removed blocks, on the planner's one move mechanism (moved_state and the
implicit moves of count): what the state records is renamed before anything is
diffed, so a renamed env plans "env.a has moved to env.b" and nothing is rebuilt.

A statement may cross module boundaries (env.x -> module.m.env.x, module.m.env.x ->
module.m["a"].env.x) or move a whole module call (module.a -> module.b, module.m ->
module.m["a"] when for_each is added): every recorded address inside it follows. Adding
count to a call moves module.m to module.m[0] without a block, as Terraform does (and
removing it, back).

Terraform's rules: a statement whose `from` is not in the state does nothing; a chain
a -> b -> c ends at c; a cycle, a type change, a `from` still declared, and a `to`
that the state already holds are errors naming the moved block's file:line. A whole
resource's statement (env.a -> env.b) moves each of its instances, keys kept.

An instance keeps the on-host name it was made with (planner._keep_name), so its env
folder and servlet stay; a new resource that would take that name is refused here.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

from rhplan.config.model import Config
from rhplan.config.schema import RESOURCE_SCHEMAS
from rhplan.errors import ConfigError
from rhplan.names import block_address, instance_address, is_module_address, parse_address
from rhplan.plan.model import Change
from rhplan.state.model import ResourceState, State


def plan_moves(cfg: Config, state: State, implicit: Callable[[State], dict[str, str]],
               moved_state: Callable[[State, dict[str, str]], State]) -> dict[str, str]:
    """recorded address -> address now: the moved blocks', then the implicit ones
    (count added or removed) on top, composed into one map."""
    explicit = _explicit(cfg, state)
    explicit.update({old: new for old, new in _module_count_moves(cfg, state).items()
                     if old not in explicit and new not in state.resources})
    after = moved_state(state, explicit) if explicit else state
    more = implicit(after)
    moves = {old: more.get(new, new) for old, new in explicit.items()}
    moves.update({old: new for old, new in more.items() if old not in explicit.values()})
    return {old: new for old, new in moves.items() if old != new}


def _module_count_moves(cfg: Config, state: State) -> dict[str, str]:
    """Terraform's implicit moves of a module call: count added (module.m.X ->
    module.m[0].X) or removed (module.m[0].X -> module.m.X)."""
    moves: dict[str, str] = {}
    for path, (call, _) in cfg.module_calls.items():
        if path.count("module.") != 1 or "for_each" in call.attrs:
            continue
        old, new = (path + ".", path + "[0].") if "count" in call.attrs else (
            path + "[0].", path + ".")
        for addr in state.resources:
            if addr.startswith(old):
                moves[addr] = new + addr[len(old):]
    return moves


def _explicit(cfg: Config, state: State) -> dict[str, str]:
    statements = cfg.moved
    if not statements:
        return {}
    for m in statements:
        _check(cfg, m)
    _no_cycle(statements)
    moves: dict[str, str] = {}
    for addr in state.resources:
        new = addr
        for _ in range(len(statements) + 1):  # a chain is at most as long as the list
            step = next((t for t in (_apply(m, new) for m in statements) if t), None)
            if step is None:
                break
            new = step
        if new != addr:
            moves[addr] = new
    taken: dict[str, str] = {}
    for old, new in moves.items():
        m = _statement_for(statements, old)
        if new in state.resources and new not in moves:
            raise ConfigError(f"cannot move {old} to {new}: the state already holds {new}; "
                              f"remove this moved block, or forget one of them with "
                              f"rhplan state rm", m.file, m.line)
        if new in taken:
            raise ConfigError(f"{old} and {taken[new]} would both move to {new}; keep one "
                              "moved block for it", m.file, m.line)
        taken[new] = old
    return moves


def _check(cfg: Config, m: Any) -> None:
    if m.source == m.to:
        raise ConfigError(f"moved: from and to are both {m.source}; remove this block",
                          m.file, m.line)
    if is_module_address(m.source) or is_module_address(m.to):
        if not (is_module_address(m.source) and is_module_address(m.to)):
            raise ConfigError(f"moved: cannot move {m.source} to {m.to}: a module call moves "
                              "to a module call (module.a -> module.b, module.m -> "
                              'module.m["k"]), a resource to a resource', m.file, m.line)
        return
    src, dst = parse_address(m.source), parse_address(m.to)
    assert src is not None and dst is not None  # refactor_blocks wrote them
    # the resource type, past any module path (env.x -> module.m.env.x keeps it)
    if src[0].rsplit(".", 1)[-1] != dst[0].rsplit(".", 1)[-1]:
        raise ConfigError(f"moved: cannot move {m.source} to {m.to}, a resource of another "
                          f"type ({src[0]} -> {dst[0]}); a move keeps the type", m.file, m.line)
    rc = cfg.resources.get(block_address(m.source))
    if rc is not None and src[2] is None and rc.repeated is None:
        raise ConfigError(f"moved: {m.source} is still declared at {rc.file}:{rc.line}; "
                          "delete or rename that block (its new name goes in to = ...)",
                          m.file, m.line)


def _apply(m: Any, addr: str) -> str | None:
    """Where statement m moves the recorded address addr, or None."""
    if addr == m.source:
        return m.to
    if addr.startswith(m.source + ".") and is_module_address(m.source):  # all inside it
        return m.to + addr[len(m.source):]
    parts = parse_address(addr)
    if parts is None or parts[2] is None or block_address(m.source) != m.source \
            or block_address(m.to) != m.to:
        return None
    if block_address(addr) == m.source:  # a whole resource: each instance, key kept
        dst = parse_address(m.to)
        assert dst is not None
        return instance_address(dst[0], dst[1], parts[2])
    return None


def _statement_for(statements: list[Any], addr: str) -> Any:
    return next((m for m in statements if _apply(m, addr)), statements[0])


def _no_cycle(statements: list[Any]) -> None:
    """Follow each statement's `to` through the others; coming back is a cycle."""
    for start in statements:
        seen = [start]
        node = start.to
        while len(seen) <= len(statements):
            nxt = next((m for m in statements if _apply(m, node)), None)
            if nxt is None:
                break
            if nxt in seen:
                chain = " -> ".join([s.source for s in seen] + [nxt.source])
                raise ConfigError(f"moved blocks make a cycle: {chain}; remove one of them",
                                  start.file, start.line)
            seen.append(nxt)
            node = _apply(nxt, node) or node


def forgotten(cfg: Config, addr: str) -> Any:
    """The removed block that forgets addr (destroy = false), or None."""
    block = block_address(addr)
    for r in cfg.removed:
        if r.source == block and not r.destroy:
            return r
    return None


def check_removed(cfg: Config) -> None:
    for r in cfg.removed:
        rc = cfg.resources.get(r.source)
        if rc is not None:
            raise ConfigError(f"removed: {r.source} is still declared at {rc.file}:{rc.line}; "
                              "delete that block (removed says what to do with what the "
                              "state holds of it)", r.file, r.line)


def forget_change(addr: str, rs: Any, r: Any) -> Change:
    return Change(addr, rs.type, rs.name, rs.provider, "forget", rs.attributes, None,
                  f"removed block at {r.file}:{r.line} says destroy = false",
                  [], list(rs.dependencies))


def check_names(cfg: Config, changes: dict[str, Change]) -> None:
    """Two resources on one host under one name would share a folder and a servlet:
    refuse the new one (a moved env keeps the name it was made with)."""
    holders: dict[tuple[str, str, str], str] = {}
    for addr, c in sorted(changes.items(), key=lambda kv: kv[1].action == "create"):
        if c.action in ("delete", "forget") or not c.after or c.type not in ("env", "cluster"):
            continue
        name = c.after.get("name")
        if not isinstance(name, str):
            continue
        where = str(c.after.get("cluster", "")) if c.type == "env" else str(
            c.after.get("provider", ""))
        key = (c.type, where, name)
        other = holders.get(key)
        if other is None:
            holders[key] = addr
            continue
        rc = cfg.resources.get(block_address(addr))
        raise ConfigError(f"{addr} would be named {name!r} on its hosts, the name {other} "
                          f"already has (an on-host name is kept when a resource moves); "
                          f'set name = "..." on {addr} (envs), or rename its block',
                          rc.file if rc else None, rc.line if rc else None)


def moved_state(state: State, moves: dict[str, str], in_place: bool = False) -> State:
    """The state with resources moved to new addresses (old -> new), and what refers to
    them (dependencies, an env's cluster / secrets / package reqs) following; a copy, or
    the state itself when in_place (apply records moves so)."""
    view = state if in_place else copy.copy(state)
    resources: dict[str, ResourceState] = {}
    for addr, rs in state.resources.items():
        new = moves.get(addr, addr)
        deps = [moves.get(d, d) for d in rs.dependencies]
        attrs = rs.attributes
        refs = _reference_attrs(rs.type)
        if any(attrs.get(n) for n in refs):
            attrs = {k: (_renamed(v, moves) if k in refs else v) for k, v in attrs.items()}
        if new != addr or deps != rs.dependencies or attrs is not rs.attributes:
            parts = parse_address(new)
            rs = dataclasses.replace(rs, address=new, dependencies=deps, attributes=attrs,
                                     name=parts[1] if parts else rs.name)
        resources[new] = rs
    view.resources = resources
    return view


def _reference_attrs(type_: str) -> frozenset[str]:
    """The attributes of a type that hold other resources' addresses (and `installed`,
    keyed by reqs entries, package.NAME among them)."""
    found = _REFERENCE_ATTRS.get(type_)
    if found is None:
        schema = RESOURCE_SCHEMAS.get(type_)
        names = {n for n, a in schema.attrs.items() if "ref(" in a.type or a.type == "list(req)"
                 } if schema else set()
        if names and schema and "installed" in schema.attrs:
            names.add("installed")
        found = _REFERENCE_ATTRS[type_] = frozenset(names)
    return found


_REFERENCE_ATTRS: dict[str, frozenset[str]] = {}


def _renamed(value: Any, moves: dict[str, str]) -> Any:
    if isinstance(value, str):
        return moves.get(value, value)
    if isinstance(value, list):
        return [_renamed(v, moves) for v in value]
    if isinstance(value, dict):
        return {moves.get(k, k): _renamed(v, moves) for k, v in value.items()}
    return value
