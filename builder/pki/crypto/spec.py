"""A certificate as kubeadm computes it (`CertSpec`): what the building, the reuse check, the
certificate list and the seed server's TLS all describe a certificate by."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address

from cryptography.x509.oid import ExtendedKeyUsageOID

from .keys import KeyAlgorithm

IPAddress = IPv4Address | IPv6Address


class ExtUsage(StrEnum):
    SERVER = "server"
    CLIENT = "client"


EKU_OID = {
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


def canonical_ip(ip: IPAddress) -> IPAddress:
    """Go writes IPv4-mapped IPv6 addresses as 4 bytes (net.IP.To4)."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
