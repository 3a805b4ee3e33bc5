"""How long certificates live and when one is due: the one window in which a bake re-issues a leaf,
`bake` and `bake check` warn, and the nodes' timer renews."""

from __future__ import annotations

from datetime import timedelta

from ...model import CertificateRenewal
from ...model.syntax import duration_seconds
from ...plan import ClusterPlan
from .. import certlist
from .. import crypto as pki

RENEW_BEFORE = timedelta(days=30)


def validity_periods(plan: ClusterPlan) -> tuple[timedelta, timedelta]:
    """(leaf, CA) validity from the profile, as kubeadm's certificateValidityPeriod and
    caCertificateValidityPeriod."""
    s = plan.settings
    return (
        timedelta(seconds=duration_seconds(s.certificate_validity_period)),
        timedelta(seconds=duration_seconds(s.ca_certificate_validity_period)),
    )


def join_window(plan: ClusterPlan) -> timedelta:
    """How long a join credential is valid from its issue: the time a node has to join for the first time."""
    return timedelta(seconds=duration_seconds(plan.settings.join_window))


def leaf_validity(plan: ClusterPlan, spec: pki.CertSpec) -> timedelta:
    """A join credential lives for the join window; every other leaf for the leaf validity."""
    return join_window(plan) if spec.name == certlist.JOIN_CREDENTIAL else validity_periods(plan)[0]


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
