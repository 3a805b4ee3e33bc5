"""Which leaf certificates each owner needs (kubeadm's layout per role, placement.TABLE): what a bake
issues, and how a bundle's leaves are named on disk."""

from __future__ import annotations

from collections.abc import Callable

from ...plan import ClusterPlan, NodePlan
from .. import certlist, placement
from .. import crypto as pki
from .bundle import OPERATOR


def required_specs(plan: ClusterPlan, node: NodePlan) -> list[pki.CertSpec]:
    """The leaf certificates kubeadm would create on this node (placement.TABLE says which), computed
    as kubeadm computes them."""
    s = plan.settings
    held = placement.for_node(plan, node)
    endpoint_host = plan.endpoint.host if plan.endpoint else None
    sans = [*s.api_server.cert_sans, *([str(s.load_balancer.vip)] if s.load_balancer.vip is not None else [])]
    make: dict[str, Callable[[], pki.CertSpec]] = {
        "apiserver": lambda: certlist.apiserver(
            node.name, node.ip, s.service_subnet, s.dns_domain, endpoint_host, sans
        )[0],
        "apiserver-kubelet-client": certlist.apiserver_kubelet_client,
        "front-proxy-client": certlist.front_proxy_client,
        "apiserver-etcd-client": certlist.apiserver_etcd_client,
        "etcd-server": lambda: certlist.etcd_server(node.name, node.ip, s.etcd.server_cert_sans)[0],
        "etcd-peer": lambda: certlist.etcd_peer(node.name, node.ip, s.etcd.peer_cert_sans)[0],
        "etcd-healthcheck-client": certlist.etcd_healthcheck_client,
    }
    specs = [make[name]() for name in held.leaves if name not in placement.ETCD_LEAVES]
    specs += [certlist.kubeconfig_client(kind, node.name) for kind in held.kubeconfigs]
    if held.join_credential:
        specs.append(certlist.join_client(node.name))
    specs += [make[name]() for name in held.leaves if name in placement.ETCD_LEAVES]
    return specs


def operator_specs() -> list[pki.CertSpec]:
    """The admin.conf written to outputs/<cluster>/ for the operator (same identity as kubeadm's admin)."""
    return [certlist.kubeconfig_client("admin", OPERATOR)]


def spec_index(plan: ClusterPlan) -> dict[str, dict[str, pki.CertSpec]]:
    """Every owner's specs by name: how a bundle's leaves are named on disk and judged for reuse."""
    index = {n.name: {s.name: s for s in required_specs(plan, n)} for n in plan.nodes}
    index[OPERATOR] = {s.name: s for s in operator_specs()}
    return index
