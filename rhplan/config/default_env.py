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


# A cluster that declares no env (and no default_env) gets a bare one, created and
# destroyed with it: Python, the cluster's Ray and the working_dir, no packages. Its
# address is an ordinary env address, env.CLUSTER_default, so everything that takes an
# env takes it (`rhplan run c_default -- …`, `-target`, `state show`), the way
# Terraform's aws_default_vpc is a resource of its own rather than a hidden part of
# another one. Declaring an env for the cluster later plans this one's deletion.
BARE_SUFFIX = "_default"


def bare_env_label(cluster_label: str) -> str:
    return f"{cluster_label}{BARE_SUFFIX}"


def bare_reason(cluster: str) -> str:
    """Why the bare env is in a plan (shown under its create)."""
    return (f"the default env of {cluster}, which declares none: Python, Ray and the "
            "working_dir, no packages")


def is_bare_env(address: str, attrs: dict[str, object]) -> bool:
    """Whether a recorded env is a cluster's bare default env (env.C_default of cluster.C)."""
    cluster = attrs.get("cluster")
    if not isinstance(cluster, str) or "cluster." not in cluster:
        return False
    module, _, label = cluster.rpartition("cluster.")
    return address == f"{module}env.{bare_env_label(label)}"


def add_bare_envs(cfg: Config) -> None:
    """Add env.C_default for each cluster C of this configuration (not of a module
    called from it: the module's own configuration adds its clusters') that no env names
    and that sets no default_env. A repeated cluster gets none (yet)."""
    from rhplan.config.load import _resource

    clusters = {a: rc for a, rc in cfg.resources.items()
                if rc.type == "cluster" and not rc.module}
    if not clusters:
        return
    named: set[str] = set()  # clusters some env names in its cluster attribute
    for rc in cfg.resources.values():
        a = rc.type == "env" and rc.block.attrs.get("cluster")
        if a:
            named |= _through_locals(expr_refs(a.expr), cfg, set())
    for addr, rc in clusters.items():
        if addr in named or rc.repeated or "default_env" in rc.block.attrs:
            continue
        if not _wants_bare_env(rc):
            continue
        label = bare_env_label(rc.name)
        taken = cfg.resources.get(f"env.{label}")
        if taken is not None:
            raise ConfigError(
                f"cluster {rc.name!r} declares no env, so rhplan would give it a bare "
                f"default env env.{label}, but {taken.file}:{taken.line} declares an env of "
                f"that name for another cluster; declare an env for cluster {rc.name!r} "
                "(or rename that env)", rc.file, rc.line)
        line = rc.line
        ref = ast.GetAttr(ast.Name("cluster", line), rc.name, line)
        block = ast.Block("env", (label,), {"cluster": ast.Attribute("cluster", ref, line)},
                          [], rc.file, line, rc.block.end_line)
        env = _resource(block)
        env.bare_default_of = addr
        cfg.resources[f"env.{label}"] = env


def _wants_bare_env(rc: ResourceConfig) -> bool:
    """create_default_env = false opts out. It decides which resources exist, so it is
    read before anything is evaluated: a literal true or false."""
    a = rc.block.attrs.get("create_default_env")
    if a is None:
        return True
    if type(a.expr) is not ast.Literal or not isinstance(a.expr.value, bool):
        raise ConfigError(f"cluster {rc.name!r}: create_default_env decides whether the "
                          "bare env exists before anything is evaluated; write true or "
                          "false", rc.file, a.line)
    return a.expr.value


def _through_locals(refs: set[str], cfg: Config, seen: set[str]) -> set[str]:
    """refs with each local.X replaced by what X refers to."""
    out: set[str] = set()
    for r in refs:
        if not r.startswith("local."):
            out.add(r)
        elif r not in seen and r[6:] in cfg.locals:
            seen.add(r)
            out |= _through_locals(expr_refs(cfg.locals[r[6:]].expr), cfg, seen)
    return out
