"""A cluster's default env: the env `rhplan run -cluster NAME` and
`rhplan.servlet(cluster="NAME")` use when no env is named.

`default_env = env.NAME` (or a local holding env.NAME): the env refers to its cluster,
so the cluster's reference back to it is not a dependency (it would be a cycle): it is
only checked here, against the configuration, and read from the state when a command
needs it. A cluster without one gets a bare env (below)."""
from __future__ import annotations

import re

from rhplan.config import ast
from rhplan.config.model import Config, ResourceConfig
from rhplan.config.refs import expr_refs
from rhplan.config.resource_block import read_resource
from rhplan.errors import ConfigError
from rhplan.names import _MODULE, instance_address, parse_address

# the module instance an address is inside: module.m["k"]. (a key may hold dots)
_MODULE_PREFIX = re.compile(_MODULE.pattern + r"\.")

# a chain of locals longer than this is refused (as evaluation refuses loops)
_MAX_LOCALS = 32


def default_env_refs(rc: ResourceConfig, cfg: Config) -> set[str]:
    """The addresses a cluster's default_env mentions, also through locals (none for
    other blocks)."""
    a = rc.type == "cluster" and rc.block.attrs.get("default_env")
    if not a:
        return set()
    return {x for r in _through_locals(expr_refs(a.expr), cfg, set())
            for x in (r, rc.module + r) if x in cfg.resources}


def _followed(expr: ast.Expr, cfg: Config) -> tuple[ast.Expr, list[str]]:
    """expr, or what the local it is (local.x = env.a, a chain of them) holds; and the
    locals passed on the way."""
    via: list[str] = []
    while type(expr) is ast.GetAttr and type(expr.obj) is ast.Name and len(via) < _MAX_LOCALS:
        name = f"{expr.obj.name}.{expr.name}"
        local = _local_of(name, cfg)
        if local is None:
            break
        via.append(name)
        expr = local.expr
    return expr, via


def check_default_envs(cfg: Config) -> None:
    """Each default_env names one env whose cluster is this cluster (file:line if not)."""
    for addr, rc in cfg.resources.items():
        a = rc.type == "cluster" and rc.block.attrs.get("default_env")
        if not a:
            continue
        expr, via = _followed(a.expr, cfg)
        where = f"cluster {rc.name!r}: default_env"
        if via:
            where += f" = {' = '.join(via)}"
        refs = default_env_refs(rc, cfg)
        envs = [r for r in refs if cfg.resources[r].type == "env"]
        e = expr.obj if type(expr) is ast.Index else expr  # env.NAME (or an instance)
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
        theirs = ({x for r in _through_locals(expr_refs(ca.expr), cfg, set())
                   for x in (r, env.module + r) if x in cfg.resources} if ca else set())
        if addr not in theirs:
            other = ", ".join(sorted(theirs)) or "another cluster"
            own = sorted(r.block_address for r in envs_naming(cfg).get(addr, []))
            raise ConfigError(
                f"{where} = {envs[0]} is an env of {other}, not of this cluster; name one of "
                f"its own envs ({', '.join(own) or 'none declared'}) or remove default_env",
                rc.file, a.line)


# Every cluster has a default env. It is the env its default_env names; else, when
# exactly one env block names the cluster, that env; else (no env, several, or a
# repeated one) a bare env rhplan creates and destroys with the cluster: Python, the
# cluster's Ray and the working_dir, no packages, as Runhouse's base env is. Its address
# is an ordinary env address, env.CLUSTER_default, so everything that takes an env takes
# it (`rhplan run c_default -- …`, `-target`, `state show`), the way Terraform's
# aws_default_vpc is a resource of its own rather than a hidden part of another one. A
# repeated cluster gets a repeated bare env with the same count or for_each: instance K
# of env.C_default is the bare env of cluster.C[K]. Declaring a default_env (or a
# cluster's only env) later plans the bare env's deletion.
BARE_SUFFIX = "_default"


def bare_env_label(cluster_label: str) -> str:
    return f"{cluster_label}{BARE_SUFFIX}"


def bare_reason(cluster: str, why: str = "") -> str:
    """Why the bare env is in a plan (shown under its create). why: what the cluster
    declares (see _why_bare); "" for one that declares no env."""
    return (f"the default env of {cluster}, which {why or 'declares none'}: Python, Ray "
            "and the working_dir, no packages")


def bare_cluster_of(rc: ResourceConfig) -> str:
    """The cluster (instance) a bare env, or one instance of it, is the default env of."""
    if rc.key is None:
        return rc.bare_default_of
    return rc.bare_default_of + instance_address("", "", rc.key)[1:]


def is_bare_env(address: str, attrs: dict[str, object]) -> bool:
    """Whether a recorded env is a cluster's bare default env: env.C_default of cluster.C,
    env.C_default[K] of cluster.C[K] (each in the same module instance)."""
    cluster = attrs.get("cluster")
    if not isinstance(cluster, str):
        return False
    module, key = "", ""
    found = _MODULE_PREFIX.match(cluster)  # module.m["k"].cluster.c: its module instance
    if found:
        module, cluster = found.group(0), cluster[found.end():]
    parts = parse_address(cluster)
    if parts is None or parts[0] != "cluster":
        return False
    if parts[2] is not None:
        key = instance_address("", "", parts[2])[1:]
    return address == f"{module}env.{bare_env_label(parts[1])}{key}"


def add_bare_envs(cfg: Config) -> None:
    """Add env.C_default for each cluster C of this configuration (not of a module
    called from it: the module's own configuration adds its clusters') that sets no
    default_env and that not exactly one env names (create_default_env = false opts
    out)."""
    clusters = {a: rc for a, rc in cfg.resources.items()
                if rc.type == "cluster" and not rc.module}
    if not clusters:
        return
    naming = envs_naming(cfg)
    for addr, rc in clusters.items():
        why = _why_bare(rc, naming.get(addr, []))
        if why is None or not _wants_bare_env(rc):
            continue
        label = bare_env_label(rc.name)
        taken = cfg.resources.get(f"env.{label}")
        if taken is not None and taken.bare_default_of == addr:
            taken.bare_why = why  # added at load; settle_bare_envs asks again
            continue
        if taken is not None:
            fix = "set default_env = env.NAME in" if why else "declare an env for"
            raise ConfigError(
                f"cluster {rc.name!r} {why or 'declares no env'}, so rhplan would give it a "
                f"bare default env env.{label}, but {taken.file}:{taken.line} declares an env "
                f"of that name for another cluster; {fix} "
                f"cluster {rc.name!r} (or rename that env)", rc.file, rc.line)
        line = rc.line
        ref: ast.Expr = ast.GetAttr(ast.Name("cluster", line), rc.name, line)
        attrs = {}
        meta = rc.count or rc.for_each
        if meta is not None:  # one bare env per instance: env.C_default[K] of cluster.C[K]
            attrs[meta.name] = ast.Attribute(meta.name, meta.expr, meta.line)
            key = (ast.GetAttr(ast.Name("count", line), "index", line) if rc.count
                   else ast.GetAttr(ast.Name("each", line), "key", line))
            ref = ast.Index(ref, key, line)
        attrs["cluster"] = ast.Attribute("cluster", ref, line)
        block = ast.Block("env", (label,), attrs, [], rc.file, line, rc.block.end_line)
        env = read_resource(block)
        env.bare_default_of, env.bare_why = addr, why
        cfg.resources[f"env.{label}"] = env


def settle_bare_envs(cfg: Config) -> None:
    """Ask again which clusters need a bare env, now that a repeated module call's
    instances (and their envs, which may name the caller's clusters) are known;
    config/modules.py calls it. A bare env added at load goes when its cluster now has
    one env, and one is added when the instances bring a second env to a cluster that
    had one (at load they could not be counted)."""
    bare = {a: rc for a, rc in cfg.resources.items() if rc.bare_default_of}
    naming = envs_naming(cfg)
    for addr, env in bare.items():
        cluster = cfg.resources.get(env.bare_default_of)
        why = None if cluster is None else _why_bare(
            cluster, naming.get(env.bare_default_of, []))
        if why is None:
            del cfg.resources[addr]
        else:
            env.bare_why = why
    add_bare_envs(cfg)


def envs_naming(cfg: Config) -> dict[str, list[ResourceConfig]]:
    """cluster address -> the env blocks (not bare ones) whose cluster names it (also
    through locals)."""
    out: dict[str, list[ResourceConfig]] = {}
    for rc in cfg.resources.values():
        a = rc.type == "env" and not rc.bare_default_of and rc.block.attrs.get("cluster")
        if a:
            for c in _through_locals(expr_refs(a.expr), cfg, set()):
                c = c if c in cfg.resources else rc.module + c
                out.setdefault(c, []).append(rc)
    return out


def _why_bare(rc: ResourceConfig, envs: list[ResourceConfig]) -> str | None:
    """What a cluster declares that leaves it a bare default env to make ("" for no
    env), or None when it needs none: a default_env, or exactly one env (neither it nor
    the cluster repeated: then the env is the default, no guess among several)."""
    if "default_env" in rc.block.attrs:
        return None
    if not envs:
        return ""
    names = ", ".join(sorted(e.block_address for e in envs))
    if rc.repeated:  # an env names one instance, or (repeated itself) several
        return f"has {rc.repeated}, {names} among its instances and no default_env"
    if len(envs) == 1 and not envs[0].repeated:
        return None
    if len(envs) == 1:
        return f"has only {names}, with {envs[0].repeated}, and no default_env"
    return f"has {len(envs)} envs ({names}) and no default_env"


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


def _local_of(ref: str, cfg: Config) -> ast.Attribute | None:
    """The local a reference names (local.X; module.m.local.X or module.m.output.O once
    a module is flattened into its caller)."""
    if ref.startswith("local."):
        return cfg.locals.get(ref[6:])
    return cfg.locals.get(ref) if ref.startswith("module.") else None


def _through_locals(refs: set[str], cfg: Config, seen: set[str]) -> set[str]:
    """refs with each local replaced by what it refers to."""
    out: set[str] = set()
    for r in refs:
        local = _local_of(r, cfg)
        if local is None:
            if not r.startswith("local."):
                out.add(r)
        elif r not in seen:
            seen.add(r)
            out |= _through_locals(expr_refs(local.expr), cfg, seen)
    return out


def bare_replaced(cluster: ResourceConfig, cfg: Config) -> str:
    """Why a cluster that stays no longer has its recorded bare env (shown under the
    bare env's delete, after the cluster's address)."""
    if "default_env" in cluster.block.attrs:
        return "now sets default_env, which replaces this bare default env"
    envs = envs_naming(cfg).get(cluster.block_address, [])
    if len(envs) == 1 and not envs[0].repeated:
        return (f"now has one env, {envs[0].block_address}, which is its default and "
                "replaces this bare default env")
    return "sets create_default_env = false"


def bare_hint(env: ResourceConfig) -> str:
    """What a bare env is and how to be rid of it, for an error about it (it has no block
    of its own to fix)."""
    cluster = bare_cluster_of(env)
    if not env.bare_why:
        return (f"{env.address} is the bare default env of {cluster}, which declares no "
                "env: declare one for it, with its working_dir")
    return (f"{env.address} is the bare default env of {cluster}, which {env.bare_why}: "
            "set default_env = env.NAME (an env with its working_dir) or "
            "create_default_env = false")
