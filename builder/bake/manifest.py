"""The manifest of an output tree (manifest.json): the cluster, every node's files and certificates.

Each node's entry is encoded where the node is rendered and spooled to a file in plan order; the manifest
is then written as a stream around them, byte for byte what `json.dumps(manifest, indent=2)` gives. The
bake never holds every node's entry (at 10,000 nodes they are ~80 MB of JSON, several times that as data).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
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


class NodeEntries:
    """The nodes' manifest entries (node_text) in plan order, in an anonymous file as they come."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
        self.count = 0

    def add(self, text: bytes) -> None:
        if self.count:
            self._file.write(b",\n")
        self._file.write(text)
        self.count += 1

    def close(self) -> None:
        self._file.close()

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


def previous_manifest(tree: OutputTree) -> dict[str, Any] | None:
    raw = tree.previous_bytes("manifest.json")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
