"""builder.pki.crypto against the kubeadm spec (sections 1-3), checked with cryptography and the real
openssl."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import select
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from builder.pki import certlist
from builder.pki import crypto as pki
from builder.pki.crypto import CertSpec, ExtUsage, KeyAlgorithm, certs
from builder.pki.kubeconfig import kubeconfig

OPENSSL = "/usr/bin/openssl"
NODE = "cp-1"
NODE_IP = "192.168.56.10"
ALL_ALGS = list(KeyAlgorithm)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# --------------------------------------------------------------------------------------------------
# A small cluster PKI per algorithm, built once per module.


@dataclass
class Issued:
    spec: CertSpec
    key: pki.PrivateKey
    cert: x509.Certificate


@dataclass
class Tree:
    alg: KeyAlgorithm
    now: datetime
    root: Path
    items: dict[str, Issued] = field(default_factory=dict)

    def crt(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"


def _leaf_specs() -> list[CertSpec]:
    return [
        certlist.apiserver(NODE, NODE_IP, "10.96.0.0/12", "cluster.local", "k8s.example.com", ["10.0.0.7"])[
            0
        ],
        certlist.etcd_server(NODE, NODE_IP, ["etcd.example.com"])[0],
        certlist.etcd_peer(NODE, NODE_IP)[0],
        certlist.etcd_healthcheck_client(),
        certlist.front_proxy_client(),
        certlist.kubeconfig_client("admin", NODE),
        certlist.kubeconfig_client("kubelet", NODE),
    ]


@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    """Empty crypto's memo caches (subject names, EKUs, issuers) before each test, so that every test
    that builds a name really runs `_attr` / `_eku` / `_issuer_info`: mutmut maps a function to the tests
    that call it, and with warm caches only the first test of a session would."""
    certs._NAME_CACHE.clear()
    certs._EKU_CACHE.clear()
    certs._ISSUER_CACHE.clear()


CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)


def _issue(alg: KeyAlgorithm, now: datetime, root: Path, keys: dict[str, pki.PrivateKey]) -> Tree:
    """The small cluster PKI, issued from already generated keys.

    Issuing (cheap next to key generation) happens in each test's own set-up: mutmut maps a function to
    the tests that call it, and a module-scoped fixture calls it only for the first of them."""
    t = Tree(alg, now, root)
    for name, spec in certlist.ca_specs().items():
        t.items[name] = Issued(spec, keys[name], pki.new_ca(spec, keys[name], now=now, validity=CA_VALIDITY))
    for spec in _leaf_specs():
        ca = t.items[spec.ca or ""]
        key = keys[spec.name]
        cert = pki.sign(spec, key.public_key(), ca.cert, ca.key, now=now, validity=LEAF_VALIDITY)
        t.items[spec.name] = Issued(spec, key, cert)
    return t


def _names() -> list[str]:
    return [*certlist.CA_NAMES, *(s.name for s in _leaf_specs())]


@pytest.fixture(scope="module", params=ALL_ALGS, ids=[a.value for a in ALL_ALGS])
def tree_keys(request: pytest.FixtureRequest) -> tuple[KeyAlgorithm, datetime, dict[str, pki.PrivateKey]]:
    """One key per certificate, generated once per algorithm and module (RSA-4096 takes seconds)."""
    alg: KeyAlgorithm = request.param
    return alg, _now(), {name: alg.generate() for name in _names()}


@pytest.fixture
def tree(tree_keys: tuple[KeyAlgorithm, datetime, dict[str, pki.PrivateKey]], tmp_path: Path) -> Tree:
    alg, now, keys = tree_keys
    t = _issue(alg, now, tmp_path / "pki", keys)
    t.root.mkdir()
    for name, it in t.items.items():
        t.crt(name).write_bytes(pki.cert_pem(it.cert))
        t.key(name).write_bytes(pki.key_pem(it.key))
    return t


LEAVES = [s.name for s in _leaf_specs()]


def _run(*args: str | Path, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *map(str, args)],
        input=input.decode() if input else None,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _ok(*args: str | Path) -> str:
    res = _run(*args)
    assert res.returncode == 0, res.stderr
    return res.stdout


# --------------------------------------------------------------------------------------------------
# openssl: the real peer


def _openssl_ip(ip: IPv4Address | IPv6Address) -> str:
    if isinstance(ip, IPv4Address):
        return str(ip)
    return ":".join(f"{int(h, 16):X}" for h in ip.exploded.split(":"))


def _expected_ext_text(spec: CertSpec) -> str:
    """What the spec table says, in openssl's words (written out by hand, not derived from pki)."""
    lines = ["X509v3 Key Usage: critical"]
    if spec.is_ca:
        lines.append("    Digital Signature, Key Encipherment, Certificate Sign")
    else:
        lines.append("    Digital Signature, Key Encipherment")
    names = {
        ExtUsage.SERVER: "TLS Web Server Authentication",
        ExtUsage.CLIENT: "TLS Web Client Authentication",
    }
    if spec.usages:
        lines += ["X509v3 Extended Key Usage:", "    " + ", ".join(names[u] for u in spec.usages)]
    lines += ["X509v3 Basic Constraints: critical", "    CA:TRUE" if spec.is_ca else "    CA:FALSE"]
    sans = [f"DNS:{d}" for d in spec.dns] + [f"IP Address:{_openssl_ip(i)}" for i in spec.ips]
    if sans:
        lines += ["X509v3 Subject Alternative Name:", "    " + ", ".join(sans)]
    return "\n".join(lines)


def _strip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


@pytest.mark.integration
@pytest.mark.parametrize("name", LEAVES)
def test_openssl_verify_chain(tree: Tree, name: str) -> None:
    it = tree.items[name]
    own_ca = tree.crt(it.spec.ca or "")
    assert "OK" in _ok("verify", "-x509_strict", "-CAfile", own_ca, tree.crt(name))
    for other in ("ca", "etcd-ca", "front-proxy-ca"):
        if other != it.spec.ca:
            res = _run("verify", "-CAfile", tree.crt(other), tree.crt(name))
            assert res.returncode != 0, f"{name} verified against {other}"


@pytest.mark.integration
def test_openssl_verify_fails_with_same_name_other_key(tree: Tree, tmp_path: Path) -> None:
    """A CA with the same subject but another key: only the signature tells them apart."""
    key = tree.alg.generate()
    impostor = pki.new_ca(certlist.ca_specs()["ca"], key, now=tree.now, validity=CA_VALIDITY)
    (tmp_path / "impostor.crt").write_bytes(pki.cert_pem(impostor))
    res = _run("verify", "-CAfile", tmp_path / "impostor.crt", tree.crt("apiserver"))
    assert res.returncode != 0


@pytest.mark.integration
@pytest.mark.parametrize("name", ["ca", "front-proxy-ca", "etcd-ca", *LEAVES])
def test_openssl_extensions_subject_dates(tree: Tree, name: str) -> None:
    it = tree.items[name]
    ext = _ok(
        "x509",
        "-in",
        tree.crt(name),
        "-noout",
        "-ext",
        "subjectAltName,keyUsage,extendedKeyUsage,basicConstraints",
    )
    # openssl -ext prints the requested extensions in certificate order: Go's order.
    assert _strip(ext) == _expected_ext_text(it.spec)

    subject = _ok("x509", "-in", tree.crt(name), "-noout", "-subject").strip()
    want = ", ".join([*(f"O = {o}" for o in it.spec.orgs), f"CN = {it.spec.cn}"])
    assert subject == f"subject={want}"
    if it.spec.is_ca:
        assert _ok("x509", "-in", tree.crt(name), "-noout", "-issuer").strip() == f"issuer={want}"

    dates = _ok("x509", "-in", tree.crt(name), "-noout", "-dates", "-dateopt", "iso_8601").split()
    validity = CA_VALIDITY if it.spec.is_ca else LEAF_VALIDITY
    nb, na = tree.now - timedelta(minutes=5), tree.now + validity
    assert " ".join(dates) == (
        f"notBefore={nb:%Y-%m-%d} {nb:%H:%M:%S}Z notAfter={na:%Y-%m-%d} {na:%H:%M:%S}Z"
    )

    text = _ok("x509", "-in", tree.crt(name), "-noout", "-text")
    sig = {
        "RSA": "sha256WithRSAEncryption",
        "ECDSA-P256": "ecdsa-with-SHA256",
        "ECDSA-P384": "ecdsa-with-SHA384",
    }
    want_sig = sig["RSA" if tree.alg.value.startswith("RSA") else tree.alg.value]
    assert re.findall(r"Signature Algorithm: (\S+)", text) == [want_sig, want_sig]
    if it.spec.is_ca:
        assert "X509v3 Subject Key Identifier" in text and "Authority Key Identifier" not in text
    else:
        assert "X509v3 Authority Key Identifier" in text and "Subject Key Identifier" not in text


@pytest.mark.integration
@pytest.mark.parametrize("name", ["ca", "etcd-ca", *LEAVES])
def test_openssl_private_keys(tree: Tree, name: str) -> None:
    pem = tree.key(name).read_bytes()
    text = _ok("pkey", "-in", tree.key(name), "-noout", "-text")
    if tree.alg.value.startswith("RSA"):
        bits = tree.alg.value.removeprefix("RSA-")
        assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
        assert text.startswith(f"Private-Key: ({bits} bit, 2 primes)")
        assert "publicExponent: 65537 (0x10001)" in text
    else:
        curve = {"ECDSA-P256": ("256", "prime256v1"), "ECDSA-P384": ("384", "secp384r1")}[tree.alg.value]
        assert pem.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
        assert text.startswith(f"Private-Key: ({curve[0]} bit)")
        assert f"ASN1 OID: {curve[1]}" in text
    # The key file and the certificate hold the same public key, according to openssl.
    pub_from_key = _ok("pkey", "-in", tree.key(name), "-pubout")
    pub_from_cert = _ok("x509", "-in", tree.crt(name), "-noout", "-pubkey")
    assert pub_from_key == pub_from_cert


@pytest.mark.integration
def test_discovery_hash_matches_openssl_pipeline(tree: Tree) -> None:
    ca = tree.crt("ca")
    pipeline = f"{OPENSSL} x509 -pubkey -noout -in {ca} | {OPENSSL} pkey -pubin -outform der | sha256sum"
    out = subprocess.run(
        ["sh", "-c", pipeline], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    want = "sha256:" + out.split()[0]
    assert pki.discovery_hash(tree.items["ca"].cert) == want
    # and it is not the hash of some other CA
    assert pki.discovery_hash(tree.items["etcd-ca"].cert) != want


@pytest.mark.integration
def test_public_pem_matches_openssl(tree: Tree, tmp_path: Path) -> None:
    sa = tree.alg.generate()
    (tmp_path / "sa.key").write_bytes(pki.key_pem(sa))
    pub = pki.public_pem(sa)
    assert pub.startswith(b"-----BEGIN PUBLIC KEY-----\n")
    assert _ok("pkey", "-in", tmp_path / "sa.key", "-pubout").encode() == pub


# --------------------------------------------------------------------------------------------------
# mTLS with openssl s_server / s_client (loopback only)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def etcd_server(tree: Tree) -> Iterator[int]:
    """openssl s_server playing etcd: etcd-server cert, requires a client cert from etcd-ca."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            OPENSSL,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(tree.crt("etcd-server")),
            "-key",
            str(tree.key("etcd-server")),
            "-CAfile",
            str(tree.crt("etcd-ca")),
            "-Verify",
            "1",
            "-verify_return_error",
            "-www",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 10
        seen = b""
        while b"ACCEPT" not in seen:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, f"s_server did not start: {seen!r}"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _client(tree: Tree, port: int, *extra: str | Path) -> tuple[bool, str]:
    res = subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-CAfile",
            str(tree.crt("etcd-ca")),
            "-verify_return_error",
            "-ign_eof",
            *map(str, extra),
        ],
        input="GET / HTTP/1.0\r\n\r\n",
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    # Success = the server answered over the verified channel (TLS 1.3 reports client-cert
    # rejection only after the handshake, so the answer is what counts).
    ok = (
        res.returncode == 0 and "HTTP/1.0 200 ok" in res.stdout and "Verify return code: 0 (ok)" in res.stdout
    )
    return ok, res.stdout + res.stderr


@pytest.mark.integration
def test_mtls_handshake(tree: Tree, etcd_server: int) -> None:
    client = ("-cert", tree.crt("etcd-healthcheck-client"), "-key", tree.key("etcd-healthcheck-client"))
    ok, out = _client(tree, etcd_server, *client, "-verify_ip", NODE_IP)
    assert ok, out
    ok, out = _client(tree, etcd_server, *client, "-verify_hostname", NODE)
    assert ok, out
    ok, out = _client(tree, etcd_server, *client, "-verify_hostname", "localhost")
    assert ok, out
    ok, out = _client(tree, etcd_server, *client, "-verify_ip", "::1")
    assert ok, out
    # etcd-peer is a client cert too (ServerAuth + ClientAuth), as etcd peers need.
    ok, out = _client(tree, etcd_server, "-cert", tree.crt("etcd-peer"), "-key", tree.key("etcd-peer"))
    assert ok, out

    ok, out = _client(tree, etcd_server, "-verify_ip", NODE_IP)
    assert not ok and "certificate required" in out, "handshake without a client certificate succeeded"
    other = ("-cert", tree.crt("front-proxy-client"), "-key", tree.key("front-proxy-client"))
    ok, out = _client(tree, etcd_server, *other)
    assert not ok and "unknown ca" in out, "client certificate from another CA was accepted"
    ok, out = _client(tree, etcd_server, *client, "-verify_ip", "10.9.9.9")
    assert not ok and "IP address mismatch" in out, "server certificate accepted for an IP it does not carry"
    ok, out = _client(tree, etcd_server, *client, "-verify_hostname", "cp-2")
    assert not ok and "hostname mismatch" in out.lower(), (
        "server certificate accepted for a name it does not carry"
    )
    # the server is still up: the failures above were the certificates, not a dead server
    ok, out = _client(tree, etcd_server, *client)
    assert ok, out


# --------------------------------------------------------------------------------------------------
# cryptography-level checks of the Go template details (spec 1.3)


@pytest.fixture(scope="module")
def p256_keys() -> tuple[datetime, dict[str, pki.PrivateKey]]:
    return _now(), {name: KeyAlgorithm.ECDSA_P256.generate() for name in _names()}


@pytest.fixture
def p256(p256_keys: tuple[datetime, dict[str, pki.PrivateKey]]) -> Tree:
    now, keys = p256_keys
    return _issue(KeyAlgorithm.ECDSA_P256, now, Path("/nonexistent"), keys)


def _raw_ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> tuple[bool, bytes]:
    ext = cert.extensions.get_extension_for_oid(oid)
    return ext.critical, ext.value.public_bytes()


def test_ca_template_matches_go(p256: Tree) -> None:
    ca = p256.items["ca"].cert
    assert ca.version is x509.Version.v3
    assert [e.oid for e in ca.extensions] == [
        ExtensionOID.KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ]
    # Go: KeyUsage bits DigitalSignature|KeyEncipherment|CertSign as a 6-bit BIT STRING, critical;
    # KeyEncipherment stays even though this is an ECDSA key.
    assert _raw_ext(ca, ExtensionOID.KEY_USAGE) == (True, bytes.fromhex("030202a4"))
    assert _raw_ext(ca, ExtensionOID.BASIC_CONSTRAINTS) == (True, bytes.fromhex("30030101ff"))  # no pathlen
    san = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical and list(san.value) == [x509.DNSName("kubernetes")]
    # SubjectKeyId = SHA-1 of the subjectPublicKey BIT STRING contents (Go <= 1.24, RFC 5280 method 1).
    point = ca.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert not ski.critical and ski.value.digest == hashlib.sha1(point).digest()
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)


def test_rsa_ski_is_sha1_of_pkcs1() -> None:
    key = KeyAlgorithm.RSA_2048.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    pkcs1 = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ski == hashlib.sha1(pkcs1).digest()


@pytest.mark.parametrize("name", LEAVES)
def test_leaf_template_matches_go(p256: Tree, name: str) -> None:
    it = p256.items[name]
    cert, ca = it.cert, p256.items[it.spec.ca or ""].cert
    oids = [e.oid for e in cert.extensions]
    want = [
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ]
    if it.spec.dns or it.spec.ips:
        want.append(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert oids == want
    assert _raw_ext(cert, ExtensionOID.KEY_USAGE) == (True, bytes.fromhex("030205a0"))
    assert _raw_ext(cert, ExtensionOID.BASIC_CONSTRAINTS) == (True, bytes.fromhex("3000"))
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert not aki.critical
    assert aki.value.key_identifier == ca_ski
    assert aki.value.authority_cert_issuer is None and aki.value.authority_cert_serial_number is None
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert 1 <= cert.serial_number < 2**63 - 1


def test_subject_is_go_encoded(p256: Tree) -> None:
    """pkix.Name.ToRDNSequence: O before CN; PrintableString where possible."""
    cert = p256.items["kubelet.conf"].cert
    rdns = list(cert.subject.rdns)
    assert [[a.oid for a in rdn] for rdn in rdns] == [[NameOID.ORGANIZATION_NAME], [NameOID.COMMON_NAME]]
    attrs = [next(iter(rdn)) for rdn in rdns]
    assert [a.value for a in attrs] == ["system:nodes", f"system:node:{NODE}"]
    der = cert.subject.public_bytes()
    # 0x13 = PrintableString; Go picks it for these values ("system:nodes" etc. only use printable chars).
    assert b"\x13\x0csystem:nodes" in der and f"\x13\x10system:node:{NODE}".encode() in der


def test_subject_utf8_when_not_printable() -> None:
    key = KeyAlgorithm.ECDSA_P256.generate()
    spec = CertSpec(name="x", base="x", cn="ca_x*", orgs=("a&b",))
    der = pki.new_ca(spec, key, now=_now(), validity=CA_VALIDITY).subject.public_bytes()
    assert b"\x0c\x03a&b" in der and b"\x0c\x05ca_x*" in der


def test_long_common_name_is_allowed() -> None:
    """system:node:<253-char node name> is legal for Go; cryptography's 64-char CN limit must not bite."""
    key = KeyAlgorithm.ECDSA_P256.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    long_name = ".".join(["a" * 63] * 3) + ".b"
    spec = certlist.kubeconfig_client("kubelet", long_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing of cryptography's length warning leaks out of pki
        cert = pki.sign(spec, key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY)
        assert pki.verify_reuse(spec, cert, key, ca) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == f"system:node:{long_name}"
    # and it is encoded as Go does for any printable value, long or not: PrintableString (per openssl)
    parsed = _run("asn1parse", input=pki.cert_pem(cert))
    assert parsed.returncode == 0, parsed.stderr
    assert re.search(rf"PRINTABLESTRING\s*:system:node:{re.escape(long_name)}$", parsed.stdout, re.M)


@pytest.mark.parametrize(
    ("alg", "hash_name"),
    [
        (KeyAlgorithm.RSA_2048, "sha256"),
        (KeyAlgorithm.ECDSA_P256, "sha256"),
        (KeyAlgorithm.ECDSA_P384, "sha384"),
    ],
)
def test_signature_hash_follows_ca_key(alg: KeyAlgorithm, hash_name: str) -> None:
    key = alg.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    leaf_key = KeyAlgorithm.ECDSA_P256.generate()  # the leaf key type does not matter
    leaf = pki.sign(
        certlist.front_proxy_client(), leaf_key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY
    )
    for cert in (ca, leaf):
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == hash_name
    want_oid = {
        "RSA-2048": "1.2.840.113549.1.1.11",  # sha256WithRSAEncryption (PKCS#1 v1.5, not PSS)
        "ECDSA-P256": "1.2.840.10045.4.3.2",
        "ECDSA-P384": "1.2.840.10045.4.3.3",
    }[alg.value]
    assert leaf.signature_algorithm_oid.dotted_string == want_oid == ca.signature_algorithm_oid.dotted_string


def test_times_backdate_and_truncation() -> None:
    key = KeyAlgorithm.ECDSA_P256.generate()
    now = datetime(2030, 6, 1, 12, 0, 0, 987654, tzinfo=UTC)
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=now, validity=timedelta(hours=10))
    assert ca.not_valid_before_utc == datetime(2030, 6, 1, 11, 55, 0, tzinfo=UTC)
    assert ca.not_valid_after_utc == datetime(2030, 6, 1, 22, 0, 0, tzinfo=UTC)
    other_tz = now.astimezone(ZoneInfo("Europe/Berlin"))
    ca2 = pki.new_ca(certlist.ca_specs()["ca"], key, now=other_tz, validity=timedelta(hours=10))
    assert ca2.not_valid_before_utc == ca.not_valid_before_utc
    with pytest.raises(ValueError, match=r"^now must be timezone-aware \(kubeadm uses UTC\)$"):
        pki.new_ca(certlist.ca_specs()["ca"], key, now=datetime(2030, 1, 1), validity=CA_VALIDITY)


def test_serials_are_random_and_in_range() -> None:
    key = KeyAlgorithm.ECDSA_P256.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    serials = {
        pki.sign(
            certlist.front_proxy_client(), key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY
        ).serial_number
        for _ in range(200)
    }
    assert len(serials) == 200
    assert all(1 <= s < 2**63 - 1 for s in serials)
    assert max(serials) > 2**60  # drawn from the whole range, not small counters


@pytest.mark.parametrize(("draw", "serial"), [("lowest", 1), ("highest", 2**63 - 2)])
def test_serial_range_ends(monkeypatch: pytest.MonkeyPatch, draw: str, serial: int) -> None:
    """kubeadm: cryptorand.Int(MaxInt64-1), a value in [0, MaxInt64-1), plus 1."""
    asked: list[int] = []

    def randbelow(n: int) -> int:
        asked.append(n)
        return 0 if draw == "lowest" else n - 1

    key = KeyAlgorithm.ECDSA_P256.generate()
    monkeypatch.setattr(certs.secrets, "randbelow", randbelow)
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    assert (asked, ca.serial_number) == ([2**63 - 2], serial)


def test_sign_and_new_ca_refuse_misuse() -> None:
    key, other = KeyAlgorithm.ECDSA_P256.generate(), KeyAlgorithm.ECDSA_P256.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    with pytest.raises(ValueError, match="does not match the CA certificate"):
        pki.sign(
            certlist.front_proxy_client(), key.public_key(), ca, other, now=_now(), validity=LEAF_VALIDITY
        )
    # the same CA certificate, first with its key (cached), then with another: still refused
    pki.sign(certlist.front_proxy_client(), key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY)
    with pytest.raises(ValueError, match="does not match the CA certificate"):
        pki.sign(
            certlist.front_proxy_client(), key.public_key(), ca, other, now=_now(), validity=LEAF_VALIDITY
        )
    ed = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(ValueError) as err:
        pki.new_ca(certlist.ca_specs()["ca"], ed, now=_now(), validity=CA_VALIDITY)  # type: ignore[arg-type]
    assert str(err.value) == (
        f"unsupported signing key type {type(ed).__name__} (kubeadm supports RSA and ECDSA)"
    )
    with pytest.raises(ValueError, match="use new_ca"):
        pki.sign(certlist.ca_specs()["ca"], key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY)
    with pytest.raises(ValueError, match="use sign"):
        pki.new_ca(certlist.front_proxy_client(), key, now=_now(), validity=CA_VALIDITY)


def test_san_with_names_only_or_addresses_only() -> None:
    """NewSignedCert writes a SubjectAltName as soon as either list is non-empty; openssl reads it back."""
    key = KeyAlgorithm.ECDSA_P256.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    for dns, ips, want in (
        (("only.example",), (), "DNS:only.example"),
        ((), (IPv4Address("10.0.0.7"),), "IP Address:10.0.0.7"),
    ):
        spec = CertSpec(name="t", base="t", cn="t", usages=(ExtUsage.SERVER,), ca="ca", dns=dns, ips=ips)
        cert = pki.sign(spec, key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY)
        res = _run("x509", "-noout", "-ext", "subjectAltName", input=pki.cert_pem(cert))
        assert res.returncode == 0, res.stderr
        assert _strip(res.stdout) == f"X509v3 Subject Alternative Name:\n    {want}"


def test_ca_without_ski_gives_leaf_without_aki() -> None:
    """Go copies parent.SubjectKeyId into AuthorityKeyId only when the parent has one."""
    key = KeyAlgorithm.ECDSA_P256.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(_now())
        .not_valid_after(_now() + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    leaf = pki.sign(
        certlist.front_proxy_client(), key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY
    )
    assert ExtensionOID.AUTHORITY_KEY_IDENTIFIER not in [e.oid for e in leaf.extensions]


# --------------------------------------------------------------------------------------------------
# keys and encodings


@pytest.mark.parametrize("alg", ALL_ALGS, ids=[a.value for a in ALL_ALGS])
def test_key_algorithm_generate_matches(alg: KeyAlgorithm) -> None:
    if alg is KeyAlgorithm.RSA_4096:
        key: pki.PrivateKey = rsa.generate_private_key(65537, 4096)
    else:
        key = alg.generate()
    assert alg.matches(key) and alg.matches(key.public_key())
    assert KeyAlgorithm.of(key) is alg
    assert [a for a in KeyAlgorithm if a.matches(key)] == [alg]
    expect = {
        "RSA-2048": 2048,
        "RSA-3072": 3072,
        "RSA-4096": 4096,
        "ECDSA-P256": "secp256r1",
        "ECDSA-P384": "secp384r1",
    }[alg.value]
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.key_size == expect and key.private_numbers().public_numbers.e == 65537
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == expect


def test_generate_keys_in_processes(tmp_path: Path) -> None:
    keys = pki.generate_keys(KeyAlgorithm.RSA_2048, 3, jobs=2)
    assert len({k.public_key().public_numbers().n for k in keys}) == 3
    for i, key in enumerate(keys):
        # loaded without RSA validation on the way back from the worker: openssl checks them
        (tmp_path / f"{i}.key").write_bytes(pki.key_pem(key))
        text = _ok("rsa", "-check", "-noout", "-text", "-in", tmp_path / f"{i}.key")
        assert "RSA key ok" in text and "Private-Key: (2048 bit, 2 primes)" in text
    ec_keys = pki.generate_keys(KeyAlgorithm.ECDSA_P384, 2, jobs=2)
    assert [k.curve.name for k in ec_keys if isinstance(k, ec.EllipticCurvePrivateKey)] == ["secp384r1"] * 2
    assert pki.generate_keys(KeyAlgorithm.RSA_2048, 0, jobs=2) == []
    assert len(pki.generate_keys(KeyAlgorithm.RSA_2048, 1, jobs=2)) == 1


def test_key_algorithm_values_are_kubeadm_strings() -> None:
    assert [a.value for a in KeyAlgorithm] == ["RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384"]
    assert KeyAlgorithm.of(ed25519.Ed25519PrivateKey.generate()) is None
    assert KeyAlgorithm.of(ec.generate_private_key(ec.SECP521R1())) is None


def test_key_pem_roundtrip_and_headers() -> None:
    r = KeyAlgorithm.RSA_2048.generate()
    e = KeyAlgorithm.ECDSA_P384.generate()
    assert pki.key_pem(r).startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert pki.key_pem(e).startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    for key in (r, e):
        loaded = pki.load_key(pki.key_pem(key))
        assert loaded.public_key() == key.public_key()
        assert pki.public_pem(loaded) == pki.public_pem(key.public_key())
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        assert pki.load_key(pkcs8).public_key() == key.public_key()  # keyutil also accepts PKCS#8


def test_load_key_rejects_garbage_encrypted_and_foreign() -> None:
    with pytest.raises(ValueError, match="not a PEM private key"):
        pki.load_key(b"hello")
    with pytest.raises(ValueError, match="not a PEM private key"):
        pki.load_key(b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
    key = KeyAlgorithm.ECDSA_P256.generate()
    enc = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(ValueError, match="encrypted"):
        pki.load_key(enc)
    ed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="only RSA and ECDSA") as err:
        pki.load_key(ed)
    foreign = serialization.load_pem_private_key(ed, None)
    assert str(err.value) == (
        f"unsupported private key type {type(foreign).__name__}: kubeadm accepts only RSA and ECDSA"
    )
    # the parser's own reason (cryptography's, asked directly), first line
    with pytest.raises(ValueError) as err:
        pki.load_key(b"hello")
    with pytest.raises(ValueError) as parser:
        serialization.load_pem_private_key(b"hello", None)
    assert str(err.value) == "not a PEM private key: " + str(parser.value).strip().splitlines()[0]


def test_load_cert(p256: Tree) -> None:
    ca, leaf = p256.items["ca"].cert, p256.items["apiserver"].cert
    assert pki.load_cert(pki.cert_pem(leaf)) == leaf
    assert pki.load_cert(pki.cert_pem(leaf) + pki.cert_pem(ca)) == leaf  # leaf first, then intermediates
    assert pki.cert_pem(leaf).startswith(b"-----BEGIN CERTIFICATE-----\n")
    for garbage in (
        b"",
        b"nope",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        pki.key_pem(p256.items["ca"].key),
    ):
        with pytest.raises(ValueError, match="not a PEM certificate") as err:
            pki.load_cert(garbage)
        # the message carries the parser's own first line (cryptography's, asked directly here)
        with pytest.raises(ValueError) as parser:
            x509.load_pem_x509_certificates(garbage)
        assert str(err.value) == "not a PEM certificate: " + str(parser.value).strip().splitlines()[0]


def test_discovery_hash_is_sha256_of_spki(p256: Tree) -> None:
    ca = p256.items["ca"].cert
    spki = ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    h = pki.discovery_hash(ca)
    assert h == "sha256:" + hashlib.sha256(spki).hexdigest()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", h)
    assert h != "sha256:" + hashlib.sha256(ca.public_bytes(serialization.Encoding.DER)).hexdigest()


# --------------------------------------------------------------------------------------------------
# tokens


def test_token_format_and_randomness() -> None:
    tokens = [pki.generate_token() for _ in range(1000)]
    assert all(pki.TOKEN_RE.match(t) for t in tokens)
    assert len(set(tokens)) == 1000
    assert len({t[:6] for t in tokens}) > 990
    chars = set("".join(t.replace(".", "") for t in tokens))
    assert chars == set("0123456789abcdefghijklmnopqrstuvwxyz")
    assert not pki.TOKEN_RE.match("ABCDEF.0123456789abcdef")
    assert not pki.TOKEN_RE.match("abcdef.0123456789abcdef\n")
    assert not pki.TOKEN_RE.match("abcdef0123456789abcdef")
    assert pki.TOKEN_RE.match("abcdef.0123456789abcdef")


def test_token_rejection_sampling() -> None:
    """Bytes >= 252 are discarded (252 = 7*36), the rest map by b % 36."""
    stream = iter([252, 253, 254, 255, 0, 35, 36, 251, 71, 72, 255, 1, *range(2, 200)])
    calls: list[int] = []

    def fake(n: int) -> bytes:
        calls.append(n)
        return bytes(next(stream) for _ in range(n))

    token = pki.generate_token(fake)
    assert pki.TOKEN_RE.match(token)
    # the first 4 bytes are rejected, then 0->'0', 35->'z', 36->'0', 251->'z', 71->'z', 72->'0'
    assert token[:6] == "0z0zz0"
    assert calls[:2] == [6, 4]  # asked again for exactly the missing count


def test_token_distribution_is_unbiased() -> None:
    counts = {c: 0 for c in "0123456789abcdefghijklmnopqrstuvwxyz"}
    for t in (pki.generate_token() for _ in range(3000)):
        for c in t.replace(".", ""):
            counts[c] += 1
    expected = 3000 * 22 / 36
    assert all(abs(n - expected) < 0.2 * expected for n in counts.values())


# --------------------------------------------------------------------------------------------------
# verify_reuse (spec 1.7)


def test_verify_reuse_accepts_good(p256: Tree) -> None:
    for name, it in p256.items.items():
        ca = None if it.spec.is_ca else p256.items[it.spec.ca or ""].cert
        assert pki.verify_reuse(it.spec, it.cert, it.key, ca) == [], name
        assert pki.verify_reuse(it.spec, it.cert, it.key, ca, algorithm=KeyAlgorithm.ECDSA_P256) == []


def test_verify_reuse_missing_san(p256: Tree) -> None:
    it = p256.items["apiserver"]
    ca = p256.items["ca"].cert
    more, _ = certlist.apiserver(
        NODE,
        NODE_IP,
        "10.96.0.0/12",
        "cluster.local",
        "k8s.example.com",
        ["10.0.0.7", "10.0.0.8", "new.example.com"],
    )
    msgs = pki.verify_reuse(more, it.cert, it.key, ca)
    assert len(msgs) == 2
    assert any("10.0.0.8" in m for m in msgs) and any("new.example.com" in m for m in msgs)
    # fewer SANs than the certificate has is fine (extra SANs are fine for kubeadm)
    fewer, _ = certlist.apiserver(NODE, NODE_IP, "10.96.0.0/12", "cluster.local", None, [])
    assert pki.verify_reuse(fewer, it.cert, it.key, ca) == []


def test_verify_reuse_wrong_ca(p256: Tree) -> None:
    it = p256.items["apiserver"]
    msgs = pki.verify_reuse(it.spec, it.cert, it.key, p256.items["etcd-ca"].cert)
    assert len(msgs) == 1 and 'not signed by the "ca" CA' in msgs[0]
    # same subject, other key: caught by the signature
    key = KeyAlgorithm.ECDSA_P256.generate()
    impostor = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    msgs = pki.verify_reuse(it.spec, it.cert, it.key, impostor)
    assert msgs == [
        'certificate is not signed by the "ca" CA: signature does not verify with the CA public key'
    ]
    assert pki.verify_reuse(it.spec, it.cert, it.key, None) == ['no "ca" CA certificate to verify against']
    # same subject and key, but no BasicConstraints: not a CA (Go: BasicConstraintsValid is false)
    ca = p256.items["ca"]
    no_bc = (
        x509.CertificateBuilder()
        .subject_name(ca.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(ca.key.public_key())
        .serial_number(9)
        .not_valid_before(p256.now - timedelta(minutes=5))
        .not_valid_after(p256.now + CA_VALIDITY)
        .sign(ca.key, hashes.SHA256())
    )
    assert pki.verify_reuse(it.spec, it.cert, it.key, no_bc) == [
        'certificate is not signed by the "ca" CA: the CA certificate is not a CA'
    ]
    assert pki.verify_reuse(ca.spec, no_bc, ca.key, None) == ['certificate "ca" is not a CA']
    # a CA of another key type: cryptography's own reason, first line
    rsa_key = KeyAlgorithm.RSA_2048.generate()
    rsa_ca = pki.new_ca(certlist.ca_specs()["ca"], rsa_key, now=_now(), validity=CA_VALIDITY)
    with pytest.raises(ValueError) as reason:
        it.cert.verify_directly_issued_by(rsa_ca)
    assert pki.verify_reuse(it.spec, it.cert, it.key, rsa_ca) == [
        f'certificate is not signed by the "ca" CA: {str(reason.value).splitlines()[0]}'
    ]


def test_a_checked_signature_is_remembered_by_the_certificates_bytes(p256: Tree) -> None:
    """A bake checks each leaf's signature when it loads the bundle and again when it decides to keep
    it: the second answer comes from the first, for the same two certificates only (a copy parsed
    again is the same certificate; a CA of the same name with another key is not)."""
    it, ca = p256.items["apiserver"], p256.items["ca"].cert
    impostor = pki.new_ca(
        certlist.ca_specs()["ca"], KeyAlgorithm.ECDSA_P256.generate(), now=_now(), validity=CA_VALIDITY
    )
    assert pki.signature_problem(it.cert, ca) is None
    before = pki.signature_problem.cache_info().hits
    again = x509.load_pem_x509_certificate(pki.cert_pem(it.cert))
    assert pki.signature_problem(again, x509.load_pem_x509_certificate(pki.cert_pem(ca))) is None
    assert pki.signature_problem.cache_info().hits == before + 1
    assert pki.signature_problem(it.cert, impostor) == "signature does not verify with the CA public key"
    assert pki.verify_reuse(it.spec, again, it.key, impostor) == [
        'certificate is not signed by the "ca" CA: signature does not verify with the CA public key'
    ]
    assert pki.verify_reuse(it.spec, again, it.key, ca) == []


def test_verify_reuse_mismatched_key(p256: Tree) -> None:
    it = p256.items["apiserver"]
    msgs = pki.verify_reuse(it.spec, it.cert, p256.items["etcd-server"].key, p256.items["ca"].cert)
    assert msgs == ["private key does not match the certificate's public key"]
    msgs = pki.verify_reuse(it.spec, it.cert, it.key, p256.items["ca"].cert, algorithm=KeyAlgorithm.RSA_2048)
    assert msgs == ["key is ECDSA-P256, expected RSA-2048"]


def test_verify_reuse_validity(p256: Tree) -> None:
    it = p256.items["front-proxy-client"]
    ca = p256.items["front-proxy-ca"].cert
    later = p256.now + LEAF_VALIDITY + timedelta(seconds=1)
    msgs = pki.verify_reuse(it.spec, it.cert, it.key, ca, now=later)
    assert len(msgs) == 1 and msgs[0].startswith("certificate expired on ")
    earlier = p256.now - timedelta(minutes=6)
    msgs = pki.verify_reuse(it.spec, it.cert, it.key, ca, now=earlier)
    assert len(msgs) == 1 and "not valid before" in msgs[0]
    # Go's Verify: invalid only when now is Before(NotBefore) or After(NotAfter); both instants are valid
    assert pki.verify_reuse(it.spec, it.cert, it.key, ca, now=it.cert.not_valid_before_utc) == []
    assert pki.verify_reuse(it.spec, it.cert, it.key, ca, now=it.cert.not_valid_after_utc) == []
    # the 5-minute backdate: valid 4 minutes "in the past"
    assert pki.verify_reuse(it.spec, it.cert, it.key, ca, now=p256.now - timedelta(minutes=4)) == []
    # kubeadm only warns about a CA outside its validity; strict mode reports it
    cait = p256.items["ca"]
    far = p256.now + CA_VALIDITY + timedelta(days=1)
    assert pki.verify_reuse(cait.spec, cait.cert, cait.key, None, now=far, strict=False) == []
    assert "expired" in pki.verify_reuse(cait.spec, cait.cert, cait.key, None, now=far)[0]


def test_verify_reuse_foreign_keys(p256: Tree) -> None:
    it = p256.items["front-proxy-client"]
    ca = p256.items["front-proxy-ca"].cert
    ed = ed25519.Ed25519PrivateKey.generate()
    msgs = pki.verify_reuse(it.spec, it.cert, ed, ca)  # type: ignore[arg-type]
    assert msgs[0] == f"private key type {type(ed).__name__} is neither RSA nor ECDSA"
    p521 = ec.generate_private_key(ec.SECP521R1())  # no kubeadm encryptionAlgorithm
    msgs = pki.verify_reuse(it.spec, it.cert, p521, ca, algorithm=KeyAlgorithm.ECDSA_P256)
    assert f"key is {type(p521).__name__}, expected ECDSA-P256" in msgs


def test_verify_reuse_ca_must_be_ca(p256: Tree) -> None:
    it = p256.items["front-proxy-client"]
    msgs = pki.verify_reuse(certlist.ca_specs()["front-proxy-ca"], it.cert, it.key, None, strict=False)
    assert msgs == ['certificate "front-proxy-ca" is not a CA']


def test_verify_reuse_strict_checks(p256: Tree) -> None:
    it = p256.items["kubelet.conf"]
    ca = p256.items["ca"].cert
    other = certlist.kubeconfig_client("admin", NODE)
    msgs = pki.verify_reuse(other, it.cert, it.key, ca)
    assert msgs == [
        f"subject CN is 'system:node:{NODE}', expected 'kubernetes-admin'",
        "subject O is 'system:nodes', expected 'kubeadm:cluster-admins'",
    ]
    assert pki.verify_reuse(other, it.cert, it.key, ca, strict=False) == []
    server_usage = CertSpec(
        name=it.spec.name,
        base=it.spec.base,
        cn=it.spec.cn,
        orgs=it.spec.orgs,
        usages=(ExtUsage.SERVER, ExtUsage.CLIENT),
        ca="ca",
    )
    assert pki.verify_reuse(server_usage, it.cert, it.key, ca) == [
        "extended key usage is client, expected client, server"
    ]


def test_verify_reuse_strict_messages_name_none_several_and_unknown(p256: Tree) -> None:
    it = p256.items["etcd-healthcheck-client"]  # no O, client auth only
    ca = p256.items["etcd-ca"]
    spec = CertSpec(name=it.spec.name, base=it.spec.base, cn=it.spec.cn, ca="etcd-ca", usages=())
    two_orgs = CertSpec(**{**spec.__dict__, "orgs": ("system:masters", "kubeadm:cluster-admins")})
    assert pki.verify_reuse(two_orgs, it.cert, it.key, ca.cert) == [
        "subject O is (none), expected 'system:masters', 'kubeadm:cluster-admins'",
        "extended key usage is client, expected (none)",
    ]
    # an EKU kubeadm never writes is named by its OID (id-kp-codeSigning, RFC 5280 4.2.1.12)
    code_signing = (
        x509.CertificateBuilder()
        .subject_name(it.cert.subject)
        .issuer_name(ca.cert.subject)
        .public_key(it.key.public_key())
        .serial_number(7)
        .not_valid_before(p256.now - timedelta(minutes=5))
        .not_valid_after(p256.now + LEAF_VALIDITY)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    assert pki.verify_reuse(it.spec, code_signing, it.key, ca.cert) == [
        "extended key usage is 1.3.6.1.5.5.7.3.3, expected client"
    ]


# Go's crypto/x509 TestMatchHostnames table (x509_test.go): (DNS SAN, host, VerifyHostname accepts)
GO_MATCH_HOSTNAMES = [
    ("a.b.c", "a.b.c", True),
    ("a.b.c", "b.b.c", False),
    ("", "b.b.c", False),
    ("a.b.c", "", False),
    ("example.com", "example.com", True),
    ("example.com", "www.example.com", False),
    ("*.example.com", "example.com", False),
    ("*.example.com", "www.example.com", True),
    ("*.example.com", "www.example.com.", True),
    ("*.example.com", "xyz.www.example.com", False),
    ("*.example.com", "https://www.example.com", False),
    ("*.example..com", "www.example..com", False),
    ("www.example..com", "www.example..com", True),
    ("*.*.example.com", "xyz.www.example.com", False),
    ("*.www.*.com", "xyz.www.example.com", False),
    ("*bar.example.com", "foobar.example.com", False),
    ("f*.example.com", "foobar.example.com", False),
    ("www.example.com", "*.example.com", False),
    ("", ".", False),
    (".", "", False),
    (".", ".", False),
    ("example.com", "example.com.", True),
    ("example.com.", "example.com", False),
    ("example.com.", "example.com.", True),
    ("*.com.", "example.com.", False),
    ("*.com.", "example.com", False),
    ("*.com", "example.com", True),
    ("*.com", "example.com.", True),
    ("foo:bar", "foo:bar", True),
    ("*.foo:bar", "xxx.foo:bar", False),
    ("*.2.3.4", "1.2.3.4", False),
    ("*.2.3.4", "[1.2.3.4]", False),
    ("*:4860:4860::8888", "2001:4860:4860::8888", False),
    ("*:4860:4860::8888", "[2001:4860:4860::8888]", False),
    ("2001:4860:4860::8888", "2001:4860:4860::8888", False),
    ("2001:4860:4860::8888", "[2001:4860:4860::8888]", False),
    ("[2001:4860:4860::8888]", "2001:4860:4860::8888", False),
    ("[2001:4860:4860::8888]", "[2001:4860:4860::8888]", False),
]
# More cases, each read off Go's verify.go: validHostname takes a-z, 0-9, A-Z, '_' and a '-' that does not
# start a label, and '*' only as a pattern's whole first label, never bare; a host that is not a valid
# hostname is compared exactly (matchExactly: trailing dot significant); toLowerCaseASCII folds A-Z only;
# net.ParseIP refuses zones, so "fe80::1%eth0" is a name.
GO_VERIFY_RULES = [
    ("*", "localhost", False),
    ("*.example.com", "*.example.com.", False),
    ("*.example.com", "*.example.com", True),
    ("*.a-b_c.example", "x.a-b_c.example", True),
    ("*.-ab.example", "x.-ab.example", False),
    ("*.a^b.example", "x.a^b.example", False),
    ("*.a:b.example", "x.a:b.example", False),
    ("*.zz.example", "a.zz.example", True),
    ("*.k09.example", "a.k09.example", True),
    ("*.AZ.example", "x.az.example", True),
    ("*.zone.example", "A.ZONE.EXAMPLE", True),
    ("kube.example", "\u212aube.example", False),  # KELVIN SIGN is not ASCII 'K'
    ("fe80::1%eth0", "fe80::1%eth0", True),
]


@pytest.mark.parametrize(("pattern", "host", "ok"), GO_MATCH_HOSTNAMES + GO_VERIFY_RULES)
def test_verify_hostname_go_table(pattern: str, host: str, ok: bool) -> None:
    key = KeyAlgorithm.ECDSA_P256.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    spec = CertSpec(name="t", base="t", cn="t", usages=(ExtUsage.SERVER,), ca="ca", dns=(pattern,))
    cert = pki.sign(spec, key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY)
    assert pki.verify_hostname(cert, host) is ok


def test_verify_hostname_follows_go() -> None:
    key = KeyAlgorithm.ECDSA_P256.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    spec = CertSpec(
        name="t",
        base="t",
        cn="ignored.example.com",
        usages=(ExtUsage.SERVER,),
        ca="ca",
        dns=("*.apps.example.com", "Host.Example.com", "under_score.example"),
        ips=(IPv4Address("10.1.2.3"), IPv6Address("fd00::1")),
    )
    cert = pki.sign(spec, key.public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY)
    yes = [
        "a.apps.example.com",
        "A.APPS.example.com",
        "host.example.com",
        "host.example.com.",
        "*.apps.example.com",
        "under_score.example",
        "10.1.2.3",
        "fd00::1",
        "[fd00::1]",
        "fd00:0::1",
        "::ffff:10.1.2.3",
    ]
    no = [
        "apps.example.com",
        "a.b.apps.example.com",
        "ignored.example.com",
        "10.1.2.4",
        "fd00::2",
        "*.example.com",
        "",
        ".",
    ]
    assert [h for h in yes if not pki.verify_hostname(cert, h)] == []
    assert [h for h in no if pki.verify_hostname(cert, h)] == []


# --------------------------------------------------------------------------------------------------
# kubeconfig (spec 2)


def test_kubeconfig_with_certs(p256: Tree) -> None:
    it, ca = p256.items["admin.conf"], p256.items["ca"].cert
    cfg = kubeconfig(
        cluster_name="kubernetes",
        server="https://10.0.0.1:6443",
        ca_cert=ca,
        user=it.spec.cn,
        client_cert=it.cert,
        client_key=it.key,
    )
    text = yaml.safe_dump(cfg)
    assert yaml.safe_dump(cfg, sort_keys=False) == text  # already in clientcmd's (sorted) order
    expect = f"""\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {base64.b64encode(pki.cert_pem(ca)).decode()}
    server: https://10.0.0.1:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {{}}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: {base64.b64encode(pki.cert_pem(it.cert)).decode()}
    client-key-data: {base64.b64encode(pki.key_pem(it.key)).decode()}
"""
    assert text == expect
    # PEM bytes are used verbatim
    same = kubeconfig(
        cluster_name="kubernetes",
        server="https://10.0.0.1:6443",
        ca_cert=pki.cert_pem(ca),
        user=it.spec.cn,
        client_cert=pki.cert_pem(it.cert),
        client_key=pki.key_pem(it.key),
    )
    assert same == cfg


def test_kubeconfig_with_token(p256: Tree) -> None:
    ca = p256.items["ca"].cert
    token = pki.generate_token()
    cfg = kubeconfig(
        cluster_name="kubernetes",
        server="https://[fd00::10]:6443",
        ca_cert=ca,
        user="tls-bootstrap-token-user",
        token=token,
    )
    assert cfg["users"] == [{"name": "tls-bootstrap-token-user", "user": {"token": token}}]
    assert cfg["current-context"] == "tls-bootstrap-token-user@kubernetes"
    assert cfg["contexts"][0]["context"] == {"cluster": "kubernetes", "user": "tls-bootstrap-token-user"}
    assert base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]) == pki.cert_pem(ca)


def test_kubeconfig_needs_exactly_one_auth(p256: Tree) -> None:
    it, ca = p256.items["admin.conf"], p256.items["ca"].cert
    with pytest.raises(ValueError, match="not both"):
        kubeconfig(
            cluster_name="k",
            server="s",
            ca_cert=ca,
            user="u",
            client_cert=it.cert,
            client_key=it.key,
            token="abcdef.0123456789abcdef",
        )
    with pytest.raises(ValueError, match="needs a client certificate"):
        kubeconfig(cluster_name="k", server="s", ca_cert=ca, user="u", client_cert=it.cert)


BOTH = "kubeconfig: give either a token or a client certificate and key, not both"
NEITHER = "kubeconfig: needs a client certificate and its key, or a token"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (("token", "client_key"), BOTH),
        (("token", "client_cert"), BOTH),
        (("token", "client_cert", "client_key"), BOTH),
        (("client_key",), NEITHER),
        (("client_cert",), NEITHER),
        ((), NEITHER),
    ],
)
def test_kubeconfig_refuses_half_an_identity(p256: Tree, given: tuple[str, ...], message: str) -> None:
    """A kubeconfig carries a token or a client certificate with its key: any other mix is refused."""
    it, ca = p256.items["admin.conf"], p256.items["ca"].cert
    auth = {"token": "abcdef.0123456789abcdef", "client_cert": it.cert, "client_key": it.key}
    with pytest.raises(ValueError) as info:
        kubeconfig(cluster_name="k", server="s", ca_cert=ca, user="u", **{n: auth[n] for n in given})
    assert str(info.value) == message


# --------------------------------------------------------------------------------------------------
# cost: signing must stay cheap next to key generation


def test_signing_is_cheap_next_to_rsa_keygen() -> None:
    key = KeyAlgorithm.RSA_2048.generate()
    ca = pki.new_ca(certlist.ca_specs()["ca"], key, now=_now(), validity=CA_VALIDITY)
    t0 = time.perf_counter()
    leaf_keys = [KeyAlgorithm.RSA_2048.generate() for _ in range(5)]
    keygen = (time.perf_counter() - t0) / 5
    specs = [certlist.kubeconfig_client("kubelet", f"n{i}") for i in range(50)]
    t0 = time.perf_counter()
    for i, spec in enumerate(specs):
        cert = pki.sign(spec, leaf_keys[i % 5].public_key(), ca, key, now=_now(), validity=LEAF_VALIDITY)
        pki.cert_pem(cert)
        pki.key_pem(leaf_keys[i % 5])
    per_cert = (time.perf_counter() - t0) / 50
    assert per_cert < 0.2 * keygen, (per_cert, keygen)
