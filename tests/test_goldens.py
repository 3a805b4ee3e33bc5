"""Golden files are read back and judged on their own, not only compared with what the code renders.

A golden written by the code under test proves nothing about the code: a wrong rendering regenerated
with `make golden` is still wrong. So every golden is decoded here and checked against rules stated
independently of the renderers (kubeadm's file modes and paths, which role may hold which secret, the
node's own name and address from the profile), and the kubeadm documents among them are given to the
real kubeadm.

The golden tree (tests/golden_tree.py: one directory per embedded profile, each node file stored once) is
baked through the CLI, as a user bakes, from a real secrets bundle per profile kept in
tests/fixtures/bundles/<profile> (ECDSA keys, certificates valid for a century: golden_tree.SETS). Real
PKI for every profile, no stand-in: the keys, certificates and kubeconfigs each role gets are goldens too
and are judged here (a worker's join credential names that worker, the discovery hash is the bundle CA's),
and the bytes stay stable because the bake reuses the bundle instead of issuing new keys. `make golden`
creates the bundle of a profile that has none (and keeps a bundle whose format the bake changed); the
per-module golden tests (kubeadm config, static pods, cloud-init) render their part from the same
profile, sets and bundle and compare it with this tree.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from builder.validation.profile import load_profile

from .golden_tree import (
    BUNDLES,
    GOLDEN,
    PROFILES,
    SEEDS,
    SETS,
    GoldenFile,
    bundle_ca_hash,
    bundle_token,
    golden_user_data,
    manifest,
    node_files,
    references,
    sha256,
    shipped_source,
    split,
)
from .helpers import GOLDEN_CHANGES, REPO, bake, bundle, check_golden, remove_stale_golden, tree_digest
from .peers import missing

# Paths a worker may hold a private key at: its own per-node join credential (cluster.join:
# certificate, the default), a discovery kubeconfig judged by check_join_conf.
JOIN_CONF = "/etc/bake/join.conf"
WORKER_KEY_PATHS: frozenset[str] = frozenset({JOIN_CONF})

PKI = "/etc/kubernetes/pki"
MANIFESTS = "/etc/kubernetes/manifests/"
TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
WRITABLE_PREFIXES = ("/etc/", "/usr/local/", "/run/kubeadm/", "/var/lib/")
KUBEADM_KINDS = {"InitConfiguration", "ClusterConfiguration", "JoinConfiguration"}
TEXT_FILES = {  # the load balancer's configuration, judged by check_text
    "/etc/haproxy/haproxy.cfg": "haproxy.cfg",
    "/etc/keepalived/keepalived.conf": "keepalived.conf",
    "/etc/keepalived/check_apiserver.sh": "check_apiserver.sh",
}


@cache
def _nodes(profile: str) -> dict[str, dict[str, Any]]:
    """The profile's nodes (the input, read with the loader; nothing rendered)."""
    p = load_profile(profile)
    return {n.name: {"role": n.role.value, "ip": str(n.ip)} for n in p.nodes}


@cache
def _cluster(profile: str) -> dict[str, Any]:
    return load_profile(profile).model_dump(mode="json", by_alias=True)["cluster"]  # type: ignore[no-any-return]


def _init_node(profile: str) -> str:
    return next(n for n, v in _nodes(profile).items() if v["role"] == "control-plane")


def _external_etcd(profile: str) -> bool:
    return any(v["role"] == "etcd" for v in _nodes(profile).values())


NODES = [(p, n) for p in PROFILES for n in _nodes(p)]


# --------------------------------------------------------------------------------------------------
# the golden tree, baked through the CLI


def _bake(profile: str, out: Path) -> Path:
    """Bake a profile from its fixture bundle (`make golden`: a new bundle if it has none yet, kept);
    returns the output tree."""
    fixture = BUNDLES / profile
    update = bool(os.environ.get("UPDATE_GOLDEN"))
    if fixture.is_dir():
        shutil.copytree(fixture, bundle(out, profile))
    elif not update:
        pytest.fail(f"no bundle {fixture.relative_to(REPO)}: `make golden` creates it")
    proc = bake("--profile", profile, *(a for s in SETS for a in ("--set", s)), "--quiet", out=out)
    assert proc.returncode == 0, proc.stderr
    kept = bundle(out, profile)
    if not update:
        assert tree_digest(kept) == tree_digest(fixture), "the kept bundle was not reused"
    elif not fixture.is_dir() or tree_digest(kept) != tree_digest(fixture):  # new, or its format changed
        GOLDEN_CHANGES.append((fixture, "bundle rewritten" if fixture.is_dir() else "new bundle", ""))
        shutil.rmtree(fixture, ignore_errors=True)
        shutil.copytree(kept, fixture)
    return (out / profile).resolve()


@pytest.mark.parametrize("profile", PROFILES)
def test_golden_tree(profile: str, tmp_path: Path) -> None:
    tree = _bake(profile, tmp_path)
    seeds = {n: {s: (tree / "nodes" / n / s).read_bytes() for s in SEEDS} for n in _nodes(profile)}
    wanted = split(seeds) | {"manifest.json": manifest((tree / "manifest.json").read_bytes(), seeds)}
    for rel, data in sorted(wanted.items()):
        check_golden(GOLDEN / profile / rel, data)
    for path in sorted((GOLDEN / profile).rglob("*")):
        if path.is_file() and str(path.relative_to(GOLDEN / profile)) not in wanted:
            remove_stale_golden(path)


def test_one_golden_directory_per_profile() -> None:
    assert sorted(p.name for p in GOLDEN.iterdir()) == sorted(PROFILES), "one per file in profiles/, no other"


@pytest.mark.parametrize("profile", PROFILES)
def test_tree_stores_each_file_once(profile: str) -> None:
    """Every stored node file is referenced, and no node file's bytes are stored twice for one path."""
    root = GOLDEN / profile
    referenced = {ref for node in _nodes(profile) for ref in references(profile, node).values()}
    stored: dict[tuple[str, str], Path] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        parts = path.relative_to(root).parts
        if parts[0] == "files" or (parts[0] == "nodes" and parts[2] == "files"):
            assert path in referenced, f"{path}: stored, referenced by no node"
            on_node = "/" + "/".join(parts[1:] if parts[0] == "files" else parts[3:])
            key = (on_node, sha256(path.read_bytes()))
            assert key not in stored, f"{path}: the same bytes as {stored[key]}"
            stored[key] = path
        else:
            assert parts == ("manifest.json",) or (
                parts[0] == "nodes" and parts[1] in _nodes(profile) and parts[2:] in [(s,) for s in SEEDS]
            ), path


# --------------------------------------------------------------------------------------------------
# invariants of every node of every profile, independent of builder/


def _kubeadm_mode(path: str) -> str | None:
    """The mode kubeadm itself uses for a file it would write (certutil, keyutil, kubeconfig, static
    pods), or None for files kubeadm does not write."""
    if path.startswith(PKI + "/"):
        if path.endswith(".key") or path == f"{PKI}/sa.pub":
            return "0600"
        if path.endswith(".crt"):
            return "0644"
    if re.fullmatch(r"/etc/kubernetes/[a-z-]+\.conf", path) or path.startswith(MANIFESTS):
        return "0600"
    return None


def check_user_data(
    doc: dict[str, Any], files: dict[str, GoldenFile], profile: str, node: str
) -> list[tuple[str, bytes]]:
    """Every invariant of one node's user-data and the files it writes; returns its kubeadm documents
    (path, bytes). A script shipped from the repository is judged by its commented source (the shipped
    script has the same lines but for comments)."""
    role = _nodes(profile)[node]["role"]
    assert doc.get("hostname") == node
    configs = []
    for path, (data, perms, _, _) in files.items():
        perms = perms or "0644"
        assert posixpath.isabs(path) and posixpath.normpath(path) == path, path
        assert path.startswith(WRITABLE_PREFIXES), path
        assert re.fullmatch(r"0[0-7]{3}", perms), (path, perms)
        want = _kubeadm_mode(path)
        if want is not None:
            assert perms == want, f"{path}: {perms}, kubeadm writes {want}"
        if b"PRIVATE KEY" in data or b"client-key-data" in data or path.endswith(".key"):
            assert perms == "0600", f"{path} holds a key with permissions {perms}"
        if path.startswith("/run/kubeadm/"):
            assert perms == "0600"  # the bootstrap token is in it
            configs.append((path, data))
        if path.startswith("/usr/local/sbin/"):
            assert perms == "0755", path
        # which role may hold what
        if role == "worker" and path not in WORKER_KEY_PATHS:
            assert not path.startswith(PKI + "/"), f"a worker gets {path} (kubeadm join preflight)"
            assert b"PRIVATE KEY" not in data and b"client-key-data" not in data, f"worker key in {path}"
            assert not path.endswith((".key", "admin.conf", "super-admin.conf")), path
        if role == "etcd":  # its etcd CA key, to renew its own leaves; no other CA key
            assert path not in (f"{PKI}/ca.key", f"{PKI}/front-proxy-ca.key"), path
            assert not path.endswith("admin.conf"), path
        if role == "control-plane" and _external_etcd(profile):
            assert path != f"{PKI}/etcd/ca.key", path
            assert not path.startswith((f"{PKI}/etcd/server", f"{PKI}/etcd/peer")), path
        if b"kind: EncryptionConfiguration" in data:  # the key of every Secret in etcd
            assert role == "control-plane" and perms == "0600", (path, role, perms)
        if path == "/etc/kubernetes/super-admin.conf":
            assert node == _init_node(profile), "super-admin.conf only on the first control plane"
        if path == JOIN_CONF:
            check_join_conf(data, perms, profile, node)
    if role == "control-plane":
        assert f"{PKI}/ca.key" in files and f"{PKI}/sa.key" in files
        want = (
            "/run/kubeadm/kubeadm.yaml"
            if node == _init_node(profile)
            else "/run/kubeadm/kubeadm-join-config.yaml"
        )
        assert [p for p, _ in configs] == [want]
    if role == "worker":
        assert [p for p, _ in configs] == ["/run/kubeadm/kubeadm-join-config.yaml"]
    if role == "etcd":
        assert configs == [] and f"{MANIFESTS}etcd.yaml" in files
    assert "/usr/local/sbin/bake-bootstrap" in files
    return configs


def check_join_conf(data: bytes, perms: str, profile: str, node: str) -> None:
    """Only on a joining node, 0600, and only that node's identity (system:node:<name> in system:nodes)."""
    assert perms == "0600"
    assert _cluster(profile).get("join", "certificate") == "certificate"
    assert node != _init_node(profile) and _nodes(profile)[node]["role"] != "etcd", node
    doc = yaml.safe_load(data)
    (user,) = doc["users"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["user"]["client-certificate-data"]))
    assert cert.subject.rfc4514_string() == f"CN=system:node:{node},O=system:nodes", cert.subject
    assert cert.issuer.rfc4514_string() == "CN=kubernetes"
    ca = x509.load_pem_x509_certificate((BUNDLES / profile / "pki" / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)  # by the bundle's cluster CA
    assert "token" not in user["user"]


def check_kubeadm_config(data: bytes, profile: str, node: str) -> None:
    docs = [d for d in yaml.safe_load_all(data) if d is not None]
    kinds = [d["kind"] for d in docs]
    role = _nodes(profile)[node]["role"]
    for d in docs:
        if d["kind"] in KUBEADM_KINDS:
            assert d["apiVersion"] == "kubeadm.k8s.io/v1beta4"
        elif d["kind"] == "KubeletConfiguration":
            assert d["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
            assert d.get("cgroupDriver") == "systemd"
        else:
            raise AssertionError(f"unexpected document {d['kind']}")
    if "InitConfiguration" in kinds:
        assert node == _init_node(profile) and "ClusterConfiguration" in kinds
        init = docs[kinds.index("InitConfiguration")]
        assert init["nodeRegistration"]["name"] == node
        assert init["localAPIEndpoint"]["advertiseAddress"] == _nodes(profile)[node]["ip"]
        (token,) = init["bootstrapTokens"]
        assert TOKEN_RE.match(token["token"]) and token["token"] == bundle_token(profile)
        cluster = docs[kinds.index("ClusterConfiguration")]
        assert cluster["networking"]["podSubnet"] == _cluster(profile)["podSubnet"]
        assert cluster["networking"]["serviceSubnet"] == _cluster(profile)["serviceSubnet"]
        assert ("external" in cluster.get("etcd", {})) == _external_etcd(profile)
    else:
        assert kinds == ["JoinConfiguration"], kinds
        join = docs[0]
        assert join["nodeRegistration"]["name"] == node
        if _cluster(profile).get("join", "certificate") == "certificate":
            # the node's own credential, no shared token at all
            assert join["discovery"] == {"file": {"kubeConfigPath": JOIN_CONF}}, join["discovery"]
        else:
            token = join["discovery"]["bootstrapToken"]
            assert TOKEN_RE.match(token["token"]) and token["caCertHashes"]
            assert token["caCertHashes"] == [bundle_ca_hash(profile)]
            assert token.get("unsafeSkipCAVerification") in (None, False)
        assert ("controlPlane" in join) == (role == "control-plane")
        if role == "control-plane":
            cp = join["controlPlane"]["localAPIEndpoint"]
            assert cp["advertiseAddress"] == _nodes(profile)[node]["ip"]
            assert "certificateKey" not in join["controlPlane"]  # the PKI is on disk, no upload


def check_static_pod(data: bytes, profile: str, node: str, name: str) -> None:
    pod = yaml.safe_load(data)
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    assert pod["metadata"]["namespace"] == "kube-system"
    assert pod["spec"]["hostNetwork"] is True
    (container,) = pod["spec"]["containers"]
    args = [*container.get("command", []), *container.get("args", [])]
    vip = str(_cluster(profile)["loadBalancer"].get("vip"))
    if name == "etcd.yaml":
        assert _nodes(profile)[node]["role"] == "etcd"
        ip = _nodes(profile)[node]["ip"]
        for flag in ("--client-cert-auth=true", "--peer-client-cert-auth=true"):
            assert flag in args, flag
        assert f"--advertise-client-urls=https://{ip}:2379" in args
        members = [a for a in args if a.startswith("--initial-cluster=")]
        etcds = [n for n, v in _nodes(profile).items() if v["role"] == "etcd"]
        assert len(members) == 1 and all(f"{n}=https://" in members[0] for n in etcds)
    elif name == "kube-vip.yaml":
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["address"] == vip or env.get("vip_address") == vip
        mounts = [v["hostPath"]["path"] for v in pod["spec"]["volumes"] if "hostPath" in v]
        conf = (
            "/etc/kubernetes/super-admin.conf"
            if node == _init_node(profile)
            else "/etc/kubernetes/admin.conf"
        )
        assert conf in mounts
    else:
        assert name in ("haproxy.yaml", "keepalived.yaml"), name


def check_text(data: bytes, profile: str, node: str, name: str) -> None:
    text = data.decode()
    cps = [v["ip"] for v in _nodes(profile).values() if v["role"] == "control-plane"]
    vip = str(_cluster(profile)["loadBalancer"]["vip"])
    if name == "haproxy.cfg":
        servers = re.findall(r"^\s*server\s+\S+\s+(\S+):6443\b", text, re.M)
        assert sorted(servers) == sorted(cps)
        assert re.search(rf"bind\s+\S*:{_cluster(profile)['loadBalancer']['port']}\b", text)
    elif name == "keepalived.conf":
        assert vip in text and "virtual_ipaddress" in text
    elif name == "check_apiserver.sh":
        assert text.startswith("#!/bin/sh\n") and vip in text
    else:
        raise AssertionError(f"no rule for {name}")


def check_node(profile: str, node: str) -> list[tuple[str, bytes]]:
    """Judge one node's golden files; returns its kubeadm documents (path, bytes), for the real kubeadm."""
    files = node_files(profile, node)  # every reference resolved, its digest checked
    configs = check_user_data(golden_user_data(profile, node), files, profile, node)
    for _, data in configs:
        check_kubeadm_config(data, profile, node)
    for path, (data, _, _, _) in files.items():
        if path.startswith(MANIFESTS):
            check_static_pod(data, profile, node, path.removeprefix(MANIFESTS))
        elif path in TEXT_FILES:
            check_text(data, profile, node, TEXT_FILES[path])
    here = GOLDEN / profile / "nodes" / node
    meta = yaml.safe_load((here / "meta-data").read_bytes())
    assert meta["local-hostname"] == node and str(meta["instance-id"]).strip()
    net = yaml.safe_load((here / "network-config").read_bytes())
    assert net["version"] == 2
    addresses = [a for eth in net["ethernets"].values() for a in eth["addresses"]]
    assert [a.split("/")[0] for a in addresses] == [_nodes(profile)[node]["ip"]]
    return configs


@pytest.mark.parametrize(("profile", "node"), NODES, ids=[f"{p}/{n}" for p, n in NODES])
def test_golden_invariants(profile: str, node: str) -> None:
    check_node(profile, node)


@pytest.mark.parametrize("profile", PROFILES)
def test_manifest_invariants(profile: str) -> None:
    doc = json.loads((GOLDEN / profile / "manifest.json").read_bytes())
    assert doc["cluster"] == profile
    assert [n["name"] for n in doc["nodes"]] == list(_nodes(profile))
    assert doc["discoveryTokenCaCertHash"] == bundle_ca_hash(profile)
    for entry in doc["nodes"]:
        name = entry["name"]
        assert entry["files"] == f"nodes/{name}/user-data"  # its list, checked equal when baked
        assert entry["role"] == _nodes(profile)[name]["role"] and entry["ip"] == _nodes(profile)[name]["ip"]
        mark = (GOLDEN / profile / "nodes" / name / "user-data").read_bytes().split(b"\n")[1]
        assert mark.endswith(entry["artifacts"][f"nodes/{name}/user-data"].encode()), "the seed's digest"
        for seed in ("meta-data", "network-config"):
            data = (GOLDEN / profile / "nodes" / name / seed).read_bytes()
            assert entry["artifacts"][f"nodes/{name}/{seed}"] == sha256(data), seed


def test_every_role_has_a_golden() -> None:
    assert {v["role"] for p in PROFILES for v in _nodes(p).values()} == {"control-plane", "worker", "etcd"}
    assert {"ha-external-etcd", "ha-stacked", "single-master"} <= set(PROFILES)


def test_invariants_catch_a_worker_key() -> None:
    """The checker itself fails on a worker holding a key (so the rule above can fail)."""
    doc = golden_user_data("ha-stacked", "worker-1")
    files = node_files("ha-stacked", "worker-1")
    check_user_data(doc, files, "ha-stacked", "worker-1")
    key = GoldenFile(b"-----BEGIN PRIVATE KEY-----\n", "0600", "root:root")
    with pytest.raises(AssertionError, match="a worker gets"):
        check_user_data(doc, files | {f"{PKI}/x.key": key}, "ha-stacked", "worker-1")
    with pytest.raises(AssertionError, match="worker key"):
        check_user_data(doc, files | {"/etc/bake/x.pem": key}, "ha-stacked", "worker-1")


def test_a_shipped_script_must_be_its_source() -> None:
    """A script referenced by its source instead of stored holds the same lines as that source but for
    comments: an added line fails when the tree is written."""
    source = "templates/bootstrap/wait.sh"
    shebang, rest = (REPO / source).read_bytes().split(b"\n", 1)
    header = f"# bake: comments stripped; the commented source is {source} in the bake package".encode()
    code = [line for line in rest.split(b"\n") if not line.lstrip().startswith(b"#")]
    shipped = b"\n".join([shebang, header, *code])
    assert shipped_source(shipped) == source
    with pytest.raises(AssertionError, match="more than comments cut"):
        shipped_source(shipped + b"echo added\n")


def test_a_reference_to_other_bytes_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a node back checks each digest: a golden file edited without its reference fails."""
    profile = tmp_path / "ha-stacked"
    shutil.copytree(GOLDEN / "ha-stacked", profile)
    monkeypatch.setattr("tests.golden_tree.GOLDEN", tmp_path)
    assert node_files("ha-stacked", "worker-1")
    env = profile / "nodes" / "worker-1" / "files" / "etc" / "bake" / "bootstrap.env"
    env.write_bytes(env.read_bytes() + b"# edited\n")
    with pytest.raises(AssertionError, match="not the bytes its reference names"):
        node_files("ha-stacked", "worker-1")


# --------------------------------------------------------------------------------------------------
# the real kubeadm


def _kubeadm() -> str:
    try:
        from . import k8s

        directory = k8s.locate()
    except ImportError:  # the build tooling is not there
        directory = None
    if directory is None or not (directory / "kubeadm").exists():
        missing("kubeadm is not built (make k8s), or BAKE_K8S_BIN does not name its directory")
    return str(directory / "kubeadm")


@pytest.mark.realk8s
def test_real_kubeadm_accepts_every_golden_config(tmp_path: Path) -> None:
    kubeadm = _kubeadm()
    checked = 0
    # kubeadm checks that a discovery file exists (ValidateDiscoveryKubeConfigPath): validate inside a
    # root that has one, as the node does
    root = tmp_path / "root"
    (root / JOIN_CONF.lstrip("/")).parent.mkdir(parents=True)
    (root / JOIN_CONF.lstrip("/")).write_text("placeholder: only its existence is checked here\n")
    for profile, node in NODES:
        for name, data in check_node(profile, node):
            f = root / f"{checked}-{Path(name).name}"
            f.write_bytes(data)
            proc = subprocess.run(
                [kubeadm, "config", "validate", "--config", f"/{f.name}", "--rootfs", str(root)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, f"{profile}/{node} {name}: {proc.stdout}{proc.stderr}"
            checked += 1
    assert checked == sum(v["role"] != "etcd" for p in PROFILES for v in _nodes(p).values())
    # and it does refuse a broken one: the check is not a no-op
    bad = root / "bad.yaml"
    data = references("ha-stacked", "worker-1")["/run/kubeadm/kubeadm-join-config.yaml"].read_bytes()
    bad.write_bytes(data.replace(b"kind: JoinConfiguration", b"kind: JoinConfiguration\nbogusField: 1"))
    proc = subprocess.run(
        [kubeadm, "config", "validate", "--config", "/bad.yaml", "--rootfs", str(root)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "bogusField" in proc.stderr
    (root / JOIN_CONF.lstrip("/")).unlink()  # and a discovery file missing on the node is refused
    assert b"kubeConfigPath" in data
    (root / "join.yaml").write_bytes(data)
    proc = subprocess.run(
        [kubeadm, "config", "validate", "--config", "/join.yaml", "--rootfs", str(root)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "kubeConfigPath" in proc.stderr
