"""The manifest of an output tree (manifest.json): the cluster, every node's files and certificates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

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


def cluster_manifest(
    plan: ClusterPlan, bundle: secrets.Bundle, nodes: list[dict[str, Any]]
) -> dict[str, Any]:
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
        "nodes": nodes,
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
