"""`bake status outputs/<cluster>`: the page's content in a terminal and as JSON, read from the state file
the server keeps (read-only, while it runs or after), with no secret read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.serve.protocol import Report
from builder.serve.store import Store

from .helpers import BAKE, bundle
from .serve_support import ADDRESSES, CLUSTER, bake_loopback


def _status(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BAKE, "status", str(tree), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("status")
    return bake_loopback(out, "--set", "cluster.seed.reportUrl=http://127.0.0.1:8080")


def test_status_before_any_report(tree: Path) -> None:
    proc = _status(tree, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["state"] is None
    [cluster] = doc["clusters"]
    assert [(n["name"], n["ip"], n["current"]) for n in cluster["nodes"]] == [
        (name, ip, None) for name, ip in ADDRESSES.items()
    ]
    assert all(s["state"] == "pending" for n in cluster["nodes"] for s in n["steps"])
    text = _status(tree).stdout
    assert "never" in text and "worker-2" in text and "reports to http://127.0.0.1:8080" in text


def test_status_shows_steps_times_and_failures(tree: Path, tmp_path: Path) -> None:
    state = tree.parent / ".bake" / CLUSTER / "serve.sqlite"
    store = Store(state, CLUSTER)
    reports = [
        ("worker-1", "prep", "started", 1000.0, ""), ("worker-1", "prep", "done", 1072.5, ""),
        ("worker-2", "kubeadm", "started", 1000.0, ""),
        ("worker-2", "kubeadm", "failed", 1010.0, "preflight\n[ERROR Port-10250]: Port 10250 is in use\n"),
    ]  # fmt: skip
    for seq, (node, step, event, at, tail) in enumerate(reports, 1):
        exit_ = "exited:1" if event == "failed" else ""
        assert store.apply(
            Report(CLUSTER, node, seq, 1_800_000_000, step, event, exit_, tail), received=at
        ).accepted
    store.close()
    try:
        # the bundle is not read: status works without it (and never needs its keys)
        moved = bundle(tree.parent, CLUSTER).rename(tmp_path / "elsewhere")
        proc = _status(tree)
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout
        assert "done 1 min 12 s" in text  # 72.5 s
        assert "failed (exited:1)" in text and "kubeadm failed" in text
        assert "[ERROR Port-10250]: Port 10250 is in use" in text
        doc = json.loads(_status(tree, "--json").stdout)
    finally:
        moved.rename(bundle(tree.parent, CLUSTER))
    assert doc["state"] == str(state)
    nodes = {n["name"]: n for n in doc["clusters"][0]["nodes"]}
    prep = {s["step"]: s for s in nodes["worker-1"]["steps"]}["prep"]
    assert (prep["state"], prep["seconds"]) == ("done", 72.5)
    kubeadm = {s["step"]: s for s in nodes["worker-2"]["steps"]}["kubeadm"]
    assert kubeadm["tail"].endswith("Port 10250 is in use\n") and kubeadm["failures"] == 1
    assert nodes["cp-1"]["current"] is None


def test_status_of_something_that_is_not_a_tree(tmp_path: Path) -> None:
    proc = _status(tmp_path)
    assert proc.returncode == 2
    assert "not a baked output tree" in proc.stderr
