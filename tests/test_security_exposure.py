"""Issue 16, items 5 and 6 (the parts owned here): what rhplan leaves readable or open.

- Saved plan files (`plan -out`) are 0600: they carry the prior state (provider-private
  data) and keyed digests of secrets. Checked on the file the real CLI writes, also over
  a file that was 0644 before.
- `.rhplan/` (Ray tokens, the digest key, caches) is git-ignored in an infra repo: the
  first plan in a git work tree adds it to `.gitignore`; `git check-ignore` (real git)
  says so. A folder that is not a work tree is left alone; a `.gitignore` that cannot
  be written gets a warning naming the line to add.
- The local copy of a cluster's Ray token goes with the cluster also when a refresh
  forgets it (its instances, group and key pair were deleted outside rhplan, so no
  delete ever runs): an aws cluster applied on the real moto server (host setup
  skipped: nothing connects to an emulated address), then destroyed after its parts
  vanished.
- The aws provider's exposure (allowed_cidrs, host keys from the console output):
  see the tests further down.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from motoserver import MotoServer, aws_env

SECRETS = """
secret "a" {
  values = { K = "v1" }
}
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- saved plan files -------------------------------------------------------------------

def test_saved_plan_file_is_private(rh: Any) -> None:
    rh.write(SECRETS)
    rh("plan", "-out", "fresh.plan").ok()
    assert mode(rh.dir / "fresh.plan") == 0o600
    # an older, world-readable file of the same name is replaced, not kept
    old = rh.dir / "old.plan"
    old.write_text("{}")
    old.chmod(0o644)
    rh("plan", "-out", "old.plan").ok()
    assert mode(old) == 0o600
    assert json.loads(old.read_text())["prior_state"] is not None
    leftovers = [p.name for p in rh.dir.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers


def test_an_unwritable_plan_path_is_one_line(rh: Any) -> None:
    rh.write(SECRETS)
    line = rh("plan", "-out", "no/such/folder/x.plan").error_line()
    assert "cannot write plan file 'no/such/folder/x.plan'" in line, line


# --- .rhplan/ is git-ignored --------------------------------------------------------------

def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "infra-repo"
    repo.mkdir()
    assert git(repo, "init", "-q").returncode == 0
    return repo


def test_first_plan_in_a_git_repo_ignores_rhplan(git_repo: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(git_repo / "infra")
    rh.write(SECRETS)
    (rh.dir / ".gitignore").write_text("*.plan")  # the user's own, no final newline
    out = rh("plan").ok().stdout
    assert f"Added .rhplan/ to {rh.dir}/.gitignore" in out, out
    assert (rh.dir / ".rhplan" / "digest.key").exists()
    assert (rh.dir / ".gitignore").read_text().splitlines()[0] == "*.plan"
    assert git(rh.dir, "check-ignore", "-q", ".rhplan/digest.key").returncode == 0
    assert git(rh.dir, "check-ignore", "-q", ".rhplan/ray-tokens/c.token").returncode == 0
    # said once, written once
    again = rh("apply", "-auto-approve").ok().stdout
    assert ".gitignore" not in again, again
    assert (rh.dir / ".gitignore").read_text().count(".rhplan/") == 1
    # nothing under .rhplan/ is offered to a commit
    git(git_repo, "add", "-A")
    staged = git(git_repo, "diff", "--cached", "--name-only").stdout.split()
    assert staged and not [p for p in staged if ".rhplan/" in p], staged


def test_a_repo_that_ignores_it_already_is_left_alone(git_repo: Path, rhplan_in: Any) -> None:
    (git_repo / ".gitignore").write_text(".rhplan/\n")
    rh = rhplan_in(git_repo / "infra")
    rh.write(SECRETS)
    out = rh("plan").ok().stdout
    assert ".gitignore" not in out and not (rh.dir / ".gitignore").exists(), out


def test_outside_a_work_tree_nothing_is_written(rh: Any) -> None:
    rh.write(SECRETS)
    out = rh("plan").ok().stdout
    assert ".gitignore" not in out and not (rh.dir / ".gitignore").exists(), out


def test_an_unwritable_gitignore_is_a_warning(git_repo: Path, rhplan_in: Any) -> None:
    rh = rhplan_in(git_repo / "infra")
    rh.write(SECRETS)
    (rh.dir / ".gitignore").mkdir()  # cannot be appended to, whoever runs the test
    out = rh("plan").ok().stdout
    assert "Warning:" in out and "is not git-ignored" in out and "add the line .rhplan/" \
        in out, out


# --- the driver's token copy --------------------------------------------------------------

def ssh_key(tmp_path: Path) -> Path:
    """An OpenSSH private key: the aws provider makes the key pair from its public half."""
    path = tmp_path / "id_ed25519"
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True, timeout=30)
    return path


def x86_image_id(moto: MotoServer) -> str:
    images = moto.client("ec2").describe_images()["Images"]
    return sorted(i["ImageId"] for i in images if i.get("Architecture") == "x86_64")[0]


def aws_cluster_hcl(moto: MotoServer, key: Path, name: str = "c", cidrs: str | None =
                    '["198.51.100.0/24"]', provider_extra: str = "", ssh_extra: str =
                    'host_key_check = "trust_on_first_use"', endpoint: str | None = None) -> str:
    allowed = f"allowed_cidrs = {cidrs}" if cidrs is not None else ""
    return textwrap.dedent(f"""
        provider "aws" {{
          region       = "us-east-1"
          endpoint_url = "{endpoint or moto.url}"
          {provider_extra}
        }}
        cluster "{name}" {{
          provider      = "aws"
          instance_type = "c5.large"
          num_instances = 1
          image_id      = "{x86_image_id(moto)}"
          open_ports    = [8080]
          {allowed}
          ssh {{
            user        = "ubuntu"
            private_key = "{key}"
            {ssh_extra}
          }}
        }}
    """)


def launch_only(hcl: str) -> str:
    """The cluster on the test provider aws_launch_only (tests/plugins): its instances
    are launched, tagged and terminated, never reached over SSH (moto's have no sshd)."""
    return hcl.replace('provider      = "aws"', 'provider      = "aws_launch_only"')


def test_token_copy_goes_when_a_refresh_forgets_the_cluster(moto: MotoServer, tmp_path: Path,
                                                            rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    rh.keep = True
    rh.write(launch_only(aws_cluster_hcl(moto, ssh_key(tmp_path), name="gone")))
    rh("apply", "-auto-approve").ok()
    # what _start_ray leaves on a cluster with Ray: the local token copy, recorded
    token = rh.dir / ".rhplan" / "ray-tokens" / "gone.token"
    token.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not-a-real-token")
    os.close(fd)
    doc = rh.state()
    cluster = next(r for r in doc["resources"] if r["address"] == "cluster.gone")
    cluster["private"]["ray"]["ray_driver_token_path"] = str(token)
    doc["serial"] += 1
    rh.state_path.write_text(json.dumps(doc, indent=1))
    # everything of the cluster vanishes outside rhplan
    ec2 = moto.client("ec2")
    p = cluster["private"]["provider"]
    ec2.terminate_instances(InstanceIds=[i["id"] for i in p["instances"]])
    ec2.get_waiter("instance_terminated").wait(InstanceIds=[i["id"] for i in p["instances"]],
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    ec2.delete_security_group(GroupId=p["security_group_id"])
    ec2.delete_key_pair(KeyName=p["key_name"])
    res = rh("destroy", "-auto-approve").ok()
    assert not rh.resources(), res.describe()
    assert not token.exists(), "the token copy outlived its cluster"


# --- aws: who may reach the instances (allowed_cidrs) -------------------------------------

def group_rules(moto: MotoServer, rh: Any, address: str = "cluster.c") -> set[tuple[Any, ...]]:
    gid = rh.resources()[address]["private"]["provider"]["security_group_id"]
    group = moto.client("ec2").describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    out: set[tuple[Any, ...]] = set()
    for p in group["IpPermissions"]:
        for r in p.get("IpRanges", []):
            out.add((p.get("FromPort"), r["CidrIp"]))
        for r in p.get("Ipv6Ranges", []):
            out.add((p.get("FromPort"), r["CidrIpv6"]))
        for g in p.get("UserIdGroupPairs", []):
            out.add((p["IpProtocol"], "self" if g["GroupId"] == gid else g["GroupId"]))
    return out


def test_allowed_cidrs_narrow_the_group_and_change_in_place(moto: MotoServer, tmp_path: Path,
                                                            rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    key = ssh_key(tmp_path)
    rh.write(launch_only(aws_cluster_hcl(moto, key)))
    out = rh("apply", "-auto-approve").ok().stdout  # the plan it printed, then the apply
    for line in ('"tcp/22 from 198.51.100.0/24"', '"tcp/8080 from 198.51.100.0/24"',
                 '"all traffic from the cluster itself"',
                 '+ host_keys              = "trusted on first use"'):
        assert line in out, out
    assert group_rules(moto, rh) == {(22, "198.51.100.0/24"), (8080, "198.51.100.0/24"),
                                     ("-1", "self")}
    ids = rh.resources()["cluster.c"]["attributes"]["instance_ids"]
    # a new CIDR (IPv6 too) replaces the old one in place: the instances stay
    rh.write(launch_only(aws_cluster_hcl(moto, key,
                                         cidrs='["203.0.113.0/24", "2001:db8::/32"]')))
    out = rh("apply", "-auto-approve").ok().stdout
    assert "cluster.c will be updated in-place" in out and "must be replaced" not in out, out
    assert "the security group's rules change in place" in out, out
    assert group_rules(moto, rh) == {(22, "203.0.113.0/24"), (8080, "203.0.113.0/24"),
                                     (22, "2001:db8::/32"), (8080, "2001:db8::/32"),
                                     ("-1", "self")}
    assert rh.resources()["cluster.c"]["attributes"]["instance_ids"] == ids
    # a rule added by hand is drift: shown, then revoked
    gid = rh.resources()["cluster.c"]["private"]["provider"]["security_group_id"]
    moto.client("ec2").authorize_security_group_ingress(GroupId=gid, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    out = rh("apply", "-auto-approve").ok().stdout
    assert "Objects have changed outside of rhplan" in out, out
    assert "tcp/22 from 0.0.0.0/0" in out and "cluster.c will be updated in-place" in out, out
    assert (22, "0.0.0.0/0") not in group_rules(moto, rh)
    out = rh("destroy", "-auto-approve").ok().stdout
    assert "Objects have changed" not in out, out  # nothing drifted since


class _AddressService:
    """A real HTTP server on 127.0.0.1 standing for checkip.amazonaws.com: it answers
    `body`, or nothing at all (hang=True) until stopped."""

    def __init__(self, body: bytes, hang: bool = False) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        release = self.release = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if hang:
                    release.wait(30)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_default_allowed_cidrs_is_the_callers_address_or_a_refusal(
        moto: MotoServer, tmp_path: Path, rhplan_in: Any) -> None:
    import time

    from motoserver import free_port
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    key = ssh_key(tmp_path)

    def hcl(url: str) -> str:
        return aws_cluster_hcl(moto, key, cidrs=None, provider_extra=f'public_ip_url = "{url}"')

    good = _AddressService(b"192.0.2.44\n")
    portal = _AddressService(b"<html>Sign in to the hotel wifi</html>")
    silent = _AddressService(b"", hang=True)
    try:
        rh.write(hcl(good.url))
        out = rh("plan").ok().stdout
        assert 'allowed_cidrs          = [\n          "192.0.2.44/32",\n' in out, out
        assert '"tcp/22 from 192.0.2.44/32"' in out, out
        cases = [(portal.url, "not an IP address", "5"),
                 (f"http://127.0.0.1:{free_port()}/", "refused", "5"),
                 (silent.url, "no answer within 1 s", "1"),
                 ("", "no lookup", "5")]
        for url, why, timeout in cases:
            rh.write(hcl(url))
            started = time.monotonic()
            line = rh("plan", env={"RHPLAN_AWS_PUBLIC_IP_TIMEOUT": timeout}).error_line()
            assert time.monotonic() - started < 30  # bounded (a CLI start is ~1.5 s)
            assert "main.hcl:" in line and "allowed_cidrs is not set" in line, line
            assert why in line and 'write allowed_cidrs = ["YOUR.PUBLIC.IP/32"]' in line, line
    finally:
        for s in (good, portal, silent):
            s.stop()


def test_bad_exposure_settings_are_one_line(moto: MotoServer, tmp_path: Path,
                                            rhplan_in: Any) -> None:
    rh = rhplan_in(tmp_path / "infra", env=aws_env())
    key = ssh_key(tmp_path)
    for kwargs, words in [
        ({"cidrs": '["10.0.0.5/24"]'}, 'write "10.0.0.0/24" for the network or '
                                       '"10.0.0.5/32" for the one address'),
        ({"cidrs": '["everyone"]'}, "not a CIDR block"),
        ({"ssh_extra": 'host_key_check = "sometimes"'}, 'write "console_output"'),
    ]:
        rh.write(aws_cluster_hcl(moto, key, **kwargs))
        line = rh("plan").error_line()
        assert "main.hcl:" in line and words in line, line
    rh.write('cluster "l" {\n  provider = "local"\n  allowed_cidrs = ["10.0.0.0/8"]\n}\n')
    line = rh("plan").error_line()
    assert "main.hcl:3: cluster 'l': allowed_cidrs is a setting of provider 'aws', not of " \
        "'local'" in line, line


# --- aws: host keys from the console output -----------------------------------------------

def keygen_lines(pub: Path, *flags: str) -> str:
    """ssh-keygen -l, as cloud-init's write-ssh-key-fingerprints runs it."""
    return subprocess.run(["ssh-keygen", "-l", *flags, "-f", str(pub)], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def other_keys(tmp_path: Path) -> list[Path]:
    """The RSA and ECDSA host keys an instance also has (ssh-keygen -A makes all three)."""
    out = []
    for kind in ("rsa", "ecdsa"):
        path = tmp_path / f"ssh_host_{kind}_key"
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "root@ip-172-31-5-10",
                            "-f", str(path)], check=True, timeout=60)
        out.append(path.with_name(path.name + ".pub"))
    return out


def cloud_init_console(pubs: list[Path], md5: bool = False) -> str:
    """A console output as an EC2 instance's shows it after cloud-init's first boot: kernel
    lines, then the block write-ssh-key-fingerprints logs with the tag `ec2`, then the
    keys block, around the given host keys."""
    prints = [keygen_lines(p, *(("-E", "md5") if md5 else ())) for p in pubs]
    keys = [" ".join(p.read_text().split()[:2]) + " root@ip-172-31-5-10" for p in pubs]
    return "\n".join([
        "[    0.000000] Linux version 6.8.0-1012-aws (buildd@lcy02-amd64-046)",
        "[   12.345678] cloud-init[1021]: Cloud-init v. 24.1.3 running 'modules:final'",
        # boot noise that looks like a fingerprint is outside the block: never trusted
        "[   12.400000] some-service: SHA256:" + "A" * 43,
        "ec2: ",
        "ec2: #############################################################",
        "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
        *[f"ec2: {line}" for line in prints],
        "ec2: -----END SSH HOST KEY FINGERPRINTS-----",
        "ec2: #############################################################",
        "-----BEGIN SSH HOST KEY KEYS-----",
        *keys,
        "-----END SSH HOST KEY KEYS-----",
        "[   13.000000] cloud-init[1021]: Cloud-init v. 24.1.3 finished",
    ]) + "\n"


def test_console_block_of_real_host_keys_is_parsed(server: Any, tmp_path: Path) -> None:
    from rhplan_aws.console import host_key_fingerprints
    pubs = [server.host_key.with_name("host_key.pub"), *other_keys(tmp_path)]
    want = {keygen_lines(p).split()[1] for p in pubs}  # ssh-keygen's own SHA256 rendering
    assert server.host_key_fingerprint in want
    text = cloud_init_console(pubs)
    assert host_key_fingerprints(text) == want
    # only the keys block (fingerprints cut): the same fingerprints, computed from the keys
    keys_only = text.split("ec2: #####")[0] + text.split("ec2: #############################"
                                                        "################################\n")[2]
    assert host_key_fingerprints(keys_only) == want
    # older images print MD5 fingerprints
    md5 = {keygen_lines(p, "-E", "md5").split()[1] for p in pubs}
    assert md5 <= host_key_fingerprints(cloud_init_console(pubs, md5=True))
    # what moto's console shows, and a block cut short, publish nothing
    from moto.ec2.responses.general import SAMPLE_CONSOLE_OUTPUT
    assert host_key_fingerprints(SAMPLE_CONSOLE_OUTPUT) == frozenset()
    assert host_key_fingerprints(text.split("-----END SSH HOST KEY FINGERPRINTS")[0]) == \
        frozenset()


def test_published_fingerprints_gate_the_first_login(server: Any, tmp_path: Path) -> None:
    from rhplan_aws.console import host_key_fingerprints

    from rhplan.errors import ProviderError
    from rhplan.hosts.ssh import SSHConnection
    real = host_key_fingerprints(cloud_init_console(
        [server.host_key.with_name("host_key.pub"), *other_keys(tmp_path)]))
    conn = SSHConnection("127.0.0.1", port=server.port, user=server.user,
                         private_key=server.client_key, published=real,
                         published_by="the console output of i-test")
    try:
        assert conn.fingerprint == server.host_key_fingerprint
        assert conn.run(["true"]).returncode == 0
    finally:
        conn.close()
    logins = server.accepted_logins()
    forged = host_key_fingerprints(cloud_init_console(other_keys(tmp_path)))
    with pytest.raises(ProviderError) as err:
        SSHConnection("127.0.0.1", port=server.port, user=server.user,
                      private_key=server.client_key, published=forged,
                      published_by="the console output of i-test")
    msg = str(err.value)
    assert f"({server.host_key_fingerprint}) is not one of those the console output of i-test" \
        " lists" in msg and "no login was tried" in msg, msg
    assert server.accepted_logins() == logins  # refused before the login


def console_xml(text: str) -> bytes:
    import base64
    b64 = base64.b64encode(text.encode()).decode()
    return ('<?xml version="1.0" encoding="UTF-8"?><GetConsoleOutputResponse xmlns='
            '"http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>console</requestId>'
            '<instanceId>i-0</instanceId><timestamp>2025-01-01T00:00:00.000Z</timestamp>'
            f'<output>{b64}</output></GetConsoleOutputResponse>').encode()


def test_aws_first_login_checks_the_console_output(moto: MotoServer, server: Any,
                                                   tmp_path: Path, rhplan_in: Any) -> None:
    """End to end: moto's EC2 behind a proxy that answers GetConsoleOutput with a
    cloud-init console (everything else is moto's own answer), and the "instance"
    reached through the proxy command that leads to the loopback sshd."""
    import shlex
    import sys

    from faulty_http import FaultyProxy, Rule
    proxy_log = tmp_path / "proxy.log"
    hop = shlex.join([sys.executable, str(Path(__file__).parent / "support" / "aws_proxy.py"),
                      str(proxy_log), "%h", "%i", str(server.port)])
    forged = cloud_init_console(other_keys(tmp_path))
    ec2 = FaultyProxy(moto.url, [Rule("GetConsoleOutput", (200, console_xml(forged)), -1)])
    ec2.start()
    rh = rhplan_in(tmp_path / "infra", env={**aws_env(), "RHPLAN_AWS_CONSOLE_WAIT_SECONDS": "1"})
    rh.keep = True

    def write(endpoint: str, ssh_extra: str = "") -> None:
        rh.write(aws_cluster_hcl(moto, Path(server.client_key), endpoint=endpoint,
                                 ssh_extra=f"proxy_command = {json.dumps(hop)}\n{ssh_extra}")
                 .replace('user        = "ubuntu"', f'user        = "{server.user}"')
                 # the host's python is never reached in this test: a missing one makes
                 # the set-up stop right after the login
                 .replace('  ssh {', '  python = "/nonexistent/python3"\n  root_dir = '
                          f'"{tmp_path / "root"}"\n  ssh {{'))

    try:
        write(ec2.url)
        logins = server.accepted_logins()
        # 1. the console lists other keys: refused before any login, nothing recorded
        res = rh("apply", "-auto-approve", timeout=300)
        assert res.returncode == 1, res.describe()
        assert '+ host_keys              = "verified from console output"' in res.stdout, \
            res.describe()
        assert f"({server.host_key_fingerprint}) is not one of those the console output " \
               "of i-" in res.output, res.describe()
        assert server.accepted_logins() == logins
        c = rh.resources()["cluster.c"]
        assert not c["private"]["provider"].get("host_keys"), c["private"]
        # 2. the console lists the sshd's real key: the login goes through (and the set-up
        # stops at the missing python), the verified key is recorded
        ec2.rules[:] = [Rule("GetConsoleOutput", (200, console_xml(cloud_init_console(
            [server.host_key.with_name("host_key.pub"), *other_keys(tmp_path)]))), -1)]
        res = rh("apply", "-auto-approve", timeout=300)
        errors = [ln for ln in res.output.splitlines() if ln.startswith("Error: ")]
        assert res.returncode == 1 and len(errors) == 1, res.describe()
        assert "/nonexistent/python3 is not installed" in errors[0], res.describe()
        c = rh.resources()["cluster.c"]
        assert list(c["private"]["provider"]["host_keys"].values()) == [server.host_key_fingerprint]
        assert server.accepted_logins() > logins
        # 3. moto's own console (no block): the default refuses to guess
        rh("destroy", "-auto-approve", timeout=300).ok()
        write(moto.url)
        res = rh("apply", "-auto-approve", timeout=300)
        assert res.returncode == 1, res.describe()
        assert "shows no SSH host key fingerprints after 1 s" in res.output, res.describe()
        assert 'host_key_check = "trust_on_first_use"' in res.output, res.describe()
    finally:
        rh("destroy", "-auto-approve", timeout=300)
        ec2.stop()
