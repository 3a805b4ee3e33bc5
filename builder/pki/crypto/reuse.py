"""kubeadm's check of an existing certificate and key before it uses them as they are (spec 1.7), and
the stricter checks a bake adds: what decides whether a leaf of the bundle is kept or re-issued."""

from __future__ import annotations

import functools
import warnings
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .hostname import verify_hostname
from .keys import KeyAlgorithm, PrivateKey, first_line
from .spec import EKU_OID, CertSpec


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
        want_eku = {EKU_OID[u] for u in spec.usages}
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
    return signature_problem(cert, ca_cert)


@functools.lru_cache(maxsize=1 << 16)
def signature_problem(cert: x509.Certificate, ca_cert: x509.Certificate) -> str | None:
    """Why `cert` is not signed by `ca_cert`'s key under its name; None: it is. Cached by the two
    certificates (equal when their DER bytes are): a bake checks every leaf when it loads the bundle and
    again when it decides to keep it, and each check costs as much as the rest of that decision."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except InvalidSignature:
        return "signature does not verify with the CA public key"
    except (ValueError, TypeError) as exc:
        return first_line(exc)
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


_EKU_NAMES = {v: k.value for k, v in EKU_OID.items()}


def _show_eku(oids: set[x509.ObjectIdentifier]) -> str:
    return "(none)" if not oids else ", ".join(sorted(_EKU_NAMES.get(o, o.dotted_string) for o in oids))
