"""Same inputs + same secrets bundle = byte-identical outputs, across separate processes.

Each bake runs in its own interpreter with a different PYTHONHASHSEED (set and dict-of-set ordering
changes), another time zone and locale, and a different number of worker processes (nodes rendered in
three processes, then serially), as two machines would. Calling a pure function twice in one process
would prove none of this.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from .helpers import bake, bundle, tree_digest

PROFILE = "ha-external-etcd"
SETS = (
    "--set", "cluster.encryptionAlgorithm=ECDSA-P256",
    # several values in lists and maps, so an ordering that follows string hashes would show
    "--set", "cluster.apiServer.certSANs=[a.example.test, b.example.test, c.example.test, 10.1.2.3, d.test]",
    "--set", "nodes[6].labels={zone: a, rack: b, tier: c, pool: d}",
)  # fmt: skip
ENVS = [
    {"PYTHONHASHSEED": "0", "TZ": "UTC", "LC_ALL": "C"},
    {"PYTHONHASHSEED": "4242", "TZ": "Asia/Tokyo", "LC_ALL": "C.UTF-8"},
]


def _carry_bundle(src: Path, out: Path, cluster: str) -> None:
    """Put an existing secrets bundle beside a fresh output root, as a user moving machines would."""
    shutil.copytree(bundle(src, cluster), bundle(out, cluster))


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("determinism")
    first = root / "a"
    proc = bake("--profile", PROFILE, *SETS, "--quiet", "--jobs", "3", out=first, env=ENVS[0])
    assert proc.returncode == 0, proc.stderr
    second = root / "b"
    _carry_bundle(first, second, PROFILE)
    proc = bake("--profile", PROFILE, *SETS, "--quiet", "--jobs", "1", out=second, env=ENVS[1])
    assert proc.returncode == 0, proc.stderr
    assert tree_digest(bundle(first, PROFILE)) == tree_digest(bundle(second, PROFILE))
    return [(first / PROFILE).resolve(), (second / PROFILE).resolve()]


def test_outputs_are_byte_identical_across_processes(trees: list[Path]) -> None:
    a, b = (tree_digest(t) for t in trees)
    assert a.keys() == b.keys()
    differ = sorted(p for p in a if a[p] != b[p])
    assert not differ, f"differ between two processes with different hash seeds: {differ}"
    assert any(p.endswith("seed.iso") for p in a) and any(p.startswith("nodes/") for p in a)


def _instance_ids(tree: Path) -> dict[str, str]:
    ids = {}
    for node in sorted((tree / "nodes").iterdir()):
        meta = yaml.safe_load((node / "meta-data").read_bytes())
        assert meta["local-hostname"] == node.name
        ids[node.name] = str(meta["instance-id"])
    return ids


def test_instance_id_same_inputs_same_id_different_node_different_id(trees: list[Path]) -> None:
    """cloud-init runs its once-per-instance modules again when the id changes: the same node baked
    twice must keep its id, and no two nodes may share one. (Only the property is checked, not how
    the id is formed.)"""
    first, second = (_instance_ids(t) for t in trees)
    assert first == second
    assert len(set(first.values())) == len(first) == 8
    assert all(v.strip() and "\n" not in v for v in first.values())
    manifest = json.loads((trees[0] / "manifest.json").read_bytes())
    assert {n["name"]: n["instanceId"] for n in manifest["nodes"]} == first
    # the HTTP tree (workers: the other seeds hold the cluster's keys) serves the same meta-data
    served = sorted(p.name for p in (trees[0] / "http").iterdir() if not p.name.startswith("_"))
    assert served == ["worker-1", "worker-2"]
    for name in served:
        meta = yaml.safe_load((trees[0] / "http" / name / "meta-data").read_bytes())
        assert meta["instance-id"] == first[name]


def test_instance_id_differs_between_clusters(trees: list[Path], tmp_path: Path) -> None:
    """The same node names in another cluster are other machines."""
    proc = bake(
        "--profile", PROFILE, *SETS, "--set", "cluster.name=other", "--quiet", out=tmp_path, env=ENVS[1]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    here, there = _instance_ids(trees[0]), _instance_ids((tmp_path / "other").resolve())
    assert here.keys() == there.keys()
    assert not set(here.values()) & set(there.values())


def test_instance_id_survives_a_rebake_with_a_rotated_token(trees: list[Path], tmp_path: Path) -> None:
    """A re-bake that changes a seed (a new bootstrap token) keeps every node's instance-id, so a
    seed attached again to a running node does not make cloud-init provision it anew."""
    _carry_bundle(trees[0].parent.parent.parent, tmp_path, PROFILE)
    proc = bake("--profile", PROFILE, *SETS, "--rotate-token", "--quiet", out=tmp_path, env=ENVS[1])
    assert proc.returncode == 0, proc.stderr
    rotated = (tmp_path / PROFILE).resolve()
    changed = [
        n.name
        for n in (trees[0] / "nodes").iterdir()
        if (n / "user-data").read_bytes() != (rotated / "nodes" / n.name / "user-data").read_bytes()
    ]
    # the token is in the seed of the node that runs kubeadm init; joining nodes carry their own join
    # credential instead (cluster.join: certificate), so their seeds stay the same
    assert changed == ["cp-1"]
    assert _instance_ids(rotated) == _instance_ids(trees[0])
