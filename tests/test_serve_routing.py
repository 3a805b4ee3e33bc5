"""builder.serve.routing: a node gets its own seed and nothing else; every rule refuses on its own.

A hand-made tree and catalog (two workers, a control plane, an arm64 worker), so each rule can be
broken alone: the right node from the wrong address, the right address with another node's MAC, a
control plane's seed present in the tree but not published, paths that try to leave the tree.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from builder.serve.catalog import Catalog, Cluster, Node
from builder.serve.routing import decide, normalise_mac

W1, W2, CP, ARM = "10.77.0.21", "10.77.0.22", "10.77.0.11", "10.77.0.31"


def _node(
    name: str, role: str, ip: str, mac: str | None, arch: str = "amd64", published: bool = True
) -> Node:
    return Node("prod", name, role, ipaddress.ip_address(ip), mac, arch, published)


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    tree = tmp_path / "prod"
    for name in ("worker-1", "worker-2", "cp-1", "arm-1"):
        d = tree / "http" / name
        d.mkdir(parents=True)
        for f in ("user-data", "meta-data", "network-config", "vendor-data", "boot.ipxe", "cmdline.txt"):
            (d / f).write_text(f"{name} {f}\n")
    images = tree / "http" / "_images" / "amd64"
    (images / "cni").mkdir(parents=True)
    (images / "all.tar").write_bytes(b"tar")
    (images / "cni" / "kube-flannel.yml").write_text("kind: List\n")
    (tmp_path / "secret").write_text("outside the tree\n")
    nodes = [
        _node("worker-1", "worker", W1, "52:54:00:77:00:21"),
        _node("worker-2", "worker", W2, "52:54:00:77:00:22"),
        # the tree holds cp-1's seed (an old bake, a copy by hand), the manifest says it is withheld
        _node("cp-1", "control-plane", CP, "52:54:00:77:00:11", published=False),
        _node("arm-1", "worker", ARM, None, arch="arm64"),
    ]
    cluster = Cluster("prod", tree, tmp_path / "state", False, None, {n.name: n for n in nodes})
    return Catalog({"prod": cluster}, {n.mac: n for n in nodes if n.mac})


def test_a_node_gets_its_own_seed(cat: Catalog) -> None:
    for f in ("user-data", "meta-data", "network-config", "vendor-data", "cmdline.txt"):
        d = decide(cat, f"/prod/worker-1/{f}", {}, W1)
        assert d.status == 200, d.reason
        assert d.file is not None and d.file.read_text() == f"worker-1 {f}\n"


def test_wrong_source_address_is_refused(cat: Catalog) -> None:
    d = decide(cat, "/prod/worker-1/user-data", {}, W2)
    assert d.status == 403 and "source 10.77.0.22 is not prod/worker-1's address" in d.reason
    assert decide(cat, "/prod/worker-1/user-data", {}, "127.0.0.1").status == 403
    # a dual-stack listener sees the IPv4 address mapped
    assert decide(cat, "/prod/worker-1/user-data", {}, f"::ffff:{W1}").status == 200
    assert decide(cat, "/prod/worker-1/user-data", {}, f"::ffff:{W2}").status == 403


def test_wrong_mac_is_refused(cat: Catalog) -> None:
    # worker-1's own address, worker-2's MAC
    d = decide(cat, "/prod/worker-1/user-data", {"mac": ["52:54:00:77:00:22"]}, W1)
    assert d.status == 403 and "MAC 52:54:00:77:00:22 is not prod/worker-1's" in d.reason
    assert decide(cat, "/prod/worker-1/user-data", {"mac": ["52-54-00-77-00-21"]}, W1).status == 200
    assert decide(cat, "/prod/worker-1/user-data", {"mac": ["not-a-mac"]}, W1).status == 400
    assert decide(cat, "/prod/worker-1/user-data", {"mac": ["52:54:00:77:00:21"] * 2}, W1).status == 400


def test_ipxe_finds_the_node_by_its_mac_and_checks_its_address(cat: Catalog) -> None:
    d = decide(cat, "/ipxe", {"mac": ["52:54:00:77:00:21"]}, W1)
    assert d.status == 200 and d.file is not None and d.file.read_text() == "worker-1 boot.ipxe\n"
    # iPXE's other spellings of the MAC
    assert decide(cat, "/ipxe", {"mac": ["52-54-00-77-00-21"]}, W1).status == 200
    assert decide(cat, "/ipxe", {"mac": ["525400770021"]}, W1).status == 200
    # worker-2 asking with worker-1's MAC, or with a MAC no node has
    assert decide(cat, "/ipxe", {"mac": ["52:54:00:77:00:21"]}, W2).status == 403
    assert decide(cat, "/ipxe", {"mac": ["52:54:00:77:00:99"]}, W1).status == 403
    assert decide(cat, "/ipxe", {}, W1).status == 403


def test_an_ipxe_script_needs_the_mac_when_the_manifest_has_one(cat: Catalog) -> None:
    assert decide(cat, "/prod/worker-1/boot.ipxe", {}, W1).status == 403
    assert decide(cat, "/prod/worker-1/boot.ipxe", {"mac": ["52:54:00:77:00:21"]}, W1).status == 200
    # a node without a MAC in the manifest is matched by its address alone
    assert decide(cat, "/prod/arm-1/boot.ipxe", {}, ARM).status == 200


def test_control_plane_seed_is_refused_unless_published(cat: Catalog) -> None:
    for f in ("user-data", "meta-data", "boot.ipxe"):
        d = decide(cat, f"/prod/cp-1/{f}", {"mac": ["52:54:00:77:00:11"]}, CP)
        assert d.status == 403 and "did not publish it" in d.reason, f
    assert decide(cat, "/ipxe", {"mac": ["52:54:00:77:00:11"]}, CP).status == 403


def test_published_control_plane_seed_is_served_to_its_node(cat: Catalog) -> None:
    cluster = cat.clusters["prod"]
    cp = cluster.nodes["cp-1"]
    published = Node(cp.cluster, cp.name, cp.role, cp.ip, cp.mac, cp.arch, True)
    cluster.nodes["cp-1"] = published
    assert decide(cat, "/prod/cp-1/user-data", {}, CP).status == 200
    assert decide(cat, "/prod/cp-1/user-data", {}, W1).status == 403


@pytest.mark.parametrize(
    "path",
    [
        "/prod/worker-1/../../secret",
        "/prod/worker-1/%2e%2e/%2e%2e/secret",
        "/prod/worker-1/..%2f..%2fsecret",
        "/prod/worker-1/user-data/",
        "/prod//worker-1/user-data",
        "/prod/worker-1/seed.iso",
        "/prod/worker-9/user-data",
        "/other/worker-1/user-data",
        "/prod/_images/amd64/../../worker-2/user-data",
        "/prod/_images/amd64/%2e%2e",
        "/prod",
        "/",
        "/etc/passwd",
    ],
)
def test_anything_else_is_refused(cat: Catalog, path: str) -> None:
    d = decide(cat, path, {}, W1)
    assert d.status in (403, 404), (path, d)
    assert d.file is None


def test_images_seed_for_the_clusters_nodes_of_that_arch(cat: Catalog) -> None:
    assert decide(cat, "/prod/_images/amd64/all.tar", {}, W1).status == 200
    d = decide(cat, "/prod/_images/amd64/cni/kube-flannel.yml", {}, W2)
    assert d.status == 200 and d.file is not None and d.file.read_text() == "kind: List\n"
    # even a withheld control plane fetches images (they hold no secret)
    assert decide(cat, "/prod/_images/amd64/all.tar", {}, CP).status == 200
    assert decide(cat, "/prod/_images/amd64/all.tar", {}, ARM).status == 403
    assert decide(cat, "/prod/_images/amd64/all.tar", {}, "10.77.0.99").status == 403
    assert decide(cat, "/prod/_images/amd64/missing.tar", {}, W1).status == 404


def test_mac_spellings() -> None:
    for text in ("52:54:00:AB:cd:EF", "52-54-00-ab-cd-ef", "525400abcdef", " 52:54:00:ab:cd:ef "):
        assert normalise_mac(text) == "52:54:00:ab:cd:ef"
    for text in ("52:54:00:ab:cd", "52:54:00:ab:cd:ef:00", "zz:54:00:ab:cd:ef", "", "52:54:00:ab:cd:e"):
        assert normalise_mac(text) is None
