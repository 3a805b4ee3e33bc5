"""builder.validation.profile and builder.yamlio: loading, `extends`, `--set`, validation reporting every
problem."""

from __future__ import annotations

import copy
import ipaddress
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder import resources, yamlio
from builder.errors import Problem, ProfileError
from builder.model import Cni, LoadBalancerKind, Profile, Role
from builder.validation.profile import apply_set, load_profile, validate

EMBEDDED = (
    "etcd-cluster",
    "ha-external-etcd",
    "ha-stacked",
    "ipv6-ha-stacked",
    "single-master",
    "single-node",
)
REPO = Path(__file__).resolve().parent.parent
BAKE = REPO / ".venv" / "bin" / "bake"


def data(name: str, *sets: str) -> dict[str, Any]:
    """An embedded profile as the plain mapping a user could have written (all defaults spelled out)."""
    return load_profile(name, sets).model_dump(mode="json", by_alias=True)


def problems_of(d: Any) -> list[Problem]:
    with pytest.raises(ProfileError) as info:
        validate(d)
    return list(info.value.problems)


def paths(problems: list[Problem]) -> list[str]:
    return [p.path for p in problems]


def find(problems: list[Problem], path: str) -> Problem:
    hits = [p for p in problems if p.path == path]
    assert hits, f"no problem at {path}; got {[str(p) for p in problems]}"
    return hits[0]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def ipv6_profile() -> dict[str, Any]:
    """IPv6 single-stack: the embedded ipv6-ha-stacked profile as plain data."""
    return data("ipv6-ha-stacked")


# --------------------------------------------------------------------------------------------------
# Embedded profiles and extends


def test_embedded_profile_names() -> None:
    assert tuple(resources.profile_names()) == EMBEDDED


@pytest.mark.parametrize(
    ("name", "roles"),
    [
        ("etcd-cluster", ["etcd"] * 3),
        ("ha-external-etcd", ["etcd"] * 3 + ["control-plane"] * 3 + ["worker"] * 2),
        ("ha-stacked", ["control-plane"] * 3 + ["worker"] * 2),
        ("single-master", ["control-plane", "worker", "worker"]),
        ("single-node", ["control-plane"]),
    ],
)
def test_embedded_profiles_load(name: str, roles: list[str]) -> None:
    p = load_profile(name)
    assert isinstance(p, Profile)
    assert p.cluster.name == name
    assert [n.role.value for n in p.nodes] == roles
    assert p.cluster.kubernetes_version == "1.37"


def test_extends_merges_mappings_and_replaces_lists() -> None:
    p = load_profile("ha-stacked")
    # from ha-stacked itself
    assert p.cluster.load_balancer.kind is LoadBalancerKind.KUBE_VIP
    assert str(p.cluster.load_balancer.vip) == "10.77.0.10"
    # inherited through the merge of `cluster:` from single-master
    assert p.cluster.pod_subnet == "10.244.0.0/16"
    assert p.cluster.cni is Cni.CALICO
    assert p.defaults.prefix_length == 24
    assert [u.name for u in p.defaults.users] == ["ops"]
    # lists replace: the parent's worker-1/worker-2 are not appended to ha-stacked's five nodes
    assert [n.name for n in p.nodes] == ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"]
    assert p.description is not None and "stacked" in p.description


def test_user_profile_extends_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = write(
        tmp_path / "site.yaml",
        """\
extends: ha-stacked
cluster:
  name: site
  loadBalancer:
    vip: 10.77.0.100
nodes:
  - {name: a-1, role: control-plane, ip: 10.77.0.51}
  - {name: a-2, role: control-plane, ip: 10.77.0.52}
  - {name: a-3, role: control-plane, ip: 10.77.0.53}
""",
    )
    for ref in (str(user), "site.yaml"):
        monkeypatch.chdir(tmp_path if ref == "site.yaml" else REPO)
        p = load_profile(ref)
        assert p.cluster.name == "site"
        lb = p.cluster.load_balancer
        assert lb.kind is LoadBalancerKind.KUBE_VIP  # merged from ha-stacked
        assert str(lb.vip) == "10.77.0.100"  # overridden
        assert lb.interface == "eth0"
        assert [n.name for n in p.nodes] == ["a-1", "a-2", "a-3"]  # replaced, not appended
        assert str(p.defaults.gateway) == "10.77.0.1"  # from single-master, two levels up


def test_relative_extends_is_resolved_from_the_profile_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "site" / "base.yaml", "extends: single-master\ncluster: {name: base, cni: flannel}\n")
    write(tmp_path / "site" / "mid.yaml", "extends: base.yaml\ncluster: {podSubnet: 10.200.0.0/16}\n")
    child = write(
        tmp_path / "site" / "envs" / "child.yaml",
        "extends: ../mid.yaml\ncluster: {name: child}\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    p = load_profile(str(child))
    assert p.cluster.name == "child"
    assert p.cluster.cni is Cni.FLANNEL
    assert p.cluster.pod_subnet == "10.200.0.0/16"
    assert [n.name for n in p.nodes] == ["cp-1", "worker-1", "worker-2"]
    monkeypatch.chdir(tmp_path / "site")
    assert load_profile("envs/child.yaml").cluster.cni is Cni.FLANNEL


def test_extends_self_cycle_is_an_error(tmp_path: Path) -> None:
    me = write(tmp_path / "me.yaml", "extends: me.yaml\ncluster: {name: me}\n")
    with pytest.raises(ProfileError) as info:
        load_profile(str(me))
    assert info.value.problems[0].path == "extends"
    assert "cycle" in info.value.problems[0].message


def test_extends_two_file_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "extends: b.yaml\ncluster: {name: a}\n")
    write(tmp_path / "b.yaml", "extends: ./a.yaml\ncluster: {cni: flannel}\n")
    with pytest.raises(ProfileError) as info:
        load_profile(str(tmp_path / "a.yaml"))
    (problem,) = info.value.problems
    assert problem.path == "extends"
    assert "cycle" in problem.message
    assert "a.yaml" in problem.message and "b.yaml" in problem.message


def test_unknown_profile_name_lists_embedded_ones() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("no-such-profile")
    (problem,) = info.value.problems
    assert problem.path == "--profile"
    assert "ha-stacked" in problem.message


def test_embedded_name_not_shadowed_by_cwd_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "single-node").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_profile("single-node").cluster.name == "single-node"


# --------------------------------------------------------------------------------------------------
# --set


def test_set_enum_and_list_item() -> None:
    p = load_profile("single-master", ["cluster.cni=flannel", "nodes[1].ip=10.77.0.40"])
    assert p.cluster.cni is Cni.FLANNEL
    assert p.nodes[1].ip == ipaddress.ip_address("10.77.0.40")
    assert p.nodes[0].ip == ipaddress.ip_address("10.77.0.11")


def test_set_version_stays_a_string() -> None:
    raw: dict[str, Any] = {"cluster": {"kubernetesVersion": "1.37"}}
    apply_set(raw, "cluster.kubernetesVersion=1.30")
    assert raw["cluster"]["kubernetesVersion"] == "1.30"
    assert (
        load_profile("single-master", ["cluster.kubernetesVersion=1.35"]).cluster.kubernetes_version == "1.35"
    )
    with pytest.raises(ProfileError) as info:
        load_profile("single-master", ["cluster.kubernetesVersion=1.30"])
    problem = find(list(info.value.problems), "cluster.kubernetesVersion")
    assert "1.30" in problem.message and "not supported" in problem.message
    assert "read as a number" not in problem.message


def test_set_flow_values_and_null() -> None:
    p = load_profile(
        "single-master",
        [
            "defaults.dns=[10.77.0.53, 10.77.0.54]",
            "nodes[1].labels={tier: edge}",
            "nodes[0].mac=null",
            "cluster.controlPlaneEndpoint=api.example.com:6443",
            "cluster.allowSchedulingOnControlPlanes=true",
        ],
    )
    assert [str(ip) for ip in p.defaults.dns] == ["10.77.0.53", "10.77.0.54"]
    assert p.nodes[1].labels == {"tier": "edge"}
    assert p.nodes[0].mac is None
    assert p.cluster.control_plane_endpoint == "api.example.com:6443"
    assert p.cluster.allow_scheduling_on_control_planes is True
    cleared = load_profile(
        "single-master", ["cluster.controlPlaneEndpoint=api.example.com", "cluster.controlPlaneEndpoint=~"]
    )
    assert cleared.cluster.control_plane_endpoint is None


def test_set_creates_missing_mappings() -> None:
    p = load_profile("single-master", ["cluster.etcd.dataDir=/srv/etcd"])
    assert p.cluster.etcd.data_dir == "/srv/etcd"


@pytest.mark.parametrize(
    ("assignment", "path"),
    [
        ("cluster.cni", "--set cluster.cni"),
        ("cluster..cni=x", "--set cluster..cni"),
        ("nodes[x].ip=1", "--set nodes[x].ip"),
        ("nodes[7].ip=10.77.0.99", "nodes[7]"),
        ("cluster.name.sub=x", "cluster.name.sub"),
    ],
)
def test_bad_set_is_a_profile_error(assignment: str, path: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("single-master", [assignment])
    assert info.value.problems[0].path == path


def test_set_value_of_wrong_type_is_reported_at_its_path() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("single-master", ["nodes[2].ip=10.0.0.300", "cluster.cni=weave"])
    ps = list(info.value.problems)
    assert find(ps, "nodes[2].ip").message == "'10.0.0.300' is not an IPv4 or IPv6 address"
    assert "cluster.cni" in paths(ps)


def test_set_into_free_form_kubelet_config_keeps_yaml_types() -> None:
    p = load_profile(
        "single-master", ["cluster.kubelet.config.maxPods=110", "cluster.kubelet.config.failSwapOn=false"]
    )
    assert p.cluster.kubelet.config == {"maxPods": 110, "failSwapOn": False}


# --------------------------------------------------------------------------------------------------
# Validation: every problem, each with its path


def test_shape_errors_are_all_reported() -> None:
    d = data("single-master")
    d["nodes"][2]["ip"] = "10.0.0.300"
    d["nodes"][0]["mac"] = "52:54:00:zz:00:11"
    d["nodes"][1]["role"] = "master"
    d["cluster"]["podSubnet"] = "10.244.0.1/16"
    d["defaults"]["gateway"] = 10
    ps = problems_of(d)
    assert find(ps, "nodes[2].ip").message == "'10.0.0.300' is not an IPv4 or IPv6 address"
    assert "52:54:00:zz:00:11" in find(ps, "nodes[0].mac").message
    assert "nodes[1].role" in paths(ps)
    assert "cluster.podSubnet" in paths(ps)
    assert "defaults.gateway" in paths(ps)
    assert len(ps) == 5


def test_whole_profile_errors_are_all_reported() -> None:
    d = data("single-master")
    d["nodes"][1]["name"] = "cp-1"
    d["nodes"][2]["ip"] = "10.77.0.11"
    d["nodes"][2]["mac"] = "52:54:00:77:00:11".upper()  # same MAC, other case
    d["cluster"]["podSubnet"] = "10.96.0.0/16"
    ps = problems_of(d)
    assert find(ps, "nodes[1].name").message == "duplicate name of nodes[0]"
    ip = find(ps, "nodes[2].ip").message
    assert "duplicate" in ip and "nodes[0]" in ip
    mac = find(ps, "nodes[2].mac").message
    assert "duplicate" in mac and "nodes[0]" in mac
    overlap = find(ps, "cluster.podSubnet").message
    assert "10.96.0.0/16" in overlap and "cluster.serviceSubnet" in overlap and "10.96.0.0/12" in overlap


def test_field_and_whole_profile_errors_are_reported_together() -> None:
    d = data("single-master")
    d["nodes"][2]["ip"] = "10.0.0.300"
    d["nodes"][1]["name"] = "cp-1"
    d["cluster"]["podSubnet"] = "10.96.0.0/16"
    ps = problems_of(d)
    assert {"nodes[2].ip", "nodes[1].name", "cluster.podSubnet"} <= set(paths(ps))


def test_duplicate_ipv6_addresses_in_different_spellings() -> None:
    d = ipv6_profile()
    d["nodes"][3]["ip"] = "fd00:77:0:0::11"
    assert find(problems_of(d), "nodes[3].ip").message == "duplicate address of nodes[0]"


@pytest.mark.parametrize("name", ["CP-1", "cp_1", "a" * 64, "-cp", "cp-", "cp.1", ""])
def test_node_names_must_be_rfc1123_labels(name: str) -> None:
    d = data("single-master")
    d["nodes"][1]["name"] = name
    problem = find(problems_of(d), "nodes[1].name")
    assert "RFC 1123" in problem.message
    assert repr(name) in problem.message


FINAL_NEWLINE: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("nodes[1].name", lambda d: d["nodes"][1].update(name="worker-1\n")),
    ("cluster.name", lambda d: d["cluster"].update(name="single-master\n")),
    ("nodes[1].mac", lambda d: d["nodes"][1].update(mac="52:54:00:77:00:21\n")),
    ("cluster.tokenTTL", lambda d: d["cluster"].update(tokenTTL="24h\n")),
    ("defaults.users[0].name", lambda d: d["defaults"]["users"][0].update(name="ops\n")),
    ("cluster.apiServer.certSANs[0]", lambda d: d["cluster"]["apiServer"].update(certSANs=["api.x.com\n"])),
]


@pytest.mark.parametrize(("path", "change"), FINAL_NEWLINE, ids=[p for p, _ in FINAL_NEWLINE])
def test_a_final_newline_is_refused(path: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Python's `$` also matches before a final newline; a name that ends in one would add a line to
    every config it is written into (haproxy.cfg, keepalived.conf, shell scripts)."""
    d = data("single-master")
    change(d)
    assert path in paths(problems_of(d))


def test_63_character_name_is_fine() -> None:
    d = data("single-master")
    d["nodes"][1]["name"] = "a" * 63
    assert validate(d).nodes[1].name == "a" * 63


@pytest.mark.parametrize(
    ("ip", "cidr"),
    [("10.96.0.5", "cluster.serviceSubnet 10.96.0.0/12"), ("10.244.3.4", "cluster.podSubnet 10.244.0.0/16")],
)
def test_node_address_inside_cluster_cidrs(ip: str, cidr: str) -> None:
    d = data("single-master")
    d["nodes"][2]["ip"] = ip
    problem = find(problems_of(d), "nodes[2].ip")
    assert ip in problem.message and cidr in problem.message


def test_ipv6_single_stack_is_accepted() -> None:
    p = validate(ipv6_profile())
    assert {n.ip.version for n in p.nodes} == {6}
    assert p.cluster.load_balancer.vip == ipaddress.ip_address("fd00:77::10")
    assert p.cluster.service_subnet == "fd00:96::/112"


def test_ipv6_node_inside_ipv6_pod_subnet() -> None:
    d = ipv6_profile()
    d["nodes"][3]["ip"] = "fd00:244::21"
    assert "cluster.podSubnet fd00:244::/56" in find(problems_of(d), "nodes[3].ip").message


def test_mixed_address_families_refused() -> None:
    d = data("single-master")
    d["nodes"][2]["ip"] = "fd00:77::22"
    assert "nodes" in paths(problems_of(d))


@pytest.mark.parametrize(
    "where",
    [
        (),
        ("cluster",),
        ("cluster", "loadBalancer"),
        ("cluster", "apiServer"),
        ("cluster", "etcd"),
        ("cluster", "kubelet"),
        ("cluster", "packages"),
        ("cluster", "seed"),
        ("defaults",),
        ("defaults", "users", 0),
        ("nodes", 1),
    ],
)
def test_unknown_keys_rejected_at_every_level(where: tuple[str | int, ...]) -> None:
    d = data("single-master")
    d["cluster"]["apiServer"] = {}
    node: Any = d
    for key in where:
        node = node[key]
    node["internalIp"] = "x"
    expected = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in where).lstrip(".")
    expected = f"{expected}.internalIp" if expected else "internalIp"
    problem = find(problems_of(d), expected)
    assert problem.message == "unknown field"


def test_yaml_alias_rejected(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.yaml",
        "extends: single-master\ncluster: {name: x}\ndefaults:\n  dns: &d [10.0.0.1]\n  gateway: 10.0.0.1\n"
        "nodes:\n  - {name: cp-1, role: control-plane, ip: 10.77.0.11}\nextra: *d\n",
    )
    with pytest.raises(ProfileError) as info:
        load_profile(str(f))
    (problem,) = info.value.problems
    assert problem.path == f"{f}:4:8"  # refused at the anchor, before any alias can expand
    assert "aliases" in problem.message


def test_yaml_merge_key_rejected() -> None:
    with pytest.raises(ProfileError, match="aliases"):
        yamlio.load_document("a: &a {x: 1}\nb:\n  <<: *a\n", source="s")


def test_yaml_lone_anchor_rejected() -> None:
    with pytest.raises(ProfileError, match="anchors"):
        yamlio.load_document("cluster: &c {name: x}\n", source="s")


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("cluster: {name: a}\ncluster: {name: b}\n", "s:2:1", "cluster"),
        ("cluster:\n  name: a\n  cni: calico\n  name: b\n", "s:4:3", "name"),
        ("nodes:\n  - {name: a, ip: 1.2.3.4, ip: 1.2.3.5}\n", "s:2:28", "ip"),
    ],
)
def test_duplicate_keys_rejected(text: str, where: str, key: str) -> None:
    with pytest.raises(ProfileError) as info:
        yamlio.load_document(text, source="s")
    (problem,) = info.value.problems
    assert problem.path == where
    assert f"duplicate key {key!r}" in problem.message


def test_duplicate_key_in_profile_file(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "extends: single-node\ncluster:\n  cni: calico\n  cni: flannel\n")
    with pytest.raises(ProfileError) as info:
        load_profile(str(f))
    assert info.value.problems[0].path == f"{f}:4:3"


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        ("cluster: {name: x, kubernetesVersion: 1.30}\n", "cluster.kubernetesVersion"),
        (
            "cluster: {name: x}\nnodes:\n"
            "  - {name: w, role: worker, ip: 10.77.0.21, kubernetesVersion: 1.35}\n",
            "nodes[0].kubernetesVersion",
        ),
    ],
)
def test_unquoted_version_rejected_with_a_clear_message(tmp_path: Path, yaml_text: str, path: str) -> None:
    f = write(tmp_path / "p.yaml", "extends: single-master\n" + yaml_text)
    with pytest.raises(ProfileError) as info:
        load_profile(str(f))
    problem = find(list(info.value.problems), path)
    assert "number" in problem.message and "quote" in problem.message


@pytest.mark.parametrize("version", ["1.30", "1.38", "2.0", "1.37.0-rc.1", "latest"])
def test_unsupported_version_refused(version: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("single-master", [f"cluster.kubernetesVersion={version}"])
    assert paths(list(info.value.problems)) == ["cluster.kubernetesVersion"]


@pytest.mark.parametrize("version", ["1.31", "1.34.2", "v1.36.1", "1.37"])
def test_supported_versions_accepted(version: str) -> None:
    assert (
        load_profile("single-master", [f"cluster.kubernetesVersion={version}"]).cluster.kubernetes_version
        == version
    )


@pytest.mark.parametrize(
    ("cluster", "worker", "ok"),
    [
        ("1.37", "1.33", False),  # 4 minors older
        ("1.37", "1.34", True),  # 3 minors older
        ("1.37", "1.37.1", True),
        ("1.35", "1.36", False),  # newer than the control plane
    ],
)
def test_kubelet_version_skew(cluster: str, worker: str, ok: bool) -> None:
    sets = [f"cluster.kubernetesVersion={cluster}", f"nodes[1].kubernetesVersion={worker}"]
    if ok:
        assert load_profile("single-master", sets).nodes[1].kubernetes_version == worker
        return
    with pytest.raises(ProfileError) as info:
        load_profile("single-master", sets)
    assert paths(list(info.value.problems)) == ["nodes[1].kubernetesVersion"]


def test_control_plane_cannot_run_another_kubelet_version() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("single-master", ["nodes[0].kubernetesVersion=1.36"])
    assert paths(list(info.value.problems)) == ["nodes[0].kubernetesVersion"]


def test_ecdsa_p384_needs_1_34() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(
            "single-node", ["cluster.encryptionAlgorithm=ECDSA-P384", "cluster.kubernetesVersion=1.33"]
        )
    problem = find(list(info.value.problems), "cluster.encryptionAlgorithm")
    assert "1.34" in problem.message
    ok = load_profile(
        "single-node", ["cluster.encryptionAlgorithm=ECDSA-P384", "cluster.kubernetesVersion=1.34"]
    )
    assert ok.cluster.encryption_algorithm == "ECDSA-P384"


def test_unknown_encryption_algorithm_refused() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("single-node", ["cluster.encryptionAlgorithm=RSA-1024"])
    assert paths(list(info.value.problems)) == ["cluster.encryptionAlgorithm"]


def test_several_control_planes_need_an_endpoint() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("ha-stacked", ["cluster.loadBalancer.kind=none", "cluster.loadBalancer.vip=null"])
    assert paths(list(info.value.problems)) == ["cluster.controlPlaneEndpoint"]
    p = load_profile(
        "ha-stacked",
        [
            "cluster.loadBalancer.kind=none",
            "cluster.loadBalancer.vip=null",
            "cluster.controlPlaneEndpoint=api.lan",
        ],
    )
    assert p.cluster.control_plane_endpoint == "api.lan"


@pytest.mark.parametrize("kind", ["kube-vip", "haproxy-keepalived"])
def test_load_balancer_needs_a_vip(kind: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("ha-stacked", [f"cluster.loadBalancer.kind={kind}", "cluster.loadBalancer.vip=null"])
    problem = find(list(info.value.problems), "cluster.loadBalancer.vip")
    assert kind in problem.message


def test_external_load_balancer_needs_an_endpoint() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("ha-stacked", ["cluster.loadBalancer.kind=external"])
    assert "cluster.controlPlaneEndpoint" in paths(list(info.value.problems))


def test_vip_must_not_be_a_node_address() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("ha-stacked", ["cluster.loadBalancer.vip=10.77.0.12"])
    assert "10.77.0.12" in find(list(info.value.problems), "cluster.loadBalancer.vip").message


@pytest.mark.parametrize(
    "endpoint", ["api..lan", "api.lan:0", "api.lan:70000", "api.lan:http", "fd00::1]:6443", "API.lan"]
)
def test_bad_control_plane_endpoint(endpoint: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("single-master", [f"cluster.controlPlaneEndpoint={endpoint}"])
    assert paths(list(info.value.problems)) == ["cluster.controlPlaneEndpoint"]


def test_set_bracketed_ipv6_endpoint() -> None:
    p = load_profile("single-master", ["cluster.controlPlaneEndpoint=[fd00::10]:6443"])
    assert p.cluster.control_plane_endpoint == "[fd00::10]:6443"


def test_validation_does_not_mutate_input() -> None:
    d = data("ha-stacked")
    before = copy.deepcopy(d)
    validate(d)
    assert d == before


def test_roles_parse() -> None:
    assert {n.role for n in load_profile("ha-external-etcd").nodes} == set(Role)


# --------------------------------------------------------------------------------------------------
# The command line: exit 2, `path: message` on stderr, no traceback, nothing written


def run_bake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "300"}
    env.pop("BAKE_DEBUG", None)
    exe = [str(BAKE)] if BAKE.exists() else [sys.executable, "-m", "builder.cli"]
    return subprocess.run([*exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def snapshot(root: Path) -> dict[str, bytes | None]:
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }


def test_cli_bad_set_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_bake(
        "--profile", "single-master", "--set", "nodes[2].ip=10.0.0.300", "--out", str(out), cwd=tmp_path
    )
    assert r.returncode == 2, r.stderr
    assert "nodes[2].ip: '10.0.0.300' is not an IPv4 or IPv6 address" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not out.exists()


def test_cli_reports_every_problem_and_leaves_outputs_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "keep").mkdir(parents=True)
    (out / "keep" / "file").write_bytes(b"untouched")
    before = snapshot(out)
    user = write(
        tmp_path / "site.yaml",
        """\
extends: ha-stacked
cluster: {name: site}
nodes:
  - {name: cp-1, role: control-plane, ip: 10.77.0.11}
  - {name: cp-1, role: control-plane, ip: 10.77.0.12}
  - {name: cp-3, role: control-plane, ip: 10.77.0.11}
""",
    )
    r = run_bake("--profile", str(user), "--out", str(out), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "nodes[1].name: duplicate name of nodes[0]" in r.stderr
    assert "nodes[2].ip: duplicate address of nodes[0]" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert snapshot(out) == before


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "extends: single-master\ncluster: {name: x, kubernetesVersion: 1.30}\n",
            "cluster.kubernetesVersion",
        ),
        ("a: &x 1\nb: *x\n", "aliases"),
        ("cluster: {}\ncluster: {}\n", "duplicate key 'cluster'"),
        ("extends: p.yaml\n", "extends: cycle"),
    ],
)
def test_cli_yaml_problems_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    write(tmp_path / "p.yaml", text)
    out = tmp_path / "out"
    r = run_bake("--profile", "p.yaml", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not out.exists()


def test_a_final_newline_is_not_an_embedded_profile_name() -> None:
    assert resources.profile_text("single-node") is not None
    assert resources.profile_text("single-node\n") is None
