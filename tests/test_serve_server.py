"""builder.serve.server over real HTTP on loopback: every rule from the outside, bad input, a restart,
TLS with the baked certificate, and 1,000 simulated nodes reporting at once.

The cluster is baked by the CLI with loopback addresses (tests/serve_support.py), so each request
comes from the address of the node it plays. Seeds are compared with the node's files in the tree;
reports are signed with the key read from the node's own seed.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from builder.serve import protocol, server
from builder.serve.catalog import Catalog, Cluster, Node
from builder.serve.store import Store

from .helpers import bundle
from .peers import missing, program
from .serve_support import (
    ADDRESSES,
    CLUSTER,
    MACS,
    Running,
    bake_loopback,
    free_port,
    load,
    report_body,
    running,
    seed_files,
    seed_key,
    sign,
)

pytestmark = pytest.mark.peer  # loopback sources 127.0.0.x (any Linux has them)

W1, W2, CP = ADDRESSES["worker-1"], ADDRESSES["worker-2"], ADDRESSES["cp-1"]


@pytest.fixture(scope="module")
def loopback_sources() -> None:
    try:
        with socket.socket() as s:
            s.bind((W1, 0))
    except OSError as exc:
        missing(f"cannot bind a client socket to {W1} (loopback 127.0.0.0/8): {exc}")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, loopback_sources: None) -> Path:
    out = tmp_path_factory.mktemp("serve")
    return bake_loopback(out, "--set", "cluster.seed.reportUrl=http://127.0.0.1:8080",
                         "--base-url", f"http://127.0.0.1:8080/{CLUSTER}")  # fmt: skip


@pytest.fixture
def fresh(tree: Path, tmp_path: Path) -> Path:
    """The baked tree and its bundle copied, with no report state yet (each test starts afresh)."""
    out = tmp_path / "out"
    (out / ".bake" / CLUSTER).mkdir(parents=True)
    gen = out / ".bake" / CLUSTER / "gen-1"
    shutil.copytree(tree.resolve(), gen, symlinks=True)
    (out / CLUSTER).symlink_to(f".bake/{CLUSTER}/gen-1")
    shutil.copytree(bundle(tree.parent, CLUSTER), bundle(out, CLUSTER))
    return out / CLUSTER


def _state(srv: Running) -> dict[str, Any]:
    status, raw = srv.get("/api/state")
    assert status == 200
    doc: dict[str, Any] = json.loads(raw)
    doc.pop("now")
    return doc


def _node_state(srv: Running, node: str) -> dict[str, Any]:
    [cluster] = _state(srv)["clusters"]
    state: dict[str, Any] = next(n for n in cluster["nodes"] if n["name"] == node)
    return state


def _steps(srv: Running, node: str) -> dict[str, str]:
    return {s["step"]: s["state"] for s in _node_state(srv, node)["steps"]}


# --------------------------------------------------------------------------------------------------
# seeds


SEED_FILES = ("user-data", "meta-data", "network-config")


def test_a_worker_gets_its_own_seed_and_every_request_is_logged(fresh: Path) -> None:
    with running(load(fresh)) as srv:
        for f in SEED_FILES:
            status, body = srv.get(f"/{CLUSTER}/worker-1/{f}", source=W1)
            assert status == 200
            assert body == (fresh / "nodes" / "worker-1" / f).read_bytes()
        status, body = srv.get(f"/ipxe?mac={MACS['worker-1']}", source=W1)
        assert status == 200 and f"s=http://127.0.0.1:8080/{CLUSTER}/worker-1/" in body.decode()
        status, _ = srv.request("HEAD", f"/{CLUSTER}/worker-1/user-data", source=W1)
        assert status == 200
    # one line per request; each handler thread writes its line after its response, so under load two
    # lines can swap: the set is what every request being logged means
    logged = sorted(tuple(line.split()[1:5]) for line in srv.log.splitlines())
    assert logged == sorted(
        [
            *((W1, "GET", f"/{CLUSTER}/worker-1/{f}", "200") for f in SEED_FILES),
            (W1, "GET", f"/ipxe?mac={MACS['worker-1']}", "200"),
            (W1, "HEAD", f"/{CLUSTER}/worker-1/user-data", "200"),
        ]
    )


def test_wrong_source_address_is_refused_and_logged(fresh: Path) -> None:
    with running(load(fresh)) as srv:
        assert srv.get(f"/{CLUSTER}/worker-1/user-data", source=W2)[0] == 403
        assert srv.get(f"/{CLUSTER}/worker-1/user-data", source="127.0.0.1")[0] == 403
        assert srv.get(f"/ipxe?mac={MACS['worker-1']}", source=W2)[0] == 403
    assert srv.log.count(" 403 refused: source ") == 3


def test_wrong_mac_is_refused_and_logged(fresh: Path) -> None:
    with running(load(fresh)) as srv:
        status, body = srv.get(f"/{CLUSTER}/worker-1/boot.ipxe?mac={MACS['worker-2']}", source=W1)
        assert status == 403 and b"worker" not in body  # the reason is in the log only
        assert srv.get(f"/ipxe?mac={MACS['worker-2']}", source=W1)[0] == 403
    assert srv.log.count(f"refused: MAC {MACS['worker-2']} is not {CLUSTER}/worker-1's") == 1
    assert "refused: source 127.0.0.21 is not single-master/worker-2's" in srv.log


def test_control_plane_seed_over_plain_http_is_refused(fresh: Path) -> None:
    # even when its files are in the tree (an old bake, a copy by hand)
    http = fresh / "http" / "cp-1"
    http.mkdir()
    for f in ("user-data", "meta-data", "network-config"):
        shutil.copy(fresh / "nodes" / "cp-1" / f, http / f)
    with running(load(fresh)) as srv:
        status, body = srv.get(f"/{CLUSTER}/cp-1/user-data", source=CP)
        assert status == 403 and b"PRIVATE KEY" not in body
        assert srv.get(f"/ipxe?mac={MACS['cp-1']}", source=CP)[0] == 403
    assert "did not publish it (cluster.seed.httpPublishControlPlanes: false)" in srv.log


def test_anything_else_is_refused(fresh: Path) -> None:
    with running(load(fresh)) as srv:
        w1 = f"/{CLUSTER}/worker-1"
        for path in ("/etc/passwd", f"{w1}/../../manifest.json", f"{w1}/seed.iso", "/admin.conf",
                     f"/{CLUSTER}/nodes/worker-1/user-data", f"/{CLUSTER}/admin.conf"):  # fmt: skip
            status, body = srv.get(path, source=W1)
            assert status in (403, 404), path
            assert b"BEGIN" not in body
        assert srv.request("PUT", "/report", source=W1, body=b"{}")[0] == 501
        assert srv.request("POST", "/elsewhere", source=W1, body=b"{}")[0] == 404


def test_the_page_answers_the_admin_networks_only(fresh: Path) -> None:
    with running(load(fresh)) as srv:
        for path in ("/", "/app.js", "/app.css", "/api/state"):
            status, _ = srv.get(path, source=W1)
            assert status == 403, path
            assert srv.get(path, source="127.0.0.1")[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert "script-src 'self'" in resp.getheader("Content-Security-Policy", "")
        assert "unsafe-inline" not in resp.getheader("Content-Security-Policy", "")
        conn.close()
    with running(load(fresh), admin=(ipaddress.ip_network(f"{W1}/32"),)) as srv:
        assert srv.get("/api/state", source=W1)[0] == 200
        assert srv.get("/api/state", source="127.0.0.1")[0] == 403


# --------------------------------------------------------------------------------------------------
# reports


def test_a_signed_report_moves_the_state(fresh: Path) -> None:
    key = seed_key(fresh, "worker-1")
    with running(load(fresh)) as srv:
        body = report_body("worker-1", 5, "prep", "started")
        assert srv.report(body, sign(key, body), source=W2) == 204  # the signature proves it, not the address
        body = report_body("worker-1", 6, "prep", "done")
        assert srv.report(body, sign(key, body)) == 204
        body = report_body("worker-1", 7, "kubeadm", "failed", tail="E: boom\n", exit_="exited:1")
        assert srv.report(body, sign(key, body)) == 204
        state = _node_state(srv, "worker-1")
        assert state["current"] == {"step": "kubeadm", "event": "failed"}
        steps = {s["step"]: s for s in state["steps"]}
        assert steps["prep"]["state"] == "done" and steps["prep"]["seconds"] >= 0
        assert steps["kubeadm"]["tail"] == "E: boom\n" and steps["kubeadm"]["exit"] == "exited:1"
    assert "report single-master/worker-1 seq 7: kubeadm failed" in srv.log


def _refused(srv: Running, body: bytes, headers: dict[str, str], status: int) -> None:
    before = _state(srv)
    assert srv.report(body, headers) == status
    assert _state(srv) == before, "a refused report changed the state"


def test_bad_signature_is_refused(fresh: Path) -> None:
    key = seed_key(fresh, "worker-1")
    with running(load(fresh)) as srv:
        body = report_body("worker-1", 5, "prep", "started")
        _refused(srv, body, sign(b"0" * 64, body), 403)
        _refused(srv, body, {}, 403)
        _refused(srv, body, {"X-Bake-Signature": "sha256=zz"}, 403)
        altered = report_body("worker-1", 5, "prep", "done")
        _refused(srv, altered, sign(key, body), 403)
        assert srv.report(body, sign(key, body)) == 204
    assert srv.log.count("refused report: bad signature for single-master/worker-1") == 4


def test_a_report_for_another_node_is_refused(fresh: Path) -> None:
    key1 = seed_key(fresh, "worker-1")
    assert key1 != seed_key(fresh, "worker-2")
    with running(load(fresh)) as srv:
        body = report_body("worker-2", 5, "kubeadm", "failed", tail="forged", exit_="exited:1")
        _refused(srv, body, sign(key1, body), 403)
        other = report_body("cp-1", 5, "prep", "started")
        _refused(srv, other, sign(key1, other), 403)
        unknown = report_body("worker-9", 5, "prep", "started")
        _refused(srv, unknown, sign(key1, unknown), 403)
        assert _node_state(srv, "worker-2")["current"] is None
    assert "bad signature for single-master/worker-2" in srv.log
    assert "no node single-master/worker-9" in srv.log


def test_replay_is_refused(fresh: Path) -> None:
    key = seed_key(fresh, "worker-1")
    with running(load(fresh)) as srv:
        first = report_body("worker-1", 100, "prep", "started")
        second = report_body("worker-1", 101, "prep", "failed", tail="x", exit_="exited:1")
        assert srv.report(first, sign(key, first)) == 204
        assert srv.report(second, sign(key, second)) == 204
        _refused(srv, first, sign(key, first), 409)  # an old report played again
        _refused(srv, second, sign(key, second), 409)
    assert "replay: sequence 100 is not after 101" in srv.log


def test_malformed_json_is_refused(fresh: Path) -> None:
    key = seed_key(fresh, "worker-1")
    with running(load(fresh)) as srv:
        cut = report_body("worker-1", 5, "prep", "started")[:-1]
        for body in (b"{", b"[]", b"\xff\xfe", b'{"v": 1}', cut,
                     report_body("worker-1", 5, "reboot", "started"), b"[" * 8000 + b"]" * 8000):  # fmt: skip
            _refused(srv, body, sign(key, body), 400)
        assert srv.get("/", source="127.0.0.1")[0] == 200  # still serving


def test_oversized_bodies_are_refused_unread(fresh: Path) -> None:
    key = seed_key(fresh, "worker-1")
    with running(load(fresh)) as srv:
        big = report_body("worker-1", 5, "prep", "started", padding="x" * protocol.MAX_BODY)
        _refused(srv, big, sign(key, big), 413)
        # a declared length far beyond the limit, with no body behind it: answered at once, never read
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(b"POST /report HTTP/1.0\r\nContent-Length: 99999999999\r\n\r\n")
        started = time.monotonic()
        answer = sock.recv(100)
        sock.close()
        assert answer.startswith(b"HTTP/1.0 413") and time.monotonic() - started < 5
        # no length, a chunked body, a length that is no number
        assert srv.request("POST", "/report", body=iter([b"{}"]),
                           headers={"Transfer-Encoding": "chunked"})[0] == 411  # fmt: skip
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        sock.sendall(b"POST /report HTTP/1.0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.0 411")
        sock.close()
        assert srv.request("POST", "/report", body=b"{}", headers={"Content-Length": "-2"})[0] == 400


def test_a_silent_client_loses_its_connection_and_the_server_goes_on(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HANDLER_TIMEOUT", 1.0)
    key = seed_key(fresh, "worker-1")
    with running(load(fresh)) as srv:
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        silent.sendall(b"POST /report HTTP/1.0\r\nContent-Length: 500\r\n\r\n{")  # and then nothing
        garbage = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        garbage.sendall(os.urandom(4096) + b"\r\n\r\n")
        body = report_body("worker-1", 5, "prep", "started")
        assert srv.report(body, sign(key, body)) == 204  # meanwhile, served
        assert silent.recv(100).startswith(b"HTTP/1.0 408")
        garbage.recv(100)
        silent.close()
        garbage.close()
        assert _node_state(srv, "worker-1")["current"] == {"step": "prep", "event": "started"}


def test_state_survives_a_restart(fresh: Path) -> None:
    key = seed_key(fresh, "worker-1")
    with running(load(fresh)) as srv:
        for seq, (step, event) in enumerate(
            [("prep", "started"), ("prep", "done"), ("runtime", "started")], 1
        ):
            body = report_body("worker-1", seq, step, event)
            assert srv.report(body, sign(key, body)) == 204
        before = _state(srv)
    assert (fresh.parent / ".bake" / CLUSTER / "serve.sqlite").is_file()
    with running(load(fresh)) as srv:
        assert _state(srv) == before
        old = report_body("worker-1", 3, "runtime", "started")
        assert srv.report(old, sign(key, old)) == 409  # the replay window survived too
        new = report_body("worker-1", 4, "runtime", "done")
        assert srv.report(new, sign(key, new)) == 204
        assert _steps(srv, "worker-1")["runtime"] == "done"


def test_state_survives_a_rebake(fresh: Path, tmp_path: Path) -> None:
    """The state lives beside the bake's lock, outside the generation a re-bake replaces."""
    key = seed_key(fresh, "worker-1")
    with running(load(fresh)) as srv:
        body = report_body("worker-1", 1, "prep", "started")
        assert srv.report(body, sign(key, body)) == 204
    gen2 = fresh.parent / ".bake" / CLUSTER / "gen-2"
    shutil.copytree(fresh.resolve(), gen2, symlinks=True)
    (fresh.parent / "next").symlink_to(f".bake/{CLUSTER}/gen-2")
    os.replace(fresh.parent / "next", fresh)
    shutil.rmtree(fresh.parent / ".bake" / CLUSTER / "gen-1")
    with running(load(fresh)) as srv:
        assert _node_state(srv, "worker-1")["current"] == {"step": "prep", "event": "started"}


def test_a_cluster_without_report_url_takes_no_reports(tmp_path: Path, loopback_sources: None) -> None:
    tree = bake_loopback(tmp_path / "out")
    files = seed_files(tree, "worker-1")
    assert not [p for p in files if "report" in p]
    with running(load(tree)) as srv:
        assert srv.get(f"/{CLUSTER}/worker-1/user-data", source=W1)[0] == 200
        body = report_body("worker-1", 1, "prep", "started")
        assert srv.report(body, sign(b"0" * 64, body)) == 403
    assert "takes no reports" in srv.log
    assert not (tmp_path / "out" / ".bake" / CLUSTER / "serve.sqlite").exists()


# --------------------------------------------------------------------------------------------------
# TLS


@pytest.fixture(scope="module")
def tls_tree(tmp_path_factory: pytest.TempPathFactory, loopback_sources: None) -> tuple[Path, int]:
    port = free_port()
    out = tmp_path_factory.mktemp("serve-tls")
    return bake_loopback(out, "--set", f"cluster.seed.reportUrl=https://127.0.0.1:{port}"), port


@pytest.mark.integration
def test_tls_with_the_baked_certificate_pinned_by_the_node(
    tls_tree: tuple[Path, int], tmp_path: Path
) -> None:
    tree, port = tls_tree
    files = seed_files(tree, "worker-1")
    ca_pem = files["/etc/bake/report-ca.crt"]
    assert b"PRIVATE" not in ca_pem
    assert b"BAKE_REPORT_CACERT=/etc/bake/report-ca.crt" in files["/etc/bake/report.env"]
    assert b"BAKE_REPORT_URL=https://127.0.0.1:" in files["/etc/bake/report.env"]
    # openssl: the bundle's server certificate chains to the CA the node pins, for the URL's host
    openssl = program("openssl")
    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "server.crt").write_bytes(
        (bundle(tree.parent, CLUSTER) / "pki" / "seed-server.crt").read_bytes()
    )
    verify = subprocess.run(
        [openssl, "verify", "-CAfile", tmp_path / "ca.crt", "-purpose", "sslserver",
         "-verify_ip", "127.0.0.1", tmp_path / "server.crt"], capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the cluster CA is not the seed CA
    assert ca_pem != (bundle(tree.parent, CLUSTER) / "pki" / "ca.crt").read_bytes()
    with pytest.raises(Exception, match="--tls"):
        server.make_server(load(tree), ("127.0.0.1", 0))
    pinned = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    key = seed_key(tree, "worker-1")
    with running(load(tree, tls=True), tls=True, port=port) as srv:
        status, body = srv.request("GET", f"/{CLUSTER}/worker-1/meta-data", source=W1, context=pinned)
        assert status == 200 and body == (tree / "nodes" / "worker-1" / "meta-data").read_bytes()
        report = report_body("worker-1", 1, "prep", "started")
        status, _ = srv.request("POST", "/report", body=report, headers=sign(key, report), context=pinned)
        assert status == 204
        with pytest.raises(ssl.SSLCertVerificationError):
            srv.request("GET", "/", context=ssl.create_default_context())  # the system's CAs do not know it
        plain = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            plain.request("GET", "/")
            plain.getresponse().read()
        plain.close()
        # openssl s_client as a peer: the handshake verifies with the pinned CA
        proc = subprocess.run(
            [openssl, "s_client", "-connect", f"127.0.0.1:{srv.port}", "-CAfile", tmp_path / "ca.crt",
             "-verify_return_error", "-verify_ip", "127.0.0.1", "-brief"],
            input="", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert "Verification: OK" in proc.stderr + proc.stdout, proc.stderr
    assert "TLS handshake failed" in srv.log


@pytest.mark.integration
def test_tls_certificate_is_reused_and_follows_the_host(tls_tree: tuple[Path, int], tmp_path: Path) -> None:
    tree, port = tls_tree
    out = tmp_path / "out"
    shutil.copytree(bundle(tree.parent, CLUSTER), bundle(out, CLUSTER))
    pki = bundle(out, CLUSTER) / "pki"
    before = {p.name: p.read_bytes() for p in pki.glob("seed-*")}
    bake_loopback(out, "--set", f"cluster.seed.reportUrl=https://127.0.0.1:{port}")
    assert {p.name: p.read_bytes() for p in pki.glob("seed-*")} == before
    bake_loopback(out, "--set", f"cluster.seed.reportUrl=https://127.0.0.2:{port}")
    after = {p.name: p.read_bytes() for p in pki.glob("seed-*")}
    assert after["seed-ca.crt"] == before["seed-ca.crt"] and after["seed-ca.key"] == before["seed-ca.key"]
    assert after["seed-server.crt"] != before["seed-server.crt"]
    text = subprocess.run(
        [program("openssl"), "x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage"],
        input=after["seed-server.crt"], capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    assert (
        "IP Address:127.0.0.2" in text and "127.0.0.1" not in text and "TLS Web Server Authentication" in text
    )


# --------------------------------------------------------------------------------------------------
# load


def _synthetic(tmp_path: Path, count: int) -> tuple[Catalog, dict[str, bytes]]:
    """A cluster of `count` nodes with their report keys (no bake: the load is the reports)."""
    master = os.urandom(32)
    nodes = {}
    keys = {}
    for i in range(count):
        name = f"node-{i:04d}"
        keys[name] = protocol.node_key(master, "fleet", name)
        ip = ipaddress.ip_address(f"10.{i // 250}.{i % 250}.1")
        nodes[name] = Node("fleet", name, "worker", ip, None, "amd64", True, keys[name])
    cluster = Cluster("fleet", tmp_path, tmp_path / "serve.sqlite", False, "http://127.0.0.1:8080", nodes)
    return Catalog({"fleet": cluster}, {}), keys


def _body(node: str, seq: int, step: str, event: str, tail: str = "", exit_: str = "") -> bytes:
    import base64

    doc = {"v": 1, "cluster": "fleet", "node": node, "seq": seq, "time": 1_800_000_000, "step": step,
           "event": event, "exit": exit_, "tail": base64.b64encode(tail.encode()).decode()}  # fmt: skip
    return json.dumps(doc).encode()


def test_a_thousand_nodes_report_at_once(tmp_path: Path) -> None:
    """1,000 simulated nodes, 32 at a time, each its first boot in order (one node in ten fails its
    kubeadm step with a tail), plus a replay and a forged report from each: every accepted report is
    in the state, every refused one changed nothing. Correctness, not speed."""
    count = 1000
    cat, keys = _synthetic(tmp_path, count)
    script = [("bootstrap", "started"), ("prep", "started"), ("prep", "done"), ("kubeadm", "started")]

    def node(srv: Running, i: int) -> tuple[str, list[int]]:
        name = f"node-{i:04d}"
        key = keys[name]
        codes = []
        steps = [*script, ("kubeadm", "failed") if i % 10 == 0 else ("kubeadm", "done")]
        for seq, (step, event) in enumerate(steps, 1):
            failed = event == "failed"
            body = _body(
                name, seq, step, event, f"{name} tail\n" if failed else "", "exited:1" if failed else ""
            )
            codes.append(srv.report(body, sign(key, body)))
        replay = _body(name, 2, "prep", "started")
        codes.append(srv.report(replay, sign(key, replay)))
        other = keys[f"node-{(i + 1) % count:04d}"]
        forged = _body(name, 99, "cni", "done")
        codes.append(srv.report(forged, sign(other, forged)))
        return name, codes

    with running(cat) as srv, concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = dict(pool.map(lambda i: node(srv, i), range(count)))
        state = _state(srv)
    assert all(codes == [204] * 5 + [409, 403] for codes in results.values()), [
        (n, c) for n, c in results.items() if c != [204] * 5 + [409, 403]
    ][:5]
    [cluster] = state["clusters"]
    assert len(cluster["nodes"]) == count
    for n in cluster["nodes"]:
        i = int(n["name"].split("-")[1])
        steps = {s["step"]: s for s in n["steps"]}
        want = "failed" if i % 10 == 0 else "done"
        assert n["current"] == {"step": "kubeadm", "event": want}, n["name"]
        assert steps["prep"]["state"] == "done" and steps["cni"]["state"] == "pending"
        assert steps["kubeadm"]["tail"] == (f"{n['name']} tail\n" if want == "failed" else "")
    assert state["version"] == 5 * count
    assert srv.server.counters.reports == 5 * count
    assert "internal error" not in srv.log
    store = Store(tmp_path / "serve.sqlite", "fleet", readonly=True)
    assert sum(len(store.events(f"node-{i:04d}")) for i in range(0, count, 100)) == 5 * 10
    store.close()
