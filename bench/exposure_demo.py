"""The aws provider's exposure settings against a real moto server, as README.md shows
them: the refusal without allowed_cidrs (no internet), the caller's address from a local
stand-in for checkip.amazonaws.com, an in-place allowed_cidrs change, and drift in the
security group's rules. The cluster's provider is aws_launch_only (tests/plugins,
`uv pip install -e tests/plugins`): the aws provider without host set-up, so nothing
connects to moto's made-up addresses.

    python bench/exposure_demo.py
"""
import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # test modules
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from motoserver import MotoServer, aws_env  # noqa: E402
from test_security_exposure import _AddressService, ssh_key, x86_image_id  # noqa: E402

base = Path(tempfile.mkdtemp(prefix="rhplan-exposure-"))
atexit.register(shutil.rmtree, base, True)  # the moto server's files and the state go too
infra = base / "infra"
infra.mkdir()
env = {**aws_env(), "NO_COLOR": "1"}


def rh(*a: str) -> None:
    print(f"$ rhplan {' '.join(a)}")
    p = subprocess.run([sys.executable, "-m", "rhplan.cli", f"-chdir={infra}", *a],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
    print(p.stdout + p.stderr, end="")


with MotoServer(base) as moto:
    svc = _AddressService(b"192.0.2.44\n")
    key = ssh_key(base)
    def hcl(provider_extra: str, cluster_extra: str) -> None:
        (infra / "main.hcl").write_text(textwrap.dedent(f'''
        provider "aws" {{
          region       = "us-east-1"
          endpoint_url = "{moto.url}"
          {provider_extra}
        }}
        cluster "rh-cpu" {{
          provider      = "aws_launch_only"
          instance_type = "c5.large"
          num_instances = 1
          image_id      = "{x86_image_id(moto)}"
          open_ports    = [8080]
          {cluster_extra}
          ssh {{
            user        = "ubuntu"
            private_key = "{key}"
          }}
        }}
        '''))
    hcl("", "")
    rh("plan")
    hcl(f'public_ip_url = "{svc.url}"', "")
    rh("plan")
    rh("apply", "-auto-approve")
    hcl("", 'allowed_cidrs = ["198.51.100.0/24"]')
    rh("plan")
    rh("apply", "-auto-approve")
    st = json.loads((infra / "rhplan.state.json").read_text())
    gid = st["resources"][0]["private"]["provider"]["security_group_id"]
    moto.client("ec2").authorize_security_group_ingress(GroupId=gid, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    print("# (0.0.0.0/0 added to tcp/22 by hand, with boto3)")
    rh("plan")
    rh("destroy", "-auto-approve")
    svc.stop()
