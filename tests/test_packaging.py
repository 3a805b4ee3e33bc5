"""Packing and shipping: size limits, HTTP seed tree, manifest, checksums, --only, --json, SIGKILL."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from builder import bake as bake_module
from builder import check
from builder.emit import packaging
from builder.errors import BakeError
from builder.model import SizeTarget
from builder.node.cloudinit import RenderedNode
from builder.plan import build_plan
from builder.validation.profile import load_profile

from . import helpers
from .helpers import bake, bundle, tree_digest
from .peers import program


def _rendered(size: int) -> RenderedNode:
    plan = build_plan(load_profile("single-node"))
    return RenderedNode(plan.nodes[0], (), b"#" * size, b"instance-id: x\n", b"version: 2\n", "x")


# The providers' documented caps, written out here rather than read from packaging.CAPS: (limit, what
# counts, whether the API field carries binary user-data, which cloud-init then decompresses).
DOCUMENTED = {
    "aws": (16384, "bytes", True),  # EC2: 16 KB of user data before base64
    "hetzner": (32768, "bytes", False),  # user_data: a JSON string of at most 32 KiB
    "openstack": (65535, "base64", True),  # nova: user_data {format: base64, maxLength: 65535}
    "azure": (65535, "bytes", True),  # customData: the decoded binary array is at most 65,535 bytes
    "gcp": (262144, "bytes", False),  # a metadata value: a string of at most 256 KB
}


def _largest_raw(target: str) -> int:
    """The most bytes of user-data the target takes, found with the real base64 encoder."""
    limit, counted, _ = DOCUMENTED[target]
    if counted == "bytes":
        return limit
    size = limit * 3 // 4 + 3
    while len(base64.b64encode(b"x" * size)) > limit:
        size -= 1
    return size


def test_the_caps_are_the_documented_ones() -> None:
    assert set(packaging.CAPS) == set(SizeTarget) - {SizeTarget.NOCLOUD}
    for target, (limit, counted, binary) in DOCUMENTED.items():
        cap = packaging.CAPS[SizeTarget(target)]
        assert (cap.limit, cap.counts_base64, cap.takes_gzip) == (limit, counted == "base64", binary), target
    assert _largest_raw("openstack") == 49149
    for size in (0, 1, 2, 3, 4, 49149, 49150, 54329):
        assert packaging.CAPS[SizeTarget.OPENSTACK].measure(size) == len(base64.b64encode(b"x" * size))


@pytest.mark.parametrize("target", sorted(DOCUMENTED))
def test_size_limit_is_exact(target: str) -> None:
    """The largest user-data a target takes passes, one byte more fails, and the message says by how
    much as the provider counts it; a gzip form over the cap too fails even where gzip is taken."""
    largest, (limit, counted, binary) = _largest_raw(target), DOCUMENTED[target]
    at = _rendered(largest)
    assert packaging.size_problems(0, at, [SizeTarget(target)], b"\x1f" * (largest + 1)) == []
    over = _rendered(largest + 1)
    (problem,) = packaging.size_problems(0, over, [SizeTarget(target)], b"\x1f" * (largest + 1))
    assert problem.path == "nodes[0] (dev-1)"
    excess = len(base64.b64encode(over.user_data)) - limit if counted == "base64" else 1
    assert f"{excess:,} over the {target} limit of {limit:,}" in problem.message, problem.message
    if counted == "base64":
        assert f", {len(base64.b64encode(over.user_data)):,} in base64: " in problem.message
    gz_says = "not even its gzip form user-data.gz fits" if binary else "takes text user-data only"
    assert gz_says in problem.message and "HTTP seed tree" in problem.message
    assert packaging.size_problems(0, over, [SizeTarget.NOCLOUD], b"") == []


@pytest.mark.parametrize("target", sorted(DOCUMENTED))
def test_gzip_form_passes_only_where_the_target_takes_gzip(target: str) -> None:
    """Raw over the cap, gzip within it: where the API field carries binary user-data the bake passes and
    says to ship user-data.gz; a text-only field (Hetzner, GCP metadata) still fails on the raw size."""
    largest, (_, _, binary) = _largest_raw(target), DOCUMENTED[target]
    over = _rendered(largest + 1)
    fitting_gzip = b"\x1f" * largest
    problems = packaging.size_problems(0, over, [SizeTarget(target)], fitting_gzip)
    assert (problems == []) is binary
    notes = packaging.gzip_notes([("w-1", largest + 1, largest), ("w-2", largest, 100)], [SizeTarget(target)])
    if binary:
        (note,) = notes
        assert note.startswith(f"{target}: ship nodes/<node>/user-data.gz, not user-data, for w-1: ")
        assert f"largest {largest:,} bytes" in note and "w-2" not in note
    else:
        assert "takes text user-data only" in problems[0].message
        assert notes == []


def test_a_bake_over_the_aws_limit_passes_when_gzip_fits_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is lowered to fall between the node's gzip and raw sizes; the bake passes, names the
    file to ship, and that file is the gzip form of the user-data."""
    first = bake_module.run(bake_module.BakeOptions(profile="single-node", out_root=tmp_path, jobs=1,
                                                    secrets=bundle(tmp_path, "single-node")))  # fmt: skip
    node = first.tree / "nodes" / "dev-1"
    raw, gz = (node / "user-data").stat().st_size, (node / "user-data.gz").stat().st_size
    assert gz < raw
    monkeypatch.setitem(
        packaging.CAPS,
        SizeTarget.AWS,
        dataclasses.replace(packaging.CAPS[SizeTarget.AWS], limit=(raw + gz) // 2),
    )
    options = bake_module.BakeOptions(
        profile="single-node", sets=("cluster.seed.targets=[aws]",), out_root=tmp_path, jobs=1,
        secrets=bundle(tmp_path, "single-node"),
    )  # fmt: skip
    result = bake_module.run(options)
    (note,) = [w for w in result.warnings if "user-data.gz" in w]
    assert note.startswith("aws: ship nodes/<node>/user-data.gz, not user-data, for dev-1: ")
    assert f"largest {gz:,} bytes" in note
    node = result.tree / "nodes" / "dev-1"
    assert gzip.decompress((node / "user-data.gz").read_bytes()) == (node / "user-data").read_bytes()
    # an unchanged re-bake keeps the tree as it is, and still says which file to ship
    again = bake_module.run(options)
    assert again.tree == result.tree and again.rewritten == 0
    assert [w for w in again.warnings if "user-data.gz" in w] == [note]
    monkeypatch.setitem(
        packaging.CAPS, SizeTarget.AWS, dataclasses.replace(packaging.CAPS[SizeTarget.AWS], limit=gz - 1)
    )
    fresh = dataclasses.replace(options, out_root=tmp_path / "fresh")  # the limit is no input of a re-bake
    with pytest.raises(BakeError, match=r"not even its gzip form user-data\.gz fits"):
        bake_module.run(fresh)


AWS_USER_DATA = 16_384  # EC2's documented user-data limit (it takes gzip user-data)


def test_oversized_user_data_fails_the_bake_and_writes_nothing(tmp_path: Path) -> None:
    """ha-stacked under aws: the control planes (keys, certificates, kubeconfigs) do not fit even in
    gzip; the workers' user-data.gz does (the shared first-boot program ships as one archive, its
    scripts without comments), so only the control planes are named."""
    proc = bake("--profile", "ha-stacked", "--set", "cluster.seed.targets=[aws]", out=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "over the aws limit of 16,384" in proc.stderr
    named = {n for n in ("cp-1", "cp-2", "cp-3", "worker-1", "worker-2") if f"({n})" in proc.stderr}
    assert named == {"cp-1", "cp-2", "cp-3"}, proc.stderr
    assert not (tmp_path / "ha-stacked").exists()
    assert not list(tmp_path.glob(".bake/*/tmp-*"))


def test_ha_stacked_worker_passes_aws_by_its_gzip_form(tmp_path: Path) -> None:
    """A real worker seed (RSA join credential, every default): its user-data.gz, gzip -d'd by the
    system's gzip back to its user-data, is within EC2's limit."""
    proc = bake("--profile", "ha-stacked", "--quiet", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("worker-1", "worker-2"):
        node = tmp_path / "ha-stacked" / "nodes" / name
        packed = (node / "user-data.gz").read_bytes()
        plain = subprocess.run(["gzip", "-dc"], input=packed, capture_output=True, check=True).stdout
        assert plain == (node / "user-data").read_bytes()
        assert len(packed) <= AWS_USER_DATA < len(plain), (name, len(packed), len(plain))


def test_control_planes_under_openstack_and_azure_as_the_providers_count(tmp_path: Path) -> None:
    """Real ha-stacked seeds. Nova counts the base64 text: an ECDSA-P256 control plane's raw user-data is
    under 65,535 bytes but over it in base64, so it fails raw and passes by user-data.gz, which the bake
    names; Azure counts bytes and takes it raw. So with RSA-2048 keys, shipped as their primes."""
    ecdsa = bake("--profile", "ha-stacked", "--set", "cluster.encryptionAlgorithm=ECDSA-P256",
                 "--set", "cluster.seed.targets=[openstack, azure]", out=tmp_path / "ecdsa")  # fmt: skip
    assert ecdsa.returncode == 0, ecdsa.stderr
    cp1 = tmp_path / "ecdsa" / "ha-stacked" / "nodes" / "cp-1"
    raw, gz = (cp1 / "user-data").read_bytes(), (cp1 / "user-data.gz").read_bytes()
    assert len(raw) <= 65535 < len(base64.b64encode(raw)) and len(base64.b64encode(gz)) <= 65535
    said = ecdsa.stdout + ecdsa.stderr
    (note,) = [line for line in said.splitlines() if "user-data.gz" in line and "openstack" in line]
    assert "cp-1, cp-2, cp-3:" in note and "worker" not in note, note
    assert not [line for line in said.splitlines() if "user-data.gz" in line and "azure" in line], said

    # RSA-2048 (its keys travel as their primes, builder.node.compact_keys): Azure takes every node raw;
    # Nova takes the nodes whose raw user-data is over its cap in base64 by their gzip form, and the bake
    # names exactly those.
    rsa = bake("--profile", "ha-stacked", "--set", "cluster.seed.targets=[openstack, azure]",
               out=tmp_path / "rsa")  # fmt: skip
    assert rsa.returncode == 0, rsa.stderr
    nodes = tmp_path / "rsa" / "ha-stacked" / "nodes"
    sizes = {
        d.name: ((d / "user-data").read_bytes(), (d / "user-data.gz").read_bytes()) for d in nodes.iterdir()
    }
    assert all(len(raw) <= 65535 for raw, _ in sizes.values())
    assert all(len(base64.b64encode(gz)) <= 65535 for _, gz in sizes.values())
    nova_gzip = sorted(n for n, (raw, _) in sizes.items() if len(base64.b64encode(raw)) > 65535)
    assert nova_gzip == ["cp-1", "cp-2", "cp-3"], nova_gzip
    said = rsa.stdout + rsa.stderr
    (note,) = [line for line in said.splitlines() if "user-data.gz" in line and "openstack" in line]
    assert f"{', '.join(nova_gzip)}:" in note and "worker" not in note, note
    assert not [line for line in said.splitlines() if "user-data.gz" in line and "azure" in line], said


def test_gzip_is_deterministic_and_readable() -> None:
    data = b"#cloud-config\n" + b"x: 1\n" * 1000
    assert packaging.gzip_bytes(data) == packaging.gzip_bytes(data)
    proc = subprocess.run(["gzip", "-dc"], input=packaging.gzip_bytes(data), capture_output=True, check=True)
    assert proc.stdout == data


@pytest.fixture(scope="module")
def stacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pack")
    proc = bake("--profile", "ha-stacked", "--base-url", "http://seed.example.test/c1", "--quiet", out=out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_http_tree_and_pxe_snippets(stacked: Path) -> None:
    tree = stacked / "ha-stacked"
    # control-plane seeds hold the CA keys, sa.key and super-admin.conf: not served over plain HTTP
    assert sorted(p.name for p in (tree / "http").iterdir()) == ["worker-1", "worker-2"]
    assert not [line for line in (tree / "SHA256SUMS").read_text().splitlines() if "  http/cp-" in line]
    manifest = json.loads((tree / "manifest.json").read_text())
    assert manifest["httpPublishControlPlanes"] is False
    assert not [rel for n in manifest["nodes"] for rel in n["artifacts"] if rel.startswith("http/cp-")]
    for node in ("worker-1", "worker-2"):
        for name in ("user-data", "meta-data", "network-config"):
            served, seed = tree / "http" / node / name, tree / "nodes" / node / name
            assert served.read_bytes() == seed.read_bytes()
            assert os.path.samefile(served, seed)  # one file, two names: written once
            assert stat.S_IMODE(served.stat().st_mode) == 0o600
        assert (tree / "http" / node / "cmdline.txt").read_text() == (
            f"ds=nocloud-net;s=http://seed.example.test/c1/{node}/\n"
        )
        ipxe = (tree / "http" / node / "boot.ipxe").read_text()
        assert ipxe.startswith("#!ipxe\n") and f"s=http://seed.example.test/c1/{node}/" in ipxe


def _private_keys(secrets_dir: Path) -> dict[bytes, str]:
    """Every private key of a bundle (CA keys, sa.key, every leaf and kubeconfig key) -> its owner:
    the node directory it is kept under, or "" for the cluster's own."""
    keys = {}
    for path in secrets_dir.rglob("*.key"):
        rel = path.relative_to(secrets_dir).parts
        keys[path.read_bytes().strip()] = rel[1] if rel[0] == "nodes" else ""
    assert keys
    return keys


def _foreign_keys(http_node: Path, keys: dict[bytes, str]) -> list[str]:
    """Private keys of the bundle in a node's HTTP seed that are not that node's own: in the files
    its user-data writes, as PEM or base64 (kubeconfigs embed client-key-data)."""
    contents = [c for c, _, _ in check.write_files_of((http_node / "user-data").read_bytes()).values()]
    contents += [(http_node / f).read_bytes() for f in ("meta-data", "network-config", "vendor-data")]
    return sorted(
        owner or "the cluster"
        for pem, owner in keys.items()
        if owner != http_node.name and any(pem in c or base64.b64encode(pem) in c for c in contents)
    )


def test_http_seeds_carry_no_key_of_the_cluster_or_of_another_node(stacked: Path) -> None:
    tree = stacked / "ha-stacked"
    keys = _private_keys(bundle(stacked, "ha-stacked"))
    for node in sorted((tree / "http").iterdir()):
        assert _foreign_keys(node, keys) == [], node.name


def test_http_tree_publishes_control_planes_when_the_profile_says_so(tmp_path: Path) -> None:
    """On an isolated provisioning network the profile may serve every seed over HTTP; the scan above
    then sees the control planes' keys, so it is able to see them."""
    proc = bake(
        "-p", "single-master", "--set", "cluster.seed.httpPublishControlPlanes=true", "-q", out=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    tree = tmp_path / "single-master"
    assert sorted(p.name for p in (tree / "http").iterdir()) == ["cp-1", "worker-1", "worker-2"]
    assert (tree / "http/cp-1/user-data").read_bytes() == (tree / "nodes/cp-1/user-data").read_bytes()
    keys = _private_keys(bundle(tmp_path, "single-master"))
    assert "the cluster" in _foreign_keys(tree / "http/cp-1", keys)
    assert json.loads((tree / "manifest.json").read_text())["httpPublishControlPlanes"] is True
    check = helpers.check(tree)
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("publish_first", [False, True])
def test_only_follows_the_http_rule_for_nodes_it_carries_over(tmp_path: Path, publish_first: bool) -> None:
    """bake --only keeps the other nodes' files, but their HTTP seeds follow this bake's rule."""
    switch = "cluster.seed.httpPublishControlPlanes=true"
    first = ("--set", switch) if publish_first else ()
    assert bake("-p", "single-master", *first, "-q", out=tmp_path).returncode == 0
    second = () if publish_first else ("--set", switch)
    proc = bake("-p", "single-master", "--only", "worker-1", *second, "-q", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tree = tmp_path / "single-master"
    assert (tree / "http/cp-1").exists() is (not publish_first)
    entry = json.loads((tree / "manifest.json").read_text())["nodes"][0]
    assert entry["name"] == "cp-1"
    assert any(rel.startswith("http/cp-1/") for rel in entry["artifacts"]) is (not publish_first)
    check = helpers.check(tree)
    assert check.returncode == 0, check.stdout


@pytest.mark.integration
def test_sha256sums_verify_with_coreutils(stacked: Path) -> None:
    proc = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"],
        cwd=stacked / "ha-stacked",
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nodes/cp-1/seed.iso: OK" in proc.stdout


def test_manifest_lists_every_node_artifact_and_expiry(stacked: Path) -> None:
    tree = stacked / "ha-stacked"
    manifest = json.loads((tree / "manifest.json").read_text())
    assert [n["name"] for n in manifest["nodes"]] == ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"]
    cp1 = manifest["nodes"][0]
    assert cp1["role"] == "control-plane" and cp1["ip"] == "10.77.0.11" and cp1["arch"] == "amd64"
    assert cp1["mac"] == "52:54:00:77:00:11"
    for rel, digest in cp1["artifacts"].items():
        import hashlib

        assert hashlib.sha256((tree / rel).read_bytes()).hexdigest() == digest
    assert {c["name"] for c in cp1["certificates"]} >= {"apiserver", "etcd-server", "super-admin.conf"}
    assert all(c["notAfter"].endswith("Z") for c in cp1["certificates"])
    assert {ca["name"] for ca in manifest["certificateAuthorities"]} == {"ca", "etcd-ca", "front-proxy-ca"}
    worker = manifest["nodes"][3]
    # a worker holds its own join credential (cluster.join: certificate) and no cluster key
    assert [c["name"] for c in worker["certificates"]] == ["join.conf"]
    assert not any(f["secret"] and "pki" in f["path"] for f in worker["files"])


def test_json_prints_the_manifest(tmp_path: Path) -> None:
    proc = bake("--profile", "single-node", "--json", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == json.loads((tmp_path / "single-node" / "manifest.json").read_text())


def test_quiet_prints_nothing(tmp_path: Path) -> None:
    proc = bake("--profile", "single-node", "--quiet", out=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_only_rebuilds_one_node(tmp_path: Path) -> None:
    assert bake("--profile", "single-master", "--quiet", out=tmp_path).returncode == 0
    before = tree_digest(tmp_path / "single-master")
    proc = bake(
        "--profile",
        "single-master",
        "--only",
        "worker-2",
        "--set",
        "nodes[2].labels={tier: edge}",
        out=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    after = tree_digest(tmp_path / "single-master")
    changed = {p for p in after if after[p] != before.get(p)}
    assert changed and all(
        p.startswith(("nodes/worker-2/", "http/worker-2/"))
        or p in ("manifest.json", "SHA256SUMS", "inputs.json", "packed.json")
        for p in changed
    ), changed
    assert "tier=edge" in (tmp_path / "single-master/nodes/worker-2/user-data").read_text()
    check = helpers.check(tmp_path / "single-master")
    assert check.returncode == 0, check.stdout
    bad = bake("--profile", "single-master", "--only", "nope", out=tmp_path)
    assert bad.returncode == 2 and "--only: no node named 'nope'" in bad.stderr


def test_check_detects_drift(tmp_path: Path) -> None:
    assert bake("--profile", "single-master", "--quiet", out=tmp_path).returncode == 0
    tree = (tmp_path / "single-master").resolve()
    ud = tree / "nodes/worker-1/user-data"
    ud.chmod(0o600)
    ud.write_text(ud.read_text().replace("worker-1", "worker-9", 1))
    proc = helpers.check(tmp_path / "single-master")
    assert proc.returncode == 1
    assert "nodes/worker-1/user-data: content differs from SHA256SUMS" in proc.stdout
    assert "seed.iso" in proc.stdout  # the ISO no longer matches the node's files


@pytest.mark.integration
def test_sigkill_mid_bake_leaves_previous_tree_intact(tmp_path: Path) -> None:
    nodes = [{"name": "cp-1", "role": "control-plane", "ip": "10.77.0.11"}] + [
        {"name": f"w-{i}", "role": "worker", "ip": f"10.78.{i // 250}.{i % 250 + 2}"} for i in range(400)
    ]
    profile = tmp_path / "big.yaml"
    profile.write_text(
        yaml.safe_dump(
            {
                "extends": "single-master",
                "cluster": {"name": "big", "encryptionAlgorithm": "ECDSA-P256"},
                "defaults": {"prefixLength": 16},
                "nodes": nodes,
            }
        )
    )
    out = tmp_path / "out"
    assert bake("--profile", str(profile), "--quiet", out=out).returncode == 0
    before = tree_digest(out / "big")
    kept = tree_digest(bundle(out, "big"))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "builder.cli",
            "--profile",
            str(profile),
            "--out",
            str(out),
            "--rotate-token",
            "-q",
        ],
        cwd=out,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        partial = list(out.glob(".bake/big/tmp-*/nodes/*/seed.iso"))
        if len(partial) > 20:
            break
        time.sleep(0.01)
    assert child.poll() is None, "the bake finished before it could be interrupted"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert tree_digest(out / "big") == before
    assert tree_digest(bundle(out, "big")) == kept, "the bundle is written last, after every node"
    check = helpers.check(out / "big")
    assert check.returncode == 0, check.stdout[-3000:]
    # the next bake cleans the abandoned generation and succeeds
    assert bake("--profile", str(profile), "--quiet", out=out).returncode == 0
    assert not list(out.glob(".bake/big/tmp-*"))


@pytest.mark.peer
def test_pxe_kernel_argument_is_read_by_cloud_init_as_a_network_seed(stacked: Path) -> None:
    """cloud-init's own parser (Debian's cloud-init, whose Python is /usr/bin/python3) reads the baked
    kernel argument as a network seed (dsmode net) at the node's URL; `ds=nocloud` would be read as the
    local mode, and the node would boot without its seed."""
    program("cloud-init")
    cmdline = (stacked / "ha-stacked" / "http" / "worker-1" / "cmdline.txt").read_text().strip()
    probe = (
        "import json, sys\n"
        "from cloudinit.sources.DataSourceNoCloud import load_cmdline_data\n"
        "md = {}\n"
        "found = load_cmdline_data(md, ' root=/dev/vda ro ' + sys.argv[1] + ' quiet ')\n"
        "print(json.dumps({'found': found, **md}))\n"
    )
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", probe, cmdline], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "found": True,
        "dsmode": "net",
        "seedfrom": "http://seed.example.test/c1/worker-1/",
    }
