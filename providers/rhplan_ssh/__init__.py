"""The `ssh` provider: static hosts you already own, reached over SSH (paramiko).

    cluster "onprem" {
      provider = "ssh"
      ips      = ["10.0.0.5", "10.0.0.6"]      # the first is the head
      ssh { user = "me"  private_key = "~/.ssh/id_ed25519"  port = 22 }
    }

Each host is checked (python3 3.9+) and gets rhplan's own virtualenv for Ray (never
the system Python: PEP 668 systems refuse pip there), with the driver's Ray version: a
link to the user's shared one for that Ray and Python, made once (see rhplan/hostside/ray_venv.py).
Hosts are set up in parallel; one failing host is recorded as failed while the
others go on, and the next plan offers to set it up again. Host keys are verified
against known_hosts when given, else trusted on first use and recorded in the state.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from rhplan import hostside
from rhplan.config.evaluate import UNKNOWN
from rhplan.connection import Connection
from rhplan.errors import ConfigError, PartialFailure, ProviderError
from rhplan.provider import RunContext
from rhplan.ssh import ConnectionLost, get_connection

MARKER = ".rhplan-cluster"
T = TypeVar("T")
_CLOUD_ONLY = ("instance_type", "image_id", "region", "disk_size", "allowed_cidrs")

# Run on each host with its python3 (rhplan/hostside): one round trip each
_PROBE = hostside.script("probe_host")
_RAY_VENV = hostside.script("ray_venv")


def _ray_version() -> str:
    from importlib.metadata import version
    return version("ray")


class SSHProvider:
    name = "ssh"

    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: RunContext, file: str,
                     line: int) -> dict[str, Any]:
        self._ctx = ctx
        for key in _CLOUD_ONLY:
            if attrs.get(key) is not None:
                raise ConfigError(f"cluster {name!r}: {key} does not apply to provider \"ssh\" "
                                  "(hosts you already own); remove it", file, line)
        ips = attrs.get("ips")
        if not ips:
            raise ConfigError(f"cluster {name!r}: an ssh cluster needs ips = [\"HOST\", ...] "
                              "(the first is the head)", file, line)
        if len(set(ips)) != len(ips):
            raise ConfigError(f"cluster {name!r}: ips lists a host twice", file, line)
        ssh = attrs.get("ssh") or {}
        if ssh.get("host_key_check") is not None:
            raise ConfigError(f"cluster {name!r}: ssh.host_key_check applies to provider "
                              "\"aws\" (console output); for your own hosts give known_hosts",
                              file, line)
        if not ssh.get("user"):
            raise ConfigError(f"cluster {name!r}: give ssh {{ user = \"...\" private_key = "
                              "\"~/.ssh/id_ed25519\" }", file, line)
        root = attrs.get("root_dir")
        if root is not None and root is not UNKNOWN and not str(root).startswith("/"):
            raise ConfigError(f"cluster {name!r}: root_dir must be an absolute path on the "
                              "hosts (or left out: ~/.rhplan/clusters/NAME)", file, line)
        attrs["num_instances"] = len(ips)
        if root is None:
            attrs["root_dir"] = UNKNOWN  # the remote home is known once connected
        attrs["hosts"] = {ip: "ready" for ip in ips}
        if not attrs.get("resources"):
            attrs["resources"] = UNKNOWN
        return attrs

    # ---- connections --------------------------------------------------------
    def __init__(self) -> None:
        self._ctx: RunContext | None = None

    def _connect(self, ip: str, attrs: dict[str, Any], private: dict) -> Connection:
        ssh = attrs.get("ssh") or {}
        # a password lives in memory for this run only; the state holds its hash
        sens = self._ctx.sensitive.get(f"cluster.{attrs.get('name')}", {}) if self._ctx else {}
        password = sens.get("ssh.password")
        key = ssh.get("private_key")
        known = ssh.get("known_hosts")
        recorded = (private.get("host_keys") or {}).get(ip)
        conn = get_connection(
            ip, port=int(ssh.get("port") or 22), user=ssh.get("user"),
            private_key=os.path.expanduser(key) if key else None, password=password,
            known_hosts=os.path.expanduser(known) if known else None,
            proxy_command=self._proxy_command(ip, attrs, private),
            recorded_fingerprint=recorded,
            **({} if known or recorded else self._published_host_keys(ip, attrs, private)))
        fp = getattr(conn, "fingerprint", None)
        if fp and not known:
            private.setdefault("host_keys", {})[ip] = fp  # trust on first use, recorded
        return conn

    def _proxy_command(self, ip: str, attrs: dict[str, Any], private: dict) -> str | None:
        return (attrs.get("ssh") or {}).get("proxy_command")

    def _published_host_keys(self, ip: str, attrs: dict[str, Any], private: dict
                             ) -> dict[str, Any]:
        """For a host first met (no known_hosts, nothing recorded): fingerprints its key
        must be one of, from somewhere the host cannot forge, as get_connection's
        published / published_by; {} trusts the first key (static hosts have no such
        source: give known_hosts to check them)."""
        return {}

    def connect(self, attrs: dict[str, Any], private: dict, ctx: RunContext) -> Connection:
        self._ctx = ctx
        conn = self._connect(attrs["ips"][0], attrs, private)
        root = attrs.get("root_dir")
        # envs are built with the uv that lives in rhplan's Ray venv on the host
        return WithTools(conn, f"{root}/ray-venv/bin") if root and root is not UNKNOWN else conn

    def hosts(self, attrs: dict[str, Any], private: dict, ctx: RunContext
              ) -> list[tuple[str, Connection]]:
        self._ctx = ctx
        ready = [ip for ip in attrs["ips"] if (attrs.get("hosts") or {}).get(ip) == "ready"]
        return [(ip, self._connect(ip, attrs, private)) for ip in ready]

    def connect_host(self, ip: str, attrs: dict[str, Any], private: dict, ctx: RunContext
                     ) -> Connection:
        self._ctx = ctx
        return self._connect(ip, attrs, private)

    # ---- lifecycle ------------------------------------------------------------
    def create(self, attrs: dict[str, Any], ctx: RunContext) -> tuple[dict[str, Any], dict]:
        self._ctx = ctx
        private: dict[str, Any] = {}
        try:
            return self._setup(attrs, private, list(attrs["ips"]))
        except PartialFailure:
            raise
        except ProviderError as exc:
            if not private.get("folders"):
                raise  # nothing was made on any host
            # folders were made: record the cluster, so destroy can remove them (and an
            # apply sets the hosts up again)
            raise PartialFailure(f"{exc}; what was set up is recorded: fix it and apply "
                                 "again, or destroy", attrs, private) from None

    def _setup(self, attrs: dict[str, Any], private: dict, ips: list[str]
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
        private["folders"] = sorted(_holding_folders(attrs, private) | set(wrote))
        if attrs.get("root_dir") in (None, UNKNOWN) and wrote:
            # the head failed before its folder was known: record where they were made
            attrs["root_dir"] = wrote.get(head) or next(iter(wrote.values()))
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
        conn = self._connect(ip, attrs, private)
        python = attrs.get("python") or "python3"
        try:
            probe = _repeatable(lambda: hostside.run_json(
                conn, python, _PROBE, self._node_ip_candidate(ip, private), timeout=60,
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
            root = f"{probe['home']}/.rhplan/clusters/{_cluster_name(attrs)}"
        wrote[ip] = root  # the bootstrap makes the folder (and its marker) first
        ray_python = self._ray_venv(conn, ip, python, root)
        return {"cpus": probe["cpus"], "root_dir": root, "ray_python": ray_python,
                "node_ip": probe.get("node_ip") or ip}

    def _node_ip_candidate(self, ip: str, private: dict) -> str:
        """The address Ray should use on a host, if the host owns it (see _PROBE)."""
        return ip

    def _ray_venv(self, conn: Connection, ip: str, python: str, root: str) -> str:
        """rhplan's own venv for Ray on the host, with the driver's Ray version (a
        driver and a cluster of different Ray versions cannot talk). One command; a lock
        on the host keeps two setups of the same folder apart."""
        want = _ray_version()
        made = _repeatable(lambda: hostside.run_json(conn, python, _RAY_VENV, root, want,
                                                      timeout=1200,
                                                      what=f"setting up Ray {want} on {ip}"))
        return str(made["ray_python"])

    def ray_python(self, conn: Connection, attrs: dict[str, Any], private: dict,
                   ctx: RunContext) -> str:
        self._ctx = ctx
        return f"{attrs['root_dir']}/ray-venv/bin/python"

    def read(self, attrs: dict[str, Any], private: dict, ctx: RunContext
             ) -> dict[str, Any] | None:
        """No command here: the core reads every host in one round trip (rhplan.facts),
        including whether rhplan's folder is still there."""
        self._ctx = ctx
        return attrs

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: RunContext) -> tuple[dict[str, Any], dict]:
        self._ctx = ctx
        todo = [ip for ip in after["ips"] if (before.get("hosts") or {}).get(ip) != "ready"]
        attrs = dict(after, hosts=dict(before.get("hosts") or {}),
                     root_dir=before.get("root_dir"), ray_python=before.get("ray_python"))
        if todo:
            attrs, private = self._setup(attrs, private, todo)
        return attrs, private

    def delete(self, attrs: dict[str, Any], private: dict, ctx: RunContext) -> None:
        """Remove rhplan's folder (the one with the marker) from every host. A host that
        holds one and cannot be reached keeps the cluster in the state: never report a
        destroy as done while its folder (Ray venv, envs, secrets) is left there."""
        self._ctx = ctx
        root = attrs.get("root_dir")
        if not root or root is UNKNOWN:
            return
        held = _holding_folders(attrs, private)
        problems: dict[str, str] = {}

        def one(ip: str) -> None:
            try:
                conn = self._connect(ip, attrs, private)
            except ProviderError as exc:
                if ip in held:  # never set up (refused at first contact): nothing there
                    problems[ip] = str(exc)
                return
            if conn.run(["test", "-f", f"{root}/{MARKER}"]).ok:
                res = conn.run(["rm", "-rf", "--", root], timeout=300)
                if not res.ok:
                    problems[ip] = (f"removing {root} failed: "
                                    f"{(res.stderr.strip().splitlines() or ['?'])[-1]}")

        with ThreadPoolExecutor(max_workers=max(1, len(attrs["ips"]))) as pool:
            list(pool.map(one, attrs["ips"]))
        if problems:
            raise ProviderError(
                f"rhplan's folder {root} is left on {', '.join(sorted(problems))} "
                f"({'; '.join(problems[ip] for ip in sorted(problems))}); the cluster stays in "
                "the state: make the host reachable and run destroy again, or remove the "
                f"folder yourself and run `rhplan state rm cluster.{_cluster_name(attrs)}`")


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


def _cluster_name(attrs: dict[str, Any]) -> str:
    return str(attrs.get("name") or "cluster")


def _holding_folders(attrs: dict[str, Any], private: dict) -> set[str]:
    """Hosts that may hold rhplan's folder: as recorded by setup, or (a state from before
    that record) every host that was ever set up."""
    if "folders" in private:
        return set(private["folders"])
    if "host_cpus" not in private:
        return set()  # never set up (the hosts map holds the plan's wish, not facts)
    return {ip for ip, st in (attrs.get("hosts") or {}).items()
            if st == "ready" or "folder is gone" in str(st)}
