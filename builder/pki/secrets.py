"""The secrets bundle: CAs, service-account key, bootstrap token and every leaf certificate, kept on disk.

Later bakes reuse the bundle byte for byte. CAs, the SA key and the token change only on an explicit
rotation; a leaf is re-issued only when kubeadm's own reuse check (spec 1.7) would reject it for the
current plan (a node's IP changed, a SAN was added) or it is near expiry, and every re-issue is
reported. A bundle that does not match itself is an error, never repaired.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ..errors import Problem, SecretsError
from ..model import CertificateRenewal
from ..model.syntax import duration_seconds
from ..plan import ClusterPlan, NodePlan
from ..serve import protocol as report_protocol
from ..serve import tls as seed_tls
from . import certlist, encryption, placement, sealing
from . import crypto as pki

BUNDLE_FORMAT = 1
ENCRYPTION_KEY_FILE = "encryption-key"
REPORT_KEY_FILE = "report-key"
RENEW_BEFORE = timedelta(days=30)
OPERATOR = "_operator"  # not an RFC 1123 name, so no node can collide with it


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key, and their PEM bytes exactly as stored."""

    cert: x509.Certificate
    key: pki.PrivateKey
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_objects(cls, cert: x509.Certificate, key: pki.PrivateKey) -> Issued:
        return cls(cert, key, pki.cert_pem(cert), pki.key_pem(key))


@dataclass
class Bundle:
    created: int
    algorithm: pki.KeyAlgorithm
    token: str
    cas: dict[str, Issued]
    sa_key_pem: bytes
    sa_pub_pem: bytes
    leaves: dict[str, dict[str, Issued]] = field(default_factory=dict)
    """Per owner (node name, or `operator` for the admin.conf handed to the user), per CertSpec name."""
    encryption_key: bytes | None = None
    """The key Secrets are encrypted with in etcd (encryption.py); None only in a bundle read from an
    older bake, until reconcile adds one."""
    report_key: bytes | None = None
    """The secret every node's report key is derived from (serve/protocol.py); only while the profile
    names cluster.seed.reportUrl, so a bundle without it stays as it was."""
    seed_ca: Issued | None = None
    """The seed server's own CA (serve/tls.py), only while a seed URL is https://."""
    seed_server: Issued | None = None
    """The seed server's certificate, signed by seed_ca, for the https:// URLs' hosts."""

    @property
    def discovery_hash(self) -> str:
        return pki.discovery_hash(self.cas["ca"].cert)

    def leaf(self, owner: str, name: str) -> Issued:
        return self.leaves[owner][name]


@dataclass(frozen=True)
class Change:
    """One thing the bake did to the bundle, told to the user."""

    owner: str
    what: str

    def __str__(self) -> str:
        return f"{self.owner}: {self.what}"


# --------------------------------------------------------------------------------------------------
# Which certificates each node needs (kubeadm's layout per role)


def required_specs(plan: ClusterPlan, node: NodePlan) -> list[pki.CertSpec]:
    """The leaf certificates kubeadm would create on this node (placement.TABLE says which), computed
    as kubeadm computes them."""
    s = plan.settings
    held = placement.for_node(plan, node)
    endpoint_host = plan.endpoint.host if plan.endpoint else None
    sans = [*s.api_server.cert_sans, *([str(s.load_balancer.vip)] if s.load_balancer.vip is not None else [])]
    make: dict[str, Callable[[], pki.CertSpec]] = {
        "apiserver": lambda: certlist.apiserver(
            node.name, node.ip, s.service_subnet, s.dns_domain, endpoint_host, sans
        )[0],
        "apiserver-kubelet-client": certlist.apiserver_kubelet_client,
        "front-proxy-client": certlist.front_proxy_client,
        "apiserver-etcd-client": certlist.apiserver_etcd_client,
        "etcd-server": lambda: certlist.etcd_server(node.name, node.ip, s.etcd.server_cert_sans)[0],
        "etcd-peer": lambda: certlist.etcd_peer(node.name, node.ip, s.etcd.peer_cert_sans)[0],
        "etcd-healthcheck-client": certlist.etcd_healthcheck_client,
    }
    specs = [make[name]() for name in held.leaves if name not in placement.ETCD_LEAVES]
    specs += [certlist.kubeconfig_client(kind, node.name) for kind in held.kubeconfigs]
    if held.join_credential:
        specs.append(certlist.join_client(node.name))
    specs += [make[name]() for name in held.leaves if name in placement.ETCD_LEAVES]
    return specs


def operator_specs() -> list[pki.CertSpec]:
    """The admin.conf written to outputs/<cluster>/ for the operator (same identity as kubeadm's admin)."""
    return [certlist.kubeconfig_client("admin", OPERATOR)]


# --------------------------------------------------------------------------------------------------
# Generation and reconciliation (pure apart from randomness and the clock)


def _validity(plan: ClusterPlan) -> tuple[timedelta, timedelta]:
    s = plan.settings
    return (
        timedelta(seconds=duration_seconds(s.certificate_validity_period)),
        timedelta(seconds=duration_seconds(s.ca_certificate_validity_period)),
    )


def join_window(plan: ClusterPlan) -> timedelta:
    """How long a join credential is valid from its issue: the time a node has to join for the first time."""
    return timedelta(seconds=duration_seconds(plan.settings.join_window))


def _leaf_validity(plan: ClusterPlan, spec: pki.CertSpec) -> timedelta:
    return join_window(plan) if spec.name == certlist.JOIN_CREDENTIAL else _validity(plan)[0]


def new_bundle(plan: ClusterPlan, now: datetime, keys: list[pki.PrivateKey] | None = None) -> Bundle:
    """`keys`: made ahead (pki.generate_keys), taken from the end; generated here when it runs out."""
    algorithm = pki.KeyAlgorithm(plan.settings.encryption_algorithm)
    _, ca_validity = _validity(plan)
    keys = keys if keys is not None else []
    cas = {}
    for name, spec in certlist.ca_specs().items():
        key = keys.pop() if keys else algorithm.generate()
        cas[name] = Issued.from_objects(pki.new_ca(spec, key, now=now, validity=ca_validity), key)
    sa = keys.pop() if keys else algorithm.generate()
    return Bundle(
        created=int(now.timestamp()),
        algorithm=algorithm,
        token=pki.generate_token(),
        cas=cas,
        sa_key_pem=pki.key_pem(sa),
        sa_pub_pem=pki.public_pem(sa),
        encryption_key=encryption.new_key(),
    )


def _issue(
    spec: pki.CertSpec, bundle: Bundle, now: datetime, validity: timedelta, key: pki.PrivateKey
) -> Issued:
    assert spec.ca is not None
    ca = bundle.cas[spec.ca]
    cert = pki.sign(spec, key.public_key(), ca.cert, ca.key, now=now, validity=validity)
    return Issued.from_objects(cert, key)


_PENDING: Issued = None  # type: ignore[assignment]  # a leaf decided on, not signed yet


def due_window(
    renewal: CertificateRenewal, lifetime: timedelta, *, join_credential: bool = False
) -> tuple[timedelta, str]:
    """How long before its NotAfter a certificate of this `lifetime` is due, and why (for the output):
    the one window in which a bake re-issues a leaf, `bake` and `bake check` warn, and (renewal on) the
    nodes' timer renews (renewal.env_values).

    The nodes' own window (cluster.certificateRenewal.before): a seed baked for a new or re-provisioned
    machine then never carries a leaf the node would have to renew at once, or could not (the renewal
    timer does not run before the bootstrap, and a control plane with external etcd cannot renew its
    apiserver-etcd-client at all). With renewal off, `before` may exceed the validity (validation allows
    it), so a third of the leaf's lifetime caps it: else every bake would re-issue every leaf. A join
    credential is not renewed on a node but meant to run out with cluster.joinWindow: the last third of
    it, at most RENEW_BEFORE.
    """
    if join_credential:
        return min(RENEW_BEFORE, lifetime / 3), "the last third of its join window"
    before = renewal_before(renewal)
    setting = f"cluster.certificateRenewal.before ({renewal.before})"
    if renewal.enabled:
        return before, setting
    return min(before, lifetime / 3), f"{setting}, at most the last third of its lifetime with renewal off"


def renewal_before(renewal: CertificateRenewal) -> timedelta:
    """cluster.certificateRenewal.before as a duration (the nodes' timer gets it in seconds)."""
    return timedelta(seconds=duration_seconds(renewal.before))


def renewal_window(plan: ClusterPlan, spec: pki.CertSpec, lifetime: timedelta) -> tuple[timedelta, str]:
    """due_window of one leaf of this plan."""
    join = spec.name == certlist.JOIN_CREDENTIAL
    return due_window(plan.settings.certificate_renewal, lifetime, join_credential=join)


def _reuse_problems(
    spec: pki.CertSpec, held: Issued, bundle: Bundle, now: datetime, plan: ClusterPlan
) -> list[str]:
    assert spec.ca is not None
    ca, algorithm = bundle.cas[spec.ca].cert, spec.key_algorithm(bundle.algorithm)
    problems = pki.verify_reuse(spec, held.cert, held.key, ca, now=now, algorithm=algorithm)
    lifetime = held.cert.not_valid_after_utc - held.cert.not_valid_before_utc
    if spec.name == certlist.JOIN_CREDENTIAL and lifetime != join_window(plan) + pki.CERTIFICATE_BACKDATE:
        # a shorter window is a security decision: it must hold for credentials already issued
        problems.append(f"cluster.joinWindow is now {plan.settings.join_window}")
    window, why = renewal_window(plan, spec, lifetime)
    if not problems and held.cert.not_valid_after_utc - now < window:
        problems.append(f"expires {held.cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, within {why}")
    return problems


def reconcile(
    plan: ClusterPlan,
    existing: Bundle | None,
    *,
    now: datetime,
    rotate_ca: bool = False,
    rotate_token: bool = False,
    only: set[str] | None = None,
    jobs: int = 1,
) -> tuple[Bundle, list[Change]]:
    """Return the bundle this plan needs, reusing everything still valid, and what changed.

    With `only`, the certificates of every other node are carried over untouched (bake --only).
    New keys are made in `jobs` processes, all at once: first decide what to issue, then sign.
    """
    changes: list[Change] = []
    algorithm = pki.KeyAlgorithm(plan.settings.encryption_algorithm)
    wanted: dict[str, list[pki.CertSpec]] = {n.name: required_specs(plan, n) for n in plan.nodes}
    if plan.control_planes:
        wanted[OPERATOR] = operator_specs()
    keys: list[pki.PrivateKey] = []
    if existing is None or rotate_ca:
        # a new bundle needs a key for every CA, the SA and every leaf: make them together
        count = len(certlist.ca_specs()) + 1 + sum(s.key is None for specs in wanted.values() for s in specs)
        keys = pki.generate_keys(algorithm, count, jobs)
        bundle = new_bundle(plan, now, keys)
        what = "rotated every CA, the service-account key" if existing else "created CAs, service-account key"
        changes.append(Change("bundle", what + " and bootstrap token"))
        if existing is not None and not rotate_token:
            bundle.token = existing.token
            changes[-1] = Change("bundle", "rotated every CA and the service-account key (token kept)")
    else:
        if existing.algorithm is not algorithm:
            raise SecretsError(
                [
                    Problem(
                        "cluster.encryptionAlgorithm",
                        f"the profile asks for {algorithm.value} but the secrets bundle holds "
                        f"{existing.algorithm.value} keys; pass --rotate-ca to regenerate every CA and key",
                    )
                ]
            )
        bundle = Bundle(
            created=existing.created,
            algorithm=existing.algorithm,
            token=existing.token,
            cas=dict(existing.cas),
            sa_key_pem=existing.sa_key_pem,
            sa_pub_pem=existing.sa_pub_pem,
            encryption_key=existing.encryption_key,
        )
        if rotate_token:
            bundle.token = pki.generate_token()
            changes.append(Change("bundle", "rotated the bootstrap token"))
    if existing is not None and existing.encryption_key is not None:
        bundle.encryption_key = existing.encryption_key  # kept by --rotate-ca too: stored Secrets need it
    elif existing is not None:
        bundle.encryption_key = encryption.new_key()
        changes.append(Change("bundle", "created the key Secrets are encrypted with in etcd"))
    changes += _reconcile_seed_server(plan, existing, bundle, now=now, rotate_ca=rotate_ca)
    old_leaves: Mapping[str, dict[str, Issued]] = {} if existing is None or rotate_ca else existing.leaves
    to_issue: list[tuple[dict[str, Issued], pki.CertSpec, timedelta]] = []
    for owner, specs in wanted.items():
        held = old_leaves.get(owner, {})
        if only is not None and owner not in only and not rotate_ca:
            if held:
                bundle.leaves[owner] = dict(held)
            continue
        issued: dict[str, Issued] = {}
        for spec in specs:
            current = held.get(spec.name)
            if current is not None:
                problems = _reuse_problems(spec, current, bundle, now, plan)
                if not problems:
                    issued[spec.name] = current
                    continue
                changes.append(Change(owner, f"re-issued {spec.name}: " + "; ".join(problems)))
            elif existing is not None and not rotate_ca:
                changes.append(Change(owner, f"issued {spec.name}"))
            issued[spec.name] = _PENDING  # keeps the spec order; signed below
            to_issue.append((issued, spec, _leaf_validity(plan, spec)))
        for name in sorted(set(held) - {s.name for s in specs}):
            changes.append(Change(owner, f"dropped {name} (no longer needed)"))
        if issued:
            bundle.leaves[owner] = issued
    for owner in sorted(set(old_leaves) - set(wanted)):
        changes.append(Change(owner, "dropped the node's certificates (node left the profile)"))
    own_algorithm = sum(spec.key is None for _, spec, _ in to_issue)
    if len(keys) < own_algorithm:
        keys += pki.generate_keys(algorithm, own_algorithm - len(keys), jobs)
    for issued, spec, validity in to_issue:
        key = keys.pop() if spec.key is None else spec.key.generate()
        issued[spec.name] = _issue(spec, bundle, now, validity, key)
    return bundle, changes


def _reconcile_seed_server(
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
    leaf_validity, ca_validity = _validity(plan)
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


def stale_leaves(plan: ClusterPlan, bundle: Bundle, owners: Iterable[str], now: datetime) -> list[Change]:
    """What a bake would re-issue among the leaves of `owners` (and why), without re-issuing it: for the
    owners `bake --only` carries over (their seeds, and the operator's admin.conf, keep their leaves)."""
    out = []
    index = _spec_index(plan)
    for owner in owners:
        for name, held in bundle.leaves.get(owner, {}).items():
            spec = index.get(owner, {}).get(name)
            problems = _reuse_problems(spec, held, bundle, now, plan) if spec is not None else []
            if problems:
                why = "; ".join(problems)
                out.append(Change(owner, f"{name} kept, --only carries it over ({why}): bake without --only"))
    return out


# --------------------------------------------------------------------------------------------------
# On-disk form


def _spec_index(plan: ClusterPlan) -> dict[str, dict[str, pki.CertSpec]]:
    index = {n.name: {s.name: s for s in required_specs(plan, n)} for n in plan.nodes}
    index[OPERATOR] = {s.name: s for s in operator_specs()}
    return index


def _base(specs: dict[str, dict[str, pki.CertSpec]], owner: str, name: str) -> str:
    spec = specs.get(owner, {}).get(name)
    return spec.base if spec is not None else name


def bundle_files(bundle: Bundle, plan: ClusterPlan) -> Iterator[tuple[str, bytes, int]]:
    """(relative path, bytes, mode) of every file of the bundle, in a stable order.

    Certificates are 0600 like everything else in the output tree: one rule, no list of exceptions.
    """
    specs = _spec_index(plan)
    meta: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "cluster": plan.name,
        "created": bundle.created,
        "algorithm": bundle.algorithm.value,
        "leaves": {
            owner: {name: _base(specs, owner, name) for name in sorted(certs)}
            for owner, certs in sorted(bundle.leaves.items())
        },
    }
    if bundle.encryption_key is not None:
        meta["encryptionKey"] = ENCRYPTION_KEY_FILE
    if bundle.report_key is not None:
        meta["reportKey"] = REPORT_KEY_FILE
    if bundle.seed_ca is not None:
        meta["seedServer"] = True
    yield "bundle.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode(), 0o600
    yield "token", (bundle.token + "\n").encode(), 0o600
    if bundle.encryption_key is not None:
        yield ENCRYPTION_KEY_FILE, base64.b64encode(bundle.encryption_key) + b"\n", 0o600
    for name in certlist.CA_NAMES:
        base = certlist.ca_specs()[name].base
        yield f"pki/{base}.crt", bundle.cas[name].cert_pem, 0o600
        yield f"pki/{base}.key", bundle.cas[name].key_pem, 0o600
    yield "pki/sa.key", bundle.sa_key_pem, 0o600
    yield "pki/sa.pub", bundle.sa_pub_pem, 0o600
    if bundle.report_key is not None:
        yield REPORT_KEY_FILE, base64.b64encode(bundle.report_key) + b"\n", 0o600
    if bundle.seed_ca is not None and bundle.seed_server is not None:
        for base, pair in ((seed_tls.CA_BASE, bundle.seed_ca), (seed_tls.SERVER_BASE, bundle.seed_server)):
            yield f"pki/{base}.crt", pair.cert_pem, 0o600
            yield f"pki/{base}.key", pair.key_pem, 0o600
    for owner, certs in sorted(bundle.leaves.items()):
        for name, held in sorted(certs.items()):
            base = _base(specs, owner, name)
            yield f"nodes/{owner}/{base}.crt", held.cert_pem, 0o600
            yield f"nodes/{owner}/{base}.key", held.key_pem, 0o600


def secret_file(rel: str) -> bool:
    """A bundle file that holds a secret (a private key, the bootstrap token, the etcd encryption key):
    age-encrypted in a sealed bundle. Certificates, sa.pub and bundle.json stay clear."""
    return rel.endswith(".key") or rel in ("token", ENCRYPTION_KEY_FILE, REPORT_KEY_FILE)


ReadFile = Callable[[Path], bytes]


def _read(path: Path, problems: list[Problem], where: str, read: ReadFile = Path.read_bytes) -> bytes | None:
    try:
        return read(path)
    except FileNotFoundError:
        problems.append(Problem(where, "missing"))
    except OSError as exc:
        problems.append(Problem(where, f"unreadable: {exc.strerror}"))
    return None


def _load_pair(
    root: Path, base: str, problems: list[Problem], label: str, read: ReadFile = Path.read_bytes
) -> Issued | None:
    where = f"{label}/{base}"
    cert_pem = _read(root / f"{base}.crt", problems, f"{where}.crt", read)
    key_pem = _read(root / f"{base}.key", problems, f"{where}.key", read)
    if cert_pem is None or key_pem is None:
        return None
    try:
        cert = pki.load_cert(cert_pem)
    except ValueError as exc:
        problems.append(Problem(f"{where}.crt", str(exc)))
        return None
    try:
        key = pki.load_key(key_pem)
    except ValueError as exc:
        problems.append(Problem(f"{where}.key", str(exc)))
        return None
    if key.public_key() != cert.public_key():
        problems.append(Problem(where, "the key does not belong to the certificate"))
        return None
    return Issued(cert, key, cert_pem, key_pem)


def load_bundle(root: Path, read: sealing.Reader | None = None) -> Bundle | None:
    """Read and fully check a bundle; None if there is none; SecretsError listing every inconsistency.

    `read` opens the files (age files decrypted in memory); by default with the identity and passphrase
    named by the environment (sealing.Keys.from_env), never asking on a terminal."""
    if not root.exists():
        return None
    read = read or sealing.Reader(root, sealing.Keys.from_env(prompt=False))
    problems: list[Problem] = []
    raw = _read(root / "bundle.json", problems, "secrets/bundle.json", read)
    meta: dict[str, Any] = {}
    if raw is not None:
        try:
            meta = json.loads(raw)
            if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
                raise ValueError(f"unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
            algorithm = pki.KeyAlgorithm(meta["algorithm"])
            created = int(meta["created"])
            leaf_index = {
                str(owner): {str(name): str(base) for name, base in dict(certs).items()}
                for owner, certs in dict(meta["leaves"]).items()
            }
            has_key = meta.get("encryptionKey") == ENCRYPTION_KEY_FILE
            has_report_key = meta.get("reportKey") == REPORT_KEY_FILE
            has_seed_server = meta.get("seedServer") is True
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(Problem("secrets/bundle.json", f"corrupt: {exc}"))
    if problems:
        raise SecretsError(_with_hint(problems))
    token_raw = _read(root / "token", problems, "secrets/token", read)
    token = token_raw.decode(errors="replace").strip() if token_raw is not None else ""
    if token_raw is not None and not pki.TOKEN_RE.match(token):
        problems.append(Problem("secrets/token", "not a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})"))
    encryption_key = _load_secret_key(root, ENCRYPTION_KEY_FILE, problems, read) if has_key else None
    report_key = _load_secret_key(root, REPORT_KEY_FILE, problems, read) if has_report_key else None
    seed_ca, seed_server = (None, None)
    if has_seed_server:
        seed_ca, seed_server = _load_seed_server(root, algorithm, problems, read)
    cas: dict[str, Issued] = {}
    for name in certlist.CA_NAMES:
        pair = _load_pair(root / "pki", certlist.ca_specs()[name].base, problems, "secrets/pki", read)
        if pair is None:
            continue
        if not pki.is_ca(pair.cert):
            problems.append(Problem(f"secrets/pki/{certlist.ca_specs()[name].base}.crt", "is not a CA"))
        if not algorithm.matches(pair.key):
            problems.append(
                Problem(f"secrets/pki/{certlist.ca_specs()[name].base}.key", f"is not {algorithm.value}")
            )
        cas[name] = pair
    sa_key = _read(root / "pki/sa.key", problems, "secrets/pki/sa.key", read)
    sa_pub = _read(root / "pki/sa.pub", problems, "secrets/pki/sa.pub", read)
    if sa_key is not None and sa_pub is not None:
        try:
            if pki.public_pem(pki.load_key(sa_key)) != sa_pub:
                problems.append(Problem("secrets/pki/sa.pub", "does not match sa.key"))
        except ValueError as exc:
            problems.append(Problem("secrets/pki/sa.key", str(exc)))
    leaves: dict[str, dict[str, Issued]] = {}
    ca_by_subject = {pair.cert.subject: name for name, pair in cas.items()}
    for owner, names in sorted(leaf_index.items()):
        for name, base in sorted(names.items()):
            if (
                ".." in Path(owner).parts
                or ".." in Path(base).parts
                or owner.startswith("/")
                or base.startswith("/")
            ):
                problems.append(Problem("secrets/bundle.json", f"bad leaf path {owner}/{base}"))
                continue
            pair = _load_pair(root / "nodes" / owner, base, problems, f"secrets/nodes/{owner}", read)
            if pair is None:
                continue
            issuer = ca_by_subject.get(pair.cert.issuer)
            if issuer is None or not _signed_by(pair.cert, cas[issuer].cert):
                problems.append(
                    Problem(f"secrets/nodes/{owner}/{base}.crt", "not signed by any CA of the bundle")
                )
                continue
            leaves.setdefault(owner, {})[name] = pair
    if problems:
        raise SecretsError(_with_hint(problems))
    assert sa_key is not None and sa_pub is not None
    return Bundle(
        created, algorithm, token, cas, sa_key, sa_pub, leaves,
        encryption_key, report_key, seed_ca, seed_server,
    )  # fmt: skip


def _load_seed_server(
    root: Path, algorithm: pki.KeyAlgorithm, problems: list[Problem], read: ReadFile
) -> tuple[Issued | None, Issued | None]:
    ca = _load_pair(root / "pki", seed_tls.CA_BASE, problems, "secrets/pki", read)
    server = _load_pair(root / "pki", seed_tls.SERVER_BASE, problems, "secrets/pki", read)
    if ca is None or server is None:
        return None, None
    where = f"secrets/pki/{seed_tls.CA_BASE}"
    if not pki.is_ca(ca.cert):
        problems.append(Problem(f"{where}.crt", "is not a CA"))
    if not algorithm.matches(ca.key) or not algorithm.matches(server.key):
        problems.append(Problem(where, f"the seed server keys are not {algorithm.value}"))
    if not _signed_by(server.cert, ca.cert):
        problems.append(Problem(f"secrets/pki/{seed_tls.SERVER_BASE}.crt", "not signed by the seed CA"))
    return ca, server


def _load_secret_key(root: Path, name: str, problems: list[Problem], read: ReadFile) -> bytes | None:
    """A 32-byte secret kept base64 in one file (the etcd encryption key, the report key)."""
    where = f"secrets/{name}"
    raw = _read(root / name, problems, where, read)
    if raw is None:
        return None
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != encryption.KEY_BYTES:
        problems.append(Problem(where, f"not {encryption.KEY_BYTES} bytes in base64"))
        return None
    return key


def _with_hint(problems: list[Problem]) -> list[Problem]:
    return [
        *problems,
        Problem(
            "secrets",
            "the bundle is inconsistent and was not changed; restore it from a backup, remove the "
            "offending node directory under secrets/nodes/ to re-issue that node, "
            "or --rotate-ca to start over",
        ),
    ]


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
