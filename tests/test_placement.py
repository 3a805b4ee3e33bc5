"""builder.pki.placement: the one role x topology secrets table, and every consumer held to it.

The README's table is parsed and compared with the code's; for every embedded profile the files each
node really gets are mapped back to secrets by kubeadm's paths (written out here, not taken from the
code) and compared with the node's row; and `bake check` must accept each node's own files and flag
exactly the secrets its row does not give it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import replace

import pytest

from builder import check
from builder.check import node_secrets
from builder.files import NodeFile
from builder.model import Role
from builder.node import cloudinit
from builder.node.distribute import node_pki_files
from builder.pki import placement, secrets
from builder.pki.placement import Holder, Placement
from builder.plan import ClusterPlan, NodePlan, Topology

from .helpers import REPO

Baked = Callable[..., tuple[ClusterPlan, secrets.Bundle]]
PKI = "/etc/kubernetes/pki"

# kubeadm's paths (cmd/kubeadm/app/constants/constants.go) and bake's own, by what they hold
SECRET_PATHS: dict[str, tuple[str, str]] = {
    f"{PKI}/ca.crt": ("ca_certs", "ca"),
    f"{PKI}/front-proxy-ca.crt": ("ca_certs", "front-proxy-ca"),
    f"{PKI}/etcd/ca.crt": ("ca_certs", "etcd-ca"),
    f"{PKI}/ca.key": ("ca_keys", "ca"),
    f"{PKI}/front-proxy-ca.key": ("ca_keys", "front-proxy-ca"),
    f"{PKI}/etcd/ca.key": ("ca_keys", "etcd-ca"),
    f"{PKI}/sa.key": ("also", "sa"),
    f"{PKI}/sa.pub": ("also", "sa"),
    "/etc/kubernetes/encryption/config.yaml": ("also", "encryption"),
    "/etc/bake/join.conf": ("also", "join"),
    "/etc/bake/report.key": ("also", "report"),
    **{f"/etc/kubernetes/{kind}.conf": ("kubeconfigs", kind) for kind in ("admin", "super-admin", "kubelet")},
    "/etc/kubernetes/controller-manager.conf": ("kubeconfigs", "controller-manager"),
    "/etc/kubernetes/scheduler.conf": ("kubeconfigs", "scheduler"),
}
LEAF_PATHS = {
    "apiserver": "apiserver",
    "apiserver-kubelet-client": "apiserver-kubelet-client",
    "front-proxy-client": "front-proxy-client",
    "apiserver-etcd-client": "apiserver-etcd-client",
    "etcd-server": "etcd/server",
    "etcd-peer": "etcd/peer",
    "etcd-healthcheck-client": "etcd/healthcheck-client",
}
for _leaf, _base in LEAF_PATHS.items():
    SECRET_PATHS[f"{PKI}/{_base}.crt"] = ("leaves", _leaf)
    SECRET_PATHS[f"{PKI}/{_base}.key"] = ("leaves", _leaf)

PROFILES = sorted(p.stem for p in (REPO / "profiles").glob("*.yaml"))
# the profile switches the table's `also` column depends on
VARIANTS = [(name, ()) for name in PROFILES] + [
    ("ha-stacked", ("cluster.join=token",)),
    ("ha-external-etcd", ("cluster.secretsEncryption=none",)),
    ("ha-external-etcd", ("cluster.seed.reportUrl=https://10.77.0.1:8443",)),
    ("ha-stacked", ("cluster.seed.reportUrl=http://10.77.0.1:8080",)),
]


# --------------------------------------------------------------------------------------------------
# the README


def _names(cell: str) -> tuple[str, ...]:
    cell = cell.strip()
    if cell == "none":
        return ()
    names = tuple(re.findall(r"`([^`]+)`", cell))
    assert names and re.sub(r"`[^`]+`|[,\s]", "", cell) == "", f"unparsable README cell {cell!r}"
    return names


def _readme_table() -> dict[tuple[Holder, Topology], Placement]:
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| node | topology | CA certificates"))
    rows: dict[tuple[Holder, Topology], Placement] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        node, topology, ca_certs, ca_keys, leaves, kubeconfigs, also = (
            c.strip() for c in line.strip("|").split("|")
        )
        extra = set(_names(also))
        assert extra <= {"sa", "encryption", "join", "report"}, also
        key = (Holder(node), Topology(topology))
        assert key not in rows, f"README lists {key} twice"
        rows[key] = Placement(
            ca_certs=_names(ca_certs),
            ca_keys=_names(ca_keys),
            leaves=_names(leaves),
            kubeconfigs=_names(kubeconfigs),
            service_account_key="sa" in extra,
            encryption_config="encryption" in extra,
            join_credential="join" in extra,
            report_key="report" in extra,
        )
    return rows


def test_readme_table_is_the_placement_table() -> None:
    assert _readme_table() == placement.TABLE


@pytest.mark.parametrize(
    ("holder", "topology"),
    [
        (Holder.FIRST_CONTROL_PLANE, Topology.ETCD_ONLY),
        (Holder.JOINING_CONTROL_PLANE, Topology.ETCD_ONLY),
        (Holder.WORKER, Topology.ETCD_ONLY),
        (Holder.ETCD_MEMBER, Topology.STACKED),
    ],
)
def test_a_pair_no_profile_has_holds_nothing(holder: Holder, topology: Topology) -> None:
    """What `bake check` expects of a node a tampered manifest puts there: no secret at all."""
    row = placement.lookup(holder, topology)
    assert row == Placement(report_key=False)
    assert not row.holds_private_key


# --------------------------------------------------------------------------------------------------
# the files every node of every embedded profile gets


def _table_row(plan: ClusterPlan, node: NodePlan) -> Placement:
    """The node's table row, its holder worked out here from the profile's facts."""
    init = node.role is Role.CONTROL_PLANE and node is plan.control_planes[0]
    holder = {
        Role.CONTROL_PLANE: Holder.FIRST_CONTROL_PLANE if init else Holder.JOINING_CONTROL_PLANE,
        Role.ETCD: Holder.ETCD_MEMBER,
        Role.WORKER: Holder.WORKER,
    }[node.role]
    return placement.TABLE[(holder, plan.topology)]


def _row(plan: ClusterPlan, node: NodePlan) -> Placement:
    """The node's table row with the profile's switches applied."""
    row = _table_row(plan, node)
    return replace(
        row,
        encryption_config=row.encryption_config and plan.settings.secrets_encryption != "none",
        join_credential=row.join_credential and plan.settings.join.value == "certificate",
        report_key=row.report_key and plan.settings.seed.report_url is not None,
    )


def _held(files: tuple[NodeFile, ...]) -> set[tuple[str, str]]:
    held = set()
    for f in files:
        if f.path in SECRET_PATHS:
            held.add(SECRET_PATHS[f.path])
            assert f.path.endswith((".crt", ".pub")) or f.mode == 0o600, f.path
        else:
            assert not f.path.startswith(f"{PKI}/"), f"{f.path}: a PKI file the test does not know"
    return held


def _expected(row: Placement) -> set[tuple[str, str]]:
    also = {
        "sa": row.service_account_key,
        "encryption": row.encryption_config,
        "join": row.join_credential,
        "report": row.report_key,
    }
    return (
        {("ca_certs", n) for n in row.ca_certs}
        | {("ca_keys", n) for n in row.ca_keys}
        | {("leaves", n) for n in row.leaves}
        | {("kubeconfigs", n) for n in row.kubeconfigs}
        | {("also", n) for n, on in also.items() if on}
    )


def _node_files(plan: ClusterPlan, bundle: secrets.Bundle, node: NodePlan) -> tuple[NodeFile, ...]:
    return cloudinit.node_files(
        plan,
        node,
        pki_files=node_pki_files(plan, node, bundle),
        token=bundle.token,
        ca_hash=bundle.discovery_hash,
    )


@pytest.mark.parametrize(("profile", "sets"), VARIANTS, ids=[" ".join([p, *s]) for p, s in VARIANTS])
def test_node_files_follow_the_table(baked: Baked, profile: str, sets: tuple[str, ...]) -> None:
    plan, bundle = baked(profile, *sets)
    for node in plan.nodes:
        files = _node_files(plan, bundle, node)
        paths = [f.path for f in files]
        assert len(paths) == len(set(paths))
        assert _held(files) == _expected(_row(plan, node)), node.name
        # and no CA key, nor the Secrets' key, hides in another file of the node
        for name, ca in bundle.cas.items():
            holders = {f.path for f in files if ca.key_pem in f.content}
            assert holders <= {f"{PKI}/{'etcd/ca' if name == 'etcd-ca' else name}.key"}, (node.name, holders)


# --------------------------------------------------------------------------------------------------
# `bake check` expects what the table says


def _check_errors(
    plan: ClusterPlan, node: NodePlan, files: dict[str, tuple[bytes, str, str]], bundle: secrets.Bundle
) -> set[str]:
    report = check.Report()
    node_secrets.check_role_secrets(node.name, node.role.value, plan.topology.value, files, bundle, report)
    return {f.check for f in report.findings if f.level == "error"}


@pytest.mark.parametrize(("profile", "sets"), VARIANTS, ids=[" ".join([p, *s]) for p, s in VARIANTS])
def test_check_expects_what_the_table_says(baked: Baked, profile: str, sets: tuple[str, ...]) -> None:
    plan, bundle = baked(profile, *sets)
    assert bundle.encryption_key is not None
    for node in plan.nodes:
        row = _row(plan, node)
        own = {f.path: (f.content, f"{f.mode:04o}", "root:root") for f in _node_files(plan, bundle, node)}
        assert _check_errors(plan, node, own, bundle) == set(), node.name
        planted = {
            "ca-key-role": ("ca" not in row.ca_keys, bundle.cas["ca"].key_pem),
            "etcd-ca-key-role": ("etcd-ca" not in row.ca_keys, bundle.cas["etcd-ca"].key_pem),
            # check does not know the profile: it allows the key wherever the table might put it
            "encryption-key-role": (
                not _table_row(plan, node).encryption_config,
                base64.b64encode(bundle.encryption_key),
            ),
            "worker-private-key": (
                not (row.ca_keys or row.leaves or row.service_account_key),
                bundle.sa_key_pem,
            ),
        }
        for detector, (forbidden, content) in planted.items():
            files = {**own, "/root/planted": (b"x\n" + content, "0600", "root:root")}
            assert (detector in _check_errors(plan, node, files, bundle)) == forbidden, (node.name, detector)
        with_ca = {**own, f"{PKI}/ca.crt": (bundle.cas["ca"].cert_pem, "0644", "root:root")}
        flagged = "worker-ca-crt" in _check_errors(plan, node, with_ca, bundle)
        assert flagged == (node.role is Role.WORKER and "ca" not in row.ca_certs), node.name
