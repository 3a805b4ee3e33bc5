"""A first-boot report: what a node sends to `bake serve`, how it signs it, how the server reads it.

The node (templates/bootstrap/report.sh, plain shell with curl and sha256sum) POSTs one JSON object to
`cluster.seed.reportUrl` with the header `X-Bake-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact
body bytes under the node's report key. The key is derived from one secret of the bundle
(`report-key`) and the node's name, so each node holds its own key only and can speak for itself only;
the server derives every key from the same secret. The body names the node and carries a sequence
number that only grows (the node keeps the last one; a fresh disk starts from the clock in ms), which
the server uses to refuse a replayed report.

Everything here is pure and strict: a body is refused unless it is exactly the shape below, small,
and every field within its bounds. The limits are stated once, here, for both ends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from ..node.bootstrap.layout import PHASES

VERSION = 1
PATH = "/report"
"""Where the server takes reports: `cluster.seed.reportUrl` is the server's base URL, nodes POST here."""
SIGNATURE_HEADER = "X-Bake-Signature"
SIGNATURE_PREFIX = "sha256="
MAX_BODY = 16 * 1024
"""A larger body is refused before it is read (413)."""
TAIL_BYTES = 8 * 1024
"""The log tail of a failed step: at most this many bytes, base64 in the body (report.sh sends at most
its last 40 lines, cut to this size)."""
KEY_CONTEXT = b"bake-report-v1"
STEPS = ("bootstrap", *PHASES)
"""`bootstrap` is the driver (bake-bootstrap.service), the others its phase units, in order."""
EVENTS = ("started", "done", "failed")
MAX_SEQ = 2**62
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_EXIT = re.compile(r"^[A-Za-z0-9:_-]{0,64}\Z")
FIELDS = frozenset({"v", "cluster", "node", "seq", "time", "step", "event", "exit", "tail"})


class ReportError(Exception):
    """A report the server refuses: the HTTP status and the reason it logs."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Report:
    cluster: str
    node: str
    seq: int
    time: int
    """The node's clock (Unix seconds) when it sent the report; shown, never trusted for ordering."""
    step: str
    event: str
    exit: str
    """systemd's $EXIT_CODE:$EXIT_STATUS of a failed unit ("" otherwise)."""
    tail: str
    """The last lines of the node's bootstrap log (a failed step; "" otherwise)."""


def new_master() -> bytes:
    """The bundle's report secret (`report-key`), every node's key derived from it."""
    return os.urandom(32)


def node_key(master: bytes, cluster: str, node: str) -> bytes:
    """The node's report key as it is written on the node: 64 hex digits (HMAC-SHA256 of the names
    under the bundle's secret). HMAC is a PRF: one node's key tells nothing about another's."""
    msg = KEY_CONTEXT + b"\0" + cluster.encode() + b"\0" + node.encode()
    return hmac.new(master, msg, hashlib.sha256).hexdigest().encode()


def signature(key: bytes, body: bytes) -> str:
    """The header value: what report.sh's hmac_sha256 (and `openssl dgst -sha256 -hmac KEY`) computes
    over the body, the key being the 64 hex digits of report.key."""
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def signature_ok(key: bytes, body: bytes, header: str | None) -> bool:
    if header is None or len(header) > 128:
        return False
    return hmac.compare_digest(signature(key, body).encode(), header.strip().encode())


def body(report: Report) -> bytes:
    """The body a node sends (the shell writes the same fields in this order; the server does not
    depend on the order or spacing, only on the exact bytes being signed)."""
    doc = {
        "v": VERSION,
        "cluster": report.cluster,
        "node": report.node,
        "seq": report.seq,
        "time": report.time,
        "step": report.step,
        "event": report.event,
        "exit": report.exit,
        "tail": base64.b64encode(report.tail.encode()).decode(),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise ReportError(400, f"duplicate field {k!r}")
        seen[k] = v
    return seen


def _reject_constant(name: str) -> Any:
    raise ReportError(400, f"not JSON: {name}")


def parse(raw: bytes) -> Report:
    """The report in `raw`, or ReportError(400) naming what is wrong. The signature is checked by the
    caller once the node is known (its key depends on the name in the body)."""
    if len(raw) > MAX_BODY:
        raise ReportError(413, f"body of {len(raw)} bytes (at most {MAX_BODY})")
    try:
        doc = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except ReportError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ReportError(400, f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ReportError(400, "not a JSON object")
    if set(doc) != FIELDS:
        missing, extra = sorted(FIELDS - set(doc)), sorted(set(doc) - FIELDS)
        raise ReportError(400, f"fields: missing {missing}, unknown {extra}")
    if doc["v"] != VERSION or isinstance(doc["v"], bool):
        raise ReportError(400, f"version {doc['v']!r} (this server reads {VERSION})")
    for name in ("cluster", "node"):
        if not isinstance(doc[name], str) or not _NAME.match(doc[name]):
            raise ReportError(400, f"{name} is not a name")
    for name, top in (("seq", MAX_SEQ), ("time", MAX_SEQ)):
        value = doc[name]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < top:
            raise ReportError(400, f"{name} is not a positive integer")
    if doc["step"] not in STEPS:
        raise ReportError(400, f"unknown step {str(doc['step'])[:40]!r}")
    if doc["event"] not in EVENTS:
        raise ReportError(400, f"unknown event {str(doc['event'])[:40]!r}")
    if not isinstance(doc["exit"], str) or not _EXIT.match(doc["exit"]):
        raise ReportError(400, "exit is not a systemd exit code")
    if not isinstance(doc["tail"], str):
        raise ReportError(400, "tail is not a string")
    try:
        tail_bytes = base64.b64decode(doc["tail"], validate=True)
    except (binascii.Error, ValueError):
        raise ReportError(400, "tail is not base64") from None
    if len(tail_bytes) > TAIL_BYTES:
        raise ReportError(400, f"tail of {len(tail_bytes)} bytes (at most {TAIL_BYTES})")
    if doc["event"] != "failed" and (doc["exit"] or tail_bytes):
        raise ReportError(400, "exit or tail given for a step that did not fail")
    return Report(
        cluster=doc["cluster"],
        node=doc["node"],
        seq=doc["seq"],
        time=doc["time"],
        step=doc["step"],
        event=doc["event"],
        exit=doc["exit"],
        tail=tail_bytes.decode("utf-8", errors="replace"),
    )
