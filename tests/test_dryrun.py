"""`bake plan`: what a bake would change, without writing anything; one kind of change per test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .helpers import BAKE

ALG = ("--set", "cluster.encryptionAlgorithm=ECDSA-P256")
PROFILE = ("-p", "single-master", *ALG)


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BAKE, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def _plan(cwd: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = _cli(cwd, "plan", *PROFILE, *args, "--json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root with its inode, size and mtime: a plan must change none of them."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plan")
    proc = _cli(root, *PROFILE, "-q")
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture
def site(baked: Path, tmp_path: Path) -> Path:
    """A copy of the baked working directory (outputs/ and secrets/), for tests that change it."""
    shutil.copytree(baked, tmp_path / "site", symlinks=True)
    return tmp_path / "site"


def test_first_plan_creates_everything_and_writes_nothing(tmp_path: Path) -> None:
    code, doc = _plan(tmp_path)
    assert code == 1 and doc["changes"] is True
    assert list(tmp_path.iterdir()) == [], "a plan must not create outputs/ or secrets/"
    assert doc["treeExists"] is False
    assert doc["secrets"]["written"] is True
    assert any("would create a new one with new CAs" in c for c in doc["secrets"]["changes"])
    assert doc["nodes"] == {n: {"status": "added", "instanceId": doc["nodes"][n]["instanceId"]}
                            for n in ("cp-1", "worker-1", "worker-2")}  # fmt: skip
    assert "nodes/cp-1/seed.iso" in doc["outputs"]["added"]


def test_no_change_exits_0_and_touches_nothing(baked: Path) -> None:
    before = _state(baked)
    code, doc = _plan(baked)
    assert code == 0, doc
    assert doc["changes"] is False and doc["secrets"] == {
        "bundle": "secrets/single-master", "written": False, "changes": [],
    }  # fmt: skip
    assert {n["status"] for n in doc["nodes"].values()} == {"unchanged"}
    assert doc["outputs"] == {"added": [], "changed": [], "removed": []}
    assert _state(baked) == before
    human = _cli(baked, "plan", *PROFILE)
    assert human.returncode == 0 and human.stdout.strip().endswith("no changes")


def test_node_address_change_reissues_its_leaves_and_says_why(baked: Path) -> None:
    before = _state(baked)
    code, doc = _plan(baked, "--set", "nodes[0].ip=10.77.0.42")
    assert code == 1
    reissued = [c for c in doc["secrets"]["changes"] if c.startswith("cp-1: re-issued apiserver:")]
    assert reissued and "10.77.0.42" in reissued[0], doc["secrets"]["changes"]
    assert doc["secrets"]["written"] is True
    cp = doc["nodes"]["cp-1"]
    assert cp["status"] == "changed"
    changed = {f["path"]: f for f in cp["files"]["changed"]}
    # a certificate is public: its diff is shown; its key is a secret: named, never printed
    assert changed["/etc/kubernetes/pki/apiserver.crt"]["diff"].startswith("--- ")
    assert changed["/etc/kubernetes/pki/apiserver.key"] == {
        "path": "/etc/kubernetes/pki/apiserver.key", "diff": None, "secret": True,
    }  # fmt: skip
    assert "PRIVATE KEY" not in json.dumps(doc)
    assert _state(baked) == before


def test_public_file_change_shows_a_short_diff(baked: Path) -> None:
    code, doc = _plan(baked, "--set", "cluster.imageRepository=registry.example.com/k8s")
    assert code == 1
    worker = doc["nodes"]["worker-1"]["files"]["changed"]
    (toml,) = [f for f in worker if f["path"] == "/etc/bake/containerd/config-v2.toml"]
    assert "+" in toml["diff"] and "registry.example.com/k8s/pause" in toml["diff"]
    assert "registry.k8s.io/pause" in toml["diff"]


def test_added_and_removed_nodes_and_instance_ids(baked: Path) -> None:
    cp = "{name: cp-1, role: control-plane, ip: 10.77.0.11, mac: '52:54:00:77:00:11'}"
    workers = [
        f"{{name: worker-{i}, role: worker, ip: 10.77.0.2{i}, mac: '52:54:00:77:00:2{i}'}}" for i in (1, 2, 3)
    ]
    code, doc = _plan(baked, "--set", f"nodes=[{cp}, {', '.join(workers)}]")
    assert code == 1 and doc["nodes"]["worker-3"]["status"] == "added"
    assert "nodes/worker-3/seed.iso" in doc["outputs"]["added"]
    assert doc["nodes"]["worker-1"] == {"status": "unchanged"}
    code, doc = _plan(baked, "--set", f"nodes=[{cp}, {workers[0]}]")
    assert code == 1
    assert doc["nodes"]["worker-2"] == {"status": "removed"}
    assert "nodes/worker-2/user-data" in doc["outputs"]["removed"]
    # re-provisioning is explicit: a generation bump, and the plan says cloud-init will run again
    code, doc = _plan(baked, "--set", "nodes[1].generation=1")
    iid = doc["nodes"]["worker-1"].get("instanceId")
    assert code == 1 and iid == {"from": "single-master.worker-1.gen0", "to": "single-master.worker-1.gen1"}
    # a seed file beside user-data (no secret in it) with its diff
    code, doc = _plan(baked, "--set", "nodes[1].mac=52:54:00:77:00:99")
    (seed,) = doc["nodes"]["worker-1"]["seed"]
    assert code == 1 and seed["file"] == "network-config"
    assert "+" in seed["diff"] and "52:54:00:77:00:99" in seed["diff"]


def test_old_bundle_place_is_reported_not_moved(site: Path) -> None:
    generation = (site / "outputs/single-master").resolve()
    shutil.move(site / "secrets/single-master", generation / "secrets")
    before = _state(site)
    code, doc = _plan(site)
    assert code == 1
    assert any(c.startswith("bundle: would move the secrets bundle") for c in doc["secrets"]["changes"])
    assert _state(site) == before


def test_a_refused_bake_is_a_refused_plan(site: Path) -> None:
    shutil.rmtree(site / "secrets")
    proc = _cli(site, "plan", *PROFILE)
    assert proc.returncode == 2 and "was baked with another cluster CA" in proc.stderr
    assert not (site / "secrets").exists()
