"""End-to-end bakes of every embedded profile, checked with real peers (openssl, bake check)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from builder import resources

from .helpers import BAKE, bake, tree_digest

PROFILES = resources.profile_names()
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("out")
    trees = {}
    for name in PROFILES:
        proc = bake("--profile", name, "--quiet", out=out)
        assert proc.returncode == 0, proc.stderr
        trees[name] = out / name  # embedded profiles name their cluster after themselves
    return trees


@pytest.mark.integration
@pytest.mark.parametrize("name", PROFILES)
def test_bake_check_passes(baked: dict[str, Path], name: str) -> None:
    proc = subprocess.run(
        [*BAKE, "check", str(baked[name]), "--json"], capture_output=True, text=True, timeout=600
    )
    report = json.loads(proc.stdout)
    errors = [f for f in report["findings"] if f["level"] == "error"]
    assert proc.returncode == 0 and not errors, errors


@pytest.mark.integration
@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
@pytest.mark.parametrize("name", PROFILES)
def test_every_leaf_verifies_with_openssl(baked: dict[str, Path], name: str) -> None:
    secrets = baked[name] / "secrets"
    meta = json.loads((secrets / "bundle.json").read_text())
    checked = 0
    for owner, leaves in meta["leaves"].items():
        for cert_name, base in leaves.items():
            crt = secrets / "nodes" / owner / f"{base}.crt"
            subject = subprocess.run(
                [OPENSSL, "x509", "-noout", "-issuer", "-in", str(crt)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            ca = {"etcd-ca": "etcd/ca", "front-proxy-ca": "front-proxy-ca"}.get(
                next((c for c in ("etcd-ca", "front-proxy-ca") if f"CN = {c}" in subject), ""), "ca"
            )
            proc = subprocess.run(
                [OPENSSL, "verify", "-CAfile", str(secrets / "pki" / f"{ca}.crt"), str(crt)],
                capture_output=True,
                text=True,
            )
            assert proc.returncode == 0, f"{owner}/{cert_name}: {proc.stdout}{proc.stderr}"
            checked += 1
    assert checked > 0


@pytest.mark.integration
@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
def test_discovery_hash_matches_openssl_pipeline(baked: dict[str, Path]) -> None:
    tree = baked["ha-stacked"]
    pubkey = subprocess.run(
        [OPENSSL, "x509", "-pubkey", "-noout", "-in", str(tree / "secrets/pki/ca.crt")],
        capture_output=True,
        check=True,
    ).stdout
    der = subprocess.run(
        [OPENSSL, "pkey", "-pubin", "-outform", "der"], input=pubkey, capture_output=True, check=True
    ).stdout
    manifest = json.loads((tree / "manifest.json").read_text())
    assert manifest["discoveryTokenCaCertHash"] == "sha256:" + hashlib.sha256(der).hexdigest()
    worker_ud = (tree / "nodes/worker-1/user-data").read_text()
    assert manifest["discoveryTokenCaCertHash"] in worker_ud


def test_rebake_is_byte_identical_and_rewrites_nothing(tmp_path: Path) -> None:
    first = bake("--profile", "single-master", "--quiet", out=tmp_path)
    assert first.returncode == 0, first.stderr
    before = tree_digest(tmp_path / "single-master")
    inodes = {p: (tmp_path / "single-master" / p).stat().st_ino for p in before}
    second = bake("--profile", "single-master", out=tmp_path)
    assert second.returncode == 0, second.stderr
    after = tree_digest(tmp_path / "single-master")
    assert after == before
    assert "wrote 0 files" in second.stdout
    assert {p: (tmp_path / "single-master" / p).stat().st_ino for p in after} == inodes


def test_same_bundle_in_another_directory_gives_identical_outputs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert bake("--profile", "single-node", "--quiet", out=a).returncode == 0
    # carry the secrets bundle to a fresh output root, as a user moving machines would
    (b / ".bake/single-node/gen-0").mkdir(parents=True)
    shutil.copytree(a / "single-node/secrets", b / ".bake/single-node/gen-0/secrets")
    (b / "single-node").symlink_to(".bake/single-node/gen-0")
    proc = bake("--profile", "single-node", "--quiet", out=b)
    assert proc.returncode == 0, proc.stderr
    assert tree_digest(a / "single-node") == tree_digest(b / "single-node")


def test_profile_change_reissues_only_that_node(tmp_path: Path) -> None:
    assert bake("--profile", "ha-stacked", "--quiet", out=tmp_path).returncode == 0
    before = tree_digest(tmp_path / "ha-stacked/secrets")
    proc = bake("--profile", "ha-stacked", "--set", "nodes[1].ip=10.77.0.42", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    after = tree_digest(tmp_path / "ha-stacked/secrets")
    changed = {p for p in before if before[p] != after.get(p)}
    assert changed, "changing cp-2's address must re-issue its certificates"
    assert all(p.startswith("nodes/cp-2/") or p == "bundle.json" for p in changed), changed
    assert "cp-2: re-issued apiserver" in proc.stdout.replace("\n", " ")
    for ca in ("pki/ca.crt", "pki/ca.key", "pki/etcd/ca.key", "pki/sa.key", "token"):
        assert before[ca] == after[ca]


def test_bad_profile_writes_nothing_and_names_fields(tmp_path: Path) -> None:
    assert bake("--profile", "single-master", "--quiet", out=tmp_path).returncode == 0
    before = tree_digest(tmp_path)
    proc = bake(
        "--profile",
        "single-master",
        "--set",
        "nodes[2].ip=10.0.0.300",
        "--set",
        "nodes[1].mac=nope",
        out=tmp_path,
    )
    assert proc.returncode == 2
    assert "nodes[2].ip: '10.0.0.300' is not an IPv4 or IPv6 address" in proc.stderr
    assert "nodes[1].mac" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_digest(tmp_path) == before
    fresh = tmp_path / "fresh"
    proc = bake("--profile", "single-master", "--set", "cluster.podSubnet=10.96.0.0/16", out=fresh)
    assert proc.returncode == 2
    assert "cluster.podSubnet" in proc.stderr
    assert not fresh.exists() or not any(fresh.iterdir())


def test_secret_modes(tmp_path: Path) -> None:
    os.umask(0)
    try:
        assert bake("--profile", "ha-stacked", "--quiet", out=tmp_path).returncode == 0
    finally:
        os.umask(0o022)
    tree = (tmp_path / "ha-stacked").resolve()
    files = 0
    for path in [tree, *tree.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        else:  # the README's rule: every file, certificates included
            assert mode == 0o600, f"{path.relative_to(tree)} is {mode:04o}"
            files += 1
    assert files > 50 and (tree / "secrets/pki/ca.crt").is_file()
