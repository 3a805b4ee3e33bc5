"""The seed server's TLS: a CA of its own in the bundle, and a server certificate for the URLs' hosts.

Why a dedicated CA and not one of the cluster's: every certificate the cluster CA (or the etcd or
front-proxy CA) signs is an identity the cluster trusts (the apiserver maps a client certificate's CN
and O to a user, etcd accepts any client its CA signed). The seed server runs on a provisioning host,
often a laptop, for a few hours; its key must not be able to become anything the cluster believes in,
and its certificate must be re-issuable (another address) without touching the cluster's PKI. So the
bundle holds `pki/seed-ca` (only ever signs the seed server) and `pki/seed-server`; each node pins the
seed CA for its reports (curl --cacert, never the system store). `--rotate-ca` makes a new one too.

The certificate names the hosts of `cluster.seed.reportUrl` and `cluster.seed.httpBaseUrl` that are
https:// (IPs as IP SANs, names as DNS SANs); nothing is made for plain http URLs.
`server_context` hands that certificate and key to `bake serve --tls`.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..model import Seed
from ..pki.crypto import CertSpec, ExtUsage, IPAddress

if TYPE_CHECKING:  # the server's own: a bake reads this module for the certificates' specs only
    import ssl

CA_NAME = "seed-ca"
SERVER_NAME = "seed-server"
CA_CN = "bake-seed-ca"
CA_BASE = "seed-ca"
SERVER_BASE = "seed-server"
"""Files in the bundle: pki/seed-ca.{crt,key}, pki/seed-server.{crt,key}."""
NODE_CA_PATH = "/etc/bake/report-ca.crt"
"""The seed CA on a node, pinned by its reports."""


def https_hosts(seed: Seed) -> tuple[str, ...]:
    """The hosts of the profile's https:// seed URLs, in order, once each."""
    hosts: list[str] = []
    for url in (seed.report_url, seed.http_base_url):
        if url is None:
            continue
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https" and host and host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def wanted(seed: Seed) -> bool:
    return bool(https_hosts(seed))


def ca_spec() -> CertSpec:
    return CertSpec(name=CA_NAME, base=CA_BASE, cn=CA_CN)


def server_spec(seed: Seed) -> CertSpec:
    """The server certificate for the https hosts (DNS names sorted, IPs in order, as pki writes SANs)."""
    hosts = https_hosts(seed)
    dns: list[str] = []
    ips: list[IPAddress] = []
    for host in hosts:
        try:
            ips.append(ipaddress.ip_address(host))
        except ValueError:
            dns.append(host)
    return CertSpec(
        name=SERVER_NAME,
        base=SERVER_BASE,
        cn=hosts[0] if hosts else "bake-seed-server",
        usages=(ExtUsage.SERVER,),
        dns=tuple(sorted(set(dns))),
        ips=tuple(ips),
        ca=CA_NAME,
    )


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context from the bundle's PEM bytes (written for an instant to a private directory:
    the ssl module loads files only)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="bake-serve-") as tmp:
        cert, key = Path(tmp) / "server.crt", Path(tmp) / "server.key"
        for path, data in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        ctx.load_cert_chain(cert, key)
    return ctx
