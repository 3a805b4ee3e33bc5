"""Certificates due or expired, judged by the window a bake re-issues leaves in (the manifest's
cluster.certificateRenewal): `bake check`'s calendar and findings, and the warnings `bake` prints."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from ..model import CertificateRenewal
from ..pki import secrets
from ..pki.secrets.windows import RENEW_BEFORE
from .findings import Expiry, Report, calendar_entry


def bundle_calendar(bundle: secrets.Bundle) -> list[Expiry]:
    """The bundle's certificates (CAs, then every owner's leaves) as calendar entries."""
    out = []
    for name, ca in bundle.cas.items():
        out.append(calendar_entry("bundle", f"pki/{name}", ca.cert))
    for owner, leaves in bundle.leaves.items():
        for name, held in leaves.items():
            out.append(calendar_entry("bundle", f"nodes/{owner}/{name}", held.cert))
    for name, pair in (("seed-ca", bundle.seed_ca), ("seed-server", bundle.seed_server)):
        if pair is not None:  # `bake serve`'s TLS (an https:// seed URL)
            out.append(calendar_entry("bundle", f"pki/{name}", pair.cert))
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


def steady_span(bundle: secrets.Bundle, renewal: CertificateRenewal) -> tuple[datetime, datetime]:
    """When a bake's decisions that depend on the time stay as they are for this bundle: from the latest
    NotBefore (a certificate not valid yet is re-issued) until the first certificate is due (re-issued,
    or warned about). Each certificate's window is the larger of its due_window and the seed server's
    own rule (seed_server: the last third of its lifetime, at most RENEW_BEFORE): never later than either."""
    starts, ends = [], []
    for e in bundle_calendar(bundle):
        lifetime = e.lifetime if e.lifetime is not None else timedelta(0)
        starts.append(e.not_after - lifetime)
        ends.append(e.not_after - max(e.window(renewal)[0], min(RENEW_BEFORE, lifetime / 3)))
    return max(starts), min(ends)


def check_expiry(report: Report, where: str, cert: x509.Certificate, join_credential: bool = False) -> None:
    """Expired, or due: within the window a bake re-issues it in (secrets.due_window with the manifest's
    cluster.certificateRenewal), the last third of a join credential's lifetime."""
    not_after = cert.not_valid_after_utc
    lifetime = not_after - cert.not_valid_before_utc
    soon, _ = secrets.due_window(report.renewal, lifetime, join_credential=join_credential)
    if not_after <= report.now:
        report.error("cert-expired", where, f"expired on {not_after:%Y-%m-%d}")
    elif not_after - report.now < soon:
        report.warn("cert-expiring", where, f"expires on {not_after:%Y-%m-%d}, in less than {soon.days} days")
