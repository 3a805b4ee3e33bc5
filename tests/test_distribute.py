"""builder.node.distribute: which secret lands on which role, at kubeadm's paths and modes, and the
kubeconfigs."""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from builder.files import NodeFile, Sensitivity
from builder.node.distribute import KubeconfigSource, node_pki_files, node_pki_sources, operator_admin_conf
from builder.pki import crypto as pki
from builder.pki import placement, secrets
from builder.pki.secrets import Bundle
from builder.plan import ClusterPlan, build_plan
from builder.validation.profile import load_profile, validate

from .peers import program

Baked = Callable[..., tuple[ClusterPlan, Bundle]]  # the `baked` fixture of conftest.py
PKI = "/etc/kubernetes/pki"
ECDSA = "cluster.encryptionAlgorithm=ECDSA-P256"


def by_path(plan: ClusterPlan, bundle: Bundle, node: str) -> dict[str, NodeFile]:
    fs = node_pki_files(plan, plan.node(node), bundle)
    out = {f.path: f for f in fs}
    assert len(out) == len(fs), "duplicate paths"
    return out


def kubeconfig(f: NodeFile | bytes) -> dict[str, Any]:
    doc = yaml.safe_load(f.content if isinstance(f, NodeFile) else f)
    assert isinstance(doc, dict)
    return doc


def client_cert(doc: dict[str, Any]) -> x509.Certificate:
    (user,) = doc["users"]
    return x509.load_pem_x509_certificate(base64.b64decode(user["user"]["client-certificate-data"]))


def subject(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(cn), [str(o) for o in orgs]


@pytest.fixture(scope="module")
def stacked(baked: Baked) -> tuple[ClusterPlan, Bundle]:
    return baked("ha-stacked")


@pytest.fixture(scope="module")
def external(baked: Baked) -> tuple[ClusterPlan, Bundle]:
    return baked("ha-external-etcd", ECDSA)


ETCD_MEMBER_FILES = {
    f"{PKI}/etcd/ca.crt",
    f"{PKI}/etcd/ca.key",  # every etcd member renews its own leaves with kubeadm, which signs with it
    f"{PKI}/etcd/server.crt",
    f"{PKI}/etcd/server.key",
    f"{PKI}/etcd/peer.crt",
    f"{PKI}/etcd/peer.key",
    f"{PKI}/etcd/healthcheck-client.crt",
    f"{PKI}/etcd/healthcheck-client.key",
}
CP_COMMON = {
    f"{PKI}/ca.crt",
    f"{PKI}/ca.key",
    f"{PKI}/front-proxy-ca.crt",
    f"{PKI}/front-proxy-ca.key",
    f"{PKI}/sa.key",
    f"{PKI}/sa.pub",
    f"{PKI}/etcd/ca.crt",
    f"{PKI}/apiserver.crt",
    f"{PKI}/apiserver.key",
    f"{PKI}/apiserver-kubelet-client.crt",
    f"{PKI}/apiserver-kubelet-client.key",
    f"{PKI}/front-proxy-client.crt",
    f"{PKI}/front-proxy-client.key",
    f"{PKI}/apiserver-etcd-client.crt",
    f"{PKI}/apiserver-etcd-client.key",
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/controller-manager.conf",
    "/etc/kubernetes/scheduler.conf",
    "/etc/kubernetes/encryption/config.yaml",  # cluster.secretsEncryption (default secretbox)
}
INIT_ONLY = {"/etc/kubernetes/super-admin.conf", "/etc/kubernetes/kubelet.conf"}
JOIN_CONF = "/etc/bake/join.conf"  # cluster.join: certificate (the default): every joining node's own


# --------------------------------------------------------------------------------------------------
# The secret-per-role table


@pytest.mark.parametrize(("which", "node"), [("stacked", "worker-1"), ("external", "worker-2")])
def test_worker_gets_only_its_join_credential(
    which: str, node: str, stacked: tuple[ClusterPlan, Bundle], external: tuple[ClusterPlan, Bundle]
) -> None:
    plan, bundle = stacked if which == "stacked" else external
    (conf,) = node_pki_files(plan, plan.node(node), bundle)
    assert (conf.path, conf.mode, conf.sensitivity) == (JOIN_CONF, 0o600, Sensitivity.SECRET)
    doc = kubeconfig(conf)
    assert subject(client_cert(doc)) == (f"system:node:{node}", ["system:nodes"])
    ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
    assert ca == bundle.cas["ca"].cert_pem  # the cluster CA pinned, nothing else
    for other in (*bundle.cas.values(),):
        assert other.key_pem not in conf.content and base64.b64encode(other.key_pem) not in conf.content


@pytest.mark.parametrize(("which", "node"), [("stacked", "worker-1"), ("external", "worker-2")])
def test_token_mode_worker_gets_no_files_at_all(which: str, node: str, baked: Baked) -> None:
    plan, bundle = baked("ha-stacked" if which == "stacked" else "ha-external-etcd", "cluster.join=token")
    assert node_pki_files(plan, plan.node(node), bundle) == []
    assert node not in bundle.leaves  # no join credential issued either


def test_external_etcd_member_gets_its_etcd_certificates_and_the_etcd_ca_key(
    external: tuple[ClusterPlan, Bundle],
) -> None:
    plan, bundle = external
    files = by_path(plan, bundle, "etcd-2")
    assert set(files) == ETCD_MEMBER_FILES
    assert files[f"{PKI}/etcd/ca.crt"].content == bundle.cas["etcd-ca"].cert_pem
    # the etcd CA key, so that it renews its own leaves with kubeadm; 0600 as kubeadm writes keys
    assert files[f"{PKI}/etcd/ca.key"].content == bundle.cas["etcd-ca"].key_pem
    assert files[f"{PKI}/etcd/ca.key"].mode == 0o600
    other_keys = {bundle.cas["ca"].key_pem, bundle.cas["front-proxy-ca"].key_pem, bundle.sa_key_pem}
    assert not any(key in f.content for f in files.values() for key in other_keys)
    assert files[f"{PKI}/etcd/server.key"].content == bundle.leaf("etcd-2", "etcd-server").key_pem
    assert files[f"{PKI}/etcd/peer.crt"].content == bundle.leaf("etcd-2", "etcd-peer").cert_pem
    assert files[f"{PKI}/etcd/healthcheck-client.crt"].content == (
        bundle.leaf("etcd-2", "etcd-healthcheck-client").cert_pem
    )


def test_external_etcd_control_planes(external: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = external
    init, join = by_path(plan, bundle, "cp-1"), by_path(plan, bundle, "cp-3")
    assert set(init) == CP_COMMON | INIT_ONLY
    assert set(join) == CP_COMMON | {JOIN_CONF}
    for files in (init, join):
        assert f"{PKI}/etcd/ca.key" not in files
        assert not any(p.startswith(f"{PKI}/etcd/") and p != f"{PKI}/etcd/ca.crt" for p in files)
        assert files[f"{PKI}/etcd/ca.crt"].content == bundle.cas["etcd-ca"].cert_pem
        assert bundle.cas["etcd-ca"].key_pem not in {f.content for f in files.values()}
    assert (
        init[f"{PKI}/apiserver-etcd-client.key"].content
        == bundle.leaf("cp-1", "apiserver-etcd-client").key_pem
    )


def test_stacked_control_planes(stacked: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = stacked
    etcd_local = ETCD_MEMBER_FILES - {f"{PKI}/etcd/ca.crt"}
    init, join = by_path(plan, bundle, "cp-1"), by_path(plan, bundle, "cp-2")
    assert set(init) == CP_COMMON | INIT_ONLY | etcd_local
    assert set(join) == CP_COMMON | etcd_local | {JOIN_CONF}
    assert subject(client_cert(kubeconfig(join[JOIN_CONF]))) == ("system:node:cp-2", ["system:nodes"])
    assert join[f"{PKI}/etcd/ca.key"].content == bundle.cas["etcd-ca"].key_pem
    assert join[f"{PKI}/ca.key"].content == bundle.cas["ca"].key_pem
    assert join[f"{PKI}/front-proxy-ca.key"].content == bundle.cas["front-proxy-ca"].key_pem
    assert join[f"{PKI}/sa.key"].content == bundle.sa_key_pem
    assert join[f"{PKI}/sa.pub"].content == bundle.sa_pub_pem
    assert join[f"{PKI}/etcd/server.crt"].content == bundle.leaf("cp-2", "etcd-server").cert_pem
    assert join[f"{PKI}/apiserver.crt"].content == bundle.leaf("cp-2", "apiserver").cert_pem


def test_etcd_only_cluster(baked: Baked) -> None:
    plan, bundle = baked("etcd-cluster", ECDSA)
    for node in plan.nodes:
        assert set(by_path(plan, bundle, node.name)) == ETCD_MEMBER_FILES


@pytest.mark.parametrize("which", ["stacked", "external"])
def test_modes_and_sensitivity(
    which: str, stacked: tuple[ClusterPlan, Bundle], external: tuple[ClusterPlan, Bundle]
) -> None:
    plan, bundle = stacked if which == "stacked" else external
    for node in plan.nodes:
        for f in node_pki_files(plan, node, bundle):
            private = f.path.endswith((".key", ".conf", "/sa.pub", "/encryption/config.yaml"))
            if private:
                assert (f.mode, f.sensitivity) == (0o600, Sensitivity.SECRET), f.path
            else:
                assert f.path.endswith(".crt"), f.path
                assert (f.mode, f.sensitivity) == (0o644, Sensitivity.PUBLIC), f.path
            if b"PRIVATE KEY" in f.content or b"client-key-data" in f.content:
                assert f.secret and f.mode == 0o600, f.path
            assert f.owner == "root:root"


def test_leaf_keys_match_their_certificates(stacked: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = stacked
    files = by_path(plan, bundle, "cp-3")
    crts = [p for p in files if p.endswith(".crt") and "/ca.crt" not in p and "front-proxy-ca" not in p]
    assert len(crts) == 7
    for crt in crts:
        cert = pki.load_cert(files[crt].content)
        key = pki.load_key(files[crt.removesuffix(".crt") + ".key"].content)
        assert key.public_key() == cert.public_key(), crt


@pytest.mark.parametrize("provider", ["secretbox", "aescbc", "none"])
def test_encryption_configuration_per_provider(baked: Baked, provider: str) -> None:
    """The apiserver's EncryptionConfiguration, read back as plain YAML: the bundle's key under the
    chosen provider, identity after it; control planes only; nothing at all for `none`."""
    plan, bundle = baked("ha-stacked", ECDSA, f"cluster.secretsEncryption={provider}")
    path = "/etc/kubernetes/encryption/config.yaml"
    for node in plan.nodes:
        files = by_path(plan, bundle, node.name)
        if provider == "none" or node.role.value != "control-plane":
            assert path not in files, node.name
            continue
        f = files[path]
        assert (f.mode, f.sensitivity) == (0o600, Sensitivity.SECRET)
        doc = yaml.safe_load(f.content)
        assert doc["apiVersion"] == "apiserver.config.k8s.io/v1" and doc["kind"] == "EncryptionConfiguration"
        (entry,) = doc["resources"]
        assert entry["resources"] == ["secrets"]
        first, last = entry["providers"]
        assert last == {"identity": {}}
        (key,) = first[provider]["keys"]
        assert bundle.encryption_key is not None and len(bundle.encryption_key) == 32
        assert base64.b64decode(key["secret"]) == bundle.encryption_key


# --------------------------------------------------------------------------------------------------
# kubeconfigs (spec section 2)

KUBECONFIG_SUBJECTS = {
    "admin.conf": ("kubernetes-admin", ["kubeadm:cluster-admins"]),
    "super-admin.conf": ("kubernetes-super-admin", ["system:masters"]),
    "kubelet.conf": ("system:node:{node}", ["system:nodes"]),
    "controller-manager.conf": ("system:kube-controller-manager", []),
    "scheduler.conf": ("system:kube-scheduler", []),
}


def check_kubeconfig(
    doc: dict[str, Any], bundle: Bundle, cluster: str, server: str, cn: str, orgs: list[str]
) -> None:
    assert doc["apiVersion"] == "v1" and doc["kind"] == "Config"
    (c,) = doc["clusters"]
    assert c["name"] == cluster
    assert c["cluster"]["server"] == server
    assert base64.b64decode(c["cluster"]["certificate-authority-data"]) == bundle.cas["ca"].cert_pem
    (ctx,) = doc["contexts"]
    assert ctx["name"] == f"{cn}@{cluster}" == doc["current-context"]
    assert ctx["context"] == {"cluster": cluster, "user": cn}
    (user,) = doc["users"]
    assert user["name"] == cn
    cert = client_cert(doc)
    key = pki.load_key(base64.b64decode(user["user"]["client-key-data"]))
    assert key.public_key() == cert.public_key()
    assert subject(cert) == (cn, orgs)
    cert.verify_directly_issued_by(bundle.cas["ca"].cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


@pytest.mark.parametrize(
    ("node", "conf", "server"),
    [
        ("cp-1", "admin.conf", "https://10.77.0.10:6443"),
        ("cp-1", "super-admin.conf", "https://10.77.0.10:6443"),
        ("cp-1", "kubelet.conf", "https://10.77.0.11:6443"),  # ControlPlaneKubeletLocalMode (1.37)
        ("cp-1", "controller-manager.conf", "https://10.77.0.11:6443"),
        ("cp-1", "scheduler.conf", "https://10.77.0.11:6443"),
        ("cp-2", "admin.conf", "https://10.77.0.10:6443"),
        ("cp-2", "controller-manager.conf", "https://10.77.0.12:6443"),
        ("cp-3", "scheduler.conf", "https://10.77.0.13:6443"),
    ],
)
def test_kubeconfig_contents(stacked: tuple[ClusterPlan, Bundle], node: str, conf: str, server: str) -> None:
    plan, bundle = stacked
    doc = kubeconfig(by_path(plan, bundle, node)[f"/etc/kubernetes/{conf}"])
    cn, orgs = KUBECONFIG_SUBJECTS[conf]
    check_kubeconfig(doc, bundle, "ha-stacked", server, cn.format(node=node), orgs)


def _kubeconfig_changes(source: KubeconfigSource, bundle: Bundle) -> dict[str, KubeconfigSource]:
    """The source with one field (or only the client key) changed, by that field."""
    other = bundle.leaf("worker-2", "join.conf")
    assert other.cert_pem != source.client.cert_pem
    return {
        "cluster": dataclasses.replace(source, cluster="another"),
        "server": dataclasses.replace(source, server="https://10.9.9.9:6443"),
        "ca": dataclasses.replace(source, ca=bundle.cas["front-proxy-ca"]),
        "user": dataclasses.replace(source, user="someone"),
        "client": dataclasses.replace(source, client=other),
        "client key only": dataclasses.replace(
            source, client=dataclasses.replace(source.client, key=other.key, key_pem=other.key_pem)
        ),
    }


@pytest.mark.parametrize("node", ["cp-1", "worker-1"])
def test_pki_sources_render_the_pki_files(stacked: tuple[ClusterPlan, Bundle], node: str) -> None:
    """What a node's inputs digest reads (node_pki_sources) is what its files are rendered from."""
    plan, bundle = stacked
    sources = node_pki_sources(plan, plan.node(node), bundle)
    assert [s.file() for s in sources] == node_pki_files(plan, plan.node(node), bundle)
    assert any(isinstance(s.content, KubeconfigSource) for s in sources)


def test_a_kubeconfig_source_change_that_changes_the_file_changes_its_material(
    stacked: tuple[ClusterPlan, Bundle],
) -> None:
    """A node's inputs digest reads a kubeconfig's source, not its bytes: any change of the source that
    changes the file must change what the digest reads (else a re-bake would keep a stale kubeconfig)."""
    plan, bundle = stacked
    (join,) = node_pki_sources(plan, plan.node("worker-1"), bundle)
    assert isinstance(join.content, KubeconfigSource) and join.path == JOIN_CONF
    rendered, material = join.file().content, join.material
    for field, source in _kubeconfig_changes(join.content, bundle).items():
        changed = dataclasses.replace(join, content=source)
        assert changed.file().content != rendered, field
        assert changed.material != material, field
    # the same bytes given as a file's content are not taken for a kubeconfig made from a source
    assert dataclasses.replace(join, content=join.content.material).material != material
    assert dataclasses.replace(join, sensitivity=Sensitivity.PUBLIC).material != material


def test_kubeconfig_embeds_the_bundle_leaf(stacked: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = stacked
    doc = kubeconfig(by_path(plan, bundle, "cp-1")["/etc/kubernetes/kubelet.conf"])
    user = doc["users"][0]["user"]
    held = bundle.leaf("cp-1", "kubelet.conf")
    assert base64.b64decode(user["client-certificate-data"]) == held.cert_pem
    assert base64.b64decode(user["client-key-data"]) == held.key_pem


def test_haproxy_endpoint_in_kubeconfigs(external: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = external
    files = by_path(plan, bundle, "cp-2")
    admin = kubeconfig(files["/etc/kubernetes/admin.conf"])
    assert admin["clusters"][0]["cluster"]["server"] == "https://10.77.0.10:8443"
    kcm = kubeconfig(files["/etc/kubernetes/controller-manager.conf"])
    assert kcm["clusters"][0]["cluster"]["server"] == "https://10.77.0.12:6443"


def test_kubelet_conf_uses_the_endpoint_before_local_mode(baked: Baked) -> None:
    plan, bundle = baked("ha-stacked", ECDSA, "cluster.kubernetesVersion=1.32")
    assert not plan.node("cp-1").kubelet_info.control_plane_kubelet_local_mode
    doc = kubeconfig(by_path(plan, bundle, "cp-1")["/etc/kubernetes/kubelet.conf"])
    check_kubeconfig(
        doc, bundle, "ha-stacked", "https://10.77.0.10:6443", "system:node:cp-1", ["system:nodes"]
    )


def test_ipv6_local_urls_are_bracketed() -> None:
    d = load_profile("ha-stacked", [ECDSA]).model_dump(mode="json", by_alias=True)
    d["cluster"].update(
        podSubnet="fd00:244::/56",
        serviceSubnet="fd00:96::/112",
        loadBalancer={"kind": "kube-vip", "vip": "fd00:77::10"},
    )
    d["defaults"].update(gateway="fd00:77::1", dns=["fd00:77::1"])
    d["nodes"] = [{"name": "cp-1", "role": "control-plane", "ip": "fd00:77::11"}]
    plan = build_plan(validate(d))
    bundle, _ = secrets.reconcile(plan, None, now=secrets.utcnow())
    files = by_path(plan, bundle, "cp-1")
    servers = {
        name: kubeconfig(files[f"/etc/kubernetes/{name}"])["clusters"][0]["cluster"]["server"]
        for name in ("admin.conf", "scheduler.conf", "kubelet.conf")
    }
    assert servers == {
        "admin.conf": "https://[fd00:77::10]:6443",
        "scheduler.conf": "https://[fd00:77::11]:6443",
        "kubelet.conf": "https://[fd00:77::11]:6443",
    }


def test_operator_admin_conf(external: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = external
    doc = kubeconfig(operator_admin_conf(plan, bundle))
    check_kubeconfig(
        doc,
        bundle,
        "ha-external-etcd",
        "https://10.77.0.10:8443",
        "kubernetes-admin",
        ["kubeadm:cluster-admins"],
    )
    held = bundle.leaf(secrets.OPERATOR, "admin.conf")
    assert base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]) == held.cert_pem
    # the operator's identity is its own, not a node's admin.conf
    node_admin = kubeconfig(by_path(plan, bundle, "cp-1")["/etc/kubernetes/admin.conf"])
    assert client_cert(node_admin).serial_number != client_cert(doc).serial_number


def test_operator_admin_conf_without_endpoint_points_at_the_init_node(baked: Baked) -> None:
    plan, bundle = baked("single-master", ECDSA)
    doc = kubeconfig(operator_admin_conf(plan, bundle))
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.77.0.11:6443"
    assert doc["current-context"] == "kubernetes-admin@single-master"


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_operator_admin_conf_verifies_with_openssl(
    stacked: tuple[ClusterPlan, Bundle], baked: Baked, tmp_path: Path
) -> None:
    plan, bundle = stacked
    doc = kubeconfig(operator_admin_conf(plan, bundle))
    cluster = doc["clusters"][0]["cluster"]
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    assert ca.read_bytes() == bundle.cas["ca"].cert_pem
    client = tmp_path / "client.crt"
    client.write_bytes(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))
    key = tmp_path / "client.key"
    key.write_bytes(base64.b64decode(doc["users"][0]["user"]["client-key-data"]))
    ok = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(ca), str(client)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and ok.stdout.strip() == f"{client}: OK", ok.stdout + ok.stderr
    # the key really is the certificate's
    pub_cert = subprocess.run(
        ["openssl", "x509", "-noout", "-pubkey", "-in", str(client)], capture_output=True, check=True
    ).stdout
    pub_key = subprocess.run(
        ["openssl", "pkey", "-pubout", "-in", str(key)], capture_output=True, check=True
    ).stdout
    assert pub_cert == pub_key
    subj = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", str(client)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert subj.strip() == "subject=CN=kubernetes-admin,O=kubeadm:cluster-admins"
    # and another cluster's CA does not verify it
    foreign = tmp_path / "foreign-ca.crt"
    foreign.write_bytes(baked("single-node", ECDSA)[1].cas["ca"].cert_pem)
    bad = subprocess.run(
        ["openssl", "verify", "-CAfile", str(foreign), str(client)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0


def test_node_named_operator() -> None:
    """The operator's own credentials live under a name no RFC 1123 node name can take, so a node
    called "operator" is an ordinary node and the two admin identities stay apart."""
    plan = build_plan(load_profile("single-master", ["nodes[0].name=operator", ECDSA]))
    bundle, _ = secrets.reconcile(plan, None, now=secrets.utcnow())
    files = by_path(plan, bundle, "operator")
    assert f"{PKI}/apiserver.crt" in files and "/etc/kubernetes/super-admin.conf" in files
    operator = kubeconfig(operator_admin_conf(plan, bundle))
    assert operator["current-context"] == "kubernetes-admin@single-master"
    node_admin = kubeconfig(files["/etc/kubernetes/admin.conf"])
    assert client_cert(node_admin).serial_number != client_cert(operator).serial_number
    assert client_cert(node_admin).public_key() != client_cert(operator).public_key()


# --------------------------------------------------------------------------------------------------
# the join credential (cluster.join: certificate), judged by openssl


def _openssl(*args: str, stdin: bytes | None = None) -> str:
    proc = subprocess.run(
        [program("openssl"), *args], input=stdin, capture_output=True, check=False, timeout=30
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode()


@pytest.mark.parametrize("node", ["worker-2", "cp-3"])
def test_join_credential_with_openssl(stacked: tuple[ClusterPlan, Bundle], node: str, tmp_path: Path) -> None:
    """Subject, issuer, client-only usage and the join window (720h by default) as openssl reads them."""
    plan, bundle = stacked
    doc = kubeconfig(by_path(plan, bundle, node)[JOIN_CONF])
    (user,) = doc["users"]
    # kubeadm's kubeconfig naming (CreateWithCerts): the user is the CN, the context `<user>@<cluster>`
    assert user["name"] == f"system:node:{node}"
    assert doc["current-context"] == f"system:node:{node}@ha-stacked"
    cert = tmp_path / "join.crt"
    cert.write_bytes(base64.b64decode(user["user"]["client-certificate-data"]))
    key = tmp_path / "join.key"
    key.write_bytes(base64.b64decode(user["user"]["client-key-data"]))
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]))
    assert _openssl("verify", "-purpose", "sslclient", "-CAfile", str(ca), str(cert)).strip().endswith("OK")
    text = _openssl("x509", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253", "-in", str(cert))
    assert f"subject=CN=system:node:{node},O=system:nodes" in text
    assert "issuer=CN=kubernetes" in text
    assert "TLS Web Client Authentication" in _openssl("x509", "-noout", "-text", "-in", str(cert))
    assert "TLS Web Server" not in _openssl("x509", "-noout", "-text", "-in", str(cert))
    dates = dict(
        line.split("=", 1) for line in _openssl("x509", "-noout", "-dates", "-in", str(cert)).splitlines()
    )
    fmt = "%b %d %H:%M:%S %Y GMT"
    not_before = datetime.strptime(" ".join(dates["notBefore"].split()), fmt)
    not_after = datetime.strptime(" ".join(dates["notAfter"].split()), fmt)
    assert not_after - not_before == timedelta(hours=720, minutes=5)  # NotBefore back-dated 5 min, as kubeadm
    pub = _openssl("x509", "-noout", "-pubkey", "-in", str(cert))
    assert pub == _openssl("pkey", "-pubout", "-in", str(key))
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.77.0.10:6443"  # the endpoint (VIP)


def test_join_window_sets_the_credentials_lifetime(baked: Baked, tmp_path: Path) -> None:
    plan, bundle = baked("single-master", "cluster.joinWindow=48h")
    user = kubeconfig(by_path(plan, bundle, "worker-1")[JOIN_CONF])["users"][0]["user"]
    cert = tmp_path / "join.crt"
    cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
    end = _openssl("x509", "-noout", "-checkend", str(47 * 3600), "-in", str(cert))
    assert "will not expire" in end
    proc = subprocess.run(
        [program("openssl"), "x509", "-noout", "-checkend", str(49 * 3600), "-in", str(cert)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "will expire" in proc.stdout
    assert kubeconfig(by_path(plan, bundle, "worker-1")[JOIN_CONF])["clusters"][0]["cluster"]["server"] == (
        "https://10.77.0.11:6443"  # no endpoint in single-master: the init node
    )


def test_ipv6_join_credential_server_is_bracketed(tmp_path: Path) -> None:
    profile = tmp_path / "v6.yaml"
    profile.write_text(
        "extends: ha-stacked\n"
        "cluster: {podSubnet: 'fd00:10:244::/56', serviceSubnet: 'fd00:10:96::/112',"
        " loadBalancer: {kind: kube-vip, vip: 'fd00:77::10'}}\n"
        "defaults: {gateway: 'fd00:77::1', dns: ['fd00:77::1'], prefixLength: 64}\n"
        "nodes:\n"
        "  - {name: cp-1, role: control-plane, ip: 'fd00:77::11'}\n"
        "  - {name: w-1, role: worker, ip: 'fd00:77::21'}\n"
    )
    plan = build_plan(load_profile(str(profile)))
    bundle, _ = secrets.reconcile(plan, None, now=secrets.utcnow())
    doc = kubeconfig(by_path(plan, bundle, "w-1")[JOIN_CONF])
    assert doc["clusters"][0]["cluster"]["server"] == "https://[fd00:77::10]:6443"


@pytest.mark.parametrize("url", ["https://10.77.0.1:8443", "http://10.77.0.1:8080"])
def test_report_key_and_pinned_seed_ca(baked: Baked, url: str) -> None:
    """Each node's own report key, one line of 64 hex digits as report.sh reads it; with an https:// URL
    also the seed CA the node pins, and only then."""
    plan, bundle = baked("ha-external-etcd", f"cluster.seed.reportUrl={url}")
    keys = set()
    for node in plan.nodes:
        files = by_path(plan, bundle, node.name)
        key = files["/etc/bake/report.key"]
        assert re.fullmatch(rb"[0-9a-f]{64}\n", key.content), node.name
        assert key.mode == 0o600 and key.sensitivity is Sensitivity.SECRET
        keys.add(key.content)
        ca = files.get("/etc/bake/report-ca.crt")
        if url.startswith("https://"):
            assert ca is not None and bundle.seed_ca is not None
            assert ca.content == bundle.seed_ca.cert_pem and ca.sensitivity is Sensitivity.PUBLIC
        else:
            assert ca is None, node.name
    assert len(keys) == len(plan.nodes)


def test_a_bundle_missing_what_the_plan_needs_is_a_bug(baked: Baked, monkeypatch: pytest.MonkeyPatch) -> None:
    """reconcile always makes the seed CA (https:// report URL) and the Secrets' key: a bundle without
    them, or an encryption configuration asked for with `none`, stops distribution with the reason."""
    plan, bundle = baked("ha-external-etcd", "cluster.seed.reportUrl=https://10.77.0.1:8443")
    with pytest.raises(AssertionError) as e:
        node_pki_files(plan, plan.node("worker-1"), dataclasses.replace(bundle, seed_ca=None))
    assert str(e.value) == "reconcile makes the seed CA for an https:// URL"
    plan, bundle = baked("ha-external-etcd")
    with pytest.raises(AssertionError) as e:
        node_pki_files(plan, plan.node("cp-1"), dataclasses.replace(bundle, encryption_key=None))
    assert str(e.value) == "reconcile gives every bundle an encryption key"
    plan, bundle = baked("ha-external-etcd", "cluster.secretsEncryption=none")
    row = dataclasses.replace(placement.for_node(plan, plan.node("cp-1")), encryption_config=True)
    monkeypatch.setattr(placement, "for_node", lambda *_: row)
    with pytest.raises(AssertionError):
        node_pki_files(plan, plan.node("cp-1"), bundle)
