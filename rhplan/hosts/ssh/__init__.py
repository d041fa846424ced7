"""Reach a host over SSH (paramiko) through the same protocol as LocalConnection.

    connection.py      SSHConnection: connect, reconnect, run, stream, tunnels, files
    channel.py         one command on one session channel (argv -> `env --` line, bounds)
    hostkeys.py        fingerprints, known_hosts / recorded / published key checks
    connect_errors.py  why a connect failed, as one line with the fix
    keepalive.py       connect timeout and the watch that declares a silent peer dead
    proxy.py           proxy_command
    sftp.py            atomic writes and reads over SFTP
    pool.py            one connection per (host, port, user) per process

Commands stay argv lists (channel.py): user data arrives as data, never as shell
syntax. Host keys are never accepted silently (hostkeys.py). No wait is unbounded:
connecting, the banner, the key exchange and the login each have
RHPLAN_SSH_CONNECT_TIMEOUT seconds (default 15), and a peer that goes silent is
declared dead after RHPLAN_SSH_ALIVE_INTERVAL x RHPLAN_SSH_ALIVE_COUNT_MAX seconds
(default 15 x 3) without an answer to keepalives (keepalive.py); sshd answers them
while a command runs, so a package install of many minutes is never cut.

Importing this package imports paramiko: code that only catches ConnectionLost takes
it from rhplan.errors (a provider: from rhplan.plugin), not from here.
"""
from rhplan.hosts.ssh.connection import MAX_CONCURRENT_CHANNELS, SSHConnection
from rhplan.hosts.ssh.hostkeys import fingerprint_of, md5_fingerprint_of
from rhplan.hosts.ssh.keepalive import alive_settings, connect_timeout_default
from rhplan.hosts.ssh.pool import close_all, get_connection, pooled

__all__ = ["MAX_CONCURRENT_CHANNELS", "SSHConnection", "alive_settings", "close_all",
           "connect_timeout_default", "fingerprint_of", "get_connection",
           "md5_fingerprint_of", "pooled"]
