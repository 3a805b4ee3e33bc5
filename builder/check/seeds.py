"""One node's seed against the manifest: its files, the ISO and the HTTP tree, its write_files (content,
mode, the archive unpacked first), its certificates into the calendar, and then its secrets."""

from __future__ import annotations

import binascii
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from .. import paths, yamlio
from ..emit import iso, packaging
from ..files import NodeFile
from ..node import archive, bootstrap, compact_keys, renewal
from ..pki import secrets
from .findings import REBAKE_ONLY, Report
from .node_secrets import ROLE_NAMES, check_join_secrets, check_report_keys, check_role_secrets
from .userdata import PRIVATE_KEY_MARKER, files_of

SEED_FILES = ("user-data", "meta-data", "network-config")


def check_node(
    tree: Path,
    node: dict[str, Any],
    bundle: secrets.Bundle | None,
    manifest: dict[str, Any],
    report: Report,
    report_keys: dict[bytes, str] | None = None,
) -> Path | None:
    """Every check of one node of the manifest; its user-data's path for the schema batch, or None when
    its seed is missing or unreadable."""
    name, role = str(node["name"]), str(node["role"])
    topology = str(manifest.get("topology"))
    # A seed holding the cluster's keys is withheld from the HTTP tree unless the bake said otherwise;
    # a manifest without the field is read as the default (withheld).
    published = packaging.http_published(role, manifest.get("httpPublishControlPlanes") is True)
    base = tree / "nodes" / name
    try:
        seed = {f: (base / f).read_bytes() for f in SEED_FILES}
    except OSError as exc:
        report.error("seed-missing", f"nodes/{name}", f"missing seed file: {exc.filename}")
        return None
    try:
        on_iso = iso.read_seed_iso(base / "seed.iso")
    except Exception as exc:  # pycdlib raises its own exception types on a damaged image
        report.error("iso-unreadable", f"nodes/{name}/seed.iso", f"unreadable: {exc}")
        on_iso = {}
    for fname, data in seed.items():
        if on_iso and on_iso.get(fname) != data:
            report.error(
                "iso-differs", f"nodes/{name}/seed.iso", f"{fname} differs from nodes/{name}/{fname}"
            )
        http = tree / "http" / name / fname
        if published and (not http.is_file() or http.read_bytes() != data):
            report.error("http-differs", f"http/{name}/{fname}", "differs from the node's seed file")
    if not published and (tree / "http" / name).exists():
        report.error(
            "http-withheld-seed",
            f"http/{name}",
            f"{ROLE_NAMES.get(role, role)}'s seed holds the cluster's private keys and is in the HTTP "
            "tree, which serves it to anyone on the network; the manifest says it is withheld "
            "(cluster.seed.httpPublishControlPlanes: false)",
        )
    try:
        doc = yamlio.load_own(seed["user-data"])
        files = files_of(doc)
    except (yaml.YAMLError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        report.error("user-data-unreadable", f"nodes/{name}/user-data", f"unreadable cloud-config: {exc}")
        return None
    _archive_unpacked(name, doc, report)
    _key_pack_unpacked(name, doc, files, report)
    expected = {f["path"]: f for f in node.get("files", [])}
    if set(expected) != set(files):
        report.error(
            "write-files-list", f"nodes/{name}/user-data", "write_files differ from the manifest's file list"
        )
    for path, (content, perms, owner) in files.items():
        want = expected.get(path)
        if want and (
            hashlib.sha256(content).hexdigest() != want["sha256"]
            or perms.lstrip("0") != want["mode"].lstrip("0")
            or owner != want.get("owner")
        ):
            report.error(
                "write-file-differs",
                f"nodes/{name}:{path}",
                "content, mode or owner differs from the manifest",
            )
        holds_key = PRIVATE_KEY_MARKER in content
        if holds_key and (int(perms, 8) & 0o077 if perms else True):
            report.error(
                "key-permissions", f"nodes/{name}:{path}", f"private key written with permissions {perms!r}"
            )
    _seed_certificates(name, files, report)
    _rebake_only(name, files, report)
    check_join_secrets(name, role, str(manifest.get("join", "token")), files, bundle, report)
    check_role_secrets(name, role, topology, files, bundle, report)
    if report_keys:
        check_report_keys(name, files, report_keys, report)
    return base / "user-data"


def _archive_unpacked(name: str, doc: Any, report: Report) -> None:
    """The archive's files exist on the node only once runcmd unpacks it, before anything else runs."""
    if not isinstance(doc, dict):
        return
    if not any(e.get("path") == archive.ARCHIVE_PATH for e in doc.get("write_files") or []):
        return
    runcmd = doc.get("runcmd") or []
    if not runcmd or runcmd[0] != list(archive.EXTRACT_COMMAND):
        report.error(
            "archive-not-unpacked",
            f"nodes/{name}/user-data",
            f"{archive.ARCHIVE_PATH} is not unpacked by the first runcmd entry "
            f"({' '.join(archive.EXTRACT_COMMAND)})",
        )


def _key_pack_unpacked(name: str, doc: Any, files: dict[str, tuple[bytes, str, str]], report: Report) -> None:
    """The key pack's files exist on the node only once the prep unit's drop-in has run its program."""
    if not isinstance(doc, dict) or not any(
        e.get("path") == compact_keys.PACK_PATH for e in doc.get("write_files") or []
    ):
        return
    dropin = files.get(compact_keys.DROPIN_PATH)
    if (
        compact_keys.SCRIPT_PATH not in files
        or dropin is None
        or dropin[0] != compact_keys.DROPIN_TEXT.encode()
    ):
        report.error(
            "key-pack-not-unpacked",
            f"nodes/{name}/user-data",
            f"{compact_keys.PACK_PATH} is not unpacked: {compact_keys.DROPIN_PATH} (its ExecStartPre=) or "
            f"{compact_keys.SCRIPT_PATH} is missing or changed",
        )


def _seed_certificates(name: str, files: dict[str, tuple[bytes, str, str]], report: Report) -> None:
    """The node's certificates into the calendar: .crt files and the certificates inside kubeconfigs."""
    for path, (content, _, _) in sorted(files.items()):
        try:
            pems = bootstrap.pem_certificates(NodeFile(path, content, 0o600))
        except (yaml.YAMLError, AttributeError, TypeError, ValueError, binascii.Error):
            continue  # not a kubeconfig after all: write-file checks judge the file itself
        for pem in pems:
            try:
                report.add_expiry(name, path, x509.load_pem_x509_certificate(pem))
            except ValueError:
                continue


def _rebake_only(name: str, files: dict[str, tuple[bytes, str, str]], report: Report) -> None:
    """Flag in the calendar what the node's renewal timer watches but cannot renew: a leaf whose CA key
    the node does not hold (a control plane's apiserver-etcd-client with external etcd,
    placement.TABLE). Only a bake re-issues it, and only a re-seed (or a copy by hand) puts it there."""
    if renewal.SCRIPT_PATH not in files:
        return  # no timer: workers, or renewal off
    for leaf, (base, ca) in renewal.LEAF_FILES.items():
        path = f"{paths.PKI_DIR}/{base}.crt"
        if path in files and f"{paths.PKI_DIR}/{renewal.CA_KEY_FILES[ca]}.key" not in files:
            report.calendar = [
                replace(e, note=REBAKE_ONLY)
                if (e.node, e.file) in ((name, path), ("bundle", f"nodes/{name}/{leaf}"))
                else e
                for e in report.calendar
            ]
