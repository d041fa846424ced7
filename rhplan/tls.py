"""Ray's TLS for a multi-node cluster: a certificate authority per cluster and a
certificate per node (and one for this machine's drivers), made here with
`cryptography`.

Ray 2.60 reads RAY_USE_TLS=1, RAY_TLS_SERVER_CERT, RAY_TLS_SERVER_KEY and RAY_TLS_CA_CERT
in every process (GCS, raylets, workers, drivers) and uses the one certificate both to
serve and to connect: every gRPC channel is mutual TLS against the cluster's CA. gRPC
checks the server's certificate against the address it dialled, so a node's certificate
names the node's address (as an IP SAN, and as a DNS name as Ray's own test certificates
do) and loopback.

Keys are EC P-256 (fast to make, small): private keys are written 0600 only, never put
into the state. The CA's certificate is recorded in the cluster's private state; its key
stays in this machine's `.rhplan/ray-tls/<cluster>/` and on the head (0600), so an apply
from elsewhere (state in S3) can still add a node. A replaced cluster gets a new CA.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rhplan.errors import ProviderError
from rhplan.hosts.connection import Connection

CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, both PEM."""

    cert: bytes
    key: bytes


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(cluster: str) -> Pair:
    """A new certificate authority for one cluster."""
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rhplan CA {cluster}"[:64])])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _names(addresses: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for a in dict.fromkeys([*addresses, "127.0.0.1", "localhost"]):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(a)))
        except ValueError:
            pass
        out.append(x509.DNSName(a))
    return out


def issue(ca: Pair, name: str, addresses: list[str]) -> Pair:
    """A certificate for one node (or driver), valid for `addresses` and loopback, to
    serve and to connect with (Ray uses one for both)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    key = _key()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(_names(addresses)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def still_good(ca_cert: bytes, pair: Pair, addresses: list[str]) -> bool:
    """Whether pair was issued by this CA, its key is the certificate's, it names every
    address and it is not about to expire: then a restart keeps it."""
    try:
        ca = x509.load_pem_x509_certificate(ca_cert)
        cert = x509.load_pem_x509_certificate(pair.cert)
        key = serialization.load_pem_private_key(pair.key, password=None)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - any doubt: a new one
        return False
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.PEM, pub)
            != cert.public_key().public_bytes(serialization.Encoding.PEM, pub)):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    dns = set(san.get_values_for_type(x509.DNSName))
    return all(a in dns for a in addresses)


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, in a folder only its owner can enter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT



# -- files on hosts ------------------------------------------------------------------

def host_dir(root_dir: str) -> str:
    return f"{root_dir}/ray/tls"


def node_paths(root_dir: str, host: str) -> dict[str, str]:
    """Where one node's files live on its host. Named by the host rhplan reached: test
    hosts share one file system under the same root dir."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in host)
    base = host_dir(root_dir)
    return {"cert": f"{base}/{safe}/node.crt", "key": f"{base}/{safe}/node.key",
            "ca": f"{base}/ca.crt"}


# Runs on a host: the address Ray finds for the node by itself (a UDP socket "towards"
# 8.8.8.8, no packet sent), which it may advertise whatever --node-ip-address says
# (FIELD-NOTES: 127.0.0.1 is given up for the eth0 address): certificates name it too.
_OWN_ADDRESS = r"""
import socket
try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("8.8.8.8", 53))
        print(s.getsockname()[0])
except OSError:
    pass
"""


def own_address(conn: Connection, python: str) -> list[str]:
    res = conn.run([python, "-I", "-c", _OWN_ADDRESS], timeout=30)
    return res.stdout.split()[:1] if res.ok else []


def put_node(conn: Connection, root_dir: str, host: str, addresses: list[str], ca: Pair,
             recorded: str | None) -> tuple[dict[str, str], str]:
    """Make sure the node on this host has a certificate of the cluster's CA for its
    addresses, and its key (0600): the recorded one is kept while the host still holds
    its key; otherwise a new one is issued. Returns the paths and the certificate (PEM)
    to record."""
    paths = node_paths(root_dir, host)
    if recorded:
        try:
            key = conn.get_bytes(paths["key"])
        except (FileNotFoundError, OSError):
            key = b""
        pair = Pair(recorded.encode(), key)
        if key and still_good(ca.cert, pair, addresses):
            conn.put_bytes(pair.cert, paths["cert"])
            conn.put_bytes(ca.cert, paths["ca"])
            return paths, recorded
    pair = issue(ca, f"rhplan node {host}", addresses)
    conn.put_bytes(pair.key, paths["key"], mode=0o600)
    conn.put_bytes(pair.cert, paths["cert"])
    conn.put_bytes(ca.cert, paths["ca"])
    return paths, pair.cert.decode()


# -- a cluster's CA and this machine's driver certificate ----------------------------

def local_dir(config_dir: Path, cluster: str) -> Path:
    return config_dir / ".rhplan" / "ray-tls" / cluster


def _matches(ca: Pair) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(ca.cert)
        key = serialization.load_pem_private_key(ca.key, password=None)
    except (ValueError, TypeError):
        return False
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    return (key.public_key().public_bytes(serialization.Encoding.PEM, pub)
            == cert.public_key().public_bytes(serialization.Encoding.PEM, pub))


def cluster_ca(record: dict, here: Path, head: Connection, root_dir: str, cluster: str,
               new_ok: bool) -> Pair:
    """The cluster's CA: the recorded one (its key from this machine, else from the head),
    or, when new_ok (every node is started again), a new one. Kept 0600 in both places."""
    if record.get("ca_cert"):
        cert = record["ca_cert"].encode()
        for read in (lambda: (here / "ca.key").read_bytes(),
                     lambda: head.get_bytes(f"{host_dir(root_dir)}/ca.key")):
            try:
                ca = Pair(cert, read())
            except (FileNotFoundError, OSError):
                continue
            if _matches(ca):
                break
        else:
            if not new_ok:
                raise ProviderError(
                    f"the TLS key of {cluster}'s certificate authority is neither in {here} "
                    f"nor on its head; new nodes cannot join: run rhplan apply "
                    f"-replace=cluster.{cluster}")
            ca = make_ca(cluster)
    else:
        ca = make_ca(cluster)
    write_private(here / "ca.key", ca.key)
    write_private(here / "ca.crt", ca.cert)
    head.put_bytes(ca.key, f"{host_dir(root_dir)}/ca.key", mode=0o600)
    return ca


def caller_address(toward: str) -> str | None:
    """This machine's address on the way to `toward` (what a Ray node sees a driver
    from); no packet is sent."""
    import socket
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((toward, 1))
            return str(s.getsockname()[0])
    except OSError:
        return None


def driver_files(ca: Pair, here: Path, addresses: list[str]) -> dict[str, str]:
    """This machine's driver certificate (the direct route joins the cluster's Ray
    with it), kept while still good."""
    paths = {"cert": str(here / "driver.crt"), "key": str(here / "driver.key"),
             "ca": str(here / "ca.crt")}
    try:
        pair = Pair(Path(paths["cert"]).read_bytes(), Path(paths["key"]).read_bytes())
    except OSError:
        pair = None
    if pair is None or not still_good(ca.cert, pair, addresses):
        pair = issue(ca, "rhplan driver", addresses)
        write_private(Path(paths["key"]), pair.key)
        write_private(Path(paths["cert"]), pair.cert)
    return paths


def remove_local(record: dict | None) -> None:
    """A cluster's local TLS folder goes with it (only a folder named like one rhplan
    makes, whatever the state says)."""
    import shutil
    folder = Path((record or {}).get("dir") or "")
    if folder.parent.name == "ray-tls" and folder.parent.parent.name == ".rhplan":
        shutil.rmtree(folder, ignore_errors=True)
        try:
            folder.parent.rmdir()
        except OSError:
            pass
