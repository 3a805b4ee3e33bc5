"""Which secret goes to which node: kubeadm's on-disk layout, cut down to what each role needs.

The per-role table is in the README ("PKI and secrets"). In short: workers get nothing (kubeadm's
preflight rejects pki/ca.crt), external etcd members get only their etcd leaves and the etcd CA
certificate, control planes get the CA keys kubeadm's join needs (`SharedCertificateExists`) except
the etcd CA key with external etcd; super-admin.conf and kubelet.conf exist only on the init node;
the EncryptionConfiguration (the key of every Secret in etcd) goes to control planes only.
With cluster.join: certificate, every joining node also gets its own join credential (JOIN_KUBECONFIG_PATH).
"""

from __future__ import annotations

from . import certlist, encryption, pki
from .files import NodeFile, public, secret
from .model import Role
from .plan import ClusterPlan, Endpoint, NodePlan, Topology
from .secrets import OPERATOR, Bundle, joins_with_certificate, required_specs
from .yamlio import dump

PKI_DIR = "/etc/kubernetes/pki"
# The discovery kubeconfig of `kubeadm join` (discovery.file) with the node's join credential. Outside
# /etc/kubernetes: kubeadm writes its own bootstrap-kubelet.conf from it; `kubeadm reset` never touches it.
JOIN_KUBECONFIG_PATH = "/etc/bake/join.conf"
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
    config = pki.kubeconfig(
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
    """Every certificate, key and kubeconfig this node gets, at kubeadm's paths and modes."""
    files: list[NodeFile] = []
    if joins_with_certificate(plan, node):
        files.append(secret(JOIN_KUBECONFIG_PATH, join_kubeconfig_bytes(plan, bundle, node)))
    if node.role is Role.WORKER:
        return files
    cas = bundle.cas
    if node.role is Role.CONTROL_PLANE:
        files += [
            public(f"{PKI_DIR}/ca.crt", cas["ca"].cert_pem),
            secret(f"{PKI_DIR}/ca.key", cas["ca"].key_pem),
            public(f"{PKI_DIR}/front-proxy-ca.crt", cas["front-proxy-ca"].cert_pem),
            secret(f"{PKI_DIR}/front-proxy-ca.key", cas["front-proxy-ca"].key_pem),
            secret(f"{PKI_DIR}/sa.key", bundle.sa_key_pem),
            secret(f"{PKI_DIR}/sa.pub", bundle.sa_pub_pem),
            public(f"{PKI_DIR}/etcd/ca.crt", cas["etcd-ca"].cert_pem),
        ]
        if plan.topology is Topology.STACKED:
            files.append(secret(f"{PKI_DIR}/etcd/ca.key", cas["etcd-ca"].key_pem))
        provider = plan.settings.secrets_encryption
        if provider != "none":  # control planes only: the key decrypts every Secret of the cluster
            assert bundle.encryption_key is not None, "reconcile gives every bundle an encryption key"
            files.append(
                secret(encryption.CONFIG_PATH, encryption.config_bytes(provider, bundle.encryption_key))
            )
    else:
        files.append(public(f"{PKI_DIR}/etcd/ca.crt", cas["etcd-ca"].cert_pem))
    for spec in required_specs(plan, node):
        if spec.base.startswith("kubeconfig/"):
            continue
        held = bundle.leaf(node.name, spec.name)
        files.append(public(f"{PKI_DIR}/{spec.base}.crt", held.cert_pem))
        files.append(secret(f"{PKI_DIR}/{spec.base}.key", held.key_pem))
    if node.role is Role.CONTROL_PLANE:
        for kind in KUBECONFIG_FILES:
            spec = certlist.kubeconfig_client(kind, node.name)
            if spec.name not in bundle.leaves.get(node.name, {}):
                continue
            server = _kubeconfig_server(plan, node, kind)
            files.append(
                secret(
                    f"/etc/kubernetes/{KUBECONFIG_FILES[kind]}",
                    kubeconfig_bytes(plan, bundle, node.name, kind, server),
                )
            )
    return sorted(files, key=lambda f: f.path)
