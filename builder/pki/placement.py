"""Which secret each node holds: one table, by role and topology, read by every consumer.

The secrets bundle issues what this table names (secrets.required_specs), distribution writes it to
the node at kubeadm's paths (distribute.node_pki_files), `bake check` flags a node holding a secret
its row does not name (check.node_secrets), and the README's table is tested against it. Written once here so
that none of them can silently disagree with another.

kubeadm's own layout, cut down to each role's need: workers hold no CA certificate (kubeadm's join
preflight rejects pki/ca.crt) and no key but their join credential's; external etcd members hold their
etcd leaves and the etcd CA certificate and key; control planes hold the CA keys kubeadm's join needs
(`SharedCertificateExists`) except the etcd CA key with external etcd; super-admin.conf and
kubelet.conf exist only on the first control plane (a joining one gets kubelet.conf from TLS
bootstrap). A single-node cluster is the first control plane of a stacked one.

Why an external etcd member holds the etcd CA key, as every stacked control plane does (kubeadm copies
etcd/ca.key to each joining control plane): so that it renews its own etcd-server, etcd-peer and
etcd-healthcheck-client leaves with `kubeadm certs renew` (renewal.py). A member already holds the
cluster's whole data and a peer identity the other members trust, so the key adds little exposure;
without it, renewal means baking again and putting new files on each member, and a member whose leaves
nobody re-baked stops serving its peers and the API servers the day they expire.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from ..model import JoinCredential, Role
from ..plan import ClusterPlan, NodePlan, Topology
from . import certlist


class Holder(StrEnum):
    """A node's part in the secrets table: its role, and for control planes whether it runs kubeadm init."""

    FIRST_CONTROL_PLANE = "first control plane"
    JOINING_CONTROL_PLANE = "joining control plane"
    ETCD_MEMBER = "etcd member"
    WORKER = "worker"


def holder(role: Role, init: bool) -> Holder:
    if role is Role.CONTROL_PLANE:
        return Holder.FIRST_CONTROL_PLANE if init else Holder.JOINING_CONTROL_PLANE
    return Holder.ETCD_MEMBER if role is Role.ETCD else Holder.WORKER


@dataclass(frozen=True)
class Placement:
    """The secrets one node holds. Names are the bundle's: CA names and leaf CertSpec names (certlist),
    kubeconfig kinds (admin, super-admin, kubelet, controller-manager, scheduler)."""

    ca_certs: tuple[str, ...] = ()
    ca_keys: tuple[str, ...] = ()
    leaves: tuple[str, ...] = ()
    """Leaf certificates with their keys, in the order kubeadm creates them."""
    kubeconfigs: tuple[str, ...] = ()
    service_account_key: bool = False
    encryption_config: bool = False
    """The EncryptionConfiguration (the key of every Secret in etcd); only with cluster.secretsEncryption."""
    join_credential: bool = False
    """The node's own join credential (/etc/bake/join.conf); only with cluster.join: certificate. Joining
    control planes hold one too: they then need no token either, so no bootstrap token is alive in the
    cluster at all (and the credential adds nothing to what a control plane holds)."""
    report_key: bool = True
    """The node's own report key (/etc/bake/report.key, `bake serve`); only with cluster.seed.reportUrl.
    Every role holds its own and no other: it lets the holder report for that one node only."""

    @property
    def holds_private_key(self) -> bool:
        """A PEM private key among its files (a join credential's key is inside a kubeconfig, base64)."""
        return bool(self.ca_keys or self.leaves or self.service_account_key)


CONTROL_PLANE_LEAVES = (
    "apiserver",
    "apiserver-kubelet-client",
    "front-proxy-client",
    "apiserver-etcd-client",
)
ETCD_LEAVES = ("etcd-server", "etcd-peer", "etcd-healthcheck-client")
ALL_CAS = certlist.CA_NAMES
INIT_KUBECONFIGS = ("admin", "super-admin", "kubelet", "controller-manager", "scheduler")
JOIN_KUBECONFIGS = ("admin", "controller-manager", "scheduler")

_STACKED_INIT = Placement(
    ca_certs=ALL_CAS,
    ca_keys=ALL_CAS,
    leaves=CONTROL_PLANE_LEAVES + ETCD_LEAVES,
    kubeconfigs=INIT_KUBECONFIGS,
    service_account_key=True,
    encryption_config=True,
)
_EXTERNAL_INIT = replace(_STACKED_INIT, ca_keys=("ca", "front-proxy-ca"), leaves=CONTROL_PLANE_LEAVES)
_ETCD_MEMBER = Placement(ca_certs=("etcd-ca",), ca_keys=("etcd-ca",), leaves=ETCD_LEAVES)
_WORKER = Placement(join_credential=True)

NOTHING = Placement(report_key=False)

TABLE: dict[tuple[Holder, Topology], Placement] = {
    (Holder.FIRST_CONTROL_PLANE, Topology.STACKED): _STACKED_INIT,
    (Holder.JOINING_CONTROL_PLANE, Topology.STACKED): replace(
        _STACKED_INIT, kubeconfigs=JOIN_KUBECONFIGS, join_credential=True
    ),
    (Holder.WORKER, Topology.STACKED): _WORKER,
    (Holder.FIRST_CONTROL_PLANE, Topology.EXTERNAL_ETCD): _EXTERNAL_INIT,
    (Holder.JOINING_CONTROL_PLANE, Topology.EXTERNAL_ETCD): replace(
        _EXTERNAL_INIT, kubeconfigs=JOIN_KUBECONFIGS, join_credential=True
    ),
    (Holder.ETCD_MEMBER, Topology.EXTERNAL_ETCD): _ETCD_MEMBER,
    (Holder.WORKER, Topology.EXTERNAL_ETCD): _WORKER,
    (Holder.ETCD_MEMBER, Topology.ETCD_ONLY): _ETCD_MEMBER,
}
"""Every (holder, topology) a valid profile can have, and what that node holds at most."""


def lookup(holder_: Holder, topology: Topology) -> Placement:
    """The row, or nothing at all for a pair no valid profile has (a tampered manifest in `bake check`)."""
    return TABLE.get((holder_, topology), NOTHING)


def for_node(plan: ClusterPlan, node: NodePlan) -> Placement:
    """The node's row with the profile's switches applied (cluster.secretsEncryption, cluster.join,
    cluster.seed.reportUrl)."""
    row = lookup(holder(node.role, node.is_init), plan.topology)
    return replace(
        row,
        encryption_config=row.encryption_config and plan.settings.secrets_encryption != "none",
        join_credential=row.join_credential and plan.settings.join is JoinCredential.CERTIFICATE,
        report_key=row.report_key and plan.settings.seed.report_url is not None,
    )
