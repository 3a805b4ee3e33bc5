"""OS preparation for one node, as files plus the data the bootstrap script acts on (pure).

Everything here follows the NODE (its OS family, arch, kubelet version), never the machine that bakes;
what differs between operating systems (repositories, package names, swap, SELinux) is asked of the
node's `builder.model.osfamily` class, chosen once in `host_prep`. Runtime configs are TOML written by tomli-w
from data. Files are returned ready for write_files; actions that must run on the node (modprobe, package
installs, firewall rules) are returned as data that `bootstrap` passes to the script through its
shell-quoted env file, so no profile string is ever spliced into shell code.

Sources: spec 7.1 (pkgs.k8s.io repositories), 7.2 (modules, sysctls, swap), 7.3 (containerd), 7.4
(ports), 6.4 (kubelet as etcd service manager); setup guide parts 1 and 8 (SELinux, ebtables/ethtool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tomli_w

from .. import paths, yamlio
from ..files import NodeFile, public
from ..model import Cni, LoadBalancerKind, PackageMode, Role, Runtime, RuntimeSource
from ..model.osfamily import (
    K8S_PACKAGES,
    AptKey,
    OsFamily,
    PackageFamily,
    Repositories,
    RepositoryFiles,
    for_os,
)
from ..plan import ClusterPlan, NodePlan, Topology, images
from . import mirrors

MODULES_LOAD_PATH = "/etc/modules-load.d/k8s.conf"
SYSCTL_PATH = "/etc/sysctl.d/k8s.conf"
CONTAINERD_CONFIG_PATH = "/etc/containerd/config.toml"
CONTAINERD_STAGED = f"{paths.BAKE_DIR}/containerd/config-v{{}}.toml"
"""Both schemas are staged; the bootstrap installs the one the node's containerd reads (1.x: 2, 2.x: 3)."""
# CRI-O reads crio.conf.d in lexical order, later files winning: sort after the package's 10-crio.conf.
CRIO_DROPIN_PATH = "/etc/crio/crio.conf.d/99-bake.conf"
CRICTL_PATH = "/etc/crictl.yaml"
ETCD_DROPIN_PATH = "/etc/systemd/system/kubelet.service.d/20-etcd-service-manager.conf"
ETCD_KUBELET_CONFIG_PATH = "/etc/systemd/system/kubelet.service.d/kubelet.conf"


@dataclass(frozen=True)
class Firewall:
    """Inbound openings for the node's role (spec 7.4), as firewalld/ufw will need them."""

    tcp: tuple[str, ...]
    udp: tuple[str, ...]
    protocols: tuple[str, ...]


@dataclass(frozen=True)
class HostPrep:
    """What a node needs before kubeadm: its files and the actions the script takes."""

    files: tuple[NodeFile, ...]
    package_family: PackageFamily
    runtime_service: str
    cri_socket: str
    containerd_config_version: int | None
    base_packages: tuple[str, ...]
    runtime_packages: tuple[str, ...]
    kube_packages: tuple[str, ...]
    """Pinned specs: apt `kubelet=1.NN.P-*`, dnf `kubelet-1.NN.P`."""
    hold_packages: tuple[str, ...]
    kube_repo_ids: tuple[str, ...]
    """The Kubernetes repositories (one per minor the node needs); dnf lifts their excludes to install."""
    apt_keys: tuple[AptKey, ...]
    apt_staged_sources: tuple[str, ...]
    selinux_permissive: bool
    firewall: Firewall


# --------------------------------------------------------------------------------------------------
# Small pure helpers


def minor_of(version: str) -> str:
    """Minor of a version, "1.37.1" -> "1.37": pkgs.k8s.io has one repository per minor."""
    major, minor = version.removeprefix("v").split(".")[:2]
    return f"{major}.{minor}"


def pause_image(plan: ClusterPlan, node: NodePlan) -> str:
    """The sandbox image kubeadm expects: every node runs the cluster's kubeadm (kube_package_specs), and
    from 1.35 kubeadm passes no --pod-infra-container-image, so the runtime's pinned image is the one."""
    del node  # the same on every node, whatever its kubelet version
    return images.pause_image(plan)


# --------------------------------------------------------------------------------------------------
# Files


def modules_file() -> NodeFile:
    return public(
        MODULES_LOAD_PATH,
        "# bake: kernel modules for container networking (spec 7.2)\noverlay\nbr_netfilter\n",
    )


def sysctl_file(node: NodePlan) -> NodeFile:
    lines = [
        "# bake: kubeadm preflight needs forwarding; bridged traffic must traverse iptables (spec 7.2)",
        "net.bridge.bridge-nf-call-iptables = 1",
        "net.bridge.bridge-nf-call-ip6tables = 1",
        "net.ipv4.ip_forward = 1",
    ]
    if node.ip.version == 6:
        # kubeadm preflight checks .../ipv6/conf/default/forwarding with an IPv6 advertise address.
        lines += ["net.ipv6.conf.all.forwarding = 1", "net.ipv6.conf.default.forwarding = 1"]
    return public(SYSCTL_PATH, "\n".join(lines) + "\n")


def containerd_configs(plan: ClusterPlan, node: NodePlan) -> list[NodeFile]:
    """config.toml in both schemas: which containerd a node runs is only known on the node (distro
    packages ship 1.6/1.7, Docker's containerd.io ships 2.x), and a wrong schema breaks the runtime."""
    return [containerd_config(plan, node, version) for version in (2, 3)]


def containerd_config(plan: ClusterPlan, node: NodePlan, version: int) -> NodeFile:
    runc_options = {"SystemdCgroup": True}
    runc = {"runtime_type": "io.containerd.runc.v2", "options": runc_options}
    data: dict[str, Any]
    if version >= 3:
        data = {
            "version": 3,
            "disabled_plugins": [],
            "plugins": {
                "io.containerd.cri.v1.images": {"pinned_images": {"sandbox": pause_image(plan, node)}},
                "io.containerd.cri.v1.runtime": {"containerd": {"runtimes": {"runc": runc}}},
            },
        }
    else:
        data = {
            "version": 2,
            "disabled_plugins": [],
            "plugins": {
                "io.containerd.grpc.v1.cri": {
                    "sandbox_image": pause_image(plan, node),
                    "containerd": {"runtimes": {"runc": runc}},
                }
            },
        }
    if plan.settings.registry_mirrors:  # hosts.toml files under certs.d (builder.node.mirrors)
        cri = data["plugins"]["io.containerd.cri.v1.images" if version >= 3 else "io.containerd.grpc.v1.cri"]
        cri["registry"] = {"config_path": mirrors.CERTS_D}
    header = "# bake: systemd cgroups and kubeadm's pause image, so kubelet and containerd agree (spec 7.3)\n"
    return public(CONTAINERD_STAGED.format(version), header + tomli_w.dumps(data))


def crio_dropin(plan: ClusterPlan, node: NodePlan) -> NodeFile:
    data = {
        "crio": {
            "runtime": {"cgroup_manager": "systemd"},
            "image": {"pause_image": pause_image(plan, node)},
        }
    }
    header = "# bake: systemd cgroups and kubeadm's pause image, so kubelet and CRI-O agree\n"
    return public(CRIO_DROPIN_PATH, header + tomli_w.dumps(data))


def crictl_file(runtime: Runtime) -> NodeFile:
    socket = paths.CRI_SOCKETS[runtime]
    return public(
        CRICTL_PATH, yamlio.dump({"runtime-endpoint": socket, "image-endpoint": socket, "timeout": 10})
    )


def etcd_kubelet_configuration(runtime: Runtime) -> dict[str, Any]:
    """The standalone kubelet that runs an external etcd member's static pod (spec 6.4, current text)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "systemd",
        "address": "127.0.0.1",
        "containerRuntimeEndpoint": paths.CRI_SOCKETS[runtime],
        "staticPodPath": paths.MANIFESTS_DIR,
    }


def etcd_service_manager_files(runtime: Runtime) -> list[NodeFile]:
    config_header = (
        '# Replace "systemd" with the cgroup driver of your container runtime. '
        'The default value in the kubelet is "cgroupfs".\n'
        '# Replace the value of "containerRuntimeEndpoint" for a different container runtime if needed.\n'
        "#\n"
    )
    dropin = (
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart=/usr/bin/kubelet --config={ETCD_KUBELET_CONFIG_PATH}\n"
        "Restart=always\n"
    )
    return [
        public(ETCD_KUBELET_CONFIG_PATH, config_header + yamlio.dump(etcd_kubelet_configuration(runtime))),
        public(ETCD_DROPIN_PATH, dropin),
    ]


KUBELET_REPO = "kubernetes-kubelet"
"""The second Kubernetes repository of a node whose kubelet minor differs from the cluster's."""


def kube_minors(plan: ClusterPlan, node: NodePlan) -> list[tuple[str, str]]:
    """(repository name, minor): the cluster's minor (kubeadm, kubectl), then the kubelet's if older.

    Version-skew policy: kubeadm and kubectl must be the control plane's version; only the kubelet may
    lag (by at most 3 minors). pkgs.k8s.io has one repository per minor, so such a node needs both.
    """
    repos = [("kubernetes", minor_of(plan.version))]
    kubelet_minor = minor_of(node.kubelet_version)
    if kubelet_minor != repos[0][1]:
        repos.append((KUBELET_REPO, kubelet_minor))
    return repos


def kube_package_specs(plan: ClusterPlan, node: NodePlan, family: OsFamily) -> tuple[str, ...]:
    """Pinned kubelet (the node's version), kubeadm and kubectl (the cluster's), in K8S_PACKAGES order."""
    cluster = plan.version.removeprefix("v")
    versions = {"kubelet": node.kubelet_version.removeprefix("v"), "kubeadm": cluster, "kubectl": cluster}
    return tuple(family.package_spec(p, versions[p]) for p in K8S_PACKAGES)


def containerd_from_repository(plan: ClusterPlan) -> bool:
    """containerd 2.x from cluster.containerdRepository rather than the OS's own package."""
    c = plan.settings
    return (
        c.container_runtime is Runtime.CONTAINERD and c.container_runtime_source is RuntimeSource.REPOSITORY
    )


def repositories(plan: ClusterPlan, node: NodePlan) -> Repositories:
    """What the node's package sources must offer: both Kubernetes minors if they differ, the runtime."""
    c = plan.settings
    return Repositories(
        packages=c.packages,
        kube_minors=tuple(kube_minors(plan, node)),
        crio_minor=minor_of(node.kubelet_version) if c.container_runtime is Runtime.CRIO else None,
        containerd=c.containerd_repository if containerd_from_repository(plan) else None,
        arch=node.arch,
    )


# --------------------------------------------------------------------------------------------------
# Ports (spec 7.4)


def _cni_ports(cni: Cni) -> tuple[list[str], list[str]]:
    """Inter-node ports of the pod network (guide part 1: 'the pod network plugin may need ports')."""
    if cni is Cni.CALICO:
        return ["179", "5473"], ["4789"]  # BGP, Typha; VXLAN
    if cni is Cni.FLANNEL:
        return [], ["8472"]  # VXLAN
    if cni is Cni.CILIUM:
        return ["4240"], ["8472"]  # health; VXLAN
    return [], []


def firewall_rules(plan: ClusterPlan, node: NodePlan) -> Firewall:
    c = plan.settings
    tcp: list[str] = []
    udp: list[str] = []
    protocols: list[str] = []
    if node.role is Role.ETCD:
        tcp += ["2379-2380", "10250"]
    else:
        cni_tcp, cni_udp = _cni_ports(c.cni)
        tcp += cni_tcp
        udp += cni_udp
        tcp.append("10250")
        if node.role is Role.CONTROL_PLANE:
            tcp += ["6443", "10257", "10259"]
            if plan.topology is Topology.STACKED:
                tcp.append("2379-2380")
            if c.load_balancer.kind is LoadBalancerKind.HAPROXY_KEEPALIVED:
                tcp.append(str(c.load_balancer.port))
                protocols.append("vrrp")
            if c.allow_scheduling_on_control_planes:
                tcp.append("30000-32767")
        else:
            tcp.append("30000-32767")

    def order(ports: list[str]) -> tuple[str, ...]:
        return tuple(sorted(set(ports), key=lambda p: int(p.split("-")[0])))

    return Firewall(order(tcp), order(udp), tuple(sorted(set(protocols))))


# --------------------------------------------------------------------------------------------------
# The whole preparation


def host_prep(plan: ClusterPlan, node: NodePlan) -> HostPrep:
    c = plan.settings
    runtime = c.container_runtime
    family = for_os(node.os.name)
    prebaked = c.packages.mode is PackageMode.PREBAKED
    files = [modules_file(), sysctl_file(node), crictl_file(runtime)]
    if runtime is Runtime.CRIO:
        files.append(crio_dropin(plan, node))
        files += mirrors.crio_files(c.registry_mirrors)
        config_version = None
    else:
        files += containerd_configs(plan, node)
        files += mirrors.containerd_files(c.registry_mirrors)
        config_version = node.kubelet_info.containerd_config_version
    files += family.swap_files()
    if node.role is Role.ETCD:
        files += etcd_service_manager_files(runtime)

    runtime_packages: tuple[str, ...]
    if runtime is Runtime.CRIO:
        runtime_packages = ("cri-o",)
    elif containerd_from_repository(plan):
        runtime_packages = (c.containerd_repository.package,)
    else:
        runtime_packages = ("containerd",)  # the OS's own (validation refuses it where unsupported)
    repos = RepositoryFiles(()) if prebaked else family.repositories(repositories(plan, node))
    files += repos.files
    return HostPrep(
        files=tuple(sorted(files, key=lambda f: f.path)),
        package_family=family.package_family,
        runtime_service="crio" if runtime is Runtime.CRIO else "containerd",
        cri_socket=paths.CRI_SOCKETS[runtime],
        containerd_config_version=config_version,
        base_packages=family.base_packages,
        runtime_packages=runtime_packages,
        kube_packages=kube_package_specs(plan, node, family),
        hold_packages=K8S_PACKAGES,
        kube_repo_ids=tuple(name for name, _ in kube_minors(plan, node)),
        apt_keys=repos.apt_keys,
        apt_staged_sources=repos.apt_staged_sources,
        selinux_permissive=family.selinux_permissive,
        firewall=firewall_rules(plan, node),
    )
