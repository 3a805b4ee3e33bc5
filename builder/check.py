"""`bake check`: re-verify an output tree without the profile, and scan it for misplaced secrets.

It trusts nothing it can recompute: checksums, certificate chains and expiry, seed ISO contents
against the node files, each node's write_files against the manifest, which role holds which key,
file modes, and (when cloud-init is installed) the user-data schema.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from . import iso, secrets
from .errors import BakeError

EXPIRY_WARNING = timedelta(days=30)
PRIVATE_KEY_MARKER = b"PRIVATE KEY-----"
SEED_FILES = ("user-data", "meta-data", "network-config")
ROLE_NAMES = {"worker": "a worker", "etcd": "an etcd member", "control-plane": "a control plane"}


@dataclass(frozen=True)
class Finding:
    level: Literal["ok", "warning", "error"]
    where: str
    message: str


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def ok(self, where: str, message: str) -> None:
        self.findings.append(Finding("ok", where, message))

    def warn(self, where: str, message: str) -> None:
        self.findings.append(Finding("warning", where, message))

    def error(self, where: str, message: str) -> None:
        self.findings.append(Finding("error", where, message))

    @property
    def errors(self) -> int:
        return sum(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.level == "warning" for f in self.findings)

    @property
    def oks(self) -> int:
        return sum(f.level == "ok" for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "errors": self.errors,
            "warnings": self.warnings,
            "findings": [f.__dict__ for f in self.findings],
        }


def _expiry(report: Report, where: str, not_after: datetime, now: datetime) -> None:
    if not_after <= now:
        report.error(where, f"expired on {not_after:%Y-%m-%d}")
    elif not_after - now < EXPIRY_WARNING:
        report.warn(where, f"expires on {not_after:%Y-%m-%d}, in less than 30 days")


def write_files_of(user_data: bytes) -> dict[str, tuple[bytes, str, str]]:
    """path -> (decoded content, permissions, owner) of a user-data's write_files."""
    doc = yaml.safe_load(user_data)
    out: dict[str, tuple[bytes, str, str]] = {}
    for entry in (doc or {}).get("write_files", []) or []:
        raw = entry.get("content", "")
        if entry.get("encoding") in ("b64", "base64"):
            content = base64.b64decode(raw)
        else:
            content = raw.encode() if isinstance(raw, str) else bytes(raw)
        out[entry["path"]] = (content, str(entry.get("permissions", "")), str(entry.get("owner", "")))
    return out


def _sha256(path: Path) -> str:
    """Streamed: an images seed holds gigabytes of image archives."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _checksums(tree: Path, report: Report) -> None:
    sums = tree / "SHA256SUMS"
    if not sums.is_file():
        report.error("SHA256SUMS", "missing")
        return
    bad = 0
    lines = sums.read_text().splitlines()
    for line in lines:
        digest, _, rel = line.partition("  ")
        path = tree / rel
        if ".." in Path(rel).parts or not path.is_file():
            report.error(rel, "listed in SHA256SUMS but missing")
            bad += 1
        elif _sha256(path) != digest:
            report.error(rel, "content differs from SHA256SUMS")
            bad += 1
    if not bad:
        report.ok("SHA256SUMS", f"{len(lines)} files match")


def _modes(tree: Path, report: Report) -> None:
    loose = 0
    for path in [tree, *tree.rglob("*")]:
        st = path.lstat()
        rel = str(path.relative_to(tree)) or "."
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077:
            report.error(rel, f"directory mode {st.st_mode & 0o777:04o}, expected 0700")
            loose += 1
        elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            data = path.read_bytes()
            if PRIVATE_KEY_MARKER in data or b"token" in data.lower() or path.suffix == ".iso":
                report.error(rel, f"holds secrets but mode is {st.st_mode & 0o777:04o}, expected 0600")
                loose += 1
    if not loose:
        report.ok("modes", "directories 0700, secret-bearing files 0600")


def _schema(paths: list[Path], report: Report) -> None:
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        report.warn("user-data", "cloud-init is not installed here: schema not checked")
        return
    for path in paths:
        proc = subprocess.run(
            [cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            report.error(str(path), "cloud-init schema: " + (proc.stdout + proc.stderr).strip()[-500:])
    if paths:
        report.ok("user-data", f"{len(paths)} files checked with cloud-init schema")


def _node(
    tree: Path, node: dict[str, Any], bundle: secrets.Bundle | None, topology: str, report: Report
) -> Path | None:
    name, role = str(node["name"]), str(node["role"])
    base = tree / "nodes" / name
    try:
        seed = {f: (base / f).read_bytes() for f in SEED_FILES}
    except OSError as exc:
        report.error(f"nodes/{name}", f"missing seed file: {exc.filename}")
        return None
    try:
        on_iso = iso.read_seed_iso(base / "seed.iso")
    except Exception as exc:  # pycdlib raises its own exception types on a damaged image
        report.error(f"nodes/{name}/seed.iso", f"unreadable: {exc}")
        on_iso = {}
    for fname, data in seed.items():
        if on_iso and on_iso.get(fname) != data:
            report.error(f"nodes/{name}/seed.iso", f"{fname} differs from nodes/{name}/{fname}")
        http = tree / "http" / name / fname
        if not http.is_file() or http.read_bytes() != data:
            report.error(f"http/{name}/{fname}", "differs from the node's seed file")
    try:
        files = write_files_of(seed["user-data"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        report.error(f"nodes/{name}/user-data", f"unreadable cloud-config: {exc}")
        return None
    expected = {f["path"]: f for f in node.get("files", [])}
    if set(expected) != set(files):
        report.error(f"nodes/{name}/user-data", "write_files differ from the manifest's file list")
    for path, (content, perms, _owner) in files.items():
        want = expected.get(path)
        if want and (
            hashlib.sha256(content).hexdigest() != want["sha256"]
            or perms.lstrip("0") != want["mode"].lstrip("0")
        ):
            report.error(f"nodes/{name}:{path}", "content or mode differs from the manifest")
        holds_key = PRIVATE_KEY_MARKER in content
        if holds_key and (int(perms, 8) & 0o077 if perms else True):
            report.error(f"nodes/{name}:{path}", f"private key written with permissions {perms!r}")
    _role_secrets(name, role, topology, files, bundle, report)
    return base / "user-data"


def _role_secrets(
    name: str,
    role: str,
    topology: str,
    files: dict[str, tuple[bytes, str, str]],
    bundle: secrets.Bundle | None,
    report: Report,
) -> None:
    where = f"nodes/{name}"
    blobs = [content for content, _, _ in files.values()]
    if role == "worker":
        if any(PRIVATE_KEY_MARKER in b for b in blobs):
            report.error(where, "a worker holds a private key")
        if "/etc/kubernetes/pki/ca.crt" in files:
            report.error(where, "a worker has /etc/kubernetes/pki/ca.crt (kubeadm join preflight rejects it)")
    if bundle is None:
        return
    ca_key = bundle.cas["ca"].key_pem
    etcd_key = bundle.cas["etcd-ca"].key_pem
    holds_ca = any(ca_key in b for b in blobs)
    holds_etcd = any(etcd_key in b for b in blobs)
    if holds_ca and role != "control-plane":
        report.error(where, f"{ROLE_NAMES.get(role, role)} holds the cluster CA key")
    if holds_etcd and not (role == "control-plane" and topology == "stacked"):
        report.error(where, f"{ROLE_NAMES.get(role, role)} of a {topology} cluster holds the etcd CA key")
    if not any(e.where == where and e.level == "error" for e in report.findings):
        report.ok(where, f"secrets fit the {role} role")


def check_tree(tree: Path, now: datetime | None = None) -> Report:
    """Every finding about one output tree; `now` is for tests of expiry."""
    report = Report()
    manifest_path = tree / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (OSError, ValueError) as exc:
        report.error("manifest.json", f"unreadable: {exc}")
        return report
    _checksums(tree, report)
    _modes(tree, report)
    now = now or datetime.now(UTC)
    bundle = None
    try:
        bundle = secrets.load_bundle(tree / "secrets")
    except BakeError as exc:
        for problem in exc.problems:
            report.error(problem.path or "secrets", problem.message)
    if bundle is None and not report.errors:
        report.error("secrets", "no secrets bundle")
    if bundle is not None:
        if bundle.discovery_hash != manifest.get("discoveryTokenCaCertHash"):
            report.error("manifest.json", "discovery hash does not match secrets/pki/ca.crt")
        for name, ca in bundle.cas.items():
            _expiry(report, f"secrets/{name}", ca.cert.not_valid_after_utc, now)
        for owner, leaves in bundle.leaves.items():
            for name, held in leaves.items():
                _expiry(report, f"secrets/nodes/{owner}/{name}", held.cert.not_valid_after_utc, now)
        report.ok("secrets", "bundle consistent: keys match certificates, leaves chain to their CAs")
    user_data = []
    for node in manifest.get("nodes", []):
        path = _node(tree, node, bundle, str(manifest.get("topology")), report)
        if path is not None:
            user_data.append(path)
    _schema(user_data, report)
    return report
