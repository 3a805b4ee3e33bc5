"""`bake check`: re-verify an output tree without the profile, and scan it for misplaced secrets.

It trusts nothing it can recompute: checksums, certificate chains and expiry, seed ISO contents
against the node files, each node's write_files against the manifest, which role holds which key,
file modes, and (when cloud-init is installed) the user-data schema.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import shutil
import stat
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from . import parallel, paths
from .emit import iso, packaging
from .errors import BakeError
from .files import NodeFile, sha256_file
from .model import CertificateRenewal, Role, cloudinit_schema
from .node import archive, bootstrap, renewal
from .node.distribute import JOIN_KUBECONFIG_PATH
from .node.kubeadm_config import INIT_CONFIG_PATH, JOIN_CONFIG_PATH
from .pki import bundledir, certlist, placement, sealing, secrets
from .pki import crypto as pki
from .plan import Topology

REBAKE_ONLY = "renewed by re-bake only"
PRIVATE_KEY_MARKER = b"PRIVATE KEY-----"
SEED_FILES = ("user-data", "meta-data", "network-config")
# libyaml when PyYAML has it: the same documents, ~40x faster on a user-data's large block scalars
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CA_CERT_PATH = f"{paths.PKI_DIR}/ca.crt"
BUNDLE_NOT_CHECKED = "the bundle's keys and certificates were not checked, nor is it in the expiry calendar"
ROLE_NAMES = {"worker": "a worker", "etcd": "an etcd member", "control-plane": "a control plane"}

# Every problem `bake check` can report, by a stable id (in --json output as "check"). A detector
# without an entry here cannot report; tests/test_check.py fails for an entry without a fault test.
DETECTORS: dict[str, str] = {
    "manifest-unreadable": "manifest.json is missing or not JSON",
    "sums-missing": "SHA256SUMS is missing",
    "sums-file-missing": "a file listed in SHA256SUMS is missing or outside the tree",
    "sums-mismatch": "a file differs from its SHA256SUMS line",
    "mode-directory": "a directory is not 0700",
    "mode-secret-file": "a file holding a private key, a token or a seed is not 0600",
    "bundle-invalid": "the secrets bundle does not load or does not match itself",
    "bundle-missing": "there is no secrets bundle",
    "discovery-hash": "the manifest's discovery hash is not the hash of secrets/pki/ca.crt",
    "cert-expired": "a certificate of the bundle has expired",
    "cert-expiring": "a certificate of the bundle expires within the window a bake re-issues it in "
    "(cluster.certificateRenewal.before, as the manifest says; a join credential: the last third of "
    "its lifetime) (warning)",
    "seed-missing": "a node's user-data, meta-data or network-config is missing",
    "iso-unreadable": "a node's seed.iso cannot be read",
    "iso-differs": "a file in a node's seed.iso differs from the node's seed file",
    "http-differs": "a file of the HTTP tree differs from (or lacks) the node's seed file",
    "http-withheld-seed": "a control plane's or etcd member's seed is in the HTTP tree, which the "
    "manifest does not allow (httpPublishControlPlanes)",
    "user-data-unreadable": "a node's user-data is not a readable cloud-config",
    "write-files-list": "a node's write_files paths differ from the manifest's file list",
    "write-file-differs": "a write_files entry's content or mode differs from the manifest",
    "archive-not-unpacked": "a user-data ships the first-boot archive but its first runcmd entry does not "
    "unpack it (the node would start units whose scripts are not there)",
    "key-permissions": "a private key is written with permissions open to group or others",
    "worker-private-key": "a worker holds a private key",
    "worker-ca-crt": "a worker holds /etc/kubernetes/pki/ca.crt",
    "ca-key-role": "a node other than a control plane holds the cluster CA key",
    "etcd-ca-key-role": "a node other than a stacked control plane or an etcd member holds the etcd CA key",
    "join-token-holder": "a node holds the bootstrap token but does not join with it "
    "(cluster.join: certificate, or an etcd member)",
    "join-credential": "a joining node's join credential is missing, or is not its own system:node identity "
    "signed by the cluster CA (cluster.join: certificate)",
    "encryption-key-role": "a node other than a control plane holds the key of the Secrets in etcd",
    "report-key": "a node's report key is not its own, or a node holds another node's report key "
    "(cluster.seed.reportUrl: each node reports for itself only)",
    "schema": "cloud-init schema rejects a user-data",
    "schema-unavailable": "cloud-init is not installed, the schema is not checked (warning)",
}


@dataclass(frozen=True)
class Finding:
    level: Literal["ok", "warning", "error"]
    where: str
    message: str
    check: str = ""


@dataclass(frozen=True)
class Expiry:
    """One certificate of the cluster in the expiry calendar: where it is and when it stops working."""

    node: str
    """The node whose seed holds it, or "bundle" for the secrets bundle."""
    file: str
    """Its path on the node (a kubeconfig's certificates: the kubeconfig) or in the bundle."""
    subject: str
    not_after: datetime
    lifetime: timedelta | None = None
    """NotAfter - NotBefore (None: unknown, no cap on its window)."""
    note: str = ""
    """REBAKE_ONLY: the node holding it cannot renew it (its CA key stays off the node)."""

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days

    @property
    def join_credential(self) -> bool:
        """Meant to run out with cluster.joinWindow, never renewed: judged by its own window."""
        return self.file.endswith(("/" + certlist.JOIN_CREDENTIAL, JOIN_KUBECONFIG_PATH))

    def window(self, renewal: CertificateRenewal) -> tuple[timedelta, str]:
        """The window it is due in, and why: secrets.due_window, as a bake decides it."""
        lifetime = self.lifetime if self.lifetime is not None else timedelta.max
        return secrets.due_window(renewal, lifetime, join_credential=self.join_credential)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "node": self.node,
            "file": self.file,
            "subject": self.subject,
            "notAfter": self.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "daysLeft": self.days_left(now),
        }
        if self.note:
            doc["note"] = self.note
        return doc


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    calendar: list[Expiry] = field(default_factory=list)
    """Every certificate of the bundle and of the seeds, soonest expiry first."""
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    renewal: CertificateRenewal = field(default_factory=CertificateRenewal)
    """The profile's renewal window, from the manifest: what `cert-expiring` and the calendar judge by."""

    def ok(self, where: str, message: str) -> None:
        self.findings.append(Finding("ok", where, message))

    def warn(self, check: str, where: str, message: str) -> None:
        self.findings.append(Finding("warning", where, message, _known(check)))

    def error(self, check: str, where: str, message: str) -> None:
        self.findings.append(Finding("error", where, message, _known(check)))

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
            "calendar": [e.as_dict(self.now) for e in self.calendar],
        }

    def add_expiry(self, node: str, file: str, cert: x509.Certificate) -> None:
        self.calendar.append(_entry(node, file, cert))


def _entry(node: str, file: str, cert: x509.Certificate) -> Expiry:
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return Expiry(node, file, ",".join(cn), cert.not_valid_after_utc, lifetime)


def _known(check: str) -> str:
    """A finding names its detector, so each one is tested and CI can tell them apart."""
    if check not in DETECTORS:
        raise ValueError(f"unknown detector id {check!r}: add it to DETECTORS")
    return check


def bundle_calendar(bundle: secrets.Bundle) -> list[Expiry]:
    """The bundle's certificates (CAs, then every owner's leaves) as calendar entries."""
    out = []
    for name, ca in bundle.cas.items():
        out.append(_entry("bundle", f"pki/{name}", ca.cert))
    for owner, leaves in bundle.leaves.items():
        for name, held in leaves.items():
            out.append(_entry("bundle", f"nodes/{owner}/{name}", held.cert))
    for name, pair in (("seed-ca", bundle.seed_ca), ("seed-server", bundle.seed_server)):
        if pair is not None:  # `bake serve`'s TLS (an https:// seed URL)
            out.append(_entry("bundle", f"pki/{name}", pair.cert))
    return out


def renewal_of(manifest: dict[str, Any]) -> CertificateRenewal:
    """The profile's cluster.certificateRenewal as the bake recorded it in the manifest; a manifest
    without it (an older bake) or with a value the model refuses: the default (720h)."""
    recorded = manifest.get("certificateRenewal")
    if not isinstance(recorded, dict):
        return CertificateRenewal()
    try:
        return CertificateRenewal.model_validate(recorded)
    except ValueError:
        return CertificateRenewal()


def expiring(calendar: list[Expiry], now: datetime, renewal: CertificateRenewal) -> list[Expiry]:
    """The entries due at `now` (each within its window, Expiry.window), soonest first; join credentials
    left out: they are meant to expire with the join window (cluster.joinWindow)."""
    hits = [e for e in calendar if e.not_after - now < e.window(renewal)[0] and not e.join_credential]
    return sorted(hits, key=lambda e: (e.not_after, e.node, e.file))


def expiry_warnings(bundle: secrets.Bundle, now: datetime, renewal: CertificateRenewal) -> list[str]:
    """What `bake` says on stderr: one line per certificate of the bundle that is due (the window a
    bake re-issues leaves in, so what is left is what the bake cannot renew: CAs, leaves --only kept)."""
    return [
        f"certificate {e.subject!r} ({e.node} {e.file}) expires on {e.not_after:%Y-%m-%d %H:%M} UTC, "
        f"in {e.days_left(now)} days (within {e.window(renewal)[1]})"
        for e in expiring(bundle_calendar(bundle), now, renewal)
    ]


def _expiry(report: Report, where: str, cert: x509.Certificate, join_credential: bool = False) -> None:
    """Expired, or due: within the window a bake re-issues it in (secrets.due_window with the manifest's
    cluster.certificateRenewal), the last third of a join credential's lifetime."""
    not_after = cert.not_valid_after_utc
    lifetime = not_after - cert.not_valid_before_utc
    soon, _ = secrets.due_window(report.renewal, lifetime, join_credential=join_credential)
    if not_after <= report.now:
        report.error("cert-expired", where, f"expired on {not_after:%Y-%m-%d}")
    elif not_after - report.now < soon:
        report.warn("cert-expiring", where, f"expires on {not_after:%Y-%m-%d}, in less than {soon.days} days")


_B64 = frozenset({"b64", "base64"})
_GZ_B64 = frozenset({"gz+b64", "gz+base64", "gzip+b64", "gzip+base64"})
_GZ = frozenset({"gz", "gzip"})


def decoded_content(raw: object, encoding: object) -> bytes:
    """A write_files entry's content as cloud-init writes it to disk (its encodings: b64, gz, gz+b64 and
    their spellings; anything else is text). The bake writes b64 and, for the archive, gz+b64."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw) if isinstance(raw, bytes | bytearray) else b""
    if encoding in _B64 | _GZ_B64:
        data = base64.b64decode(data)
    if encoding in _GZ_B64 | _GZ:
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise ValueError(f"{encoding} content does not decompress: {exc}") from None
    return data


def write_files_of(user_data: bytes) -> dict[str, tuple[bytes, str, str]]:
    """path -> (decoded content, permissions, owner) of what a user-data's write_files puts on the
    node's disk: the shared first-boot archive (builder.node.archive) stands for the files it unpacks
    to, read member by member; a path written twice is unreadable (ValueError)."""
    return _files_of(yaml.load(user_data, Loader=_Loader))


def _files_of(doc: Any) -> dict[str, tuple[bytes, str, str]]:
    out: dict[str, tuple[bytes, str, str]] = {}
    unpacked: dict[str, tuple[bytes, str, str]] = {}
    for entry in (doc or {}).get("write_files", []) or []:
        content = decoded_content(entry.get("content", ""), entry.get("encoding"))
        if entry["path"] == archive.ARCHIVE_PATH:
            unpacked = archive.members(content)
            continue
        out[entry["path"]] = (content, str(entry.get("permissions", "")), str(entry.get("owner", "")))
    for path, member in unpacked.items():
        if path in out:
            raise ValueError(f"{path}: both in write_files and in {archive.ARCHIVE_PATH}")
        out[path] = member
    return out


def _looks_secret(data: bytes) -> bool:
    return PRIVATE_KEY_MARKER in data or b"token" in data.lower()


def _readable_forms(path: Path) -> list[bytes]:
    """A file's bytes and, for a seed's user-data (raw or gzip), the files it writes, decoded: a gz+b64
    entry or the archive would hide a token or key from a scan of the raw bytes."""
    data = path.read_bytes()
    forms = [data]
    if path.name in ("user-data", "user-data.gz"):
        try:
            text = gzip.decompress(data) if path.name.endswith(".gz") else data
            forms += [text, *(c for c, _, _ in write_files_of(text).values())]
        except (OSError, EOFError, zlib.error, yaml.YAMLError, LookupError, TypeError, ValueError):
            pass  # unreadable: the user-data checks say so
    return forms


def _checksums(tree: Path, report: Report) -> None:
    sums = tree / "SHA256SUMS"
    if not sums.is_file():
        report.error("sums-missing", "SHA256SUMS", "missing")
        return
    bad = 0
    lines = sums.read_text().splitlines()
    for line in lines:
        digest, _, rel = line.partition("  ")
        path = tree / rel
        if ".." in Path(rel).parts or not path.is_file():
            report.error("sums-file-missing", rel, "listed in SHA256SUMS but missing")
            bad += 1
        elif sha256_file(path) != digest:
            report.error("sums-mismatch", rel, "content differs from SHA256SUMS")
            bad += 1
    if not bad:
        report.ok("SHA256SUMS", f"{len(lines)} files match")


def _modes(tree: Path, report: Report, label: str = "") -> None:
    loose = 0
    for path in [tree, *tree.rglob("*")]:
        st = path.lstat()
        rel = label + str(path.relative_to(tree)) if path != tree else label.rstrip("/") or "."
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o077:
            report.error("mode-directory", rel, f"directory mode {st.st_mode & 0o777:04o}, expected 0700")
            loose += 1
        elif (
            stat.S_ISREG(st.st_mode)
            and st.st_mode & 0o077
            and (path.suffix == ".iso" or any(_looks_secret(b) for b in _readable_forms(path)))
        ):
            report.error(
                "mode-secret-file",
                rel,
                f"holds secrets but mode is {st.st_mode & 0o777:04o}, expected 0600",
            )
            loose += 1
    if not loose:
        report.ok(label.rstrip("/") or "modes", "directories 0700, secret-bearing files 0600")


def _schema_start(tree: Path, nodes: list[dict[str, Any]], jobs: int) -> cloudinit_schema.Batch | None:
    """Start cloud-init's validation of every node's user-data; it runs while the other checks do."""
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        return None
    paths = [tree / "nodes" / str(n.get("name")) / "user-data" for n in nodes]
    return cloudinit_schema.Batch(cloud_init, paths, [cloudinit_schema.shape(n) for n in nodes], jobs)


def _schema(batch: cloudinit_schema.Batch | None, paths: list[Path], report: Report) -> None:
    if batch is None:
        report.warn("schema-unavailable", "user-data", "cloud-init is not installed here: schema not checked")
        return
    try:
        verdicts = batch.verdicts(paths)
    finally:
        batch.close()
    for path in paths:
        verdict = verdicts[path]
        if verdict.failed:
            report.error("schema", str(path), "cloud-init schema: " + verdict.output.strip()[-500:])
    if paths:
        report.ok("user-data", f"{len(paths)} files checked with cloud-init schema")


def _node(
    tree: Path,
    node: dict[str, Any],
    bundle: secrets.Bundle | None,
    manifest: dict[str, Any],
    report: Report,
    report_keys: dict[bytes, str] | None = None,
) -> Path | None:
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
        doc = yaml.load(seed["user-data"], Loader=_Loader)
        files = _files_of(doc)
    except (yaml.YAMLError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        report.error("user-data-unreadable", f"nodes/{name}/user-data", f"unreadable cloud-config: {exc}")
        return None
    _archive_unpacked(name, doc, report)
    expected = {f["path"]: f for f in node.get("files", [])}
    if set(expected) != set(files):
        report.error(
            "write-files-list", f"nodes/{name}/user-data", "write_files differ from the manifest's file list"
        )
    for path, (content, perms, _owner) in files.items():
        want = expected.get(path)
        if want and (
            hashlib.sha256(content).hexdigest() != want["sha256"]
            or perms.lstrip("0") != want["mode"].lstrip("0")
        ):
            report.error(
                "write-file-differs", f"nodes/{name}:{path}", "content or mode differs from the manifest"
            )
        holds_key = PRIVATE_KEY_MARKER in content
        if holds_key and (int(perms, 8) & 0o077 if perms else True):
            report.error(
                "key-permissions", f"nodes/{name}:{path}", f"private key written with permissions {perms!r}"
            )
    _seed_certificates(name, files, report)
    _rebake_only(name, files, report)
    _join_secrets(name, role, str(manifest.get("join", "token")), files, bundle, report)
    _role_secrets(name, role, topology, files, bundle, report)
    if report_keys:
        _report_keys(name, files, report_keys, report)
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


_HEX_KEY = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def node_report_keys(bundle: secrets.Bundle, cluster: str, names: list[str]) -> dict[bytes, str]:
    """Every node's report key -> the node (cluster.seed.reportUrl), to find one where it does not belong."""
    if bundle.report_key is None:
        return {}
    return {secrets.report_node_key(bundle, cluster, n): n for n in names}


def _report_keys(
    name: str, files: dict[str, tuple[bytes, str, str]], keys: dict[bytes, str], report: Report
) -> None:
    """A node's report key is its own, and no other node's key is anywhere in its files: the key is
    what lets a node speak for itself to `bake serve`."""
    held = files.get(paths.REPORT_KEY)
    if held is not None and keys.get(held[0].strip()) != name:
        owner = keys.get(held[0].strip())
        whose = f"{owner}'s" if owner else "no node's"
        where = f"nodes/{name}:{paths.REPORT_KEY}"
        report.error("report-key", where, f"is not this node's report key but {whose}")
    for path, (content, _, _) in sorted(files.items()):
        if path == paths.REPORT_KEY:
            continue  # judged above
        for found in _HEX_KEY.findall(content):
            other = keys.get(found)
            if other is not None and other != name:
                report.error("report-key", f"nodes/{name}", f"holds the report key of {other} in {path}")


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


def _join_secrets(
    name: str,
    role: str,
    join: str,
    files: dict[str, tuple[bytes, str, str]],
    bundle: secrets.Bundle | None,
    report: Report,
) -> None:
    """Who may hold the bootstrap token, and each joining node's own credential (README, secrets table).

    The first control plane always lists the token (kubeadm init creates one whatever the mode; with
    certificates it is inert, 1s TTL); other nodes hold it only when they join with it (cluster.join: token).
    """
    where = f"nodes/{name}"
    init = INIT_CONFIG_PATH in files
    joins = JOIN_CONFIG_PATH in files
    if bundle is not None:
        secret_part = bundle.token.split(".", 1)[-1].encode()
        holds = [path for path, (content, _, _) in files.items() if secret_part in content]
        if holds and not (init or (join == "token" and joins)):
            why = (
                "an etcd member"
                if role == "etcd"
                else f"it joins with its own credential (cluster.join: {join})"
            )
            report.error(
                "join-token-holder", where, f"holds the bootstrap token in {', '.join(holds)}, but {why}"
            )
    if join != "certificate" or not joins:
        return
    if JOIN_KUBECONFIG_PATH not in files:
        report.error("join-credential", where, f"joins with a certificate but has no {JOIN_KUBECONFIG_PATH}")
        return
    problem = _join_credential_problem(name, files[JOIN_KUBECONFIG_PATH][0], bundle)
    if problem:
        report.error("join-credential", f"{where}:{JOIN_KUBECONFIG_PATH}", problem)


def _join_credential_problem(name: str, content: bytes, bundle: secrets.Bundle | None) -> str:
    try:
        doc = yaml.safe_load(content)
        user = doc["users"][0]["user"]
        cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
        ca_pem = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError, binascii.Error) as exc:
        return f"not a kubeconfig with a client certificate: {exc}"
    spec = certlist.join_client(name)
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if cn != [spec.cn] or orgs != list(spec.orgs):
        return f"its certificate is for CN={','.join(cn)} O={','.join(orgs)}, not {spec.cn} in {spec.orgs[0]}"
    if bundle is not None:
        ca = bundle.cas["ca"]
        if ca_pem.strip() != ca.cert_pem.strip():
            return "it does not pin the cluster CA of the bundle"
        if pki.verify_reuse(spec, cert, pki.load_key(base64.b64decode(user["client-key-data"])), ca.cert):
            return "its certificate is not signed by the cluster CA, has expired, or does not match its key"
    return ""


def expected_placement(role: str, topology: str, init: bool) -> placement.Placement:
    """What placement.TABLE lets a node of the manifest hold. A role no profile has holds nothing; a
    topology no profile has is judged as external etcd, the strictest one that has control planes."""
    try:
        known_role = Role(role)
    except ValueError:
        return placement.NOTHING
    try:
        known_topology = Topology(topology)
    except ValueError:
        known_topology = Topology.EXTERNAL_ETCD
    return placement.lookup(placement.holder(known_role, init), known_topology)


def _role_secrets(
    name: str,
    role: str,
    topology: str,
    files: dict[str, tuple[bytes, str, str]],
    bundle: secrets.Bundle | None,
    report: Report,
) -> None:
    """Every key of the bundle a node holds must be in its row of placement.TABLE."""
    where = f"nodes/{name}"
    blobs = [content for content, _, _ in files.values()]
    allowed = expected_placement(role, topology, INIT_CONFIG_PATH in files)
    who = ROLE_NAMES.get(role, role)
    if not allowed.holds_private_key and any(PRIVATE_KEY_MARKER in b for b in blobs):
        report.error("worker-private-key", where, f"{who} holds a private key")
    if role == "worker" and "ca" not in allowed.ca_certs and CA_CERT_PATH in files:
        report.error(
            "worker-ca-crt", where, f"a worker has {CA_CERT_PATH} (kubeadm join preflight rejects it)"
        )
    if bundle is None:
        return
    if "ca" not in allowed.ca_keys and any(bundle.cas["ca"].key_pem in b for b in blobs):
        report.error("ca-key-role", where, f"{who} holds the cluster CA key")
    if "etcd-ca" not in allowed.ca_keys and any(bundle.cas["etcd-ca"].key_pem in b for b in blobs):
        report.error("etcd-ca-key-role", where, f"{who} of a {topology} cluster holds the etcd CA key")
    key = bundle.encryption_key
    if key is not None and not allowed.encryption_config and any(base64.b64encode(key) in b for b in blobs):
        report.error("encryption-key-role", where, f"{who} holds the key of the Secrets in etcd")
    if not any(e.where == where and e.level == "error" for e in report.findings):
        report.ok(where, f"secrets fit the {role} role")


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
    report.renewal = renewal_of(manifest)
    jobs = jobs or parallel.default_jobs()
    batch = _schema_start(tree, [n for n in manifest.get("nodes", []) if isinstance(n, dict)], jobs)
    _checksums(tree, report)
    _modes(tree, report)
    bundle = None
    bundle_dir = bundle_location(tree, manifest, secrets_dir)
    if bundle_dir.is_dir() and bundle_dir != tree / bundledir.LEGACY_NAME:
        _modes(bundle_dir, report, "secrets/")
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
            _expiry(report, f"secrets/{name}", ca.cert)
        for owner, leaves in bundle.leaves.items():
            for name, held in leaves.items():
                join = name == certlist.JOIN_CREDENTIAL
                _expiry(report, f"secrets/nodes/{owner}/{name}", held.cert, join)
        report.calendar += bundle_calendar(bundle)
        report.ok("secrets", "bundle consistent: keys match certificates, leaves chain to their CAs")
    user_data = []
    names = [str(n.get("name")) for n in manifest.get("nodes", []) if isinstance(n, dict)]
    cluster = str(manifest.get("cluster", ""))
    report_keys = node_report_keys(bundle, cluster, names) if bundle is not None else {}
    for node in manifest.get("nodes", []):
        path = _node(tree, node, bundle, manifest, report, report_keys)
        if path is not None:
            user_data.append(path)
    _schema(batch, user_data, report)
    report.calendar.sort(key=lambda e: (e.not_after, e.node, e.file, e.subject))
    return report
