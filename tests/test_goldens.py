"""Golden files are read back and judged on their own, not only compared with what the code renders.

A golden written by the code under test proves nothing about the code: a wrong rendering regenerated
with `make golden` is still wrong. So every golden is decoded here and checked against rules stated
independently of the renderers (kubeadm's file modes and paths, which role may hold which secret,
the node's own name and address from the profile), and the kubeadm documents among them are given to
the real kubeadm. One golden set comes from a real secrets bundle kept in the fixtures (certificates
valid for a century), baked through the CLI, so the PKI the nodes get is in a golden too.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from builder.validation.profile import load_profile

from .helpers import REPO, bake, bundle, check_golden, disk_files, tree_digest
from .peers import missing

GOLDEN = REPO / "tests" / "fixtures" / "golden"
BUNDLE = REPO / "tests" / "fixtures" / "bundles" / "single-master"
REAL = GOLDEN / "real" / "single-master"
REAL_SETS = (
    "--set", "cluster.encryptionAlgorithm=ECDSA-P256",
    "--set", "cluster.certificateValidityPeriod=876000h",
    "--set", "cluster.caCertificateValidityPeriod=876000h",
)  # fmt: skip

# Paths a worker may hold a private key at: its own per-node join credential (cluster.join:
# certificate, the default), a discovery kubeconfig judged by check_join_conf.
JOIN_CONF = "/etc/bake/join.conf"
WORKER_KEY_PATHS: frozenset[str] = frozenset({JOIN_CONF})

PKI = "/etc/kubernetes/pki"
TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
WRITABLE_PREFIXES = ("/etc/", "/usr/local/", "/run/kubeadm/", "/var/lib/")
KUBEADM_KINDS = {"InitConfiguration", "ClusterConfiguration", "JoinConfiguration"}


# --------------------------------------------------------------------------------------------------
# the real-bundle golden set


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real")
    shutil.copytree(BUNDLE, bundle(out, "single-master"))
    proc = bake("--profile", "single-master", *REAL_SETS, "--quiet", out=out)
    assert proc.returncode == 0, proc.stderr
    tree = (out / "single-master").resolve()
    if os.environ.get("UPDATE_GOLDEN"):  # a bundle format change: keep what the bake kept or added
        shutil.rmtree(BUNDLE)
        shutil.copytree(bundle(out, "single-master"), BUNDLE)
    return tree


def _real_files(tree: Path) -> list[str]:
    seeds = ("user-data", "meta-data", "network-config")
    return ["manifest.json"] + [
        f"nodes/{n.name}/{f}" for n in sorted((tree / "nodes").iterdir()) for f in seeds
    ]


def test_real_bundle_golden(real_tree: Path) -> None:
    kept = bundle(real_tree.parents[2], "single-master")  # outputs/.bake/<cluster>/gen-…
    assert tree_digest(kept) == tree_digest(BUNDLE), "the kept bundle was not reused"
    wanted = _real_files(real_tree)
    for rel in wanted:
        check_golden(REAL / rel, (real_tree / rel).read_bytes())
    stale = sorted(str(p.relative_to(REAL)) for p in REAL.rglob("*") if p.is_file())
    assert stale == sorted(wanted), "stale golden files: remove them"


# --------------------------------------------------------------------------------------------------
# decoding, independent of builder/


def _golden_files() -> list[Path]:
    return sorted(p for p in GOLDEN.rglob("*") if p.is_file())


def _where(path: Path) -> tuple[str, str, str]:
    """(profile, node, file name) of a golden; node "" for cluster-wide files."""
    parts = path.relative_to(GOLDEN).parts
    if parts[0] == "cloudinit":
        return parts[1], parts[2], parts[3]
    if parts[0] == "real":
        return (parts[1], "", parts[2]) if len(parts) == 3 else (parts[1], parts[3], parts[4])
    return parts[0], parts[1], parts[2]


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


def _write_files(doc: dict[str, Any]) -> Iterator[tuple[str, str, bytes]]:
    """(path, permissions, content) of cloud-init write_files, decoded as cloud-init does."""
    for path, (data, mode, _) in disk_files(doc).items():  # the first-boot archive unpacked
        yield path, mode or "0644", data


def _kubeadm_mode(path: str) -> str | None:
    """The mode kubeadm itself uses for a file it would write (certutil, keyutil, kubeconfig, static
    pods), or None for files kubeadm does not write."""
    if path.startswith(PKI + "/"):
        if path.endswith(".key") or path == f"{PKI}/sa.pub":
            return "0600"
        if path.endswith(".crt"):
            return "0644"
    if re.fullmatch(r"/etc/kubernetes/[a-z-]+\.conf", path) or path.startswith("/etc/kubernetes/manifests/"):
        return "0600"
    return None


def check_user_data(text: bytes, profile: str, node: str) -> list[tuple[str, bytes]]:
    """Every invariant of one node's user-data; returns its kubeadm documents (path, bytes)."""
    assert text.startswith(b"#cloud-config\n")
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    role = _nodes(profile)[node]["role"]
    assert doc.get("hostname") == node
    seen: set[str] = set()
    configs = []
    for path, perms, data in _write_files(doc):
        assert path not in seen, f"{path} written twice"
        seen.add(path)
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
        assert f"{PKI}/ca.key" in seen and f"{PKI}/sa.key" in seen
        want = (
            "/run/kubeadm/kubeadm.yaml"
            if node == _init_node(profile)
            else "/run/kubeadm/kubeadm-join-config.yaml"
        )
        assert [p for p, _ in configs] == [want]
    if role == "worker":
        assert [p for p, _ in configs] == ["/run/kubeadm/kubeadm-join-config.yaml"]
    if role == "etcd":
        assert configs == [] and "/etc/kubernetes/manifests/etcd.yaml" in seen
    assert "/usr/local/sbin/bake-bootstrap" in seen
    return configs


def check_join_conf(data: bytes, perms: str, profile: str, node: str) -> None:
    """Only on a joining node, 0600, and only that node's identity (system:node:<name> in system:nodes)."""
    assert perms == "0600"
    assert _cluster(profile).get("join", "certificate") == "certificate"
    assert node != _init_node(profile) and _nodes(profile)[node]["role"] != "etcd", node
    if b"FAKE" in data:  # the cloudinit goldens are rendered with stand-ins for the secrets stage
        return
    doc = yaml.safe_load(data)
    (user,) = doc["users"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["user"]["client-certificate-data"]))
    assert cert.subject.rfc4514_string() == f"CN=system:node:{node},O=system:nodes", cert.subject
    assert cert.issuer.rfc4514_string() == "CN=kubernetes"
    assert "token" not in user["user"]


def _external_etcd(profile: str) -> bool:
    return any(v["role"] == "etcd" for v in _nodes(profile).values())


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
        assert TOKEN_RE.match(token["token"])
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
            assert all(HASH_RE.match(h) for h in token["caCertHashes"])
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


def check_golden_file(path: Path) -> list[tuple[str, bytes]]:
    """Judge one golden; returns the kubeadm documents found in it (for the real kubeadm)."""
    profile, node, name = _where(path)
    data = path.read_bytes()
    if name == "user-data":
        return check_user_data(data, profile, node)
    if name == "meta-data":
        meta = yaml.safe_load(data)
        assert meta["local-hostname"] == node and str(meta["instance-id"]).strip()
        return []
    if name == "network-config":
        net = yaml.safe_load(data)
        assert net["version"] == 2
        addresses = [a for eth in net["ethernets"].values() for a in eth["addresses"]]
        assert [a.split("/")[0] for a in addresses] == [_nodes(profile)[node]["ip"]]
        return []
    if name in ("kubeadm.yaml", "kubeadm-join-config.yaml"):
        check_kubeadm_config(data, profile, node)
        return [(name, data)]
    if name == "manifest.json":
        manifest = json.loads(data)
        assert [n["name"] for n in manifest["nodes"]] == list(_nodes(profile))
        assert HASH_RE.match(manifest["discoveryTokenCaCertHash"])
        for n in manifest["nodes"]:
            for f in n["files"]:
                want = _kubeadm_mode(f["path"])
                assert want is None or f["mode"] == want, f
        return []
    if name.endswith(".yaml"):
        check_static_pod(data, profile, node, name)
        return []
    check_text(data, profile, node, name)
    return []


GOLDENS = _golden_files()


@pytest.mark.parametrize("path", GOLDENS, ids=[str(p.relative_to(GOLDEN)) for p in GOLDENS])
def test_golden_invariants(path: Path) -> None:
    for _, data in check_golden_file(path):
        profile, node, _ = _where(path)
        check_kubeadm_config(data, profile, node)


def test_every_role_has_a_golden() -> None:
    roles = {_nodes(p)[n]["role"] for p, n, _ in map(_where, GOLDENS) if n}
    assert roles == {"control-plane", "worker", "etcd"}
    assert any(p.parts[-4:-2] == ("real", "single-master") or "real" in p.parts for p in GOLDENS)


def test_invariants_catch_a_worker_key(tmp_path: Path) -> None:
    """The checker itself fails on a worker holding a key (so the rule above can fail)."""
    src = GOLDEN / "cloudinit" / "ha-stacked" / "worker-1" / "user-data"
    doc = yaml.safe_load(src.read_bytes())
    doc["write_files"].append(
        {"path": f"{PKI}/x.key", "permissions": "0600", "content": "-----BEGIN PRIVATE KEY-----\n"}
    )
    with pytest.raises(AssertionError, match="a worker gets"):
        check_user_data(b"#cloud-config\n" + yaml.safe_dump(doc).encode(), "ha-stacked", "worker-1")
    doc["write_files"][-1]["path"] = "/etc/bake/x.pem"
    with pytest.raises(AssertionError, match="worker key"):
        check_user_data(b"#cloud-config\n" + yaml.safe_dump(doc).encode(), "ha-stacked", "worker-1")


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
    for path in GOLDENS:
        for name, data in check_golden_file(path):
            f = root / f"{checked}-{Path(name).name}"
            f.write_bytes(data)
            proc = subprocess.run(
                [kubeadm, "config", "validate", "--config", f"/{f.name}", "--rootfs", str(root)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, f"{path}: {proc.stdout}{proc.stderr}"
            checked += 1
    assert checked >= 10
    # and it does refuse a broken one: the check is not a no-op
    bad = root / "bad.yaml"
    data = (GOLDEN / "ha-stacked" / "worker-1" / "kubeadm-join-config.yaml").read_bytes()
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
