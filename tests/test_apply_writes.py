"""How often apply writes the state (rhplan.apply.StateRecorder).

Steps that only record something (secrets, packages) share writes, at most one per
WRITE_INTERVAL plus a final one, so a large apply is not O(N^2) in state writes; a step
that changed a host is written before it is reported complete, so a SIGKILL right
after it finds it in the state. The state's serial counts its writes.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from typing import Any

from rhplan.apply import WRITE_INTERVAL, changes_world


def secrets_and_packages(n: int) -> str:
    parts = []
    for i in range(n // 2):
        parts.append(f'secret "s{i:03d}" {{\n  values = {{ K = "v{i}" }}\n}}\n')
        parts.append(f'package "p{i:03d}" {{\n  git_url = "https://example.com/r{i}.git"\n'
                     f'  revision = "v1"\n  install_method = "pip"\n}}\n')
    return "\n".join(parts)


def test_only_clusters_and_envs_act_outside_the_state() -> None:
    """What decides which steps are written at once: a type whose create/update/delete
    is its own (a new type acting on hosts is durable without being listed anywhere)."""
    for type_name, outside in (("cluster", True), ("env", True), ("secret", False),
                               ("package", False)):
        for op in ("create", "update", "delete"):
            assert changes_world(type_name, op) is outside, (type_name, op)


def test_state_only_steps_share_writes(rh: Any) -> None:
    rh.write(secrets_and_packages(200))
    t0 = time.monotonic()
    res = rh("apply", "-auto-approve").ok()
    elapsed = time.monotonic() - t0
    assert "Resources: 200 added" in res.stdout, res.stdout
    state = rh.state()
    assert len(state["resources"]) == 200
    # the lineage write of a first apply, one per interval while steps finish, the final
    # one (each step wrote before: serial 201)
    bound = 2 + math.ceil(elapsed / WRITE_INTERVAL)
    assert state["serial"] <= bound, (state["serial"], elapsed)
    assert rh("plan", "-detailed-exitcode").returncode == 0

    serial = state["serial"]
    rh.write(secrets_and_packages(100))  # drops half of them
    t0 = time.monotonic()
    res = rh("apply", "-auto-approve").ok()
    elapsed = time.monotonic() - t0
    assert "100 destroyed" in res.stdout, res.stdout
    state = rh.state()
    assert {r["address"] for r in state["resources"]} == {
        f"{t}.{p}{i:03d}" for i in range(50) for t, p in (("secret", "s"), ("package", "p"))}
    assert state["serial"] - serial <= 1 + math.ceil(elapsed / WRITE_INTERVAL), (
        state["serial"] - serial, elapsed)


def test_sigkill_right_after_a_host_step_finds_it_in_state(rh: Any, wait_for: Any) -> None:
    """A local cluster (a Ray head started on this machine) is written before apply says
    "Creation complete", with the secrets that finished before it; the env after it
    blocks in setup_cmds, so nothing else would write the state for the cluster."""
    blocker, release, started = rh.blocker()
    rh.write('cluster "main" {\n  provider = "local"\n}\n\n'
             'env "app" {\n  cluster = cluster.main\n'
             f'  setup_cmds = [{json.dumps(blocker)}]\n}}\n\n' + secrets_and_packages(40))
    first = rh.start("apply", "-auto-approve")
    wait_for(lambda: "cluster.main: Creation complete" in first.text()
             or not first.running(), 120, "the cluster's creation")
    os.kill(first.pid, signal.SIGKILL)  # rhplan only: the Ray head it started stays
    assert first.finish(30).returncode == -signal.SIGKILL, first.text()

    recorded = rh.resources()
    assert "cluster.main" in recorded, first.text()
    assert recorded["cluster.main"]["attributes"].get("ray_address"), recorded["cluster.main"]
    assert {a for a in recorded if a.startswith(("secret.", "package."))} == {
        f"{t}.{p}{i:03d}" for i in range(20) for t, p in (("secret", "s"), ("package", "p"))}
    assert "env.app" not in recorded

    release.touch()  # the killed run's blocker (if it started) ends; the next run's too
    res = rh("apply", "-auto-approve").ok()
    assert "Resources: 1 added" in res.stdout, res.stdout  # only the env: nothing twice
    assert rh("plan", "-detailed-exitcode").returncode == 0
