"""Hosts reached over SSH and set up for rhplan: connections (host keys checked against
known_hosts, a recorded fingerprint, or published ones; else trusted on first use and
recorded), then each host's probe and Ray venv, in parallel, with each host's outcome
recorded. The ssh provider uses it for hosts you own; the aws provider, by composition,
for its instances, through a HostAccess of its own (proxy per instance, host keys
from the console output, the instance's private address for Ray).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from rhplan import hostside
from rhplan.plugin import (
    UNKNOWN,
    Connection,
    ConnectionLost,
    Node,
    PartialFailure,
    ProviderContext,
    ProviderError,
)

T = TypeVar("T")

# Run on each host with its python3 (rhplan/hostside): one round trip each
_PROBE = hostside.script("probe_host")
_RAY_VENV = hostside.script("ray_venv")


class HostAccess(Protocol):
    """How one kind of cluster reaches its hosts, beyond the ssh block."""

    def proxy_command(self, ip: str, attrs: dict[str, Any], private: dict) -> str | None:
        """The proxy command to reach ip, if any."""

    def published_host_keys(self, ip: str, attrs: dict[str, Any], private: dict
                            ) -> dict[str, Any]:
        """For a host first met (no known_hosts, nothing recorded): fingerprints its key
        must be one of, from somewhere the host cannot forge, as get_connection's
        published / published_by; {} trusts the first key."""

    def node_ip_candidate(self, ip: str, private: dict) -> str:
        """The address Ray should use on a host, if the host owns it (probe_host.py)."""


class OwnHosts:
    """Hosts you own: the ssh block's proxy command, no published keys (give
    known_hosts to check them), Ray on the address given."""

    def proxy_command(self, ip: str, attrs: dict[str, Any], private: dict) -> str | None:
        return (attrs.get("ssh") or {}).get("proxy_command")

    def published_host_keys(self, ip: str, attrs: dict[str, Any], private: dict
                            ) -> dict[str, Any]:
        return {}

    def node_ip_candidate(self, ip: str, private: dict) -> str:
        return ip


def _ray_version() -> str:
    from importlib.metadata import version
    return version("ray")


class SSHHosts:
    """Connections to a cluster's hosts and their setup (see the module's docstring)."""

    def __init__(self, access: HostAccess | None = None) -> None:
        self.access: HostAccess = access or OwnHosts()
        self.ctx: ProviderContext | None = None  # this run's (its in-memory passwords)

    def connect_to(self, ip: str, attrs: dict[str, Any], private: dict) -> Connection:
        ssh = attrs.get("ssh") or {}
        # a password lives in memory for this run only; the state holds its hash
        sens = self.ctx.sensitive.get(f"cluster.{attrs.get('name')}", {}) if self.ctx else {}
        key = ssh.get("private_key")
        known = ssh.get("known_hosts")
        recorded = (private.get("host_keys") or {}).get(ip)
        # imported here, not with the module: paramiko (~0.1 s of CPU) only when a host
        # is reached, not in every command that loads the ssh or aws provider
        from rhplan.hosts.ssh import get_connection
        conn = get_connection(
            ip, port=int(ssh.get("port") or 22), user=ssh.get("user"),
            private_key=os.path.expanduser(key) if key else None,
            password=sens.get("ssh.password"),
            known_hosts=os.path.expanduser(known) if known else None,
            proxy_command=self.access.proxy_command(ip, attrs, private),
            recorded_fingerprint=recorded,
            **({} if known or recorded else self.access.published_host_keys(ip, attrs, private)))
        fp = getattr(conn, "fingerprint", None)
        if fp and not known:
            private.setdefault("host_keys", {})[ip] = fp  # trust on first use, recorded
        return conn

    # ---- the provider hooks (rhplan/plugin.py) a provider delegates to SSHHosts ----
    def connect(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> Connection:
        """The head; its which() also finds the tools in rhplan's Ray venv there."""
        self.ctx = ctx
        conn = self.connect_to(attrs["ips"][0], attrs, private)
        root = attrs.get("root_dir")
        # envs are built with the uv that lives in rhplan's Ray venv on the host
        return WithTools(conn, f"{root}/ray-venv/bin") if root and root is not UNKNOWN else conn

    def hosts(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
              ) -> list[tuple[str, Connection]]:
        """Every host that is set up, connected."""
        self.ctx = ctx
        ready = [ip for ip in attrs["ips"] if (attrs.get("hosts") or {}).get(ip) == "ready"]
        return [(ip, self.connect_to(ip, attrs, private)) for ip in ready]

    def connect_host(self, ip: str, attrs: dict[str, Any], private: dict, ctx: ProviderContext
                     ) -> Connection:
        """Any host; as connect(), its which() finds rhplan's tools there (an env placed
        on a worker node is built there with that host's uv)."""
        self.ctx = ctx
        conn = self.connect_to(ip, attrs, private)
        root = attrs.get("root_dir")
        return WithTools(conn, f"{root}/ray-venv/bin") if root and root is not UNKNOWN else conn

    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: ProviderContext) -> str:
        self.ctx = ctx
        return f"{attrs['root_dir']}/ray-venv/bin/python"

    def setup(self, attrs: dict[str, Any], private: dict, ips: list[str]
              ) -> tuple[dict[str, Any], dict]:
        """Probe and bootstrap the given hosts in parallel; record each one's outcome."""
        head = attrs["ips"][0]
        wrote: dict[str, str] = {}  # host: rhplan's folder made there (or maybe made)

        def one(ip: str) -> tuple[str, dict[str, Any] | str]:
            try:
                return ip, self._bootstrap(ip, attrs, private, wrote)
            except ProviderError as exc:
                return ip, str(exc)

        with ThreadPoolExecutor(max_workers=max(1, len(ips))) as pool:
            results = dict(pool.map(one, ips))
        # destroy must reach every host holding rhplan's folder (see delete)
        private["folders"] = sorted(holding_folders(attrs, private) | set(wrote))
        if attrs.get("root_dir") in (None, UNKNOWN) and wrote:
            # the head failed before its folder was known: record where they were made
            attrs["root_dir"] = wrote.get(head) or next(iter(wrote.values()))
        _record(attrs, private, results)
        failed = {ip: r for ip, r in results.items() if not isinstance(r, dict)}
        if head in failed:
            raise ProviderError(f"head host {head}: {failed[head]}")
        if failed:
            msg = "; ".join(f"{ip}: {err}" for ip, err in failed.items())
            raise PartialFailure(f"{len(failed)} of {len(attrs['ips'])} hosts failed ({msg}); "
                                 "the others are set up and recorded; fix them and apply again",
                                 attrs, private)
        return attrs, private

    def _bootstrap(self, ip: str, attrs: dict[str, Any], private: dict, wrote: dict[str, str]
                   ) -> dict[str, Any]:
        conn = self.connect_to(ip, attrs, private)
        python = attrs.get("python") or "python3"
        try:
            probe = _repeatable(lambda: hostside.run_json(
                conn, python, _PROBE, self.access.node_ip_candidate(ip, private), timeout=60,
                what=f"running {python} on {ip}"))
        except hostside.HostScriptError as exc:
            if exc.returncode == 127:
                raise ProviderError(f"{python} is not installed on {ip}; install Python 3.9+ "
                                    "there or set python = \"/path/to/python3\"") from None
            raise
        if tuple(probe["version"][:2]) < (3, 9):
            raise ProviderError(f"{ip} has Python {'.'.join(map(str, probe['version']))}; "
                                "rhplan needs 3.9 or newer (set python = ...)")
        root = attrs.get("root_dir")
        if root in (None, UNKNOWN):
            root = f"{probe['home']}/.rhplan/clusters/{cluster_name(attrs)}"
        wrote[ip] = root  # the bootstrap makes the folder (and its marker) first
        ray_python = self._ray_venv(conn, ip, python, root)
        return {"cpus": probe["cpus"], "root_dir": root, "ray_python": ray_python,
                "node_ip": probe.get("node_ip") or ip}

    def _ray_venv(self, conn: Connection, ip: str, python: str, root: str) -> str:
        """rhplan's own venv for Ray on the host, with the driver's Ray version (a
        driver and a cluster of different Ray versions cannot talk). One command; a lock
        on the host keeps two setups of the same folder apart."""
        want = _ray_version()
        made = _repeatable(lambda: hostside.run_json(conn, python, _RAY_VENV, root, want,
                                                      timeout=1200,
                                                      what=f"setting up Ray {want} on {ip}"))
        return str(made["ray_python"])


class SSHHostHooks:
    """The provider hooks of hosts reached over SSH (connect, hosts, connect_host,
    ray_python, node), handed to the provider's SSHHosts: a provider puts this class before
    rhplan.plugin.Provider among its bases and sets self._hosts."""

    _hosts: SSHHosts

    def connect(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> Connection:
        return self._hosts.connect(attrs, private, ctx)

    def hosts(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
              ) -> list[tuple[str, Connection]]:
        return self._hosts.hosts(attrs, private, ctx)

    def connect_host(self, ip: str, attrs: dict[str, Any], private: dict, ctx: ProviderContext
                     ) -> Connection:
        return self._hosts.connect_host(ip, attrs, private, ctx)

    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: ProviderContext) -> str:
        return self._hosts.ray_python(conn, attrs, private, ctx)

    def node(self, ip: str, attrs: dict[str, Any], private: dict) -> Node:
        """As the host's probe found it (_record)."""
        return Node((private.get("node_ips") or {}).get(ip, ip),
                    (private.get("host_cpus") or {}).get(ip))


def _record(attrs: dict[str, Any], private: dict, results: dict[str, dict[str, Any] | str]
            ) -> None:
    """Each host's setup outcome: ready (its CPUs, Ray's address there) or why not."""
    head = attrs["ips"][0]
    hosts = dict(attrs.get("hosts") or {})
    cpus = dict(private.get("host_cpus") or {})
    node_ips = dict(private.get("node_ips") or {})
    for ip, r in results.items():
        if isinstance(r, dict):
            hosts[ip] = "ready"
            cpus[ip] = r["cpus"]
            node_ips[ip] = r["node_ip"]
            if ip == head:
                attrs["root_dir"] = r["root_dir"]
                attrs["ray_python"] = r["ray_python"]
        else:
            hosts[ip] = f"failed: {r}"
    attrs["hosts"] = hosts
    private["host_cpus"] = cpus
    private["node_ips"] = node_ips
    attrs["resources"] = attrs.get("resources") if attrs.get("resources") not in (
        None, UNKNOWN) else {"CPU": sum(cpus.get(ip, 0) for ip in attrs["ips"]
                                        if hosts.get(ip) == "ready"), "GPU": 0}


class WithTools:
    """A connection whose which() also finds the tools rhplan installed on the host."""

    def __init__(self, conn: Connection, tools_dir: str):
        self._conn = conn
        self._tools = tools_dir
        self.host = conn.host

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self._conn.run(*args, **kwargs)

    def put_bytes(self, *args: Any, **kwargs: Any) -> None:
        self._conn.put_bytes(*args, **kwargs)

    def get_bytes(self, path: str) -> bytes:
        return self._conn.get_bytes(path)

    def which(self, program: str) -> str | None:
        candidate = f"{self._tools}/{program}"
        if "/" not in program and self._conn.run(["test", "-x", candidate]).ok:
            return candidate
        return self._conn.which(program)


def _repeatable(step: Callable[[], T]) -> T:
    """Run a step that is safe to run twice (the probe only reads; the Ray venv's setup
    checks what is there and holds a lock on the host), once more if the connection
    was lost under it: a reset mid-setup then costs a retry, not a failed apply."""
    try:
        return step()
    except ConnectionLost:
        return step()


def cluster_name(attrs: dict[str, Any]) -> str:
    return str(attrs.get("name") or "cluster")


def holding_folders(attrs: dict[str, Any], private: dict) -> set[str]:
    """Hosts that may hold rhplan's folder: as recorded by setup, or (a state from before
    that record) every host that was ever set up."""
    if "folders" in private:
        return set(private["folders"])
    if "host_cpus" not in private:
        return set()  # never set up (the hosts map holds the plan's wish, not facts)
    return {ip for ip, st in (attrs.get("hosts") or {}).items()
            if st == "ready" or "folder is gone" in str(st)}
