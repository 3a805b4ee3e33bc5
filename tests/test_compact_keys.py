"""The key pack (builder.node.compact_keys, builder.node.keypack): a control plane's RSA keys and the
kubeconfigs holding them shipped as their primes, rebuilt byte for byte on the node. Keys made by real
peers (the openssl CLI, the real kubeadm's Go crypto) go through it; the node program the seed ships
runs in the system's python3; a seed read back gives the node's files exactly."""

from __future__ import annotations

import ast
import base64
import json
import math
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from builder import paths
from builder.check.userdata import files_of, write_files_of
from builder.files import public, secret
from builder.node import cloudinit, compact_keys, distribute, keypack
from builder.pki import secrets
from tests import k8s

from .helpers import KEY_PACK, KEY_PACK_PROGRAM, disk_files, plan_of, rendered_node
from .peers import missing, program

AZURE = 65_535  # a control plane's raw user-data target (issue 12): Azure's customData cap, in bytes


def _pkcs1(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _rebuilt(part: dict[str, object]) -> bytes:
    return keypack.part_bytes(part, lambda p: None, [])


def test_the_module_paths_agree_with_the_test_helpers() -> None:
    assert (compact_keys.PACK_PATH, compact_keys.SCRIPT_PATH) == (KEY_PACK, KEY_PACK_PROGRAM)
    assert compact_keys.PACK_PATH == paths.KEY_PACK


def test_the_node_program_is_python_3_8_and_standard_library_only() -> None:
    """What it runs on: cloud-init's python3 (3.8 on the oldest systems cloud-init 22.4 runs on), with
    nothing installed beside it."""
    source = Path(keypack.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert source.startswith("#!/usr/bin/python3\n")


# --------------------------------------------------------------------------------------------------
# keys from real peers


@pytest.mark.integration
def test_an_openssl_key_is_rebuilt_from_its_primes(tmp_path: Path) -> None:
    openssl = program("openssl")
    out = tmp_path / "k.pem"
    subprocess.run(
        [openssl, "genrsa", "-traditional", "-out", str(out), "2048"], check=True, capture_output=True
    )
    pem = out.read_bytes()
    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    part = compact_keys._pem_part(pem, lambda n: None)
    assert part is not None and "rsa" in part
    assert _rebuilt(part) == pem
    # only the primes travel: nothing of d, the CRT numbers or the modulus
    numbers = serialization.load_pem_private_key(pem, None).private_numbers()  # type: ignore[union-attr]
    text = json.dumps(part)
    for n in (numbers.d, numbers.dmp1, numbers.iqmp, numbers.public_numbers.n):
        assert compact_keys._b64(n) not in text


@pytest.mark.integration
@pytest.mark.realk8s
def test_a_kubeadm_key_is_rebuilt_from_its_primes(tmp_path: Path) -> None:
    """The real kubeadm's keys (Go's crypto/rsa): what a user's bundle imported from a cluster holds."""
    bin_dir = k8s.locate("amd64")
    if bin_dir is None:
        missing("upstream Kubernetes binaries are not built (make k8s)")
    subprocess.run(
        [str(bin_dir / "kubeadm"), "init", "phase", "certs", "ca", "--cert-dir", str(tmp_path),
         "--kubernetes-version", "v1.37.2"],
        check=True, capture_output=True,
    )  # fmt: skip
    pem = (tmp_path / "ca.key").read_bytes()
    part = compact_keys._pem_part(pem, lambda n: None)
    assert part is not None and "rsa" in part
    assert _rebuilt(part) == pem


def test_a_private_exponent_inverted_modulo_phi_is_rebuilt() -> None:
    """Older Go and OpenSSL 1.x inverted e modulo (p-1)(q-1), not their lcm: both forms are rebuilt."""
    while True:  # about one key in two has the same d both ways
        base = rsa.generate_private_key(65537, 2048).private_numbers()
        p, q, e = base.p, base.q, base.public_numbers.e
        d = pow(e, -1, (p - 1) * (q - 1))
        if d != pow(e, -1, math.lcm(p - 1, q - 1)):
            break
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    pem = _pkcs1(numbers.private_key())
    part = compact_keys._pem_part(pem, lambda n: None)
    assert part is not None and part["rsa"][3] == "phi"  # type: ignore[index]
    assert _rebuilt(part) == pem


def test_a_key_the_pack_cannot_rebuild_stays_pem() -> None:
    """d not reduced (valid for RSA, not what a generator writes): no rule gives it back, so the file
    stays a write_files entry as it is; so do ECDSA keys and PKCS#8 keys."""
    base = rsa.generate_private_key(65537, 2048).private_numbers()
    p, q, e = base.p, base.q, base.public_numbers.e
    d = base.d + (p - 1) * (q - 1)  # reduced modulo neither lcm(p-1, q-1) nor (p-1)(q-1)
    numbers = (0, p * q, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))
    body = b"".join(keypack.der(2, n.to_bytes(n.bit_length() // 8 + 1, "big")) for n in numbers)
    odd_pem = keypack.pem(keypack.RSA_LABEL, keypack.der(0x30, body))
    loaded = serialization.load_pem_private_key(odd_pem, None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(loaded, rsa.RSAPrivateKey) and loaded.private_numbers().d == d  # a key OpenSSL reads
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    pkcs8 = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files = [secret("/etc/kubernetes/pki/odd.key", odd_pem), secret("/etc/kubernetes/pki/ec.key", ec_pem),
             secret("/etc/kubernetes/pki/p8.key", pkcs8)]  # fmt: skip
    pack, rest = compact_keys.pack(files)
    assert pack is None and rest == files


def test_only_secret_files_go_in() -> None:
    """A public file with a key in it is a mistake the mode checks must see, not something to hide."""
    pem = _pkcs1(rsa.generate_private_key(65537, 2048))
    loud = public("/etc/kubernetes/pki/loud.key", pem)
    quiet = secret("/etc/kubernetes/pki/quiet.key", pem)
    pack, rest = compact_keys.pack([loud, quiet])
    assert rest == [loud] and pack is not None and pack.secret and pack.mode == 0o600
    assert [p for p, *_ in keypack.unpack(json.loads(pack.content), lambda p: None)] == [quiet.path]


# --------------------------------------------------------------------------------------------------
# a control plane's seed


@cache
def _rsa_control_plane(profile: str, name: str) -> cloudinit.RenderedNode:
    return rendered_node(plan_of(profile, "cluster.encryptionAlgorithm=RSA-2048"), name)


def _logical(rendered: cloudinit.RenderedNode) -> dict[str, tuple[bytes, str, str]]:
    return {f.path: (f.content, f.mode_text, f.owner) for f in rendered.files}


@pytest.mark.parametrize(("profile", "name"), [("ha-stacked", "cp-1"), ("ha-stacked", "cp-2"),
                                               ("ha-external-etcd", "etcd-1")])  # fmt: skip
def test_a_seed_reads_back_as_the_nodes_files(profile: str, name: str) -> None:
    """Through the bake's reader (bake check) and through the tests' own (the shipped program run on the
    pack): every key and kubeconfig is there, byte for byte, with its mode; no RSA key is left in PEM."""
    rendered = _rsa_control_plane(profile, name)
    want = _logical(rendered)
    assert write_files_of(rendered.user_data) == want
    assert disk_files(yaml.safe_load(rendered.user_data)) == want
    keys = [p for p, (c, _, _) in want.items() if b"RSA PRIVATE KEY" in c]
    assert len(keys) >= 3, keys
    assert b"RSA PRIVATE KEY" not in rendered.user_data
    (entry,) = [e for e in yaml.safe_load(rendered.user_data)["write_files"] if e["path"] == KEY_PACK]
    assert entry["permissions"] == "0600"


def test_an_rsa_control_plane_fits_65535_bytes_raw() -> None:
    """Issue 12's control-plane target, with RSA-2048 (kubeadm's default): the first control plane,
    which holds the most (super-admin.conf, the pod network's files)."""
    rendered = _rsa_control_plane("ha-stacked", "cp-1")
    assert len(rendered.user_data) <= AZURE, len(rendered.user_data)


def test_a_prime_that_does_not_divide_the_public_key_is_refused() -> None:
    """A pack pointing a key at another key's certificate rebuilds nothing."""
    one, other = (rsa.generate_private_key(65537, 2048) for _ in range(2))
    certificate = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    part = compact_keys._pem_part(_pkcs1(one), lambda n: {"file": "/other.pub"})
    assert part is not None and part["rsa"][1] == {"file": "/other.pub"}
    with pytest.raises(ValueError, match="does not divide"):
        keypack.part_bytes(part, {"/other.pub": certificate}.get, [])


def test_a_pack_with_group_or_other_permissions_is_refused() -> None:
    rendered = _rsa_control_plane("ha-stacked", "cp-2")
    doc = yaml.safe_load(rendered.user_data)
    for entry in doc["write_files"]:
        if entry["path"] == KEY_PACK:
            entry["permissions"] = "0644"
    with pytest.raises(ValueError, match=f"{KEY_PACK}: holds private keys"):
        files_of(doc)


@pytest.mark.integration
def test_the_shipped_program_writes_the_files_in_pythons_own_interpreter(tmp_path: Path) -> None:
    """The unpacker as the seed ships it, run by the system's python3 (the one cloud-init runs on) into a
    root laid out as write_files leaves it: every file rebuilt, mode and owner set, nothing else."""
    if os.geteuid() != 0:
        missing("the key pack sets root:root ownership: run as root")
    python3 = program("python3")
    rendered = _rsa_control_plane("ha-stacked", "cp-1")
    doc = yaml.safe_load(rendered.user_data)
    root = tmp_path / "root"
    laid = {e["path"]: e for e in doc["write_files"]}
    for path, (content, mode, _) in disk_files(doc).items():
        if path in laid or path == KEY_PACK_PROGRAM:  # what write_files and the archive put there
            target = root / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(int(mode, 8))
    pack = tmp_path / "keys.json"
    pack.write_text(laid[KEY_PACK]["content"])
    before = {p for p in root.rglob("*") if p.is_file()}
    proc = subprocess.run(
        [python3, str(root / KEY_PACK_PROGRAM.lstrip("/")), "--root", str(root), str(pack)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    written = {p for p in root.rglob("*") if p.is_file()} - before
    want = _logical(rendered)
    packed = json.loads(pack.read_text())["files"]
    assert {"/" + str(p.relative_to(root)) for p in written} == {e["path"] for e in packed}
    for path in written:
        name = "/" + str(path.relative_to(root))
        assert (path.read_bytes(), f"{path.stat().st_mode & 0o7777:04o}") == want[name][:2], name
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
    # at the next boot before the bootstrap is done: what is there stays (kubeadm may have changed it)
    kubelet_conf = root / "etc/kubernetes/kubelet.conf"
    kubelet_conf.write_bytes(b"changed by kubeadm\n")
    (root / "etc/kubernetes/pki/ca.key").unlink()
    proc = subprocess.run(
        [python3, str(root / KEY_PACK_PROGRAM.lstrip("/")), "--root", str(root), str(pack)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0 and f"wrote 1 of {len(packed)} files" in proc.stdout, (
        proc.stdout + proc.stderr
    )
    assert kubelet_conf.read_bytes() == b"changed by kubeadm\n"
    assert (root / "etc/kubernetes/pki/ca.key").read_bytes() == want[f"{paths.PKI_DIR}/ca.key"][0]
    # a pack it cannot read: a clear message naming it, an exit status, nothing written
    broken = tmp_path / "broken.json"
    entry = {
        "path": "/x",
        "permissions": "0600",
        "owner": "root:root",
        "content": [{"rsa": ["!", "!", 3, "lcm"]}],
    }
    broken.write_text(json.dumps({"format": keypack.FORMAT, "files": [entry]}))
    unpacker = str(root / KEY_PACK_PROGRAM.lstrip("/"))
    proc = subprocess.run(
        [python3, unpacker, "--root", str(root), str(broken)], capture_output=True, text=True
    )
    assert proc.returncode == 1 and f"keypack: {broken}: " in proc.stderr, proc.stderr
    assert not (root / "x").exists()


def test_nothing_the_node_has_anyway_travels_twice() -> None:
    """A kubeconfig's CA is the node's pki/ca.crt, named, not repeated; a key's second prime is its
    public key's modulus divided by the first, read from its certificate (or sa.pub) or, in a
    kubeconfig, from the client certificate before it."""
    rendered = _rsa_control_plane("ha-stacked", "cp-1")
    doc = yaml.safe_load(rendered.user_data)
    (entry,) = [e for e in doc["write_files"] if e["path"] == KEY_PACK]
    packed = {f["path"]: f["content"] for f in json.loads(entry["content"])["files"]}
    admin = packed[paths.ADMIN_CONF]
    assert {"base64": [{"file": f"{paths.PKI_DIR}/ca.crt"}]} in admin
    certificate = next(i for i, p in enumerate(admin) if isinstance(p, dict) and "pem" in p["base64"][0])
    assert admin[certificate + 2]["base64"][0]["rsa"][1] == {"part": certificate}
    for name, holder in (("apiserver", "apiserver.crt"), ("sa", "sa.pub"), ("etcd/ca", "etcd/ca.crt")):
        ((kind, value),) = packed[f"{paths.PKI_DIR}/{name}.key"][0].items()
        assert kind == "rsa" and value[1] == {"file": f"{paths.PKI_DIR}/{holder}"}, (name, value)
    ca = next(f for f in rendered.files if f.path == f"{paths.PKI_DIR}/ca.crt")
    assert base64.b64encode(ca.content).decode() in _logical(rendered)[paths.ADMIN_CONF][0].decode()


def test_a_node_without_rsa_keys_ships_neither_pack_nor_program() -> None:
    plan = plan_of("ha-stacked", "cluster.encryptionAlgorithm=ECDSA-P256")
    bundle, _ = secrets.reconcile(plan, None, now=secrets.utcnow())
    for node in plan.nodes:
        files = cloudinit.node_files(
            plan, node, pki_files=distribute.node_pki_files(plan, node, bundle), token=bundle.token,
            ca_hash=bundle.discovery_hash,
        )  # fmt: skip
        assert not compact_keys.packable(files) and compact_keys.SCRIPT_PATH not in {f.path for f in files}
