"""builder.validation: checks of user input that kubeadm, the kubelet or the node would otherwise make.

They run when the profile is loaded, so every one of them fails the bake before anything is rendered,
for every node of the profile, whatever `--only` selects.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder import yamlio
from builder.errors import ProfileError
from builder.model import versions
from builder.node import kubeadm_config as kc
from builder.plan import build_plan
from builder.validation.profile import load_profile

from .helpers import bake, tree_digest


def problems_of(profile: str, *sets: str) -> list[tuple[str, str]]:
    with pytest.raises(ProfileError) as exc:
        load_profile(profile, list(sets))
    return [(p.path, p.message) for p in exc.value.problems]


def paths_of(profile: str, *sets: str) -> list[str]:
    return [path for path, _ in problems_of(profile, *sets)]


# --- kubeadm feature gates ----------------------------------------------------------------------

# (minor, gate, accepted by that kubeadm), from each minor's cmd/kubeadm/app/features/features.go and
# the k/k PRs that promoted or removed the gates (cited in builder/model/versions.py).
GATE_FACTS = [
    (31, "UpgradeAddonsBeforeControlPlane", False),  # removed in 1.31 (k/k PR #124715)
    (31, "EtcdLearnerMode", True),
    (31, "ControlPlaneKubeletLocalMode", True),
    (32, "EtcdLearnerMode", True),  # GA in 1.32
    (32, "NodeLocalCRISocket", True),
    (33, "EtcdLearnerMode", False),  # removed in 1.33 (k/k PR #129589)
    (34, "WaitForAllControlPlaneComponents", True),  # GA in 1.34
    (35, "WaitForAllControlPlaneComponents", False),  # removed in 1.35 (k/k PR #134781)
    (35, "ControlPlaneKubeletLocalMode", True),  # GA in 1.35
    (36, "ControlPlaneKubeletLocalMode", False),  # removed in 1.36 (k/k PR #135773)
    (36, "PublicKeysECDSA", True),  # deprecated until v1beta3 goes (1.37)
    (37, "PublicKeysECDSA", False),
    (37, "NodeLocalCRISocket", False),
    (37, "RootlessControlPlane", True),
    (37, "SomeFutureGate", False),
]


@pytest.mark.parametrize(("minor", "gate", "accepted"), GATE_FACTS)
def test_feature_gates_follow_kubeadm_of_the_minor(minor: int, gate: str, accepted: bool) -> None:
    sets = (f"cluster.kubernetesVersion=1.{minor}", f"cluster.featureGates={{{gate}: true}}")
    if accepted:
        load_profile("ha-stacked", list(sets))
    else:
        problems = problems_of("ha-stacked", *sets)
        assert [p for p, _ in problems] == [f"cluster.featureGates.{gate}"]
        assert f"kubeadm 1.{minor}" in problems[0][1]


def test_ga_gate_cannot_be_switched_off() -> None:
    problems = problems_of(
        "ha-stacked",
        "cluster.kubernetesVersion=1.35",
        "cluster.featureGates={ControlPlaneKubeletLocalMode: false}",
    )
    assert problems == [
        (
            "cluster.featureGates.ControlPlaneKubeletLocalMode",
            "ControlPlaneKubeletLocalMode is GA and locked to true in kubeadm 1.35",
        )
    ]


# --- kubelet configuration, flags and labels ----------------------------------------------------


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ("{maxPod: 10}", "cluster.kubelet.config.maxPod"),
        ("{kind: KubeletConfiguration}", "cluster.kubelet.config.kind"),
        (
            "{authentication: {x509: {clientCAFil: /x}}}",
            "cluster.kubelet.config.authentication.x509.clientCAFil",
        ),
    ],
)
def test_kubelet_configuration_rejects_unknown_keys(config: str, path: str) -> None:
    assert paths_of("single-master", f"cluster.kubelet.config={config}") == [path]


@pytest.mark.parametrize(
    ("sets", "path"),
    [
        (["cluster.kubelet.extraArgs={node-ip: 1.2.3.4}"], "cluster.kubelet.extraArgs[0].name"),
        (["nodes[1].kubeletExtraArgs={node-labels: a=b}"], "nodes[1].kubeletExtraArgs[0].name"),
        (
            ["nodes[1].labels={node-role.kubernetes.io/worker: ''}"],
            "nodes[1].labels.node-role.kubernetes.io/worker",
        ),
        (["nodes[1].labels={'a,b': c}"], "nodes[1].labels.a,b"),
        (["nodes[1].labels={a: 'b,c=d'}"], "nodes[1].labels.a"),
        (['nodes[1].labels={a: "x\\ny"}'], "nodes[1].labels.a"),
        (["nodes[1].labels={'bad prefix!/a': b}"], "nodes[1].labels.bad prefix!/a"),
        (['nodes[1].labels={"zone\\n": b}'], "nodes[1].labels.zone\n"),  # a final newline
        (['nodes[1].labels={zone: "b\\n"}'], "nodes[1].labels.zone"),
    ],
)
def test_kubelet_args_and_labels_are_checked(sets: list[str], path: str) -> None:
    assert path in paths_of("single-master", *sets)


# --- load balancer ------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [443, 6443])
def test_low_or_clashing_haproxy_port_is_refused(port: int) -> None:
    assert paths_of("ha-external-etcd", f"cluster.loadBalancer.port={port}") == ["cluster.loadBalancer.port"]


def test_keepalived_control_plane_limit(tmp_path: Path) -> None:
    def profile(count: int) -> Path:
        nodes = "".join(
            f"  - {{name: cp-{i}, role: control-plane, ip: 10.77.{1 + i // 200}.{1 + i % 200}}}\n"
            for i in range(count)
        )
        path = tmp_path / f"cps-{count}.yaml"
        path.write_text(f"extends: ha-external-etcd\nnodes:\n{nodes}")
        return path

    load_profile(str(profile(150)))
    assert paths_of(str(profile(151))) == ["nodes"]


# --- all at once, before rendering, whatever --only says ------------------------------------------


def test_every_problem_is_reported_at_load_time() -> None:
    paths = paths_of(
        "ha-external-etcd",
        "cluster.featureGates={NoSuchGate: true}",
        "cluster.kubelet.config={maxPod: 1}",
        "cluster.loadBalancer.port=80",
        "nodes[7].labels={kubernetes.io/role: x}",
    )
    assert len(paths) == 4
    assert set(paths) == {
        "cluster.featureGates.NoSuchGate",
        "cluster.kubelet.config.maxPod",
        "cluster.loadBalancer.port",
        "nodes[7].labels.kubernetes.io/role",
    }


@pytest.mark.integration
def test_only_does_not_skip_the_checks_of_other_nodes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = bake("--profile", "single-master", "-q", out=out)
    assert first.returncode == 0, first.stderr
    before = tree_digest(out / "single-master")
    # worker-2 (nodes[2]) is not re-rendered, yet its new label must be checked.
    label = "nodes[2].labels={kubernetes.io/role: x}"
    proc = bake("--profile", "single-master", "--only", "worker-1", "--set", label, "-q", out=out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nodes[2].labels.kubernetes.io/role: the kubelet refuses" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_digest(out / "single-master") == before


@pytest.mark.integration
def test_only_does_not_skip_the_checks_of_cluster_input(tmp_path: Path) -> None:
    """A VIP with a zone index used to be refused only while rendering a control plane's haproxy and
    keepalived configs, so `--only worker-1` (which renders neither) baked it; it is refused at load."""
    out = tmp_path / "out"
    lb = ("cluster.loadBalancer.kind=haproxy-keepalived",)
    first = bake("--profile", "ipv6-ha-stacked", *_sets(lb), "-q", out=out)
    assert first.returncode == 0, first.stderr
    before = tree_digest(out / "ipv6-ha-stacked")
    vip = "cluster.loadBalancer.vip=fd00:77::10%eth0"
    proc = bake("--profile", "ipv6-ha-stacked", *_sets((*lb, vip)), "--only", "worker-1", "-q", out=out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cluster.loadBalancer.vip: 'fd00:77::10%eth0' has a zone index" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_digest(out / "ipv6-ha-stacked") == before


def _sets(assignments: tuple[str, ...]) -> list[str]:
    return [arg for a in assignments for arg in ("--set", a)]


@pytest.mark.integration
def test_several_problems_in_one_run_and_nothing_written(tmp_path: Path) -> None:
    """A shape error, a whole-profile error and kubeadm/kubelet rules on several nodes and the cluster:
    one run names them all, exits 2 without a traceback and writes nothing."""
    out = tmp_path / "out"
    sets = (
        "nodes[1].ip=10.77.0.999",  # schema
        "nodes[2].name=cp-1",  # whole profile: duplicate name
        "cluster.featureGates={NoSuchGate: true}",  # kubeadm
        "nodes[2].labels={kubernetes.io/role: x}",  # kubelet
    )
    proc = bake("--profile", "single-master", *_sets(sets), "--only", "cp-1", out=out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    # The schema pass fails first; the whole-profile checks that still make sense run with it.
    for path in ("nodes[1].ip", "nodes[2].name"):
        assert f"{path}: " in proc.stderr, proc.stderr
    assert list(out.iterdir()) == []
    sets = sets[1:]
    proc = bake("--profile", "single-master", *_sets(sets), "--only", "cp-1", out=out)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for path in ("nodes[2].name", "cluster.featureGates.NoSuchGate", "nodes[2].labels.kubernetes.io/role"):
        assert f"{path}: " in proc.stderr, proc.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "assignment",
    [
        "nodes[0].ip=fd00:77::11%eth0",
        "cluster.loadBalancer.vip=fd00:77::10%1",
        "defaults.gateway=fe80::1%eth0",
        "defaults.dns=['fd00:77::1%eth0']",
    ],
)
def test_ipv6_zone_index_is_refused(assignment: str) -> None:
    """`addr%zone` parses as an IPv6 address, but no config bake writes (URLs, kubeadm's advertise
    address, haproxy, keepalived) can carry it."""
    path = assignment.partition("=")[0]
    problems = problems_of("ipv6-ha-stacked", assignment)
    assert [p for p, _ in problems if p.startswith(path)] != [], problems
    assert any("zone index" in m for _, m in problems)


# --- container runtime source ---------------------------------------------------------------------


def test_default_runtime_source_bakes_with_every_embedded_profile() -> None:
    for name in ("single-master", "single-node", "ha-stacked", "ha-external-etcd", "etcd-cluster"):
        assert load_profile(name).cluster.container_runtime_source.value == "repository"


@pytest.mark.parametrize(
    ("sets", "expect"),
    [
        # Kubernetes 1.35 was the last release to support containerd 1.x; Ubuntu 24.04 has 1.7.
        (("cluster.kubernetesVersion=1.36",), "ubuntu-24.04's own containerd is 1.7"),
        (("defaults.os=debian-12",), "debian-12's own containerd is 1.6"),
        (("defaults.os=debian-13",), "debian-13's own containerd is 1.7"),
        (("cluster.kubernetesVersion=1.33", "defaults.os=rocky-9"), "rocky-9 ships no containerd package"),
    ],
)
def test_distro_containerd_refused_where_kubernetes_does_not_support_it(
    sets: tuple[str, ...], expect: str
) -> None:
    problems = problems_of("single-master", "cluster.containerRuntimeSource=distro", *sets)
    assert [p for p, _ in problems] == ["cluster.containerRuntimeSource"]
    message = problems[0][1]
    assert expect in message
    assert "use cluster.containerRuntimeSource: repository" in message  # the way out
    assert "packages.mode: prebaked" in message


@pytest.mark.parametrize(
    "sets",
    [
        ("cluster.kubernetesVersion=1.35",),  # containerd 1.7 is still supported by a 1.35 kubelet
        ("cluster.packages.mode=prebaked",),  # the image's builder chose the runtime
        ("cluster.containerRuntime=crio",),  # CRI-O comes from its own repository
        ("defaults.os=fedora-42",),  # not known to ship 1.x: not refused
    ],
)
def test_distro_containerd_accepted_otherwise(sets: tuple[str, ...]) -> None:
    load_profile("single-master", ["cluster.containerRuntimeSource=distro", *sets])


def test_distro_containerd_judged_per_node_kubelet() -> None:
    # The kubelet decides, node by node: cp-1 runs the cluster's 1.36 even if every worker runs 1.35.
    problems = problems_of(
        "single-master",
        "cluster.containerRuntimeSource=distro",
        "cluster.kubernetesVersion=1.36",
        "nodes[1].kubernetesVersion=1.35",
        "nodes[2].kubernetesVersion=1.35",
    )
    assert "the kubelet of nodes[0] cp-1 (1.36)" in problems[0][1]


def _real_kubeadm() -> Path | None:
    explicit = os.environ.get("BAKE_K8S_BIN")
    if explicit:
        found = Path(explicit) / "kubeadm"
        return found if found.is_file() else None
    cache = Path(os.environ.get("BAKE_K8S_CACHE", "/var/cache/bake-k8s"))
    for candidate in sorted(cache.glob("*/kubeadm")) + sorted(cache.glob("*/*/bin/kubeadm")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


REAL_KUBEADM = _real_kubeadm()


@pytest.mark.integration
@pytest.mark.skipif(REAL_KUBEADM is None, reason="no kubeadm built from upstream (make k8s)")
@pytest.mark.parametrize("gate", [*(name for name, _ in versions.TABLE[37].feature_gates), "SomeFutureGate"])
def test_gates_of_1_37_against_the_real_kubeadm(tmp_path: Path, gate: str) -> None:
    """`kubeadm config validate` (v1.37.2) accepts exactly the gates bake accepts for 1.37."""
    assert REAL_KUBEADM is not None
    # TEST-NET-1 addresses: kubeadm refuses a loopback advertise address, and validate sends nothing.
    ips = ("nodes[0].ip=192.0.2.11", "nodes[1].ip=192.0.2.21", "nodes[2].ip=192.0.2.22")
    plan = build_plan(load_profile("single-master", list(ips)))
    docs = kc.config_documents(plan, plan.node("cp-1"), "abcdef.0123456789abcdef", "sha256:" + "0" * 64)
    docs[1]["featureGates"] = {gate: True}  # past bake's own validation, to ask kubeadm itself
    config = tmp_path / "kubeadm.yaml"
    config.write_text(yamlio.dump_all(docs))
    proc = subprocess.run(
        [str(REAL_KUBEADM), "config", "validate", "--config", str(config)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    kubeadm_accepts = proc.returncode == 0
    if not kubeadm_accepts:
        assert f"{gate} is not a valid feature name" in proc.stdout + proc.stderr, proc.stderr
    try:
        load_profile("single-master", [*ips, f"cluster.featureGates={{{gate}: true}}"])
        bake_accepts = True
    except ProfileError:
        bake_accepts = False
    assert bake_accepts == kubeadm_accepts
