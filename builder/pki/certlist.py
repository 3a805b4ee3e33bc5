"""kubeadm's certificate list (certlist.go, pki_helpers.go SAN rules, kubeconfig client certs) as data.

Pure: each function returns the `CertSpec` kubeadm would compute from the same configuration, with
DNS and IP SANs already in kubeadm's final order (NewSignedCert runs RemoveDuplicateAltNames on
every signed certificate: DNS names become a sorted set, IPs keep their first occurrence).

Extra SANs (apiServer.certSANs, etcd.local.serverCertSANs / peerCertSANs) that are neither an IP nor a
valid RFC-1123 (wildcard) subdomain are skipped, as kubeadm does. That is why `apiserver()`,
`etcd_server()` and `etcd_peer()` return `(spec, warnings)`: one kubeadm warning per skipped entry,
for callers to surface (or reject).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from .crypto import CertSpec, ExtUsage, IPAddress, KeyAlgorithm

CA_NAMES = ("ca", "front-proxy-ca", "etcd-ca")
KUBECONFIG_KINDS = ("admin", "super-admin", "kubelet", "controller-manager", "scheduler")

CLUSTER_ADMINS_GROUP = "kubeadm:cluster-admins"
SYSTEM_MASTERS = "system:masters"
NODES_GROUP = "system:nodes"

_SERVER = (ExtUsage.SERVER,)
_CLIENT = (ExtUsage.CLIENT,)
_SERVER_CLIENT = (ExtUsage.SERVER, ExtUsage.CLIENT)

# k8s.io/apimachinery validation.IsDNS1123Subdomain / IsWildcardDNS1123Subdomain (max 253 chars).
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_WILDCARD_DNS1123_SUBDOMAIN = re.compile(rf"\*\.{_LABEL}(\.{_LABEL})*")
_SLOPPY_V4 = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")


def parse_ip_sloppy(text: str) -> IPAddress | None:
    """k8s netutils.ParseIPSloppy: like Go's net.ParseIP, but IPv4 parts may have leading zeros (decimal).

    IPv4-mapped IPv6 addresses come back as IPv4, as Go writes them into certificates.
    """
    if "%" in text:  # Go rejects IPv6 zones
        return None
    try:
        ip = ip_address(text)
    except ValueError:
        if not _SLOPPY_V4.fullmatch(text):
            return None
        parts = [int(p) for p in text.split(".")]
        if any(p > 255 for p in parts):
            return None
        ip = IPv4Address(".".join(map(str, parts)))
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_dns1123_subdomain(name: str) -> bool:
    return len(name) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(name) is not None


def is_wildcard_dns1123_subdomain(name: str) -> bool:
    return len(name) <= 253 and _WILDCARD_DNS1123_SUBDOMAIN.fullmatch(name) is not None


def split_sans(sans: Iterable[str], cert_name: str) -> tuple[list[str], list[IPAddress], list[str]]:
    """appendSANsToAltNames: (DNS names, IPs, warnings for the entries kubeadm skips)."""
    dns: list[str] = []
    ips: list[IPAddress] = []
    warnings: list[str] = []
    for san in sans:
        ip = parse_ip_sloppy(san)
        if ip is not None:
            ips.append(ip)
        elif is_dns1123_subdomain(san) or is_wildcard_dns1123_subdomain(san):
            dns.append(san)
        else:
            warnings.append(
                f"'{san}' was not added to the '{cert_name}' SAN, because it is not a valid IP "
                "or RFC-1123 compliant DNS entry"
            )
    return dns, ips, warnings


def _dedup(dns: Iterable[str], ips: Iterable[IPAddress]) -> tuple[tuple[str, ...], tuple[IPAddress, ...]]:
    """RemoveDuplicateAltNames: DNS -> sorted set; IPs -> first occurrence order."""
    seen: set[IPAddress] = set()
    out: list[IPAddress] = []
    for ip in ips:
        if ip not in seen:
            seen.add(ip)
            out.append(ip)
    return tuple(sorted(set(dns))), tuple(out)


def _ip(value: IPAddress | str, what: str) -> IPAddress:
    if isinstance(value, IPv4Address | IPv6Address):
        if isinstance(value, IPv6Address) and value.ipv4_mapped is not None:
            return value.ipv4_mapped
        return value
    ip = parse_ip_sloppy(value)
    if ip is None:
        raise ValueError(f"{what} {value!r} is not a valid IP address")
    return ip


def apiserver_service_ip(service_subnet: str) -> IPAddress:
    """GetAPIServerVirtualIP: first IP of the FIRST CIDR of the comma-separated service subnet.

    Like kubeadm (ParseCIDRs), every element must parse, though only [0] is used; no whitespace trimming.
    """
    nets = []
    for cidr in service_subnet.split(","):
        addr, slash, prefix = cidr.partition("/")
        ip = parse_ip_sloppy(addr)
        if ip is None or not slash or not prefix.isdigit():
            raise ValueError(f"service subnet {service_subnet!r}: {cidr!r} is not a valid CIDR")
        try:
            nets.append(ip_network(f"{ip}/{int(prefix)}", strict=False))
        except ValueError:
            raise ValueError(f"service subnet {service_subnet!r}: {cidr!r} is not a valid CIDR") from None
    net = nets[0]
    if net.num_addresses < 2:
        raise ValueError(f"service subnet {net} has no room for the API server service IP")
    return net.network_address + 1


def ca_specs() -> dict[str, CertSpec]:
    """The three self-signed CAs; kubeadm gives each one DNS SAN equal to its CN."""
    return {
        "ca": CertSpec(name="ca", base="ca", cn="kubernetes", dns=("kubernetes",)),
        "front-proxy-ca": CertSpec(
            name="front-proxy-ca", base="front-proxy-ca", cn="front-proxy-ca", dns=("front-proxy-ca",)
        ),
        "etcd-ca": CertSpec(name="etcd-ca", base="etcd/ca", cn="etcd-ca", dns=("etcd-ca",)),
    }


def apiserver(
    node_name: str,
    advertise: IPAddress | str,
    service_subnet: str,
    dns_domain: str,
    endpoint_host: str | None,
    cert_sans: Sequence[str],
) -> tuple[CertSpec, list[str]]:
    """GetAPIServerAltNames. `endpoint_host` is controlPlaneEndpoint's host (port removed) or None.

    Returns (spec, warnings); invalid certSANs are dropped like kubeadm does, one warning each.
    """
    dns = [
        node_name,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{dns_domain}",
    ]
    ips = [apiserver_service_ip(service_subnet), _ip(advertise, "advertise address")]
    if endpoint_host:
        host = (
            endpoint_host[1:-1]
            if endpoint_host.startswith("[") and endpoint_host.endswith("]")
            else endpoint_host
        )
        host_ip = parse_ip_sloppy(host)
        if host_ip is not None:
            ips.append(host_ip)
        else:
            dns.append(host)
    extra_dns, extra_ips, warnings = split_sans(cert_sans, "apiserver")
    d, i = _dedup([*dns, *extra_dns], [*ips, *extra_ips])
    spec = CertSpec(
        name="apiserver", base="apiserver", cn="kube-apiserver", usages=_SERVER, dns=d, ips=i, ca="ca"
    )
    return spec, warnings


def apiserver_kubelet_client() -> CertSpec:
    """O is kubeadm:cluster-admins since 1.29 (k/k #121837), older than every supported minor."""
    return CertSpec(
        name="apiserver-kubelet-client",
        base="apiserver-kubelet-client",
        cn="kube-apiserver-kubelet-client",
        orgs=(CLUSTER_ADMINS_GROUP,),
        usages=_CLIENT,
        ca="ca",
    )


def front_proxy_client() -> CertSpec:
    return CertSpec(
        name="front-proxy-client",
        base="front-proxy-client",
        cn="front-proxy-client",
        usages=_CLIENT,
        ca="front-proxy-ca",
    )


def _etcd_leaf(
    node_name: str, advertise: IPAddress | str, extra_sans: Sequence[str], name: str, base: str
) -> tuple[CertSpec, list[str]]:
    """getAltNames for etcd: [node, localhost] + [advertise, 127.0.0.1, ::1] + extra SANs."""
    extra_dns, extra_ips, warnings = split_sans(extra_sans, name)
    dns, ips = _dedup(
        [node_name, "localhost", *extra_dns],
        [_ip(advertise, "advertise address"), IPv4Address("127.0.0.1"), IPv6Address("::1"), *extra_ips],
    )
    spec = CertSpec(name=name, base=base, cn=node_name, usages=_SERVER_CLIENT, dns=dns, ips=ips, ca="etcd-ca")
    return spec, warnings


def etcd_server(
    node_name: str, advertise: IPAddress | str, extra_sans: Sequence[str] = ()
) -> tuple[CertSpec, list[str]]:
    """CN = node name; ServerAuth + ClientAuth; extra_sans = etcd.local.serverCertSANs. (spec, warnings)."""
    return _etcd_leaf(node_name, advertise, extra_sans, "etcd-server", "etcd/server")


def etcd_peer(
    node_name: str, advertise: IPAddress | str, extra_sans: Sequence[str] = ()
) -> tuple[CertSpec, list[str]]:
    """CN = node name; ServerAuth + ClientAuth; extra_sans = etcd.local.peerCertSANs. (spec, warnings)."""
    return _etcd_leaf(node_name, advertise, extra_sans, "etcd-peer", "etcd/peer")


def etcd_healthcheck_client() -> CertSpec:
    """No O since 1.29 (k/k #119859), older than every supported minor."""
    return CertSpec(
        name="etcd-healthcheck-client",
        base="etcd/healthcheck-client",
        cn="kube-etcd-healthcheck-client",
        usages=_CLIENT,
        ca="etcd-ca",
    )


def apiserver_etcd_client() -> CertSpec:
    """No O since 1.29 (k/k #120521), older than every supported minor."""
    return CertSpec(
        name="apiserver-etcd-client",
        base="apiserver-etcd-client",
        cn="kube-apiserver-etcd-client",
        usages=_CLIENT,
        ca="etcd-ca",
    )


_KUBECONFIG_SUBJECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("kubernetes-admin", (CLUSTER_ADMINS_GROUP,)),
    "super-admin": ("kubernetes-super-admin", (SYSTEM_MASTERS,)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
}


def kubeconfig_client(kind: str, node_name: str) -> CertSpec:
    """Client cert embedded in /etc/kubernetes/<kind>.conf; name "<kind>.conf", base "kubeconfig/<kind>".

    The CN is also the kubeconfig user name. `node_name` only matters for kubelet.
    """
    orgs: tuple[str, ...]
    if kind == "kubelet":
        cn, orgs = f"system:node:{node_name}", (NODES_GROUP,)
    elif kind in _KUBECONFIG_SUBJECTS:
        cn, orgs = _KUBECONFIG_SUBJECTS[kind]
    else:
        raise ValueError(f"unknown kubeconfig kind {kind!r}; expected one of {', '.join(KUBECONFIG_KINDS)}")
    return CertSpec(name=f"{kind}.conf", base=f"kubeconfig/{kind}", cn=cn, orgs=orgs, usages=_CLIENT, ca="ca")


JOIN_CREDENTIAL = "join.conf"


def join_client(node_name: str) -> CertSpec:
    """The per-node join credential (cluster.join: certificate): kubelet's own identity, system:node:<name>
    in system:nodes, embedded in the discovery kubeconfig a joining node hands to `kubeadm join`.

    kubeadm uses a discovery file's embedded credentials for the TLS bootstrap (discovery.For); the kubelet's
    CSR from system:node:<name> is then auto-approved as `selfnodeclient` (kubeadm binds that for
    system:nodes), and the Node authorizer confines the credential to that one node.

    Its key is ECDSA P-256 whatever the cluster's encryptionAlgorithm: kubeadm makes no such credential,
    and the kubelet replaces it with a key of its own, which client-go's certificate manager makes ECDSA
    P-256 (util/certificate/certificate_manager.go). An RSA key per worker would cost ~40 ms of CPU each
    (most of a 1,000-worker bake) for a credential that lives until the node has joined.
    """
    return CertSpec(
        name=JOIN_CREDENTIAL,
        base="kubeconfig/join",
        cn=f"system:node:{node_name}",
        orgs=(NODES_GROUP,),
        usages=_CLIENT,
        ca="ca",
        key=KeyAlgorithm.ECDSA_P256,
    )
