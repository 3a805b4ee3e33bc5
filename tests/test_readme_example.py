"""The README's example profile bakes exactly as written: extracted from the README, next to the image
archives and CNI manifest its air gap names (made here), baked by the real CLI, checked by `bake check`.
It sets every option, so its seeds are also the ones the seed-size targets are about."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from .helpers import REPO, bake, check
from .test_airgap import FLANNEL, FLANNEL_CNI, FLANNEL_MANIFEST, KUBE, KUBE_VIP, docker_archive

AWS, AZURE = 16_384, 65_535  # EC2's and Azure's documented user-data limits, in bytes
NOVA = 65_535  # OpenStack's: the user_data field's maxLength, its base64 text


def readme_example() -> str:
    """The first YAML block after "A profile (keys are camelCase" in README.md, verbatim."""
    text = (REPO / "README.md").read_text()
    after = text[text.index("A profile (keys are camelCase") :]
    return after.split("```yaml\n", 1)[1].split("```", 1)[0]


def _bake_example(site: Path, *sets: str) -> Path:
    """The example in `site`, next to the archives and manifest its air gap names, baked by the CLI."""
    (site / "prod.yaml").write_text(readme_example())
    # what its air gap names: every image its nodes need (test_airgap's literals), per architecture
    docker_archive(site / "images/amd64/kube.tar", [*KUBE, KUBE_VIP, FLANNEL, FLANNEL_CNI])
    docker_archive(site / "images/arm64/node.tar", [*KUBE[3:6], FLANNEL, FLANNEL_CNI])
    (site / "cni").mkdir()
    (site / "cni/kube-flannel.yml").write_text(FLANNEL_MANIFEST)
    out = site / "out"
    proc = bake("--profile", str(site / "prod.yaml"), *(a for s in sets for a in ("--set", s)), out=out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "prod"


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bake_example(tmp_path_factory.mktemp("readme"))


@pytest.fixture(scope="module")
def baked_ecdsa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bake_example(tmp_path_factory.mktemp("readme-ecdsa"), "cluster.encryptionAlgorithm=ECDSA-P256")


def test_readme_example_bakes_as_written(baked: Path) -> None:
    manifest = json.loads((baked / "manifest.json").read_text())
    assert [(n["name"], n["arch"]) for n in manifest["nodes"]] == [("cp-1", "amd64"), ("w-1", "arm64"),
                                                                   ("w-2", "amd64")]  # fmt: skip
    verdict = check(baked)
    assert verdict.returncode == 0, verdict.stdout[-3000:]


def _sizes(baked: Path, node: str) -> tuple[int, int]:
    d = baked / "nodes" / node
    return (d / "user-data").stat().st_size, (d / "user-data.gz").stat().st_size


def test_every_feature_with_ecdsa_fits_aws_openstack_and_azure(baked_ecdsa: Path) -> None:
    """With every feature on and ECDSA-P256 keys, a worker's user-data.gz (which EC2 takes) is within
    AWS's limit; a control plane's raw user-data is within Azure's, and its gzip form within Nova's once
    base64-encoded (Nova counts the base64 text: the raw form is over it)."""
    for node in ("w-1", "w-2"):
        raw, gz = _sizes(baked_ecdsa, node)
        assert gz <= AWS < raw, (node, raw, gz)
    raw, _ = _sizes(baked_ecdsa, "cp-1")
    cp = baked_ecdsa / "nodes" / "cp-1"
    assert raw <= AZURE, raw
    assert len(base64.b64encode((cp / "user-data.gz").read_bytes())) <= NOVA, raw


def test_every_feature_workers_fit_aws_in_gzip(baked: Path) -> None:
    """With RSA-2048 keys too: a worker's only key is its join credential's, ECDSA P-256."""
    for node in ("w-1", "w-2"):
        assert _sizes(baked, node)[1] <= AWS, node


def test_every_feature_control_plane_fits_65535_bytes_raw(baked: Path) -> None:
    """Issue 12's control-plane target with every feature on and RSA-2048 keys: its keys and the
    kubeconfigs holding them travel as their primes (builder.node.compact_keys), so the raw user-data is
    within Azure's 65,535 bytes; its gzip form is within Nova's base64 count."""
    raw, _ = _sizes(baked, "cp-1")
    assert raw <= AZURE, raw
    assert len(base64.b64encode((baked / "nodes" / "cp-1" / "user-data.gz").read_bytes())) <= NOVA


@pytest.mark.xfail(strict=True, reason="issue 12 item 6: a worker's raw size; it passes aws by "
                   "user-data.gz only (the first-boot archive is about 14 KB in base64)")  # fmt: skip
def test_every_feature_workers_fit_aws_raw(baked: Path) -> None:
    """The target: with every feature on, a worker's raw user-data within AWS's limit. Strict: once met,
    this test says so by failing as XPASS."""
    sizes = {n: _sizes(baked, n)[0] for n in ("w-1", "w-2")}
    assert sizes["w-1"] <= AWS and sizes["w-2"] <= AWS, sizes
