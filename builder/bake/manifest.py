"""The manifest of an output tree (manifest.json): the cluster, every node's files and certificates.

Each node's entry is encoded where the node is rendered and spooled to a file in plan order; the manifest
is then written as a stream around them, byte for byte what `json.dumps(manifest, indent=2)` gives. The
bake never holds every node's entry (at 10,000 nodes they are ~80 MB of JSON, several times that as data).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ..emit.outputs import OutputTree
from ..node import cloudinit
from ..pki import secrets
from ..plan import ClusterPlan, NodePlan

MANIFEST_FORMAT = 1


def cert_entries(bundle: secrets.Bundle, owner: str) -> list[dict[str, str]]:
    return [
        {"name": name, "notAfter": held.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
        for name, held in sorted(bundle.leaves.get(owner, {}).items())
    ]


def node_manifest(
    node: NodePlan, rendered: cloudinit.RenderedNode, artifacts: dict[str, str], bundle: secrets.Bundle
) -> dict[str, Any]:
    return {
        "name": node.name,
        "role": node.role.value,
        "ip": str(node.ip),
        "prefixLength": node.prefix_length,
        "mac": node.mac,
        "arch": node.arch.value,
        "os": node.os.name.value,
        "kubeletVersion": node.kubelet_version,
        "instanceId": rendered.instance_id,
        "artifacts": dict(sorted(artifacts.items())),
        "files": [
            {"path": f.path, "mode": f.mode_text, "owner": f.owner, "sha256": f.sha256, "secret": f.secret}
            for f in rendered.files
        ],
        "certificates": cert_entries(bundle, node.name),
    }


def node_text(entry: Mapping[str, Any]) -> bytes:
    """A node's entry as manifest.json holds it: indented for its place in the `nodes` list."""
    # json.dumps escapes every control character inside strings: "\n" only ever ends a line
    return "\n".join(_NODE_INDENT + line for line in json.dumps(entry, indent=2).split("\n")).encode()


_LIST_INDENT = "  "  # the `nodes` list is a member of the top-level object: one level of json's indent=2
_NODE_INDENT = _LIST_INDENT * 2  # an entry is an item of that list
_NODES = "\0nodes\0"  # stands for the node entries in the encoded document; json.dumps escapes \0


STATE_FILE = "manifest.jsonl"
"""In the cluster's state directory: the current generation's manifest.json one JSON document a line,
each node's entry (its text in manifest.json, as a string) in plan order, then the rest of the manifest
and the generation it describes. A re-bake reads a node's entry when it needs it: the whole manifest as
data is several times its ~8 KB a node of text."""

_NAME_IN_LINE = re.compile(r'"    \{\\n      \\"name\\": \\"([a-z0-9.-]+)\\",')
"""A STATE_FILE line's node name: the entry's first key (node_manifest), JSON-escaped twice."""


class NodeEntries:
    """The nodes' manifest entries (node_text) in plan order, in an anonymous file as they come; with
    `state`, also as lines of the next STATE_FILE."""

    def __init__(self, state: Path | None = None) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        for stale in state.glob(f".{STATE_FILE}.*") if state is not None else ():
            stale.unlink(missing_ok=True)  # left by a bake that was killed (the tree's lock is held)
        self._lines = (
            tempfile.NamedTemporaryFile(dir=state, prefix=f".{STATE_FILE}.", delete=False)  # noqa: SIM115
            if state is not None
            else None
        )
        self.count = 0

    def add(self, text: bytes) -> None:
        if self.count:
            self._file.write(b",\n")
        self._file.write(text)
        if self._lines is not None:
            self._lines.write(json.dumps(text.decode()).encode() + b"\n")
        self.count += 1

    def close(self) -> None:
        self._file.close()
        if self._lines is not None:
            self._lines.close()
            Path(self._lines.name).unlink(missing_ok=True)

    def write_manifest(self, out: BinaryIO, doc: Mapping[str, Any]) -> None:
        """manifest.json: `doc` (cluster_manifest) with these entries as its `nodes`."""
        head, tail = json.dumps({**doc, "nodes": _NODES}, indent=2).split(json.dumps(_NODES))
        out.write(head.encode())
        if self.count:
            out.write(b"[\n")
            self._file.flush()
            self._file.seek(0)
            shutil.copyfileobj(self._file, out)
            out.write(f"\n{_LIST_INDENT}]".encode())
        else:
            out.write(b"[]")
        out.write(tail.encode() + b"\n")

    def keep(self, doc: Mapping[str, Any], generation: Path) -> None:
        """Make these entries, `doc` and `generation` (just made current) the state's STATE_FILE."""
        assert self._lines is not None
        rest = {k: v for k, v in doc.items() if k != "nodes"}
        self._lines.write(json.dumps({"generation": generation.name, "manifest": rest}).encode() + b"\n")
        self._lines.close()
        os.replace(self._lines.name, Path(self._lines.name).with_name(STATE_FILE))


class PreviousManifest:
    """The current generation's manifest, as the next bake reads it: the cluster part at once, a node's
    entry when asked for (from STATE_FILE; from manifest.json itself when that file is missing or of
    another generation: once after an interrupted bake, or a tree baked by an older version)."""

    def __init__(self, rest: dict[str, Any], names: list[str]) -> None:
        self.rest = rest
        """manifest.json without `nodes`."""
        self.names = names
        self._path: Path | None = None
        self._offsets: dict[str, int] = {}
        self._entries: dict[str, dict[str, Any]] = {}

    @classmethod
    def read(cls, tree: OutputTree) -> PreviousManifest | None:
        if tree.previous is None:
            return None
        return cls._from_state(tree.state / STATE_FILE, tree.previous.name) or cls._from_tree(tree)

    @classmethod
    def _from_state(cls, path: Path, generation: str) -> PreviousManifest | None:
        offsets: dict[str, int] = {}
        last: bytes = b""
        try:
            with path.open("rb") as fh:
                at = 0
                for line in fh:
                    m = _NAME_IN_LINE.match(line.decode(errors="replace"))
                    if m is not None:
                        offsets.setdefault(m.group(1), at)
                    else:
                        last = line
                    at += len(line)
            tail = json.loads(last)
        except (OSError, ValueError):
            return None
        if not isinstance(tail, dict) or tail.get("generation") != generation:
            return None
        rest = tail.get("manifest")
        if not isinstance(rest, dict):
            return None
        found = cls(rest, list(offsets))
        found._path, found._offsets = path, offsets
        return found

    @classmethod
    def _from_tree(cls, tree: OutputTree) -> PreviousManifest | None:
        raw = tree.previous_bytes("manifest.json")
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        nodes = data.get("nodes")
        entries = (
            [n for n in nodes if isinstance(n, dict) and isinstance(n.get("name"), str)]
            if isinstance(nodes, list)
            else []
        )
        found = cls({k: v for k, v in data.items() if k != "nodes"}, [n["name"] for n in entries])
        found._entries = {n["name"]: n for n in entries}
        return found

    def node(self, name: str) -> tuple[dict[str, Any], bytes] | None:
        """A node's entry and its text in manifest.json (node_text), or None."""
        if self._path is None:
            entry = self._entries.get(name)
            return (entry, node_text(entry)) if entry is not None else None
        at = self._offsets.get(name)
        if at is None:
            return None
        try:
            with self._path.open("rb") as fh:
                fh.seek(at)
                text = json.loads(fh.readline())
                entry = json.loads(text)
        except (OSError, ValueError):
            return None
        if not isinstance(text, str) or not isinstance(entry, dict) or entry.get("name") != name:
            return None
        return entry, text.encode()


def cluster_manifest(plan: ClusterPlan, bundle: secrets.Bundle) -> dict[str, Any]:
    """manifest.json without its node entries: its `nodes` holds their place (NodeEntries fills it)."""
    doc: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "cluster": plan.name,
        "kubernetesVersion": plan.version,
        "topology": plan.topology.value,
        "endpoint": plan.api_endpoint().hostport if plan.control_planes else None,
        # which seeds the HTTP tree holds: workers always, control planes and etcd members only when
        # true (packaging.http_published); `bake check` reads it
        "httpPublishControlPlanes": plan.settings.seed.http_publish_control_planes,
        "discoveryTokenCaCertHash": bundle.discovery_hash,
        "join": plan.settings.join.value,
        # the window a certificate is due in (secrets.due_window): `bake check` warns by it
        "certificateRenewal": {
            "enabled": plan.settings.certificate_renewal.enabled,
            "before": plan.settings.certificate_renewal.before,
        },
        "secretsCreated": datetime.fromtimestamp(bundle.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "certificateAuthorities": [
            {"name": name, "notAfter": ca.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
            for name, ca in sorted(bundle.cas.items())
        ],
        "operatorCertificates": cert_entries(bundle, secrets.OPERATOR),
        "nodes": [],
    }
    url = plan.settings.seed.report_url
    if url is not None:  # `bake serve` reads it; absent without a report URL (goldens stay as they were)
        doc["reportUrl"] = url
    return doc
