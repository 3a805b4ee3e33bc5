"""What `bake check` reports: every detector by its stable id, the findings, and the expiry calendar of
the cluster's certificates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..model import CertificateRenewal
from ..node.distribute import JOIN_KUBECONFIG_PATH
from ..pki import certlist, secrets

REBAKE_ONLY = "renewed by re-bake only"


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
    "write-file-differs": "a write_files entry's content, mode or owner differs from the manifest",
    "archive-not-unpacked": "a user-data ships the first-boot archive but its first runcmd entry does not "
    "unpack it (the node would start units whose scripts are not there)",
    "key-pack-not-unpacked": "a user-data ships a key pack but not the prep unit's drop-in and program that "
    "unpack it (the node would have no keys, and kubeadm would make its own)",
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
        self.calendar.append(calendar_entry(node, file, cert))


def calendar_entry(node: str, file: str, cert: x509.Certificate) -> Expiry:
    """A certificate as the calendar lists it: by its CN, with its lifetime, which decides its window."""
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return Expiry(node, file, ",".join(cn), cert.not_valid_after_utc, lifetime)


def _known(check: str) -> str:
    """A finding names its detector, so each one is tested and CI can tell them apart."""
    if check not in DETECTORS:
        raise ValueError(f"unknown detector id {check!r}: add it to DETECTORS")
    return check
