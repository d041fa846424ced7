"""Start a throwaway OpenSSH server on 127.0.0.1 for the static example, write
host.json (a -var-file) next to this file, and keep serving until Ctrl-C.

    python examples/static/local_sshd.py
    rhplan -chdir=examples/static apply -var-file=host.json -auto-approve

It uses the same helper as rhplan's tests (tests/sshd.py): its own host key,
client key and known_hosts in a temp folder; the system's sshd and ~/.ssh are
never touched. Needs /usr/sbin/sshd (apt-get install openssh-server).
"""
import json
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from sshd import SSHServer, ensure_sshd_installed  # noqa: E402

if __name__ == "__main__":
    ensure_sshd_installed()
    server = SSHServer()
    server.start()
    (HERE / "host.json").write_text(json.dumps({
        "ips": ["127.0.0.1"], "user": server.user, "port": server.port,
        "private_key": str(server.client_key), "known_hosts": str(server.known_hosts),
    }, indent=2) + "\n")
    print(f"sshd on 127.0.0.1:{server.port}; wrote {HERE / 'host.json'}; Ctrl-C stops it",
          flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
