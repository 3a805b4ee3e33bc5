"""What the `bake serve` tests share: a cluster baked with loopback addresses, a server in a thread,
requests from a chosen source address, reports signed by hand.

Every node of the baked profile has an address in 127.0.0.0/8, so a test can be any node by binding
its client socket to that address: the server sees the source address a node would have, and all
traffic stays on loopback. Reports are signed here with `hmac` and the key read from the node's own
seed (its user-data), never with the code under test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import io
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from builder.serve import catalog, server
from builder.serve.catalog import Catalog

from .helpers import bake, bundle, disk_files

CLUSTER = "single-master"
ADDRESSES = {"cp-1": "127.0.0.11", "worker-1": "127.0.0.21", "worker-2": "127.0.0.22"}
MACS = {"cp-1": "52:54:00:77:00:11", "worker-1": "52:54:00:77:00:21", "worker-2": "52:54:00:77:00:22"}
LOOPBACK_SETS = (
    "--set", "cluster.encryptionAlgorithm=ECDSA-P256",
    "--set", f"nodes[0].ip={ADDRESSES['cp-1']}",
    "--set", f"nodes[1].ip={ADDRESSES['worker-1']}",
    "--set", f"nodes[2].ip={ADDRESSES['worker-2']}",
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bake_loopback(out: Path, *args: str) -> Path:
    """single-master with loopback addresses (and `args`, e.g. a report URL), baked by the CLI."""
    proc = bake("--profile", CLUSTER, *LOOPBACK_SETS, *args, "--quiet", out=out)
    assert proc.returncode == 0, proc.stderr
    return out / CLUSTER


def load(tree: Path, *, tls: bool = False) -> Catalog:
    return catalog.catalog([catalog.load_cluster(tree, bundle(tree.parent, CLUSTER), tls=tls)])


def seed_files(tree: Path, node: str) -> dict[str, bytes]:
    """The node's write_files, decoded from its user-data (what cloud-init would write)."""
    doc = yaml.safe_load((tree / "nodes" / node / "user-data").read_bytes())
    return {path: data for path, (data, _, _) in disk_files(doc).items()}


def seed_key(tree: Path, node: str) -> bytes:
    """The report key the node's seed carries (/etc/bake/report.key), as the reporter reads it."""
    return seed_files(tree, node)["/etc/bake/report.key"].strip()


def report_body(
    node: str, seq: int, step: str, event: str, *, tail: str = "", exit_: str = "", **extra: Any
) -> bytes:
    doc = {
        "v": 1, "cluster": CLUSTER, "node": node, "seq": seq, "time": 1_800_000_000, "step": step,
        "event": event, "exit": exit_, "tail": base64.b64encode(tail.encode()).decode(), **extra,
    }  # fmt: skip
    return json.dumps(doc).encode()


def sign(key: bytes, body: bytes) -> dict[str, str]:
    return {"X-Bake-Signature": "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()}


class Running:
    def __init__(self, srv: server.SeedServer, log: io.StringIO) -> None:
        self.server = srv
        self.log_stream = log
        self.port = int(srv.server_address[1])

    @property
    def log(self) -> str:
        return self.log_stream.getvalue()

    def request(
        self,
        method: str,
        path: str,
        *,
        source: str = "127.0.0.1",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        context: ssl.SSLContext | None = None,
    ) -> tuple[int, bytes]:
        if context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.port, source_address=(source, 0), timeout=30, context=context
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, source_address=(source, 0), timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get(self, path: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
        return self.request("GET", path, source=source)

    def report(self, body: bytes, headers: dict[str, str], source: str = "127.0.0.1") -> int:
        status, _ = self.request(
            "POST",
            "/report",
            source=source,
            body=body,
            headers={"Content-Type": "application/json", **headers},
        )
        return status


@contextlib.contextmanager
def running(
    cat: Catalog, *, tls: bool = False, port: int = 0, handler: Any = None, **kwargs: Any
) -> Iterator[Running]:
    """A server on 127.0.0.1 in a thread; its stores closed and its thread joined afterwards."""
    log = io.StringIO()
    srv = server.make_server(
        cat, ("127.0.0.1", port), tls=tls, log=server.RequestLog(log), handler=handler, **kwargs
    )
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(srv, log)
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=30)
        for store in srv.stores.values():
            store.close()
