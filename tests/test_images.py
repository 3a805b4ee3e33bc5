"""builder.plan.images: the one list of images every node needs, judged by the real kubeadm where it can run.

The control-plane list must equal `kubeadm config images list --config <the baked kubeadm.yaml>` of the
upstream kubeadm built from the Go module proxy (tests/k8s); the rest is checked against references
written out by hand from the upstream rules (cmd/kubeadm/app/images/images.go).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builder import resources
from builder.node import cloudinit, host, static_pods
from builder.plan import ClusterPlan, images
from tests import k8s

from .helpers import plan_of

TOKEN = "abcdef.0123456789abcdef"
CA_HASH = "sha256:" + "0" * 64


def _init_config(plan: ClusterPlan) -> bytes:
    """The kubeadm.yaml the init node gets, as cloud-init writes it."""
    init = plan.init_node
    assert init is not None
    files = cloudinit.node_files(plan, init, pki_files=[], token=TOKEN, ca_hash=CA_HASH)
    return next(f.content for f in files if f.path == "/run/kubeadm/kubeadm.yaml")


def _kubeadm() -> Path:
    try:
        found = k8s.locate()
    except ImportError:  # the build tooling of tests/k8s is not in this tree: only BAKE_K8S_BIN works
        found = None
    if found is None or not (found / "kubeadm").is_file():
        pytest.skip("the upstream kubeadm is not built (make k8s, or BAKE_K8S_BIN=<dir holding kubeadm>)")
    return found / "kubeadm"


VARIANTS = [
    # every embedded profile that has a kubeadm config (etcd-cluster has no control plane)
    *((name, ()) for name in resources.profile_names() if plan_of(name).init_node is not None),
    ("ha-stacked", ("cluster.imageRepository=mirror.example:5000/k8s",)),
    ("ha-stacked", ("cluster.images={coredns: {imageTag: v1.14.1}, etcd: {imageRepository: quay.io/co}}",)),
    (
        "ha-stacked",
        (
            "cluster.imageRepository=mirror.example/k8s",
            "cluster.images={coredns: {imageRepository: registry.k8s.io}}",
        ),
    ),
    (
        "ha-stacked",
        ("cluster.images={coredns: {imageRepository: mirror.test/dns, imageTag: v9}, etcd: {imageTag: v3}}",),
    ),
    ("ha-external-etcd", ("cluster.imageRepository=registry.example.com/kubernetes",)),
]


@pytest.mark.integration
@pytest.mark.parametrize(("profile", "sets"), VARIANTS, ids=str)
def test_control_plane_images_match_the_real_kubeadm(
    tmp_path: Path, profile: str, sets: tuple[str, ...]
) -> None:
    kubeadm = _kubeadm()
    plan = plan_of(profile, *sets)
    config = tmp_path / "kubeadm.yaml"
    config.write_bytes(_init_config(plan))
    proc = subprocess.run(
        [str(kubeadm), "config", "images", "list", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [i.ref for i in images.control_plane_images(plan)] == proc.stdout.split()
    # and the init node is told to hold exactly that, plus the load balancer's images
    init = plan.init_node
    assert init is not None
    needed = [i.ref for i in images.node_images(plan, init)]
    assert needed[: len(proc.stdout.split())] == proc.stdout.split()


def test_default_repository_lists() -> None:
    plan = plan_of("ha-stacked")
    assert [i.ref for i in images.control_plane_images(plan)] == [
        "registry.k8s.io/kube-apiserver:v1.37.2",
        "registry.k8s.io/kube-controller-manager:v1.37.2",
        "registry.k8s.io/kube-scheduler:v1.37.2",
        "registry.k8s.io/kube-proxy:v1.37.2",
        "registry.k8s.io/coredns/coredns:v1.14.6",
        "registry.k8s.io/pause:3.10.2",
        "registry.k8s.io/etcd:3.7.0-0",
    ]
    worker = [i.ref for i in images.node_images(plan, plan.node("worker-1"))]
    assert worker == [
        "registry.k8s.io/kube-proxy:v1.37.2",
        "registry.k8s.io/coredns/coredns:v1.14.6",
        "registry.k8s.io/pause:3.10.2",
    ]
    cp2 = [i.ref for i in images.node_images(plan, plan.node("cp-2"))]
    assert cp2[-1] == "ghcr.io/kube-vip/kube-vip:v1.0.3" and "registry.k8s.io/etcd:3.7.0-0" in cp2


def test_external_etcd_roles() -> None:
    plan = plan_of("ha-external-etcd")
    assert [i.ref for i in images.node_images(plan, plan.node("etcd-1"))] == [
        "registry.k8s.io/etcd:3.7.0-0",
        "registry.k8s.io/pause:3.10.2",
    ]
    cp = [i.ref for i in images.node_images(plan, plan.node("cp-1"))]
    assert not any("/etcd:" in r for r in cp)  # kubeadm lists etcd only for local etcd
    assert cp[-2:] == ["docker.io/library/haproxy:3.2.25", "docker.io/osixia/keepalived:2.0.20"]


def test_image_repository_reaches_the_load_balancers() -> None:
    repo = "mirror.example:5000/k8s"
    plan = plan_of("ha-external-etcd", f"cluster.imageRepository={repo}")
    cp = plan.node("cp-1")
    pods = {
        f.path.rsplit("/", 1)[-1]: yaml.safe_load(f.content)
        for f in static_pods.node_static_pod_files(plan, cp)
        if f.path.endswith(".yaml")
    }
    assert pods["haproxy.yaml"]["spec"]["containers"][0]["image"] == f"{repo}/haproxy:3.2.25"
    assert pods["keepalived.yaml"]["spec"]["containers"][0]["image"] == f"{repo}/keepalived:2.0.20"
    etcd = static_pods.node_static_pod_files(plan, plan.node("etcd-2"))[0]
    assert yaml.safe_load(etcd.content)["spec"]["containers"][0]["image"] == f"{repo}/etcd:3.7.0-0"
    # CoreDNS is not moved one level down outside registry.k8s.io (GetDNSImage)
    assert images.coredns_image(plan) == f"{repo}/coredns:v1.14.6"

    stacked = plan_of("ha-stacked", f"cluster.imageRepository={repo}")
    vip = static_pods.load_balancer.kube_vip_pod(stacked, stacked.node("cp-1"))
    assert vip["spec"]["containers"][0]["image"] == f"{repo}/kube-vip:v1.0.3"


def test_per_image_overrides() -> None:
    plan = plan_of(
        "ha-external-etcd",
        "cluster.images={haproxy: {imageRepository: docker.io/haproxytech, imageTag: 3.2.0}, "
        "keepalived: {imageTag: 2.0.19}, etcd: {imageRepository: quay.io/coreos, imageTag: v3.6.8}}",
    )
    pods = {
        f.path.rsplit("/", 1)[-1]: yaml.safe_load(f.content)
        for f in static_pods.node_static_pod_files(plan, plan.node("cp-2"))
        if f.path.endswith(".yaml")
    }
    assert pods["haproxy.yaml"]["spec"]["containers"][0]["image"] == "docker.io/haproxytech/haproxy:3.2.0"
    assert pods["keepalived.yaml"]["spec"]["containers"][0]["image"] == "docker.io/osixia/keepalived:2.0.19"
    etcd = yaml.safe_load(static_pods.node_static_pod_files(plan, plan.node("etcd-1"))[0].content)
    assert etcd["spec"]["containers"][0]["image"] == "quay.io/coreos/etcd:v3.6.8"

    stacked = plan_of(
        "ha-stacked", "cluster.images={etcd: {imageTag: 3.6.8-0}, coredns: {imageTag: v1.12.1}}"
    )
    docs = list(yaml.safe_load_all(_init_config(stacked)))
    cluster = next(d for d in docs if d["kind"] == "ClusterConfiguration")
    assert cluster["etcd"]["local"]["imageTag"] == "3.6.8-0"
    assert cluster["dns"] == {"imageTag": "v1.12.1", "disabled": False}


def test_sandbox_image_is_the_listed_pause() -> None:
    plan = plan_of(
        "single-master", "cluster.imageRepository=mirror.example/k8s", "nodes[2].kubernetesVersion=1.35"
    )
    for node in plan.nodes:
        pause = [i.ref for i in images.node_images(plan, node) if i.name == "pause"]
        assert pause == [host.pause_image(plan, node)]
    # kubeadm v1.37 constants.PauseVersion: the skewed 1.35 kubelet's node runs the cluster's kubeadm too
    assert host.pause_image(plan, plan.node("worker-2")) == "mirror.example/k8s/pause:3.10.2"
    assert host.pause_image(plan, plan.node("worker-1")) == "mirror.example/k8s/pause:3.10.2"


@pytest.mark.parametrize(
    ("ref", "normalized"),
    [
        ("haproxy:3.2.25", "docker.io/library/haproxy:3.2.25"),
        ("docker.io/library/haproxy:3.2.25", "docker.io/library/haproxy:3.2.25"),
        ("osixia/keepalived:2.0.20", "docker.io/osixia/keepalived:2.0.20"),
        ("docker.io/busybox", "docker.io/library/busybox:latest"),
        ("registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.2"),
        ("mirror:5000/k8s/pause:3.10", "mirror:5000/k8s/pause:3.10"),
        ("localhost/app", "localhost/app:latest"),
        ("quay.io/x/y@sha256:" + "a" * 64, "quay.io/x/y@sha256:" + "a" * 64),
    ],
)
def test_normalize_like_the_runtimes(ref: str, normalized: str) -> None:
    assert images.normalize(ref) == normalized


def test_image_tag_like_kubeadm() -> None:
    assert images.image_tag("v1.37.1") == "v1.37.1"
    assert images.image_tag("v1.37.1+build.7") == "v1.37.1_build.7"


def _bake_images(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", "images", *args], capture_output=True, text=True, cwd=cwd
    )


def test_bake_images_cli() -> None:
    proc = _bake_images("-p", "ha-external-etcd", "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    roles = listing["architectures"]["amd64"]["roles"]
    assert roles["etcd"]["nodes"] == ["etcd-1", "etcd-2", "etcd-3"]
    assert roles["etcd"]["images"] == ["registry.k8s.io/etcd:3.7.0-0", "registry.k8s.io/pause:3.10.2"]
    assert "docker.io/osixia/keepalived:2.0.20" in roles["control-plane"]["images"]
    assert listing["cniImagesKnown"] is False  # calico's manifests are downloaded at first boot

    plain = _bake_images("-p", "ha-stacked", "--arch", "amd64")
    assert plain.returncode == 0 and plain.stdout.splitlines() == [
        "registry.k8s.io/kube-apiserver:v1.37.2",
        "registry.k8s.io/kube-controller-manager:v1.37.2",
        "registry.k8s.io/kube-scheduler:v1.37.2",
        "registry.k8s.io/kube-proxy:v1.37.2",
        "registry.k8s.io/coredns/coredns:v1.14.6",
        "registry.k8s.io/pause:3.10.2",
        "registry.k8s.io/etcd:3.7.0-0",
        "ghcr.io/kube-vip/kube-vip:v1.0.3",
    ]
    text = _bake_images("-p", "single-master")
    assert text.returncode == 0 and "amd64 worker (worker-1, worker-2)" in text.stdout

    bad = _bake_images("-p", "ha-stacked", "--arch", "arm64")
    assert bad.returncode == 2 and "--arch: no node runs on 'arm64'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_unknown_override_key_is_a_field_error() -> None:
    bad = "cluster.images={kube-apiserver: {imageTag: v1}, pause: {}}"
    proc = _bake_images("-p", "ha-stacked", "--set", bad)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cluster.images.kube-apiserver: no such overridable image" in proc.stderr
    assert "cluster.images.pause: no such overridable image" in proc.stderr
    tag = _bake_images("-p", "ha-stacked", "--set", "cluster.images={etcd: {imageTag: 'a b'}}")
    assert tag.returncode == 2 and "cluster.images.etcd.imageTag" in tag.stderr
