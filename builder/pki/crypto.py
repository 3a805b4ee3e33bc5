"""PKI primitives that reproduce what kubeadm (Go crypto/x509) writes, byte layout included.

Pure: no file I/O. Everything a kubeadm-compatible bundle needs is here (keys, CA and leaf
certificates, PEM encodings, discovery hash, bootstrap tokens); *which* certificates exist and what goes
in them lives in `builder.pki.certlist`, kubeconfigs in `builder.pki.kubeconfig`.

Go behaviour mirrored (kubeadm v1.31-v1.34 are built with Go 1.22-1.24):
- extension order KeyUsage(critical), ExtKeyUsage, BasicConstraints(critical), SubjectKeyId,
  AuthorityKeyId, SubjectAltName (DNS names first, then IPs);
- SubjectKeyId only on CAs: SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 method 1; Go >= 1.25
  switched to truncated SHA-256, which kubeadm >= 1.35 inherits);
- AuthorityKeyId (keyIdentifier only) on certificates signed by a CA that has a SubjectKeyId;
- Subject as Go's pkix.Name.ToRDNSequence: O before CN, PrintableString when the value allows it,
  UTF8String otherwise;
- signature hash from the CA key: SHA-256 for RSA (PKCS#1 v1.5) and P-256, SHA-384 for P-384.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .. import parallel

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
IPAddress = IPv4Address | IPv6Address

CERTIFICATE_BACKDATE = timedelta(minutes=5)
_MAX_SERIAL = 2**63 - 1  # Go: rand.Int(MaxInt64-1) + 1  ->  [1, MaxInt64)


class KeyAlgorithm(StrEnum):
    """kubeadm `encryptionAlgorithm`; one algorithm is used for every key of a cluster (sa.key too)."""

    RSA_2048 = "RSA-2048"
    RSA_3072 = "RSA-3072"
    RSA_4096 = "RSA-4096"
    ECDSA_P256 = "ECDSA-P256"
    ECDSA_P384 = "ECDSA-P384"

    @property
    def min_minor(self) -> int:
        """Oldest Kubernetes 1.x minor whose kubeadm accepts this value (ECDSA-P384 needs 1.34)."""
        return 34 if self is KeyAlgorithm.ECDSA_P384 else 0

    def generate(self) -> PrivateKey:
        if self is KeyAlgorithm.ECDSA_P256:
            return ec.generate_private_key(ec.SECP256R1())
        if self is KeyAlgorithm.ECDSA_P384:
            return ec.generate_private_key(ec.SECP384R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[self])

    @property
    def slow(self) -> bool:
        """RSA key generation takes ~0.1 s a key, worth other processes; ECDSA takes ~0.1 ms."""
        return self.value.startswith("RSA")

    def matches(self, key: PrivateKey | PublicKey) -> bool:
        return KeyAlgorithm.of(key) is self

    @staticmethod
    def of(key: object) -> KeyAlgorithm | None:
        """The algorithm of an existing key, or None if kubeadm could not have generated it."""
        if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            return _RSA_BY_BITS.get(key.key_size)
        if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            return _EC_BY_CURVE.get(key.curve.name)
        return None


_RSA_BITS = {KeyAlgorithm.RSA_2048: 2048, KeyAlgorithm.RSA_3072: 3072, KeyAlgorithm.RSA_4096: 4096}
_RSA_BY_BITS = {v: k for k, v in _RSA_BITS.items()}
_EC_BY_CURVE = {"secp256r1": KeyAlgorithm.ECDSA_P256, "secp384r1": KeyAlgorithm.ECDSA_P384}


class ExtUsage(StrEnum):
    SERVER = "server"
    CLIENT = "client"


_EKU_OID = {
    ExtUsage.SERVER: ExtendedKeyUsageOID.SERVER_AUTH,
    ExtUsage.CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH,
}


@dataclass(frozen=True)
class CertSpec:
    """One certificate as kubeadm would compute it (see builder.pki.certlist for the real list)."""

    name: str
    base: str
    cn: str
    orgs: tuple[str, ...] = ()
    usages: tuple[ExtUsage, ...] = ()
    dns: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()
    ca: str | None = None
    key: KeyAlgorithm | None = None
    """A key algorithm fixed for this certificate; None: the cluster's encryptionAlgorithm."""

    @property
    def is_ca(self) -> bool:
        return self.ca is None

    def key_algorithm(self, cluster: KeyAlgorithm) -> KeyAlgorithm:
        return self.key or cluster


# --- certificate building -------------------------------------------------------------------------

# Extension values are immutable; build them once (signing 1,000s of leaves should cost ~the signature).
_KU_CA = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_KU_LEAF = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_BC_CA = x509.BasicConstraints(ca=True, path_length=None)
_BC_LEAF = x509.BasicConstraints(ca=False, path_length=None)
_EKU_CACHE: dict[tuple[ExtUsage, ...], x509.ExtendedKeyUsage] = {}
_NAME_CACHE: dict[tuple[str, tuple[str, ...]], x509.Name] = {}

# Go encoding/asn1: a string is a PrintableString when every byte is in this set, else UTF8String.
_PRINTABLE = re.compile(r"[A-Za-z0-9'()+,\-./:=? ]*")


def _attr(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    kind = _ASN1Type.PrintableString if _PRINTABLE.fullmatch(value) else _ASN1Type.UTF8String
    if oid == NameOID.COMMON_NAME and not 1 <= len(value.encode()) <= 64:
        # Go has no upper bound (system:node:<253-char name> is legal); cryptography only warns then.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return x509.NameAttribute(oid, value, kind, _validate=False)
    return x509.NameAttribute(oid, value, kind)


def _subject(cn: str, orgs: tuple[str, ...]) -> x509.Name:
    """Go's ToRDNSequence: all O values in one (multi-valued) RDN, then CN."""
    key = (cn, orgs)
    name = _NAME_CACHE.get(key)
    if name is None:
        rdns = []
        if orgs:
            rdns.append(x509.RelativeDistinguishedName([_attr(NameOID.ORGANIZATION_NAME, o) for o in orgs]))
        if cn:
            rdns.append(x509.RelativeDistinguishedName([_attr(NameOID.COMMON_NAME, cn)]))
        name = x509.Name(rdns)
        if len(_NAME_CACHE) < 4096:
            _NAME_CACHE[key] = name
    return name


def _eku(usages: tuple[ExtUsage, ...]) -> x509.ExtendedKeyUsage:
    eku = _EKU_CACHE.get(usages)
    if eku is None:
        eku = _EKU_CACHE[usages] = x509.ExtendedKeyUsage([_EKU_OID[u] for u in usages])
    return eku


def _san(dns: Sequence[str], ips: Sequence[IPAddress]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names.extend(x509.IPAddress(_canonical_ip(ip)) for ip in ips)
    return x509.SubjectAlternativeName(names)


def _canonical_ip(ip: IPAddress) -> IPAddress:
    """Go writes IPv4-mapped IPv6 addresses as 4 bytes (net.IP.To4)."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return hashes.SHA384()
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return hashes.SHA256()
    raise ValueError(f"unsupported signing key type {type(key).__name__} (kubeadm supports RSA and ECDSA)")


def _times(now: datetime, validity: timedelta) -> tuple[datetime, datetime]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (kubeadm uses UTC)")
    now = now.astimezone(UTC)
    # X.509 times have whole seconds; Go truncates, so do we.
    return (now - CERTIFICATE_BACKDATE).replace(microsecond=0), (now + validity).replace(microsecond=0)


def _serial() -> int:
    return secrets.randbelow(_MAX_SERIAL - 1) + 1


def new_ca(spec: CertSpec, key: PrivateKey, *, now: datetime, validity: timedelta) -> x509.Certificate:
    """kubeadm pkiutil.NewSelfSignedCACert: DNS SAN = CN, SubjectKeyId, no AuthorityKeyId, no MaxPathLen."""
    if not spec.is_ca:
        raise ValueError(f"{spec.name}: not a CA spec (signed by {spec.ca!r}); use sign()")
    not_before, not_after = _times(now, validity)
    name = _subject(spec.cn, spec.orgs)
    pub = key.public_key()
    builder = (
        x509.CertificateBuilder(
            issuer_name=name,
            subject_name=name,
            public_key=pub,
            serial_number=_serial(),
            not_valid_before=not_before,
            not_valid_after=not_after,
        )
        .add_extension(_KU_CA, critical=True)
        .add_extension(_BC_CA, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(_san((spec.cn,), ()), critical=False)
    )
    return builder.sign(key, _hash_for(key))


def sign(
    spec: CertSpec,
    key_public: PublicKey,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    *,
    now: datetime,
    validity: timedelta,
) -> x509.Certificate:
    """kubeadm pkiutil.NewSignedCert for a leaf (IsCA=false) signed by `ca_cert`/`ca_key`."""
    if spec.is_ca:
        raise ValueError(f"{spec.name}: is a CA spec; use new_ca()")
    issuer, aki, algorithm = _issuer_info(spec, ca_cert, ca_key)
    not_before, not_after = _times(now, validity)
    builder = x509.CertificateBuilder(
        issuer_name=issuer,
        subject_name=_subject(spec.cn, spec.orgs),
        public_key=key_public,
        serial_number=_serial(),
        not_valid_before=not_before,
        not_valid_after=not_after,
    ).add_extension(_KU_LEAF, critical=True)
    if spec.usages:
        builder = builder.add_extension(_eku(spec.usages), critical=False)
    builder = builder.add_extension(_BC_LEAF, critical=True)
    if aki is not None:
        builder = builder.add_extension(aki, critical=False)
    if spec.dns or spec.ips:
        builder = builder.add_extension(_san(spec.dns, spec.ips), critical=False)
    return builder.sign(ca_key, algorithm)


# id(ca_cert) -> (ca_cert, ca_key, issuer, AKI, hash). Holding the objects keeps the ids valid.
_ISSUER_CACHE: dict[
    int,
    tuple[
        x509.Certificate,
        PrivateKey,
        x509.Name,
        x509.AuthorityKeyIdentifier | None,
        hashes.SHA256 | hashes.SHA384,
    ],
] = {}


def _issuer_info(
    spec: CertSpec, ca_cert: x509.Certificate, ca_key: PrivateKey
) -> tuple[x509.Name, x509.AuthorityKeyIdentifier | None, hashes.SHA256 | hashes.SHA384]:
    """Per-CA work done once per CA, not once per leaf: key check, issuer name, AKI, hash."""
    hit = _ISSUER_CACHE.get(id(ca_cert))
    if hit is not None and hit[0] is ca_cert and hit[1] is ca_key:
        return hit[2], hit[3], hit[4]
    algorithm = _hash_for(ca_key)
    if ca_cert.public_key() != ca_key.public_key():
        # Go refuses too: "x509: provided PrivateKey doesn't match parent's PublicKey".
        raise ValueError(f"{spec.name}: the CA private key does not match the CA certificate")
    ski = _ski(ca_cert)
    aki = (
        None
        if ski is None
        else x509.AuthorityKeyIdentifier(
            key_identifier=ski, authority_cert_issuer=None, authority_cert_serial_number=None
        )
    )
    if len(_ISSUER_CACHE) >= 64:
        _ISSUER_CACHE.clear()
    _ISSUER_CACHE[id(ca_cert)] = (ca_cert, ca_key, ca_cert.subject, aki, algorithm)
    return ca_cert.subject, aki, algorithm


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


# --- encodings ------------------------------------------------------------------------------------


def _generate_der(algorithm: KeyAlgorithm, _index: int) -> bytes:
    return algorithm.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_keys(algorithm: KeyAlgorithm, count: int, jobs: int = 1) -> list[PrivateKey]:
    """`count` new keys; RSA ones made in `jobs` processes at once (key generation is most of the PKI
    time, and keys are independent)."""
    if jobs <= 1 or count <= 1 or not algorithm.slow:
        return [algorithm.generate() for _ in range(count)]
    keys = []
    for der in parallel.ordered_map(_generate_der, algorithm, range(count), jobs):
        # generated by us a moment ago: the RSA consistency check would cost ~as much as a signature
        key = serialization.load_der_private_key(der, None, unsafe_skip_rsa_key_validation=True)
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        keys.append(key)
    return keys


def key_pem(key: PrivateKey) -> bytes:
    """client-go keyutil: RSA -> PKCS#1 "RSA PRIVATE KEY", ECDSA -> SEC1 "EC PRIVATE KEY", unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_pem(key_or_pub: PrivateKey | PublicKey) -> bytes:
    """PKIX "PUBLIC KEY" PEM, as kubeadm writes sa.pub."""
    pub = (
        key_or_pub.public_key()
        if isinstance(key_or_pub, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        else key_or_pub
    )
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(pem: bytes) -> PrivateKey:
    """Parse an unencrypted RSA or ECDSA private key (PKCS#1, SEC1 or PKCS#8), like keyutil does."""
    try:
        # Skipping OpenSSL's RSA consistency check makes loading ~1000x faster; callers that load
        # our own bundle compare the key with its certificate anyway.
        key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError as exc:  # encrypted
        raise ValueError(f"private key is encrypted; kubeadm needs an unencrypted key ({exc})") from None
    except Exception as exc:
        raise ValueError(f"not a PEM private key: {_first_line(exc)}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(
            f"unsupported private key type {type(key).__name__}: kubeadm accepts only RSA and ECDSA"
        )
    return key


def load_cert(pem: bytes) -> x509.Certificate:
    """Parse the first certificate of a PEM file (kubeadm allows intermediates after the leaf)."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except Exception as exc:
        raise ValueError(f"not a PEM certificate: {_first_line(exc)}") from None
    if not certs:
        raise ValueError("not a PEM certificate: no CERTIFICATE block found")
    return certs[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def discovery_hash(ca_cert: x509.Certificate) -> str:
    """pubkeypin.Hash: sha256 over the DER SubjectPublicKeyInfo (not over the certificate)."""
    spki = ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


# --- bootstrap tokens -----------------------------------------------------------------------------

TOKEN_RE: re.Pattern[str] = re.compile(r"\A([a-z0-9]{6})\.([a-z0-9]{16})\Z")
_TOKEN_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN_LIMIT = 252  # 7 * 36: bytes >= 252 would bias the modulo, so they are discarded


def _token_chars(n: int, randbytes: Callable[[int], bytes]) -> str:
    out: list[str] = []
    while len(out) < n:
        for b in randbytes(n - len(out)):
            if b < _TOKEN_LIMIT:
                out.append(_TOKEN_CHARS[b % 36])
    return "".join(out)


def generate_token(randbytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """Bootstrap token "<6>.<16>" from [a-z0-9]; `randbytes` is injectable only for tests."""
    return f"{_token_chars(6, randbytes)}.{_token_chars(16, randbytes)}"


# --- reuse checks ---------------------------------------------------------------------------------


def verify_reuse(
    spec: CertSpec,
    cert: x509.Certificate,
    key: PrivateKey,
    ca_cert: x509.Certificate | None,
    *,
    now: datetime | None = None,
    strict: bool = True,
    algorithm: KeyAlgorithm | None = None,
) -> list[str]:
    """Why kubeadm (spec 1.7) would not use `cert`/`key` as-is; [] means it would.

    kubeadm checks: key type, key matches certificate, a CA is a CA, a leaf chains to its CA
    (Go's Verify also rejects an expired or not-yet-valid leaf), and every SAN kubeadm would have
    put in passes Go's VerifyHostname. For CAs kubeadm does no SAN check, and neither do we.
    `strict` adds our own checks: CN, O and ExtKeyUsage equal to the spec, CA validity period,
    and (if `algorithm` is given) the key algorithm.
    """
    out: list[str] = []
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        out.append(f"private key type {type(key).__name__} is neither RSA nor ECDSA")
    elif cert.public_key() != key.public_key():
        out.append("private key does not match the certificate's public key")
    if algorithm is not None and strict and not algorithm.matches(key):
        out.append(f"key is {KeyAlgorithm.of(key) or type(key).__name__}, expected {algorithm}")

    if strict or not spec.is_ca:  # kubeadm only warns about a CA out of its validity period
        if cert.not_valid_before_utc > now:
            out.append(f"certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}")
        if cert.not_valid_after_utc < now:
            out.append(f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")

    if spec.is_ca:
        if not is_ca(cert):
            out.append(f'certificate "{spec.name}" is not a CA')
    elif ca_cert is None:
        out.append(f'no "{spec.ca}" CA certificate to verify against')
    else:
        problem = _issued_by(cert, ca_cert)
        if problem:
            out.append(f'certificate is not signed by the "{spec.ca}" CA: {problem}')
        for name in (*spec.dns, *(str(ip) for ip in spec.ips)):
            if not verify_hostname(cert, name):
                out.append(f"certificate does not cover SAN {name}")

    if strict:
        got_cn = _attrs(cert, NameOID.COMMON_NAME)
        if got_cn != [spec.cn]:
            out.append(f"subject CN is {_show(got_cn)}, expected {spec.cn!r}")
        got_o = _attrs(cert, NameOID.ORGANIZATION_NAME)
        if sorted(got_o) != sorted(spec.orgs):
            out.append(f"subject O is {_show(got_o)}, expected {_show(list(spec.orgs))}")
        got_eku = _ekus(cert)
        want_eku = {_EKU_OID[u] for u in spec.usages}
        if got_eku != want_eku:
            out.append(f"extended key usage is {_show_eku(got_eku)}, expected {_show_eku(want_eku)}")
    return out


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> str | None:
    if cert.issuer != ca_cert.subject:
        issuer, subject = cert.issuer.rfc4514_string(), ca_cert.subject.rfc4514_string()
        return f"issuer {issuer!r} is not the CA subject {subject!r}"
    if not is_ca(ca_cert):
        return "the CA certificate is not a CA"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except InvalidSignature:
        return "signature does not verify with the CA public key"
    except (ValueError, TypeError) as exc:
        return _first_line(exc)
    return None


def _attrs(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    with warnings.catch_warnings():  # cryptography warns on CNs > 64 chars, which Go allows
        warnings.simplefilter("ignore")
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _show(values: list[str]) -> str:
    return "(none)" if not values else ", ".join(repr(v) for v in values)


def _ekus(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


_EKU_NAMES = {v: k.value for k, v in _EKU_OID.items()}


def _show_eku(oids: set[x509.ObjectIdentifier]) -> str:
    return "(none)" if not oids else ", ".join(sorted(_EKU_NAMES.get(o, o.dotted_string) for o in oids))


def _san_values(cert: x509.Certificate) -> tuple[list[str], list[IPAddress]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = [ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, IPv4Address | IPv6Address)]
    return san.get_values_for_type(x509.DNSName), ips


def verify_hostname(cert: x509.Certificate, host: str) -> bool:
    """Go's (*x509.Certificate).VerifyHostname: IPs by equality, names exact or left-most wildcard; no CN."""
    candidate_ip = host[1:-1] if len(host) >= 3 and host[0] == "[" and host[-1] == "]" else host
    dns_names, ips = _san_values(cert)
    ip = _parse_go_ip(candidate_ip)
    if ip is not None:
        ip = _canonical_ip(ip)
        return any(_canonical_ip(c) == ip for c in ips)
    name = _lower_ascii(host)
    valid_name = _valid_hostname(name, is_pattern=False)
    for match in dns_names:
        if valid_name and _valid_hostname(match, is_pattern=True):
            if _match_hostnames(match, name):
                return True
        elif _match_exactly(match, name):
            return True
    return False


def _parse_go_ip(text: str) -> IPAddress | None:
    """net.ParseIP: no IPv6 zones, no leading zeros in IPv4 parts."""
    if "%" in text:
        return None
    try:
        return ip_address(text)
    except ValueError:
        return None


def _lower_ascii(s: str) -> str:
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in s)


def _valid_hostname(host: str, *, is_pattern: bool) -> bool:
    if not is_pattern:
        host = host.removesuffix(".")
    if not host or host == "*":
        return False
    for i, part in enumerate(host.split(".")):
        if not part:
            return False
        if is_pattern and i == 0 and part == "*":
            continue
        for j, c in enumerate(part):
            if (
                ("a" <= c <= "z")
                or ("0" <= c <= "9")
                or ("A" <= c <= "Z")
                or c == "_"
                or (c == "-" and j != 0)
            ):
                continue
            return False
    return True


def _match_exactly(a: str, b: str) -> bool:
    if a in ("", ".") or b in ("", "."):
        return False
    return _lower_ascii(a) == _lower_ascii(b)


def _match_hostnames(pattern: str, host: str) -> bool:
    pattern = _lower_ascii(pattern)
    host = _lower_ascii(host.removesuffix("."))
    if not pattern or not host:
        return False
    p_parts, h_parts = pattern.split("."), host.split(".")
    if len(p_parts) != len(h_parts):
        return False
    return all((i == 0 and p == "*") or p == h for i, (p, h) in enumerate(zip(p_parts, h_parts, strict=True)))
