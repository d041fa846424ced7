"""The SSH layer prefers AES-GCM (rhplan/hosts/ssh.py _Transport): with OpenSSH it is the
cipher both ways, and a tunnel (what the gateway's calls and objects cross) carries
data intact with it. Why: paramiko's per-packet cost is Python, and GCM needs no
separate MAC (docs/remote.md, "Speed")."""
from __future__ import annotations

import os
import socket
import threading

import pytest
from sshd import SSHServer

pytest.importorskip("paramiko")

from rhplan.hosts.ssh import SSHConnection  # noqa: E402


def test_connections_use_aes_gcm_and_tunnels_carry_data(tmp_path) -> None:
    with SSHServer(tmp_path / "sshd") as server, socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def echo() -> None:
            conn, _ = srv.accept()
            with conn:
                while data := conn.recv(1 << 16):
                    conn.sendall(data)

        threading.Thread(target=echo, daemon=True).start()
        with SSHConnection("127.0.0.1", port=server.port, user=server.user,
                           private_key=server.client_key,
                           known_hosts=server.known_hosts) as conn:
            chan = conn.open_tunnel("127.0.0.1", srv.getsockname()[1])
            transport = chan.get_transport()
            assert (transport.local_cipher, transport.remote_cipher) == (
                "aes128-gcm@openssh.com", "aes128-gcm@openssh.com")
            data = os.urandom(1 << 20)
            chan.sendall(data)
            back = bytearray()
            chan.settimeout(30)
            while len(back) < len(data):
                back += chan.recv(len(data) - len(back))
            chan.close()
    assert bytes(back) == data
