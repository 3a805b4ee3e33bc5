"""builder.serve.page in a real browser: Debian's chromium, headless, against the server on loopback.

A scripted reporter plays three nodes' first boots: each time the page polls the state, the next
report is posted (over HTTP, signed with the node's key from its seed) before the poll is answered. So
every report reaches the server after the page was loaded, and what the page shows at the end it
learned live. The DOM chromium dumps is compared with the server's state; a failure shows its log
tail, as text (a node's tail holds markup, which must not become elements).
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from builder.serve import page, server

from .chromium import Dom, chromium
from .peers import program
from .serve_support import ADDRESSES, Running, bake_loopback, load, report_body, running, seed_key, sign

TAIL = "kubeadm: [preflight] Running pre-flight checks\nerror: <b>port 10250 is in use</b> & more\n"
SCRIPT = [
    ("worker-1", "bootstrap", "started"),
    ("worker-1", "prep", "started"),
    ("worker-2", "bootstrap", "started"),
    ("worker-1", "prep", "done"),
    ("worker-2", "prep", "started"),
    ("worker-2", "prep", "done"),
    ("worker-1", "packages", "started"),
    ("worker-1", "packages", "done"),
    ("worker-2", "kubeadm", "started"),
    ("worker-2", "kubeadm", "failed"),
    ("worker-1", "kubeadm", "started"),
    ("worker-1", "kubeadm", "done"),
    ("worker-1", "bootstrap", "done"),
]


class Reporter:
    """Posts the next report of SCRIPT at each call (one per poll of the page)."""

    def __init__(self, tree: Path) -> None:
        self.keys = {n: seed_key(tree, n) for n in ("worker-1", "worker-2")}
        self.position = 0
        self.srv: Running | None = None
        self.lock = threading.Lock()

    def next(self) -> None:
        with self.lock:
            if self.position >= len(SCRIPT) or self.srv is None:
                return
            node, step, event = SCRIPT[self.position]
            failed = event == "failed"
            body = report_body(node, self.position + 1, step, event, tail=TAIL if failed else "",
                               exit_="exited:1" if failed else "")  # fmt: skip
            assert self.srv.report(body, sign(self.keys[node], body), source=ADDRESSES[node]) == 204
            self.position += 1


def _scripted(reporter: Reporter) -> type[server.Handler]:
    class Scripted(server.Handler):
        def _operator(self, path: str) -> None:
            if path == page.STATE_ROUTE and "Chrome" in self.headers.get("User-Agent", ""):
                reporter.next()  # the browser's polls only, not the test's own look at the state
            super()._operator(path)

    return Scripted


def _matches_server(dom: Dom, srv: Running) -> dict[str, Any]:
    """The page shows what /api/state says: every node, its current step and every step's state."""
    doc = json.loads(srv.get("/api/state")[1])
    [cluster] = doc["clusters"]
    assert dom.version == str(doc["version"])
    assert set(dom.rows) == {n["name"] for n in cluster["nodes"]}
    for n in cluster["nodes"]:
        row = dom.rows[n["name"]]
        current = n["current"] or {"step": "", "event": ""}
        assert row["current"] == (current["step"], current["event"]), n["name"]
        assert {s: v["state"] for s, v in row["steps"].items()} == {s["step"]: s["state"] for s in n["steps"]}
        assert row["cells"][1:3] == [n["role"], n["ip"]]
    return doc


@pytest.mark.integration
@pytest.mark.peer
def test_live_page_in_headless_chromium(tmp_path: Path) -> None:
    program("chromium")
    tree = bake_loopback(tmp_path / "out", "--set", "cluster.seed.reportUrl=http://127.0.0.1:8080")
    reporter = Reporter(tree)
    with running(load(tree), handler=_scripted(reporter)) as srv:
        reporter.srv = srv
        url = f"http://127.0.0.1:{srv.port}/"
        # a first look: the nodes appear, the first reports arrive while the page polls
        first = Dom(chromium(tmp_path / "chromium-profile", url, "--dump-dom", budget_ms=2500))
        seen = reporter.position
        assert 1 <= seen < len(SCRIPT)
        doc = _matches_server(first, srv)
        assert set(first.rows) == {"cp-1", "worker-1", "worker-2"}
        assert first.rows["cp-1"]["cells"][3] == "no report yet"
        assert first.rows["worker-1"]["steps"]["bootstrap"]["state"] == "running"
        assert int(first.version or 0) == seen
        # a second look, long enough for the rest of the script: the steps advance, a failure shows its tail
        second = Dom(chromium(tmp_path / "chromium-profile", url, "--dump-dom", budget_ms=30_000))
        assert reporter.position == len(SCRIPT)
        doc = _matches_server(second, srv)
        w1, w2 = second.rows["worker-1"], second.rows["worker-2"]
        assert w1["current"] == ("bootstrap", "done")
        for step in ("bootstrap", "prep", "packages", "kubeadm"):
            assert w1["steps"][step]["state"] == "done"
            assert re.fullmatch(r"done \d+(\.\d)? s|done \d+ min \d+ s", w1["steps"][step]["text"]), w1[
                "steps"
            ][step]
            assert float(w1["steps"][step]["seconds"]) >= 0
        assert w1["steps"]["cni"]["state"] == "pending"
        assert w2["current"] == ("kubeadm", "failed")
        failed = w2["steps"]["kubeadm"]
        assert (failed["state"], failed["text"]) == ("failed", "failed (exited:1)")
        assert float(failed["seconds"]) >= 0  # how long it ran before it failed
        assert second.tails == {("worker-2", "kubeadm"): TAIL}
        assert "b" not in second.tags  # the tail's markup stayed text
        states = {n["name"]: n for n in doc["clusters"][0]["nodes"]}
        assert states["worker-2"]["steps"][5]["tail"] == TAIL
        # and a picture of it
        shot = tmp_path / "page.png"
        chromium(tmp_path / "chromium-profile", url, f"--screenshot={shot}", budget_ms=3000)
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    # the browser asked nothing but the page, its script and style, and the state; all from loopback
    asked = {line.split()[3] for line in srv.log.splitlines() if line.split()[1] == "127.0.0.1"}
    assert asked <= {"/", "/app.js", "/app.css", "/api/state", "/favicon.ico", "/report"}, asked


@pytest.mark.integration
@pytest.mark.peer
def test_page_of_a_cluster_whose_nodes_do_not_report(tmp_path: Path) -> None:
    program("chromium")
    tree = bake_loopback(tmp_path / "out")
    with running(load(tree)) as srv:
        url = f"http://127.0.0.1:{srv.port}/"
        dom = Dom(chromium(tmp_path / "chromium-profile", url, "--dump-dom", budget_ms=2000))
        _matches_server(dom, srv)
    assert set(dom.rows) == {"cp-1", "worker-1", "worker-2"}
    assert all(r["cells"][3] == "–" for r in dom.rows.values())
