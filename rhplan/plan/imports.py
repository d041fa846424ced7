"""import: adopt something that already exists into the state (`rhplan import ADDR ID`
and `import { to = ADDR  id = "..." }` blocks).

An adopted object is recorded with what identifies it (for an env: its folder on its
cluster, ID being the folder's name under ROOT/envs), then read as a refresh reads it:
what is not there is an error, what is there but differs from the configuration
(packages missing, env vars, a servlet rhplan did not start) is what the next plan
changes in place. Nothing is rebuilt: the folder, its venv and what is installed stay.

Envs, ssh clusters and aws clusters (EC2 instances by id or tag) are adopted.
"""
from __future__ import annotations

from typing import Any

from rhplan.config import ast
from rhplan.config.model import Config
from rhplan.config.values import UNKNOWN
from rhplan.errors import ConfigError, RhplanError
from rhplan.names import (
    block_address,
    instance_address,
    normalize_address,
    parse_address,
    valid_name,
)
from rhplan.provider import RunContext
from rhplan.state.model import ResourceState, State


def adopt(cfg: Config, ctx: RunContext, state: State, address: str, id_: str,
          where: tuple[str | None, int | None] = (None, None),
          desired: Any = None) -> ResourceState:
    """The ResourceState of what ID names, read from its host; the state is not changed."""
    addr = normalize_address(address)
    parts = parse_address(addr)
    file, line = where
    if parts is None:
        raise ConfigError(f"{address!r} is not a resource address; write TYPE.NAME, "
                          "TYPE.NAME[0] or TYPE.NAME[\"key\"]", file, line)
    rc = cfg.resources.get(block_address(addr))
    if rc is None:
        raise ConfigError(f"import: {addr} is not declared in the configuration; write its "
                          f'{parts[0]} "{parts[1]}" {{ ... }} block first, then import into it',
                          file, line)
    if (parts[2] is None) != (rc.repeated is None):
        raise ConfigError(f"import: {addr} does not match {rc.address}, which "
                          + (f"sets {rc.repeated}: give the instance's index or key"
                             if rc.repeated else "sets neither count nor for_each"),
                          file, line)
    if addr in state.resources:
        raise ConfigError(f"import: {addr} is already in the state; rhplan state rm it first "
                          "to import another object there", file, line)
    if rc.type == "cluster" and desired is not None:
        return _adopt_cluster(ctx, addr, id_, desired(rc), rc.label, where)
    if rc.type != "env":
        raise ConfigError(f"import: adopting a {rc.type} is not supported yet (envs and ssh "
                          f"clusters are); let rhplan apply create {addr}", file, line)
    if not valid_name(id_):
        raise ConfigError(f"import: {id_!r} is not an env folder name (the name of an env "
                          "under the cluster's ROOT/envs)", file, line)
    cluster_addr = _cluster_of(rc.block.attrs.get("cluster"))
    cluster = state.resources.get(cluster_addr or "")
    if cluster is None:
        raise ConfigError(f"import: {addr} runs on {cluster_addr or 'its cluster'}, which is "
                          "not in the state; apply (or import) the cluster first", file, line)
    root = cluster.attributes.get("root_dir")
    if others := [a for a, r in state.resources.items() if r.type == "env"
                  and r.attributes.get("cluster") == cluster_addr
                  and r.attributes.get("name") == id_]:
        raise ConfigError(f"import: the env folder {id_!r} on {cluster_addr} is already "
                          f"managed as {others[0]}", file, line)
    path = f"{root}/envs/{id_}"
    rs = ResourceState(addr, "env", parts[1], cluster.provider,
                       {"name": id_, "cluster": cluster_addr, "path": path,
                        "python": f"{path}/bin/python", "reqs": [], "installed": {},
                        "servlet": "stopped"}, [cluster_addr])
    from rhplan.resources import TYPES  # (resources import the planner's modules)

    view = state.copy()
    view.resources[addr] = rs
    try:
        found, _ = TYPES["env"].read(rs, ctx, view)
    except RhplanError as exc:
        raise RhplanError(f"import {addr}: reading {path} on {cluster_addr}: {exc}") from None
    if found is None:
        raise ConfigError(f"import: there is no env folder {path} on {cluster_addr} to adopt; "
                          f"check the id (an env's folder name under {root}/envs)", file, line)
    return found


def _adopt_cluster(ctx: RunContext, addr: str, id_: str, attrs: dict[str, Any], label: str,
                   where: tuple[str | None, int | None]) -> ResourceState:
    """An ssh cluster whose head runs rhplan's Ray (ID: the head's address, ips[0]), or
    an aws one from running EC2 instances (ID: i-1,i-2 or tag:KEY=VALUE).
    Its hosts are set up as an apply would (idempotent: folders and Ray's venv are kept)
    and it is recorded with Ray stopped: the next apply starts Ray again (stopping the
    head it found first, whose token and temp dir this state never held), and the
    servlets of its envs with it."""
    from rhplan.ray import head as ray_head

    file, line = where
    attrs = {k: (None if v is UNKNOWN else v) for k, v in attrs.items()}
    if attrs.get("provider") != "ssh":  # aws: instances by id or tag (the provider's hook)
        kind = str(attrs.get("provider"))
        try:
            attrs, private = ctx.provider(kind).import_cluster(attrs, id_, ctx)
        except RhplanError as exc:
            raise ConfigError(f"import {addr}: {exc}", file, line) from None
        attrs.update(ray_status="stopped", ray_address=None)
        return ResourceState(addr, "cluster", label, kind, attrs, [], provider_private=private)
    ips = attrs.get("ips") or []
    if not ips or id_ != ips[0]:
        raise ConfigError(f"import: an ssh cluster's id is its head's address, the first of "
                          f"its ips ({ips[0] if ips else 'none set'}), not {id_!r}", file, line)
    provider = ctx.provider("ssh")
    attrs, private = provider.create(attrs, ctx)
    conn = provider.connect(attrs, private, ctx)
    python = provider.ray_python(conn, attrs, private, ctx)
    if not ray_head.running_pids(conn, python, attrs["root_dir"]):
        raise ConfigError(f"import: {id_} runs no Ray of rhplan's for {attrs['root_dir']}; "
                          f"nothing to adopt there: let rhplan apply create {addr}", file, line)
    attrs.update(ray_status="stopped", ray_address=None, ray_python=python)
    return ResourceState(addr, "cluster", label, "ssh", attrs, [], provider_private=private)


def _cluster_of(attr: ast.Attribute | None) -> str | None:
    """cluster = cluster.c / cluster.c[0] / cluster.c["k"], as written."""
    if attr is None:
        return None
    e, key = attr.expr, None
    if isinstance(e, ast.Index) and isinstance(e.key, ast.Literal):
        key, e = e.key.value, e.obj
    if isinstance(e, ast.GetAttr) and isinstance(e.obj, ast.Name) and e.obj.name == "cluster":
        return instance_address("cluster", e.name, key)
    return None


def adopt_blocks(cfg: Config, ctx: RunContext, state: State, evaluate: Any,
                 desired: Any = None) -> dict[str, str]:
    """Import blocks whose `to` the state does not hold yet: adopted into `state` (the
    refreshed state the plan is made against, which apply then records). Returns
    address -> id, for the plan to say "will be imported"."""
    check_blocks(cfg)
    done: dict[str, str] = {}
    for b in cfg.imports:
        if b.to in state.resources:
            continue  # imported before: the block stays harmless, as in Terraform
        id_ = evaluate(b.id, b.file)
        if not isinstance(id_, str):
            raise ConfigError(f"import: id must be a string, not {id_!r}", b.file, b.line)
        state.resources[b.to] = adopt(cfg, ctx, state, b.to, id_, (b.file, b.line), desired)
        done[b.to] = id_
    return done


def check_blocks(cfg: Config) -> None:
    """What an import block can be told wrong without reading any host (validate and
    every plan): its `to` is declared, and named by one block only."""
    seen: dict[str, Any] = {}
    for b in cfg.imports:
        rc = cfg.resources.get(block_address(b.to))
        if rc is None:
            parts = parse_address(b.to)
            raise ConfigError(f"import: {b.to} is not declared in the configuration; write its "
                              f'{parts[0] if parts else "TYPE"} "{parts[1] if parts else "NAME"}"'
                              " { ... } block first, then import into it", b.file, b.line)
        if b.to in seen:
            raise ConfigError(f"import: {b.to} is imported twice (also at {seen[b.to].file}:"
                              f"{seen[b.to].line}); keep one import block", b.file, b.line)
        seen[b.to] = b
