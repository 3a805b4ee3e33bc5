"""builder.pki.secrets: a bundle is made once, reused byte for byte, changed only as reported, never
repaired."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import hmac
import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyrage
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from builder.errors import Problem, SecretsError
from builder.model import CertificateRenewal
from builder.pki import bundledir, certlist, secrets
from builder.pki import crypto as pki
from builder.pki.crypto import KeyAlgorithm
from builder.pki.secrets import Bundle, Change, issuing, load_bundle, reconcile, required_specs
from builder.plan import ClusterPlan, build_plan
from builder.serve import tls as seed_tls
from builder.validation.profile import load_profile, validate

from .peers import program

Files = list[tuple[str, bytes, int]]

Issue = Callable[..., tuple[ClusterPlan, Bundle]]  # the `issue` fixture below


def files(bundle: Bundle, plan: ClusterPlan) -> Files:
    return list(secrets.bundle_files(bundle, plan))


def write_bundle(root: Path, bundle: Bundle, plan: ClusterPlan) -> Path:
    for rel, data, mode in secrets.bundle_files(bundle, plan):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def leaves(bundle: Bundle) -> dict[tuple[str, str], tuple[bytes, bytes]]:
    return {
        (owner, name): (held.cert_pem, held.key_pem)
        for owner, certs in bundle.leaves.items()
        for name, held in certs.items()
    }


def data(name: str, *sets: str) -> dict[str, Any]:
    return load_profile(name, sets).model_dump(mode="json", by_alias=True)


def plan_from(d: dict[str, Any]) -> ClusterPlan:
    return build_plan(validate(d))


def owners(changes: list[Change]) -> set[str]:
    return {c.owner for c in changes}


def san_ips(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


def now() -> datetime:
    return secrets.utcnow()


HINT = Problem(
    "secrets",
    "the bundle is inconsistent and was not changed; restore it from a backup, remove the offending node "
    "directory under secrets/nodes/ to re-issue that node, or --rotate-ca to start over",
)


KeyPool = dict[tuple[Any, ...], list[pki.PrivateKey]]


@pytest.fixture(scope="session")
def key_pool() -> KeyPool:
    return {}


@pytest.fixture
def issue(key_pool: KeyPool) -> Issue:
    """`issue(profile, *sets)` -> (plan, a new bundle). Its keys are made once per session (key generation
    is the slow part), the bundle is issued in each test: a test that reads a bundle calls the code that
    made it, which is what mutation testing needs to run it on that code's mutants."""
    real = pki.generate_keys

    def generate(profile: tuple[Any, ...], algorithm: KeyAlgorithm, count: int, jobs: int = 1) -> list[Any]:
        key = (*profile, algorithm, count)
        if key not in key_pool:
            key_pool[key] = real(algorithm, count, jobs)
        return list(key_pool[key])

    def get(name: str, *sets: str) -> tuple[ClusterPlan, Bundle]:
        plan = build_plan(load_profile(name, sets))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pki, "generate_keys", lambda *a, **kw: generate((name, sets), *a, **kw))
            bundle, _ = reconcile(plan, None, now=now())
        return plan, bundle

    return get


@pytest.fixture
def stacked(issue: Issue) -> tuple[ClusterPlan, Bundle]:
    return issue("ha-stacked")


@pytest.fixture
def stacked_on_disk(stacked: tuple[ClusterPlan, Bundle], tmp_path: Path) -> Path:
    plan, bundle = stacked
    return write_bundle(tmp_path / "stacked" / "secrets", bundle, plan)


@pytest.fixture
def stacked_loaded(stacked_on_disk: Path) -> Bundle:
    """The RSA ha-stacked bundle read back from disk."""
    loaded = load_bundle(stacked_on_disk)
    assert loaded is not None
    return loaded


@pytest.fixture
def small(issue: Issue) -> tuple[ClusterPlan, Bundle]:
    """A cheap ECDSA bundle for tests that re-issue everything."""
    return issue("single-node", "cluster.encryptionAlgorithm=ECDSA-P256")


# --------------------------------------------------------------------------------------------------
# A fresh bundle


def test_fresh_reconcile_reports_creation() -> None:
    plan = build_plan(load_profile("single-node", ["cluster.encryptionAlgorithm=ECDSA-P256"]))
    bundle, changes = reconcile(plan, None, now=now())
    assert len(changes) == 1 and changes[0].owner == "bundle" and "created" in changes[0].what
    assert set(bundle.leaves) == {"dev-1", secrets.OPERATOR}


def test_fresh_bundle_contents(stacked: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = stacked
    assert bundle.algorithm is KeyAlgorithm.RSA_2048
    assert pki.TOKEN_RE.match(bundle.token)
    cns = {
        name: ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        for name, ca in bundle.cas.items()
    }
    assert cns == {"ca": "kubernetes", "front-proxy-ca": "front-proxy-ca", "etcd-ca": "etcd-ca"}
    for ca in bundle.cas.values():
        assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        ca.cert.verify_directly_issued_by(ca.cert)
        assert ca.key.public_key() == ca.cert.public_key()
        assert ca.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert len({ca.cert.serial_number for ca in bundle.cas.values()}) == 3
    sa = pki.load_key(bundle.sa_key_pem)
    assert pki.public_pem(sa) == bundle.sa_pub_pem
    assert bundle.sa_pub_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert KeyAlgorithm.of(sa) is KeyAlgorithm.RSA_2048
    # workers hold only their join credential; every leaf chains to the CA its spec names
    assert set(bundle.leaves) == {"cp-1", "cp-2", "cp-3", "worker-1", "worker-2", secrets.OPERATOR}
    assert set(bundle.leaves["worker-1"]) == {"join.conf"}
    assert "join.conf" not in bundle.leaves["cp-1"] and "join.conf" in bundle.leaves["cp-2"]
    for node in plan.nodes:
        for spec in required_specs(plan, node):
            held = bundle.leaf(node.name, spec.name)
            assert spec.ca is not None
            held.cert.verify_directly_issued_by(bundle.cas[spec.ca].cert)
            assert pki.verify_reuse(spec, held.cert, held.key, bundle.cas[spec.ca].cert) == []
    spki = (
        bundle.cas["ca"]
        .cert.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert bundle.discovery_hash == "sha256:" + hashlib.sha256(spki).hexdigest()


def test_lifetimes_are_the_profiles() -> None:
    """CAs live caCertificateValidityPeriod, leaves certificateValidityPeriod, both from a NotBefore 5
    minutes in the past (kubeadm's CertificateBackdate)."""
    sets = ["cluster.encryptionAlgorithm=ECDSA-P256", "cluster.certificateValidityPeriod=2000h",
            "cluster.caCertificateValidityPeriod=20000h"]  # fmt: skip
    plan = build_plan(load_profile("single-node", sets))
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    bundle, _ = reconcile(plan, None, now=start)
    leaf_certs = [h.cert for c in bundle.leaves.values() for h in c.values()]
    ca_certs = [ca.cert for ca in bundle.cas.values()]
    assert {c.not_valid_before_utc for c in ca_certs + leaf_certs} == {start - timedelta(minutes=5)}
    assert {c.not_valid_after_utc for c in ca_certs} == {start + timedelta(hours=20000)}
    assert {c.not_valid_after_utc for c in leaf_certs} == {start + timedelta(hours=2000)}
    seeded, _ = reconcile(_seed_plan(*sets[1:]), None, now=start)
    assert seeded.seed_ca is not None and seeded.seed_server is not None
    for pair, hours in ((seeded.seed_ca, 20000), (seeded.seed_server, 2000)):
        assert pair.cert.not_valid_before_utc == start - timedelta(minutes=5)
        assert pair.cert.not_valid_after_utc == start + timedelta(hours=hours)


def test_keys_made_in_worker_processes_are_distinct_and_fit_their_certificates() -> None:
    """RSA keys come from a process pool: each certificate still gets its own key, of the right kind."""
    plan = build_plan(load_profile("ha-stacked", ["cluster.encryptionAlgorithm=RSA-2048"]))
    bundle, _ = reconcile(plan, None, now=now(), jobs=2)
    keys = [ca.key for ca in bundle.cas.values()] + [pki.load_key(bundle.sa_key_pem)]
    leaves = [(name, held.key) for certs in bundle.leaves.values() for name, held in certs.items()]
    # the join credentials' keys are ECDSA P-256 whatever the cluster's (test below): set apart
    assert {KeyAlgorithm.of(k) for name, k in leaves if name == "join.conf"} == {KeyAlgorithm.ECDSA_P256}
    keys += [k for name, k in leaves if name != "join.conf"]
    assert len(keys) == 3 + 1 + len(leaves) - sum(name == "join.conf" for name, _ in leaves)
    numbers = {k.public_key().public_numbers().n for k in keys}  # type: ignore[union-attr]
    assert len(numbers) == len(keys)
    assert all(KeyAlgorithm.of(k) is KeyAlgorithm.RSA_2048 for k in keys)
    for owner, certs in bundle.leaves.items():
        for held in certs.values():
            assert held.key.public_key() == held.cert.public_key(), owner
    # and a later bake that adds a node issues its keys the same way
    d = data("ha-stacked", "cluster.encryptionAlgorithm=RSA-2048")
    d["nodes"].append({"name": "cp-4", "role": "control-plane", "ip": "10.77.0.14"})
    grown, changes = reconcile(plan_from(d), bundle, now=now(), jobs=2)
    added = [
        held.key.public_key().public_numbers().n  # type: ignore[union-attr]
        for name, held in grown.leaves["cp-4"].items()
        if name != "join.conf"
    ]
    assert "join.conf" in grown.leaves["cp-4"]  # a joining control plane: its join key is ECDSA
    assert len(added) == len(set(added)) == len(changes) - 1 and not set(added) & numbers


# --------------------------------------------------------------------------------------------------
# On disk and back


def test_bundle_files_layout_and_modes(stacked: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = stacked
    fs = files(bundle, plan)
    by_path = {rel: mode for rel, _, mode in fs}
    assert len(by_path) == len(fs)
    for rel in ("bundle.json", "token", "pki/ca.key", "pki/sa.key", "pki/sa.pub", "pki/etcd/ca.key"):
        assert by_path[rel] == 0o600, rel
    for rel in ("pki/ca.crt", "pki/front-proxy-ca.crt", "pki/etcd/ca.crt", "nodes/cp-2/apiserver.crt"):
        assert by_path[rel] == 0o600, rel  # the README: every file of the output tree is 0600
    assert by_path["nodes/cp-3/etcd/peer.key"] == 0o600
    assert by_path["nodes/cp-1/kubeconfig/super-admin.key"] == 0o600
    assert by_path["nodes/_operator/kubeconfig/admin.crt"] == 0o600
    assert set(by_path.values()) == {0o600}
    workers = sorted(rel for rel in by_path if rel.startswith("nodes/worker-"))
    assert workers == [f"nodes/worker-{i}/kubeconfig/join.{ext}" for i in (1, 2) for ext in ("crt", "key")]
    for rel, content, mode in fs:
        if b"PRIVATE KEY" in content:
            assert mode == 0o600, rel
    assert files(bundle, plan) == fs  # stable order


@pytest.mark.parametrize(
    "damage",
    ["none", "bytes", "mode", "missing", "stray file", "stray file deep", "link to a file", "link to a dir"],
)
def test_unchanged_sees_every_difference_on_disk(
    stacked: tuple[ClusterPlan, Bundle], tmp_path: Path, damage: str
) -> None:
    """Whether the next bake writes the bundle again: only when the directory holds exactly its files,
    bytes and modes (a link counts as what it points to, as a file does; a link to a directory is not
    entered, as before)."""
    plan, bundle = stacked
    fs = files(bundle, plan)
    root = tmp_path / "sec"
    assert bundledir.save(root, fs)
    leaf = root / "nodes" / "cp-2" / "apiserver.crt"
    if damage == "bytes":
        leaf.write_bytes(leaf.read_bytes().replace(b"-----END", b"-----end"))
    elif damage == "mode":
        leaf.chmod(0o640)
    elif damage == "missing":
        leaf.unlink()
    elif damage == "stray file":
        (root / "notes.txt").write_text("left by hand\n")
    elif damage == "stray file deep":
        (root / "nodes" / "cp-2" / "etcd" / "old.crt").write_bytes(b"x")
    elif damage == "link to a file":
        (root / "nodes" / "cp-2" / "copy.crt").symlink_to(leaf)
    elif damage == "link to a dir":
        (root / "nodes" / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    assert bundledir.unchanged(root, fs) is (damage in ("none", "link to a dir"))
    if damage != "none":
        assert bundledir.save(root, fs) is (damage != "link to a dir")
    assert snapshot(root) == {rel: data for rel, data, _ in fs}


def test_bundle_json_is_the_leaf_index() -> None:
    """bundle.json names every leaf's files by kubeadm's names under pki/ (etcd/server, kubeconfig/admin)."""
    plan = _seed_plan()
    bundle, _ = reconcile(plan, None, now=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    (rel, content, mode), *_ = files(bundle, plan)
    assert (rel, mode) == ("bundle.json", 0o600)
    assert (
        content.decode()
        == """\
{
  "algorithm": "ECDSA-P256",
  "cluster": "single-node",
  "created": 1893553445,
  "encryptionKey": "encryption-key",
  "format": 1,
  "leaves": {
    "_operator": {
      "admin.conf": "kubeconfig/admin"
    },
    "dev-1": {
      "admin.conf": "kubeconfig/admin",
      "apiserver": "apiserver",
      "apiserver-etcd-client": "apiserver-etcd-client",
      "apiserver-kubelet-client": "apiserver-kubelet-client",
      "controller-manager.conf": "kubeconfig/controller-manager",
      "etcd-healthcheck-client": "etcd/healthcheck-client",
      "etcd-peer": "etcd/peer",
      "etcd-server": "etcd/server",
      "front-proxy-client": "front-proxy-client",
      "kubelet.conf": "kubeconfig/kubelet",
      "scheduler.conf": "kubeconfig/scheduler",
      "super-admin.conf": "kubeconfig/super-admin"
    }
  },
  "reportKey": "report-key",
  "seedServer": true
}
"""
    )


def test_round_trip_is_byte_identical(
    stacked: tuple[ClusterPlan, Bundle], stacked_on_disk: Path, stacked_loaded: Bundle
) -> None:
    plan, bundle = stacked
    root, loaded = stacked_on_disk, stacked_loaded
    assert {oct(p.stat().st_mode & 0o777) for p in root.rglob("*.key")} == {"0o600"}
    assert {oct(p.stat().st_mode & 0o777) for p in root.rglob("*.crt")} == {"0o600"}
    assert files(loaded, plan) == files(bundle, plan)
    assert (loaded.token, loaded.created, loaded.algorithm) == (
        bundle.token,
        bundle.created,
        bundle.algorithm,
    )
    assert leaves(loaded) == leaves(bundle)
    assert {n: c.cert_pem + c.key_pem for n, c in loaded.cas.items()} == {
        n: c.cert_pem + c.key_pem for n, c in bundle.cas.items()
    }
    assert snapshot(root) == {rel: content for rel, content, _ in files(loaded, plan)}


def test_every_file_is_read_through_the_reader(seeded: tuple[ClusterPlan, Bundle], tmp_path: Path) -> None:
    """A sealed bundle's files are opened by its reader (age files decrypted in memory): nothing may be
    read from the disk behind its back. Here the files exist only in the reader."""
    plan, bundle = seeded
    content = {tmp_path / rel: data for rel, data, _ in files(bundle, plan)}
    asked: list[Path] = []

    def read(path: Path) -> bytes:
        asked.append(path)
        if path not in content:
            raise FileNotFoundError(path)
        return content[path]

    loaded = load_bundle(tmp_path, read)
    assert loaded is not None and files(loaded, plan) == files(bundle, plan)
    assert sorted(asked) == sorted(content)


def _seal(root: Path, recipient: Any) -> None:
    """What a sealed bundle holds on disk: each secret file as `<name>.age` (age's format), the rest clear."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if secrets.secret_file(str(path.relative_to(root))):
            path.with_name(path.name + ".age").write_bytes(pyrage.encrypt(path.read_bytes(), [recipient]))
            path.unlink()


def _sealed_bundle(tmp_path: Path, plan: ClusterPlan, bundle: Bundle) -> tuple[Path, Any]:
    """The bundle written under tmp_path/secrets and sealed to a new identity: (its root, the identity)."""
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    identity = pyrage.x25519.Identity.generate()
    _seal(root, identity.to_public())
    return root, identity


def test_a_sealed_bundle_is_read_with_the_identity_named_by_the_environment(
    seeded: tuple[ClusterPlan, Bundle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, bundle = seeded
    root, identity = _sealed_bundle(tmp_path, plan, bundle)
    assert not list(root.rglob("*.key")) and (root / "pki/ca.key.age").exists()
    (tmp_path / "identity").write_text(str(identity) + "\n")
    monkeypatch.setenv("BAKE_SECRETS_IDENTITY", str(tmp_path / "identity"))
    loaded = load_bundle(root)
    assert loaded is not None and files(loaded, plan) == files(bundle, plan)


def test_a_passphrase_bundle_is_opened_with_the_environments_passphrase_never_a_terminals(
    small: tuple[ClusterPlan, Bundle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundle's own key (`identity.age`, sealed with the passphrase) opens the other files."""
    plan, bundle = small
    root, own = _sealed_bundle(tmp_path, plan, bundle)
    sealed_own = pyrage.passphrase.encrypt(str(own).encode() + b"\n", "correct horse")
    (root / "identity.age").write_bytes(sealed_own)
    monkeypatch.delenv("BAKE_SECRETS_IDENTITY", raising=False)
    monkeypatch.setenv("BAKE_SECRETS_PASSPHRASE", "correct horse")
    loaded = load_bundle(root)
    assert loaded is not None and files(loaded, plan) == files(bundle, plan)
    # without the variable a bake does not ask, even on a terminal that would answer
    monkeypatch.delenv("BAKE_SECRETS_PASSPHRASE")
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "correct horse")
    with pytest.raises(SecretsError) as info:
        load_bundle(root)
    assert [str(p) for p in info.value.problems] == [
        f"{root / 'identity.age'}: the bundle is encrypted with a passphrase: set BAKE_SECRETS_PASSPHRASE, "
        "give --passphrase-file, run on a terminal to be asked, or give an --identity; nothing was written"
    ]


def test_a_sealed_file_beside_its_clear_copy_is_refused(
    small: tuple[ClusterPlan, Bundle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`token` and `token.age` both there: which one holds the secret is not guessed. A link to nothing
    is no clear copy."""
    plan, bundle = small
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    identity = pyrage.x25519.Identity.generate()
    _seal(root, identity.to_public())
    (tmp_path / "identity").write_text(str(identity) + "\n")
    monkeypatch.setenv("BAKE_SECRETS_IDENTITY", str(tmp_path / "identity"))
    clear_key = root / "pki" / "ca.key"
    clear_key.symlink_to(tmp_path / "nowhere")
    loaded = load_bundle(root)
    assert loaded is not None and files(loaded, plan) == files(bundle, plan)
    clear_key.unlink()
    clear_key.write_bytes(bundle.cas["ca"].key_pem)
    with pytest.raises(SecretsError) as info:
        load_bundle(root)
    assert [str(p) for p in info.value.problems] == [
        f"{clear_key}: both ca.key and ca.key.age exist; remove one"
    ]


def test_missing_bundle_directory_is_none(tmp_path: Path) -> None:
    assert load_bundle(tmp_path / "nope") is None


def test_second_reconcile_reuses_everything(
    stacked: tuple[ClusterPlan, Bundle], stacked_loaded: Bundle
) -> None:
    plan, bundle = stacked
    for existing in (bundle, stacked_loaded):
        again, changes = reconcile(plan, existing, now=now())
        assert changes == []
        assert files(again, plan) == files(bundle, plan)


def test_reconcile_judges_reuse_at_its_own_now(small: tuple[ClusterPlan, Bundle]) -> None:
    """A bake with a fixed clock (past or future) must not re-issue everything each time."""
    plan, _ = small
    for fixed in (datetime(2031, 1, 1, tzinfo=UTC), now() - timedelta(days=400)):
        first, _ = reconcile(plan, None, now=fixed)
        again, changes = reconcile(plan, first, now=fixed)
        assert [str(c) for c in changes] == []
        assert files(again, plan) == files(first, plan)


def test_leaves_near_expiry_are_renewed_and_reported(small: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = small
    later = now() + timedelta(days=340)  # 25 days before the 1-year leaves expire
    renewed, changes = reconcile(plan, bundle, now=later)
    assert changes and all("expires" in c.what and c.what.startswith("re-issued ") for c in changes)
    assert {(c.owner, c.what.split()[1].rstrip(":")) for c in changes} == set(leaves(bundle))
    assert {n: c.cert_pem for n, c in renewed.cas.items()} == {n: c.cert_pem for n, c in bundle.cas.items()}
    assert renewed.token == bundle.token


def test_a_leaf_is_kept_until_inside_the_renewal_window(small: tuple[ClusterPlan, Bundle]) -> None:
    """cluster.certificateRenewal.before is 720h (30 days) by default: a leaf with exactly that much left
    is kept, one second less and it is re-issued."""
    plan, bundle = small
    admin = bundle.leaf(secrets.OPERATOR, "admin.conf").cert.not_valid_after_utc
    kept, changes = reconcile(plan, bundle, now=admin - timedelta(days=30))
    assert changes == [] and files(kept, plan) == files(bundle, plan)
    _, changes = reconcile(plan, bundle, now=admin - timedelta(days=30) + timedelta(seconds=1))
    assert (
        Change(
            secrets.OPERATOR,
            f"re-issued admin.conf: expires {admin:%Y-%m-%d %H:%M} UTC, within "
            "cluster.certificateRenewal.before (720h)",
        )
        in changes
    )


BEFORE = "cluster.certificateRenewal.before"
OFF = "at most the last third of its lifetime with renewal off"
JOIN = "the last third of its join window"


@pytest.mark.parametrize(
    ("renewal", "lifetime", "join", "expect"),
    [
        ({}, timedelta(days=365), False, (timedelta(hours=720), f"{BEFORE} (720h)")),
        ({"before": "2000h"}, timedelta(days=30), False, (timedelta(hours=2000), f"{BEFORE} (2000h)")),
        ({"enabled": False, "before": "2000h"}, timedelta(hours=240), False,
         (timedelta(hours=80), f"{BEFORE} (2000h), {OFF}")),
        ({"enabled": False}, timedelta(days=365), False, (timedelta(hours=720), f"{BEFORE} (720h), {OFF}")),
        ({}, timedelta(hours=720), True, (timedelta(hours=240), JOIN)),
        ({}, timedelta(hours=2160), True, (timedelta(days=30), JOIN)),
    ],
)  # fmt: skip
def test_due_window(
    renewal: dict[str, Any], lifetime: timedelta, join: bool, expect: tuple[timedelta, str]
) -> None:
    """With renewal on, the nodes' own window even beyond a third of the life (they renew themselves); off,
    at most the last third; a join credential the last third of its window, at most 30 days."""
    settings = CertificateRenewal(**renewal)
    if join:
        assert secrets.due_window(settings, lifetime, join_credential=True) == expect
    else:
        assert secrets.due_window(settings, lifetime) == expect


def test_with_renewal_off_a_window_longer_than_the_leaves_is_capped() -> None:
    """cluster.certificateRenewal.before (720h by default) may exceed a 240h validity when renewal is off:
    a bake then re-issues in the last third of the leaf's life (80h), not at every bake."""
    sets = ["cluster.encryptionAlgorithm=ECDSA-P256", "cluster.certificateValidityPeriod=240h",
            "cluster.certificateRenewal.enabled=false"]  # fmt: skip
    plan = build_plan(load_profile("single-node", sets))
    start = now()
    first, _ = reconcile(plan, None, now=start)
    again, changes = reconcile(plan, first, now=start + timedelta(days=1))  # 9 days left
    assert changes == [] and files(again, plan) == files(first, plan)
    _, changes = reconcile(plan, first, now=start + timedelta(days=7))  # 3 days left, 72h < 80h
    assert changes and all(
        c.what.endswith(
            "within cluster.certificateRenewal.before (720h), at most the last third of its lifetime with "
            "renewal off"
        )
        for c in changes
    ), [str(c) for c in changes]


# --------------------------------------------------------------------------------------------------
# Join credentials (cluster.join: certificate): a leaf like the others, valid for cluster.joinWindow


@pytest.fixture
def joining(issue: Issue) -> tuple[ClusterPlan, Bundle]:
    """single-master (1 control plane, 2 workers), cheap ECDSA keys, the default 720h join window."""
    return issue("single-master", "cluster.encryptionAlgorithm=ECDSA-P256")


def _join_cert(bundle: Bundle, node: str) -> x509.Certificate:
    return bundle.leaf(node, "join.conf").cert


def test_join_credential_is_the_nodes_own_identity(joining: tuple[ClusterPlan, Bundle]) -> None:
    _, bundle = joining
    for node in ("worker-1", "worker-2"):
        cert = _join_cert(bundle, node)
        assert cert.subject.rfc4514_string() == f"CN=system:node:{node},O=system:nodes"
        cert.verify_directly_issued_by(bundle.cas["ca"].cert)
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=720, minutes=5)
    assert "join.conf" not in bundle.leaves["cp-1"]  # the init node joins nothing


def test_join_credentials_are_reused_until_the_last_third_of_the_window(
    joining: tuple[ClusterPlan, Bundle], tmp_path: Path
) -> None:
    plan, bundle = joining
    issued = _join_cert(bundle, "worker-1").not_valid_before_utc + timedelta(minutes=5)
    loaded = load_bundle(write_bundle(tmp_path / "secrets", bundle, plan))
    assert loaded is not None
    for later in (issued + timedelta(days=1), issued + timedelta(days=19)):
        again, changes = reconcile(plan, loaded, now=later)
        assert changes == [] and files(again, plan) == files(bundle, plan), later
    # 720h = 30 days: inside the last 10 days (a third) a bake issues a new one, and says so
    renewed, changes = reconcile(plan, loaded, now=issued + timedelta(days=21))
    assert sorted((c.owner, c.what.split(":")[0]) for c in changes) == [
        ("worker-1", "re-issued join.conf"),
        ("worker-2", "re-issued join.conf"),
    ]
    not_after = _join_cert(bundle, "worker-1").not_valid_after_utc
    assert {c.what for c in changes} == {
        f"re-issued join.conf: expires {not_after:%Y-%m-%d %H:%M} UTC, "
        "within the last third of its join window"
    }
    assert renewed.leaf("worker-1", "join.conf").cert_pem != bundle.leaf("worker-1", "join.conf").cert_pem
    assert {k: v for k, v in leaves(renewed).items() if k[1] != "join.conf"} == {
        k: v for k, v in leaves(bundle).items() if k[1] != "join.conf"
    }
    expired, changes = reconcile(plan, loaded, now=issued + timedelta(days=31))
    assert {c.owner for c in changes if "expired" in c.what} == {"worker-1", "worker-2"}
    fresh = _join_cert(expired, "worker-1")
    assert fresh.not_valid_after_utc == (issued + timedelta(days=31 + 30)).replace(microsecond=0)


def test_a_changed_join_window_reissues_the_join_credentials(joining: tuple[ClusterPlan, Bundle]) -> None:
    _, bundle = joining
    for window in ("168h", "2160h"):
        plan = build_plan(
            load_profile(
                "single-master", ["cluster.encryptionAlgorithm=ECDSA-P256", f"cluster.joinWindow={window}"]
            )
        )
        changed, changes = reconcile(plan, bundle, now=now())
        assert sorted(str(c) for c in changes) == [
            f"worker-1: re-issued join.conf: cluster.joinWindow is now {window}",
            f"worker-2: re-issued join.conf: cluster.joinWindow is now {window}",
        ]
        cert = _join_cert(changed, "worker-2")
        hours = int(window.removesuffix("h"))
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=hours, minutes=5)


def test_a_renamed_worker_gets_a_credential_for_its_new_name(joining: tuple[ClusterPlan, Bundle]) -> None:
    _, bundle = joining
    d = data("single-master", "cluster.encryptionAlgorithm=ECDSA-P256")
    d["nodes"][2]["name"] = "edge-7"
    renamed, changes = reconcile(plan_from(d), bundle, now=now())
    assert sorted(str(c) for c in changes) == [
        "edge-7: issued join.conf",
        "worker-2: dropped the node's certificates (node left the profile)",
    ]
    assert _join_cert(renamed, "edge-7").subject.rfc4514_string() == "CN=system:node:edge-7,O=system:nodes"
    assert "worker-2" not in renamed.leaves


def test_a_carried_over_leaf_the_plan_no_longer_names_round_trips(
    joining: tuple[ClusterPlan, Bundle], tmp_path: Path
) -> None:
    """bake --only after cluster.join=token: the workers' join credentials are carried over untouched
    though the plan names them no more; they are written and read back like any leaf."""
    _, bundle = joining
    plan = build_plan(
        load_profile("single-master", ["cluster.encryptionAlgorithm=ECDSA-P256", "cluster.join=token"])
    )
    carried, changes = reconcile(plan, bundle, now=now(), only={"cp-1"})
    assert changes == [] and carried.leaf("worker-1", "join.conf") == bundle.leaf("worker-1", "join.conf")
    loaded = load_bundle(write_bundle(tmp_path / "secrets", carried, plan))
    assert loaded is not None and leaves(loaded) == leaves(carried)


def test_token_mode_issues_no_join_credentials(joining: tuple[ClusterPlan, Bundle]) -> None:
    _, bundle = joining
    plan = build_plan(
        load_profile("single-master", ["cluster.encryptionAlgorithm=ECDSA-P256", "cluster.join=token"])
    )
    assert not any(s.name == "join.conf" for n in plan.nodes for s in required_specs(plan, n))
    switched, changes = reconcile(plan, bundle, now=now())
    assert sorted(str(c) for c in changes) == [
        "worker-1: dropped join.conf (no longer needed)",
        "worker-2: dropped join.conf (no longer needed)",
    ]
    assert set(switched.leaves) == {"cp-1", secrets.OPERATOR}
    assert switched.token == bundle.token


# --------------------------------------------------------------------------------------------------
# Profile changes: only what the change needs is re-issued, and it is reported


def test_adding_a_node_issues_only_its_certificates(
    stacked: tuple[ClusterPlan, Bundle], stacked_loaded: Bundle
) -> None:
    _, bundle = stacked
    d = data("ha-stacked")
    d["nodes"].append({"name": "cp-4", "role": "control-plane", "ip": "10.77.0.14"})
    d["nodes"].append({"name": "worker-3", "role": "worker", "ip": "10.77.0.23"})
    plan2 = plan_from(d)
    grown, changes = reconcile(plan2, stacked_loaded, now=now())
    assert owners(changes) == {"cp-4", "worker-3"}
    wanted = {s.name for s in required_specs(plan2, plan2.node("cp-4"))}
    assert {c.what for c in changes if c.owner == "cp-4"} == {f"issued {name}" for name in wanted}
    assert "super-admin.conf" not in wanted and "etcd-server" in wanted and "join.conf" in wanted
    assert [c.what for c in changes if c.owner == "worker-3"] == ["issued join.conf"]
    old = leaves(bundle)
    new = leaves(grown)
    assert {k: v for k, v in new.items() if k[0] not in ("cp-4", "worker-3")} == old
    assert grown.token == bundle.token and grown.sa_key_pem == bundle.sa_key_pem
    assert set(grown.leaves["worker-3"]) == {"join.conf"}


def test_changing_a_node_ip_reissues_its_server_certificates_only(
    stacked: tuple[ClusterPlan, Bundle], stacked_loaded: Bundle
) -> None:
    _, bundle = stacked
    d = data("ha-stacked")
    d["nodes"][1]["ip"] = "10.77.0.14"
    moved, changes = reconcile(plan_from(d), stacked_loaded, now=now())
    assert owners(changes) == {"cp-2"}
    reissued = {c.what.split()[1].rstrip(":") for c in changes}
    assert reissued == {"apiserver", "etcd-server", "etcd-peer"}
    for c in changes:
        assert c.what.startswith("re-issued ") and "does not cover SAN 10.77.0.14" in c.what, c
    old, new = leaves(bundle), leaves(moved)
    assert {k for k in old if old[k] != new[k]} == {("cp-2", n) for n in reissued}
    for name in reissued:
        assert "10.77.0.14" in san_ips(moved.leaf("cp-2", name).cert)


def test_new_api_server_san_reissues_every_apiserver_only(
    stacked: tuple[ClusterPlan, Bundle], stacked_loaded: Bundle
) -> None:
    _, bundle = stacked
    d = data("ha-stacked")
    d["cluster"]["apiServer"]["certSANs"] = ["api.example.com", "10.77.0.200"]
    grown, changes = reconcile(plan_from(d), stacked_loaded, now=now())
    assert {(c.owner, c.what.split()[1].rstrip(":")) for c in changes} == {
        ("cp-1", "apiserver"),
        ("cp-2", "apiserver"),
        ("cp-3", "apiserver"),
    }
    for c in changes:
        assert c.what == (
            "re-issued apiserver: certificate does not cover SAN api.example.com; "
            "certificate does not cover SAN 10.77.0.200"
        )
    old, new = leaves(bundle), leaves(grown)
    assert {k for k in old if old[k] != new[k]} == {
        ("cp-1", "apiserver"),
        ("cp-2", "apiserver"),
        ("cp-3", "apiserver"),
    }


def test_removing_a_node_drops_its_certificates(
    stacked: tuple[ClusterPlan, Bundle], stacked_loaded: Bundle
) -> None:
    _, bundle = stacked
    d = data("ha-stacked")
    d["nodes"] = [n for n in d["nodes"] if n["name"] != "cp-3"]
    plan2 = plan_from(d)
    shrunk, changes = reconcile(plan2, stacked_loaded, now=now())
    assert len(changes) == 1 and changes[0].owner == "cp-3" and "dropped" in changes[0].what
    assert "cp-3" not in shrunk.leaves
    assert leaves(shrunk) == {k: v for k, v in leaves(bundle).items() if k[0] != "cp-3"}
    assert not any(rel.startswith("nodes/cp-3/") for rel, _, _ in files(shrunk, plan2))


def test_new_init_node_gets_init_only_kubeconfigs(
    stacked: tuple[ClusterPlan, Bundle], stacked_loaded: Bundle
) -> None:
    d = data("ha-stacked")
    d["nodes"] = [n for n in d["nodes"] if n["name"] != "cp-1"]
    _, changes = reconcile(plan_from(d), stacked_loaded, now=now())
    assert {str(c) for c in changes if c.owner == "cp-2"} == {
        "cp-2: issued super-admin.conf",
        "cp-2: issued kubelet.conf",
        "cp-2: dropped join.conf (no longer needed)",  # the init node joins nothing
    }
    assert owners(changes) == {"cp-1", "cp-2"}


def test_only_carries_other_nodes_over(stacked: tuple[ClusterPlan, Bundle], stacked_loaded: Bundle) -> None:
    _, bundle = stacked
    d = data("ha-stacked")
    d["nodes"][0]["ip"] = "10.77.0.15"  # cp-1 moves, but only cp-2 is re-rendered
    result, changes = reconcile(plan_from(d), stacked_loaded, now=now(), only={"cp-2"})
    assert changes == []
    assert leaves(result) == leaves(bundle)


# --------------------------------------------------------------------------------------------------
# Rotations


def test_rotate_token_changes_only_the_token(stacked: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = stacked
    rotated, changes = reconcile(plan, bundle, now=now(), rotate_token=True)
    assert changes == [Change("bundle", "rotated the bootstrap token")]
    assert rotated.token != bundle.token and pki.TOKEN_RE.match(rotated.token)
    before = [f for f in files(bundle, plan) if f[0] != "token"]
    assert [f for f in files(rotated, plan) if f[0] != "token"] == before


def test_rotate_ca_replaces_every_ca_and_leaf(small: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = small
    rotated, changes = reconcile(plan, bundle, now=now(), rotate_ca=True)
    assert len(changes) == 1 and "rotated every CA" in changes[0].what and "token kept" in changes[0].what
    assert rotated.token == bundle.token
    for name, ca in rotated.cas.items():
        assert ca.cert_pem != bundle.cas[name].cert_pem and ca.key_pem != bundle.cas[name].key_pem
    assert rotated.sa_key_pem != bundle.sa_key_pem
    assert rotated.discovery_hash != bundle.discovery_hash
    old = leaves(bundle)
    for key, (cert_pem, key_pem) in leaves(rotated).items():
        assert cert_pem != old[key][0] and key_pem != old[key][1]
    for node in plan.nodes:
        for spec in required_specs(plan, node):
            assert spec.ca is not None
            rotated.leaf(node.name, spec.name).cert.verify_directly_issued_by(rotated.cas[spec.ca].cert)
    both, changes = reconcile(plan, bundle, now=now(), rotate_ca=True, rotate_token=True)
    assert both.token != bundle.token and pki.TOKEN_RE.match(both.token)
    assert changes == [Change("bundle", "rotated every CA, the service-account key and bootstrap token")]


def test_algorithm_change_needs_rotate_ca(small: tuple[ClusterPlan, Bundle]) -> None:
    _, bundle = small
    rsa_plan = build_plan(load_profile("single-node", ["cluster.encryptionAlgorithm=RSA-2048"]))
    with pytest.raises(SecretsError) as info:
        reconcile(rsa_plan, bundle, now=now())
    assert list(info.value.problems) == [
        Problem(
            "cluster.encryptionAlgorithm",
            "the profile asks for RSA-2048 but the secrets bundle holds ECDSA-P256 keys; pass --rotate-ca to "
            "regenerate every CA and key",
        )
    ]
    p384_plan = build_plan(load_profile("single-node", ["cluster.encryptionAlgorithm=ECDSA-P384"]))
    rotated, _ = reconcile(p384_plan, bundle, now=now(), rotate_ca=True)
    assert rotated.algorithm is KeyAlgorithm.ECDSA_P384
    assert all(KeyAlgorithm.of(k.key) is KeyAlgorithm.ECDSA_P384 for k in rotated.cas.values())
    assert all(
        KeyAlgorithm.of(h.key) is KeyAlgorithm.ECDSA_P384 for c in rotated.leaves.values() for h in c.values()
    )


# --------------------------------------------------------------------------------------------------
# The key of the Secrets in etcd: created once, reused byte for byte, kept by --rotate-ca


def test_encryption_key_is_kept_reused_and_survives_rotate_ca(
    small: tuple[ClusterPlan, Bundle], tmp_path: Path
) -> None:
    plan, bundle = small
    assert bundle.encryption_key is not None and len(bundle.encryption_key) == 32
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    assert base64.b64decode((root / "encryption-key").read_bytes()) == bundle.encryption_key
    assert (root / "encryption-key").stat().st_mode & 0o777 == 0o600
    loaded = load_bundle(root)
    assert loaded is not None and loaded.encryption_key == bundle.encryption_key
    again, changes = reconcile(plan, loaded, now=now())
    assert again.encryption_key == bundle.encryption_key and changes == []
    rotated, _ = reconcile(plan, loaded, now=now(), rotate_ca=True)
    assert rotated.cas["ca"].cert_pem != bundle.cas["ca"].cert_pem
    assert rotated.encryption_key == bundle.encryption_key  # stored Secrets stay readable


def test_a_bundle_from_before_encryption_gets_a_key_and_says_so(
    small: tuple[ClusterPlan, Bundle], tmp_path: Path
) -> None:
    plan, bundle = small
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    (root / "encryption-key").unlink()
    meta = json.loads((root / "bundle.json").read_text())
    del meta["encryptionKey"]
    (root / "bundle.json").write_text(json.dumps(meta))
    old = load_bundle(root)
    assert old is not None and old.encryption_key is None
    upgraded, changes = reconcile(plan, old, now=now())
    assert upgraded.encryption_key is not None and len(upgraded.encryption_key) == 32
    assert [str(c) for c in changes] == ["bundle: created the key Secrets are encrypted with in etcd"]
    assert leaves(upgraded) == leaves(old)


# --------------------------------------------------------------------------------------------------
# Corrupt bundles are errors, never repaired


def _truncate_key(root: Path, foreign: Bundle) -> None:
    p = root / "nodes/cp-1/apiserver.key"
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _truncate_cert(root: Path, foreign: Bundle) -> None:
    for node in ("cp-1", "cp-2"):
        p = root / f"nodes/{node}/kubeconfig/scheduler.crt"
        p.write_bytes(p.read_bytes()[:100])


def _swap_keys(root: Path, foreign: Bundle) -> None:
    a, b = root / "nodes/cp-1/apiserver.key", root / "nodes/cp-2/apiserver.key"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)


def _foreign_leaf(root: Path, foreign: Bundle) -> None:
    held = foreign.leaf("dev-1", "apiserver")
    (root / "nodes/cp-2/apiserver.crt").write_bytes(held.cert_pem)
    (root / "nodes/cp-2/apiserver.key").write_bytes(held.key_pem)


def _foreign_ca(root: Path, foreign: Bundle) -> None:
    (root / "pki/ca.crt").write_bytes(foreign.cas["ca"].cert_pem)
    (root / "pki/ca.key").write_bytes(foreign.cas["ca"].key_pem)


def _garbage_json(root: Path, foreign: Bundle) -> None:
    (root / "bundle.json").write_bytes(b"{not json\x00")


def _missing_bundle_json(root: Path, foreign: Bundle) -> None:
    (root / "bundle.json").unlink()


def _future_format(root: Path, foreign: Bundle) -> None:
    meta = json.loads((root / "bundle.json").read_text())
    meta["format"] = 2
    (root / "bundle.json").write_text(json.dumps(meta))


def _json_not_a_mapping(root: Path, foreign: Bundle) -> None:
    (root / "bundle.json").write_text("[1, 2]\n")


def _missing_token(root: Path, foreign: Bundle) -> None:
    (root / "token").unlink()


def _bad_token(root: Path, foreign: Bundle) -> None:
    (root / "token").write_text("ABCDEF.0123456789abcdef\n")


def _token_not_utf8(root: Path, foreign: Bundle) -> None:
    (root / "token").write_bytes(b"\xffbcdef.0123456789abcdef\n")


def _missing_sa_pub(root: Path, foreign: Bundle) -> None:
    (root / "pki/sa.pub").unlink()


def _missing_sa_key(root: Path, foreign: Bundle) -> None:
    (root / "pki/sa.key").unlink()


def _garbage_sa_key(root: Path, foreign: Bundle) -> None:
    (root / "pki/sa.key").write_bytes(b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")


def _sa_mismatch(root: Path, foreign: Bundle) -> None:
    (root / "pki/sa.pub").write_bytes(foreign.sa_pub_pem)


def _ca_key_mismatch(root: Path, foreign: Bundle) -> None:
    shutil.copy(root / "pki/front-proxy-ca.key", root / "pki/ca.key")


def _missing_leaf(root: Path, foreign: Bundle) -> None:
    (root / "nodes/cp-3/etcd/peer.crt").unlink()


def _missing_leaf_key(root: Path, foreign: Bundle) -> None:
    (root / "nodes/cp-2/kubeconfig/admin.key").unlink()


def _encryption_key_with_junk(root: Path, foreign: Bundle) -> None:
    """32 bytes in base64 once the `*` is skipped, as a lenient decoder would."""
    encoded = (root / "encryption-key").read_bytes().strip()
    (root / "encryption-key").write_bytes(encoded[:8] + b"*" + encoded[8:] + b"\n")


def _unreadable_leaf(root: Path, foreign: Bundle) -> None:
    (root / "nodes/cp-1/apiserver.crt").unlink()
    (root / "nodes/cp-1/apiserver.crt").mkdir()  # read() fails with EISDIR, not ENOENT


def _wrong_algorithm(root: Path, foreign: Bundle) -> None:
    meta = json.loads((root / "bundle.json").read_text())
    meta["algorithm"] = "RSA-2048"
    (root / "bundle.json").write_text(json.dumps(meta))


def _path_escape(root: Path, foreign: Bundle) -> None:
    meta = json.loads((root / "bundle.json").read_text())
    meta["leaves"]["cp-1"]["apiserver"] = "../../pki/ca"
    (root / "bundle.json").write_text(json.dumps(meta))


def _owner_escape(root: Path, foreign: Bundle) -> None:
    meta = json.loads((root / "bundle.json").read_text())
    meta["leaves"]["../.."] = {"apiserver": "pki/ca"}
    (root / "bundle.json").write_text(json.dumps(meta))


def _absolute_owner(root: Path, foreign: Bundle) -> None:
    meta = json.loads((root / "bundle.json").read_text())
    meta["leaves"]["/etc"] = {"apiserver": "ssl/ca"}
    (root / "bundle.json").write_text(json.dumps(meta))


def _absolute_base(root: Path, foreign: Bundle) -> None:
    meta = json.loads((root / "bundle.json").read_text())
    meta["leaves"]["cp-1"]["apiserver"] = "/etc/ssl/ca"
    (root / "bundle.json").write_text(json.dumps(meta))


def _leaf_as_ca(root: Path, foreign: Bundle) -> None:
    shutil.copy(root / "nodes/cp-1/apiserver.crt", root / "pki/etcd/ca.crt")
    shutil.copy(root / "nodes/cp-1/apiserver.key", root / "pki/etcd/ca.key")


def _short_encryption_key(root: Path, foreign: Bundle) -> None:
    (root / "encryption-key").write_bytes(base64.b64encode(b"\0" * 16) + b"\n")


def _missing_encryption_key(root: Path, foreign: Bundle) -> None:
    (root / "encryption-key").unlink()


CORRUPTIONS = [
    pytest.param(_truncate_key, "secrets/nodes/cp-1/apiserver.key", "not a PEM private key: "),
    pytest.param(_truncate_cert, "secrets/nodes/cp-1/kubeconfig/scheduler.crt", "not a PEM certificate: "),
    pytest.param(_swap_keys, "secrets/nodes/cp-1/apiserver", "the key does not belong to the certificate"),
    pytest.param(_foreign_leaf, "secrets/nodes/cp-2/apiserver.crt", "not signed by any CA of the bundle"),
    pytest.param(_foreign_ca, "secrets/nodes/cp-1/apiserver.crt", "not signed by any CA of the bundle"),
    pytest.param(_garbage_json, "secrets/bundle.json", "corrupt: "),
    pytest.param(_missing_bundle_json, "secrets/bundle.json", "missing"),
    pytest.param(_future_format, "secrets/bundle.json", "corrupt: unknown format 2"),
    pytest.param(_json_not_a_mapping, "secrets/bundle.json", "corrupt: unknown format [1, 2]"),
    pytest.param(_missing_token, "secrets/token", "missing"),
    pytest.param(_bad_token, "secrets/token", "not a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})"),
    pytest.param(_token_not_utf8, "secrets/token", "not a bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})"),
    pytest.param(_missing_sa_pub, "secrets/pki/sa.pub", "missing"),
    pytest.param(_missing_sa_key, "secrets/pki/sa.key", "missing"),
    pytest.param(_garbage_sa_key, "secrets/pki/sa.key", "not a PEM private key: "),
    pytest.param(_sa_mismatch, "secrets/pki/sa.pub", "does not match sa.key"),
    pytest.param(_ca_key_mismatch, "secrets/pki/ca", "the key does not belong to the certificate"),
    pytest.param(_missing_leaf, "secrets/nodes/cp-3/etcd/peer.crt", "missing"),
    pytest.param(_wrong_algorithm, "secrets/pki/ca.key", "is not RSA-2048"),
    pytest.param(_path_escape, "secrets/bundle.json", "bad leaf path cp-1/../../pki/ca"),
    pytest.param(_owner_escape, "secrets/bundle.json", "bad leaf path ../../pki/ca"),
    pytest.param(_absolute_owner, "secrets/bundle.json", "bad leaf path /etc/ssl/ca"),
    pytest.param(_absolute_base, "secrets/bundle.json", "bad leaf path cp-1//etc/ssl/ca"),
    pytest.param(_leaf_as_ca, "secrets/pki/etcd/ca.crt", "is not a CA"),
    pytest.param(_short_encryption_key, "secrets/encryption-key", "not 32 bytes in base64"),
    pytest.param(_missing_encryption_key, "secrets/encryption-key", "missing"),
    pytest.param(_missing_leaf_key, "secrets/nodes/cp-2/kubeconfig/admin.key", "missing"),
    pytest.param(_encryption_key_with_junk, "secrets/encryption-key", "not 32 bytes in base64"),
    pytest.param(_unreadable_leaf, "secrets/nodes/cp-1/apiserver.crt", "unreadable: Is a directory"),
]


@pytest.fixture
def corruptible(issue: Issue) -> tuple[ClusterPlan, Bundle, Bundle]:
    """ECDSA keys load ~1000x faster than RSA ones (OpenSSL validates RSA keys on load)."""
    plan, bundle = issue("ha-stacked", "cluster.encryptionAlgorithm=ECDSA-P256")
    _, foreign = issue("single-node", "cluster.encryptionAlgorithm=ECDSA-P256")  # other CAs
    return plan, bundle, foreign


@pytest.mark.parametrize(
    ("corrupt", "path", "needle"),
    CORRUPTIONS,
    ids=[getattr(c.values[0], "__name__", "?").strip("_") for c in CORRUPTIONS],
)
def test_corrupt_bundle_is_an_error_and_left_alone(
    corruptible: tuple[ClusterPlan, Bundle, Bundle],
    tmp_path: Path,
    corrupt: Callable[[Path, Bundle], None],
    path: str,
    needle: str,
) -> None:
    plan, bundle, foreign = corruptible
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    corrupt(root, foreign)
    before = snapshot(root)
    with pytest.raises(SecretsError) as info:
        load_bundle(root)
    problems = list(info.value.problems)
    assert any(needle in p.message for p in problems), [str(p) for p in problems]
    assert problems[-1] == HINT
    assert snapshot(root) == before  # never repaired
    hits = [p for p in problems if p.path == path]
    assert hits, [str(p) for p in problems]
    # the whole message; a parser's own words (after ": ") vary with the library's version
    prefix = needle.endswith(": ")
    assert any(p.message == needle or (prefix and p.message.startswith(needle)) for p in hits), hits


def test_corrupt_bundle_lists_every_problem(
    corruptible: tuple[ClusterPlan, Bundle, Bundle], tmp_path: Path
) -> None:
    plan, bundle, foreign = corruptible
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    corruptions = (_truncate_key, _missing_token, _missing_leaf, _foreign_leaf, _sa_mismatch, _truncate_cert)
    for corrupt in corruptions:
        corrupt(root, foreign)
    with pytest.raises(SecretsError) as info:
        load_bundle(root)
    got = [str(p) for p in info.value.problems]
    assert len(got) == 8, got
    assert any(p.startswith("secrets/nodes/cp-1/apiserver.key: not a PEM private key: ") for p in got)
    assert "secrets/token: missing" in got
    assert "secrets/nodes/cp-3/etcd/peer.crt: missing" in got
    assert "secrets/nodes/cp-2/apiserver.crt: not signed by any CA of the bundle" in got
    assert "secrets/pki/sa.pub: does not match sa.key" in got
    # a leaf after a bad one (by name) of the same node is still checked
    for node in ("cp-1", "cp-2"):
        where = f"secrets/nodes/{node}/kubeconfig/scheduler.crt"
        assert any(p.startswith(f"{where}: not a PEM certificate: ") for p in got), node
    # a bad path does not stop the node's other leaves either
    _path_escape(root, foreign)
    with pytest.raises(SecretsError) as info:
        load_bundle(root)
    assert "secrets/bundle.json: bad leaf path cp-1/../../pki/ca" in [str(p) for p in info.value.problems]
    assert "secrets/nodes/cp-1/kubeconfig/scheduler.crt" in {p.path for p in info.value.problems}


@pytest.mark.parametrize("corrupt", [_missing_sa_key, _missing_sa_pub], ids=["sa.key", "sa.pub"])
def test_a_missing_half_of_the_sa_pair_is_the_only_problem(
    corruptible: tuple[ClusterPlan, Bundle, Bundle], tmp_path: Path, corrupt: Callable[[Path, Bundle], None]
) -> None:
    """The other half is not compared with nothing."""
    plan, bundle, foreign = corruptible
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    corrupt(root, foreign)
    with pytest.raises(SecretsError) as info:
        load_bundle(root)
    missing = "secrets/pki/sa.key" if corrupt is _missing_sa_key else "secrets/pki/sa.pub"
    assert list(info.value.problems) == [Problem(missing, "missing"), HINT]


def test_a_broken_ca_does_not_stop_the_others(
    corruptible: tuple[ClusterPlan, Bundle, Bundle], tmp_path: Path
) -> None:
    """The cluster CA's key replaced: its leaves are refused, the front-proxy and etcd CAs' are still read."""
    plan, bundle, foreign = corruptible
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    _ca_key_mismatch(root, foreign)
    with pytest.raises(SecretsError) as info:
        load_bundle(root)
    problems = info.value.problems
    assert problems[0] == Problem("secrets/pki/ca", "the key does not belong to the certificate")
    unsigned = {p.path for p in problems[1:-1]}
    assert all(p.message == "not signed by any CA of the bundle" for p in problems[1:-1])
    assert "secrets/nodes/cp-1/apiserver.crt" in unsigned
    assert not [p for p in unsigned if "front-proxy-client" in p or "/etcd/" in p or "etcd-client" in p]


# --------------------------------------------------------------------------------------------------
# Which certificates each role needs


def _names(plan: ClusterPlan, node: str) -> set[str]:
    return {s.name for s in required_specs(plan, plan.node(node))}


KUBECONFIGS_JOIN = {"admin.conf", "controller-manager.conf", "scheduler.conf"}
KUBECONFIGS_INIT = KUBECONFIGS_JOIN | {"super-admin.conf", "kubelet.conf"}
CP_CERTS = {"apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client"}
ETCD_CERTS = {"etcd-server", "etcd-peer", "etcd-healthcheck-client"}


def test_required_specs_external_etcd() -> None:
    plan = build_plan(load_profile("ha-external-etcd"))
    assert _names(plan, "worker-1") == {"join.conf"}
    assert _names(plan, "etcd-2") == ETCD_CERTS
    assert _names(plan, "cp-1") == CP_CERTS | KUBECONFIGS_INIT
    assert _names(plan, "cp-2") == CP_CERTS | KUBECONFIGS_JOIN | {"join.conf"}


def test_required_specs_stacked() -> None:
    plan = build_plan(load_profile("ha-stacked"))
    assert _names(plan, "worker-2") == {"join.conf"}
    assert _names(plan, "cp-1") == CP_CERTS | KUBECONFIGS_INIT | ETCD_CERTS
    assert _names(plan, "cp-3") == CP_CERTS | KUBECONFIGS_JOIN | ETCD_CERTS | {"join.conf"}
    token = build_plan(load_profile("ha-stacked", ["cluster.join=token"]))
    assert _names(token, "worker-2") == set()
    assert _names(token, "cp-3") == CP_CERTS | KUBECONFIGS_JOIN | ETCD_CERTS
    assert _names(build_plan(load_profile("etcd-cluster")), "etcd-1") == ETCD_CERTS


def test_required_spec_contents() -> None:
    plan = build_plan(load_profile("ha-stacked"))
    specs = {s.name: s for s in required_specs(plan, plan.node("cp-2"))}
    api = specs["apiserver"]
    assert api.cn == "kube-apiserver" and api.ca == "ca"
    assert [str(ip) for ip in api.ips] == ["10.96.0.1", "10.77.0.12", "10.77.0.10"]
    assert set(api.dns) == {
        "cp-2",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }
    assert specs["etcd-server"].cn == "cp-2" and specs["etcd-server"].ca == "etcd-ca"
    assert [str(ip) for ip in specs["etcd-peer"].ips] == ["10.77.0.12", "127.0.0.1", "::1"]
    assert specs["apiserver-etcd-client"].ca == "etcd-ca" and specs["apiserver-etcd-client"].orgs == ()
    assert specs["apiserver-kubelet-client"].orgs == ("kubeadm:cluster-admins",)
    assert specs["front-proxy-client"].ca == "front-proxy-ca"


def test_required_specs_carry_the_endpoint_and_etcd_cert_sans() -> None:
    """kubeadm's SANs: the apiserver adds controlPlaneEndpoint's host, etcd's server and peer certificates
    their own etcd.serverCertSANs / etcd.peerCertSANs (each name a DNS SAN, each address an IP SAN)."""
    sets = ["cluster.controlPlaneEndpoint=api.example.com:6443",
            "cluster.etcd.serverCertSANs=[etcd.example.com, 10.9.9.9]",
            "cluster.etcd.peerCertSANs=[peer.example.com, 10.8.8.8]"]  # fmt: skip
    plan = build_plan(load_profile("ha-stacked", sets))
    specs = {s.name: s for s in required_specs(plan, plan.node("cp-2"))}
    sans = {name: (set(specs[name].dns), {str(ip) for ip in specs[name].ips}) for name in specs}
    kubernetes = {"kubernetes", *(f"kubernetes.default{d}" for d in ("", ".svc", ".svc.cluster.local"))}
    assert sans["apiserver"] == (
        {"api.example.com", "cp-2", *kubernetes},
        {"10.96.0.1", "10.77.0.12", "10.77.0.10"},
    )
    assert sans["etcd-server"] == (
        {"cp-2", "localhost", "etcd.example.com"},
        {"10.77.0.12", "127.0.0.1", "::1", "10.9.9.9"},
    )
    assert sans["etcd-peer"] == (
        {"cp-2", "localhost", "peer.example.com"},
        {"10.77.0.12", "127.0.0.1", "::1", "10.8.8.8"},
    )
    # the order a node's leaves are issued and listed in: its own, kubeconfigs, join credential, etcd's
    assert list(specs) == [
        "apiserver", "apiserver-kubelet-client", "front-proxy-client", "apiserver-etcd-client",
        "admin.conf", "controller-manager.conf", "scheduler.conf", "join.conf",
        "etcd-server", "etcd-peer", "etcd-healthcheck-client",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Every algorithm, and IPv6


# RSA-3072/4096 keys are slow to generate AND to load (OpenSSL checks RSA keys on load): for those, a
# one-member etcd cluster (8 keys) instead of single-node (18 keys) keeps the suite fast.
ONE_ETCD = "nodes=[{name: etcd-1, role: etcd, ip: 10.77.0.31}]"
ALGORITHM_PROFILES = [
    (KeyAlgorithm.RSA_2048, "single-node", ()),
    (KeyAlgorithm.RSA_3072, "etcd-cluster", (ONE_ETCD,)),
    (KeyAlgorithm.RSA_4096, "etcd-cluster", (ONE_ETCD,)),
    (KeyAlgorithm.ECDSA_P256, "single-node", ()),
    (KeyAlgorithm.ECDSA_P384, "single-node", ()),
]


@pytest.mark.parametrize(
    ("algorithm", "profile", "sets"), ALGORITHM_PROFILES, ids=[a[0].value for a in ALGORITHM_PROFILES]
)
def test_every_algorithm_round_trips(
    algorithm: KeyAlgorithm, profile: str, sets: tuple[str, ...], tmp_path: Path
) -> None:
    plan = build_plan(load_profile(profile, [*sets, f"cluster.encryptionAlgorithm={algorithm.value}"]))
    assert plan.info.ecdsa_p384  # 1.37
    bundle, _ = reconcile(plan, None, now=now())
    loaded = load_bundle(write_bundle(tmp_path / "secrets", bundle, plan))
    assert loaded is not None and loaded.algorithm is algorithm
    keys = [ca.key for ca in loaded.cas.values()] + [
        h.key for c in loaded.leaves.values() for h in c.values()
    ]
    keys.append(pki.load_key(loaded.sa_key_pem))
    assert len(keys) >= 7  # 3 CAs + SA + etcd server/peer/healthcheck (no operator cert without an API)
    assert all(KeyAlgorithm.of(k) is algorithm for k in keys)
    assert files(loaded, plan) == files(bundle, plan)
    again, changes = reconcile(plan, loaded, now=now())
    assert changes == [] and files(again, plan) == files(bundle, plan)
    header = b"-----BEGIN EC PRIVATE KEY-----" if algorithm.value.startswith("ECDSA") else b"-----BEGIN RSA"
    assert all(pem.startswith(header) for rel, pem, _ in files(loaded, plan) if rel.endswith(".key"))


def test_ipv6_bundle_is_reused(tmp_path: Path) -> None:
    d = data("ha-stacked", "cluster.encryptionAlgorithm=ECDSA-P256")
    d["cluster"].update(
        podSubnet="fd00:244::/56",
        serviceSubnet="fd00:96::/112",
        loadBalancer={"kind": "kube-vip", "vip": "fd00:77::10"},
    )
    d["defaults"].update(gateway="fd00:77::1", dns=["fd00:77::1"])
    d["nodes"] = [{"name": f"cp-{i}", "role": "control-plane", "ip": f"fd00:77::1{i}"} for i in (1, 2, 3)]
    plan = plan_from(d)
    bundle, _ = reconcile(plan, None, now=now())
    assert san_ips(bundle.leaf("cp-2", "apiserver").cert) == {"fd00:96::1", "fd00:77::12", "fd00:77::10"}
    assert san_ips(bundle.leaf("cp-3", "etcd-server").cert) == {"fd00:77::13", "127.0.0.1", "::1"}
    eku = (
        bundle.leaf("cp-3", "etcd-peer").cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    loaded = load_bundle(write_bundle(tmp_path / "s", bundle, plan))
    assert loaded is not None
    _, changes = reconcile(plan, loaded, now=now())
    assert changes == []


def test_join_credential_keys_are_ecdsa_p256_in_an_rsa_cluster(issue: Issue, tmp_path: Path) -> None:
    """The kubelet replaces the join credential with a key of its own, ECDSA P-256 (client-go's
    certificate manager): the bake makes the credential's key the same, whatever the cluster's
    algorithm, and every other key follows encryptionAlgorithm. openssl names the curve."""
    openssl = program("openssl")
    _, bundle = issue("single-master")  # RSA-2048, the default
    for node in ("worker-1", "worker-2"):
        path = tmp_path / f"{node}.key"
        path.write_bytes(bundle.leaf(node, "join.conf").key_pem)
        text = subprocess.run(
            [openssl, "pkey", "-in", str(path), "-noout", "-text"], capture_output=True, text=True, check=True
        ).stdout
        assert "ASN1 OID: prime256v1" in text, text[:200]
    other = tmp_path / "apiserver.key"
    other.write_bytes(bundle.leaf("cp-1", "apiserver").key_pem)
    text = subprocess.run(
        [openssl, "pkey", "-in", str(other), "-noout", "-text"], capture_output=True, text=True, check=True
    ).stdout
    assert "Private-Key: (2048 bit" in text, text[:200]


def test_a_leaf_key_of_another_algorithm_is_reissued(small: tuple[ClusterPlan, Bundle]) -> None:
    """The loader checks the CAs' keys against bundle.json's algorithm; a leaf's key is judged on reuse."""
    plan, bundle = small
    odd = copy.deepcopy(bundle)
    spec = {s.name: s for s in required_specs(plan, plan.node("dev-1"))}["apiserver"]
    rsa_key = KeyAlgorithm.RSA_2048.generate()
    odd.leaves["dev-1"]["apiserver"] = issuing._issue(spec, odd, now(), timedelta(days=365), rsa_key)
    again, changes = reconcile(plan, odd, now=now())
    assert [str(c) for c in changes] == ["dev-1: re-issued apiserver: key is RSA-2048, expected ECDSA-P256"]
    assert KeyAlgorithm.of(again.leaf("dev-1", "apiserver").key) is KeyAlgorithm.ECDSA_P256


def test_an_rsa_join_credential_from_an_older_bake_is_reissued(issue: Issue) -> None:
    plan, fresh = issue("single-master")
    old = copy.deepcopy(fresh)
    spec = dataclasses.replace(certlist.join_client("worker-1"), key=None)  # as bakes before ECDSA issued it
    rsa_key = KeyAlgorithm.RSA_2048.generate()
    validity = timedelta(hours=720)
    old.leaves["worker-1"]["join.conf"] = issuing._issue(spec, old, secrets.utcnow(), validity, rsa_key)
    again, changes = reconcile(plan, old, now=secrets.utcnow())
    assert [str(c) for c in changes] == [
        "worker-1: re-issued join.conf: key is RSA-2048, expected ECDSA-P256"
    ], [str(c) for c in changes]
    assert KeyAlgorithm.of(again.leaf("worker-1", "join.conf").cert.public_key()) is KeyAlgorithm.ECDSA_P256


# --------------------------------------------------------------------------------------------------
# bake --only: what the carried-over owners would need re-issued, told, not done


def test_stale_leaves_names_what_only_carries_over(stacked: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = stacked
    d = data("ha-stacked")
    d["nodes"][0]["ip"] = "10.77.0.15"
    d["cluster"]["apiServer"]["certSANs"] = ["api.example.com"]
    d["nodes"] = [n for n in d["nodes"] if n["name"] != "worker-2"]  # its leaves are judged by no spec
    moved = plan_from(d)
    owners = ["cp-1", "cp-2", "worker-1", "worker-2", secrets.OPERATOR, "not-in-the-bundle"]
    kept, again = "kept, --only carries it over", "bake without --only"
    assert [str(c) for c in secrets.stale_leaves(moved, bundle, owners, now())] == [
        f"cp-1: apiserver {kept} (certificate does not cover SAN api.example.com; "
        f"certificate does not cover SAN 10.77.0.15): {again}",
        f"cp-1: etcd-server {kept} (certificate does not cover SAN 10.77.0.15): {again}",
        f"cp-1: etcd-peer {kept} (certificate does not cover SAN 10.77.0.15): {again}",
        f"cp-2: apiserver {kept} (certificate does not cover SAN api.example.com): {again}",
    ]
    assert secrets.stale_leaves(plan, bundle, owners, now()) == []


def test_stale_leaves_near_expiry_and_unknown_leaves(small: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = small
    admin = bundle.leaf(secrets.OPERATOR, "admin.conf").cert.not_valid_after_utc
    later = admin - timedelta(days=25)
    assert [str(c) for c in secrets.stale_leaves(plan, bundle, [secrets.OPERATOR], later)] == [
        f"{secrets.OPERATOR}: admin.conf kept, --only carries it over (expires {admin:%Y-%m-%d %H:%M} UTC, "
        "within cluster.certificateRenewal.before (720h)): bake without --only"
    ]
    # a leaf the plan no longer names is not judged (the next full bake drops it)
    extra = dataclasses.replace(bundle, leaves={"dev-1": {"retired": bundle.leaf("dev-1", "apiserver")}})
    assert secrets.stale_leaves(plan, extra, ["dev-1"], later) == []


# --------------------------------------------------------------------------------------------------
# Which files of a bundle hold a secret (age-encrypted when sealed)


@pytest.mark.parametrize(
    ("rel", "secret"),
    [
        ("token", True),
        ("encryption-key", True),
        ("report-key", True),
        ("pki/ca.key", True),
        ("pki/sa.key", True),
        ("pki/seed-server.key", True),
        ("nodes/cp-1/etcd/peer.key", True),
        ("bundle.json", False),
        ("pki/ca.crt", False),
        ("pki/sa.pub", False),
        ("nodes/cp-1/kubeconfig/admin.crt", False),
        ("nodes/token/apiserver.crt", False),
        ("pki/ca.key.crt", False),
    ],
)
def test_secret_file(rel: str, secret: bool) -> None:
    assert secrets.secret_file(rel) is secret


# --------------------------------------------------------------------------------------------------
# bake serve's secrets: the report key (cluster.seed.reportUrl) and the seed CA (an https:// URL)

SEED = ("cluster.encryptionAlgorithm=ECDSA-P256", "cluster.seed.reportUrl=https://10.77.0.1:8443")


def _seed_plan(*sets: str) -> ClusterPlan:
    return build_plan(load_profile("single-node", [*SEED, *sets]))


@pytest.fixture
def seeded(issue: Issue) -> tuple[ClusterPlan, Bundle]:
    return issue("single-node", *SEED)


def test_an_https_seed_url_gets_a_seed_ca_of_its_own(tmp_path: Path) -> None:
    plan = _seed_plan()
    bundle, changes = reconcile(plan, None, now=now())
    assert [str(c) for c in changes] == [
        "bundle: created CAs, service-account key and bootstrap token",
        "bundle: created the report key the nodes sign their reports with",
        "bundle: created the seed CA (the nodes pin it for their reports)",
    ]
    assert bundle.seed_ca is not None and bundle.seed_server is not None and bundle.report_key is not None
    ca, server = bundle.seed_ca.cert, bundle.seed_server.cert
    assert ca.subject.rfc4514_string() == "CN=bake-seed-ca"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    assert san_ips(server) == {"10.77.0.1"}
    assert {KeyAlgorithm.of(bundle.seed_ca.key), KeyAlgorithm.of(bundle.seed_server.key)} == {
        KeyAlgorithm.ECDSA_P256
    }
    assert all(ca.public_key() != c.cert.public_key() for c in bundle.cas.values())
    assert len(bundle.report_key) == 32
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    assert json.loads((root / "bundle.json").read_text())["seedServer"] is True
    assert (root / "report-key").read_bytes() == base64.b64encode(bundle.report_key) + b"\n"
    for rel in ("report-key", *(f"pki/{b}.{e}" for b in ("seed-ca", "seed-server") for e in ("crt", "key"))):
        assert (root / rel).stat().st_mode & 0o777 == 0o600, rel  # write_bundle applies bundle_files' mode
    loaded = load_bundle(root)
    assert loaded is not None and loaded.seed_ca is not None and loaded.seed_server is not None
    assert files(loaded, plan) == files(bundle, plan)
    assert loaded.report_key == bundle.report_key
    again, changes = reconcile(plan, loaded, now=now())
    assert changes == [] and files(again, plan) == files(bundle, plan)


def test_a_new_seed_host_reissues_only_the_seed_server(seeded: tuple[ClusterPlan, Bundle]) -> None:
    _, bundle = seeded
    assert bundle.seed_ca is not None and bundle.seed_server is not None
    moved, changes = reconcile(_seed_plan("cluster.seed.reportUrl=https://10.77.0.2:8443"), bundle, now=now())
    assert [str(c) for c in changes] == [
        "bundle: re-issued the seed server certificate: certificate does not cover SAN 10.77.0.2; "
        "subject CN is '10.77.0.1', expected '10.77.0.2'"
    ]
    assert moved.seed_ca == bundle.seed_ca and moved.report_key == bundle.report_key
    assert moved.seed_server is not None and san_ips(moved.seed_server.cert) == {"10.77.0.2"}
    moved.seed_server.cert.verify_directly_issued_by(bundle.seed_ca.cert)
    assert moved.seed_server.key_pem != bundle.seed_server.key_pem


def test_the_seed_server_is_judged_at_the_bakes_own_now() -> None:
    """A bake with a fixed clock (past or future) keeps the seed server it made at that time; one whose
    clock is before the certificate's NotBefore re-issues it."""
    plan = _seed_plan()
    for fixed in (datetime(2031, 1, 1, tzinfo=UTC), now() - timedelta(days=400)):
        first, _ = reconcile(plan, None, now=fixed)
        again, changes = reconcile(plan, first, now=fixed)
        assert changes == [] and again.seed_server == first.seed_server
    assert first.seed_server is not None
    not_before = first.seed_server.cert.not_valid_before_utc
    earlier, changes = reconcile(plan, first, now=not_before - timedelta(seconds=1))
    assert [str(c) for c in changes if "seed" in c.what] == [
        f"bundle: re-issued the seed server certificate: certificate is not valid before "
        f"{not_before:%Y-%m-%dT%H:%M:%SZ}"
    ]
    assert earlier.seed_ca == first.seed_ca


def test_a_seed_server_key_of_another_type_is_reissued(seeded: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = seeded
    assert bundle.seed_ca is not None and bundle.seed_server is not None
    spec = seed_tls.server_spec(plan.settings.seed)
    rsa_key = KeyAlgorithm.RSA_2048.generate()
    ca = bundle.seed_ca
    cert = pki.sign(spec, rsa_key.public_key(), ca.cert, ca.key, now=now(), validity=timedelta(days=365))
    odd = dataclasses.replace(bundle, seed_server=secrets.Issued.from_objects(cert, rsa_key))
    again, changes = reconcile(plan, odd, now=now())
    assert [str(c) for c in changes] == [
        "bundle: re-issued the seed server certificate: key is RSA-2048, expected ECDSA-P256"
    ]
    assert again.seed_server is not None and KeyAlgorithm.of(again.seed_server.key) is KeyAlgorithm.ECDSA_P256


def test_the_seed_server_is_renewed_in_its_last_30_days() -> None:
    plan = _seed_plan()
    bundle, _ = reconcile(plan, None, now=now())
    assert bundle.seed_server is not None
    not_after = bundle.seed_server.cert.not_valid_after_utc
    for left in (timedelta(days=30), timedelta(days=31)):
        again, changes = reconcile(plan, bundle, now=not_after - left)
        assert [c for c in changes if c.owner == "bundle"] == [] and again.seed_server == bundle.seed_server
    renewed, changes = reconcile(plan, bundle, now=not_after - timedelta(days=30, seconds=-1))
    assert [str(c) for c in changes if c.owner == "bundle"] == [
        f"bundle: re-issued the seed server certificate: expires {not_after:%Y-%m-%d}"
    ]
    assert renewed.seed_server is not None and renewed.seed_server.cert.not_valid_after_utc > not_after
    assert renewed.seed_ca == bundle.seed_ca


def test_a_short_lived_seed_server_is_renewed_in_its_last_third() -> None:
    """240h leaves: 30 days would be more than their life; the last third (80h) is the window."""
    plan = _seed_plan("cluster.certificateValidityPeriod=240h", "cluster.certificateRenewal.enabled=false")
    bundle, _ = reconcile(plan, None, now=now())
    assert bundle.seed_server is not None
    cert = bundle.seed_server.cert
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == timedelta(hours=240, minutes=5)  # kubeadm backdates NotBefore by 5 minutes
    third = timedelta(hours=80, minutes=1, seconds=40)
    again, _ = reconcile(plan, bundle, now=cert.not_valid_after_utc - third)
    assert again.seed_server == bundle.seed_server
    renewed, _ = reconcile(plan, bundle, now=cert.not_valid_after_utc - third + timedelta(seconds=1))
    assert renewed.seed_server != bundle.seed_server


def test_seed_secrets_are_dropped_with_the_urls(seeded: tuple[ClusterPlan, Bundle]) -> None:
    _, bundle = seeded
    plain, changes = reconcile(_seed_plan("cluster.seed.reportUrl=http://10.77.0.1:8080"), bundle, now=now())
    assert [str(c) for c in changes] == [
        "bundle: dropped the seed CA and its certificate (no https:// seed URL)"
    ]
    assert plain.seed_ca is None and plain.seed_server is None and plain.report_key == bundle.report_key
    none, changes = reconcile(build_plan(load_profile("single-node", SEED[:1])), bundle, now=now())
    assert [str(c) for c in changes] == [
        "bundle: dropped the report key (cluster.seed.reportUrl is not set)",
        "bundle: dropped the seed CA and its certificate (no https:// seed URL)",
    ]
    assert (none.report_key, none.seed_ca, none.seed_server) == (None, None, None)


def test_rotate_ca_makes_a_new_seed_ca_and_keeps_the_report_key(seeded: tuple[ClusterPlan, Bundle]) -> None:
    plan, bundle = seeded
    assert bundle.seed_ca is not None and bundle.seed_server is not None
    rotated, changes = reconcile(plan, bundle, now=now(), rotate_ca=True)
    assert [str(c) for c in changes] == [
        "bundle: rotated every CA and the service-account key (token kept)",
        "bundle: created the seed CA (the nodes pin it for their reports)",
    ]
    assert rotated.report_key == bundle.report_key
    assert rotated.seed_ca is not None and rotated.seed_server is not None
    assert rotated.seed_ca.key_pem != bundle.seed_ca.key_pem
    assert rotated.seed_server.key_pem != bundle.seed_server.key_pem
    rotated.seed_server.cert.verify_directly_issued_by(rotated.seed_ca.cert)


def test_report_node_key_is_hmac_of_the_names(seeded: tuple[ClusterPlan, Bundle]) -> None:
    _, bundle = seeded
    assert bundle.report_key is not None
    key = secrets.report_node_key(bundle, "dev", "dev-1")
    expect = hmac.new(bundle.report_key, b"bake-report-v1\0dev\0dev-1", hashlib.sha256).hexdigest()
    assert key == expect.encode()
    with pytest.raises(AssertionError) as info:
        secrets.report_node_key(dataclasses.replace(bundle, report_key=None), "dev", "dev-1")
    assert str(info.value) == "only with cluster.seed.reportUrl"


def _seed_ca_is_a_leaf(root: Path, other: Bundle, rsa: Bundle) -> None:
    shutil.copy(root / "pki/seed-server.crt", root / "pki/seed-ca.crt")
    shutil.copy(root / "pki/seed-server.key", root / "pki/seed-ca.key")


def _seed_server_of_another_ca(root: Path, other: Bundle, rsa: Bundle) -> None:
    assert other.seed_server is not None
    (root / "pki/seed-server.crt").write_bytes(other.seed_server.cert_pem)
    (root / "pki/seed-server.key").write_bytes(other.seed_server.key_pem)


def _seed_server_rsa(root: Path, other: Bundle, rsa: Bundle) -> None:
    (root / "pki/seed-server.crt").write_bytes(rsa.cas["ca"].cert_pem)
    (root / "pki/seed-server.key").write_bytes(rsa.cas["ca"].key_pem)


def _seed_ca_rsa(root: Path, other: Bundle, rsa: Bundle) -> None:
    (root / "pki/seed-ca.crt").write_bytes(rsa.cas["ca"].cert_pem)
    (root / "pki/seed-ca.key").write_bytes(rsa.cas["ca"].key_pem)


def _missing_seed_server_key(root: Path, other: Bundle, rsa: Bundle) -> None:
    (root / "pki/seed-server.key").unlink()


def _missing_seed_ca_cert(root: Path, other: Bundle, rsa: Bundle) -> None:
    (root / "pki/seed-ca.crt").unlink()


def _short_report_key(root: Path, other: Bundle, rsa: Bundle) -> None:
    (root / "report-key").write_bytes(base64.b64encode(b"\0" * 31) + b"\n")


def _report_key_not_base64(root: Path, other: Bundle, rsa: Bundle) -> None:
    (root / "report-key").write_bytes(b"%" * 44 + b"\n")


SEED_CORRUPTIONS = [
    pytest.param(
        _seed_ca_is_a_leaf,
        ["secrets/pki/seed-ca.crt: is not a CA", "secrets/pki/seed-server.crt: not signed by the seed CA"],
    ),
    pytest.param(_seed_server_of_another_ca, ["secrets/pki/seed-server.crt: not signed by the seed CA"]),
    pytest.param(
        _seed_server_rsa,
        [
            "secrets/pki/seed-ca: the seed server keys are not ECDSA-P256",
            "secrets/pki/seed-server.crt: not signed by the seed CA",
        ],
    ),
    pytest.param(
        _seed_ca_rsa,
        [
            "secrets/pki/seed-ca: the seed server keys are not ECDSA-P256",
            "secrets/pki/seed-server.crt: not signed by the seed CA",
        ],
    ),
    pytest.param(_missing_seed_server_key, ["secrets/pki/seed-server.key: missing"]),
    pytest.param(_missing_seed_ca_cert, ["secrets/pki/seed-ca.crt: missing"]),
    pytest.param(_short_report_key, ["secrets/report-key: not 32 bytes in base64"]),
    pytest.param(_report_key_not_base64, ["secrets/report-key: not 32 bytes in base64"]),
]


@pytest.mark.parametrize(
    ("corrupt", "expect"), SEED_CORRUPTIONS, ids=[c.values[0].__name__.strip("_") for c in SEED_CORRUPTIONS]
)
def test_a_corrupt_seed_ca_is_an_error(
    seeded: tuple[ClusterPlan, Bundle],
    issue: Issue,
    tmp_path: Path,
    corrupt: Callable[[Path, Bundle, Bundle], None],
    expect: list[str],
) -> None:
    plan, bundle = seeded
    _, other = issue("single-node", *SEED)  # its own seed CA (those keys are made anew each time)
    _, rsa = issue("single-node")
    root = write_bundle(tmp_path / "secrets", bundle, plan)
    corrupt(root, other, rsa)
    before = snapshot(root)
    with pytest.raises(SecretsError) as info:
        load_bundle(root)
    assert [str(p) for p in info.value.problems] == [*expect, str(HINT)]
    assert snapshot(root) == before
