"""`bake check`: re-verify an output tree without the profile, and scan it for misplaced secrets.

It trusts nothing it can recompute: checksums, certificate chains and expiry, seed ISO contents
against the node files, each node's write_files against the manifest, which role holds which key,
file modes, and (when cloud-init is installed) the user-data schema.

This package: `findings` (the detectors, findings and calendar entries), `expiry` (what is due),
`userdata` (a user-data as it lands on the node), `tree` (checksums and modes), `schema` (cloud-init's
validation), `seeds` (each node's seed against the manifest) and `node_secrets` (which secrets a node
may hold). Here, the check of a whole tree and the names the rest of bake reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

from .. import parallel
from ..errors import BakeError
from ..pki import bundledir, certlist, sealing, secrets
from .expiry import bundle_calendar, check_expiry, expiring, expiry_warnings, renewal_of, steady_span
from .findings import DETECTORS, REBAKE_ONLY, Expiry, Finding, Report
from .node_secrets import node_report_keys
from .schema import check_schema, start_schema
from .seeds import check_node
from .tree import check_checksums, check_modes
from .userdata import write_files_of

__all__ = [
    "DETECTORS",
    "REBAKE_ONLY",
    "Expiry",
    "Finding",
    "Report",
    "bundle_location",
    "check_tree",
    "expiring",
    "expiry_warnings",
    "steady_span",
    "write_files_of",
]


BUNDLE_NOT_CHECKED = "the bundle's keys and certificates were not checked, nor is it in the expiry calendar"


def bundle_location(tree: Path, manifest: dict[str, Any], secrets_dir: Path | None) -> Path:
    """The bundle `bake` used: --secrets, else secrets/<cluster>, else one an older bake kept in the tree."""
    if secrets_dir is not None:
        return secrets_dir
    legacy = tree / bundledir.LEGACY_NAME
    cluster = manifest.get("cluster")
    if not isinstance(cluster, str) or not cluster:  # a broken manifest: never secrets/ itself
        return legacy
    default = bundledir.default_path(cluster)
    return legacy if not default.exists() and legacy.is_dir() else default


def _lists_nodes(nodes: object) -> TypeGuard[list[dict[str, Any]]]:
    """The manifest's nodes are what the checks read: objects that name each node and its role."""
    return isinstance(nodes, list) and all(
        isinstance(n, dict) and isinstance(n.get("name"), str) and isinstance(n.get("role"), str)
        for n in nodes
    )


def check_tree(
    tree: Path,
    now: datetime | None = None,
    secrets_dir: Path | None = None,
    jobs: int | None = None,
    keys: sealing.Keys | None = None,
) -> Report:
    """Every finding about one output tree and its secrets bundle; `now` is for tests of expiry, `jobs`
    bounds the processes validating user-data, `keys` open an age-encrypted bundle (`bake`'s --identity
    and passphrase; None: those the environment names, never asking)."""
    now = now or datetime.now(UTC)
    report = Report(now=now)
    manifest_path = tree / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (OSError, ValueError) as exc:
        report.error("manifest-unreadable", "manifest.json", f"unreadable: {exc}")
        return report
    if not isinstance(manifest, dict):
        report.error("manifest-unreadable", "manifest.json", "unreadable: not a JSON object")
        return report
    nodes = manifest.get("nodes")
    if not _lists_nodes(nodes):
        report.error(
            "manifest-unreadable",
            "manifest.json",
            "unreadable: no list of nodes, each with its name and role",
        )
        return report
    report.renewal = renewal_of(manifest)
    jobs = jobs or parallel.default_jobs()
    batch = start_schema(tree, nodes, jobs)
    check_checksums(tree, report)
    check_modes(tree, report)
    bundle = None
    bundle_dir = bundle_location(tree, manifest, secrets_dir)
    if bundle_dir.is_dir() and bundle_dir != tree / bundledir.LEGACY_NAME:
        check_modes(bundle_dir, report, "secrets/")
    reader = sealing.Reader(bundle_dir, keys or sealing.Keys.from_env(), outcome=BUNDLE_NOT_CHECKED)
    try:
        bundle = secrets.load_bundle(bundle_dir, reader)
    except BakeError as exc:
        for problem in exc.problems:
            report.error("bundle-invalid", problem.path or "secrets", problem.message)
    if bundle is None and not report.errors:
        report.error("bundle-missing", "secrets", f"no secrets bundle at {bundle_dir} (--secrets names it)")
    if bundle is not None:
        if bundle.discovery_hash != manifest.get("discoveryTokenCaCertHash"):
            report.error(
                "discovery-hash", "manifest.json", "discovery hash does not match secrets/pki/ca.crt"
            )
        for name, ca in bundle.cas.items():
            check_expiry(report, f"secrets/{name}", ca.cert)
        for owner, leaves in bundle.leaves.items():
            for name, held in leaves.items():
                join = name == certlist.JOIN_CREDENTIAL
                check_expiry(report, f"secrets/nodes/{owner}/{name}", held.cert, join)
        report.calendar += bundle_calendar(bundle)
        report.ok("secrets", "bundle consistent: keys match certificates, leaves chain to their CAs")
    user_data = []
    names = [n["name"] for n in nodes]
    cluster = str(manifest.get("cluster", ""))
    report_keys = node_report_keys(bundle, cluster, names) if bundle is not None else {}
    for node in nodes:
        path = check_node(tree, node, bundle, manifest, report, report_keys)
        if path is not None:
            user_data.append(path)
    check_schema(batch, user_data, report)
    report.calendar.sort(key=lambda e: (e.not_after, e.node, e.file, e.subject))
    return report
