"""What `rhplan status` prints: per cluster its Ray head and gateway, then each node
(head first) with its Ray, memory and the servlets placed on it; or -json the report as
it is. The report itself (each cluster asked over SSH) is rhplan/status.py's."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rhplan.workspace.state_ops import Status


def show(report: Status, as_json: bool) -> int:
    """The status report; the exit code: 1 when something is unhealthy (text only)."""
    if as_json:
        click.echo(json.dumps(report.clusters, indent=2, sort_keys=True))
        return 0
    if not report.clusters:
        click.echo("No clusters in the state. Run rhplan apply.")
        return 0
    for line in render(report.clusters, report.default_env_names()):
        click.echo(line)
    return 1 if report.unhealthy() else 0


def render(report: list[dict[str, Any]], default_envs: dict[str, str | None]) -> list[str]:
    """The lines `rhplan status` prints: per cluster its Ray head and gateway, then each
    node (head first) with its Ray, memory and the servlets placed on it.
    default_envs: cluster address -> the name of its default env (None if none)."""
    lines = []
    for c in report:
        lines.append(f"{c['address']} ({c['provider']}, hosts {', '.join(c['ips'])})")
        lines.append(f"  ray head  {c['ray']['status']:<7} {c['ray'].get('address') or '-'}"
                     f"  ray {c['ray'].get('version') or '-'}")
        if c["ray"].get("error"):
            lines.append(f"            {c['ray']['error']}")
        if c.get("gateway"):
            lines.append(f"  gateway   running pid {c['gateway']['pid']} (127.0.0.1 on the head)")
        several = len(c["nodes"]) > 1
        for node in c["nodes"]:
            mem = node.get("memory")
            used = (f"memory {_gib(mem['used'])}/{_gib(mem['total'])} GiB used" if mem
                    else "memory -")
            if several or mem:
                lines.append(f"  node      {node['ip']:<15} {node['role']:<6}  ray "
                             f"{node['ray']:<11} {used}".rstrip())
            if several and node.get("error") and node["role"] == "worker":
                lines.append(f"            {node['error']}")
            if node.get("gateway"):
                lines.append(f"  gateway   running pid {node['gateway']['pid']} (127.0.0.1 on "
                             f"{node['ip']})")
            for s in node["servlets"]:
                health = {True: "alive", False: "dead"}.get(s["alive"], "unknown")
                up = f"up {_duration(s['uptime'])}" if s.get("uptime") is not None else ""
                pid = f"pid {s['pid']}" if s.get("pid") else ""
                mark = "  (default env)" if default_envs.get(c["address"]) == s["env"] else ""
                lines.append(f"  servlet   {health:<7} {s['env']:<20} {pid:<12} {up:<10}"
                             f"{mark}".rstrip())
    return lines


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"
