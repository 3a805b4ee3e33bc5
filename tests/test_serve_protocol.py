"""builder.serve.protocol: the report's key, signature and body, checked against openssl and by hand.

The node signs with `openssl dgst -sha256 -hmac`; the key derivation and the signature are computed
here by openssl itself (the real peer) and compared with the server's. Every malformed body is refused
with its status, and the refusal names what is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
from typing import Any

import pytest

from builder.serve import protocol

from .peers import program

MASTER = bytes(range(32))


def _openssl_hmac(key_args: list[str], data: bytes) -> str:
    openssl = program("openssl")
    out = subprocess.run(
        [openssl, "dgst", "-sha256", *key_args, "-r"], input=data, capture_output=True, check=True
    ).stdout
    return out.split()[0].decode()


@pytest.mark.integration
def test_node_key_is_hmac_of_the_names_under_the_bundle_secret() -> None:
    message = b"bake-report-v1\0prod\0worker-1"
    expected = _openssl_hmac(["-mac", "HMAC", "-macopt", f"hexkey:{MASTER.hex()}"], message)
    assert protocol.node_key(MASTER, "prod", "worker-1") == expected.encode()


def test_node_keys_differ_per_node_and_cluster() -> None:
    keys = {protocol.node_key(MASTER, c, n) for c in ("prod", "test") for n in ("worker-1", "worker-2")}
    assert len(keys) == 4
    assert protocol.node_key(bytes(32), "prod", "worker-1") not in keys


@pytest.mark.integration
def test_signature_is_what_openssl_dgst_hmac_computes() -> None:
    key = protocol.node_key(MASTER, "prod", "worker-1")
    body = b'{"v":1,"node":"worker-1"}'
    expected = _openssl_hmac(["-hmac", key.decode()], body)
    assert protocol.signature(key, body) == f"sha256={expected}"
    assert protocol.signature_ok(key, body, f"sha256={expected}")
    assert not protocol.signature_ok(key, body + b" ", f"sha256={expected}")
    assert not protocol.signature_ok(
        protocol.node_key(MASTER, "prod", "worker-2"), body, f"sha256={expected}"
    )
    assert not protocol.signature_ok(key, body, None)
    assert not protocol.signature_ok(key, body, expected)  # the prefix is part of it


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "v": 1, "cluster": "prod", "node": "worker-1", "seq": 17, "time": 1_800_000_000,
        "step": "kubeadm", "event": "failed", "exit": "exited:1",
        "tail": base64.b64encode(b"last line\n").decode(),
    }  # fmt: skip
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not _DROP}


_DROP = object()


def test_a_well_formed_report_parses() -> None:
    report = protocol.parse(json.dumps(_doc()).encode())
    assert report == protocol.Report(
        "prod", "worker-1", 17, 1_800_000_000, "kubeadm", "failed", "exited:1", "last line\n"
    )
    # and what protocol.body writes reads back as itself
    assert protocol.parse(protocol.body(report)) == report


BAD: list[tuple[str, bytes, int, str]] = [
    ("not JSON", b"{", 400, "not JSON"),
    ("not UTF-8", b'{"v": "\xff"}', 400, "not JSON"),
    ("NaN", json.dumps(_doc(seq=float("nan"))).encode(), 400, "not JSON"),
    ("a list", b"[1, 2]", 400, "not a JSON object"),
    ("duplicate key", b'{"v": 1, "v": 1}', 400, "duplicate field"),
    ("missing field", json.dumps(_doc(tail=_DROP)).encode(), 400, "missing ['tail']"),
    ("unknown field", json.dumps(_doc(extra=1)).encode(), 400, "unknown ['extra']"),
    ("version", json.dumps(_doc(v=2)).encode(), 400, "version"),
    ("version true", json.dumps(_doc(v=True)).encode(), 400, "version"),
    ("cluster name", json.dumps(_doc(cluster="Prod!")).encode(), 400, "cluster is not a name"),
    ("node name", json.dumps(_doc(node="../etc")).encode(), 400, "node is not a name"),
    ("node not a string", json.dumps(_doc(node=7)).encode(), 400, "node is not a name"),
    ("seq string", json.dumps(_doc(seq="17")).encode(), 400, "seq is not a positive integer"),
    ("seq zero", json.dumps(_doc(seq=0)).encode(), 400, "seq is not a positive integer"),
    ("seq bool", json.dumps(_doc(seq=True)).encode(), 400, "seq is not a positive integer"),
    ("seq huge", json.dumps(_doc(seq=2**70)).encode(), 400, "seq is not a positive integer"),
    ("time float", json.dumps(_doc(time=1.5)).encode(), 400, "time is not a positive integer"),
    ("step", json.dumps(_doc(step="reboot")).encode(), 400, "unknown step"),
    ("event", json.dumps(_doc(event="exploded")).encode(), 400, "unknown event"),
    ("exit", json.dumps(_doc(exit="$(reboot)")).encode(), 400, "exit is not"),
    # Python's `$` also matches before a final newline: the patterns end in \Z
    ("node name, final newline", json.dumps(_doc(node="cp-1\n")).encode(), 400, "node is not a name"),
    ("exit, final newline", json.dumps(_doc(exit="1\n")).encode(), 400, "exit is not"),
    ("tail not base64", json.dumps(_doc(tail="<b>not base64</b>")).encode(), 400, "tail is not base64"),
    (
        "tail too long",
        json.dumps(_doc(tail=base64.b64encode(b"x" * 8193).decode())).encode(),
        400,
        "tail of 8193",
    ),
    ("tail on done", json.dumps(_doc(event="done", exit="")).encode(), 400, "did not fail"),
    ("oversized", b" " * (protocol.MAX_BODY + 1), 413, "body of"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 413, "body of"),
]


@pytest.mark.parametrize(("raw", "status", "why"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_reports_are_refused(raw: bytes, status: int, why: str) -> None:
    with pytest.raises(protocol.ReportError) as caught:
        protocol.parse(raw)
    assert caught.value.status == status
    assert why in caught.value.reason


def test_deep_nesting_within_the_size_limit_is_refused_not_a_crash() -> None:
    raw = b"[" * 8000 + b"]" * 8000
    assert len(raw) <= protocol.MAX_BODY
    with pytest.raises(protocol.ReportError):
        protocol.parse(raw)


def test_limits_fit_a_failed_report_with_a_full_tail() -> None:
    """The node cuts its tail at TAIL_BYTES: a report carrying that much still fits MAX_BODY."""
    tail = "é" * (protocol.TAIL_BYTES // 2)
    assert len(tail.encode()) == protocol.TAIL_BYTES
    report = protocol.Report("a" * 63, "b" * 63, 2**61, 2**61, "bootstrap", "failed", "x" * 64, tail)
    raw = protocol.body(report)
    assert len(raw) <= protocol.MAX_BODY
    assert protocol.parse(raw).tail == tail


def test_a_signature_one_digit_off_or_oversized_is_refused() -> None:
    key, body = b"k" * 64, b"{}"
    good = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert protocol.signature_ok(key, body, good)
    assert not protocol.signature_ok(key, body, good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert not protocol.signature_ok(key, body, "sha256=" + "0" * 10_000)
