"""builder.node.static_pods: external etcd members and the control-plane load balancer as static pods.

Real peers: the `kubernetes-validate` Pod schemas, haproxy -c, keepalived --config-test, shellcheck
and an etcd binary. The golden test compares every embedded profile's static pods and their
configuration with the golden tree (tests/golden_tree.py), which `make golden` refreshes.
"""

from __future__ import annotations

import copy
import http.client
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv

from builder import resources, yamlio
from builder.files import Sensitivity
from builder.model import Arg, versions
from builder.node import kubeadm_config as kc
from builder.node import static_pods
from builder.plan import ClusterPlan, images

from .golden_tree import PROFILES, golden_plan, references
from .helpers import compare_golden, plan_of

MINORS = sorted(versions.TABLE)

V6_EXTERNAL = """
cluster:
  name: v6-external
  kubernetesVersion: "1.37"
  podSubnet: fd00:10:244::/56
  serviceSubnet: fd00:10:96::/112
  loadBalancer: {kind: haproxy-keepalived, vip: "fd00:77::10", interface: eth0, port: 8443}
defaults: {prefixLength: 64, gateway: "fd00:77::1", dns: ["fd00:77::1"]}
nodes:
  - {name: etcd-1, role: etcd, ip: "fd00:77::31"}
  - {name: etcd-2, role: etcd, ip: "fd00:77::32"}
  - {name: etcd-3, role: etcd, ip: "fd00:77::33"}
  - {name: cp-1, role: control-plane, ip: "fd00:77::11"}
  - {name: cp-2, role: control-plane, ip: "fd00:77::12"}
  - {name: worker-1, role: worker, ip: "fd00:77::21"}
"""


def v6_plan(tmp_path: Path, *sets: str) -> ClusterPlan:
    path = tmp_path / "v6.yaml"
    path.write_text(V6_EXTERNAL)
    return plan_of(str(path), *sets)


def pods_of(plan: ClusterPlan) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for node in plan.nodes:
        for f in static_pods.node_static_pod_files(plan, node):
            if f.path.startswith(kc.MANIFESTS_DIR):
                out.append((f"{node.name}:{f.path}", yaml.safe_load(f.content)))
    return out


def command(pod: dict[str, Any]) -> list[str]:
    cmd: list[str] = pod["spec"]["containers"][0]["command"]
    return cmd


def name_value(arg: str) -> tuple[str, str]:
    """`--name=value` as ArgumentsToCommand sorts it: by name, then by value."""
    name, _, value = arg[2:].partition("=")
    return name, value


def flags(pod: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for arg in command(pod)[1:]:
        name, _, value = arg[2:].partition("=")
        out.setdefault(name, []).append(value)
    return out


def etcd(plan: ClusterPlan, name: str = "etcd-1") -> dict[str, Any]:
    return static_pods.etcd.etcd_pod(plan, plan.node(name))


# --- Pod schema (kubernetes-validate) ------------------------------------------------------------


def schema_versions(minor: int) -> list[str]:
    """The profile's own minor if the package knows it, and the newest it knows (>= the profile's)."""
    known = kv.all_versions()
    newest = known[-1]
    own = [v for v in known if kv.major_minor(v) == f"1.{minor}"]
    return sorted({*own[-1:], newest})


def test_kubernetes_validate_knows_our_newest_minor() -> None:
    assert kv.major_minor(kv.latest_version()) >= f"1.{versions.NEWEST_MINOR}"


@pytest.mark.parametrize("minor", MINORS)
@pytest.mark.parametrize("name", resources.profile_names())
def test_static_pods_are_valid_pods(name: str, minor: int) -> None:
    plan = plan_of(name, f"cluster.kubernetesVersion=1.{minor}")
    for where, pod in pods_of(plan):
        for version in schema_versions(minor):
            kv.validate(pod, version, strict=True)  # raises on any schema violation
        assert pod["metadata"]["namespace"] == "kube-system", where


@pytest.mark.parametrize(
    "breakage",
    [
        lambda p: p["spec"].__setitem__("hostNetwrok", True),
        lambda p: p["spec"]["containers"][0].__setitem__("image", 5),
        lambda p: p["spec"]["containers"][0]["livenessProbe"]["httpGet"].__setitem__("port", [1]),
        lambda p: p["spec"]["volumes"][0].__setitem__("hostPath", "/etc"),
        lambda p: p["spec"].pop("containers"),
    ],
)
def test_a_broken_pod_fails_validation(breakage: Any) -> None:
    pod = copy.deepcopy(etcd(plan_of("ha-external-etcd")))
    kv.validate(pod, kv.latest_version(), strict=True)
    breakage(pod)
    with pytest.raises(kv.ValidationError):
        kv.validate(pod, kv.latest_version(), strict=True)


# --- etcd ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("minor", MINORS)
def test_etcd_flags_sorted_like_arguments_to_command(minor: int) -> None:
    pod = etcd(plan_of("ha-external-etcd", f"cluster.kubernetesVersion=1.{minor}"))
    cmd = command(pod)
    assert cmd[0] == "etcd"
    assert all(a.startswith("--") and "=" in a for a in cmd[1:])
    assert (
        cmd.index("--initial-cluster-state=new")
        == cmd.index(next(a for a in cmd if a.startswith("--initial-cluster="))) + 1
    )
    if versions.TABLE[minor].extra_args_user_order_kept:
        # the guide's extraArgs (initial-cluster, initial-cluster-state) follow the sorted defaults
        assert cmd[-1] == "--initial-cluster-state=new"
        assert cmd[1:-2] == sorted(cmd[1:-2], key=name_value)
    else:
        assert cmd[1:] == sorted(cmd[1:], key=name_value)


def test_etcd_pod_for_a_member() -> None:
    plan = plan_of("ha-external-etcd")
    pod = etcd(plan, "etcd-2")
    f = flags(pod)
    assert f["initial-cluster"] == [
        "etcd-1=https://10.77.0.31:2380,etcd-2=https://10.77.0.32:2380,etcd-3=https://10.77.0.33:2380"
    ]
    assert f["initial-cluster-state"] == ["new"]
    assert f["name"] == ["etcd-2"]
    assert f["advertise-client-urls"] == ["https://10.77.0.32:2379"]
    assert f["initial-advertise-peer-urls"] == f["listen-peer-urls"] == ["https://10.77.0.32:2380"]
    assert f["listen-client-urls"] == ["https://127.0.0.1:2379,https://10.77.0.32:2379"]
    assert f["listen-metrics-urls"] == ["http://127.0.0.1:2381"]
    assert f["cert-file"] == ["/etc/kubernetes/pki/etcd/server.crt"]
    assert f["peer-trusted-ca-file"] == f["trusted-ca-file"] == ["/etc/kubernetes/pki/etcd/ca.crt"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"registry.k8s.io/etcd:{plan.info.etcd_tag}"
    assert pod["metadata"]["annotations"] == {
        "kubeadm.kubernetes.io/etcd.advertise-client-urls": "https://10.77.0.32:2379"
    }
    assert [m["name"] for m in container["volumeMounts"]] == ["etcd-data", "etcd-certs"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["etcd-certs", "etcd-data"]
    assert pod["spec"]["priorityClassName"] == "system-node-critical"


def test_initial_cluster_follows_profile_order(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        """
extends: etcd-cluster
nodes:
  - {name: zeta, role: etcd, ip: 10.77.0.39}
  - {name: alpha, role: etcd, ip: 10.77.0.31}
  - {name: mid, role: etcd, ip: 10.77.0.35}
"""
    )
    plan = plan_of(str(path))
    for member in plan.nodes:
        assert flags(etcd(plan, member.name))["initial-cluster"] == [
            "zeta=https://10.77.0.39:2380,alpha=https://10.77.0.31:2380,mid=https://10.77.0.35:2380"
        ]


def test_etcd_ipv6_urls_are_bracketed(tmp_path: Path) -> None:
    plan = v6_plan(tmp_path)
    pod = etcd(plan)
    f = flags(pod)
    assert f["advertise-client-urls"] == ["https://[fd00:77::31]:2379"]
    assert f["listen-client-urls"] == ["https://[::1]:2379,https://[fd00:77::31]:2379"]
    assert f["listen-metrics-urls"] == ["http://[::1]:2381"]
    assert f["initial-cluster"][0].split(",")[2] == "etcd-3=https://[fd00:77::33]:2380"
    probe = pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]
    assert probe["host"] == "::1"


def test_etcd_36_flags_switch() -> None:
    old = [m for m in MINORS if not versions.TABLE[m].etcd_36_flags]
    new = [m for m in MINORS if versions.TABLE[m].etcd_36_flags]
    assert old and new
    f_old = flags(etcd(plan_of("ha-external-etcd", f"cluster.kubernetesVersion=1.{old[-1]}")))
    f_new = flags(etcd(plan_of("ha-external-etcd", f"cluster.kubernetesVersion=1.{new[0]}")))
    assert f_old["experimental-initial-corrupt-check"] == ["true"]
    assert f_old["experimental-watch-progress-notify-interval"] == ["5s"]
    assert "feature-gates" not in f_old and "watch-progress-notify-interval" not in f_old
    assert f_new["feature-gates"] == ["InitialCorruptCheck=true"]
    assert f_new["watch-progress-notify-interval"] == ["5s"]
    assert not any(k.startswith("experimental-") for k in f_new)


def test_named_probe_port_switch() -> None:
    for minor in MINORS:
        info = versions.TABLE[minor]
        container = etcd(plan_of("ha-external-etcd", f"cluster.kubernetesVersion=1.{minor}"))["spec"][
            "containers"
        ][0]
        ports = {container[p]["httpGet"]["port"] for p in ("livenessProbe", "readinessProbe", "startupProbe")}
        if info.named_probe_port:
            assert ports == {"probe-port"}
            assert container["ports"] == [{"containerPort": 2381, "name": "probe-port", "protocol": "TCP"}]
        else:
            assert ports == {2381}
            assert "ports" not in container


def test_etcd_extra_args_override_by_name() -> None:
    sorted_minor = max(m for m in MINORS if not versions.TABLE[m].extra_args_user_order_kept)
    plan = plan_of(
        "ha-external-etcd",
        f"cluster.kubernetesVersion=1.{sorted_minor}",
        "cluster.etcd.extraArgs=[{name: snapshot-count, value: '5000'},"
        " {name: quota-backend-bytes, value: '8589934592'},"
        " {name: cipher-suites, value: b}, {name: cipher-suites, value: a},"
        " {name: listen-metrics-urls, value: 'http://0.0.0.0:12381'}]",
    )
    pod = etcd(plan)
    f = flags(pod)
    assert f["snapshot-count"] == ["5000"]  # the default 10000 is gone
    assert f["quota-backend-bytes"] == ["8589934592"]
    assert f["cipher-suites"] == ["a", "b"]  # duplicates kept, sorted by value
    assert f["listen-metrics-urls"] == ["http://0.0.0.0:12381"]
    probe = pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]
    assert (probe["host"], probe["port"], probe["scheme"]) == (
        "0.0.0.0",
        2381 if not plan.info.named_probe_port else "probe-port",
        "HTTP",
    )
    if plan.info.named_probe_port:
        assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 12381
    assert command(pod)[1:] == sorted(command(pod)[1:], key=name_value)


def test_etcd_extra_args_keep_user_order_where_kubeadm_does() -> None:
    kept = [m for m in MINORS if versions.TABLE[m].extra_args_user_order_kept]
    assert kept, "the version table lists minors that keep the user's extraArgs order"
    plan = plan_of(
        "ha-external-etcd",
        f"cluster.kubernetesVersion=1.{kept[0]}",
        "cluster.etcd.extraArgs=[{name: snapshot-count, value: '5000'}, {name: cipher-suites, value: b},"
        " {name: cipher-suites, value: a}]",
    )
    cmd = command(etcd(plan))[1:]
    # kubeadm's sorted defaults, then the guide's extraArgs, then the profile's in their order
    assert cmd[-3:] == ["--snapshot-count=5000", "--cipher-suites=b", "--cipher-suites=a"]
    assert cmd[-5].startswith("--initial-cluster=etcd-1=") and cmd[-4] == "--initial-cluster-state=new"
    assert cmd[:-5] == sorted(cmd[:-5], key=name_value)
    assert "--snapshot-count=10000" not in cmd


@pytest.mark.parametrize("minor", MINORS)
def test_etcd_demands_client_certificates(minor: int) -> None:
    """kubeadm's getEtcdCommand (phases/etcd/local.go) sets both cert-auth flags and both CA files.

    etcd itself already demands a client certificate once a trusted CA file is set (see the real-etcd
    test below), so the flags are checked here against kubeadm's list, not through etcd."""
    cmd = command(etcd(plan_of("ha-external-etcd", f"cluster.kubernetesVersion=1.{minor}")))
    for flag in (
        "--client-cert-auth=true",
        "--peer-client-cert-auth=true",
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
    ):
        assert cmd.count(flag) == 1, flag
    assert not [a for a in cmd if "cert-auth=" in a and not a.endswith("=true")]


def test_etcd_pod_refuses_stacked_members() -> None:
    plan = plan_of("ha-stacked")
    with pytest.raises(ValueError, match="kubeadm itself"):
        static_pods.etcd.etcd_pod(plan, plan.node("cp-1"))


@pytest.mark.parametrize(
    ("urls", "ipv6", "endpoint"),
    [  # kubeadm's GetEtcdProbeEndpoint (cmd/kubeadm/app/util/staticpod/utils.go), case by case
        ("http://127.0.0.1:2381", False, ("127.0.0.1", 2381, "HTTP")),
        ("https://10.0.0.1:12381,http://127.0.0.1:2381", False, ("10.0.0.1", 12381, "HTTPS")),
        ("HTTPS://10.0.0.1:12381", False, ("10.0.0.1", 12381, "HTTPS")),  # url.Parse lowers the scheme
        ("http://:2382", False, ("127.0.0.1", 2382, "HTTP")),
        ("http://:2382", True, ("::1", 2382, "HTTP")),
        ("http://[fd00::1]", True, ("fd00::1", 2381, "HTTP")),
        ("unix://localhost:2382", False, ("localhost", 2382, "HTTP")),  # only "https" is HTTPS
        ("http://10.0.0.1:0", False, ("10.0.0.1", 2381, "HTTP")),  # ParsePort refuses 0
        ("http://10.0.0.1:port", True, ("::1", 2381, "HTTP")),  # url.Parse fails: all defaults
        ("127.0.0.1:2382", False, ("127.0.0.1", 2381, "HTTP")),  # no scheme: url.Parse fails
    ],
)
def test_etcd_probe_endpoint_as_kubeadm(urls: str, ipv6: bool, endpoint: tuple[str, int, str]) -> None:
    assert static_pods.etcd.etcd_probe_endpoint(urls, ipv6) == endpoint


def test_etcd_probe_without_host_is_the_members_loopback(tmp_path: Path) -> None:
    """listen-metrics-urls without a host: kubeadm probes the loopback address of the member's family."""
    any_host = "cluster.etcd.extraArgs=[{name: listen-metrics-urls, value: 'http://:2381'}]"
    for plan, loopback in (
        (v6_plan(tmp_path, any_host), "::1"),
        (plan_of("ha-external-etcd", any_host), "127.0.0.1"),
    ):
        container = etcd(plan)["spec"]["containers"][0]
        hosts = {container[p]["httpGet"]["host"] for p in ("livenessProbe", "readinessProbe", "startupProbe")}
        assert hosts == {loopback}


def test_etcd_pod_only_for_external_members() -> None:
    plan = plan_of("ha-external-etcd")
    for name in ("cp-1", "worker-1"):
        with pytest.raises(ValueError) as e:
            static_pods.etcd.etcd_pod(plan, plan.node(name))
        assert str(e.value).startswith(f"{name}: ")


def test_etcd_special_characters_round_trip() -> None:
    nasty = [
        "a: b",
        "#x",
        "l1\nl2",
        "'q\"",
        "{f}",
        "&a",
        "*b",
        "!!python/object:os.system",
        "true",
        "0x10",
        "~",
    ]
    plan = plan_of("ha-external-etcd")
    args = [Arg(name=f"x{i}", value=v) for i, v in enumerate(nasty)]
    settings = plan.settings.model_copy(
        update={"etcd": plan.settings.etcd.model_copy(update={"extra_args": args})}
    )
    pod = etcd(replace(plan, settings=settings))
    loaded = yaml.safe_load(yamlio.dump(pod))
    assert loaded == pod
    assert list(loaded) == list(pod) and list(loaded["spec"]) == list(pod["spec"])
    assert [a for a in command(loaded) if a.startswith("--x")] == [f"--x{i}={v}" for i, v in enumerate(nasty)]


# --- kube-vip ----------------------------------------------------------------------------------


def test_kube_vip_pods() -> None:
    plan = plan_of("ha-stacked")
    for node in plan.control_planes:
        pod = static_pods.load_balancer.kube_vip_pod(plan, node)
        c = pod["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["address"] == "10.77.0.10"
        assert env["vip_interface"] == "eth0"
        assert env["port"] == "6443"
        assert env["vip_arp"] == env["cp_enable"] == env["vip_leaderelection"] == "true"
        assert env["svc_enable"] == "false"
        assert env["vip_nodename"] == node.name
        assert c["image"] == images.KUBE_VIP.upstream_ref
        assert images.KUBE_VIP.upstream_ref.startswith("ghcr.io/kube-vip/kube-vip:v")
        assert c["volumeMounts"][0]["mountPath"] == "/etc/kubernetes/admin.conf"
        host_path = pod["spec"]["volumes"][0]["hostPath"]
        expected = "/etc/kubernetes/super-admin.conf" if node.is_init else "/etc/kubernetes/admin.conf"
        assert host_path == {"path": expected, "type": "File"}
        assert pod["spec"]["hostNetwork"] is True
    assert static_pods.node_static_pod_files(plan, plan.node("worker-1")) == []


def test_kube_vip_ipv6(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        V6_EXTERNAL.replace("kind: haproxy-keepalived", "kind: kube-vip").replace(
            "role: etcd", "role: worker"
        )
    )
    plan = plan_of(str(path))
    container = static_pods.load_balancer.kube_vip_pod(plan, plan.node("cp-1"))["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["address"] == "fd00:77::10"
    assert env["vip_subnet"] == "128"


# --- haproxy / keepalived ----------------------------------------------------------------------


def test_load_balancer_files_per_node() -> None:
    plan = plan_of("ha-external-etcd")
    files = {f.path: f for f in static_pods.node_static_pod_files(plan, plan.node("cp-2"))}
    assert set(files) == {
        "/etc/kubernetes/manifests/haproxy.yaml",
        "/etc/kubernetes/manifests/keepalived.yaml",
        "/etc/haproxy/haproxy.cfg",
        "/etc/keepalived/keepalived.conf",
        "/etc/keepalived/check_apiserver.sh",
    }
    assert files["/etc/kubernetes/manifests/haproxy.yaml"].mode == 0o600
    assert files["/etc/kubernetes/manifests/keepalived.yaml"].mode == 0o600
    assert files["/etc/keepalived/check_apiserver.sh"].mode == 0o755
    assert files["/etc/keepalived/keepalived.conf"].mode == 0o600  # holds the VRRP auth_pass
    assert all(f.sensitivity is Sensitivity.PUBLIC and f.owner == "root:root" for f in files.values())
    assert [f.path for f in static_pods.node_static_pod_files(plan, plan.node("etcd-3"))] == [
        "/etc/kubernetes/manifests/etcd.yaml"
    ]
    assert static_pods.node_static_pod_files(plan, plan.node("worker-2")) == []
    for name in ("ha-stacked", "ha-external-etcd", "etcd-cluster", "single-node", "single-master"):
        some = plan_of(name)
        for node in some.nodes:
            made = static_pods.node_static_pod_files(some, node)
            manifests = [f.path for f in made if f.path.startswith("/etc/kubernetes/manifests/")]
            assert manifests == [f"/etc/kubernetes/manifests/{pod}.yaml" for pod in node.static_pods]
    for kind in ("none", "external"):
        sets = [f"cluster.loadBalancer={{kind: {kind}}}", "cluster.controlPlaneEndpoint=lb.example.com"]
        other = plan_of("ha-stacked", *sets)
        assert all(static_pods.node_static_pod_files(other, n) == [] for n in other.nodes)


def test_haproxy_cfg_lists_every_control_plane() -> None:
    plan = plan_of("ha-external-etcd")
    cfg = static_pods.load_balancer.haproxy_cfg(plan)
    assert "    bind *:8443\n" in cfg
    servers = [line.split() for line in cfg.splitlines() if line.strip().startswith("server ")]
    assert [s[1:3] for s in servers] == [
        ["cp-1", "10.77.0.11:6443"],
        ["cp-2", "10.77.0.12:6443"],
        ["cp-3", "10.77.0.13:6443"],
    ]
    assert "option httpchk GET /healthz" in cfg
    pod = static_pods.load_balancer.haproxy_pod(plan, plan.node("cp-1"))
    assert pod["spec"]["containers"][0]["livenessProbe"]["httpGet"]["port"] == 8443


def test_keepalived_priorities() -> None:
    plan = plan_of("ha-external-etcd")
    confs = [static_pods.load_balancer.keepalived_conf(plan, cp) for cp in plan.control_planes]

    def value(conf: str, key: str) -> str:
        return next(line.split()[1] for line in conf.splitlines() if line.strip().startswith(key + " "))

    assert [value(c, "state") for c in confs] == ["MASTER", "BACKUP", "BACKUP"]
    priorities = [int(value(c, "priority")) for c in confs]
    weight = int(value(confs[0], "weight"))
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == 3
    assert max(priorities) + weight < min(priorities)  # any failing node drops below every healthy one
    assert len({value(c, "virtual_router_id") for c in confs}) == 1
    assert "10.77.0.10" in confs[0]
    assert "unicast_src_ip 10.77.0.12" in confs[1]
    assert static_pods.load_balancer.vrrp_router_id(plan) != static_pods.load_balancer.vrrp_router_id(
        plan_of("ha-external-etcd", "cluster.name=other")
    )


def test_load_balancer_ipv6(tmp_path: Path) -> None:
    plan = v6_plan(tmp_path)
    cfg = static_pods.load_balancer.haproxy_cfg(plan)
    assert "bind :::8443 v4v6" in cfg
    assert "server cp-1 fd00:77::11:6443 " in cfg
    conf = static_pods.load_balancer.keepalived_conf(plan, plan.node("cp-1"))
    assert "authentication" not in conf and "fd00:77::10" in conf
    script = static_pods.load_balancer.check_apiserver_sh(plan)
    assert "https://[::1]:" in script and "https://[fd00:77::10]:" in script


def test_template_values_cannot_change_structure() -> None:
    plan = plan_of("ha-external-etcd")
    lb = plan.settings.load_balancer.model_copy(update={"interface": "eth0\n    virtual_ipaddress {"})
    bad = replace(plan, settings=plan.settings.model_copy(update={"load_balancer": lb}))
    # Past validation (which refuses such values at load): the renderer still refuses, as a bug.
    with pytest.raises(AssertionError, match=r"^cluster\.loadBalancer\.interface: "):
        static_pods.load_balancer.keepalived_conf(bad, bad.node("cp-1"))
    bad = replace(plan, name="x\nbackend evil")
    balancer = static_pods.load_balancer
    for render in (balancer.haproxy_cfg, lambda p: balancer.keepalived_conf(p, p.node("cp-1"))):
        with pytest.raises(AssertionError):
            render(bad)


def _with_node(plan: ClusterPlan, node: str, **changes: Any) -> ClusterPlan:
    """The plan with one node changed past validation, as a renderer bug could hand it over."""
    return replace(plan, nodes=tuple(replace(n, **changes) if n.name == node else n for n in plan.nodes))


SCOPED = ipaddress.ip_address("fe80::1%eth0")  # a zone: no `address` template value


@pytest.mark.parametrize(
    ("node", "changes", "message"),
    [
        ("cp-2", {"name": "cp-2\n"}, "nodes[4].name: 'cp-2\\n'"),
        ("cp-2", {"ip": SCOPED}, "nodes[4].ip: 'fe80::1%eth0'"),
    ],
)
def test_haproxy_cfg_names_the_field_it_refuses(node: str, changes: dict[str, Any], message: str) -> None:
    bad = _with_node(plan_of("ha-external-etcd"), node, **changes)
    with pytest.raises(AssertionError) as e:
        static_pods.load_balancer.haproxy_cfg(bad)
    assert str(e.value) == f"{message} cannot be written into a load-balancer config"


@pytest.mark.parametrize(
    ("node", "changes", "message"),
    [
        ("cp-1", {"name": "cp_1"}, "nodes[3].name: 'cp_1'"),
        ("cp-1", {"ip": SCOPED}, "nodes[3].ip: 'fe80::1%eth0'"),  # the node's own unicast_src_ip
        ("cp-3", {"ip": SCOPED}, "nodes[5].ip: 'fe80::1%eth0'"),  # a unicast peer
    ],
)
def test_keepalived_conf_names_the_field_it_refuses(node: str, changes: dict[str, Any], message: str) -> None:
    bad = _with_node(plan_of("ha-external-etcd"), node, **changes)
    with pytest.raises(AssertionError) as e:
        static_pods.load_balancer.keepalived_conf(bad, bad.control_planes[0])
    assert str(e.value) == f"{message} cannot be written into a load-balancer config"


def test_cluster_name_and_vip_are_named_when_refused() -> None:
    plan = plan_of("ha-external-etcd")
    balancer = static_pods.load_balancer
    bad = replace(plan, name="x\nbackend evil")
    expected = "cluster.name: 'x\\nbackend evil' cannot be written into a load-balancer config"
    for render in (balancer.haproxy_cfg, lambda p: balancer.keepalived_conf(p, p.node("cp-1"))):
        with pytest.raises(AssertionError) as e:
            render(bad)
        assert str(e.value) == expected
    lb = plan.settings.load_balancer.model_copy(update={"vip": SCOPED})
    bad = replace(plan, settings=plan.settings.model_copy(update={"load_balancer": lb}))
    expected = "cluster.loadBalancer.vip: 'fe80::1%eth0' cannot be written into a load-balancer config"
    for render in (balancer.check_apiserver_sh, lambda p: balancer.keepalived_conf(p, p.node("cp-1"))):
        with pytest.raises(AssertionError) as e:
            render(bad)
        assert str(e.value) == expected


def test_load_balancer_renderers_refuse_another_kind() -> None:
    balancer = static_pods.load_balancer
    stacked, external = plan_of("ha-stacked"), plan_of("ha-external-etcd")
    wrong = "cluster.loadBalancer is kube-vip, not haproxy-keepalived with a vip"
    for render in (
        balancer.haproxy_cfg,
        balancer.check_apiserver_sh,
        lambda p: balancer.keepalived_conf(p, p.node("cp-1")),
        lambda p: balancer.haproxy_pod(p, p.node("cp-1")),
        lambda p: balancer.keepalived_pod(p, p.node("cp-1")),
    ):
        with pytest.raises(ValueError) as e:
            render(stacked)
        assert str(e.value) == wrong
    with pytest.raises(ValueError) as e:
        balancer.kube_vip_pod(external, external.node("cp-1"))
    assert str(e.value) == "cluster.loadBalancer is haproxy-keepalived, not kube-vip with a vip"
    lb = external.settings.load_balancer.model_copy(update={"vip": None})
    no_vip = replace(external, settings=external.settings.model_copy(update={"load_balancer": lb}))
    with pytest.raises(ValueError) as e:
        balancer.haproxy_cfg(no_vip)
    assert str(e.value) == "cluster.loadBalancer is haproxy-keepalived, not haproxy-keepalived with a vip"


def test_load_balancer_pods_only_on_control_planes() -> None:
    balancer = static_pods.load_balancer
    for profile, renders in (
        ("ha-stacked", (balancer.kube_vip_pod,)),
        ("ha-external-etcd", (balancer.haproxy_pod, balancer.keepalived_pod, balancer.keepalived_conf)),
    ):
        plan = plan_of(profile)
        for render in renders:
            with pytest.raises(ValueError) as e:
                render(plan, plan.node("worker-1"))
            assert str(e.value) == "worker-1 is not a control plane"


def test_kube_vip_needs_the_plans_kubeconfig_choice() -> None:
    """kube-vip's kubeconfig comes from the plan (super-admin.conf on the init node): a control plane the
    plan gave no kube-vip pod has none, and rendering one anyway is a bug."""
    plan = plan_of("ha-stacked")
    bad = _with_node(plan, "cp-2", static_pods=())
    with pytest.raises(AssertionError) as e:
        static_pods.load_balancer.kube_vip_pod(bad, bad.node("cp-2"))
    assert str(e.value) == "the plan gives every control plane with kube-vip one"


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
@pytest.mark.parametrize("v6", [False, True])
def test_haproxy_accepts_the_config(tmp_path: Path, v6: bool) -> None:
    plan = v6_plan(tmp_path) if v6 else plan_of("ha-external-etcd")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(static_pods.load_balancer.haproxy_cfg(plan))
    run = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ALERT" not in run.stderr and "WARNING" not in run.stderr, run.stderr
    cfg.write_text(
        static_pods.load_balancer.haproxy_cfg(plan).replace(
            "backend apiserver", "backend apiserver\n    bogus-keyword"
        )
    )
    assert subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, check=False).returncode != 0


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("keepalived") is None, reason="keepalived is not installed")
@pytest.mark.parametrize("v6", [False, True])
def test_keepalived_accepts_the_config(tmp_path: Path, v6: bool) -> None:
    plan = v6_plan(tmp_path) if v6 else plan_of("ha-external-etcd")
    for cp in plan.control_planes:
        conf = tmp_path / "keepalived.conf"
        script = static_pods.load_balancer.CHECK_SCRIPT_PATH
        conf.write_text(static_pods.load_balancer.keepalived_conf(plan, cp).replace(script, "/bin/true"))
        run = subprocess.run(
            ["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, run.stdout + run.stderr
    conf.write_text(static_pods.load_balancer.keepalived_conf(plan, cp).replace("priority", "priorit"))
    run = subprocess.run(
        ["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True, check=False
    )
    assert run.returncode != 0


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("v6", [False, True])
def test_check_script_is_clean_sh(tmp_path: Path, v6: bool) -> None:
    plan = v6_plan(tmp_path) if v6 else plan_of("ha-external-etcd")
    script = tmp_path / "check_apiserver.sh"
    script.write_text(static_pods.load_balancer.check_apiserver_sh(plan))
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    run = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout
    # Nobody holds the VIP and nothing listens: the check must fail, not hang.
    start = time.monotonic()
    fail = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False, timeout=30)
    assert fail.returncode == 1 and "Error GET" in fail.stderr
    assert time.monotonic() - start < 10


# --- etcd as a real peer -------------------------------------------------------------------------


def _etcd_version() -> tuple[int, int]:
    out = subprocess.run(["etcd", "--version"], capture_output=True, text=True, check=False).stdout
    major, minor = out.split("Version:")[1].split()[0].split(".")[:2]
    return int(major), int(minor)


def _write_etcd_pki(directory: Path, ip: str) -> None:
    """etcd CA, server and peer certificates, as kubeadm's certlist describes them (spec 1.1)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{name}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etcd-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write("ca", ca, ca_key)
    sans = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address(ip)),
        ]
    )
    for name, serial in (("server", 2), ("peer", 3)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "member")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(sans, critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        write(name, cert, key)


def _tls_get(pki: Path, host: str, port: int, path: str, *, with_cert: bool) -> int | None:
    """HTTP status of a GET over TLS that trusts the etcd CA, or None when the server refuses the client."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (ssl.SSLError, ConnectionError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")
def test_etcd_runs_the_generated_command(tmp_path: Path) -> None:
    """A one-member cluster on a loopback address runs the pod's exact command and turns ready."""
    if _etcd_version() >= (3, 6):
        minors = [m for m in MINORS if versions.TABLE[m].etcd_36_flags]
    else:
        minors = [m for m in MINORS if not versions.TABLE[m].etcd_36_flags]
    if not minors or not all(_free(p) for p in (2379, 2380, 2381)):
        pytest.skip("no minor matches the local etcd's flag set, or etcd's ports are busy")
    path = tmp_path / "one.yaml"
    path.write_text(
        f"""
extends: etcd-cluster
cluster: {{kubernetesVersion: "1.{minors[-1]}"}}
nodes:
  - {{name: solo, role: etcd, ip: 127.0.0.2}}
"""
    )
    plan = plan_of(str(path))
    pod = etcd(plan, "solo")
    pki, data = tmp_path / "pki", tmp_path / "data"
    pki.mkdir()
    _write_etcd_pki(pki, "127.0.0.2")
    cmd = [
        a.replace(static_pods.etcd.ETCD_PKI, str(pki)).replace("/var/lib/etcd", str(data))
        for a in command(pod)
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        probe = pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]
        url = f"http://{probe['host']}:2381{probe['path']}"
        if _etcd_version() < (3, 5):
            url = f"http://{probe['host']}:2381/health"  # /readyz arrived in etcd 3.5
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:  # loopback only
                    status = resp.status
                    break
            except OSError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert status == 200
        # client and peer URLs demand a certificate signed by the etcd CA (client-cert-auth and
        # peer-client-cert-auth); with one, the same request is answered
        for port, path in ((2379, "/version"), (2380, "/members")):
            assert _tls_get(pki, "127.0.0.2", port, path, with_cert=True) == 200
            refused = _tls_get(pki, "127.0.0.2", port, path, with_cert=False)
            assert refused is None, f"etcd answered {refused} on :{port} to a client without a certificate"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- determinism and goldens -------------------------------------------------------------------


GOLDEN_NODES = [(p, n.name) for p in PROFILES for n in golden_plan(p).nodes]
LB_FILES = {
    "/etc/haproxy/haproxy.cfg",
    "/etc/keepalived/keepalived.conf",
    "/etc/keepalived/check_apiserver.sh",
}


@pytest.mark.parametrize(("profile", "node"), GOLDEN_NODES, ids=[f"{p}/{n}" for p, n in GOLDEN_NODES])
def test_golden(profile: str, node: str) -> None:
    plan = golden_plan(profile)
    files = static_pods.node_static_pod_files(plan, plan.node(node))
    golden = references(profile, node)
    # exactly the static pods and load-balancer files the golden node holds
    ours = [p for p in golden if p.startswith("/etc/kubernetes/manifests/") or p in LB_FILES]
    assert sorted(f.path for f in files) == sorted(ours)
    for f in files:
        compare_golden(golden[f.path], f.content)
