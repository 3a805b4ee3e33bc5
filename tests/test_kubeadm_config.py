"""builder.node.kubeadm_config / builder.model.kubeadm_schema: kubeadm's config documents as data.

The golden test compares every embedded profile's kubeadm documents with the golden tree
(tests/golden_tree.py), which `make golden` refreshes from a bake of the same profile and bundle.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder import resources, yamlio
from builder.errors import BakeError, Problem, ProfileError
from builder.files import Sensitivity
from builder.model import Profile, kubeadm_schema, versions
from builder.node import kubeadm_config as kc
from builder.plan import ClusterPlan, build_plan
from builder.validation.profile import load_profile

from .golden_tree import PROFILES, bundle_ca_hash, bundle_token, golden_plan, references
from .helpers import compare_golden, plan_of

TOKEN = "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "0123456789abcdef" * 4
MINORS = sorted(versions.TABLE)

V6_STACKED = """
cluster:
  name: v6-stacked
  kubernetesVersion: "1.37"
  podSubnet: fd00:10:244::/56
  serviceSubnet: fd00:10:96::/112
  loadBalancer: {kind: kube-vip, vip: "fd00:77::10", interface: eth0}
defaults: {prefixLength: 64, gateway: "fd00:77::1", dns: ["fd00:77::1"]}
nodes:
  - {name: cp-1, role: control-plane, ip: "fd00:77::11"}
  - {name: cp-2, role: control-plane, ip: "fd00:77::12"}
  - {name: cp-3, role: control-plane, ip: "fd00:77::13"}
  - {name: worker-1, role: worker, ip: "fd00:77::21"}
"""


def plan_from_text(tmp_path: Path, text: str, *sets: str) -> ClusterPlan:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return plan_of(str(path), *sets)


def docs_of(plan: ClusterPlan, node_name: str) -> list[dict[str, Any]]:
    return kc.config_documents(plan, plan.node(node_name), TOKEN, CA_HASH)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


# --- schema: every generated document, every profile, every minor --------------------------------


@pytest.mark.parametrize("minor", MINORS)
@pytest.mark.parametrize("name", resources.profile_names())
def test_every_document_has_only_known_fields(name: str, minor: int) -> None:
    plan = plan_of(name, f"cluster.kubernetesVersion=1.{minor}")
    seen = set()
    for node in plan.nodes:
        for doc in kc.config_documents(plan, node, TOKEN, CA_HASH):
            assert kubeadm_schema.unknown_fields(doc) == [], (name, minor, node.name, doc["kind"])
            seen.add(doc["kind"])
    if plan.control_planes:
        assert seen >= {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"}
    if plan.workers or len(plan.control_planes) > 1:
        assert "JoinConfiguration" in seen


def test_misspelt_fields_are_reported() -> None:
    plan = plan_of("ha-stacked")
    init, cluster, kubelet = docs_of(plan, "cp-1")
    (join,) = docs_of(plan, "cp-2")

    bad = copy.deepcopy(init)
    bad["nodeRegistraton"] = bad.pop("nodeRegistration")
    assert kubeadm_schema.unknown_fields(bad) == ["nodeRegistraton"]

    bad = copy.deepcopy(init)
    bad["nodeRegistration"]["kubeletExtraArgs"][0]["nam"] = "x"
    assert kubeadm_schema.unknown_fields(bad) == ["nodeRegistration.kubeletExtraArgs[0].nam"]

    bad = copy.deepcopy(cluster)
    bad["etcd"]["local"]["dataDirectory"] = "/x"
    bad["apiServer"]["timeoutForControlPlane"] = "4m0s"  # v1beta3 only: moved to timeouts in v1beta4
    assert kubeadm_schema.unknown_fields(bad) == [
        "apiServer.timeoutForControlPlane",
        "etcd.local.dataDirectory",
    ]

    bad = copy.deepcopy(join)
    bad["discovery"]["timeout"] = "5m0s"  # v1beta3 only
    bad["controlPlane"]["certificateKeys"] = "x"
    assert kubeadm_schema.unknown_fields(bad) == ["discovery.timeout", "controlPlane.certificateKeys"]

    bad = copy.deepcopy(kubelet)
    bad["cgroupDrivers"] = "systemd"
    bad["authentication"]["x509"]["clientCAFil"] = "/x"
    assert kubeadm_schema.unknown_fields(bad) == ["authentication.x509.clientCAFil", "cgroupDrivers"]

    assert kubeadm_schema.unknown_fields(
        {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "InitConfiguration"}
    ) == ["kind"]


def test_join_config_holds_only_a_join_configuration() -> None:
    plan = plan_of("ha-stacked")
    for name in ("cp-2", "worker-1"):
        assert [d["kind"] for d in docs_of(plan, name)] == ["JoinConfiguration"]
    assert [d["kind"] for d in docs_of(plan, "cp-1")] == [
        "InitConfiguration",
        "ClusterConfiguration",
        "KubeletConfiguration",
    ]


# --- ClusterConfiguration ----------------------------------------------------------------------


def test_cluster_configuration_stacked() -> None:
    plan = plan_of("ha-stacked")
    c = kc.cluster_configuration(plan)
    assert c["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert c["kubernetesVersion"] == f"v{plan.version}"
    assert c["clusterName"] == "ha-stacked"
    assert c["controlPlaneEndpoint"] == "10.77.0.10:6443"
    assert c["apiServer"]["certSANs"] == ["10.77.0.10"]
    assert c["etcd"] == {"local": {"dataDir": "/var/lib/etcd"}}
    assert c["networking"] == {
        "serviceSubnet": "10.96.0.0/12",
        "podSubnet": "10.244.0.0/16",
        "dnsDomain": "cluster.local",
    }
    assert c["certificateValidityPeriod"] == "8760h0m0s"
    assert c["caCertificateValidityPeriod"] == "87600h0m0s"
    assert c["encryptionAlgorithm"] == "RSA-2048"
    assert "featureGates" not in c  # 1.37: ControlPlaneKubeletLocalMode's behaviour is built in


def test_cluster_configuration_external_etcd() -> None:
    plan = plan_of("ha-external-etcd")
    c = kc.cluster_configuration(plan)
    assert c["controlPlaneEndpoint"] == "10.77.0.10:8443"
    assert c["etcd"] == {
        "external": {
            "endpoints": ["https://10.77.0.31:2379", "https://10.77.0.32:2379", "https://10.77.0.33:2379"],
            "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
            "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
        }
    }


def test_cluster_configuration_from_profile_settings() -> None:
    plan = plan_of(
        "single-master",
        "cluster.controlPlaneEndpoint=api.example.com",
        "cluster.apiServer.certSANs=[api.example.com, 10.1.2.3]",
        "cluster.apiServer.extraArgs={audit-log-maxage: 30}",
        "cluster.scheduler.extraArgs=[{name: v, value: '2'}, {name: v, value: '3'}]",
        "cluster.etcd.extraArgs={snapshot-count: '5000'}",
        "cluster.etcd.serverCertSANs=[etcd.example.com]",
        "cluster.certificateValidityPeriod=2160h30m",
        "cluster.caCertificateValidityPeriod=90m",
        "cluster.encryptionAlgorithm=ECDSA-P256",
        "cluster.imageRepository=registry.example.com/k8s",
        "cluster.secretsEncryption=none",  # its flag and volume: test_apiserver_reads_the_encryption_…
    )
    c = kc.cluster_configuration(plan)
    assert c["controlPlaneEndpoint"] == "api.example.com:6443"
    assert c["apiServer"] == {
        "certSANs": ["api.example.com", "10.1.2.3"],
        "extraArgs": [{"name": "audit-log-maxage", "value": "30"}],
    }
    assert c["scheduler"] == {"extraArgs": [{"name": "v", "value": "2"}, {"name": "v", "value": "3"}]}
    assert "controllerManager" not in c
    assert c["etcd"]["local"] == {
        "dataDir": "/var/lib/etcd",
        "serverCertSANs": ["etcd.example.com"],
        "extraArgs": [{"name": "snapshot-count", "value": "5000"}],
    }
    assert c["certificateValidityPeriod"] == "2160h30m0s"
    assert c["caCertificateValidityPeriod"] == "1h30m0s"
    assert c["encryptionAlgorithm"] == "ECDSA-P256"
    assert c["imageRepository"] == "registry.example.com/k8s"


@pytest.mark.parametrize("minor", MINORS)
def test_control_plane_kubelet_local_mode_only_where_it_is_off_by_default(minor: int) -> None:
    plan = plan_of("ha-stacked", f"cluster.kubernetesVersion=1.{minor}")
    gates = kc.cluster_configuration(plan).get("featureGates", {})
    state = versions.TABLE[minor].gate_state(kc.LOCAL_MODE_GATE)
    assert (gates.get(kc.LOCAL_MODE_GATE) is True) == (state == versions.ALPHA)
    assert (kc.LOCAL_MODE_GATE in gates) == (state == versions.ALPHA)


def test_user_feature_gate_wins_over_bakes_default() -> None:
    plan = plan_of(
        "ha-stacked",
        "cluster.kubernetesVersion=1.31",
        "cluster.featureGates={ControlPlaneKubeletLocalMode: false}",
    )
    assert kc.cluster_configuration(plan)["featureGates"] == {"ControlPlaneKubeletLocalMode": False}
    # Refusals of unknown / removed / locked gates happen when the profile is loaded: test_validation.py.


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (30, "30s"), (300, "5m0s"), (5400, "1h30m0s"), (86400, "24h0m0s"), (31536000, "8760h0m0s")],
)
def test_go_duration(seconds: int, text: str) -> None:
    assert kc.go_duration(seconds) == text


# --- KubeletConfiguration ----------------------------------------------------------------------


def test_kubelet_configuration_defaults_and_merge() -> None:
    plan = plan_of(
        "single-master",
        "cluster.kubelet.config={maxPods: 200, authentication: {webhook: {cacheTTL: 30s}},"
        " cgroupDriver: cgroupfs}",
    )
    k = kc.kubelet_configuration(plan, plan.node("cp-1"))
    assert k["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert k["kind"] == "KubeletConfiguration"
    assert k["clusterDNS"] == ["10.96.0.10"]
    assert k["clusterDomain"] == "cluster.local"
    assert k["containerRuntimeEndpoint"] == "unix:///var/run/containerd/containerd.sock"
    assert k["rotateCertificates"] is True
    assert k["maxPods"] == 200
    assert k["cgroupDriver"] == "cgroupfs"
    assert k["authentication"]["webhook"] == {"enabled": True, "cacheTTL": "30s"}
    assert k["authentication"]["x509"] == {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}

    plan = plan_of("single-master", "cluster.containerRuntime=crio", "cluster.dnsDomain=k8s.example")
    k = kc.kubelet_configuration(plan, plan.node("cp-1"))
    assert k["containerRuntimeEndpoint"] == "unix:///var/run/crio/crio.sock"
    assert k["clusterDomain"] == "k8s.example"


# --- Init / Join ---------------------------------------------------------------------------------


def test_init_configuration() -> None:
    plan = plan_of("ha-stacked", "cluster.join=token")
    i = kc.init_configuration(plan, plan.node("cp-1"), TOKEN)
    assert i["bootstrapTokens"] == [
        {
            "token": TOKEN,
            "ttl": "24h0m0s",
            "usages": ["signing", "authentication"],
            "groups": ["system:bootstrappers:kubeadm:default-node-token"],
        }
    ]
    reg = i["nodeRegistration"]
    assert reg["name"] == "cp-1"
    assert reg["criSocket"] == "unix:///var/run/containerd/containerd.sock"
    assert "taints" not in reg  # kubeadm's control-plane taint
    assert "ignorePreflightErrors" not in reg  # init only checks its own four manifests
    assert reg["kubeletExtraArgs"] == [{"name": "node-ip", "value": "10.77.0.11"}]
    assert i["localAPIEndpoint"] == {"advertiseAddress": "10.77.0.11", "bindPort": 6443}
    with pytest.raises(BakeError):
        kc.init_configuration(plan, plan.node("cp-2"), TOKEN)
    with pytest.raises(BakeError):
        kc.init_configuration(plan, plan.node("cp-1"), "not-a-token")


def test_taints_empty_when_scheduling_on_control_planes() -> None:
    plan = plan_of("single-node")
    assert kc.init_configuration(plan, plan.node("dev-1"), TOKEN)["nodeRegistration"]["taints"] == []
    plan = plan_of("ha-stacked", "cluster.allowSchedulingOnControlPlanes=true")
    assert kc.join_configuration(plan, plan.node("cp-2"), TOKEN, CA_HASH)["nodeRegistration"]["taints"] == []
    assert (
        "taints" not in kc.join_configuration(plan, plan.node("worker-1"), TOKEN, CA_HASH)["nodeRegistration"]
    )


def test_certificate_mode_init_lists_an_inert_token() -> None:
    """kubeadm init creates one token whatever the config says (a random 24h one when none is listed,
    SetDefaults_BootstrapTokens): with join credentials it is the bundle's, expired 1s after creation."""
    plan = plan_of("ha-stacked")
    assert plan.settings.join.value == "certificate"  # the default
    (token,) = kc.init_configuration(plan, plan.node("cp-1"), TOKEN)["bootstrapTokens"]
    assert token["token"] == TOKEN
    assert token["ttl"] == "1s"  # literal: not 0, which kubeadm reads as "never expires"


@pytest.mark.parametrize("profile", ["ha-stacked", "single-master", "ha-external-etcd"])
def test_certificate_mode_joins_with_the_nodes_own_file(profile: str) -> None:
    """discovery.file with the baked kubeconfig; no token, no CA hash, no tlsBootstrapToken anywhere."""
    plan = plan_of(profile)
    joining = [n for n in plan.nodes if n.role.value != "etcd" and not n.is_init]
    assert any(n.role.value == "worker" for n in joining)
    for node in joining:
        (doc,) = kc.config_documents(plan, node, TOKEN, CA_HASH)
        assert doc["discovery"] == {"file": {"kubeConfigPath": "/etc/bake/join.conf"}}, node.name
        text = yaml.safe_dump(doc)
        assert TOKEN.split(".")[1] not in text and "sha256:" not in text and "Token" not in text


def test_join_configurations() -> None:
    plan = plan_of("ha-stacked", "cluster.join=token")
    worker = kc.join_configuration(plan, plan.node("worker-1"), TOKEN, CA_HASH)
    assert worker["discovery"] == {
        "bootstrapToken": {"apiServerEndpoint": "10.77.0.10:6443", "token": TOKEN, "caCertHashes": [CA_HASH]}
    }
    assert "controlPlane" not in worker
    assert "ignorePreflightErrors" not in worker["nodeRegistration"]
    assert worker["timeouts"] == {"discovery": "5m0s"}

    cp = kc.join_configuration(plan, plan.node("cp-2"), TOKEN, CA_HASH)
    assert cp["controlPlane"] == {"localAPIEndpoint": {"advertiseAddress": "10.77.0.12", "bindPort": 6443}}
    assert "certificateKey" not in cp["controlPlane"]  # PKI is pre-placed
    # kube-vip.yaml is in /etc/kubernetes/manifests before kubeadm join runs, and kubeadm's join
    # preflight no longer minds (DirAvailable--etc-kubernetes-manifests went in k/k PR #104942).
    assert "ignorePreflightErrors" not in cp["nodeRegistration"]

    plan = plan_of(
        "ha-stacked",
        "cluster.loadBalancer={kind: external}",
        "cluster.controlPlaneEndpoint=lb.example.com:443",
        "cluster.join=token",
    )
    cp = kc.join_configuration(plan, plan.node("cp-2"), TOKEN, CA_HASH)
    assert "ignorePreflightErrors" not in cp["nodeRegistration"]
    assert cp["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "lb.example.com:443"

    with pytest.raises(BakeError):
        kc.join_configuration(plan, plan.node("cp-1"), TOKEN, CA_HASH)
    with pytest.raises(BakeError):
        kc.join_configuration(plan, plan.node("cp-2"), TOKEN, "sha256:XYZ")


SLOW = (
    "cluster.kubeadmTimeouts.controlPlaneComponentHealthCheck=20m",
    "cluster.kubeadmTimeouts.kubeletHealthCheck=10m",
    "cluster.kubeadmTimeouts.kubernetesAPICall=3m30s",
    "cluster.kubeadmTimeouts.etcdAPICall=5m",
    "cluster.kubeadmTimeouts.tlsBootstrap=15m",
    "cluster.kubeadmTimeouts.discovery=1h",
)


def test_kubeadm_timeouts_come_from_the_profile() -> None:
    """Slow hardware: the profile's timeouts reach init and join in kubeadm's form, each where the command
    reads it; the external etcd pods' startup probe follows the control-plane health check, as kubeadm's
    own static pods do (failureThreshold = timeout / 10 s)."""
    plan = plan_of("ha-external-etcd", *SLOW)
    init = kc.init_configuration(plan, plan.node("cp-1"), TOKEN)
    assert init["timeouts"] == {
        "controlPlaneComponentHealthCheck": "20m0s",
        "kubeletHealthCheck": "10m0s",
        "kubernetesAPICall": "3m30s",
        "etcdAPICall": "5m0s",
    }
    for name in ("cp-2", "worker-1"):
        join = kc.join_configuration(plan, plan.node(name), TOKEN, CA_HASH)
        assert join["timeouts"] == {**init["timeouts"], "tlsBootstrap": "15m0s", "discovery": "1h0m0s"}
    assert not kubeadm_schema.unknown_fields(init)
    from builder.node import static_pods

    pod = static_pods.etcd.etcd_pod(plan, plan.node("etcd-1"))
    assert pod["spec"]["containers"][0]["startupProbe"]["failureThreshold"] == 120
    # Only what is set is written; the rest stays kubeadm's default (and discovery stays pinned at 5m).
    plan = plan_of("ha-external-etcd", "cluster.kubeadmTimeouts.kubernetesAPICall=2m")
    assert kc.init_configuration(plan, plan.node("cp-1"), TOKEN)["timeouts"] == {"kubernetesAPICall": "2m0s"}
    worker = kc.join_configuration(plan, plan.node("worker-1"), TOKEN, CA_HASH)
    assert worker["timeouts"] == {"kubernetesAPICall": "2m0s", "discovery": "5m0s"}
    probe = static_pods.etcd.etcd_pod(plan, plan.node("etcd-1"))["spec"]["containers"][0]["startupProbe"]
    assert probe["failureThreshold"] == 24
    plan = plan_of("ha-stacked")
    assert "timeouts" not in kc.init_configuration(plan, plan.node("cp-1"), TOKEN)


@pytest.mark.parametrize(
    ("value", "message"),
    [("0s", "longer than 0s"), ("10 minutes", "not a duration"), ("-5m", "not a duration")],
)
def test_kubeadm_timeouts_are_validated(value: str, message: str) -> None:
    with pytest.raises(ProfileError) as e:
        load_profile("single-node", [f"cluster.kubeadmTimeouts.discovery={value}"])
    assert [p.path for p in e.value.problems] == ["cluster.kubeadmTimeouts.discovery"]
    assert message in e.value.problems[0].message
    with pytest.raises(ProfileError) as e:
        load_profile("single-node", ["cluster.kubeadmTimeouts.upgradeManifests=5m"])
    assert [p.path for p in e.value.problems] == ["cluster.kubeadmTimeouts.upgradeManifests"]


def test_single_master_join_uses_the_init_node_address() -> None:
    plan = plan_of("single-master", "cluster.join=token")
    j = kc.join_configuration(plan, plan.node("worker-1"), TOKEN, CA_HASH)
    assert j["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "10.77.0.11:6443"
    assert "controlPlaneEndpoint" not in kc.cluster_configuration(plan)


def test_kubelet_extra_args_order_and_overrides(tmp_path: Path) -> None:
    plan = plan_from_text(
        tmp_path,
        """
extends: single-master
cluster:
  kubelet:
    extraArgs: {max-pods: "200", v: "2"}
nodes:
  - {name: cp-1, role: control-plane, ip: 10.77.0.11}
  - name: worker-1
    role: worker
    ip: 10.77.0.21
    labels: {node.kubernetes.io/pool: blue, example.com/gpu: "true"}
    kubeletExtraArgs: {v: "4"}
""",
    )
    args = kc.init_configuration(plan, plan.node("cp-1"), TOKEN)["nodeRegistration"]["kubeletExtraArgs"]
    assert args == [
        {"name": "node-ip", "value": "10.77.0.11"},
        {"name": "max-pods", "value": "200"},
        {"name": "v", "value": "2"},
    ]
    args = kc.join_configuration(plan, plan.node("worker-1"), TOKEN, CA_HASH)["nodeRegistration"][
        "kubeletExtraArgs"
    ]
    assert args == [
        {"name": "node-ip", "value": "10.77.0.21"},
        {"name": "max-pods", "value": "200"},
        {"name": "v", "value": "4"},
        {"name": "node-labels", "value": "example.com/gpu=true,node.kubernetes.io/pool=blue"},
    ]


def test_allowed_kubelet_labels() -> None:
    plan = plan_of(
        "single-master",
        "nodes[1].labels={topology.kubernetes.io/zone: z1, node.kubernetes.io/role: worker, "
        "sub.kubelet.kubernetes.io/x: y, example.com/empty: ''}",
    )
    (join,) = docs_of(plan, "worker-1")
    assert join["nodeRegistration"]["kubeletExtraArgs"][-1] == {
        "name": "node-labels",
        "value": "example.com/empty=,node.kubernetes.io/role=worker,sub.kubelet.kubernetes.io/x=y,"
        "topology.kubernetes.io/zone=z1",
    }


# --- IPv6 --------------------------------------------------------------------------------------


def test_ipv6(tmp_path: Path) -> None:
    plan = plan_from_text(tmp_path, V6_STACKED)
    init, cluster, kubelet = docs_of(plan, "cp-1")
    assert cluster["controlPlaneEndpoint"] == "[fd00:77::10]:6443"
    assert cluster["apiServer"]["certSANs"] == ["fd00:77::10"]
    assert cluster["networking"]["serviceSubnet"] == "fd00:10:96::/112"
    assert init["localAPIEndpoint"]["advertiseAddress"] == "fd00:77::11"
    assert init["nodeRegistration"]["kubeletExtraArgs"][0] == {"name": "node-ip", "value": "fd00:77::11"}
    assert kubelet["clusterDNS"] == ["fd00:10:96::a"]
    (join,) = docs_of(plan, "worker-1")
    assert join["discovery"] == {"file": {"kubeConfigPath": "/etc/bake/join.conf"}}
    (cp,) = docs_of(plan, "cp-2")
    assert cp["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == "fd00:77::12"
    for node in plan.nodes:
        for doc in docs_of(plan, node.name):
            assert kubeadm_schema.unknown_fields(doc) == []


# --- YAML safety -------------------------------------------------------------------------------

NASTY = [
    "a: b",
    "# not a comment",
    "line1\nline2",
    'it\'s "quoted"',
    "{flow: map}",
    "[1, 2]",
    "&anchor x",
    "*alias",
    "!!python/object:os.system",
    "--- ",
    "...",
    "true",
    "null",
    "~",
    "0123",
    "1e3",
    "0x1F",
    "-",
    "? key",
    "|",
    "@at",
    "%percent",
    " leading space",
    "trailing space ",
    "tab\there",
    "unicode ✓",
]


def _round_trip(docs: list[dict[str, Any]]) -> None:
    text = yamlio.dump_all(docs)
    loaded = list(yaml.safe_load_all(text))
    assert loaded == docs
    for before, after in zip(docs, loaded, strict=True):
        assert list(after) == list(before)


def test_special_characters_cannot_change_structure(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "extends": "ha-stacked",
        "cluster": {
            "apiServer": {"extraArgs": [{"name": f"flag-{i}", "value": v} for i, v in enumerate(NASTY)]},
            "controllerManager": {"extraArgs": [{"name": "x", "value": v} for v in NASTY]},
            "etcd": {"extraArgs": [{"name": "y", "value": v} for v in NASTY]},
            "kubelet": {"extraArgs": [{"name": "z", "value": v} for v in NASTY]},
        },
    }
    path = tmp_path / "nasty.yaml"
    path.write_text(yamlio.dump(data))
    plan = plan_of(str(path))
    assert [a.value for a in plan.settings.api_server.extra_args] == NASTY
    for node in plan.nodes:
        docs = docs_of(plan, node.name)
        _round_trip(docs)
        for f in kc.node_config_files(plan, node, TOKEN, CA_HASH):
            assert list(yaml.safe_load_all(f.content)) == docs
    cluster = by_kind(docs_of(plan, "cp-1"))["ClusterConfiguration"]
    # the user's flags, in order, then the bake's own (cluster.secretsEncryption)
    enc = "/etc/kubernetes/encryption/config.yaml"
    assert [a["value"] for a in cluster["apiServer"]["extraArgs"]] == [*NASTY, enc]
    assert set(cluster) == set(kc.cluster_configuration(plan_of("ha-stacked"))) | {"controllerManager"}


def test_special_characters_in_sans_are_rejected_and_could_not_escape_anyway() -> None:
    with pytest.raises(ProfileError):
        load_profile("ha-stacked", ["cluster.apiServer.certSANs=['a: b', '#c']"])
    # Bypass the profile's semantic checks: the YAML writer still keeps each value a plain string.
    data = yaml.safe_load(resources.profile_text("ha-stacked") or b"")
    base = yaml.safe_load(resources.profile_text("single-master") or b"")
    data = {**base, **data, "defaults": base["defaults"]}
    data.pop("extends", None)
    data["cluster"] = {**base["cluster"], **data["cluster"], "apiServer": {"certSANs": NASTY}}
    data["cluster"]["etcd"] = {"serverCertSANs": NASTY, "peerCertSANs": NASTY}
    plan = build_plan(Profile.model_validate(data))
    for node in plan.nodes:
        _round_trip(docs_of(plan, node.name))
    assert kc.cluster_configuration(plan)["apiServer"]["certSANs"][1:] == NASTY


def test_label_values_that_look_like_other_yaml_types_stay_strings() -> None:
    plan = plan_of(
        "single-master",
        "nodes[1].labels={example.com/a: 'true', example.com/b: '0123', example.com/c: 'null'}",
    )
    (join,) = docs_of(plan, "worker-1")
    _round_trip([join])
    assert (
        join["nodeRegistration"]["kubeletExtraArgs"][-1]["value"]
        == "example.com/a=true,example.com/b=0123,example.com/c=null"
    )


# --- files -------------------------------------------------------------------------------------


def test_node_config_files() -> None:
    plan = plan_of("ha-external-etcd")
    (init,) = kc.node_config_files(plan, plan.node("cp-1"), TOKEN, CA_HASH)
    assert init.path == kc.INIT_CONFIG_PATH == "/run/kubeadm/kubeadm.yaml"
    (join,) = kc.node_config_files(plan, plan.node("worker-1"), TOKEN, CA_HASH)
    assert join.path == kc.JOIN_CONFIG_PATH == "/run/kubeadm/kubeadm-join-config.yaml"
    for f in (init, join):
        assert f.mode == 0o600
        assert f.owner == "root:root"
        assert f.sensitivity is Sensitivity.SECRET
    assert TOKEN.encode() in init.content  # inert (1s) with join credentials, see above
    assert TOKEN.encode() not in join.content
    plan = plan_of("ha-external-etcd", "cluster.join=token")
    (join,) = kc.node_config_files(plan, plan.node("worker-1"), TOKEN, CA_HASH)
    assert TOKEN.encode() in join.content and join.mode == 0o600
    assert kc.node_config_files(plan, plan.node("etcd-1"), TOKEN, CA_HASH) == []
    assert [d["kind"] for d in yaml.safe_load_all(init.content)] == [
        "InitConfiguration",
        "ClusterConfiguration",
        "KubeletConfiguration",
    ]


# --- golden files ------------------------------------------------------------------------------


GOLDEN_NODES = [(p, n.name) for p in PROFILES for n in golden_plan(p).nodes]


@pytest.mark.parametrize(("profile", "node"), GOLDEN_NODES, ids=[f"{p}/{n}" for p, n in GOLDEN_NODES])
def test_golden(profile: str, node: str) -> None:
    plan = golden_plan(profile)
    files = kc.node_config_files(plan, plan.node(node), bundle_token(profile), bundle_ca_hash(profile))
    golden = references(profile, node)
    # exactly the kubeadm documents the golden node holds (none on an etcd member)
    config_paths = {kc.INIT_CONFIG_PATH, kc.JOIN_CONFIG_PATH}
    assert sorted(f.path for f in files) == sorted(p for p in golden if p in config_paths)
    for f in files:
        compare_golden(golden[f.path], f.content)


def test_an_older_kubelet_does_not_change_the_join_document() -> None:
    plan = plan_of("ha-stacked", "nodes[3].kubernetesVersion=1.35")
    older, same = plan.node("worker-1"), plan.node("worker-2")
    assert older.kubelet_info.minor == 35 != plan.info.minor
    a = kc.join_configuration(plan, older, TOKEN, CA_HASH)
    b = kc.join_configuration(plan, same, TOKEN, CA_HASH)
    a_text = yamlio.dump(a).replace("worker-1", "W").replace("10.77.0.21", "IP")
    assert a_text == yamlio.dump(b).replace("worker-2", "W").replace("10.77.0.22", "IP")
    assert kubeadm_schema.unknown_fields(a) == []


# --------------------------------------------------------------------------------------------------
# Secrets encrypted at rest: the apiserver flag and the volume that carries the file


@pytest.mark.parametrize("provider", ["secretbox", "aescbc"])
def test_apiserver_reads_the_encryption_configuration(provider: str) -> None:
    plan = build_plan(load_profile("ha-stacked", [f"cluster.secretsEncryption={provider}"]))
    api = kc.cluster_configuration(plan)["apiServer"]
    path = "/etc/kubernetes/encryption/config.yaml"
    assert {"name": "encryption-provider-config", "value": path} in api["extraArgs"]
    (volume,) = api["extraVolumes"]
    # the file must be inside the volume, or the apiserver would not see it in its container
    assert path.startswith(volume["mountPath"] + "/") and volume["hostPath"] == volume["mountPath"]
    assert volume["readOnly"] is True


def test_no_encryption_adds_nothing_and_lets_the_user_pass_their_own() -> None:
    own = [
        "cluster.secretsEncryption=none",
        "cluster.apiServer.extraArgs={encryption-provider-config: /x.yaml}",
    ]
    api = kc.cluster_configuration(build_plan(load_profile("single-node", own)))["apiServer"]
    assert api["extraArgs"] == [{"name": "encryption-provider-config", "value": "/x.yaml"}]
    assert "extraVolumes" not in api
    with pytest.raises(ProfileError) as info:
        load_profile("single-node", own[1:])
    assert [p.path for p in info.value.problems] == ["cluster.apiServer.extraArgs[0]"]
    with pytest.raises(ProfileError) as info:
        load_profile("single-node", ["cluster.secretsEncryption=aesgcm"])
    assert [p.path for p in info.value.problems] == ["cluster.secretsEncryption"]


# --------------------------------------------------------------------------------------------------
# Details the documents must carry exactly (each found by mutation testing, tests/mutation-survivors.md)


def test_vip_stays_a_cert_san_with_a_dns_endpoint() -> None:
    """kubeadm only adds the endpoint's host to the apiserver SANs: the VIP clients dial must be listed."""
    plan = plan_of("ha-stacked", "cluster.controlPlaneEndpoint=api.example.com:6443")
    assert kc.cluster_configuration(plan)["apiServer"]["certSANs"] == ["api.example.com", "10.77.0.10"]


def test_etcd_and_coredns_image_overrides_are_kubeadms_image_meta() -> None:
    """ClusterConfiguration.etcd.local and .dns embed ImageMeta (imageRepository, imageTag; spec 2)."""
    plan = plan_of(
        "ha-stacked",
        "cluster.images={etcd: {imageRepository: quay.io/coreos, imageTag: v3.6.8},"
        " coredns: {imageTag: v1.12.1}}",
    )
    c = kc.cluster_configuration(plan)
    assert c["etcd"] == {
        "local": {"imageRepository": "quay.io/coreos", "imageTag": "v3.6.8", "dataDir": "/var/lib/etcd"}
    }
    assert c["dns"] == {"imageTag": "v1.12.1", "disabled": False}


def test_etcd_peer_cert_sans() -> None:
    plan = plan_of("ha-stacked", "cluster.etcd.peerCertSANs=[etcd-peer.example.com, 10.77.0.99]")
    assert kc.cluster_configuration(plan)["etcd"] == {
        "local": {"dataDir": "/var/lib/etcd", "peerCertSANs": ["etcd-peer.example.com", "10.77.0.99"]}
    }


def test_components_without_extra_args_write_nothing() -> None:
    """kubeadm's own marshalling omits an empty extraArgs (`json:"extraArgs,omitempty"`); so does bake."""
    plan = plan_of("single-node", "cluster.secretsEncryption=none")
    c = kc.cluster_configuration(plan)
    assert "extraArgs" not in c["apiServer"] and "extraVolumes" not in c["apiServer"]
    assert "controllerManager" not in c and "scheduler" not in c


def test_a_cluster_without_control_plane_has_no_cluster_configuration() -> None:
    with pytest.raises(BakeError) as e:
        kc.cluster_configuration(plan_of("etcd-cluster"))
    assert e.value.problems == (Problem("nodes", "a ClusterConfiguration needs a control plane"),)


def test_wrong_node_for_init_or_join_names_it() -> None:
    plan = plan_of("ha-external-etcd", "cluster.join=token")
    with pytest.raises(BakeError) as e:
        kc.init_configuration(plan, plan.node("cp-2"), TOKEN)
    assert e.value.problems == (Problem("nodes[4]", "cp-2 does not run kubeadm init"),)
    for name, index in (("cp-1", 3), ("etcd-2", 1)):
        with pytest.raises(BakeError) as e:
            kc.join_configuration(plan, plan.node(name), TOKEN, CA_HASH)
        assert e.value.problems == (Problem(f"nodes[{index}]", f"{name} does not run kubeadm join"),)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "ABCDEF.0123456789abcdef",
        "abcdef.0123456789abcde",
        "abcdef0123456789abcdef",
        "",
        TOKEN + "\n",
    ],
)
def test_malformed_token_is_refused(token: str) -> None:
    """kubeadm's BootstrapTokenRegexp: `^([a-z0-9]{6})\\.([a-z0-9]{16})$` (spec 2)."""
    plan = plan_of("ha-stacked", "cluster.join=token")
    expected = (Problem("token", "a bootstrap token looks like abcdef.0123456789abcdef"),)
    with pytest.raises(BakeError) as e:
        kc.init_configuration(plan, plan.node("cp-1"), token)
    assert e.value.problems == expected
    with pytest.raises(BakeError) as e:
        kc.join_configuration(plan, plan.node("worker-1"), token, CA_HASH)
    assert e.value.problems == expected


@pytest.mark.parametrize(
    "ca_hash",
    [
        "sha256:XYZ",
        "sha256:" + "0123456789ABCDEF" * 4,
        "sha256:" + "0" * 63,
        "sha1:" + "0" * 64,
        "0" * 64,
        CA_HASH + "\n",
    ],
)
def test_malformed_ca_hash_is_refused(ca_hash: str) -> None:
    plan = plan_of("ha-stacked", "cluster.join=token")
    with pytest.raises(BakeError) as e:
        kc.join_configuration(plan, plan.node("worker-1"), TOKEN, ca_hash)
    assert e.value.problems == (Problem("caCertHash", "expected sha256:<64 lower-case hex digits>"),)


def test_a_field_kubeadm_does_not_know_stops_the_bake(monkeypatch: pytest.MonkeyPatch) -> None:
    """A renderer bug (a field kubeadm would silently drop) fails loudly, naming the document's kind."""
    plan = plan_of("ha-stacked")
    docs = [*docs_of(plan, "cp-1")]
    docs[1] = {**docs[1], "apiServerr": {}}
    monkeypatch.setattr(kc, "config_documents", lambda *_: docs)
    with pytest.raises(AssertionError) as e:
        kc.node_config_files(plan, plan.node("cp-1"), TOKEN, CA_HASH)
    assert str(e.value) == "unknown kubeadm config fields: ['ClusterConfiguration.apiServerr']"
