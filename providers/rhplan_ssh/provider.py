"""SSHProvider: the `ssh` cluster's plan-time checks and lifecycle; reaching and
setting up its hosts is SSHHosts' (hosts.py)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rhplan.plugin import (
    MARKER,
    UNKNOWN,
    ClusterRecord,
    ConfigError,
    PartialFailure,
    Provider,
    ProviderContext,
    ProviderError,
)
from rhplan_ssh.hosts import SSHHostHooks, SSHHosts, cluster_name, holding_folders


class SSHProvider(SSHHostHooks, Provider):
    name = "ssh"

    def __init__(self) -> None:
        self._hosts = SSHHosts()

    def _use(self, ctx: ProviderContext) -> None:
        self._hosts.ctx = ctx

    def plan_cluster(self, name: str, attrs: dict[str, Any], ctx: ProviderContext, file: str,
                     line: int) -> dict[str, Any]:
        self._use(ctx)
        ips = attrs.get("ips")
        if not ips:
            raise ConfigError(f"cluster {name!r}: an ssh cluster needs ips = [\"HOST\", ...] "
                              "(the first is the head)", file, line)
        if len(set(ips)) != len(ips):
            raise ConfigError(f"cluster {name!r}: ips lists a host twice", file, line)
        ssh = attrs.get("ssh") or {}
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

    # ---- lifecycle ------------------------------------------------------------
    def create(self, attrs: dict[str, Any], ctx: ProviderContext) -> ClusterRecord:
        self._use(ctx)
        private: dict[str, Any] = {}
        try:
            return ClusterRecord(*self._hosts.setup(attrs, private, list(attrs["ips"])))
        except PartialFailure:
            raise
        except ProviderError as exc:
            if not private.get("folders"):
                raise  # nothing was made on any host
            # folders were made: record the cluster, so destroy can remove them (and an
            # apply sets the hosts up again)
            raise PartialFailure(f"{exc}; what was set up is recorded: fix it and apply "
                                 "again, or destroy", attrs, private) from None

    def read(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext
             ) -> dict[str, Any] | None:
        """No command here: the core reads every host in one round trip (rhplan.hosts.facts),
        including whether rhplan's folder is still there."""
        self._use(ctx)
        return attrs

    def update(self, before: dict[str, Any], after: dict[str, Any], private: dict,
               ctx: ProviderContext) -> ClusterRecord:
        self._use(ctx)
        todo = [ip for ip in after["ips"] if (before.get("hosts") or {}).get(ip) != "ready"]
        attrs = dict(after, hosts=dict(before.get("hosts") or {}),
                     root_dir=before.get("root_dir"), ray_python=before.get("ray_python"))
        if todo:
            attrs, private = self._hosts.setup(attrs, private, todo)
        return ClusterRecord(attrs, private)

    def delete(self, attrs: dict[str, Any], private: dict, ctx: ProviderContext) -> None:
        """Remove rhplan's folder (the one with the marker) from every host. A host that
        holds one and cannot be reached keeps the cluster in the state: never report a
        destroy as done while its folder (Ray venv, envs, secrets) is left there."""
        self._use(ctx)
        root = attrs.get("root_dir")
        if not root or root is UNKNOWN:
            return
        held = holding_folders(attrs, private)
        problems: dict[str, str] = {}

        def one(ip: str) -> None:
            try:
                conn = self._hosts.connect_to(ip, attrs, private)
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
                f"folder yourself and run `rhplan state rm cluster.{cluster_name(attrs)}`")
