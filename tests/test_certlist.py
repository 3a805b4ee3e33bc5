"""builder.pki.certlist against the tables of spec 1.1, 1.2 and 2, checked on real certificates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from builder.pki import certlist
from builder.pki import crypto as pki
from builder.pki.crypto import CertSpec, ExtUsage, KeyAlgorithm

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
NOW = datetime.now(UTC).replace(microsecond=0)


def _ips(*texts: str) -> list[IPv4Address | IPv6Address]:
    return [ip_address(t) for t in texts]


# Spec 1.1 and 2, written out by hand: name -> (file base, signing CA, CN, O, EKU)
TABLE: dict[str, tuple[str, str | None, str, list[str], list[x509.ObjectIdentifier]]] = {
    "ca": ("ca", None, "kubernetes", [], []),
    "apiserver": ("apiserver", "ca", "kube-apiserver", [], [SERVER]),
    "apiserver-kubelet-client": (
        "apiserver-kubelet-client",
        "ca",
        "kube-apiserver-kubelet-client",
        ["kubeadm:cluster-admins"],
        [CLIENT],
    ),
    "front-proxy-ca": ("front-proxy-ca", None, "front-proxy-ca", [], []),
    "front-proxy-client": ("front-proxy-client", "front-proxy-ca", "front-proxy-client", [], [CLIENT]),
    "etcd-ca": ("etcd/ca", None, "etcd-ca", [], []),
    "etcd-server": ("etcd/server", "etcd-ca", "cp-1", [], [SERVER, CLIENT]),
    "etcd-peer": ("etcd/peer", "etcd-ca", "cp-1", [], [SERVER, CLIENT]),
    "etcd-healthcheck-client": (
        "etcd/healthcheck-client",
        "etcd-ca",
        "kube-etcd-healthcheck-client",
        [],
        [CLIENT],
    ),
    "apiserver-etcd-client": ("apiserver-etcd-client", "etcd-ca", "kube-apiserver-etcd-client", [], [CLIENT]),
    "admin.conf": ("kubeconfig/admin", "ca", "kubernetes-admin", ["kubeadm:cluster-admins"], [CLIENT]),
    "super-admin.conf": (
        "kubeconfig/super-admin",
        "ca",
        "kubernetes-super-admin",
        ["system:masters"],
        [CLIENT],
    ),
    "kubelet.conf": ("kubeconfig/kubelet", "ca", "system:node:cp-1", ["system:nodes"], [CLIENT]),
    "controller-manager.conf": (
        "kubeconfig/controller-manager",
        "ca",
        "system:kube-controller-manager",
        [],
        [CLIENT],
    ),
    "scheduler.conf": ("kubeconfig/scheduler", "ca", "system:kube-scheduler", [], [CLIENT]),
    # not kubeadm's: the join credential (cluster.join: certificate). The Node authorizer's identity
    # (system:node:<name> in system:nodes), under the bundle path of tests/fixtures/bundles.
    "join.conf": ("kubeconfig/join", "ca", "system:node:cp-1", ["system:nodes"], [CLIENT]),
}

# Spec 1.2 for the configuration below: DNS sorted, IPs in first-occurrence order.
APISERVER_DNS = [
    "*.apps.example.com",
    "cp-1",
    "k8s.example.com",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.corp.local",
    "lb.example.com",
]
APISERVER_IPS = _ips("10.96.0.1", "192.168.56.10", "192.168.56.100", "fd00::5")
ETCD_DNS = ["cp-1", "etcd.example.com", "localhost"]
ETCD_IPS = _ips("192.168.56.10", "127.0.0.1", "::1", "10.1.1.1")


def _all_specs() -> dict[str, CertSpec]:
    specs = dict(certlist.ca_specs())
    api, warnings = certlist.apiserver(
        "cp-1",
        "192.168.56.10",
        "10.96.0.0/12,fd00:10::/108",
        "corp.local",
        "k8s.example.com",
        [
            "lb.example.com",
            "192.168.56.100",
            "*.apps.example.com",
            "fd00::5",
            "not valid!",
            "cp-1",
            "10.96.0.1",
        ],
    )
    assert warnings == [
        "'not valid!' was not added to the 'apiserver' SAN, because it is not a valid IP "
        "or RFC-1123 compliant DNS entry"
    ]
    specs["apiserver"] = api
    specs["apiserver-kubelet-client"] = certlist.apiserver_kubelet_client()
    specs["front-proxy-client"] = certlist.front_proxy_client()
    specs["etcd-server"] = certlist.etcd_server(
        "cp-1", IPv4Address("192.168.56.10"), ["etcd.example.com", "10.1.1.1"]
    )[0]
    specs["etcd-peer"] = certlist.etcd_peer(
        "cp-1", "192.168.56.10", ["10.1.1.1", "etcd.example.com", "localhost"]
    )[0]
    specs["etcd-healthcheck-client"] = certlist.etcd_healthcheck_client()
    specs["apiserver-etcd-client"] = certlist.apiserver_etcd_client()
    for kind in certlist.KUBECONFIG_KINDS:
        spec = certlist.kubeconfig_client(kind, "cp-1")
        specs[spec.name] = spec
    join = certlist.join_client("cp-1")
    specs[join.name] = join
    return specs


@pytest.fixture(
    scope="module",
    params=[KeyAlgorithm.ECDSA_P256, KeyAlgorithm.ECDSA_P384, KeyAlgorithm.RSA_2048],
    ids=lambda a: a.value,
)
def keys(request: pytest.FixtureRequest) -> dict[str, pki.PrivateKey]:
    """One key per CA and one leaf key (enough to look at the fields), generated once per algorithm."""
    alg: KeyAlgorithm = request.param
    return {name: alg.generate() for name in (*certlist.CA_NAMES, "leaf")}


def _issue(keys: dict[str, pki.PrivateKey], name: str) -> tuple[CertSpec, x509.Certificate]:
    """The certificate `name` as the bake issues it, from specs computed in the test itself (so that
    mutmut, which maps a function to the tests that call it, runs every test below on its mutants)."""
    specs = _all_specs()
    spec = specs[name]
    ca_name = spec.ca or name
    ca_cert = pki.new_ca(specs[ca_name], keys[ca_name], now=NOW, validity=timedelta(days=3650))
    if spec.ca is None:
        return spec, ca_cert
    leaf = pki.sign(
        spec, keys["leaf"].public_key(), ca_cert, keys[ca_name], now=NOW, validity=timedelta(days=365)
    )
    return spec, leaf


def test_every_certificate_is_in_the_table() -> None:
    assert set(_all_specs()) == set(TABLE)


@pytest.mark.parametrize("name", list(TABLE))
def test_certificate_fields_match_spec_table(keys: dict[str, pki.PrivateKey], name: str) -> None:
    base, ca, cn, orgs, ekus = TABLE[name]
    spec, cert = _issue(keys, name)
    assert (spec.name, spec.base, spec.ca, spec.is_ca) == (name, base, ca, ca is None)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [cn]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == orgs
    assert {a.oid for a in cert.subject} <= {NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME}

    exts = cert.extensions
    ku = exts.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_encipherment  # KeyEncipherment even on ECDSA keys
    assert ku.value.key_cert_sign is (ca is None)
    assert not (
        ku.value.crl_sign
        or ku.value.content_commitment
        or ku.value.data_encipherment
        or ku.value.key_agreement
    )
    bc = exts.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is (ca is None) and bc.value.path_length is None
    if ekus:
        assert list(exts.get_extension_for_class(x509.ExtendedKeyUsage).value) == ekus
    else:
        with pytest.raises(x509.ExtensionNotFound):
            exts.get_extension_for_class(x509.ExtendedKeyUsage)

    want_dns: list[str] = []
    want_ips: list[IPv4Address | IPv6Address] = []
    if ca is None:
        want_dns = [cn]
    elif name == "apiserver":
        want_dns, want_ips = APISERVER_DNS, APISERVER_IPS
    elif name in ("etcd-server", "etcd-peer"):
        want_dns, want_ips = ETCD_DNS, ETCD_IPS
    if want_dns or want_ips:
        san = exts.get_extension_for_class(x509.SubjectAlternativeName)
        assert not san.critical
        # order matters: all DNS names first (sorted), then the IPs in kubeadm's order
        got = [(type(g).__name__, str(g.value)) for g in san.value]
        assert got == [("DNSName", d) for d in want_dns] + [("IPAddress", str(i)) for i in want_ips]
    else:
        with pytest.raises(x509.ExtensionNotFound):
            exts.get_extension_for_class(x509.SubjectAlternativeName)
    validity = timedelta(days=3650 if ca is None else 365)
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + validity


# --------------------------------------------------------------------------------------------------
# SAN rules (spec 1.2), on the specs themselves


def test_apiserver_defaults() -> None:
    spec, warnings = certlist.apiserver("node-a", "10.0.0.5", "10.96.0.0/12", "cluster.local", None, [])
    assert warnings == []
    assert spec.dns == (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "node-a",
    )
    assert spec.ips == (IPv4Address("10.96.0.1"), IPv4Address("10.0.0.5"))
    assert "localhost" not in spec.dns and IPv4Address("127.0.0.1") not in spec.ips
    assert (spec.cn, spec.usages, spec.ca, spec.orgs) == ("kube-apiserver", (ExtUsage.SERVER,), "ca", ())


def test_apiserver_endpoint_host_ip_or_name() -> None:
    spec, _ = certlist.apiserver(
        "n", "10.0.0.5", "10.96.0.0/12", "cluster.local", "10.0.0.100", ["10.0.0.101"]
    )
    assert spec.ips == (
        IPv4Address("10.96.0.1"),
        IPv4Address("10.0.0.5"),
        IPv4Address("10.0.0.100"),
        IPv4Address("10.0.0.101"),
    )
    spec, _ = certlist.apiserver("n", "fd00::5", "fd00:10::/108", "cluster.local", "[fd00::100]", [])
    assert spec.ips == (IPv6Address("fd00:10::1"), IPv6Address("fd00::5"), IPv6Address("fd00::100"))
    spec, _ = certlist.apiserver("n", "10.0.0.5", "10.96.0.0/12", "cluster.local", "API.example.com", [])
    assert "API.example.com" in spec.dns  # the endpoint host is taken as-is, without validation


def test_apiserver_service_ip_from_first_cidr_only() -> None:
    assert certlist.apiserver_service_ip("10.96.0.0/12") == IPv4Address("10.96.0.1")
    assert certlist.apiserver_service_ip("10.100.7.9/16") == IPv4Address("10.100.0.1")
    assert certlist.apiserver_service_ip("fd00:10::/108,10.96.0.0/12") == IPv6Address("fd00:10::1")
    assert certlist.apiserver_service_ip("10.96.0.0/12,fd00:10::/108") == IPv4Address("10.96.0.1")
    # GetIndexedIP(subnet, 1) only needs index 1 inside the subnet: a /31 (/127) is enough, a /32 is not
    assert certlist.apiserver_service_ip("10.96.0.0/31") == IPv4Address("10.96.0.1")
    assert certlist.apiserver_service_ip("fd00:10::/127") == IPv6Address("fd00:10::1")
    for bad in (
        "",
        "10.96.0.0",
        "10.96.0.0/12,nonsense",
        "10.96.0.0/33",
        "10.96.0.0/12, fd00::/108",
        # Go's dtoi takes ASCII digits only; Python's int() would also take these
        "10.96.0.0/+12",
        "10.96.0.0/ 12",
        "10.96.0.0/1_2",
    ):
        with pytest.raises(
            ValueError, match=rf"^service subnet {re.escape(repr(bad))}: .* is not a valid CIDR$"
        ):
            certlist.apiserver_service_ip(bad)
    with pytest.raises(ValueError, match=r"^service subnet 10\.96\.0\.5/32 has no room for the API server"):
        certlist.apiserver_service_ip("10.96.0.5/32")


def test_apiserver_bad_advertise_address() -> None:
    with pytest.raises(ValueError, match=r"^advertise address '10\.0\.0' is not a valid IP address$"):
        certlist.apiserver("n", "10.0.0", "10.96.0.0/12", "cluster.local", None, [])


def test_ipv4_mapped_advertise_address_is_ipv4() -> None:
    """Go's ip.String() prints a v4-mapped address as IPv4, and RemoveDuplicateAltNames keys on it: the
    address given as an IPv6Address object is the same SAN as its IPv4 form, written once."""
    mapped = IPv6Address("::ffff:10.0.0.5")
    api, _ = certlist.apiserver("n", mapped, "10.96.0.0/12", "cluster.local", None, ["10.0.0.5"])
    assert api.ips == (IPv4Address("10.96.0.1"), IPv4Address("10.0.0.5"))
    etcd, _ = certlist.etcd_server("n", mapped, ["10.0.0.5"])
    assert etcd.ips == (IPv4Address("10.0.0.5"), IPv4Address("127.0.0.1"), IPv6Address("::1"))


def test_cert_sans_split_and_warnings() -> None:
    sans = [
        "Upper.example.com",
        "good.example.com",
        "*.wild.example.com",
        "*bad.example.com",
        "10.0.0.9",
        "fe80::1%eth0",
        "under_score",
        "010.000.000.011",
        "::ffff:10.0.0.12",
        "a" * 254,
    ]
    spec, warnings = certlist.apiserver("n", "10.0.0.5", "10.96.0.0/12", "cluster.local", None, sans)
    assert "good.example.com" in spec.dns and "*.wild.example.com" in spec.dns
    for dropped in ("Upper.example.com", "*bad.example.com", "fe80::1%eth0", "under_score", "a" * 254):
        assert dropped not in spec.dns
        assert any(f"'{dropped}' was not added to the 'apiserver' SAN" in w for w in warnings)
    assert len(warnings) == 5
    # ParseIPSloppy: leading zeros are decimal; IPv4-mapped IPv6 is written as IPv4
    assert spec.ips[2:] == (IPv4Address("10.0.0.9"), IPv4Address("10.0.0.11"), IPv4Address("10.0.0.12"))


def test_apiserver_dedup() -> None:
    spec, _ = certlist.apiserver(
        "kubernetes",
        "10.96.0.1",
        "10.96.0.0/12",
        "cluster.local",
        "10.96.0.1",
        ["kubernetes.default", "10.96.0.1", "10.0.0.1", "10.0.0.1"],
    )
    assert spec.ips == (IPv4Address("10.96.0.1"), IPv4Address("10.0.0.1"))
    assert spec.dns == (
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    )


def test_etcd_sans() -> None:
    server, w1 = certlist.etcd_server("zeta", "10.0.0.5")
    peer, w2 = certlist.etcd_peer("zeta", "10.0.0.5")
    assert w1 == w2 == []
    # [nodeName, localhost] run through RemoveDuplicateAltNames -> sorted
    assert server.dns == peer.dns == ("localhost", "zeta")
    assert server.ips == peer.ips == (IPv4Address("10.0.0.5"), IPv4Address("127.0.0.1"), IPv6Address("::1"))
    server, warnings = certlist.etcd_server("alpha", "127.0.0.1", ["10.0.0.5", "etcd.local", "bad name"])
    assert server.dns == ("alpha", "etcd.local", "localhost")
    assert server.ips == (IPv4Address("127.0.0.1"), IPv6Address("::1"), IPv4Address("10.0.0.5"))
    assert warnings == [
        "'bad name' was not added to the 'etcd-server' SAN, because it is not a valid IP or RFC-1123 "
        "compliant DNS entry"
    ]
    peer, warnings = certlist.etcd_peer("alpha", "fd00::5", ["bad name"])
    assert peer.ips[0] == IPv6Address("fd00::5") and "'etcd-peer' SAN" in warnings[0]
    # server and peer SANs are independent
    assert certlist.etcd_peer("alpha", "10.0.0.1")[0].dns == ("alpha", "localhost")
    with pytest.raises(ValueError, match=r"^advertise address 'not-an-ip' is not a valid IP address$"):
        certlist.etcd_server("alpha", "not-an-ip")


def test_orgs_of_the_supported_minors() -> None:
    """kubeadm 1.29+ (every supported minor): k/k #121837, #119859, #120521."""
    assert certlist.apiserver_kubelet_client().orgs == ("kubeadm:cluster-admins",)
    assert certlist.etcd_healthcheck_client().orgs == () == certlist.apiserver_etcd_client().orgs


def test_kubeconfig_client_kinds() -> None:
    assert certlist.KUBECONFIG_KINDS == ("admin", "super-admin", "kubelet", "controller-manager", "scheduler")
    kubelet = certlist.kubeconfig_client("kubelet", "worker-7")
    assert (kubelet.cn, kubelet.orgs) == ("system:node:worker-7", ("system:nodes",))
    assert certlist.kubeconfig_client("admin", "worker-7").cn == "kubernetes-admin"  # node name irrelevant
    for spec in (certlist.kubeconfig_client(k, "n") for k in certlist.KUBECONFIG_KINDS):
        assert spec.dns == () and spec.ips == () and spec.usages == (ExtUsage.CLIENT,) and spec.ca == "ca"
    with pytest.raises(
        ValueError,
        match=r"^unknown kubeconfig kind 'bootstrap-kubelet'; expected one of "
        r"admin, super-admin, kubelet, controller-manager, scheduler$",
    ):
        certlist.kubeconfig_client("bootstrap-kubelet", "n")


def test_parse_ip_sloppy() -> None:
    assert certlist.parse_ip_sloppy("10.0.0.1") == IPv4Address("10.0.0.1")
    assert certlist.parse_ip_sloppy("010.001.0.1") == IPv4Address("10.1.0.1")
    assert certlist.parse_ip_sloppy("010.000.000.255") == IPv4Address("10.0.0.255")  # 255 is a byte
    assert certlist.parse_ip_sloppy("010.000.000.256") is None
    assert certlist.parse_ip_sloppy("::ffff:1.2.3.4") == IPv4Address("1.2.3.4")
    assert certlist.parse_ip_sloppy("FD00::1") == IPv6Address("fd00::1")
    for bad in ("256.0.0.1", "fe80::1%eth0", "1.2.3", "host", "", "1.2.3.4/32"):
        assert certlist.parse_ip_sloppy(bad) is None, bad


def test_dns1123_validation() -> None:
    assert certlist.is_dns1123_subdomain("a.b-c.d")
    assert not certlist.is_dns1123_subdomain("-a.b")
    assert not certlist.is_dns1123_subdomain("a..b")
    assert not certlist.is_dns1123_subdomain("A.b")
    assert not certlist.is_dns1123_subdomain("*.b")
    assert certlist.is_wildcard_dns1123_subdomain("*.b.c")
    assert not certlist.is_wildcard_dns1123_subdomain("*")
    assert not certlist.is_wildcard_dns1123_subdomain("a.*.c")


def test_dns1123_length_limit() -> None:
    """apimachinery: `len(value) > DNS1123SubdomainMaxLength` (253) is an error, for both forms; labels
    have no 63-character limit there."""
    name = ".".join(["a" * 63] * 4)[:253]  # 253 characters
    assert len(name) == 253 and certlist.is_dns1123_subdomain(name)
    assert not certlist.is_dns1123_subdomain(name + "a")
    wildcard = "*." + name[2:]
    assert len(wildcard) == 253 and certlist.is_wildcard_dns1123_subdomain(wildcard)
    assert not certlist.is_wildcard_dns1123_subdomain(wildcard + "a")
    # through the SAN split: the 253-character names are kept, the 254-character ones dropped
    dns, _, warnings = certlist.split_sans([wildcard, wildcard + "a", name, name + "a"], "apiserver")
    assert dns == [wildcard, name] and len(warnings) == 2
