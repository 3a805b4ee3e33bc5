"""Secrets onto nodes: what placement.TABLE gives each node, as files at kubeadm's paths and modes.

Also the kubeconfigs (a node's, the operator's), a joining node's discovery kubeconfig carrying its
join credential (JOIN_KUBECONFIG_PATH, with cluster.join: certificate) and the node's own report key
(paths.REPORT_KEY, with cluster.seed.reportUrl).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import paths
from ..files import NodeFile, Sensitivity, public, secret
from ..pki import certlist, encryption, placement
from ..pki import crypto as pki
from ..pki.kubeconfig import kubeconfig
from ..pki.secrets import OPERATOR, Bundle, Issued, report_node_key, required_specs
from ..plan import ClusterPlan, Endpoint, NodePlan
from ..serve import nodefiles
from ..yamlio import dump

PKI_DIR = paths.PKI_DIR
JOIN_KUBECONFIG_PATH = paths.JOIN_KUBECONFIG
KUBECONFIG_FILES = {
    "admin": "admin.conf",
    "super-admin": "super-admin.conf",
    "kubelet": "kubelet.conf",
    "controller-manager": "controller-manager.conf",
    "scheduler": "scheduler.conf",
}
SECRET, PUBLIC = Sensitivity.SECRET, Sensitivity.PUBLIC


def _kubeconfig_server(plan: ClusterPlan, node: NodePlan, kind: str) -> Endpoint:
    """kubeadm: admin/super-admin use the control-plane endpoint, KCM/scheduler the local one."""
    if kind in ("controller-manager", "scheduler"):
        return node.local_endpoint
    if kind == "kubelet" and node.kubelet_info.control_plane_kubelet_local_mode:
        return node.local_endpoint
    return plan.api_endpoint()


@dataclass(frozen=True)
class KubeconfigSource:
    """What a kubeconfig file is made from. A node's inputs digest (incremental.node_inputs) reads
    these instead of the rendered YAML: the code that renders it is part of that digest already."""

    cluster: str
    server: str
    ca: Issued
    user: str
    client: Issued

    def render(self) -> bytes:
        config = kubeconfig(
            cluster_name=self.cluster,
            server=self.server,
            ca_cert=self.ca.cert,
            user=self.user,
            client_cert=self.client.cert,
            client_key=self.client.key,
        )
        return dump(config).encode()

    @property
    def material(self) -> bytes:
        """Every field, the certificates and key as the bundle stores them (rendering re-encodes the
        objects parsed from exactly these bytes)."""
        c = self.client
        return repr((self.cluster, self.server, self.ca.cert_pem, self.user, c.cert_pem, c.key_pem)).encode()


def _kubeconfig_source(
    plan: ClusterPlan, bundle: Bundle, owner: str, spec: pki.CertSpec, server: Endpoint
) -> KubeconfigSource:
    return KubeconfigSource(plan.name, server.url, bundle.cas["ca"], spec.cn, bundle.leaf(owner, spec.name))


def _join_kubeconfig(plan: ClusterPlan, bundle: Bundle, node: NodePlan) -> KubeconfigSource:
    """The node's discovery kubeconfig: the stable endpoint, the cluster CA pinned, its join credential."""
    return _kubeconfig_source(plan, bundle, node.name, certlist.join_client(node.name), plan.api_endpoint())


@dataclass(frozen=True)
class PkiFile:
    """One of a node's PKI files before rendering: its bytes, or the source of a kubeconfig."""

    path: str
    content: bytes | KubeconfigSource
    sensitivity: Sensitivity

    def file(self) -> NodeFile:
        data = self.content.render() if isinstance(self.content, KubeconfigSource) else self.content
        # anything not known public is written as a secret (0600)
        return public(self.path, data) if self.sensitivity is Sensitivity.PUBLIC else secret(self.path, data)

    @property
    def material(self) -> bytes:
        """What the file is made from, for a node's inputs digest: its place and kind, then its bytes
        or its kubeconfig's source (tagged, so that neither can pass for the other)."""
        made = self.content
        body = b"K" + made.material if isinstance(made, KubeconfigSource) else b"B" + made
        return f"{self.path}\0{self.sensitivity}\0".encode() + body


def operator_admin_conf(plan: ClusterPlan, bundle: Bundle) -> bytes:
    """The operator's admin.conf: kubeadm's admin identity, pointing at the stable endpoint."""
    spec = certlist.kubeconfig_client("admin", OPERATOR)
    return _kubeconfig_source(plan, bundle, OPERATOR, spec, plan.api_endpoint()).render()


def node_pki_files(plan: ClusterPlan, node: NodePlan, bundle: Bundle) -> list[NodeFile]:
    """Every certificate, key and kubeconfig this node gets (placement.TABLE), at kubeadm's paths, modes."""
    return [f.file() for f in node_pki_sources(plan, node, bundle)]


def node_pki_sources(plan: ClusterPlan, node: NodePlan, bundle: Bundle) -> list[PkiFile]:
    """node_pki_files, kubeconfigs not rendered yet; by path."""
    held = placement.for_node(plan, node)
    files: list[PkiFile] = []
    if held.join_credential:
        files.append(PkiFile(JOIN_KUBECONFIG_PATH, _join_kubeconfig(plan, bundle, node), SECRET))
    if held.report_key:  # its own only: it speaks for this node to `bake serve`, for no other
        files.append(PkiFile(paths.REPORT_KEY, report_node_key(bundle, plan.name, node.name) + b"\n", SECRET))
        url = plan.settings.seed.report_url
        if url is not None and nodefiles.pins_ca(url):
            assert bundle.seed_ca is not None, "reconcile makes the seed CA for an https:// URL"
            files.append(PkiFile(paths.REPORT_CA, bundle.seed_ca.cert_pem, PUBLIC))
    cas = certlist.ca_specs()
    for name in held.ca_certs:
        files.append(PkiFile(f"{PKI_DIR}/{cas[name].base}.crt", bundle.cas[name].cert_pem, PUBLIC))
    for name in held.ca_keys:
        files.append(PkiFile(f"{PKI_DIR}/{cas[name].base}.key", bundle.cas[name].key_pem, SECRET))
    if held.service_account_key:
        files += [
            PkiFile(f"{PKI_DIR}/sa.key", bundle.sa_key_pem, SECRET),
            PkiFile(f"{PKI_DIR}/sa.pub", bundle.sa_pub_pem, SECRET),
        ]
    if held.encryption_config:  # control planes only: the key decrypts every Secret of the cluster
        assert bundle.encryption_key is not None, "reconcile gives every bundle an encryption key"
        provider = plan.settings.secrets_encryption
        assert provider != "none"
        config = encryption.config_bytes(provider, bundle.encryption_key)
        files.append(PkiFile(encryption.CONFIG_PATH, config, SECRET))
    for spec in required_specs(plan, node):
        if spec.name in held.leaves:
            issued = bundle.leaf(node.name, spec.name)
            files.append(PkiFile(f"{PKI_DIR}/{spec.base}.crt", issued.cert_pem, PUBLIC))
            files.append(PkiFile(f"{PKI_DIR}/{spec.base}.key", issued.key_pem, SECRET))
    for kind in held.kubeconfigs:
        spec = certlist.kubeconfig_client(kind, node.name)
        if spec.name not in bundle.leaves.get(node.name, {}):
            continue
        server = _kubeconfig_server(plan, node, kind)
        source = _kubeconfig_source(plan, bundle, node.name, spec, server)
        files.append(PkiFile(f"{paths.KUBERNETES_DIR}/{KUBECONFIG_FILES[kind]}", source, SECRET))
    return sorted(files, key=lambda f: f.path)
