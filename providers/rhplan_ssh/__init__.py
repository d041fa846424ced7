"""The `ssh` provider: static hosts you already own, reached over SSH (paramiko).

    cluster "onprem" {
      provider = "ssh"
      ips      = ["10.0.0.5", "10.0.0.6"]      # the first is the head
      ssh { user = "me"  private_key = "~/.ssh/id_ed25519"  port = 22 }
    }

Each host is checked (python3 3.9+) and gets rhplan's own virtualenv for Ray (never
the system Python: PEP 668 systems refuse pip there), with the driver's Ray version: a
link to the user's shared one for that Ray and Python, made once (rhplan/hostside/ray_venv.py).
Hosts are set up in parallel; one failing host is recorded as failed while the
others go on, and the next plan offers to set it up again. Host keys are verified
against known_hosts when given, else trusted on first use and recorded in the state.

    provider.py  SSHProvider: plan-time checks and the lifecycle
    hosts.py     SSHHosts: connections and host setup (the aws provider uses it too)
"""
from rhplan_ssh.hosts import HostAccess, SSHHostHooks, SSHHosts
from rhplan_ssh.provider import SSHProvider

__all__ = ["HostAccess", "SSHHostHooks", "SSHHosts", "SSHProvider"]
