"""`bake check` finds what it promises: misplaced secrets, loose modes, expiry, tampering."""

from __future__ import annotations

import base64
import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from builder.check import check_tree

from .helpers import bake

ALG = ("--set", "cluster.encryptionAlgorithm=ECDSA-P256")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("check")
    proc = bake("--profile", "ha-external-etcd", *ALG, "-q", out=out)
    assert proc.returncode == 0, proc.stderr
    return (out / "ha-external-etcd").resolve()


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def errors(tree: Path, now: datetime | None = None) -> list[str]:
    return [f"{f.where}: {f.message}" for f in check_tree(tree, now).findings if f.level == "error"]


def _resum(tree: Path, rel: str) -> None:
    """Keep SHA256SUMS consistent so only the scan under test can catch the change."""
    sums = tree / "SHA256SUMS"
    digest = hashlib.sha256((tree / rel).read_bytes()).hexdigest()
    lines = [
        f"{digest}  {rel}" if line.endswith(f"  {rel}") else line for line in sums.read_text().splitlines()
    ]
    sums.write_text("\n".join(lines) + "\n")


def _inject_file(tree: Path, node: str, path: str, content: bytes) -> None:
    ud = tree / "nodes" / node / "user-data"
    doc = yaml.safe_load(ud.read_bytes())
    doc["write_files"].append(
        {
            "path": path,
            "permissions": "0600",
            "encoding": "b64",
            "content": base64.b64encode(content).decode(),
        }
    )
    ud.write_text("#cloud-config\n" + yaml.safe_dump(doc))
    _resum(tree, f"nodes/{node}/user-data")


def test_pristine_tree_passes(pristine: Path) -> None:
    assert errors(pristine) == []


def test_worker_holding_a_private_key_is_caught(tree: Path) -> None:
    key = (tree / "secrets/nodes/cp-2/apiserver.key").read_bytes()
    _inject_file(tree, "worker-1", "/etc/kubernetes/pki/stray.key", key)
    found = errors(tree)
    assert "nodes/worker-1: a worker holds a private key" in found


def test_etcd_member_holding_the_cluster_ca_key_is_caught(tree: Path) -> None:
    _inject_file(tree, "etcd-2", "/root/ca.key", (tree / "secrets/pki/ca.key").read_bytes())
    assert "nodes/etcd-2: an etcd member holds the cluster CA key" in errors(tree)


def test_external_etcd_control_plane_holding_the_etcd_ca_key_is_caught(tree: Path) -> None:
    _inject_file(
        tree, "cp-3", "/etc/kubernetes/pki/etcd/ca.key", (tree / "secrets/pki/etcd/ca.key").read_bytes()
    )
    assert "nodes/cp-3: a control plane of a external-etcd cluster holds the etcd CA key" in errors(tree)


def test_loose_modes_are_caught(tree: Path) -> None:
    (tree / "secrets/pki/ca.key").chmod(0o644)
    (tree / "nodes").chmod(0o755)
    found = errors(tree)
    assert any(e.startswith("secrets/pki/ca.key: holds secrets but mode is 0644") for e in found), found
    assert "nodes: directory mode 0755, expected 0700" in found


def test_tampered_iso_is_caught(tree: Path) -> None:
    iso = tree / "nodes/worker-2/seed.iso"
    data = bytearray(iso.read_bytes())
    data[-100] ^= 0xFF
    iso.write_bytes(bytes(data))
    assert "nodes/worker-2/seed.iso: content differs from SHA256SUMS" in errors(tree)


def test_expiry_warns_then_fails(pristine: Path) -> None:
    soon = datetime.now(UTC) + timedelta(days=365 - 10)
    report = check_tree(pristine, soon)
    assert any(f.level == "warning" and "in less than 30 days" in f.message for f in report.findings)
    assert report.errors == 0
    later = datetime.now(UTC) + timedelta(days=400)
    assert any("expired on" in e for e in errors(pristine, later))
