"""Generation and reconciliation (pure apart from randomness and the clock): the bundle a plan needs,
made new or reconciled with the one on disk, each change reported."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from ...errors import Problem, SecretsError
from ...plan import ClusterPlan
from .. import certlist, encryption
from .. import crypto as pki
from .bundle import OPERATOR, Bundle, Change, Issued
from .seed_server import reconcile_seed_server
from .specs import operator_specs, required_specs, spec_index
from .windows import join_window, leaf_validity, renewal_window, validity_periods


def new_bundle(plan: ClusterPlan, now: datetime, keys: list[pki.PrivateKey] | None = None) -> Bundle:
    """`keys`: made ahead (pki.generate_keys), taken from the end; generated here when it runs out."""
    algorithm = pki.KeyAlgorithm(plan.settings.encryption_algorithm)
    _, ca_validity = validity_periods(plan)
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
    changes += reconcile_seed_server(plan, existing, bundle, now=now, rotate_ca=rotate_ca)
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
            to_issue.append((issued, spec, leaf_validity(plan, spec)))
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


def stale_leaves(plan: ClusterPlan, bundle: Bundle, owners: Iterable[str], now: datetime) -> list[Change]:
    """What a bake would re-issue among the leaves of `owners` (and why), without re-issuing it: for the
    owners `bake --only` carries over (their seeds, and the operator's admin.conf, keep their leaves)."""
    out: list[Change] = []
    owners = list(owners)
    if not owners:  # every bake but --only's: no owner's specs to compute
        return out
    index = spec_index(plan)
    for owner in owners:
        for name, held in bundle.leaves.get(owner, {}).items():
            spec = index.get(owner, {}).get(name)
            problems = _reuse_problems(spec, held, bundle, now, plan) if spec is not None else []
            if problems:
                why = "; ".join(problems)
                out.append(Change(owner, f"{name} kept, --only carries it over ({why}): bake without --only"))
    return out
