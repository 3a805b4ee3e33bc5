"""`bake serve`'s secrets in the bundle, each held only while the profile asks for it: the report key
(cluster.seed.reportUrl) and the seed server's CA and certificate (an https:// seed URL)."""

from __future__ import annotations

from datetime import datetime

from ...plan import ClusterPlan
from ...serve import protocol as report_protocol
from ...serve import tls as seed_tls
from .. import crypto as pki
from .bundle import Bundle, Change, Issued
from .windows import RENEW_BEFORE, validity_periods


def reconcile_seed_server(
    plan: ClusterPlan, existing: Bundle | None, bundle: Bundle, *, now: datetime, rotate_ca: bool
) -> list[Change]:
    """`bake serve`'s secrets, each held only while the profile asks for it (a bundle without
    cluster.seed.reportUrl or an https:// seed URL stays byte for byte what it was): the report secret
    (kept across --rotate-ca, like the encryption key: it is no CA), the seed CA and its server
    certificate (re-issued when the URLs' hosts change or it nears expiry)."""
    seed = plan.settings.seed
    changes: list[Change] = []
    held = existing.report_key if existing is not None else None
    if seed.report_url is None:
        if held is not None:
            changes.append(Change("bundle", "dropped the report key (cluster.seed.reportUrl is not set)"))
    elif held is not None:
        bundle.report_key = held
    else:
        bundle.report_key = report_protocol.new_master()
        changes.append(Change("bundle", "created the report key the nodes sign their reports with"))
    ca = existing.seed_ca if existing is not None and not rotate_ca else None
    server = existing.seed_server if existing is not None and not rotate_ca else None
    if not seed_tls.wanted(seed):
        if existing is not None and existing.seed_ca is not None:
            changes.append(Change("bundle", "dropped the seed CA and its certificate (no https:// seed URL)"))
        return changes
    leaf_validity, ca_validity = validity_periods(plan)
    if ca is None:
        key = bundle.algorithm.generate()
        ca = Issued.from_objects(pki.new_ca(seed_tls.ca_spec(), key, now=now, validity=ca_validity), key)
        changes.append(Change("bundle", "created the seed CA (the nodes pin it for their reports)"))
        server = None
    spec = seed_tls.server_spec(seed)
    problems = ["new"] if server is None else _server_problems(spec, server, ca, bundle.algorithm, now)
    if problems:
        if server is not None:
            changes.append(Change("bundle", f"re-issued the seed server certificate: {'; '.join(problems)}"))
        key = bundle.algorithm.generate()
        cert = pki.sign(spec, key.public_key(), ca.cert, ca.key, now=now, validity=leaf_validity)
        server = Issued.from_objects(cert, key)
    bundle.seed_ca, bundle.seed_server = ca, server
    return changes


def _server_problems(
    spec: pki.CertSpec, held: Issued, ca: Issued, algorithm: pki.KeyAlgorithm, now: datetime
) -> list[str]:
    problems = pki.verify_reuse(spec, held.cert, held.key, ca.cert, now=now, algorithm=algorithm)
    lifetime = held.cert.not_valid_after_utc - held.cert.not_valid_before_utc
    if not problems and held.cert.not_valid_after_utc - now < min(RENEW_BEFORE, lifetime / 3):
        problems.append(f"expires {held.cert.not_valid_after_utc:%Y-%m-%d}")
    return problems


def report_node_key(bundle: Bundle, cluster: str, node: str) -> bytes:
    """The node's own report key (hex text), as its seed carries it."""
    assert bundle.report_key is not None, "only with cluster.seed.reportUrl"
    return report_protocol.node_key(bundle.report_key, cluster, node)
