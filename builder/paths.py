"""Where things live on a node: kubeadm's paths and bake's own, named once for every renderer.

kubeadm's are its constants (cmd/kubeadm/app/constants/constants.go): the certificates directory, the
static pod manifests, the kubeconfigs. bake's own sit under /etc/bake, outside what `kubeadm reset`
deletes. A pure leaf module: it imports nothing of the package, so every module can read it.
"""

from __future__ import annotations

from collections.abc import Mapping

KUBERNETES_DIR = "/etc/kubernetes"
PKI_DIR = f"{KUBERNETES_DIR}/pki"
ETCD_PKI_DIR = f"{PKI_DIR}/etcd"
MANIFESTS_DIR = f"{KUBERNETES_DIR}/manifests"
ADMIN_CONF = f"{KUBERNETES_DIR}/admin.conf"
SUPER_ADMIN_CONF = f"{KUBERNETES_DIR}/super-admin.conf"
ENCRYPTION_DIR = f"{KUBERNETES_DIR}/encryption"
KUBELET_DIR = "/var/lib/kubelet"
KUBEADM_RESET_TREES = (f"{KUBERNETES_DIR}/", f"{KUBELET_DIR}/")
"""What `kubeadm reset` empties (cmd/kubeadm/app/cmd/phases/reset/cleanupnode.go)."""

BAKE_DIR = "/etc/bake"
JOIN_KUBECONFIG = f"{BAKE_DIR}/join.conf"
"""The discovery kubeconfig of `kubeadm join` (discovery.file) with the node's join credential. Outside
/etc/kubernetes: kubeadm writes its own bootstrap-kubelet.conf from it; `kubeadm reset` never touches it."""
BOOTSTRAP_ENV = f"{BAKE_DIR}/bootstrap.env"
KEY_PACK = f"{BAKE_DIR}/keys.json"
"""The node's RSA keys and the kubeconfigs holding them, packed (builder.node.compact_keys), 0600; the
prep phase unpacks it."""
REPORT_KEY = f"{BAKE_DIR}/report.key"
"""The node's own key for its first-boot reports to `bake serve` (cluster.seed.reportUrl), 0600."""
REPORT_ENV = f"{BAKE_DIR}/report.env"
REPORT_CA = f"{BAKE_DIR}/report-ca.crt"
"""The seed CA the reports pin (an https:// reportUrl)."""
CNI_DIR = f"{BAKE_DIR}/cni"

# keyed by profile.Runtime's values (a StrEnum, so its members are these keys)
CRI_SOCKETS: Mapping[str, str] = {
    "containerd": "unix:///var/run/containerd/containerd.sock",
    "crio": "unix:///var/run/crio/crio.sock",
}


def manifest(pod: str) -> str:
    """A static pod's manifest file, where the kubelet (staticPodPath) reads it."""
    return f"{MANIFESTS_DIR}/{pod}.yaml"
