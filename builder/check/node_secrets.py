"""Which secrets a node may hold (placement.TABLE, the README's secrets table): the bundle's keys by
role, the bootstrap token and join credential, each node's own report key."""

from __future__ import annotations

import base64
import binascii
import re

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from .. import paths, yamlio
from ..model import Role
from ..node.distribute import JOIN_KUBECONFIG_PATH
from ..node.kubeadm_config import INIT_CONFIG_PATH, JOIN_CONFIG_PATH
from ..pki import certlist, placement, secrets
from ..pki import crypto as pki
from ..plan import Topology
from .findings import Report
from .userdata import PRIVATE_KEY_MARKER

CA_CERT_PATH = f"{paths.PKI_DIR}/ca.crt"


ROLE_NAMES = {"worker": "a worker", "etcd": "an etcd member", "control-plane": "a control plane"}


_HEX_KEY = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def node_report_keys(bundle: secrets.Bundle, cluster: str, names: list[str]) -> dict[bytes, str]:
    """Every node's report key -> the node (cluster.seed.reportUrl), to find one where it does not belong."""
    if bundle.report_key is None:
        return {}
    return {secrets.report_node_key(bundle, cluster, n): n for n in names}


def check_report_keys(
    name: str, files: dict[str, tuple[bytes, str, str]], keys: dict[bytes, str], report: Report
) -> None:
    """A node's report key is its own, and no other node's key is anywhere in its files: the key is
    what lets a node speak for itself to `bake serve`."""
    held = files.get(paths.REPORT_KEY)
    if held is not None and keys.get(held[0].strip()) != name:
        owner = keys.get(held[0].strip())
        whose = f"{owner}'s" if owner else "no node's"
        where = f"nodes/{name}:{paths.REPORT_KEY}"
        report.error("report-key", where, f"is not this node's report key but {whose}")
    for path, (content, _, _) in sorted(files.items()):
        if path == paths.REPORT_KEY:
            continue  # judged above
        for found in _HEX_KEY.findall(content):
            other = keys.get(found)
            if other is not None and other != name:
                report.error("report-key", f"nodes/{name}", f"holds the report key of {other} in {path}")


def check_join_secrets(
    name: str,
    role: str,
    join: str,
    files: dict[str, tuple[bytes, str, str]],
    bundle: secrets.Bundle | None,
    report: Report,
) -> None:
    """Who may hold the bootstrap token, and each joining node's own credential (README, secrets table).

    The first control plane always lists the token (kubeadm init creates one whatever the mode; with
    certificates it is inert, 1s TTL); other nodes hold it only when they join with it (cluster.join: token).
    """
    where = f"nodes/{name}"
    init = INIT_CONFIG_PATH in files
    joins = JOIN_CONFIG_PATH in files
    if bundle is not None:
        secret_part = bundle.token.split(".", 1)[-1].encode()
        holds = [path for path, (content, _, _) in files.items() if secret_part in content]
        if holds and not (init or (join == "token" and joins)):
            why = (
                "an etcd member"
                if role == "etcd"
                else f"it joins with its own credential (cluster.join: {join})"
            )
            report.error(
                "join-token-holder", where, f"holds the bootstrap token in {', '.join(holds)}, but {why}"
            )
    if join != "certificate" or not joins:
        return
    if JOIN_KUBECONFIG_PATH not in files:
        report.error("join-credential", where, f"joins with a certificate but has no {JOIN_KUBECONFIG_PATH}")
        return
    problem = _join_credential_problem(name, files[JOIN_KUBECONFIG_PATH][0], bundle)
    if problem:
        report.error("join-credential", f"{where}:{JOIN_KUBECONFIG_PATH}", problem)


def _join_credential_problem(name: str, content: bytes, bundle: secrets.Bundle | None) -> str:
    try:
        doc = yamlio.load_own(content)
        user = doc["users"][0]["user"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
        ca_pem = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError, binascii.Error) as exc:
        return f"not a kubeconfig with a client certificate: {exc}"
    spec = certlist.join_client(name)
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if cn != [spec.cn] or orgs != list(spec.orgs):
        return f"its certificate is for CN={','.join(cn)} O={','.join(orgs)}, not {spec.cn} in {spec.orgs[0]}"
    if bundle is not None:
        ca = bundle.cas["ca"]
        if ca_pem.strip() != ca.cert_pem.strip():
            return "it does not pin the cluster CA of the bundle"
        if pki.verify_reuse(spec, cert, pki.load_key(base64.b64decode(user["client-key-data"])), ca.cert):
            return "its certificate is not signed by the cluster CA, has expired, or does not match its key"
    return ""


def expected_placement(role: str, topology: str, init: bool) -> placement.Placement:
    """What placement.TABLE lets a node of the manifest hold. A role no profile has holds nothing; a
    topology no profile has is judged as external etcd, the strictest one that has control planes."""
    try:
        known_role = Role(role)
    except ValueError:
        return placement.NOTHING
    try:
        known_topology = Topology(topology)
    except ValueError:
        known_topology = Topology.EXTERNAL_ETCD
    return placement.lookup(placement.holder(known_role, init), known_topology)


def check_role_secrets(
    name: str,
    role: str,
    topology: str,
    files: dict[str, tuple[bytes, str, str]],
    bundle: secrets.Bundle | None,
    report: Report,
) -> None:
    """Every key of the bundle a node holds must be in its row of placement.TABLE."""
    where = f"nodes/{name}"
    blobs = [content for content, _, _ in files.values()]
    allowed = expected_placement(role, topology, INIT_CONFIG_PATH in files)
    who = ROLE_NAMES.get(role, role)
    if not allowed.holds_private_key and any(PRIVATE_KEY_MARKER in b for b in blobs):
        report.error("worker-private-key", where, f"{who} holds a private key")
    if role == "worker" and "ca" not in allowed.ca_certs and CA_CERT_PATH in files:
        report.error(
            "worker-ca-crt", where, f"a worker has {CA_CERT_PATH} (kubeadm join preflight rejects it)"
        )
    if bundle is None:
        return
    if "ca" not in allowed.ca_keys and any(bundle.cas["ca"].key_pem in b for b in blobs):
        report.error("ca-key-role", where, f"{who} holds the cluster CA key")
    if "etcd-ca" not in allowed.ca_keys and any(bundle.cas["etcd-ca"].key_pem in b for b in blobs):
        report.error("etcd-ca-key-role", where, f"{who} of a {topology} cluster holds the etcd CA key")
    key = bundle.encryption_key
    if key is not None and not allowed.encryption_config and any(base64.b64encode(key) in b for b in blobs):
        report.error("encryption-key-role", where, f"{who} holds the key of the Secrets in etcd")
    if not any(e.where == where and e.level == "error" for e in report.findings):
        report.ok(where, f"secrets fit the {role} role")
