"""Reaching a cluster's hosts: connections (local and SSH), the facts read from a host,
envs built on it, and syncing a working directory to it."""
