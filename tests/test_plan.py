"""builder.plan: topology, init node, endpoint, service IPs, etcd cluster string and per-node settings."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from builder.model import Arch, OsName, Role
from builder.model.osfamily import PackageFamily
from builder.pki import certlist
from builder.plan import Endpoint, Topology, build_plan
from builder.validation.profile import load_profile, validate

from .helpers import plan_of


def data(name: str, *sets: str) -> dict[str, Any]:
    return load_profile(name, sets).model_dump(mode="json", by_alias=True)


def ipv6_data() -> dict[str, Any]:
    """IPv6 single-stack: the embedded ipv6-ha-stacked profile as plain data."""
    return data("ipv6-ha-stacked")


@pytest.mark.parametrize(
    ("name", "topology"),
    [
        ("ha-stacked", Topology.STACKED),
        ("single-master", Topology.STACKED),
        ("single-node", Topology.STACKED),
        ("ha-external-etcd", Topology.EXTERNAL_ETCD),
        ("etcd-cluster", Topology.ETCD_ONLY),
    ],
)
def test_topology(name: str, topology: Topology) -> None:
    plan = plan_of(name)
    assert plan.topology is topology
    assert plan.topology.local_etcd is (topology is Topology.STACKED)
    assert plan.name == name
    assert plan.version == "1.37." + plan.version.split(".")[2]
    assert plan.info.minor == 37


def test_etcd_members_per_topology() -> None:
    assert [m.name for m in plan_of("ha-stacked").etcd_members] == ["cp-1", "cp-2", "cp-3"]
    assert [m.name for m in plan_of("ha-external-etcd").etcd_members] == ["etcd-1", "etcd-2", "etcd-3"]
    assert [m.name for m in plan_of("etcd-cluster").etcd_members] == ["etcd-1", "etcd-2", "etcd-3"]
    assert [m.name for m in plan_of("single-node").etcd_members] == ["dev-1"]


def test_init_node_is_the_first_control_plane() -> None:
    plan = plan_of("ha-external-etcd")  # the etcd members come first in the profile
    assert plan.init_node is not None and plan.init_node.name == "cp-1"
    assert [n.name for n in plan.nodes if n.is_init] == ["cp-1"]
    assert [n.name for n in plan.control_planes] == ["cp-1", "cp-2", "cp-3"]
    assert [n.name for n in plan.workers] == ["worker-1", "worker-2"]
    assert [(n.name, n.index) for n in plan.nodes if n.role is Role.ETCD] == [
        ("etcd-1", 0),
        ("etcd-2", 1),
        ("etcd-3", 2),
    ]
    assert [n.index for n in plan.control_planes] == [0, 1, 2]
    assert not any(n.is_init for n in plan.nodes if n.role is not Role.CONTROL_PLANE)


def test_etcd_only_cluster_has_no_init_node() -> None:
    plan = plan_of("etcd-cluster")
    assert plan.init_node is None
    assert plan.endpoint is None
    assert not any(n.is_init for n in plan.nodes)


def test_reordered_control_planes_change_the_init_node() -> None:
    d = data("ha-stacked")
    d["nodes"] = [d["nodes"][3], d["nodes"][2], d["nodes"][0], d["nodes"][1]]
    plan = build_plan(validate(d))
    assert plan.init_node is not None and plan.init_node.name == "cp-3"


def test_kube_vip_endpoint() -> None:
    plan = plan_of("ha-stacked")
    assert plan.endpoint == Endpoint("10.77.0.10", 6443)
    assert plan.api_endpoint().url == "https://10.77.0.10:6443"


def test_haproxy_endpoint_uses_the_frontend_port() -> None:
    plan = plan_of("ha-external-etcd")
    assert plan.endpoint == Endpoint("10.77.0.10", 8443)
    assert plan.api_endpoint().hostport == "10.77.0.10:8443"
    assert plan_of("ha-external-etcd", "cluster.loadBalancer.port=9443").api_endpoint().port == 9443


def test_no_endpoint_falls_back_to_the_init_node() -> None:
    plan = plan_of("single-master")
    assert plan.endpoint is None
    assert plan.api_endpoint() == Endpoint("10.77.0.11", 6443)


@pytest.mark.parametrize(
    ("endpoint", "host", "port", "url"),
    [
        ("api.example.com", "api.example.com", 6443, "https://api.example.com:6443"),
        ("api.example.com:443", "api.example.com", 443, "https://api.example.com:443"),
        ("10.77.0.99:7443", "10.77.0.99", 7443, "https://10.77.0.99:7443"),
        ("[fd00:77::99]:6443", "fd00:77::99", 6443, "https://[fd00:77::99]:6443"),
        ("fd00:77::99", "fd00:77::99", 6443, "https://[fd00:77::99]:6443"),
    ],
)
def test_explicit_control_plane_endpoint(endpoint: str, host: str, port: int, url: str) -> None:
    d = data("ha-stacked")
    d["cluster"]["controlPlaneEndpoint"] = endpoint  # wins over the kube-vip VIP
    plan = build_plan(validate(d))
    assert plan.endpoint == Endpoint(host, port)
    assert plan.api_endpoint().url == url


def test_ipv6_vip_endpoint_is_bracketed() -> None:
    plan = build_plan(validate(ipv6_data()))
    assert plan.ipv6
    assert plan.api_endpoint().hostport == "[fd00:77::10]:6443"
    assert plan.api_endpoint().url == "https://[fd00:77::10]:6443"
    assert plan.node("cp-2").local_endpoint.url == "https://[fd00:77::12]:6443"


@pytest.mark.parametrize(
    ("subnet", "first", "dns"),
    [
        ("10.96.0.0/12", "10.96.0.1", "10.96.0.10"),
        ("10.100.0.0/16", "10.100.0.1", "10.100.0.10"),
        ("10.96.0.0/12,fd00:96::/112", "10.96.0.1", "10.96.0.10"),
    ],
)
def test_first_service_and_dns_ip(subnet: str, first: str, dns: str) -> None:
    plan = plan_of("single-master", f"cluster.serviceSubnet={subnet}")
    assert certlist.apiserver_service_ip(plan.settings.service_subnet) == ipaddress.ip_address(first)
    assert plan.cluster_dns_ip == ipaddress.ip_address(dns)


def test_ipv6_service_ips() -> None:
    plan = build_plan(validate(ipv6_data()))
    assert certlist.apiserver_service_ip(plan.settings.service_subnet) == ipaddress.ip_address("fd00:96::1")
    assert plan.cluster_dns_ip == ipaddress.ip_address("fd00:96::a")


def test_etcd_initial_cluster_stacked() -> None:
    plan = plan_of("ha-stacked")
    assert plan.etcd_initial_cluster == (
        "cp-1=https://10.77.0.11:2380,cp-2=https://10.77.0.12:2380,cp-3=https://10.77.0.13:2380"
    )
    assert plan.etcd_client_urls == (
        "https://10.77.0.11:2379",
        "https://10.77.0.12:2379",
        "https://10.77.0.13:2379",
    )


def test_etcd_initial_cluster_external() -> None:
    plan = plan_of("ha-external-etcd")
    assert plan.etcd_initial_cluster == (
        "etcd-1=https://10.77.0.31:2380,etcd-2=https://10.77.0.32:2380,etcd-3=https://10.77.0.33:2380"
    )


def test_etcd_initial_cluster_ipv6_brackets() -> None:
    plan = build_plan(validate(ipv6_data()))
    assert plan.etcd_initial_cluster == (
        "cp-1=https://[fd00:77::11]:2380,cp-2=https://[fd00:77::12]:2380,cp-3=https://[fd00:77::13]:2380"
    )
    assert plan.etcd_client_urls[0] == "https://[fd00:77::11]:2379"


def test_node_defaults_apply() -> None:
    plan = plan_of("single-master")
    w = plan.node("worker-1")
    assert w.arch is Arch.AMD64
    assert w.os.name is OsName.UBUNTU_2404
    assert w.prefix_length == 24
    assert w.gateway == ipaddress.ip_address("10.77.0.1")
    assert w.dns == (ipaddress.ip_address("10.77.0.1"),)
    assert w.interface == "eth0"
    assert w.mac == "52:54:00:77:00:21"
    assert [u.name for u in w.users] == ["ops"]
    assert w.kubelet_version == plan.version
    assert w.os.family is PackageFamily.APT


def test_per_node_overrides_win_over_defaults() -> None:
    d = data("single-master")
    d["nodes"][1].update(
        arch="arm64",
        os="rocky-9",
        prefixLength=16,
        gateway="10.77.255.254",
        dns=["9.9.9.9"],
        interface="enp1s0",
        kubernetesVersion="1.35",
        labels={"zone": "b", "tier": "edge"},
    )
    plan = build_plan(validate(d))
    w1, w2 = plan.node("worker-1"), plan.node("worker-2")
    assert (w1.arch, w1.os.name, w1.prefix_length) == (Arch.ARM64, OsName.ROCKY_9, 16)
    assert w1.gateway == ipaddress.ip_address("10.77.255.254")
    assert w1.dns == (ipaddress.ip_address("9.9.9.9"),)
    assert w1.interface == "enp1s0"
    assert w1.os.family is PackageFamily.DNF
    assert w1.kubelet_version.startswith("1.35.") and w1.kubelet_info.minor == 35
    assert w1.labels == (("tier", "edge"), ("zone", "b"))
    # the other worker keeps the defaults
    assert (w2.arch, w2.os.name, w2.prefix_length) == (Arch.AMD64, OsName.UBUNTU_2404, 24)
    assert w2.gateway == ipaddress.ip_address("10.77.0.1")
    assert w2.kubelet_info.minor == 37


def test_empty_node_dns_list_overrides_defaults() -> None:
    d = data("single-master")
    d["nodes"][1]["dns"] = []
    plan = build_plan(validate(d))
    assert plan.node("worker-1").dns == ()
    assert plan.node("worker-2").dns == (ipaddress.ip_address("10.77.0.1"),)


def test_default_prefix_length_by_family() -> None:
    d = data("single-master")
    d["defaults"]["prefixLength"] = None
    assert build_plan(validate(d)).node("cp-1").prefix_length == 24
    v6 = build_plan(validate(ipv6_data()))
    assert {n.prefix_length for n in v6.nodes} == {64}
    assert v6.node("cp-1").gateway == ipaddress.ip_address("fd00:77::1")


def test_version_completion() -> None:
    assert plan_of("single-master", "cluster.kubernetesVersion=1.35.3").version == "1.35.3"
    assert plan_of("single-master", "cluster.kubernetesVersion=v1.34.1").version == "1.34.1"
    short = plan_of("single-master", "cluster.kubernetesVersion=1.33")
    assert short.version == short.info.default_patch and short.info.minor == 33


def test_even_etcd_count_warns() -> None:
    assert plan_of("ha-stacked").warnings == ()
    assert plan_of("single-node").warnings == ()
    d = data("ha-stacked")
    d["nodes"].append({"name": "cp-4", "role": "control-plane", "ip": "10.77.0.14"})
    warnings = build_plan(validate(d)).warnings
    assert len(warnings) == 1 and "4 etcd members" in warnings[0]
    e = data("ha-external-etcd")
    e["nodes"] = [n for n in e["nodes"] if n["name"] != "etcd-3"]
    warnings = build_plan(validate(e)).warnings
    assert len(warnings) == 1 and "2 etcd members" in warnings[0]
    # workers do not count as etcd members
    s = data("single-master")
    s["nodes"] = s["nodes"][:2]
    assert build_plan(validate(s)).warnings == ()


def test_node_lookup() -> None:
    plan = plan_of("ha-stacked")
    assert plan.node("worker-2").ip == ipaddress.ip_address("10.77.0.22")
    with pytest.raises(KeyError):
        plan.node("nope")
