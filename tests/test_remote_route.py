"""Choosing the route to a servlet: a head whose Ray drops packets is given up on within
2 s and the SSH route is taken, never a hang. The black hole is a real TCP listener
whose accept queue is full (Linux then drops further SYNs, as a firewall would)."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from rhplan.errors import RhplanError
from rhplan.ray.head import private_env
from rhplan.ray.servlets import route
from rhplan.state.model import ResourceState


@pytest.fixture
def black_hole() -> Iterator[str]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    address = f"127.0.0.1:{srv.getsockname()[1]}"
    held: list[socket.socket] = []
    try:
        for _ in range(16):  # fill the accept queue until a connect is no longer answered
            s = socket.socket()
            s.settimeout(0.3)
            try:
                s.connect(srv.getsockname())
            except TimeoutError:
                s.close()
                break
            held.append(s)
        else:
            pytest.skip("this kernel answers connects past a full accept queue")
        yield address
    finally:
        for s in held:
            s.close()
        srv.close()


def test_unanswered_address_is_given_up_within_2s(black_hole: str) -> None:
    t0 = time.monotonic()
    assert route.reachable(black_hole) is False
    assert time.monotonic() - t0 < 2.0


def test_route_falls_back_to_ssh_within_2s(black_hole: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(route.ROUTE_ENV, raising=False)
    token = tmp_path / "driver.token"
    token.write_text("t")
    cluster = ResourceState(
        address="cluster.far", type="cluster", name="far", provider="ssh",
        attributes={"ray_address": black_hole, "ray_version": version("ray"),
                    "ips": ["127.0.0.1"]},
        private={"ray_token_path": "/x/token", "ray_driver_token_path": str(token)})
    t0 = time.monotonic()
    route._routes.pop((cluster.address, black_hole), None)
    assert route.choose_route(cluster) == "ssh"
    assert time.monotonic() - t0 < 2.0
    # a head that answers (here: any listener) keeps the direct fast path; in a suite
    # that already imported Ray, this process must look set up for this cluster
    for k, v in private_env(cluster.private, driver=True).items():
        if k != "RAY_AUTH_TOKEN_PATH":
            monkeypatch.setenv(k, v)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        cluster.attributes["ray_address"] = f"127.0.0.1:{srv.getsockname()[1]}"
        assert route.choose_route(cluster) == "direct"
        # ...but a one-host cluster's loopback is its head's: from another machine, the
        # 127.0.0.1 here is someone else's port (issue 16)
        cluster.attributes["ips"] = ["10.0.0.5"]
        route._routes.clear()
        assert route.choose_route(cluster) == "ssh"


def test_route_forced_and_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = ResourceState(address="cluster.c", type="cluster", name="c", provider="local",
                            attributes={"ray_address": "127.0.0.1:1"}, private={})
    monkeypatch.setenv(route.ROUTE_ENV, "ssh")
    assert route.choose_route(cluster) == "ssh"
    monkeypatch.setenv(route.ROUTE_ENV, "carrier-pigeon")
    with pytest.raises(RhplanError, match="use ssh, direct or auto"):
        route.choose_route(cluster)
