"""builder.serve.store: the reports' state in SQLite: replays refused, nothing half-written, and the
state (and the replay window) still there after the file is opened again."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from builder.errors import BakeError
from builder.serve.protocol import Report
from builder.serve.store import Store


def _r(node: str, seq: int, step: str, event: str, tail: str = "", exit_: str = "") -> Report:
    return Report("prod", node, seq, 1_800_000_000 + seq, step, event, exit_, tail)


def test_steps_and_times(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", "prod")
    assert store.apply(_r("w1", 1, "prep", "started"), received=100.0).accepted
    assert store.apply(_r("w1", 2, "prep", "done"), received=112.5).accepted
    assert store.apply(_r("w1", 3, "kubeadm", "started"), received=120.0).accepted
    assert store.apply(_r("w1", 4, "kubeadm", "failed", "boom\n", "exited:1"), received=130.0).accepted
    state = store.nodes(["w1", "w2"])
    steps = {s["step"]: s for s in state["w1"]["steps"]}
    assert steps["prep"]["state"] == "done" and steps["prep"]["seconds"] == 12.5
    assert steps["kubeadm"]["state"] == "failed" and steps["kubeadm"]["tail"] == "boom\n"
    assert steps["kubeadm"]["exit"] == "exited:1" and steps["kubeadm"]["failures"] == 1
    assert steps["cni"]["state"] == "pending"
    assert [s["step"] for s in state["w1"]["steps"]] == ["bootstrap", "prep", "packages", "runtime", "wait",
                                                         "kubeadm", "cni"]  # fmt: skip
    assert state["w1"]["current"] == {"step": "kubeadm", "event": "failed"}
    assert state["w1"]["lastReport"] == 130.0
    assert state["w2"]["current"] is None and state["w2"]["lastReport"] is None
    # a retry: running again, the failure and its tail kept for the page
    assert store.apply(_r("w1", 5, "kubeadm", "started"), received=200.0).accepted
    again = {s["step"]: s for s in store.nodes(["w1"])["w1"]["steps"]}["kubeadm"]
    assert again["state"] == "running" and again["attempts"] == 2 and again["failures"] == 1
    assert again["tail"] == "boom\n"


def test_replay_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", "prod")
    assert store.apply(_r("w1", 10, "prep", "started")).accepted
    assert store.apply(_r("w1", 11, "prep", "done")).accepted
    before = store.nodes(["w1"]), store.events("w1"), store.version
    for seq in (11, 10, 1):  # the same, an older one
        outcome = store.apply(_r("w1", seq, "prep", "failed", "forged", "exited:1"))
        assert not outcome.accepted and "replay" in outcome.reason
    assert (store.nodes(["w1"]), store.events("w1"), store.version) == before
    # sequences are per node
    assert store.apply(_r("w2", 1, "prep", "started")).accepted


def test_state_and_replay_window_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = Store(path, "prod")
    store.apply(_r("w1", 41, "prep", "started"), received=1.0)
    store.apply(_r("w1", 42, "prep", "done"), received=3.0)
    before = store.nodes(["w1"])
    store.close()
    again = Store(path, "prod")
    assert again.nodes(["w1"]) == before
    assert again.version == 2
    assert not again.apply(_r("w1", 42, "prep", "done")).accepted
    assert again.apply(_r("w1", 43, "runtime", "started")).accepted
    again.close()
    readonly = Store(path, "prod", readonly=True)
    assert readonly.nodes(["w1"])["w1"]["current"] == {"step": "runtime", "event": "started"}
    readonly.close()


def test_file_is_private(tmp_path: Path) -> None:
    Store(tmp_path / "d" / "s.sqlite", "prod").close()
    assert stat.S_IMODE((tmp_path / "d" / "s.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700


def test_a_file_that_is_not_a_state_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(BakeError, match="not a bake serve state file"):
        Store(path, "prod")
    assert path.read_bytes() == b"this is not a database" * 100


def test_another_clusters_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    Store(path, "prod").close()
    with pytest.raises(BakeError, match="the state of cluster 'prod'"):
        Store(path, "test")


def test_a_failed_write_leaves_the_state_as_it_was(tmp_path: Path) -> None:
    """The replay check and the update are one transaction: an error in the middle rolls it all back."""
    store = Store(tmp_path / "s.sqlite", "prod")
    store.apply(_r("w1", 1, "prep", "started"))
    before = store.nodes(["w1"]), store.events("w1")
    store._db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON event BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.DatabaseError):
        store.apply(_r("w1", 2, "prep", "done"))
    store._db.execute("DROP TRIGGER boom")
    assert (store.nodes(["w1"]), store.events("w1")) == before
    assert store.apply(_r("w1", 2, "prep", "done")).accepted  # seq 2 was not consumed


def test_concurrent_reports_lose_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite", "prod")
    nodes = [f"n{i}" for i in range(40)]

    def node(name: str) -> None:
        for seq, (step, event) in enumerate([("prep", "started"), ("prep", "done"), ("wait", "started")], 1):
            assert store.apply(_r(name, seq, step, event)).accepted

    threads = [threading.Thread(target=node, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = store.nodes(nodes)
    assert all(state[n]["current"] == {"step": "wait", "event": "started"} for n in nodes)
    assert store.version == 3 * len(nodes)
