"""`bake check` finds what it promises: one injected fault per detector in a real baked tree.

Each fault is injected so that only the detector under test can see it (SHA256SUMS, the HTTP tree, the
seed ISO and the manifest are kept consistent around it); the test asserts the exact finding and exit
1 from the command line. `test_every_detector_has_a_fault` fails when builder/check/ grows a detector that
has no fault here.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rich.console import Console

from builder import check, cli
from builder.cli.check import _print_calendar
from builder.emit import iso
from builder.model import CertificateRenewal, cloudinit_schema
from builder.node import compact_keys
from builder.pki import sealing, secrets

from .helpers import bake_once, bundle
from .peers import program

ALG = ("--set", "cluster.encryptionAlgorithm=ECDSA-P256")
PKI = "/etc/kubernetes/pki"
Expected = tuple[str, str, str]  # (detector id, where, message as a regular expression)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("check")
    proc = bake_once("--profile", "ha-external-etcd", *ALG, "-q", out=out)
    assert proc.returncode == 0, proc.stderr
    return _lay_out(out, "ha-external-etcd", tmp_path_factory.mktemp("pristine"))


def _lay_out(out: Path, cluster: str, root: Path) -> Path:
    """ROOT/tree (the output tree) and ROOT/bundle (its secrets bundle, kept apart): what run_check reads."""
    shutil.copytree((out / cluster).resolve(), root / "tree", symlinks=True)
    shutil.copytree(bundle(out, cluster), root / "bundle", symlinks=True)
    return root / "tree"


def _bundle(tree: Path) -> Path:
    return tree.parent / "bundle"


def _copy(tree: Path, root: Path) -> Path:
    """A laid-out tree and its bundle, copied under ROOT (each fault gets its own)."""
    shutil.copytree(tree, root / "tree", symlinks=True)
    shutil.copytree(_bundle(tree), root / "bundle", symlinks=True)
    return root / "tree"


@pytest.fixture
def tree(pristine: Path, tmp_path: Path) -> Path:
    return _copy(pristine, tmp_path)


@pytest.fixture
def no_cloud_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH without cloud-init: the schema step reports one warning and runs nothing (it is slow);
    the schema detector has its own test with the real cloud-init."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def run_check(tree: Path) -> tuple[int, list[dict[str, str]]]:
    """`bake check TREE --json` through the real entry point: (exit code, findings)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["check", str(tree), "--secrets", str(_bundle(tree)), "--json"])
    doc = json.loads(out.getvalue())
    findings: list[dict[str, str]] = doc["findings"]
    # the --json counts are what scripts read first
    assert doc["errors"] == sum(f["level"] == "error" for f in findings)
    assert doc["warnings"] == sum(f["level"] == "warning" for f in findings)
    return code, findings


# --------------------------------------------------------------------------------------------------
# fault injection that keeps everything but the target consistent


def _resum(tree: Path, *rels: str) -> None:
    """Rewrite the SHA256SUMS lines of `rels` (dropping those whose file is gone)."""
    sums = tree / "SHA256SUMS"
    lines = []
    for line in sums.read_text().splitlines():
        rel = line.split("  ", 1)[1]
        if rel in rels:
            if not (tree / rel).is_file():
                continue
            line = f"{hashlib.sha256((tree / rel).read_bytes()).hexdigest()}  {rel}"
        lines.append(line)
    sums.write_text("\n".join(lines) + "\n")


def _user_data(tree: Path, node: str) -> dict[str, Any]:
    doc = yaml.safe_load((tree / "nodes" / node / "user-data").read_bytes())
    assert isinstance(doc, dict)
    return doc


def _set_user_data(tree: Path, node: str, data: bytes) -> None:
    """Replace a node's user-data everywhere it is published: node dir, HTTP tree, seed ISO, sums."""
    base = tree / "nodes" / node
    (base / "user-data").write_bytes(data)
    if (tree / "http" / node).is_dir():  # workers only: the other seeds are not in the HTTP tree
        (tree / "http" / node / "user-data").write_bytes(data)
    files = iso.read_seed_iso(base / "seed.iso")
    files["user-data"] = data
    (base / "seed.iso").write_bytes(iso.build_seed_iso(files, epoch=1_700_000_000))
    _resum(tree, f"nodes/{node}/user-data", f"http/{node}/user-data", f"nodes/{node}/seed.iso")


def _dump(doc: dict[str, Any]) -> bytes:
    return ("#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False)).encode()


def _manifest(tree: Path) -> dict[str, Any]:
    data = json.loads((tree / "manifest.json").read_bytes())
    assert isinstance(data, dict)
    return data


def _save_manifest(tree: Path, data: dict[str, Any]) -> None:
    (tree / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    _resum(tree, "manifest.json")


def _manifest_node(data: dict[str, Any], node: str) -> dict[str, Any]:
    (entry,) = [n for n in data["nodes"] if n["name"] == node]
    assert isinstance(entry, dict)
    return entry


def _add_file(tree: Path, node: str, path: str, content: bytes, perms: str = "0600") -> None:
    """A new write_files entry, listed in the manifest too (so only the role scans can object)."""
    doc = _user_data(tree, node)
    doc["write_files"].append(
        {"path": path, "permissions": perms, "encoding": "b64", "content": base64.b64encode(content).decode()}
    )
    _set_user_data(tree, node, _dump(doc))
    data = _manifest(tree)
    _manifest_node(data, node)["files"].append(
        {
            "path": path,
            "mode": perms,
            "owner": "root:root",
            "sha256": hashlib.sha256(content).hexdigest(),
            "secret": True,
        }
    )
    _save_manifest(tree, data)


def _entry(doc: dict[str, Any], path: str) -> dict[str, Any]:
    (entry,) = [e for e in doc["write_files"] if e["path"] == path]
    assert isinstance(entry, dict)
    return entry


def _set_mode(tree: Path, node: str, path: str, perms: str | None, manifest_mode: str) -> None:
    doc = _user_data(tree, node)
    entry = _entry(doc, path)
    if perms is None:
        del entry["permissions"]
    else:
        entry["permissions"] = perms
    _set_user_data(tree, node, _dump(doc))
    data = _manifest(tree)
    (f,) = [f for f in _manifest_node(data, node)["files"] if f["path"] == path]
    f["mode"] = manifest_mode
    _save_manifest(tree, data)


def _exact(where: str, message: str) -> tuple[str, str]:
    return where, re.escape(message)


# --------------------------------------------------------------------------------------------------
# the faults: one or more per detector id


@dataclass(frozen=True)
class Fault:
    detector: str
    name: str
    inject: Callable[[Path], list[tuple[str, str]]]  # returns [(where, message regex)] of `detector`


def _manifest_unreadable(t: Path) -> list[tuple[str, str]]:
    (t / "manifest.json").write_text("{")
    return [("manifest.json", r"unreadable: .+")]


def _manifest_not_an_object(t: Path) -> list[tuple[str, str]]:
    (t / "manifest.json").write_text("[]\n")
    return [_exact("manifest.json", "unreadable: not a JSON object")]


NO_NODE_LIST = "unreadable: no list of nodes, each with its name and role"


def _manifest_nodes(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], list[tuple[str, str]]]:
    """A manifest whose node list `change` spoils: nothing of the tree can be judged by it."""

    def inject(t: Path) -> list[tuple[str, str]]:
        data = _manifest(t)
        change(data)
        _save_manifest(t, data)
        return [_exact("manifest.json", NO_NODE_LIST)]

    return inject


def _sums_missing(t: Path) -> list[tuple[str, str]]:
    (t / "SHA256SUMS").unlink()
    return [_exact("SHA256SUMS", "missing")]


def _sums_file_missing(t: Path) -> list[tuple[str, str]]:
    (t / "nodes/worker-2/user-data.gz").unlink()
    return [_exact("nodes/worker-2/user-data.gz", "listed in SHA256SUMS but missing")]


def _sums_escape(t: Path) -> list[tuple[str, str]]:
    """A line naming a file outside the tree (that exists and matches) is refused, not followed."""
    outside = t.parent / "outside"
    outside.write_bytes(b"not part of the tree\n")
    with (t / "SHA256SUMS").open("a") as f:
        f.write(f"{hashlib.sha256(outside.read_bytes()).hexdigest()}  ../outside\n")
    return [_exact("../outside", "listed in SHA256SUMS but missing")]


def _sums_mismatch(t: Path) -> list[tuple[str, str]]:
    gz = t / "nodes/worker-2/user-data.gz"
    gz.write_bytes(gz.read_bytes() + b"\0")
    return [_exact("nodes/worker-2/user-data.gz", "content differs from SHA256SUMS")]


def _mode_directory(t: Path) -> list[tuple[str, str]]:
    (t / "nodes").chmod(0o755)
    return [_exact("nodes", "directory mode 0755, expected 0700")]


def _mode_tree_root(t: Path) -> list[tuple[str, str]]:
    t.chmod(0o755)
    return [_exact(".", "directory mode 0755, expected 0700")]


def _mode_bundle_root(t: Path) -> list[tuple[str, str]]:
    _bundle(t).chmod(0o750)
    return [_exact("secrets", "directory mode 0750, expected 0700")]


def _mode_key(t: Path) -> list[tuple[str, str]]:
    (_bundle(t) / "pki/ca.key").chmod(0o644)
    return [_exact("secrets/pki/ca.key", "holds secrets but mode is 0644, expected 0600")]


def _mode_token(t: Path) -> list[tuple[str, str]]:
    """A worker's user-data holds no key, only the bootstrap token."""
    (t / "nodes/worker-1/user-data").chmod(0o640)
    return [_exact("nodes/worker-1/user-data", "holds secrets but mode is 0640, expected 0600")]


def _mode_token_gzip(t: Path) -> list[tuple[str, str]]:
    """The same in its gzip form: the scan reads user-data.gz decompressed, and the archive inside."""
    (t / "nodes/worker-2/user-data.gz").chmod(0o644)
    return [_exact("nodes/worker-2/user-data.gz", "holds secrets but mode is 0644, expected 0600")]


def _mode_token_encoded(t: Path) -> list[tuple[str, str]]:
    """Every write_files entry base64-encoded (cloud-init writes the same files): the token is then only
    in the decoded content, which the scan must read too."""
    doc = _user_data(t, "worker-1")
    for entry in doc["write_files"]:
        if entry.get("encoding") is None:
            entry["encoding"], entry["content"] = "b64", base64.b64encode(entry["content"].encode()).decode()
    data = _dump(doc)
    assert b"token" not in data.lower() and b"PRIVATE KEY-----" not in data, "the raw bytes give it away"
    _set_user_data(t, "worker-1", data)
    (t / "nodes/worker-1/user-data").chmod(0o640)
    return [_exact("nodes/worker-1/user-data", "holds secrets but mode is 0640, expected 0600")]


def _mode_iso(t: Path) -> list[tuple[str, str]]:
    (t / "nodes/worker-1/seed.iso").chmod(0o604)
    return [_exact("nodes/worker-1/seed.iso", "holds secrets but mode is 0604, expected 0600")]


def _bundle_invalid(t: Path) -> list[tuple[str, str]]:
    stray = (_bundle(t) / "nodes/cp-3/apiserver.key").read_bytes()
    (_bundle(t) / "nodes/cp-2/apiserver.key").write_bytes(stray)
    return [
        _exact("secrets/nodes/cp-2/apiserver", "the key does not belong to the certificate"),
        ("secrets", r"the bundle is inconsistent and was not changed; .+"),
    ]


def _bundle_missing(t: Path) -> list[tuple[str, str]]:
    shutil.rmtree(_bundle(t))
    return [_exact("secrets", f"no secrets bundle at {_bundle(t)} (--secrets names it)")]


def _discovery_hash(t: Path) -> list[tuple[str, str]]:
    data = _manifest(t)
    data["discoveryTokenCaCertHash"] = "sha256:" + "0" * 64
    _save_manifest(t, data)
    return [_exact("manifest.json", "discovery hash does not match secrets/pki/ca.crt")]


def _seed_missing(t: Path) -> list[tuple[str, str]]:
    (t / "nodes/worker-1/network-config").unlink()
    _resum(t, "nodes/worker-1/network-config")
    return [_exact("nodes/worker-1", f"missing seed file: {t / 'nodes/worker-1/network-config'}")]


def _iso_unreadable(t: Path) -> list[tuple[str, str]]:
    (t / "nodes/worker-1/seed.iso").write_bytes(b"\0" * 4096)
    _resum(t, "nodes/worker-1/seed.iso")
    return [("nodes/worker-1/seed.iso", r"unreadable: .+")]


def _iso_differs(t: Path) -> list[tuple[str, str]]:
    path = t / "nodes/worker-1/seed.iso"
    files = iso.read_seed_iso(path)
    files["meta-data"] += b"# edited\n"
    path.write_bytes(iso.build_seed_iso(files, epoch=1_700_000_000))
    _resum(t, "nodes/worker-1/seed.iso")
    return [_exact("nodes/worker-1/seed.iso", "meta-data differs from nodes/worker-1/meta-data")]


def _http_differs(t: Path) -> list[tuple[str, str]]:
    (t / "http/worker-1/network-config").write_bytes(b"version: 2\n")
    _resum(t, "http/worker-1/network-config")
    return [_exact("http/worker-1/network-config", "differs from the node's seed file")]


def _http_missing(t: Path) -> list[tuple[str, str]]:
    (t / "http/worker-2/meta-data").unlink()
    _resum(t, "http/worker-2/meta-data")
    return [_exact("http/worker-2/meta-data", "differs from the node's seed file")]


def _http_published_by_manifest_but_absent(t: Path) -> list[tuple[str, str]]:
    """The manifest says the control-plane and etcd seeds are published: then the tree must have them."""
    data = _manifest(t)
    data["httpPublishControlPlanes"] = True
    _save_manifest(t, data)
    nodes = ["etcd-1", "etcd-2", "etcd-3", "cp-1", "cp-2", "cp-3"]
    return [
        _exact(f"http/{n}/{f}", "differs from the node's seed file")
        for n in nodes
        for f in ("user-data", "meta-data", "network-config")
    ]


def _withheld(role: str) -> str:
    return (
        f"{role}'s seed holds the cluster's private keys and is in the HTTP tree, which serves it to anyone "
        "on the network; the manifest says it is withheld (cluster.seed.httpPublishControlPlanes: false)"
    )


def _http_control_plane_seed(t: Path) -> list[tuple[str, str]]:
    shutil.copytree(t / "nodes/cp-2", t / "http/cp-2")  # modes kept: only the HTTP rule can object
    return [_exact("http/cp-2", _withheld("a control plane"))]


def _http_etcd_member_seed(t: Path) -> list[tuple[str, str]]:
    shutil.copytree(t / "nodes/etcd-1", t / "http/etcd-1")
    return [_exact("http/etcd-1", _withheld("an etcd member"))]


def _user_data_unreadable(t: Path) -> list[tuple[str, str]]:
    _set_user_data(t, "worker-2", b"#cloud-config\nwrite_files:\n- content: no path\n")
    return [("nodes/worker-2/user-data", r"unreadable cloud-config: .+")]


def _user_data_not_yaml(t: Path) -> list[tuple[str, str]]:
    _set_user_data(t, "worker-2", b"#cloud-config\nwrite_files: [\n")
    return [("nodes/worker-2/user-data", r"unreadable cloud-config: .+")]


def _write_files_extra(t: Path) -> list[tuple[str, str]]:
    doc = _user_data(t, "worker-1")
    doc["write_files"].append({"path": "/etc/motd", "permissions": "0644", "content": "hello\n"})
    _set_user_data(t, "worker-1", _dump(doc))
    return [_exact("nodes/worker-1/user-data", "write_files differ from the manifest's file list")]


def _write_files_dropped(t: Path) -> list[tuple[str, str]]:
    doc = _user_data(t, "etcd-1")
    doc["write_files"] = [e for e in doc["write_files"] if e["path"] != "/etc/crictl.yaml"]
    _set_user_data(t, "etcd-1", _dump(doc))
    return [_exact("nodes/etcd-1/user-data", "write_files differ from the manifest's file list")]


def _write_files_unlisted(t: Path) -> list[tuple[str, str]]:
    """A manifest entry without its file list (tampered, or cut short) lists no file at all."""
    data = _manifest(t)
    del _manifest_node(data, "worker-2")["files"]
    _save_manifest(t, data)
    return [_exact("nodes/worker-2/user-data", "write_files differ from the manifest's file list")]


DIFFERS = "content, mode or owner differs from the manifest"


def _write_file_content(t: Path) -> list[tuple[str, str]]:
    doc = _user_data(t, "worker-1")
    entry = _entry(doc, "/etc/sysctl.d/k8s.conf")
    entry["content"] = entry["content"] + "kernel.panic = 1\n"
    _set_user_data(t, "worker-1", _dump(doc))
    return [_exact("nodes/worker-1:/etc/sysctl.d/k8s.conf", DIFFERS)]


def _write_file_mode(t: Path) -> list[tuple[str, str]]:
    doc = _user_data(t, "cp-2")
    _entry(doc, "/etc/crictl.yaml")["permissions"] = "0600"
    _set_user_data(t, "cp-2", _dump(doc))
    return [_exact("nodes/cp-2:/etc/crictl.yaml", DIFFERS)]


ARCHIVE = "/usr/local/lib/bake/first-boot.tar"


def _repack(t: Path, node: str, change: Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]) -> None:
    """Rewrite the node's first-boot archive (Python's tarfile, gzip and base64) after `change` edits
    its (header, content) members."""
    doc = _user_data(t, node)
    entry = _entry(doc, ARCHIVE)
    assert entry["encoding"] == "gz+b64"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(entry["content"])))) as tar:
        members = [(i, tar.extractfile(i).read()) for i in tar]  # type: ignore[union-attr]
    change(members)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    entry["content"] = base64.b64encode(gzip.compress(buf.getvalue())).decode()
    _set_user_data(t, node, _dump(doc))


def _member(name: str) -> Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        (i,) = [i for i, (info, _) in enumerate(members) if info.name == name]
        info, data = members[i]
        members[i] = (info, data + b"exit 0\n")

    return change


def _archived_script_content(t: Path) -> list[tuple[str, str]]:
    """A script changed inside the gzipped archive: check reads the archive member by member."""
    _repack(t, "worker-1", _member("usr/local/lib/bake/bootstrap/wait.sh"))
    where = "nodes/worker-1:/usr/local/lib/bake/bootstrap/wait.sh"
    return [_exact(where, DIFFERS)]


def _archived_script_mode(t: Path) -> list[tuple[str, str]]:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        (info,) = [info for info, _ in members if info.name == "usr/local/sbin/bake-bootstrap"]
        info.mode = 0o644

    _repack(t, "cp-2", change)
    return [_exact("nodes/cp-2:/usr/local/sbin/bake-bootstrap", DIFFERS)]


def _archived_extra(t: Path) -> list[tuple[str, str]]:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        info = tarfile.TarInfo("etc/cron.d/x")
        members.append((info, b"* * * * * root true\n"))

    _repack(t, "worker-2", change)
    return [_exact("nodes/worker-2/user-data", "write_files differ from the manifest's file list")]


def _archive_not_tar(t: Path) -> list[tuple[str, str]]:
    doc = _user_data(t, "worker-2")
    _entry(doc, ARCHIVE)["content"] = base64.b64encode(gzip.compress(b"not a tar")).decode()
    _set_user_data(t, "worker-2", _dump(doc))
    return [("nodes/worker-2/user-data", r"unreadable cloud-config: .*not a tar archive.*")]


def _archive_symlink(t: Path) -> list[tuple[str, str]]:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        info = tarfile.TarInfo("etc/shadow")
        info.type, info.linkname = tarfile.SYMTYPE, "/tmp/x"
        members.append((info, b""))

    _repack(t, "worker-2", change)
    return [("nodes/worker-2/user-data", r"unreadable cloud-config: .*'etc/shadow' is not a plain file")]


def _archive_not_unpacked(t: Path) -> list[tuple[str, str]]:
    doc = _user_data(t, "etcd-1")
    doc["runcmd"] = doc["runcmd"][1:] + doc["runcmd"][:1]  # after systemd started the units: too late
    _set_user_data(t, "etcd-1", _dump(doc))
    return [("nodes/etcd-1/user-data", rf"{ARCHIVE} is not unpacked by the first runcmd entry \(tar .+\)")]


def _write_file_owner(t: Path) -> list[tuple[str, str]]:
    """A key handed to another account: at mode 0600 its owner reads it."""
    doc = _user_data(t, "cp-1")
    _entry(doc, f"{PKI}/apiserver.key")["owner"] = "nobody:nogroup"
    _set_user_data(t, "cp-1", _dump(doc))
    return [_exact(f"nodes/cp-1:{PKI}/apiserver.key", DIFFERS)]


def _archived_script_owner(t: Path) -> list[tuple[str, str]]:
    """tar --same-owner gives an archived file the owner its header names."""

    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        (info,) = [info for info, _ in members if info.name == "usr/local/sbin/bake-bootstrap"]
        info.uname = "nobody"

    _repack(t, "worker-1", change)
    return [_exact("nodes/worker-1:/usr/local/sbin/bake-bootstrap", DIFFERS)]


def _content_not_text(value: object, kind: str) -> Callable[[Path], list[tuple[str, str]]]:
    """A content that is neither text nor !!binary (`content:` left empty is null): cloud-init fails on it
    and writes neither that file nor the entries after it."""

    def inject(t: Path) -> list[tuple[str, str]]:
        doc = _user_data(t, "worker-2")
        _entry(doc, "/etc/crictl.yaml")["content"] = value
        _set_user_data(t, "worker-2", _dump(doc))
        message = f"unreadable cloud-config: a write_files content is {kind}, neither text nor !!binary"
        return [_exact("nodes/worker-2/user-data", message)]

    return inject


def _content_not_gzip(t: Path) -> list[tuple[str, str]]:
    doc = _user_data(t, "worker-2")
    entry = _entry(doc, "/etc/crictl.yaml")
    entry["encoding"], entry["content"] = "gz+b64", base64.b64encode(entry["content"].encode()).decode()
    _set_user_data(t, "worker-2", _dump(doc))
    return [("nodes/worker-2/user-data", r"unreadable cloud-config: gz\+b64 content does not decompress: .+")]


def _written_twice(t: Path) -> list[tuple[str, str]]:
    """A write_files entry for a file the archive unpacks too: which one lands depends on the order."""
    doc = _user_data(t, "worker-2")
    doc["write_files"].append(
        {"path": "/usr/local/sbin/bake-bootstrap", "permissions": "0755", "content": "x"}
    )
    _set_user_data(t, "worker-2", _dump(doc))
    message = f"unreadable cloud-config: /usr/local/sbin/bake-bootstrap: both in write_files and in {ARCHIVE}"
    return [_exact("nodes/worker-2/user-data", message)]


def _key_group_readable(t: Path) -> list[tuple[str, str]]:
    _set_mode(t, "cp-1", f"{PKI}/apiserver.key", "0640", "0640")
    return [_exact(f"nodes/cp-1:{PKI}/apiserver.key", "private key written with permissions '0640'")]


def _key_default_permissions(t: Path) -> list[tuple[str, str]]:
    """No `permissions`: cloud-init's default 0644 would apply."""
    _set_mode(t, "etcd-2", f"{PKI}/etcd/peer.key", None, "0")
    return [_exact(f"nodes/etcd-2:{PKI}/etcd/peer.key", "private key written with permissions ''")]


def _key_as_binary(t: Path) -> list[tuple[str, str]]:
    """The key as YAML's !!binary (bytes, which cloud-init writes as they are) and readable by all."""
    doc = _user_data(t, "cp-1")
    entry = _entry(doc, f"{PKI}/apiserver.key")
    assert "encoding" not in entry
    entry["content"], entry["permissions"] = entry["content"].encode(), "0644"
    data = _dump(doc)
    assert data.count(b"!!binary") == 1
    _set_user_data(t, "cp-1", data)
    manifest = _manifest(t)
    (f,) = [f for f in _manifest_node(manifest, "cp-1")["files"] if f["path"] == f"{PKI}/apiserver.key"]
    f["mode"] = "0644"
    _save_manifest(t, manifest)
    return [_exact(f"nodes/cp-1:{PKI}/apiserver.key", "private key written with permissions '0644'")]


def _worker_private_key(t: Path) -> list[tuple[str, str]]:
    _add_file(t, "worker-1", f"{PKI}/stray.key", (_bundle(t) / "nodes/cp-2/apiserver.key").read_bytes())
    return [_exact("nodes/worker-1", "a worker holds a private key")]


def _worker_ca_crt(t: Path) -> list[tuple[str, str]]:
    _add_file(t, "worker-2", f"{PKI}/ca.crt", (_bundle(t) / "pki/ca.crt").read_bytes(), "0644")
    message = "a worker has /etc/kubernetes/pki/ca.crt (kubeadm join preflight rejects it)"
    return [_exact("nodes/worker-2", message)]


def _ca_key_on_etcd_member(t: Path) -> list[tuple[str, str]]:
    _add_file(t, "etcd-2", "/root/ca.key", (_bundle(t) / "pki/ca.key").read_bytes())
    return [_exact("nodes/etcd-2", "an etcd member holds the cluster CA key")]


def _etcd_ca_key_on_external_control_plane(t: Path) -> list[tuple[str, str]]:
    _add_file(t, "cp-3", f"{PKI}/etcd/ca.key", (_bundle(t) / "pki/etcd/ca.key").read_bytes())
    return [_exact("nodes/cp-3", "a control plane of a external-etcd cluster holds the etcd CA key")]


def _encryption_key_on_worker(t: Path) -> list[tuple[str, str]]:
    """The EncryptionConfiguration of a control plane, copied onto a worker."""
    content, _, _ = check.write_files_of((t / "nodes/cp-1/user-data").read_bytes())[
        "/etc/kubernetes/encryption/config.yaml"
    ]
    _add_file(t, "worker-1", "/etc/kubernetes/encryption/config.yaml", content)
    return [_exact("nodes/worker-1", "a worker holds the key of the Secrets in etcd")]


def _encryption_key_on_etcd_member(t: Path) -> list[tuple[str, str]]:
    key = (_bundle(t) / "encryption-key").read_bytes().strip()
    _add_file(t, "etcd-2", "/root/enc", b"secret: " + key + b"\n")
    return [_exact("nodes/etcd-2", "an etcd member holds the key of the Secrets in etcd")]


JOIN_CONF = "/etc/bake/join.conf"


def _token(t: Path) -> bytes:
    return (_bundle(t) / "token").read_bytes()


def _token_on_worker(t: Path) -> list[tuple[str, str]]:
    """cluster.join: certificate (the default): a worker holding the shared token is a finding."""
    _add_file(t, "worker-1", "/etc/bake/token", _token(t))
    why = "it joins with its own credential (cluster.join: certificate)"
    return [_exact("nodes/worker-1", f"holds the bootstrap token in /etc/bake/token, but {why}")]


def _token_on_etcd_member(t: Path) -> list[tuple[str, str]]:
    _add_file(t, "etcd-2", "/root/join", b"kubeadm join --token " + _token(t))
    return [_exact("nodes/etcd-2", "holds the bootstrap token in /root/join, but an etcd member")]


def _token_secret_on_etcd_member(t: Path) -> list[tuple[str, str]]:
    """The token's secret half alone (a bootstrap-token Secret's `token-secret`) is the token: the id half is
    public, it names the token in every `kubeadm token list`."""
    secret = _token(t).strip().split(b".")[1]
    _add_file(t, "etcd-2", "/root/join", b"kubeadm join --token " + _token(t))
    _add_file(t, "etcd-2", "/root/secret.yaml", b"token-secret: " + secret + b"\n")
    return [
        _exact(
            "nodes/etcd-2", "holds the bootstrap token in /root/join, /root/secret.yaml, but an etcd member"
        )
    ]


def _replace_file(t: Path, node: str, path: str, content: bytes | None) -> None:
    """Change (or with None drop) a write_files entry, and the manifest with it."""
    doc = _user_data(t, node)
    if content is None:
        doc["write_files"] = [e for e in doc["write_files"] if e["path"] != path]
    else:
        entry = _entry(doc, path)
        entry["encoding"], entry["content"] = "b64", base64.b64encode(content).decode()
    _set_user_data(t, node, _dump(doc))
    data = _manifest(t)
    files = _manifest_node(data, node)["files"]
    (f,) = [f for f in files if f["path"] == path]
    if content is None:
        files.remove(f)
    else:
        f["sha256"] = hashlib.sha256(content).hexdigest()
    _save_manifest(t, data)


def _join_conf_of_another_node(t: Path) -> list[tuple[str, str]]:
    """A seed copied across nodes: worker-1 would join as worker-2."""
    other = check.write_files_of((t / "nodes/worker-2/user-data").read_bytes())[JOIN_CONF][0]
    _replace_file(t, "worker-1", JOIN_CONF, other)
    message = (
        "its certificate is for CN=system:node:worker-2 O=system:nodes, "
        "not system:node:worker-1 in system:nodes"
    )
    return [_exact(f"nodes/worker-1:{JOIN_CONF}", message)]


def _join_conf_missing(t: Path) -> list[tuple[str, str]]:
    _replace_file(t, "cp-2", JOIN_CONF, None)
    return [_exact("nodes/cp-2", f"joins with a certificate but has no {JOIN_CONF}")]


def _join_conf_foreign_ca(t: Path) -> list[tuple[str, str]]:
    """The node's own identity, but signed by a CA the cluster does not know (here: the etcd CA)."""
    subject = [(NameOID.ORGANIZATION_NAME, "system:nodes"), (NameOID.COMMON_NAME, "system:node:worker-2")]
    _replace_file(t, "worker-2", JOIN_CONF, _join_conf_signed_by(t, "etcd/ca", subject))
    message = "its certificate is not signed by the cluster CA, has expired, or does not match its key"
    return [_exact(f"nodes/worker-2:{JOIN_CONF}", message)]


def _join_conf_signed_by(t: Path, ca: str, subject: list[tuple[x509.ObjectIdentifier, str]]) -> bytes:
    """worker-2's join.conf with a fresh client certificate for `subject`, signed by bundle CA `ca`."""
    ours = yaml.safe_load(check.write_files_of((t / "nodes/worker-2/user-data").read_bytes())[JOIN_CONF][0])
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = x509.load_pem_x509_certificate((_bundle(t) / f"pki/{ca}.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((_bundle(t) / f"pki/{ca}.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in subject])
    cert = (
        x509.CertificateBuilder(
            issuer_name=ca_cert.subject, subject_name=name, public_key=key.public_key(), serial_number=8,
            not_valid_before=now - timedelta(minutes=5), not_valid_after=now + timedelta(days=30),
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    user = ours["users"][0]["user"]
    user["client-certificate-data"] = base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()
    user["client-key-data"] = base64.b64encode(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    ).decode()
    return yaml.safe_dump(ours).encode()


def _join_conf_padded_identity(t: Path) -> list[tuple[str, str]]:
    """Signed by the cluster CA, the node's own name, but with a second CN and system:masters added."""
    subject = [
        (NameOID.ORGANIZATION_NAME, "system:nodes"),
        (NameOID.ORGANIZATION_NAME, "system:masters"),
        (NameOID.COMMON_NAME, "system:node:worker-2"),
        (NameOID.COMMON_NAME, "system:node:cp-1"),
    ]
    _replace_file(t, "worker-2", JOIN_CONF, _join_conf_signed_by(t, "ca", subject))
    message = (
        "its certificate is for CN=system:node:worker-2,system:node:cp-1 O=system:nodes,system:masters, "
        "not system:node:worker-2 in system:nodes"
    )
    return [_exact(f"nodes/worker-2:{JOIN_CONF}", message)]


def _join_conf_pins_another_ca(t: Path) -> list[tuple[str, str]]:
    """A credential the cluster CA signed, but the kubeconfig trusts another CA for the apiserver."""
    subject = [(NameOID.ORGANIZATION_NAME, "system:nodes"), (NameOID.COMMON_NAME, "system:node:worker-2")]
    doc = yaml.safe_load(_join_conf_signed_by(t, "ca", subject))
    other = (_bundle(t) / "pki/front-proxy-ca.crt").read_bytes()
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(other).decode()
    _replace_file(t, "worker-2", JOIN_CONF, yaml.safe_dump(doc).encode())
    return [_exact(f"nodes/worker-2:{JOIN_CONF}", "it does not pin the cluster CA of the bundle")]


FAULTS = [
    Fault("manifest-unreadable", "truncated", _manifest_unreadable),
    Fault("manifest-unreadable", "not-an-object", _manifest_not_an_object),
    Fault("manifest-unreadable", "no-nodes", _manifest_nodes(lambda m: m.pop("nodes"))),
    Fault("manifest-unreadable", "nodes-not-a-list", _manifest_nodes(lambda m: m.update(nodes={}))),
    Fault("manifest-unreadable", "node-not-an-object", _manifest_nodes(lambda m: m["nodes"].append("cp-4"))),
    Fault("manifest-unreadable", "node-without-name", _manifest_nodes(lambda m: m["nodes"][1].pop("name"))),
    Fault(
        "manifest-unreadable", "role-not-text", _manifest_nodes(lambda m: m["nodes"][-1].update(role=None))
    ),
    Fault("sums-missing", "deleted", _sums_missing),
    Fault("sums-file-missing", "deleted", _sums_file_missing),
    Fault("sums-file-missing", "outside-the-tree", _sums_escape),
    Fault("sums-mismatch", "appended", _sums_mismatch),
    Fault("mode-directory", "0755", _mode_directory),
    Fault("mode-directory", "tree-root", _mode_tree_root),
    Fault("mode-directory", "bundle-root", _mode_bundle_root),
    Fault("mode-secret-file", "key", _mode_key),
    Fault("mode-secret-file", "token", _mode_token),
    Fault("mode-secret-file", "token-gzip", _mode_token_gzip),
    Fault("mode-secret-file", "token-encoded", _mode_token_encoded),
    Fault("mode-secret-file", "iso", _mode_iso),
    Fault("bundle-invalid", "key-swapped", _bundle_invalid),
    Fault("bundle-missing", "deleted", _bundle_missing),
    Fault("discovery-hash", "zeroed", _discovery_hash),
    Fault("seed-missing", "network-config", _seed_missing),
    Fault("iso-unreadable", "zeroed", _iso_unreadable),
    Fault("iso-differs", "meta-data", _iso_differs),
    Fault("http-differs", "edited", _http_differs),
    Fault("http-differs", "deleted", _http_missing),
    Fault("http-differs", "published-by-manifest-but-absent", _http_published_by_manifest_but_absent),
    Fault("http-withheld-seed", "control-plane", _http_control_plane_seed),
    Fault("http-withheld-seed", "etcd-member", _http_etcd_member_seed),
    Fault("user-data-unreadable", "entry-without-path", _user_data_unreadable),
    Fault("user-data-unreadable", "not-yaml", _user_data_not_yaml),
    Fault("write-files-list", "extra", _write_files_extra),
    Fault("write-files-list", "dropped", _write_files_dropped),
    Fault("write-files-list", "no-list-in-manifest", _write_files_unlisted),
    Fault("write-file-differs", "content", _write_file_content),
    Fault("write-file-differs", "mode", _write_file_mode),
    Fault("write-file-differs", "archived-content", _archived_script_content),
    Fault("write-file-differs", "archived-mode", _archived_script_mode),
    Fault("write-file-differs", "owner", _write_file_owner),
    Fault("write-file-differs", "archived-owner", _archived_script_owner),
    Fault("user-data-unreadable", "content-null", _content_not_text(None, "NoneType")),
    Fault("user-data-unreadable", "content-a-number", _content_not_text(42, "int")),
    Fault("user-data-unreadable", "content-not-gzip", _content_not_gzip),
    Fault("user-data-unreadable", "written-twice", _written_twice),
    Fault("write-files-list", "archived-extra", _archived_extra),
    Fault("user-data-unreadable", "archive-not-tar", _archive_not_tar),
    Fault("user-data-unreadable", "archive-symlink", _archive_symlink),
    Fault("archive-not-unpacked", "runcmd-reordered", _archive_not_unpacked),
    Fault("key-permissions", "0640", _key_group_readable),
    Fault("key-permissions", "default", _key_default_permissions),
    Fault("key-permissions", "binary", _key_as_binary),
    Fault("worker-private-key", "leaf-key", _worker_private_key),
    Fault("worker-ca-crt", "ca.crt", _worker_ca_crt),
    Fault("ca-key-role", "etcd-member", _ca_key_on_etcd_member),
    Fault("etcd-ca-key-role", "external-control-plane", _etcd_ca_key_on_external_control_plane),
    Fault("join-token-holder", "worker", _token_on_worker),
    Fault("join-token-holder", "etcd-member", _token_on_etcd_member),
    Fault("join-token-holder", "secret-half", _token_secret_on_etcd_member),
    Fault("join-credential", "another-nodes", _join_conf_of_another_node),
    Fault("join-credential", "missing", _join_conf_missing),
    Fault("join-credential", "foreign-ca", _join_conf_foreign_ca),
    Fault("join-credential", "padded-identity", _join_conf_padded_identity),
    Fault("join-credential", "pins-another-ca", _join_conf_pins_another_ca),
    Fault("encryption-key-role", "worker", _encryption_key_on_worker),
    Fault("encryption-key-role", "etcd-member", _encryption_key_on_etcd_member),
]
# detectors whose fault needs something other than a tree edit (or another bake): tested below
SEPARATE = {
    "cert-expired",
    "cert-expiring",
    "schema",
    "schema-unavailable",
    "report-key",
    "key-pack-not-unpacked",
}


def _matches(findings: list[dict[str, str]], detector: str, expected: list[tuple[str, str]]) -> None:
    got = [(f["where"], f["message"]) for f in findings if f["check"] == detector]
    assert len(got) == len(expected), got
    for (where, message), (want_where, pattern) in zip(got, expected, strict=True):
        assert where == want_where and re.fullmatch(pattern, message, re.S), (where, message)


@pytest.mark.usefixtures("no_cloud_init")
@pytest.mark.parametrize("fault", FAULTS, ids=[f"{f.detector}:{f.name}" for f in FAULTS])
def test_fault_is_reported_exactly(tree: Path, fault: Fault) -> None:
    expected = fault.inject(tree)
    code, findings = run_check(tree)
    errors = [f for f in findings if f["level"] == "error"]
    assert code == 1, findings
    assert {f["check"] for f in errors} == {fault.detector}, errors
    _matches(errors, fault.detector, expected)
    warnings = [f["check"] for f in findings if f["level"] == "warning"]
    assert warnings == (["schema-unavailable"] if fault.detector != "manifest-unreadable" else [])


@pytest.fixture(scope="module")
def rsa_pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """single-master with RSA keys: its control plane's keys travel in a key pack."""
    out = tmp_path_factory.mktemp("check-rsa")
    proc = bake_once("--profile", "single-master", "-q", out=out)
    assert proc.returncode == 0, proc.stderr
    return _lay_out(out, "single-master", tmp_path_factory.mktemp("pristine-rsa"))


@pytest.mark.usefixtures("no_cloud_init")
@pytest.mark.parametrize("dropped", [compact_keys.DROPIN_PATH, compact_keys.SCRIPT_PATH])
def test_a_key_pack_nothing_unpacks_is_reported(rsa_pristine: Path, tmp_path: Path, dropped: str) -> None:
    """The pack's drop-in or program gone from the seed (and from the manifest, so that nothing else
    differs): the node would boot without its keys, and kubeadm would make its own."""
    tree = _copy(rsa_pristine, tmp_path)
    assert run_check(tree)[0] == 0
    if dropped == compact_keys.DROPIN_PATH:
        doc = _user_data(tree, "cp-1")
        doc["write_files"] = [e for e in doc["write_files"] if e["path"] != dropped]
        _set_user_data(tree, "cp-1", _dump(doc))
    else:

        def drop(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
            members[:] = [(i, c) for i, c in members if "/" + i.name != dropped]

        _repack(tree, "cp-1", drop)
    manifest = _manifest(tree)
    (node,) = [n for n in manifest["nodes"] if n["name"] == "cp-1"]
    node["files"] = [f for f in node["files"] if f["path"] != dropped]
    _save_manifest(tree, manifest)
    code, findings = run_check(tree)
    errors = [f for f in findings if f["level"] == "error"]
    assert code == 1 and {f["check"] for f in errors} == {"key-pack-not-unpacked"}, errors
    (error,) = errors
    assert error["where"] == "nodes/cp-1/user-data"
    assert error["message"] == (
        f"{compact_keys.PACK_PATH} is not unpacked: {compact_keys.DROPIN_PATH} (its ExecStartPre=) or "
        f"{compact_keys.SCRIPT_PATH} is missing or changed"
    )


REPORT_KEY = "/etc/bake/report.key"


@pytest.mark.usefixtures("no_cloud_init")
def test_report_keys_are_each_nodes_own(tmp_path: Path) -> None:
    """cluster.seed.reportUrl: a seed copied across nodes (worker-1 reporting as worker-2), or a key
    planted on another node, is a finding; the tree as baked is not."""
    out = tmp_path / "out"
    proc = bake_once("--profile", "single-master", *ALG, "--set", "cluster.seed.reportUrl=http://10.77.0.1:8080",
                "-q", out=out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    t = _lay_out(out, "single-master", tmp_path / "laid")
    code, findings = run_check(t)
    assert code == 0 and not [f for f in findings if f["level"] == "error"]
    other = check.write_files_of((t / "nodes/worker-2/user-data").read_bytes())[REPORT_KEY][0]
    _replace_file(t, "worker-1", REPORT_KEY, other)
    own = check.write_files_of((t / "nodes/cp-1/user-data").read_bytes())[REPORT_KEY][0]
    _add_file(t, "cp-1", "/root/keys", b"#!/bin/sh\nKEY=" + own.strip() + b"\nOTHER=" + other.strip() + b"\n")
    _replace_file(t, "worker-2", REPORT_KEY, b"5a" * 32 + b"\n")  # a well-formed key of no node
    code, findings = run_check(t)
    errors = [f for f in findings if f["level"] == "error"]
    assert code == 1 and {f["check"] for f in errors} == {"report-key"}, errors
    _matches(errors, "report-key", [
        _exact("nodes/cp-1", "holds the report key of worker-2 in /root/keys"),
        _exact(f"nodes/worker-1:{REPORT_KEY}", "is not this node's report key but worker-2's"),
        _exact(f"nodes/worker-2:{REPORT_KEY}", "is not this node's report key but no node's"),
    ])  # fmt: skip


@pytest.mark.usefixtures("no_cloud_init")
def test_pristine_tree_passes_without_cloud_init(tree: Path) -> None:
    code, findings = run_check(tree)
    assert code == 0
    assert [(f["level"], f["check"]) for f in findings if f["level"] != "ok"] == [
        ("warning", "schema-unavailable")
    ]
    _matches(
        findings,
        "schema-unavailable",
        [_exact("user-data", "cloud-init is not installed here: schema not checked")],
    )


@pytest.mark.usefixtures("no_cloud_init")
def test_a_seed_without_the_archive_needs_no_unpacking(tree: Path) -> None:
    """The runcmd rule is for a user-data that ships the first-boot archive: one without it (its files
    out of the manifest too) and without the `tar --extract` entry is no finding."""
    doc = _user_data(tree, "worker-2")
    assert doc["runcmd"][0][:2] == ["tar", "--extract"]
    doc["runcmd"] = doc["runcmd"][1:]
    doc["write_files"] = [e for e in doc["write_files"] if e["path"] != ARCHIVE]
    _set_user_data(tree, "worker-2", _dump(doc))
    data = _manifest(tree)
    node = _manifest_node(data, "worker-2")
    kept = {e["path"] for e in doc["write_files"]}
    node["files"] = [f for f in node["files"] if f["path"] in kept]
    _save_manifest(tree, data)
    code, findings = run_check(tree)
    assert code == 0, [f for f in findings if f["level"] == "error"]


@pytest.mark.usefixtures("no_cloud_init")
def test_an_entry_without_owner_or_content_gets_cloud_inits_defaults(tree: Path) -> None:
    """cloud-init writes an entry without `owner` (or with an empty one) as root:root, and one without
    `content` as an empty file: that is what the manifest is compared with."""
    doc = _user_data(tree, "worker-1")
    del _entry(doc, "/etc/crictl.yaml")["owner"]
    _entry(doc, "/etc/sysctl.d/k8s.conf")["owner"] = ""
    doc["write_files"].append({"path": "/etc/bake/empty", "permissions": "0644"})
    _set_user_data(tree, "worker-1", _dump(doc))
    data = _manifest(tree)
    _manifest_node(data, "worker-1")["files"].append(
        {
            "path": "/etc/bake/empty",
            "mode": "0644",
            "owner": "root:root",
            "sha256": hashlib.sha256(b"").hexdigest(),
        }
    )
    _save_manifest(tree, data)
    code, findings = run_check(tree)
    assert code == 0, [f for f in findings if f["level"] == "error"]


MODES_OK = "directories 0700, secret-bearing files 0600"
BUNDLE_OK = "bundle consistent: keys match certificates, leaves chain to their CAs"


@pytest.mark.usefixtures("no_cloud_init")
def test_what_passed_is_listed(tree: Path) -> None:
    """The ok lines: the checksums (as many as SHA256SUMS has lines), the modes of the tree and of the
    bundle, the bundle, each node's secrets by its role in the manifest. A part with an error has none;
    the nodes after a failing one still have theirs."""
    sums = len((tree / "SHA256SUMS").read_text().splitlines())
    fit = [(f"nodes/{n['name']}", f"secrets fit the {n['role']} role") for n in _manifest(tree)["nodes"]]
    assert [where for where, _ in fit][5:] == ["nodes/cp-3", "nodes/worker-1", "nodes/worker-2"]
    code, findings = run_check(tree)
    assert code == 0
    oks = [(f["where"], f["message"]) for f in findings if f["level"] == "ok"]
    assert oks == [
        ("SHA256SUMS", f"{sums} files match"),
        ("modes", MODES_OK),
        ("secrets", MODES_OK),
        ("secrets", BUNDLE_OK),
        *fit,
    ]
    _etcd_ca_key_on_external_control_plane(tree)  # cp-3
    _sums_mismatch(tree)
    _mode_iso(tree)
    code, findings = run_check(tree)
    assert code == 1
    oks = [(f["where"], f["message"]) for f in findings if f["level"] == "ok"]
    assert oks == [("secrets", MODES_OK), ("secrets", BUNDLE_OK), *fit[:5], *fit[6:]]


@pytest.mark.usefixtures("no_cloud_init")
def test_without_secrets_option_the_bundle_is_found_where_bake_keeps_it(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --secrets: secrets/<cluster> under the current directory (where `bake` writes it), else the
    secrets/ directory inside the tree that an older bake wrote."""
    work = tmp_path / "work"
    shutil.copytree(_bundle(tree), work / "secrets/ha-external-etcd", symlinks=True)
    monkeypatch.chdir(work)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["check", str(tree), "--json"]) == 0, out.getvalue()
    shutil.move(work / "secrets/ha-external-etcd", tree / "secrets")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["check", str(tree), "--json"]) == 0, out.getvalue()
    oks = [(f["where"], f["message"]) for f in json.loads(out.getvalue())["findings"] if f["level"] == "ok"]
    assert ("secrets", BUNDLE_OK) in oks and ("secrets", MODES_OK) not in oks  # its modes: the tree's
    (tree / "secrets").rename(tmp_path / "gone")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["check", str(tree), "--json"]) == 1
    (finding,) = [f for f in json.loads(out.getvalue())["findings"] if f["level"] == "error"]
    assert finding["check"] == "bundle-missing"
    assert finding["message"] == "no secrets bundle at secrets/ha-external-etcd (--secrets names it)"
    # a manifest without its cluster's name: never secrets/ itself (the root of every cluster's bundle)
    (work / "secrets/ha-external-etcd").mkdir(parents=True)
    data = _manifest(tree)
    data["cluster"] = ""
    _save_manifest(tree, data)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["check", str(tree), "--json"]) == 1
    (finding,) = [f for f in json.loads(out.getvalue())["findings"] if f["level"] == "error"]
    assert (finding["check"], finding["message"]) == (
        "bundle-missing",
        f"no secrets bundle at {tree / 'secrets'} (--secrets names it)",
    )


@pytest.mark.usefixtures("no_cloud_init")
def test_a_sealed_bundle_is_checked_with_the_keys_given_or_named_as_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle sealed with age (`bake --encrypt-to`): opened with the identity passed in (`bake check
    --identity`), it is checked and in the calendar; without one, its first sealed file is named and the
    finding says that the bundle was not checked."""
    monkeypatch.delenv("BAKE_SECRETS_IDENTITY", raising=False)
    monkeypatch.delenv("BAKE_SECRETS_PASSPHRASE", raising=False)
    identity = pyrage.x25519.Identity.generate()
    key = tmp_path / "key.txt"
    key.write_text(f"{identity}\n")
    out = tmp_path / "out"
    proc = bake_once(
        "--profile", "single-master", *ALG, "--encrypt-to", str(identity.to_public()), "-q", out=out
    )
    assert proc.returncode == 0, proc.stderr
    tree, sealed = out / "single-master", bundle(out, "single-master")
    assert (sealed / "token.age").is_file() and not (sealed / "token").exists()
    opened = check.check_tree(tree, secrets_dir=sealed, keys=sealing.Keys((key,)))
    assert opened.errors == 0, [f for f in opened.findings if f.level == "error"]
    assert ("secrets", BUNDLE_OK) in [(f.where, f.message) for f in opened.findings if f.level == "ok"]
    assert {"pki/ca", "nodes/cp-1/apiserver"} <= {e.file for e in opened.calendar if e.node == "bundle"}
    closed = check.check_tree(tree, secrets_dir=sealed)
    assert [(f.check, f.where, f.message) for f in closed.findings if f.level == "error"] == [
        (
            "bundle-invalid",
            str(sealed / "token.age"),
            "encrypted with age, and no identity was given (--identity FILE or BAKE_SECRETS_IDENTITY); "
            "the bundle's keys and certificates were not checked, nor is it in the expiry calendar",
        )
    ]
    assert not [e for e in closed.calendar if e.node == "bundle"]


@pytest.mark.usefixtures("no_cloud_init")
def test_loose_file_without_secrets_passes(tree: Path) -> None:
    """The mode rule is for files holding a key, a token or a seed: a world-readable meta-data or
    network-config (a host name, addresses) is no finding."""
    loose = ["nodes/worker-1/meta-data", "nodes/worker-1/network-config", "http/worker-2/meta-data"]
    for rel in loose:
        data = (tree / rel).read_bytes()
        assert b"token" not in data.lower() and b"PRIVATE KEY" not in data, rel
        (tree / rel).chmod(0o644)
    code, findings = run_check(tree)
    assert code == 0, [f for f in findings if f["level"] == "error"]
    assert [f["check"] for f in findings if f["level"] != "ok"] == ["schema-unavailable"]


@pytest.mark.usefixtures("no_cloud_init")
def test_a_topology_no_profile_has_is_judged_as_external_etcd(tree: Path) -> None:
    """A tampered manifest: its topology unknown, each node is held to its role's row with external etcd
    (the strictest with control planes), which this external-etcd tree meets."""
    data = _manifest(tree)
    assert data["topology"] == "external-etcd"
    data["topology"] = "etcd-in-a-box"
    _save_manifest(tree, data)
    code, findings = run_check(tree)
    assert code == 0, [f for f in findings if f["level"] == "error"]


@pytest.mark.usefixtures("no_cloud_init")
def test_a_role_no_profile_has_may_hold_no_key(tree: Path) -> None:
    """A tampered manifest: a node of a role bake does not know may hold nothing, and the findings name
    it by that role."""
    data = _manifest(tree)
    _manifest_node(data, "etcd-3")["role"] = "storage"
    _save_manifest(tree, data)
    code, findings = run_check(tree)
    assert code == 1
    key_findings = [
        ("worker-private-key", "nodes/etcd-3", "storage holds a private key"),
        ("etcd-ca-key-role", "nodes/etcd-3", "storage of a external-etcd cluster holds the etcd CA key"),
    ]
    assert [(f["check"], f["where"], f["message"]) for f in findings if f["level"] == "error"] == key_findings
    # and its seed is withheld from the HTTP tree, as a key holder's: served, it is reported
    (tree / "http/etcd-3").mkdir(mode=0o700)
    for name in ("user-data", "meta-data", "network-config"):
        shutil.copy2(tree / "nodes/etcd-3" / name, tree / "http/etcd-3" / name)
    code, findings = run_check(tree)
    assert code == 1
    errors = [(f["check"], f["where"]) for f in findings if f["level"] == "error"]
    assert errors == [("http-withheld-seed", "http/etcd-3"), *((c, w) for c, w, _ in key_findings)]


@pytest.mark.usefixtures("no_cloud_init")
def test_token_detectors_follow_the_join_mode(tmp_path: Path) -> None:
    """cluster.join: token: every joining node holds the token and no credential, and that passes; an
    etcd member holding it still does not."""
    proc = bake_once("--profile", "ha-external-etcd", *ALG, "--set", "cluster.join=token", "-q", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    tree = _lay_out(tmp_path, "ha-external-etcd", tmp_path / "laid-out")
    assert _manifest(tree)["join"] == "token"
    token = _token(tree)
    worker = check.write_files_of((tree / "nodes/worker-1/user-data").read_bytes())
    assert token.strip() in worker["/run/kubeadm/kubeadm-join-config.yaml"][0]
    assert JOIN_CONF not in check.write_files_of((tree / "nodes/worker-1/user-data").read_bytes())
    code, findings = run_check(tree)
    assert code == 0, [f for f in findings if f["level"] == "error"]
    data = _manifest(tree)
    del data["join"]  # a bake from before cluster.join: it joined with the token
    _save_manifest(tree, data)
    code, findings = run_check(tree)
    assert code == 0, [f for f in findings if f["level"] == "error"]
    expected = _token_on_etcd_member(tree)
    code, findings = run_check(tree)
    errors = [f for f in findings if f["level"] == "error"]
    assert code == 1 and {f["check"] for f in errors} == {"join-token-holder"}
    _matches(errors, "join-token-holder", expected)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-node tree: cloud-init schema takes a second or two per user-data."""
    out = tmp_path_factory.mktemp("check-small")
    proc = bake_once("--profile", "single-node", *ALG, "-q", out=out)
    assert proc.returncode == 0, proc.stderr
    return _lay_out(out, "single-node", tmp_path_factory.mktemp("small"))


@pytest.mark.integration
def test_pristine_tree_passes_with_cloud_init(small: Path) -> None:
    program("cloud-init")
    code, findings = run_check(small)
    assert code == 0, [f for f in findings if f["level"] != "ok"]
    assert [f for f in findings if f["level"] != "ok"] == []
    assert any(f["where"] == "user-data" and "1 files checked" in f["message"] for f in findings)


@pytest.mark.integration
def test_schema_failure_is_reported(small: Path, tmp_path: Path) -> None:
    """cloud-init's own validator rejects the user-data; the check reports it, it does not pass."""
    program("cloud-init")
    _bad_bootcmd_is_the_only_error(_copy(small, tmp_path), "dev-1")


BAD_BOOTCMD = r"cloud-init schema: .*bootcmd: 42 is not of type 'array'.*"


def _bad_bootcmd_is_the_only_error(tree: Path, node: str) -> None:
    """Break `node`'s user-data for cloud-init's schema: `bake check` fails with exactly that finding."""
    doc = _user_data(tree, node)
    doc["bootcmd"] = 42
    _set_user_data(tree, node, _dump(doc))
    code, findings = run_check(tree)
    errors = [f for f in findings if f["level"] == "error"]
    assert code == 1
    _matches(
        errors,
        "schema",
        [(str(tree / f"nodes/{node}/user-data"), BAD_BOOTCMD)],
    )
    assert {f["check"] for f in errors} == {"schema"}


@pytest.mark.integration
def test_schema_finding_ends_with_the_commands_last_500_characters(small: Path, tmp_path: Path) -> None:
    """A long verdict is cut to its end, where cloud-init names the errors: the finding is the real
    command's output, stripped, from its 500th-last character on."""
    cloud_init = program("cloud-init")
    tree = _copy(small, tmp_path)
    doc = _user_data(tree, "dev-1")
    doc["bootcmd"] = [{"not-a-command": i} for i in range(20)]  # one error per entry
    _set_user_data(tree, "dev-1", _dump(doc))
    path = tree / "nodes/dev-1/user-data"
    proc = subprocess.run([cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True)
    said = (proc.stdout + proc.stderr).strip()
    assert proc.returncode != 0 and len(said) > 600, said
    code, findings = run_check(tree)
    assert code == 1
    _matches(
        [f for f in findings if f["level"] == "error"],
        "schema",
        [_exact(str(path), f"cloud-init schema: {said[-500:]}")],
    )


def _counting_command(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the files the real `cloud-init schema` command runs on."""
    ran: list[Path] = []
    real = cloudinit_schema.run_command

    def counting(cloud_init: str, path: Path) -> cloudinit_schema.Verdict:
        ran.append(path)
        return real(cloud_init, path)

    monkeypatch.setattr(cloudinit_schema, "run_command", counting)
    return ran


@pytest.mark.integration
def test_schema_batch_finds_what_the_command_finds(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that is not its shape's cross-check is judged by the batch alone, with the command's words;
    the command runs once per shape (etcd, control plane, worker), not once per node."""
    program("cloud-init")
    ran = _counting_command(monkeypatch)
    _bad_bootcmd_is_the_only_error(tree, "worker-2")
    assert sorted(p.parent.name for p in ran) == ["cp-1", "etcd-1", "worker-1"]


@pytest.mark.integration
@pytest.mark.parametrize(
    "data",
    [
        b"#cloud-config\nbootcmd: 42\n",
        b"bootcmd: [true]\n",
        b"#cloud-config\n- a list\n",
        b"#cloud-config\nwrite_files: [{path: /x, encoding: rot13, content: x}]\n",
        b"#cloud-config\nruncmd: [[ls, -l], 1]\nusers: [default, {name: x, groups: 4}]\n",
    ],
    ids=["type", "no-header", "not-a-dict", "enum", "nested"],
)
def test_schema_batch_says_what_the_command_says(tmp_path: Path, data: bytes) -> None:
    """Verdict and output of the batch equal the real command's, byte for byte, failures included."""
    cloud_init = program("cloud-init")
    files = [tmp_path / "good", tmp_path / "bad"]
    files[0].write_bytes(b"#cloud-config\nbootcmd: [[echo, hi]]\n")
    files[1].write_bytes(data)
    batch = cloudinit_schema.Batch(cloud_init, files, [("a",), ("a",)], jobs=2)
    try:
        got = batch._batch()
    finally:
        batch.close()
    assert got is not None
    want = {f: cloudinit_schema.run_command(cloud_init, f) for f in files}
    assert got == want
    assert [v.failed for v in want.values()] == [False, True]


@pytest.mark.integration
def test_schema_batch_that_disagrees_is_not_trusted(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that calls a broken file valid is caught by the cross-check on its shape's first node;
    then every file goes through the command, and the second broken worker is found too."""
    program("cloud-init")
    for node in ("worker-1", "worker-2"):
        doc = _user_data(tree, node)
        doc["bootcmd"] = 42
        _set_user_data(tree, node, _dump(doc))

    def lenient(self: cloudinit_schema.Batch) -> dict[Path, cloudinit_schema.Verdict]:
        return {p: cloudinit_schema.Verdict(False, f"Valid cloud-config: {p}\n") for p in self.paths}

    monkeypatch.setattr(cloudinit_schema.Batch, "_batch", lenient)
    code, findings = run_check(tree)
    assert code == 1
    assert [f["where"] for f in findings if f["check"] == "schema"] == [
        str(tree / "nodes/worker-1/user-data"),
        str(tree / "nodes/worker-2/user-data"),
    ]


def _not_after(tree: Path, rel: str) -> datetime:
    """Read with the x509 parser, not through the bundle loader."""
    return x509.load_pem_x509_certificate((tree / rel).read_bytes()).not_valid_after_utc


@pytest.mark.usefixtures("no_cloud_init")
def test_expiry_warns_then_fails(pristine: Path) -> None:
    leaf = _not_after(_bundle(pristine), "nodes/cp-1/apiserver.crt")
    # the join credentials (30 days) are in their last third well before; they are judged below
    join = _not_after(_bundle(pristine), "nodes/worker-1/kubeconfig/join.crt")
    early = check.check_tree(pristine, join - timedelta(days=11), _bundle(pristine))
    assert not [f for f in early.findings if f.level == "warning" and f.check == "cert-expiring"]
    late = check.check_tree(pristine, join - timedelta(days=9), _bundle(pristine))
    assert (
        "cert-expiring",
        "secrets/nodes/worker-1/join.conf",
        f"expires on {join:%Y-%m-%d}, in less than 10 days",
    ) in [(f.check, f.where, f.message) for f in late.findings]
    soon = check.check_tree(pristine, leaf - timedelta(days=10), _bundle(pristine))
    others = [f for f in soon.findings if not f.where.endswith("/join.conf")]
    warned = [(f.check, f.where, f.message) for f in others if f.level == "warning"]
    assert (
        "cert-expiring",
        "secrets/nodes/cp-1/apiserver",
        f"expires on {leaf:%Y-%m-%d}, in less than 30 days",
    ) in warned
    assert all(c == "cert-expiring" for c, _, _ in warned if c != "schema-unavailable")
    assert not [f for f in others if f.level == "error"]
    assert {f.where for f in soon.findings if f.level == "error"} == {
        f"secrets/nodes/{n}/join.conf" for n in ("cp-2", "cp-3", "worker-1", "worker-2")
    }  # long expired by then
    later = check.check_tree(pristine, leaf + timedelta(seconds=1), _bundle(pristine))
    expired = {(f.check, f.where, f.message) for f in later.findings if f.level == "error"}
    assert ("cert-expired", "secrets/nodes/cp-1/apiserver", f"expired on {leaf:%Y-%m-%d}") in expired
    assert {c for c, _, _ in expired} == {"cert-expired"}
    # the CAs (ten years) are not expired yet at that time
    ca = _not_after(_bundle(pristine), "pki/ca.crt")
    assert ca > leaf + timedelta(days=30)
    assert not any(w == "secrets/ca" for _, w, _ in expired)
    # exit code: the CLI returns 1 exactly when there are errors (checked for real in the faults above)
    assert later.errors > 0 and datetime.now(UTC) < leaf


@pytest.mark.usefixtures("no_cloud_init")
def test_expiry_judges_the_cas_by_the_manifests_window(tree: Path) -> None:
    """cluster.certificateRenewal.before as the manifest records it (90 days here) is the CAs' window too;
    the window is strict, and a certificate is expired from its NotAfter second on."""
    data = _manifest(tree)
    assert data["certificateRenewal"]["before"] == "720h"
    data["certificateRenewal"]["before"] = "2160h"
    _save_manifest(tree, data)
    ca = _not_after(_bundle(tree), "pki/ca.crt")
    assert (
        _not_after(_bundle(tree), "pki/etcd/ca.crt")
        == _not_after(_bundle(tree), "pki/front-proxy-ca.crt")
        == ca
    )
    cas = ("secrets/ca", "secrets/etcd-ca", "secrets/front-proxy-ca")

    def expiring(now: datetime) -> dict[str, str]:
        report = check.check_tree(tree, now, _bundle(tree))
        return {f.where: f.message for f in report.findings if f.check == "cert-expiring"}

    assert expiring(ca - timedelta(days=60)) == dict.fromkeys(
        cas, f"expires on {ca:%Y-%m-%d}, in less than 90 days"
    )
    assert expiring(ca - timedelta(days=90)) == {}
    assert len(expiring(ca - timedelta(days=90) + timedelta(seconds=1))) == 3
    at_end = check.check_tree(tree, ca, _bundle(tree))
    expired = {f.where: f.message for f in at_end.findings if f.check == "cert-expired" and f.where in cas}
    assert expired == dict.fromkeys(cas, f"expired on {ca:%Y-%m-%d}")


KUBEADM_CAS = {"ca": "ca", "etcd-ca": "etcd/ca", "front-proxy-ca": "front-proxy-ca"}
"""kubeadm's three CAs: name -> file under pki/ (kubeadm's certs.GetDefaultCertList)."""


def _bundle_certificates(secrets_dir: Path) -> dict[str, x509.Certificate]:
    """The bundle's certificates by the name the calendar gives them (pki/<ca>, nodes/<owner>/<leaf>),
    found through the bundle's index (bundle.json) and read with the x509 parser."""

    def load(rel: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((secrets_dir / rel).read_bytes())

    certs = {f"pki/{ca}": load(f"pki/{rel}.crt") for ca, rel in KUBEADM_CAS.items()}
    for owner, leaves in json.loads((secrets_dir / "bundle.json").read_bytes())["leaves"].items():
        for name, rel in leaves.items():
            certs[f"nodes/{owner}/{name}"] = load(f"nodes/{owner}/{rel}.crt")
    return certs


def _warning(name: str, cert: x509.Certificate, now: datetime, within: str) -> str:
    """One line of `bake`'s expiry warnings, as the README's renewal section shows it."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    end = cert.not_valid_after_utc
    return (
        f"certificate {cn!r} (bundle {name}) expires on {end:%Y-%m-%d %H:%M} UTC, "
        f"in {(end - now).days} days (within {within})"
    )


def test_expiry_warnings_list_what_is_due_soonest_first(pristine: Path) -> None:
    """What `bake` prints about a bundle: every certificate strictly inside its window, soonest first
    (then by name); never a join credential, which is meant to run out with the join window."""
    held = secrets.load_bundle(_bundle(pristine))
    assert held is not None
    certs = _bundle_certificates(_bundle(pristine))
    assert {n.rsplit("/", 1)[1] for n in certs if n.endswith("join.conf")} == {"join.conf"}
    born = certs["pki/ca"].not_valid_before_utc
    # a window wider than the CAs' ten years: everything is due, the one-year leaves before the CAs
    wide = CertificateRenewal(before="90000h")
    due = sorted((c.not_valid_after_utc, n) for n, c in certs.items() if not n.endswith("/join.conf"))
    assert [n for _, n in due][-3:] == ["pki/ca", "pki/etcd-ca", "pki/front-proxy-ca"]
    within = "cluster.certificateRenewal.before (90000h)"
    assert check.expiry_warnings(held, born, wide) == [_warning(n, certs[n], born, within) for _, n in due]
    # the default window (720h) is strict: 30 days before NotAfter is not yet due, a second later is
    leaf = certs["nodes/cp-1/apiserver"]
    edge = leaf.not_valid_after_utc - timedelta(days=30)
    assert not [w for w in check.expiry_warnings(held, edge, CertificateRenewal()) if "cp-1/apiserver)" in w]
    late = edge + timedelta(seconds=1)
    within = "cluster.certificateRenewal.before (720h)"
    assert _warning("nodes/cp-1/apiserver", leaf, late, within) in check.expiry_warnings(
        held, late, CertificateRenewal()
    )
    # renewal off: a year's window, capped at the last third of a one-year leaf's lifetime (121 days)
    off = CertificateRenewal(enabled=False, before="8760h")
    assert timedelta(days=365) <= leaf.not_valid_after_utc - leaf.not_valid_before_utc < timedelta(days=366)
    early = leaf.not_valid_after_utc - timedelta(days=125)
    assert check.expiry_warnings(held, early, off) == []
    inside = leaf.not_valid_after_utc - timedelta(days=100)
    within = (
        "cluster.certificateRenewal.before (8760h), at most the last third of its lifetime with renewal off"
    )
    assert _warning("nodes/cp-1/apiserver", leaf, inside, within) in check.expiry_warnings(held, inside, off)


def test_a_join_credential_of_unknown_lifetime_is_due_in_the_last_30_days() -> None:
    """An entry without a lifetime has no cap on its window: a join credential's is then the 30 days
    at most (RENEW_BEFORE), whatever the renewal window."""
    end = datetime(2030, 1, 1, tzinfo=UTC)
    join = check.Expiry("worker-1", JOIN_CONF, "system:node:worker-1", end)
    assert join.window(CertificateRenewal(before="2160h")) == (
        timedelta(days=30),
        "the last third of its join window",
    )


@pytest.mark.usefixtures("no_cloud_init")
def test_calendar_names_a_certificate_by_all_its_common_names(tree: Path) -> None:
    """A certificate with two CNs (the padded join credential) is listed under both, comma-separated."""
    _join_conf_padded_identity(tree)
    subjects = {
        e["subject"] for e in _json_calendar(tree) if (e["node"], e["file"]) == ("worker-2", JOIN_CONF)
    }
    assert subjects == {"kubernetes", "system:node:worker-2,system:node:cp-1"}  # the cluster CA, the client


def _self_signed(cn: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder(
            issuer_name=name, subject_name=name, public_key=key.public_key(), serial_number=9,
            not_valid_before=now - timedelta(minutes=5), not_valid_after=now + timedelta(days=30),
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.usefixtures("no_cloud_init")
def test_calendar_skips_what_is_no_certificate_and_goes_on(tree: Path) -> None:
    """A seed's .conf that only looks like a kubeconfig, and a PEM block that is no certificate, are
    left out of the calendar; the files and certificates after them are still in it."""
    _add_file(tree, "worker-1", "/etc/a.conf", b"client-certificate-data: [\n", "0644")  # before join.conf
    garbage = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    _add_file(tree, "worker-1", "/etc/bake/extra.crt", garbage + _self_signed("extra"), "0644")
    calendar = _json_calendar(tree)
    assert {(e["file"], e["subject"]) for e in calendar if e["node"] == "worker-1"} == {
        ("/etc/bake/extra.crt", "extra"),
        (JOIN_CONF, "kubernetes"),
        (JOIN_CONF, "system:node:worker-1"),
    }
    code, findings = run_check(tree)
    assert code == 0, [f for f in findings if f["level"] == "error"]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CALENDAR_LINE = re.compile(
    r"  \S+ \S+Z (?P<colour>(?:\x1b\[[0-9;]*m)*) *-?\d+ days (?:\x1b\[0m)?(?P<rest>.*)"
)


def _coloured_calendar(report: check.Report) -> dict[tuple[str, ...], str]:
    """(node, file, subject) -> the ANSI colour of its days in `bake check`'s calendar ("" uncoloured)."""
    out = io.StringIO()
    _print_calendar(Console(file=out, force_terminal=True, color_system="standard", width=400), report)
    colours = {}
    for line in out.getvalue().splitlines()[1:]:
        m = _CALENDAR_LINE.fullmatch(line)
        assert m, repr(line)
        entry = re.match(r"(\S+) +(\S+)  \((.*?)\)", _ANSI.sub("", m["rest"]))
        assert entry, repr(line)
        colours[entry.groups()] = m["colour"]
    assert len(colours) == len(report.calendar)
    return colours


@pytest.mark.usefixtures("no_cloud_init")
def test_calendar_colours_a_join_credential_in_the_last_third_of_its_window(pristine: Path) -> None:
    """A join credential (30 days, cluster.joinWindow) is yellow in its last 10 days only, by its own
    window and not by the renewal window (30 days) of the other leaves, which stay uncoloured."""
    certs = _bundle_certificates(_bundle(pristine))
    join = certs["nodes/worker-1/join.conf"]
    assert timedelta(days=30) <= join.not_valid_after_utc - join.not_valid_before_utc < timedelta(days=31)
    joiners = ("cp-2", "cp-3", "worker-1", "worker-2")
    joins = {("bundle", f"nodes/{n}/join.conf", f"system:node:{n}") for n in joiners}
    joins |= {(n, JOIN_CONF, f"system:node:{n}") for n in joiners}
    before = _coloured_calendar(check.check_tree(pristine, join.not_valid_after_utc - timedelta(days=11),
                                                 _bundle(pristine)))  # fmt: skip
    assert {k for k, colour in before.items() if colour} == set()
    inside = _coloured_calendar(check.check_tree(pristine, join.not_valid_after_utc - timedelta(days=9),
                                                 _bundle(pristine)))  # fmt: skip
    assert {k: colour for k, colour in inside.items() if colour} == dict.fromkeys(joins, "\x1b[33m")


# --------------------------------------------------------------------------------------------------
# the list of detectors


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk, minus the mutant copies of functions a mutation-testing run adds (`*__mutmut_N`)."""
    yield node
    for child in ast.iter_child_nodes(node):
        name = getattr(child, "name", None) or ""  # an `except` without `as` has name None
        if "__mutmut_" in name and not name.endswith("__mutmut_orig"):
            continue
        yield from _walk(child)


def _ids_reported_in_check() -> set[str]:
    ids: set[str] = set()
    modules = sorted(Path(check.__file__).parent.glob("*.py"))
    assert len(modules) > 1, modules  # the package's modules, not only its __init__
    for node in (n for module in modules for n in _walk(ast.parse(module.read_text()))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("error", "warn")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "report"
        ):
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), ast.dump(node)
            ids.add(first.value)
    return ids


def test_every_detector_has_a_fault() -> None:
    assert _ids_reported_in_check() == set(check.DETECTORS)
    tested = {f.detector for f in FAULTS} | SEPARATE
    missing = set(check.DETECTORS) - tested
    assert not missing, f"detectors without a fault test in tests/test_check.py: {sorted(missing)}"
    assert tested <= set(check.DETECTORS)


def test_unknown_detector_id_is_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown detector id"):
        check.Report().error("no-such-detector", "x", "y")


@pytest.mark.integration
def test_json_calendar_entry(pristine: Path) -> None:
    """`bake check --json`'s calendar, the keys scripts read: the cluster CA as openssl reads it."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["check", str(pristine), "--secrets", str(_bundle(pristine)), "--json"])
    calendar = json.loads(out.getvalue())["calendar"]
    openssl = subprocess.run(
        [program("openssl"), "x509", "-noout", "-enddate", "-in", str(_bundle(pristine) / "pki/ca.crt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    end = datetime.strptime(openssl.stdout.strip().removeprefix("notAfter="), "%b %d %H:%M:%S %Y %Z")
    (entry,) = [e for e in calendar if e["file"] == "pki/ca"]
    days = (end.replace(tzinfo=UTC) - datetime.now(UTC)).days
    assert entry["daysLeft"] in (days, days + 1)  # a day may have passed between the two
    assert entry == {
        "node": "bundle",
        "file": "pki/ca",
        "subject": "kubernetes",
        "notAfter": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "daysLeft": entry["daysLeft"],
    }


def _json_calendar(tree: Path) -> list[dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["check", str(tree), "--secrets", str(_bundle(tree)), "--json"])
    calendar: list[dict[str, Any]] = json.loads(out.getvalue())["calendar"]
    return calendar


@pytest.mark.usefixtures("no_cloud_init")
def test_json_calendar_notes_what_only_a_bake_renews(pristine: Path) -> None:
    """External etcd: no control plane holds the etcd CA key (README, secrets table), so its
    apiserver-etcd-client, in its seed and in the bundle, is renewed by a re-bake only; nothing else is."""
    noted = {(e["node"], e["file"]): e["note"] for e in _json_calendar(pristine) if "note" in e}
    cps = ("cp-1", "cp-2", "cp-3")
    assert noted == {
        **{(cp, f"{PKI}/apiserver-etcd-client.crt"): "renewed by re-bake only" for cp in cps},
        **{("bundle", f"nodes/{cp}/apiserver-etcd-client"): "renewed by re-bake only" for cp in cps},
    }


@pytest.mark.usefixtures("no_cloud_init")
def test_calendar_is_soonest_first_then_by_node_file_and_subject(pristine: Path) -> None:
    calendar = [(e["notAfter"], e["node"], e["file"], e["subject"]) for e in _json_calendar(pristine)]
    assert calendar == sorted(calendar)
    assert calendar[0][2].endswith("join.conf") and calendar[-1][0] > calendar[0][0]  # 30 days, 10 years


@pytest.mark.usefixtures("no_cloud_init")
def test_json_calendar_has_the_seed_servers_tls(tmp_path: Path) -> None:
    """An https:// report URL: `bake serve`'s CA and server certificate (kept in the bundle's pki/) are
    in the calendar too, each once, as the x509 parser reads them."""
    out = tmp_path / "out"
    proc = bake_once("--profile", "single-master", *ALG, "--set", "cluster.seed.reportUrl=https://10.77.0.1:8443",
                     "-q", out=out)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tree = _lay_out(out, "single-master", tmp_path / "laid")
    calendar = _json_calendar(tree)
    for name in ("seed-ca", "seed-server"):
        cert = x509.load_pem_x509_certificate((_bundle(tree) / f"pki/{name}.crt").read_bytes())
        (entry,) = [e for e in calendar if e["file"] == f"pki/{name}"]
        assert entry == {
            "node": "bundle",
            "file": f"pki/{name}",
            "subject": cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            "notAfter": f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
            "daysLeft": entry["daysLeft"],
        }
