"""host.py: OS preparation files and data, per role, OS family, arch, runtime and package mode."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import PurePosixPath

import pytest
import yaml

from builder.model import OsName, Runtime, osfamily
from builder.model.osfamily import PackageFamily
from builder.node import host
from builder.plan import ClusterPlan, NodePlan

from .helpers import plan_of


def _node(name: str, node: str, *sets: str) -> tuple[ClusterPlan, NodePlan]:
    plan = plan_of(name, *sets)
    return plan, plan.node(node)


def _files(prep: host.HostPrep) -> dict[str, str]:
    return {f.path: f.content.decode() for f in prep.files}


def test_modules_and_sysctl_ipv4() -> None:
    plan, node = _node("single-master", "cp-1")
    files = _files(host.host_prep(plan, node))
    modules = [ln for ln in files[host.MODULES_LOAD_PATH].splitlines() if not ln.startswith("#")]
    assert modules == ["overlay", "br_netfilter"]
    sysctl = dict(
        (k.strip(), v.strip())
        for k, v in (ln.split("=") for ln in files[host.SYSCTL_PATH].splitlines() if not ln.startswith("#"))
    )
    assert sysctl == {
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
        "net.ipv4.ip_forward": "1",
    }


IPV6 = (
    "cluster.podSubnet=fd00:10:244::/56",
    "cluster.serviceSubnet=fd00:10:96::/112",
    "defaults.gateway=fd00:77::1",
    "defaults.dns=[fd00:77::1]",
    "defaults.prefixLength=64",
    "nodes[0].ip=fd00:77::11",
    "nodes[1].ip=fd00:77::21",
    "nodes[2].ip=fd00:77::22",
)


def test_sysctl_ipv6_forwarding() -> None:
    plan, node = _node("single-master", "worker-1", *IPV6)
    text = _files(host.host_prep(plan, node))[host.SYSCTL_PATH]
    assert "net.ipv6.conf.all.forwarding = 1" in text
    assert "net.ipv6.conf.default.forwarding = 1" in text


@pytest.mark.parametrize("version", ["1.34", "1.37"])
@pytest.mark.parametrize("schema", [2, 3])
def test_containerd_config_staged_in_both_schemas(version: str, schema: int) -> None:
    plan, node = _node("single-master", "cp-1", f"cluster.kubernetesVersion={version}")
    prep = host.host_prep(plan, node)
    assert host.CONTAINERD_CONFIG_PATH not in _files(prep)  # installed by the bootstrap, per containerd
    conf = tomllib.loads(_files(prep)[host.CONTAINERD_STAGED.format(schema)])
    pause = f"registry.k8s.io/pause:{node.kubelet_info.pause_tag}"
    assert conf["version"] == schema
    assert conf["disabled_plugins"] == []
    assert prep.containerd_config_version == node.kubelet_info.containerd_config_version
    if schema == 3:
        assert conf["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == pause
        runc = conf["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    else:
        cri = conf["plugins"]["io.containerd.grpc.v1.cri"]
        assert cri["sandbox_image"] == pause
        runc = cri["containerd"]["runtimes"]["runc"]
    assert runc == {"runtime_type": "io.containerd.runc.v2", "options": {"SystemdCgroup": True}}


def test_pause_image_follows_image_repository_and_the_clusters_kubeadm() -> None:
    # A 1.34 kubelet still runs the cluster's kubeadm (1.37), which expects pause 3.10.2 (1.34's is 3.10.1).
    plan, node = _node(
        "single-master",
        "worker-1",
        "cluster.imageRepository=mirror.example:5000/k8s",
        "nodes[1].kubernetesVersion=1.34",
    )
    conf = tomllib.loads(_files(host.host_prep(plan, node))[host.CONTAINERD_STAGED.format(2)])
    assert (
        conf["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"]
        == "mirror.example:5000/k8s/pause:3.10.2"
    )


def test_crio_dropin_and_crictl() -> None:
    plan, node = _node("single-master", "cp-1", "cluster.containerRuntime=crio")
    prep = host.host_prep(plan, node)
    files = _files(prep)
    assert host.CONTAINERD_STAGED.format(2) not in files
    conf = tomllib.loads(files[host.CRIO_DROPIN_PATH])
    assert conf == {
        "crio": {
            "runtime": {"cgroup_manager": "systemd"},
            "image": {"pause_image": "registry.k8s.io/pause:3.10.2"},
        }
    }
    assert yaml.safe_load(files[host.CRICTL_PATH]) == {
        "runtime-endpoint": "unix:///var/run/crio/crio.sock",
        "image-endpoint": "unix:///var/run/crio/crio.sock",
        "timeout": 10,
    }
    assert prep.runtime_service == "crio" and prep.runtime_packages == ("cri-o",)
    assert prep.apt_staged_sources == ("/etc/bake/apt/kubernetes.list", "/etc/bake/apt/cri-o.list")
    # CRI-O's stable streams live on the openSUSE build service's download host now (pkgs.k8s.io's
    # addons:/cri-o:/stable: paths answer 403).
    assert files["/etc/bake/apt/cri-o.list"] == (
        "deb [signed-by=/etc/apt/keyrings/cri-o-apt-keyring.gpg] "
        "https://download.opensuse.org/repositories/isv:/cri-o:/stable:/v1.37/deb/ /\n"
    )
    assert prep.apt_keys[-1].url == (
        "https://download.opensuse.org/repositories/isv:/cri-o:/stable:/v1.37/deb/Release.key"
    )
    # CRI-O reads crio.conf.d in lexical order, the last file winning: ours must sort after the
    # package's own 10-crio.conf, or its defaults (cgroup manager, pause image) override ours.
    dropin = PurePosixPath(host.CRIO_DROPIN_PATH)
    assert str(dropin.parent) == "/etc/crio/crio.conf.d"
    assert sorted([dropin.name, "10-crio.conf", "10-crun.conf"])[-1] == dropin.name


def test_apt_repository_pins_and_holds() -> None:
    plan, node = _node("single-master", "cp-1")
    prep = host.host_prep(plan, node)
    assert prep.package_family is PackageFamily.APT
    assert _files(prep)["/etc/bake/apt/kubernetes.list"] == (
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
        "https://pkgs.k8s.io/core:/stable:/v1.37/deb/ /\n"
    )
    assert prep.apt_keys == (
        host.AptKey(
            "https://pkgs.k8s.io/core:/stable:/v1.37/deb/Release.key",
            "/etc/apt/keyrings/kubernetes-apt-keyring.gpg",
        ),
        host.AptKey(
            "https://download.docker.com/linux/ubuntu/gpg", "/etc/apt/keyrings/containerd-apt-keyring.gpg"
        ),
    )
    assert prep.kube_packages == ("kubelet=1.37.2-*", "kubeadm=1.37.2-*", "kubectl=1.37.2-*")
    assert prep.hold_packages == ("kubelet", "kubeadm", "kubectl")
    assert {"ebtables", "ethtool", "conntrack", "socat"} <= set(prep.base_packages)
    assert not prep.selinux_permissive
    # Staged, never live before its keyring exists.
    assert not any(f.path.startswith("/etc/apt/sources.list.d/") for f in prep.files)


def test_mirror_base_urls() -> None:
    plan, node = _node("single-master", "cp-1", "cluster.packages.aptBaseUrl=http://mirror.lan/k8s/")
    prep = host.host_prep(plan, node)
    assert _files(prep)["/etc/bake/apt/kubernetes.list"].endswith(
        "http://mirror.lan/k8s/core:/stable:/v1.37/deb/ /\n"
    )
    plan, node = _node(
        "single-master", "cp-1", "defaults.os=rocky-9", "cluster.packages.rpmBaseUrl=https://mirror.lan/pkgs"
    )
    repo = _files(host.host_prep(plan, node))["/etc/yum.repos.d/kubernetes.repo"]
    assert "baseurl=https://mirror.lan/pkgs/core:/stable:/v1.37/rpm/\n" in repo


def test_worker_with_older_kubelet_gets_the_clusters_kubeadm_and_kubectl() -> None:
    """Version-skew policy: kubeadm and kubectl are the cluster's; only the kubelet may be older."""
    plan, node = _node("single-master", "worker-1", "nodes[1].kubernetesVersion=1.35.2")
    prep = host.host_prep(plan, node)
    assert prep.kube_packages == ("kubelet=1.35.2-*", "kubeadm=1.37.2-*", "kubectl=1.37.2-*")
    files = _files(prep)
    assert "/core:/stable:/v1.37/deb/" in files["/etc/bake/apt/kubernetes.list"]
    assert files["/etc/bake/apt/kubernetes-kubelet.list"] == (
        "deb [signed-by=/etc/apt/keyrings/kubernetes-kubelet-apt-keyring.gpg] "
        "https://pkgs.k8s.io/core:/stable:/v1.35/deb/ /\n"
    )
    assert [k.url for k in prep.apt_keys][:2] == [
        "https://pkgs.k8s.io/core:/stable:/v1.37/deb/Release.key",
        "https://pkgs.k8s.io/core:/stable:/v1.35/deb/Release.key",
    ]
    assert prep.kube_repo_ids == ("kubernetes", "kubernetes-kubelet")
    # The same node at the cluster's version needs one repository only.
    plan, node = _node("single-master", "worker-1")
    assert host.host_prep(plan, node).kube_repo_ids == ("kubernetes",)

    plan, node = _node("single-master", "worker-1", "nodes[1].kubernetesVersion=1.34", "defaults.os=rocky-9")
    prep = host.host_prep(plan, node)
    assert prep.kube_packages == ("kubelet-1.34.0", "kubeadm-1.37.2", "kubectl-1.37.2")
    repo = configparser.ConfigParser(interpolation=None)
    repo.read_string(_files(prep)["/etc/yum.repos.d/kubernetes.repo"])
    assert repo["kubernetes"]["baseurl"] == "https://pkgs.k8s.io/core:/stable:/v1.37/rpm/"
    assert repo["kubernetes-kubelet"]["baseurl"] == "https://pkgs.k8s.io/core:/stable:/v1.34/rpm/"
    assert repo["kubernetes-kubelet"]["exclude"] == repo["kubernetes"]["exclude"]


def _k8s_rpm_section(name: str, minor: str) -> str:
    """A pkgs.k8s.io .repo section as kubernetes.io's "Installing kubeadm" page writes it."""
    url = f"https://pkgs.k8s.io/core:/stable:/v{minor}/rpm/"
    return (
        f"[{name}]\n"
        f"name=Kubernetes {minor}\n"
        f"baseurl={url}\n"
        "enabled=1\n"
        "gpgcheck=1\n"
        f"gpgkey={url}repodata/repomd.xml.key\n"
        "exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
    )


def test_rhel_family_repo_selinux_and_arch_of_the_node() -> None:
    plan, node = _node("single-master", "worker-1", "defaults.os=rocky-9", "defaults.arch=arm64")
    prep = host.host_prep(plan, node)
    files = _files(prep)
    assert prep.package_family is PackageFamily.DNF
    assert prep.selinux_permissive
    assert files["/etc/yum.repos.d/kubernetes.repo"] == _k8s_rpm_section("kubernetes", "1.37")
    # containerd.io from Docker's EL repository, for the NODE's arch (aarch64), whatever bakes it.
    assert (
        "baseurl=https://download.docker.com/linux/centos/9/aarch64/stable\n"
        in files["/etc/yum.repos.d/containerd.repo"]
    )
    assert prep.kube_packages == ("kubelet-1.37.2", "kubeadm-1.37.2", "kubectl-1.37.2")
    assert prep.runtime_packages == ("containerd.io",)
    assert {"ebtables", "ethtool", "conntrack-tools", "socat"} <= set(prep.base_packages)
    # EL 9 images ship curl-minimal, which the curl package conflicts with.
    assert "curl" not in prep.base_packages
    assert prep.apt_keys == () and prep.apt_staged_sources == ()


def test_fedora_disables_zram_swap_and_gets_containerd_2() -> None:
    plan, node = _node("single-master", "worker-1", "defaults.os=fedora-42")
    prep = host.host_prep(plan, node)
    assert osfamily.ZRAM_GENERATOR_PATH in _files(prep)
    assert prep.runtime_packages == ("containerd.io",)
    assert (
        "baseurl=https://download.docker.com/linux/fedora/42/x86_64/stable\n"
        in _files(prep)["/etc/yum.repos.d/containerd.repo"]
    )
    plan, node = _node(
        "single-master", "worker-1", "defaults.os=fedora-42", "cluster.containerRuntimeSource=distro"
    )
    prep = host.host_prep(plan, node)
    assert prep.runtime_packages == ("containerd",)
    assert "/etc/yum.repos.d/containerd.repo" not in _files(prep)


@pytest.mark.parametrize(
    ("os_name", "suite"),
    [("ubuntu-24.04", "ubuntu noble"), ("ubuntu-22.04", "ubuntu jammy"), ("debian-12", "debian bookworm"),
     ("debian-13", "debian trixie")],
)  # fmt: skip
def test_containerd_2_from_the_profiles_repository_on_apt(os_name: str, suite: str) -> None:
    distro, codename = suite.split()
    plan, node = _node(
        "single-master",
        "worker-1",
        f"defaults.os={os_name}",
        "cluster.containerdRepository.baseUrl=http://mirror.lan/docker",
    )
    prep = host.host_prep(plan, node)
    assert prep.runtime_packages == ("containerd.io",)
    assert _files(prep)["/etc/bake/apt/containerd.list"] == (
        f"deb [signed-by=/etc/apt/keyrings/containerd-apt-keyring.gpg] http://mirror.lan/docker/{distro} "
        f"{codename} stable\n"
    )
    assert host.AptKey(
        f"http://mirror.lan/docker/{distro}/gpg", "/etc/apt/keyrings/containerd-apt-keyring.gpg"
    ) in (prep.apt_keys)


def test_distro_containerd_where_it_is_supported() -> None:
    plan, node = _node(
        "single-master", "worker-1", "cluster.kubernetesVersion=1.35", "cluster.containerRuntimeSource=distro"
    )
    prep = host.host_prep(plan, node)
    assert prep.runtime_packages == ("containerd",)
    assert not any(f.path == "/etc/bake/apt/containerd.list" for f in prep.files)


def test_crio_on_rhel_family_repo() -> None:
    plan, node = _node("single-master", "worker-1", "defaults.os=alma-9", "cluster.containerRuntime=crio")
    files = _files(host.host_prep(plan, node))
    assert (
        "baseurl=https://download.opensuse.org/repositories/isv:/cri-o:/stable:/v1.37/rpm/\n"
        in files["/etc/yum.repos.d/cri-o.repo"]
    )
    assert "/etc/yum.repos.d/containerd.repo" not in files


def test_prebaked_skips_repositories() -> None:
    for sets in ((), ("defaults.os=rocky-9",)):
        plan, node = _node("single-master", "cp-1", "cluster.packages.mode=prebaked", *sets)
        prep = host.host_prep(plan, node)
        paths = {f.path for f in prep.files}
        assert not any(p.startswith(("/etc/bake/apt/", "/etc/yum.repos.d/")) for p in paths)
        assert prep.apt_keys == ()


def test_firewall_ports_per_role() -> None:
    plan = plan_of("ha-external-etcd")
    cp = host.firewall_rules(plan, plan.node("cp-2"))
    # Calico's 179/5473 (tcp) and 4789 (udp); haproxy frontend 8443 and VRRP for keepalived.
    assert cp.tcp == ("179", "5473", "6443", "8443", "10250", "10257", "10259")
    assert cp.udp == ("4789",)
    assert cp.protocols == ("vrrp",)
    worker = host.firewall_rules(plan, plan.node("worker-1"))
    assert worker.tcp == ("179", "5473", "10250", "30000-32767")
    etcd = host.firewall_rules(plan, plan.node("etcd-1"))
    assert etcd == host.Firewall(("2379-2380", "10250"), (), ())
    stacked = plan_of("ha-stacked")
    cp = host.firewall_rules(stacked, stacked.node("cp-1"))
    assert "2379-2380" in cp.tcp and cp.protocols == ()  # kube-vip: ARP, no VRRP


def test_etcd_member_kubelet_is_spec_6_4() -> None:
    plan, node = _node("ha-external-etcd", "etcd-2")
    prep = host.host_prep(plan, node)
    files = _files(prep)
    assert files[host.ETCD_DROPIN_PATH] == (
        "[Service]\n"
        "ExecStart=\n"
        "ExecStart=/usr/bin/kubelet --config=/etc/systemd/system/kubelet.service.d/kubelet.conf\n"
        "Restart=always\n"
    )
    assert yaml.safe_load(files[host.ETCD_KUBELET_CONFIG_PATH]) == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "systemd",
        "address": "127.0.0.1",
        "containerRuntimeEndpoint": "unix:///var/run/containerd/containerd.sock",
        "staticPodPath": "/etc/kubernetes/manifests",
    }
    assert list(yaml.safe_load(files[host.ETCD_KUBELET_CONFIG_PATH])) == [
        "apiVersion", "kind", "authentication", "authorization", "cgroupDriver", "address",
        "containerRuntimeEndpoint", "staticPodPath",
    ]  # fmt: skip
    crio = host.etcd_kubelet_configuration(Runtime.CRIO)
    assert crio["containerRuntimeEndpoint"] == "unix:///var/run/crio/crio.sock"
    # Only etcd members get it.
    plan, cp = _node("ha-external-etcd", "cp-1")
    assert host.ETCD_DROPIN_PATH not in _files(host.host_prep(plan, cp))


def test_files_are_sorted_unique_and_public() -> None:
    for name in ("single-master", "ha-stacked", "ha-external-etcd", "etcd-cluster", "single-node"):
        plan = plan_of(name)
        for node in plan.nodes:
            prep = host.host_prep(plan, node)
            paths = [f.path for f in prep.files]
            assert paths == sorted(set(paths))
            assert all(not f.secret and f.owner == "root:root" for f in prep.files)


@pytest.mark.parametrize("os_name", list(OsName))
def test_every_os_has_one_family(os_name: OsName) -> None:
    """Each OS the schema offers has its row, and only Fedora turns swap on zram on by default."""
    family = osfamily.for_os(os_name)
    apt = os_name.value.startswith(("ubuntu-", "debian-"))
    assert family.package_family is (PackageFamily.APT if apt else PackageFamily.DNF)
    assert family.selinux_permissive is not apt
    plan, node = _node("single-master", "worker-1", f"defaults.os={os_name.value}")
    assert (osfamily.ZRAM_GENERATOR_PATH in _files(host.host_prep(plan, node))) is (
        os_name.value.startswith("fedora-")
    )


def test_two_kubernetes_repositories_in_one_repo_file() -> None:
    plan, node = _node("single-master", "worker-1", "nodes[1].kubernetesVersion=1.36", "defaults.os=rhel-9")
    assert _files(host.host_prep(plan, node))["/etc/yum.repos.d/kubernetes.repo"] == (
        _k8s_rpm_section("kubernetes", "1.37") + "\n" + _k8s_rpm_section("kubernetes-kubelet", "1.36")
    )
