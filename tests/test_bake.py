"""End-to-end bakes of every embedded profile, checked with real peers (openssl, bake check)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from builder import resources
from builder.check import write_files_of

from .helpers import BAKE, bake, bundle, check, tree_digest

PROFILES = resources.profile_names()
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("out")


@pytest.fixture(scope="module")
def baked(out: Path) -> dict[str, Path]:
    trees = {}
    for name in PROFILES:
        proc = bake("--profile", name, "--quiet", out=out)
        assert proc.returncode == 0, proc.stderr
        trees[name] = out / name  # embedded profiles name their cluster after themselves
    return trees


@pytest.mark.integration
@pytest.mark.parametrize("name", PROFILES)
def test_bake_check_passes(baked: dict[str, Path], name: str) -> None:
    proc = check(baked[name], "--json")
    report = json.loads(proc.stdout)
    errors = [f for f in report["findings"] if f["level"] == "error"]
    assert proc.returncode == 0 and not errors, errors


@pytest.mark.integration
@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
@pytest.mark.parametrize("name", PROFILES)
def test_every_leaf_verifies_with_openssl(baked: dict[str, Path], out: Path, name: str) -> None:
    secrets = bundle(out, name)
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
def test_discovery_hash_matches_openssl_pipeline(baked: dict[str, Path], out: Path) -> None:
    tree = baked["ha-stacked"]
    pubkey = subprocess.run(
        [OPENSSL, "x509", "-pubkey", "-noout", "-in", str(bundle(out, "ha-stacked") / "pki/ca.crt")],
        capture_output=True,
        check=True,
    ).stdout
    der = subprocess.run(
        [OPENSSL, "pkey", "-pubin", "-outform", "der"], input=pubkey, capture_output=True, check=True
    ).stdout
    manifest = json.loads((tree / "manifest.json").read_text())
    assert manifest["discoveryTokenCaCertHash"] == "sha256:" + hashlib.sha256(der).hexdigest()
    # cluster.join: certificate (the default): the worker holds no hash but a join credential that
    # pins exactly that CA certificate.
    worker = write_files_of((tree / "nodes/worker-1/user-data").read_bytes())
    assert manifest["discoveryTokenCaCertHash"] not in (tree / "nodes/worker-1/user-data").read_text()
    join_conf = yaml.safe_load(worker["/etc/bake/join.conf"][0])
    pinned = base64.b64decode(join_conf["clusters"][0]["cluster"]["certificate-authority-data"])
    assert pinned == (bundle(out, "ha-stacked") / "pki/ca.crt").read_bytes()


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
    # carry the secrets bundle to another place, as a user moving machines would, and name it
    vault = tmp_path / "vault/single-node"
    shutil.copytree(bundle(a, "single-node"), vault)
    proc = bake("--profile", "single-node", "--quiet", "--secrets", str(vault), out=b)
    assert proc.returncode == 0, proc.stderr
    assert tree_digest(a / "single-node") == tree_digest(b / "single-node")


def test_profile_change_reissues_only_that_node(tmp_path: Path) -> None:
    assert bake("--profile", "ha-stacked", "--quiet", out=tmp_path).returncode == 0
    before = tree_digest(bundle(tmp_path, "ha-stacked"))
    proc = bake("--profile", "ha-stacked", "--set", "nodes[1].ip=10.77.0.42", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    after = tree_digest(bundle(tmp_path, "ha-stacked"))
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
        base = ("--base-url", "http://10.77.0.1:8080/")
        assert bake("--profile", "ha-stacked", "--quiet", *base, out=tmp_path).returncode == 0
    finally:
        os.umask(0o022)
    tree = (tmp_path / "ha-stacked").resolve()
    kept = tmp_path / "secrets"  # the bundle's root and the bundle itself, apart from the tree
    files, snippets = 0, []
    for path in [tree, *tree.rglob("*"), kept, *kept.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.parent.parent.name == "http" and path.name in ("cmdline.txt", "boot.ipxe"):
            assert mode == 0o644, f"{path} is {mode:04o}"  # the README's one exception: PXE snippets
            snippets.append(path)
        else:  # the README's rule: every file, certificates included
            assert mode == 0o600, f"{path} is {mode:04o}"
            files += 1
    assert files > 50 and (kept / "ha-stacked/pki/ca.crt").is_file()
    published = [d for d in (tree / "http").iterdir() if (d / "user-data").is_file()]
    assert len(snippets) == 2 * len(published) > 0
    assert not (tree / "secrets").exists()


# --------------------------------------------------------------------------------------------------
# the bundle apart from the outputs


def _user_bake(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`bake ARGS` as typed in a working directory: default --out outputs and secrets/<cluster>."""
    return subprocess.run([*BAKE, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


ALG = ("--set", "cluster.encryptionAlgorithm=ECDSA-P256")


def test_deleting_the_outputs_never_loses_a_key(tmp_path: Path) -> None:
    first = _user_bake(tmp_path, "-p", "single-node", *ALG)
    assert first.returncode == 0, first.stderr
    assert "no secrets bundle at secrets/single-node: creating a new one with new CAs" in " ".join(
        first.stdout.split()
    )
    ca = (tmp_path / "secrets/single-node/pki/ca.crt").read_bytes()
    ca_key = (tmp_path / "secrets/single-node/pki/ca.key").read_bytes()
    manifest = json.loads((tmp_path / "outputs/single-node/manifest.json").read_text())
    shutil.rmtree(tmp_path / "outputs")
    again = _user_bake(tmp_path, "-p", "single-node", *ALG)
    assert again.returncode == 0, again.stderr
    assert "creating a new one" not in again.stdout
    assert (tmp_path / "secrets/single-node/pki/ca.crt").read_bytes() == ca
    assert (tmp_path / "secrets/single-node/pki/ca.key").read_bytes() == ca_key
    rebaked = json.loads((tmp_path / "outputs/single-node/manifest.json").read_text())
    assert rebaked["discoveryTokenCaCertHash"] == manifest["discoveryTokenCaCertHash"]
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "secrets/single-node").stat().st_mode) == 0o700


def test_a_bundle_in_the_old_place_is_moved_once(tmp_path: Path) -> None:
    assert _user_bake(tmp_path, "-p", "single-node", *ALG).returncode == 0
    kept = tmp_path / "secrets/single-node"
    digest = tree_digest(kept)
    # the layout of earlier bakes: the bundle inside the current output generation
    generation = (tmp_path / "outputs/single-node").resolve()
    shutil.move(kept, generation / "secrets")
    # bake check still finds it there (no secrets/<cluster> yet)
    assert _user_bake(tmp_path, "check", "outputs/single-node").returncode == 0
    proc = _user_bake(tmp_path, "-p", "single-node", *ALG)
    assert proc.returncode == 0, proc.stderr
    assert "moved the secrets bundle out of the output tree to secrets/single-node" in " ".join(
        proc.stdout.split()
    )
    assert "creating a new one" not in proc.stdout
    assert tree_digest(kept) == digest
    assert not ((tmp_path / "outputs/single-node").resolve() / "secrets").exists()
    again = _user_bake(tmp_path, "-p", "single-node", *ALG)
    assert again.returncode == 0 and "moved" not in again.stdout


def test_no_bundle_beside_an_existing_tree_is_refused_unless_rotate_ca(tmp_path: Path) -> None:
    assert _user_bake(tmp_path, "-p", "single-node", *ALG).returncode == 0
    before = tree_digest(tmp_path / "outputs/single-node")
    lost = tmp_path / "lost"
    shutil.move(tmp_path / "secrets/single-node", lost)
    proc = _user_bake(tmp_path, "-p", "single-node", *ALG)
    assert proc.returncode == 2, proc.stdout
    assert "was baked with another cluster CA" in proc.stderr and "--rotate-ca" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "secrets/single-node").exists(), "a refused bake must not create a bundle"
    assert tree_digest(tmp_path / "outputs/single-node") == before
    # a bundle of another cluster CA, named explicitly, is refused the same way
    other = tmp_path / "other"
    other.mkdir()
    assert _user_bake(other, "-p", "single-node", *ALG).returncode == 0
    proc = _user_bake(tmp_path, "-p", "single-node", *ALG, "--secrets", str(other / "secrets/single-node"))
    assert proc.returncode == 2 and "was baked with another cluster CA" in proc.stderr
    # the right bundle, named where it now is, is accepted
    proc = _user_bake(tmp_path, "-p", "single-node", *ALG, "--secrets", str(lost))
    assert proc.returncode == 0, proc.stderr
    proc = _user_bake(tmp_path, "-p", "single-node", *ALG, "--rotate-ca")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "secrets/single-node/pki/ca.crt").read_bytes() != (lost / "pki/ca.crt").read_bytes()


def test_an_interrupted_bundle_swap_is_named_not_guessed(tmp_path: Path) -> None:
    assert _user_bake(tmp_path, "-p", "single-node", *ALG).returncode == 0
    shutil.move(tmp_path / "secrets/single-node", tmp_path / "secrets/.single-node.previous")
    proc = _user_bake(tmp_path, "-p", "single-node", *ALG)
    assert proc.returncode == 2
    assert "an interrupted bake left the previous bundle at secrets/.single-node.previous" in " ".join(
        proc.stderr.split()
    )
