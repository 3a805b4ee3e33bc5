"""CA and leaf certificates built and signed as kubeadm (Go crypto/x509) builds them, byte layout
included, their PEM encoding and kubeadm's discovery hash.

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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from .keys import PrivateKey, PublicKey, first_line
from .spec import EKU_OID, CertSpec, ExtUsage, IPAddress, canonical_ip

CERTIFICATE_BACKDATE = timedelta(minutes=5)
_MAX_SERIAL = 2**63 - 1  # Go: rand.Int(MaxInt64-1) + 1  ->  [1, MaxInt64)


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
        eku = _EKU_CACHE[usages] = x509.ExtendedKeyUsage([EKU_OID[u] for u in usages])
    return eku


def _san(dns: Sequence[str], ips: Sequence[IPAddress]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names.extend(x509.IPAddress(canonical_ip(ip)) for ip in ips)
    return x509.SubjectAlternativeName(names)


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


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    """Parse the first certificate of a PEM file (kubeadm allows intermediates after the leaf)."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except Exception as exc:
        raise ValueError(f"not a PEM certificate: {first_line(exc)}") from None
    if not certs:
        raise ValueError("not a PEM certificate: no CERTIFICATE block found")
    return certs[0]


def discovery_hash(ca_cert: x509.Certificate) -> str:
    """pubkeypin.Hash: sha256 over the DER SubjectPublicKeyInfo (not over the certificate)."""
    spki = ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()
