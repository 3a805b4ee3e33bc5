"""The pod network add-on the init node applies at first boot: where it is downloaded from (`CniSource`)
and its configuration, built as data with the profile's pod CIDRs."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass

from ... import yamlio
from ...files import NodeFile, public
from ...model import Cni
from ...plan import ClusterPlan
from .. import airgap
from .layout import CNI_DIR

# --------------------------------------------------------------------------------------------------
# Pod network add-ons: versions and where they are downloaded from at first boot (the init node only).
# The base URLs are the upstream release locations; pass a CniSource with another base to use a mirror.

CALICO_VERSION = "v3.32.2"
CALICO_BASE_URL = "https://raw.githubusercontent.com/projectcalico/calico"
FLANNEL_VERSION = "v0.28.7"
FLANNEL_BASE_URL = "https://github.com/flannel-io/flannel/releases/download"
CILIUM_VERSION = "1.19.5"
CILIUM_CLI_VERSION = "v0.19.5"
CILIUM_CLI_BASE_URL = "https://github.com/cilium/cilium-cli/releases/download"


@dataclass(frozen=True)
class CniSource:
    """Where the init node fetches its CNI from; override the bases for a mirror or an air gap."""

    calico_base_url: str = CALICO_BASE_URL
    calico_version: str = CALICO_VERSION
    flannel_base_url: str = FLANNEL_BASE_URL
    flannel_version: str = FLANNEL_VERSION
    cilium_cli_base_url: str = CILIUM_CLI_BASE_URL
    cilium_cli_version: str = CILIUM_CLI_VERSION
    cilium_version: str = CILIUM_VERSION

    def urls(self, cni: Cni, arch: str) -> tuple[str, ...]:
        if cni is Cni.CALICO:
            base = f"{self.calico_base_url.rstrip('/')}/{self.calico_version}/manifests"
            return (f"{base}/operator-crds.yaml", f"{base}/tigera-operator.yaml")
        if cni is Cni.FLANNEL:
            return (f"{self.flannel_base_url.rstrip('/')}/{self.flannel_version}/kube-flannel.yml",)
        if cni is Cni.CILIUM:
            tarball = (
                f"{self.cilium_cli_base_url.rstrip('/')}/{self.cilium_cli_version}/cilium-linux-{arch}.tar.gz"
            )
            return (tarball, f"{tarball}.sha256sum")
        return ()


DEFAULT_CNI_SOURCE = CniSource()


def downloads(plan: ClusterPlan, arch: str, source: CniSource) -> tuple[str, ...]:
    """What the init node fetches at first boot: nothing with cluster.airgap (the images seed brings the
    manifests)."""
    return () if plan.settings.airgap else source.urls(plan.settings.cni, arch)


def manifest_names(plan: ClusterPlan, arch: str, source: CniSource) -> tuple[str, ...]:
    """The file names of the manifests the init node applies, as cni.sh lays them out in its work
    directory (downloaded, or copied from the images seed)."""
    gap = plan.settings.airgap
    names = (
        airgap.seed_names(tuple(gap.cni_manifests), manifests=True) if gap else downloads(plan, arch, source)
    )
    return tuple(posixpath.basename(n) for n in names)


# --------------------------------------------------------------------------------------------------
# CNI configuration, built as data with the profile's pod CIDRs


def _pod_cidrs(plan: ClusterPlan) -> list[str]:
    return plan.settings.pod_subnet.split(",")


def calico_documents(plan: ClusterPlan) -> list[dict[str, object]]:
    """Tigera operator Installation (the IP pools carry the pod CIDRs) and the APIServer."""
    pools = []
    for cidr in _pod_cidrs(plan):
        v6 = ":" in cidr
        pools.append(
            {
                "name": "default-ipv6-ippool" if v6 else "default-ipv4-ippool",
                "blockSize": 122 if v6 else 26,
                "cidr": cidr,
                "encapsulation": "VXLANCrossSubnet",
                "natOutgoing": "Enabled",
                "nodeSelector": "all()",
            }
        )
    return [
        {
            "apiVersion": "operator.tigera.io/v1",
            "kind": "Installation",
            "metadata": {"name": "default"},
            "spec": {"calicoNetwork": {"ipPools": pools}},
        },
        {
            "apiVersion": "operator.tigera.io/v1",
            "kind": "APIServer",
            "metadata": {"name": "default"},
            "spec": {},
        },
    ]


def flannel_net_conf(plan: ClusterPlan) -> dict[str, object]:
    v4 = [c for c in _pod_cidrs(plan) if ":" not in c]
    v6 = [c for c in _pod_cidrs(plan) if ":" in c]
    conf: dict[str, object] = {}
    if v4:
        conf["Network"] = v4[0]
    else:
        conf["EnableIPv4"] = False
    if v6:
        conf["EnableIPv6"] = True
        conf["IPv6Network"] = v6[0]
    conf["EnableNFTables"] = False
    conf["Backend"] = {"Type": "vxlan"}
    return conf


def cilium_values(plan: ClusterPlan) -> dict[str, object]:
    """ipam.mode=kubernetes: pods get addresses from each node's podCIDR, carved by kube-controller-manager
    out of networking.podSubnet, so the profile's pod CIDR is the one in use."""
    cidrs = _pod_cidrs(plan)
    return {
        "ipam": {"mode": "kubernetes"},
        "ipv4": {"enabled": any(":" not in c for c in cidrs)},
        "ipv6": {"enabled": any(":" in c for c in cidrs)},
    }


FLANNEL_CONFIG_MAP = {"namespace": "kube-flannel", "name": "kube-flannel-cfg"}


def flannel_kustomization(plan: ClusterPlan, manifests: tuple[str, ...]) -> dict[str, object]:
    """Flannel's manifests with the profile's network in its ConfigMap, applied in one `kubectl apply -k`:
    no flannel pod ever starts with upstream's default network (10.244.0.0/16), and no restart follows.
    The JSON patch removes net-conf.json before adding it: kustomize's `replace` adds a missing key, and
    `remove` fails the apply when upstream's ConfigMap no longer has it."""
    key = "/data/net-conf.json"
    net_conf = json.dumps(flannel_net_conf(plan), indent=2) + "\n"
    patch = [{"op": "remove", "path": key}, {"op": "add", "path": key, "value": net_conf}]
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(manifests),
        "patches": [
            {
                "target": {"version": "v1", "kind": "ConfigMap", **FLANNEL_CONFIG_MAP},
                "patch": json.dumps(patch, indent=2),
            }
        ],
    }


def cni_config_path(cni: Cni) -> str | None:
    """Where the init node's CNI configuration is (BAKE_CNI_CONFIG); cni.sh reads it by CNI."""
    return {
        Cni.CALICO: f"{CNI_DIR}/calico-installation.yaml",
        Cni.FLANNEL: f"{CNI_DIR}/flannel-kustomization.yaml",
        Cni.CILIUM: f"{CNI_DIR}/cilium-values.yaml",
    }.get(cni)


def cni_config_file(plan: ClusterPlan, arch: str, source: CniSource = DEFAULT_CNI_SOURCE) -> NodeFile | None:
    cni = plan.settings.cni
    path = cni_config_path(cni)
    if path is None:
        return None
    if cni is Cni.CALICO:
        return public(path, yamlio.dump_all(calico_documents(plan)))
    if cni is Cni.FLANNEL:
        return public(path, yamlio.dump(flannel_kustomization(plan, manifest_names(plan, arch, source))))
    return public(path, yamlio.dump(cilium_values(plan)))
