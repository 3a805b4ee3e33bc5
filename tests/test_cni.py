"""The pod network the init node applies: flannel's kustomization run through the real kubectl's kustomize
(built by `make k8s`) on upstream's kube-flannel.yml (the release the e2e boots)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.node import bootstrap
from builder.plan import ClusterPlan, build_plan
from builder.validation.profile import load_profile
from tests import k8s

BIN = k8s.locate("amd64")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.realk8s,
    pytest.mark.skipif(BIN is None, reason="upstream Kubernetes binaries are not built (make k8s)"),
]


def _plan(*sets: str) -> ClusterPlan:
    return build_plan(load_profile("single-master", ["cluster.cni=flannel", *sets]))


def _upstream_manifest() -> str:
    from tests.k8s import build

    return (build.module_source("flannel", build.FLANNEL) / "Documentation" / "kube-flannel.yml").read_text()


def _kustomize(plan: ClusterPlan, manifest: str, work: Path) -> subprocess.CompletedProcess[str]:
    """What `kubectl apply -k` would send: cni.sh's work directory, laid out as it lays it out."""
    assert BIN is not None
    baked = bootstrap.cni.cni_config_file(plan, "amd64")
    assert baked is not None and baked.path == "/etc/bake/cni/flannel-kustomization.yaml"
    work.mkdir()
    (work / "kustomization.yaml").write_bytes(baked.content)
    for name in yaml.safe_load(baked.content)["resources"]:
        (work / name).write_text(manifest)
    return subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(work)], capture_output=True, text=True, check=False
    )


def _by_id(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs if d}


@pytest.mark.parametrize(
    ("subnet", "net_conf"),
    [
        (
            "10.200.0.0/16",
            {"Network": "10.200.0.0/16", "EnableNFTables": False, "Backend": {"Type": "vxlan"}},
        ),
        (
            "10.200.0.0/16,fd00:200::/56",
            {
                "Network": "10.200.0.0/16",
                "EnableIPv6": True,
                "IPv6Network": "fd00:200::/56",
                "EnableNFTables": False,
                "Backend": {"Type": "vxlan"},
            },
        ),
    ],
)
def test_flannel_is_applied_with_the_profiles_network_and_nothing_else_changed(
    tmp_path: Path, subnet: str, net_conf: dict[str, Any]
) -> None:
    upstream_text = _upstream_manifest()
    proc = _kustomize(_plan(f"cluster.podSubnet={subnet}"), upstream_text, tmp_path / "work")
    assert proc.returncode == 0, proc.stderr
    applied = _by_id(list(yaml.safe_load_all(proc.stdout)))
    upstream = _by_id(list(yaml.safe_load_all(upstream_text)))
    assert applied.keys() == upstream.keys()
    config = applied[("ConfigMap", "kube-flannel-cfg")]
    assert json.loads(config["data"]["net-conf.json"]) == net_conf
    # upstream's default network is gone; everything else is upstream's, the CNI conflist included
    assert "10.244.0.0" not in proc.stdout
    before = upstream[("ConfigMap", "kube-flannel-cfg")]
    assert {k: v for k, v in config["data"].items() if k != "net-conf.json"} == {
        k: v for k, v in before["data"].items() if k != "net-conf.json"
    }
    for key, doc in upstream.items():
        if key != ("ConfigMap", "kube-flannel-cfg"):
            assert applied[key] == doc, key


def test_a_manifest_without_flannels_network_config_fails_the_apply(tmp_path: Path) -> None:
    """If upstream renames the ConfigMap key, the apply fails instead of running the default network."""
    renamed = _upstream_manifest().replace("net-conf.json:", "network.json:")
    proc = _kustomize(_plan(), renamed, tmp_path / "work")
    assert proc.returncode != 0
    assert "net-conf.json" in proc.stderr


def test_airgap_kustomization_names_the_seeded_manifests(tmp_path: Path) -> None:
    """With cluster.airgap the manifests come from the images seed: the kustomization lists those, by the
    name cni.sh copies them under."""
    site = tmp_path / "site"
    (site / "cni").mkdir(parents=True)
    (site / "cni/flannel-site.yaml").write_text(_upstream_manifest())
    (site / "images.tar").write_bytes(b"")  # the plan only names it
    profile = load_profile(
        "single-master",
        [
            "cluster.cni=flannel",
            "cluster.kubernetesVersion=v1.35.0",
            f"cluster.airgap={{images: {{amd64: [{site / 'images.tar'}]}}, "
            f"cniManifests: [{site / 'cni/flannel-site.yaml'}]}}",
        ],
    )
    plan = build_plan(profile)
    baked = bootstrap.cni.cni_config_file(plan, "amd64")
    assert baked is not None
    assert yaml.safe_load(baked.content)["resources"] == ["flannel-site.yaml"]
    proc = _kustomize(plan, _upstream_manifest(), tmp_path / "work")
    assert proc.returncode == 0, proc.stderr
