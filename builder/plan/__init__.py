"""The plan: a validated profile resolved into a concrete topology every later stage reads.

Everything derived (which node inits, join order, endpoint, first service IP, per-node OS and arch)
is decided here once, so renderers never re-derive it and never disagree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from .. import paths
from ..model import Arch, Arg, Cluster, LoadBalancerKind, OsName, Profile, Role, User, osfamily, versions
from ..model.osfamily import PackageFamily
from ..model.syntax import IPAddress, split_host_port

API_PORT = 6443


class Topology(StrEnum):
    """How etcd relates to the control plane; decides which certificates exist and where."""

    STACKED = "stacked"
    EXTERNAL_ETCD = "external-etcd"
    ETCD_ONLY = "etcd-only"

    @property
    def local_etcd(self) -> bool:
        return self is Topology.STACKED


@dataclass(frozen=True)
class OsInfo:
    """What the bootstrap script needs to know about a node's distribution."""

    name: OsName

    @property
    def family(self) -> PackageFamily:
        return osfamily.for_os(self.name).package_family


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def hostport(self) -> str:
        """`host:port` with IPv6 bracketed, as kubeadm's controlPlaneEndpoint and URLs want."""
        return host_port(self.host, self.port)

    @property
    def url(self) -> str:
        return f"https://{self.hostport}"


def bracket(host: IPAddress | str) -> str:
    """An IPv6 address in brackets, as URLs and `host:port` want it; anything else as it is."""
    text = str(host)
    return f"[{text}]" if ":" in text else text


def host_port(host: IPAddress | str, port: int) -> str:
    return f"{bracket(host)}:{port}"


class StaticPod(StrEnum):
    """Static pods bake writes itself (kubeadm writes the control plane's own)."""

    ETCD = "etcd"
    KUBE_VIP = "kube-vip"
    HAPROXY = "haproxy"
    KEEPALIVED = "keepalived"


@dataclass(frozen=True)
class NodePlan:
    name: str
    role: Role
    ip: IPAddress
    prefix_length: int
    gateway: IPAddress | None
    dns: tuple[IPAddress, ...]
    mac: str | None
    interface: str
    arch: Arch
    os: OsInfo
    kubelet_version: str
    kubelet_info: versions.MinorInfo
    users: tuple[User, ...]
    labels: tuple[tuple[str, str], ...]
    kubelet_extra_args: tuple[Arg, ...]
    index: int
    """Position among nodes of the same role, in profile order; control plane 0 runs `kubeadm init`."""
    generation: int
    """nodes[].generation: bumped to re-provision the machine (a new cloud-init instance-id)."""
    static_pods: tuple[StaticPod, ...] = ()
    """The static pods bake writes for this node, in manifest order."""

    @property
    def is_control_plane(self) -> bool:
        return self.role is Role.CONTROL_PLANE

    @property
    def is_init(self) -> bool:
        return self.role is Role.CONTROL_PLANE and self.index == 0

    @property
    def local_endpoint(self) -> Endpoint:
        return Endpoint(str(self.ip), API_PORT)

    def url(self, port: int, scheme: str = "https") -> str:
        return f"{scheme}://{host_port(self.ip, port)}"

    @property
    def kube_vip_kubeconfig(self) -> str | None:
        """The kubeconfig kube-vip reads: super-admin.conf on the init node (kube-vip issue #684: from 1.29
        admin.conf has no rights until kubeadm init has bound it; still so in 1.37, whose init also builds
        in-memory kubeconfigs pointing at localAPIEndpoint, k/k PR #138449), admin.conf on the others."""
        if StaticPod.KUBE_VIP not in self.static_pods:
            return None
        return paths.SUPER_ADMIN_CONF if self.is_init else paths.ADMIN_CONF


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    settings: Cluster
    version: str
    info: versions.MinorInfo
    topology: Topology
    endpoint: Endpoint | None
    nodes: tuple[NodePlan, ...]
    warnings: tuple[str, ...] = field(default=())

    @cached_property
    def control_planes(self) -> tuple[NodePlan, ...]:
        return tuple(n for n in self.nodes if n.role is Role.CONTROL_PLANE)

    @cached_property
    def workers(self) -> tuple[NodePlan, ...]:
        return tuple(n for n in self.nodes if n.role is Role.WORKER)

    @cached_property
    def etcd_members(self) -> tuple[NodePlan, ...]:
        """Nodes running etcd: the external members, or the control planes when stacked."""
        if self.topology is Topology.STACKED:
            return self.control_planes
        return tuple(n for n in self.nodes if n.role is Role.ETCD)

    @property
    def init_node(self) -> NodePlan | None:
        return self.control_planes[0] if self.control_planes else None

    @cached_property
    def service_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(c) for c in self.settings.service_subnet.split(","))

    @property
    def cluster_dns_ip(self) -> IPAddress:
        """kubeadm: the 10th address of the first service CIDR (kube-dns)."""
        return self.service_networks[0].network_address + 10

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.nodes)}

    def position(self, name: str) -> int:
        """Index in the profile's node list, for error paths like nodes[3].labels."""
        return self._positions[name]

    def node(self, name: str) -> NodePlan:
        return self.nodes[self._positions[name]]

    def api_endpoint(self) -> Endpoint:
        """What clients (kubeconfigs, joins) use: the stable endpoint, else the init node."""
        if self.endpoint is not None:
            return self.endpoint
        assert self.init_node is not None
        return self.init_node.local_endpoint

    @property
    def cri_socket(self) -> str:
        return paths.CRI_SOCKETS[self.settings.container_runtime]

    @property
    def ipv6(self) -> bool:
        return self.nodes[0].ip.version == 6

    @property
    def etcd_initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.url(2380)}" for m in self.etcd_members)

    @property
    def etcd_client_urls(self) -> tuple[str, ...]:
        return tuple(m.url(2379) for m in self.etcd_members)


def _endpoint(c: Cluster) -> Endpoint | None:
    lb = c.load_balancer
    if c.control_plane_endpoint is not None:
        host, port = split_host_port(c.control_plane_endpoint, API_PORT)
        return Endpoint(host, port)
    if lb.vip is not None and lb.kind is LoadBalancerKind.KUBE_VIP:
        return Endpoint(str(lb.vip), API_PORT)
    if lb.vip is not None and lb.kind is LoadBalancerKind.HAPROXY_KEEPALIVED:
        return Endpoint(str(lb.vip), lb.port)
    return None


def _static_pods(role: Role, topology: Topology, lb: LoadBalancerKind) -> tuple[StaticPod, ...]:
    """External etcd members run the etcd pod; control planes the load balancer of cluster.loadBalancer."""
    if role is Role.ETCD:
        return () if topology is Topology.STACKED else (StaticPod.ETCD,)
    if role is not Role.CONTROL_PLANE:
        return ()
    if lb is LoadBalancerKind.KUBE_VIP:
        return (StaticPod.KUBE_VIP,)
    if lb is LoadBalancerKind.HAPROXY_KEEPALIVED:
        return (StaticPod.HAPROXY, StaticPod.KEEPALIVED)
    return ()


def build_plan(profile: Profile) -> ClusterPlan:
    """Resolve a validated profile; pure, deterministic, and cheap enough for 1,000 nodes."""
    c, d = profile.cluster, profile.defaults
    version = versions.full_version(c.kubernetes_version)
    info = versions.lookup(version)
    roles = {n.role for n in profile.nodes}
    if Role.ETCD in roles:
        topology = Topology.EXTERNAL_ETCD if Role.CONTROL_PLANE in roles else Topology.ETCD_ONLY
    else:
        topology = Topology.STACKED
    counters: dict[Role, int] = {}
    nodes = []
    for n in profile.nodes:
        index = counters.get(n.role, 0)
        counters[n.role] = index + 1
        kubelet_version = versions.full_version(n.kubernetes_version) if n.kubernetes_version else version
        prefix = n.prefix_length or d.prefix_length or (24 if n.ip.version == 4 else 64)
        nodes.append(
            NodePlan(
                name=n.name,
                role=n.role,
                ip=n.ip,
                prefix_length=prefix,
                gateway=n.gateway if n.gateway is not None else d.gateway,
                dns=tuple(n.dns if n.dns is not None else d.dns),
                mac=n.mac,
                interface=n.interface or d.interface,
                arch=n.arch or d.arch,
                os=OsInfo(n.os or d.os),
                kubelet_version=kubelet_version,
                kubelet_info=versions.lookup(kubelet_version),
                users=tuple(d.users),
                labels=tuple(sorted(n.labels.items())),
                kubelet_extra_args=tuple(n.kubelet_extra_args),
                index=index,
                generation=n.generation,
                static_pods=_static_pods(n.role, topology, c.load_balancer.kind),
            )
        )
    warnings = []
    etcd_count = sum(1 for n in nodes if n.role is (Role.CONTROL_PLANE if topology.local_etcd else Role.ETCD))
    if etcd_count and etcd_count % 2 == 0:
        warnings.append(
            f"{etcd_count} etcd members: an even count tolerates no more failures than {etcd_count - 1}"
        )
    return ClusterPlan(
        name=c.name,
        settings=c,
        version=version,
        info=info,
        topology=topology,
        endpoint=_endpoint(c),
        nodes=tuple(nodes),
        warnings=tuple(warnings),
    )
