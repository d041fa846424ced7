"""Finding an applied env in a configuration's recorded state: the env (by name, or a
cluster's default env), its cluster, and a connection to the host it lives on. What
`rhplan.servlet()`, `rhplan run` and `rhplan status` look up before they reach a servlet
or an env; the servlets package below is handed what this finds (servlets.client's
ServletTarget) and never reads a configuration or a state itself.

Light on purpose: a first `rhplan.servlet()` handle imports this, not the workspace
package (which brings the planner and networkx, ~0.5 s).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rhplan.errors import RhplanError
from rhplan.names import normalize_address

if TYPE_CHECKING:
    from rhplan.ray.servlets.client import ServletTarget


def open_backend(chdir: str | os.PathLike[str]) -> Any:
    """The configuration's state backend. A local one is opened here directly: the
    workspace module brings the planner and networkx (~0.5 s of a first handle)."""
    from rhplan.config.load import load_config
    cfg = load_config(Path(chdir))
    if cfg.backend.type == "local":  # as workspace.backend_for does
        from rhplan.state.local import LocalBackend
        path = Path(str(cfg.backend.attrs.get("path", "rhplan.state.json")))
        return LocalBackend(path if path.is_absolute() else cfg.dir / path)
    from rhplan.workspace import backend_for
    return backend_for(cfg)


def _cluster_address(state: Any, cluster: str, clusters: list[str],
                     chdir: str | os.PathLike[str]) -> str:
    """The recorded cluster CLUSTER names (an address, a block name or its name)."""
    addr = normalize_address(cluster if cluster.startswith(("cluster.", "module."))
                             else f"cluster.{cluster}")
    if addr not in state.resources:
        addr = next((a for a in clusters
                     if state.resources[a].attributes.get("name") == cluster), addr)
    if addr not in state.resources:
        raise RhplanError(f"no cluster {cluster!r} in the state of {chdir}; applied "
                          f"clusters: {', '.join(clusters) or 'none (run rhplan apply)'}")
    return addr


def default_env(state: Any, cluster: str | None, chdir: str | os.PathLike[str] = "."
                ) -> str:
    """The address of cluster CLUSTER's default env (of the only cluster when None): its
    default_env, else its bare env, else its only env."""
    clusters = sorted(a for a, r in state.resources.items() if r.type == "cluster")
    if cluster is None:
        if len(clusters) != 1:
            raise RhplanError(
                f"{len(clusters)} clusters in the state of {chdir} ("
                f"{', '.join(clusters) or 'none: run rhplan apply'}); name the cluster "
                "(rhplan.servlet(cluster=\"NAME\"), rhplan run -cluster NAME) or the env")
        addr = clusters[0]
    else:
        addr = _cluster_address(state, cluster, clusters, chdir)
    declared = state.resources[addr].attributes.get("default_env")
    if declared:
        if declared not in state.resources:
            raise RhplanError(f"{addr}: its default_env {declared} is not applied; run "
                              "rhplan apply")
        return str(declared)
    envs = sorted(a for a, r in state.resources.items()
                  if r.type == "env" and r.attributes.get("cluster") == addr)
    from rhplan.config.default_env import is_bare_env
    bare = [a for a in envs if is_bare_env(a, state.resources[a].attributes)]
    if len(envs) == 1 or bare:  # the bare env rhplan made as its default (config/default_env.py)
        return (bare or envs)[0]
    if not envs:
        raise RhplanError(f"{addr} has no env; declare one (env \"main\" {{ cluster = {addr} }}) "
                          "and run rhplan apply")
    raise RhplanError(f"{addr} has {len(envs)} envs ({', '.join(envs)}) and no default_env; "
                      "set default_env = env.NAME in its cluster block, or name the env")


def find_env(name: str | None, chdir: str | os.PathLike[str] = ".",
             cluster: str | None = None) -> tuple[Any, Any]:
    """The env's and its cluster's recorded state; with no name, the cluster's default
    env (see default_env)."""
    state = open_backend(chdir).read()
    if name is None:
        name = default_env(state, cluster, chdir)
    # x['a'] means x["a"], as on the CLI
    env = state.resources.get(normalize_address(name if name.startswith(("env.", "module."))
                                                else f"env.{name}"))
    if env is None:
        env = next((r for r in state.resources.values()
                    if r.type == "env" and r.attributes.get("name") == name), None)
    if env is None:
        have = sorted(a for a in state.resources if a.startswith("env."))
        raise RhplanError(f"no env {name!r} in the state of {chdir}; applied envs: "
                          f"{', '.join(have) or 'none (run rhplan apply)'}")
    found = state.resources.get(env.attributes["cluster"])
    if found is None or not found.attributes.get("ray_address"):
        raise RhplanError(f"{env.address}: its cluster has no Ray head recorded; run rhplan apply")
    return env, found


def host_connection(cluster: Any, chdir: str | os.PathLike[str], node: str = "") -> Any:
    """The provider's connection to the cluster's head, or to worker host `node`."""
    from rhplan.provider import RunContext
    ctx = RunContext(Path(chdir).absolute())
    provider = ctx.provider(cluster.provider)
    own = cluster.provider_private  # the provider's part of the private record
    return (provider.connect_host(node, cluster.attributes, own, ctx) if node
            else provider.connect(cluster.attributes, own, ctx))


def servlet_target(name: str | None, chdir: str | os.PathLike[str] = ".",
                   cluster: str | None = None) -> ServletTarget:
    """What servlets.client needs to reach env NAME's servlet (with no name, the default
    env of `cluster`, of the only cluster when that is None too): the records, how to
    connect to its hosts, and how to read its record again (an apply restarted it)."""
    from rhplan.ray.servlets.client import ServletTarget
    env, found = find_env(name, chdir, cluster)
    address = env.address  # a handle keeps the env it found, whatever the default becomes

    def connect(node: str) -> Any:
        return host_connection(found, chdir, node)

    def reread() -> Any:
        return find_env(address, chdir)[0]

    return ServletTarget(env, found, connect, reread)
