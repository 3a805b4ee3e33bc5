"""Secrets onto nodes: what placement.TABLE gives each node, as files at kubeadm's paths and modes.

Also the kubeconfigs (a node's, the operator's), a joining node's discovery kubeconfig carrying its
join credential (JOIN_KUBECONFIG_PATH, with cluster.join: certificate) and the node's own report key
(paths.REPORT_KEY, with cluster.seed.reportUrl).
"""

from __future__ import annotations

from .. import paths
from ..files import NodeFile, public, secret
from ..pki import certlist, encryption, placement
from ..pki import crypto as pki
from ..pki.kubeconfig import kubeconfig
from ..pki.secrets import OPERATOR, Bundle, report_node_key, required_specs
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


def _kubeconfig_server(plan: ClusterPlan, node: NodePlan, kind: str) -> Endpoint:
    """kubeadm: admin/super-admin use the control-plane endpoint, KCM/scheduler the local one."""
    if kind in ("controller-manager", "scheduler"):
        return node.local_endpoint
    if kind == "kubelet" and node.kubelet_info.control_plane_kubelet_local_mode:
        return node.local_endpoint
    return plan.api_endpoint()


def kubeconfig_bytes(plan: ClusterPlan, bundle: Bundle, owner: str, kind: str, server: Endpoint) -> bytes:
    return _kubeconfig(plan, bundle, owner, certlist.kubeconfig_client(kind, owner), server)


def join_kubeconfig_bytes(plan: ClusterPlan, bundle: Bundle, node: NodePlan) -> bytes:
    """The node's discovery kubeconfig: the stable endpoint, the cluster CA pinned, its join credential."""
    return _kubeconfig(plan, bundle, node.name, certlist.join_client(node.name), plan.api_endpoint())


def _kubeconfig(plan: ClusterPlan, bundle: Bundle, owner: str, spec: pki.CertSpec, server: Endpoint) -> bytes:
    held = bundle.leaf(owner, spec.name)
    config = kubeconfig(
        cluster_name=plan.name,
        server=server.url,
        ca_cert=bundle.cas["ca"].cert,
        user=spec.cn,
        client_cert=held.cert,
        client_key=held.key,
    )
    return dump(config).encode()


def operator_admin_conf(plan: ClusterPlan, bundle: Bundle) -> bytes:
    """The operator's admin.conf: kubeadm's admin identity, pointing at the stable endpoint."""
    return kubeconfig_bytes(plan, bundle, OPERATOR, "admin", plan.api_endpoint())


def node_pki_files(plan: ClusterPlan, node: NodePlan, bundle: Bundle) -> list[NodeFile]:
    """Every certificate, key and kubeconfig this node gets (placement.TABLE), at kubeadm's paths, modes."""
    held = placement.for_node(plan, node)
    files: list[NodeFile] = []
    if held.join_credential:
        files.append(secret(JOIN_KUBECONFIG_PATH, join_kubeconfig_bytes(plan, bundle, node)))
    if held.report_key:  # its own only: it speaks for this node to `bake serve`, for no other
        files.append(secret(paths.REPORT_KEY, report_node_key(bundle, plan.name, node.name) + b"\n"))
        url = plan.settings.seed.report_url
        if url is not None and nodefiles.pins_ca(url):
            assert bundle.seed_ca is not None, "reconcile makes the seed CA for an https:// URL"
            files.append(public(paths.REPORT_CA, bundle.seed_ca.cert_pem))
    cas = certlist.ca_specs()
    for name in held.ca_certs:
        files.append(public(f"{PKI_DIR}/{cas[name].base}.crt", bundle.cas[name].cert_pem))
    for name in held.ca_keys:
        files.append(secret(f"{PKI_DIR}/{cas[name].base}.key", bundle.cas[name].key_pem))
    if held.service_account_key:
        files += [
            secret(f"{PKI_DIR}/sa.key", bundle.sa_key_pem),
            secret(f"{PKI_DIR}/sa.pub", bundle.sa_pub_pem),
        ]
    if held.encryption_config:  # control planes only: the key decrypts every Secret of the cluster
        assert bundle.encryption_key is not None, "reconcile gives every bundle an encryption key"
        provider = plan.settings.secrets_encryption
        assert provider != "none"
        files.append(secret(encryption.CONFIG_PATH, encryption.config_bytes(provider, bundle.encryption_key)))
    for spec in required_specs(plan, node):
        if spec.name in held.leaves:
            issued = bundle.leaf(node.name, spec.name)
            files.append(public(f"{PKI_DIR}/{spec.base}.crt", issued.cert_pem))
            files.append(secret(f"{PKI_DIR}/{spec.base}.key", issued.key_pem))
    for kind in held.kubeconfigs:
        spec = certlist.kubeconfig_client(kind, node.name)
        if spec.name not in bundle.leaves.get(node.name, {}):
            continue
        server = _kubeconfig_server(plan, node, kind)
        files.append(
            secret(
                f"{paths.KUBERNETES_DIR}/{KUBECONFIG_FILES[kind]}",
                kubeconfig_bytes(plan, bundle, node.name, kind, server),
            )
        )
    return sorted(files, key=lambda f: f.path)
