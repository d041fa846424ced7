"""The aws example on one machine, without an AWS account: moto plus a local sshd.

    python examples/aws/local_moto.py --background   # returns once both answer
    rhplan -chdir=examples/aws apply   -var-file=moto.json -auto-approve
    python examples/aws/np_sum.py
    rhplan -chdir=examples/aws destroy -var-file=moto.json -auto-approve
    python examples/aws/local_moto.py --stop

It starts a moto server (the EC2 API, `python -m moto.server`) and a throwaway OpenSSH
server, both on 127.0.0.1, and writes moto.json (a -var-file) beside main.hcl:
endpoint_url, one of moto's x86_64 images, the sshd's user and key, this Python as
the hosts' python (a driver and its cluster need the same one), a root_dir in the temp
folder, and a proxy_command.

moto's instances exist only on paper: their addresses are made up, and nothing may
ever connect to them. rhplan reaches each one through proxy_command, where SSM or a
bastion stands in a real setup: `local_moto.py proxy %h %i PORT LOG` logs which
instance rhplan meant (%h its address, %i its id) and carries the SSH session to the
local sshd instead. So every "instance" is this machine, and the whole chain runs:
launch over the EC2 API, SSH, Ray, the env, its servlet, destroy.

SIGINT, SIGTERM and SIGHUP (or --stop) stop both servers and remove the temp folder
and moto.json. Needs the test extras (`pip install -e '.[test]'`: moto[server]) and
/usr/sbin/sshd.
"""
from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "static"))
sys.path.insert(0, str(HERE.parent.parent / "tests" / "support"))

from local_sshd import run_service, start_sshd  # noqa: E402
from sshd import _relay  # noqa: E402

# The interpreter behind this Python (a venv's base): the hosts build Ray's venv and the
# envs from it, so np_sum.py run with this Python matches them exactly (Ray refuses a
# driver whose Python differs, even in the patch version).
BASE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def start(root: Path, var_file: Path, cleanups: list[Callable[[], None]]) -> tuple[dict, str]:
    try:
        from motoserver import MotoServer
    except ImportError as exc:
        raise SystemExit(f"{exc.name} is missing: pip install -e '.[test]' (moto[server])"
                         ) from None
    ssh, ssh_line = start_sshd(root / "sshd", var_file, cleanups)
    moto = MotoServer(root)
    cleanups.append(moto.stop)
    moto.start()
    images = moto.client("ec2").describe_images()["Images"]
    ami = sorted(i["ImageId"] for i in images if i.get("Architecture") == "x86_64")[0]
    proxy = shlex.join([sys.executable, str(Path(__file__).resolve()), "proxy", "%h", "%i",
                        str(ssh["port"]), str(root / "proxy.log")])
    values = {
        "endpoint_url": moto.url,
        "image_id": ami,
        "ssh_user": ssh["user"],
        "private_key": ssh["private_key"],
        "proxy_command": proxy,
        "python": BASE_PYTHON,
        "root_dir": str(root / "hosts"),
        # no internet to look this machine's address up, and nothing reaches moto's
        # made-up addresses anyway: a documentation range
        "allowed_cidrs": ["198.51.100.0/24"],
        # moto's console output is a fixed boot log without host keys
        "host_key_check": "trust_on_first_use",
    }
    return values, f"moto on {moto.url}, {ssh_line}"


def proxy(argv: list[str]) -> None:
    """ProxyCommand: note the instance rhplan meant, then relay to the local sshd."""
    address, instance_id, port, log = argv
    with open(log, "a") as fh:
        fh.write(f"{instance_id} {address}\n")
    _relay("127.0.0.1", int(port))  # never `address`: it is made up


if __name__ == "__main__":
    if sys.argv[1:2] == ["proxy"]:
        proxy(sys.argv[2:])
        sys.exit(0)
    sys.exit(run_service(None, Path(__file__), start, "rhplan-local-moto-",
                         HERE / "moto.json", "moto and a local sshd for examples/aws; "
                         "writes moto.json (a -var-file)."))
