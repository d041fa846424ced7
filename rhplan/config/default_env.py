"""A cluster's `default_env = env.NAME`: the env `rhplan run -cluster NAME` and
`rhplan.servlet(cluster="NAME")` use when no env is named.

The env refers to its cluster, so the cluster's reference back to it is not a
dependency (it would be a cycle): it is only checked here, against the configuration,
and read from the state when a command needs it."""
from __future__ import annotations

from rhplan.config import ast
from rhplan.config.load import Config, ResourceConfig, expr_refs
from rhplan.errors import ConfigError


def default_env_refs(rc: ResourceConfig, cfg: Config) -> set[str]:
    """The addresses a cluster's default_env mentions (none for other blocks)."""
    a = rc.type == "cluster" and rc.block.attrs.get("default_env")
    if not a:
        return set()
    return {x for r in expr_refs(a.expr) for x in (r, rc.module + r) if x in cfg.resources}


def check_default_envs(cfg: Config) -> None:
    """Each default_env names one env whose cluster is this cluster (file:line if not)."""
    for addr, rc in cfg.resources.items():
        a = rc.type == "cluster" and rc.block.attrs.get("default_env")
        if not a:
            continue
        where = f"cluster {rc.name!r}: default_env"
        refs = default_env_refs(rc, cfg)
        envs = [r for r in refs if cfg.resources[r].type == "env"]
        e = a.expr.obj if type(a.expr) is ast.Index else a.expr  # env.NAME (or an instance)
        plain = type(e) is ast.GetAttr and type(e.obj) is ast.Name
        if not plain or len(refs) != 1 or len(envs) != 1:
            raise ConfigError(f"{where} must name one env of this cluster, like "
                              f"default_env = env.NAME", rc.file, a.line)
        env = cfg.resources[envs[0]]
        if env.repeated:  # its instances are known only after the cluster is planned
            raise ConfigError(f"{where}: {envs[0]} has {env.repeated}, and an env with "
                              "count or for_each cannot be a cluster's default (yet); name "
                              "an env without them", rc.file, a.line)
        ca = env.block.attrs.get("cluster")
        theirs = ({x for r in expr_refs(ca.expr) for x in (r, env.module + r)
                   if x in cfg.resources} if ca else set())
        if addr not in theirs:
            other = ", ".join(sorted(theirs)) or "another cluster"
            own = sorted(e for e, r in cfg.resources.items() if r.type == "env" and addr in {
                x for c in [r.block.attrs.get("cluster")] if c
                for y in expr_refs(c.expr) for x in (y, r.module + y)})
            raise ConfigError(
                f"{where} = {envs[0]} is an env of {other}, not of this cluster; name one of "
                f"its own envs ({', '.join(own) or 'none declared'}) or remove default_env",
                rc.file, a.line)
