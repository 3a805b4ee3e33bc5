"""The bundle as bake holds it in memory (CAs, service-account key, token, every owner's leaves, the
cluster's other secrets) and the changes a bake reports making to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509

from .. import crypto as pki

OPERATOR = "_operator"  # not an RFC 1123 name, so no node can collide with it


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key, and their PEM bytes exactly as stored."""

    cert: x509.Certificate
    key: pki.PrivateKey
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_objects(cls, cert: x509.Certificate, key: pki.PrivateKey) -> Issued:
        return cls(cert, key, pki.cert_pem(cert), pki.key_pem(key))


@dataclass
class Bundle:
    created: int
    algorithm: pki.KeyAlgorithm
    token: str
    cas: dict[str, Issued]
    sa_key_pem: bytes
    sa_pub_pem: bytes
    leaves: dict[str, dict[str, Issued]] = field(default_factory=dict)
    """Per owner (node name, or `operator` for the admin.conf handed to the user), per CertSpec name."""
    encryption_key: bytes | None = None
    """The key Secrets are encrypted with in etcd (encryption.py); None only in a bundle read from an
    older bake, until reconcile adds one."""
    report_key: bytes | None = None
    """The secret every node's report key is derived from (serve/protocol.py); only while the profile
    names cluster.seed.reportUrl, so a bundle without it stays as it was."""
    seed_ca: Issued | None = None
    """The seed server's own CA (serve/tls.py), only while a seed URL is https://."""
    seed_server: Issued | None = None
    """The seed server's certificate, signed by seed_ca, for the https:// URLs' hosts."""

    @property
    def discovery_hash(self) -> str:
        return pki.discovery_hash(self.cas["ca"].cert)

    def leaf(self, owner: str, name: str) -> Issued:
        return self.leaves[owner][name]


@dataclass(frozen=True)
class Change:
    """One thing the bake did to the bundle, told to the user."""

    owner: str
    what: str

    def __str__(self) -> str:
        return f"{self.owner}: {self.what}"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
