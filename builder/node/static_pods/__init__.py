"""Static pods bake writes itself: external etcd members and the control-plane load balancer.

For stacked control planes kubeadm writes etcd, kube-apiserver, kube-controller-manager and
kube-scheduler itself; bake never renders those.

The etcd pod is in `etcd`, the load balancer's pods and configs in `load_balancer`, kubeadm's pod frame
they share in `frame`; here, which node gets what. Keys are written sorted, as Go's sigs.k8s.io/yaml
does for kubeadm's own manifests.
"""

from __future__ import annotations

from typing import Any

from ... import paths, yamlio
from ...files import NodeFile, public
from ...plan import ClusterPlan, NodePlan, StaticPod
from .etcd import etcd_pod
from .load_balancer import (
    CHECK_SCRIPT_PATH,
    HAPROXY_CFG_PATH,
    KEEPALIVED_CONF_PATH,
    check_apiserver_sh,
    haproxy_cfg,
    haproxy_pod,
    keepalived_conf,
    keepalived_pod,
    kube_vip_pod,
)

MANIFEST_MODE = 0o600  # kubeadm writes manifests 0600 into a 0700 directory


def _manifest(pod: StaticPod, content: dict[str, Any]) -> NodeFile:
    return public(paths.manifest(pod.value), yamlio.dump(content), mode=MANIFEST_MODE)


def node_static_pod_files(plan: ClusterPlan, node: NodePlan) -> list[NodeFile]:
    """The manifests of the static pods the plan gives the node (NodePlan.static_pods), then their configs."""
    pods = {
        StaticPod.ETCD: etcd_pod,
        StaticPod.KUBE_VIP: kube_vip_pod,
        StaticPod.HAPROXY: haproxy_pod,
        StaticPod.KEEPALIVED: keepalived_pod,
    }
    files = [_manifest(pod, pods[pod](plan, node)) for pod in node.static_pods]
    if StaticPod.HAPROXY in node.static_pods:
        files.append(public(HAPROXY_CFG_PATH, haproxy_cfg(plan)))
    if StaticPod.KEEPALIVED in node.static_pods:
        files += [
            public(KEEPALIVED_CONF_PATH, keepalived_conf(plan, node), mode=0o600),
            public(CHECK_SCRIPT_PATH, check_apiserver_sh(plan), mode=0o755),
        ]
    return files
