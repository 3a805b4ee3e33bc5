"""The golden tree: what a bake of every embedded profile gives each node, every node file stored once.

tests/fixtures/golden/<profile>/, one directory per file in profiles/:

    manifest.json                       the bake's manifest, each node's file list (paths, modes,
                                        owners, digests: what its user-data references name too)
                                        replaced by the name of that user-data, once checked equal
    nodes/<node>/meta-data              as baked
    nodes/<node>/network-config         as baked
    nodes/<node>/user-data              the seed's user-data, each write_files content replaced by a
                                        reference: the sha256 of the bytes cloud-init writes and the
                                        golden file holding them (the first-boot archive: its tar's
                                        sha256 and its members, each a reference); encodings, modes
                                        and owners stay, and a second line gives the seed's own sha256
    files/<path on node>                a file held by several nodes, the same bytes on each
    nodes/<node>/files/<path on node>   a file held by one node, or whose bytes differ between nodes:
                                        kept under the first node (in profile order) holding those
                                        bytes; a later node with the same bytes references that file

So the first-boot units, the CA certificates and every other file two nodes share are stored once per
profile, a node's own files (its keys, kubeconfigs, kubeadm document, env file) once under that node,
and no golden embeds another: a change to one node file changes one golden file plus the digests that
name it. Reading a node back (`node_files`) checks every digest against the file it names.

The first-boot scripts are the one exception: bake ships them as they are in the repository
(templates/bootstrap/), without their full-line comments and with a header line naming the source. A
copy in every profile's golden would only repeat the repository (six times, for `duplicates` six new
pairs a script), so their reference names that source and the digest of the shipped bytes instead of a
golden file; writing the tree checks that the shipped script is its source but for comment lines.

The split and the reading use Python's own base64, gzip, tarfile and yaml only, never the code under
test; `golden_plan` and the bundle helpers give the per-module golden tests the inputs the bake had.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import posixpath
import re
import tarfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from builder.plan import ClusterPlan, build_plan
from builder.validation.profile import load_profile

from .helpers import FIRST_BOOT_ARCHIVE, REPO, disk_files, write_file_content

GOLDEN = REPO / "tests" / "fixtures" / "golden"
BUNDLES = REPO / "tests" / "fixtures" / "bundles"
PROFILES = tuple(sorted(p.stem for p in (REPO / "profiles").glob("*.yaml")))
"""Every embedded profile (the files themselves, not the loader's list)."""
SETS = (
    "cluster.encryptionAlgorithm=ECDSA-P256",
    "cluster.certificateValidityPeriod=876000h",
    "cluster.caCertificateValidityPeriod=876000h",
)
"""Small keys and certificates valid for a century: the fixture bundles never expire or get renewed."""
SEEDS = ("meta-data", "network-config", "user-data")
MARK = "# golden form: each write_files content is a reference; sha256 of the seed's user-data: "
"""The golden user-data's second line (after #cloud-config): the exact bytes of the seed stay pinned."""

SHIPPED_SCRIPT = re.compile(
    rb"#![^\n]*\n# bake: comments stripped; the commented source is (templates/bootstrap/[A-Za-z0-9._-]+) "
    rb"in the bake package\n"
)
"""The first two lines of a script bake ships from the repository (as builder/node/archive.py writes them)."""

DiskFile = tuple[bytes, str, str]
"""(content, permissions, owner) of a file as it lands on the node."""


class GoldenFile(NamedTuple):
    """A node file read back from the golden tree."""

    content: bytes
    """The golden file's bytes; for a script shipped from the repository, its commented source's."""
    permissions: str
    owner: str
    source: str | None = None
    """The repository file a shipped script comes from (relative to the repository's root), else None."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _members(tar_bytes: bytes) -> list[tuple[str, DiskFile]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for info in tar:
            assert info.isreg(), info.name
            handle = tar.extractfile(info)
            assert handle is not None
            out.append(("/" + info.name, (handle.read(), f"{info.mode:04o}", f"{info.uname}:{info.gname}")))
    return out


def _code(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if not line.lstrip().startswith(b"#")]


def shipped_source(data: bytes) -> str | None:
    """The repository file a shipped script is, but for its full-line comments (checked here), or None
    for any other file."""
    match = SHIPPED_SCRIPT.match(data)
    if match is None:
        return None
    source = match.group(1).decode()
    assert _code(data) == _code((REPO / source).read_bytes()), (
        f"{source}: shipped with more than comments cut"
    )
    return source


def _load_seed(user_data: bytes) -> dict[str, Any]:
    assert user_data.startswith(b"#cloud-config\n"), user_data[:40]
    doc = yaml.safe_load(user_data)
    assert isinstance(doc, dict)
    return doc


# --------------------------------------------------------------------------------------------------
# writing: a profile's seeds -> its golden files


def split(seeds: Mapping[str, Mapping[str, bytes]]) -> dict[str, bytes]:
    """The golden files (path relative to the profile's directory -> bytes) of a profile's seeds, given
    as node -> {meta-data, network-config, user-data}, nodes in profile order."""
    docs = {node: _load_seed(s["user-data"]) for node, s in seeds.items()}
    holders: dict[str, dict[bytes, list[str]]] = {}  # node path -> content -> nodes holding it
    for node, doc in docs.items():
        for entry in doc.get("write_files", []):
            content = write_file_content(entry)
            found = (
                _members(content) if entry["path"] == FIRST_BOOT_ARCHIVE else [(entry["path"], (content,))]
            )
            for path, (data, *_) in found:
                if shipped_source(data) is None:
                    holders.setdefault(path, {}).setdefault(data, []).append(node)
    where: dict[tuple[str, bytes], str] = {}
    out: dict[str, bytes] = {}
    for path, contents in holders.items():
        assert posixpath.isabs(path) and posixpath.normpath(path) == path, path
        shared = len(contents) == 1 and len(next(iter(contents.values()))) > 1
        for data, nodes in contents.items():
            rel = f"files{path}" if shared else f"nodes/{nodes[0]}/files{path}"
            where[(path, data)] = rel
            out[rel] = data

    def ref(path: str, data: bytes) -> dict[str, str]:
        source = shipped_source(data)
        return ({"source": source} if source else {"golden": where[(path, data)]}) | {"sha256": sha256(data)}

    for node, doc in docs.items():
        golden = copy.deepcopy(doc)
        for entry in golden.get("write_files", []):
            content = write_file_content(entry)
            if entry["path"] == FIRST_BOOT_ARCHIVE:
                members = [
                    {"path": p, "permissions": mode, "owner": owner, **ref(p, data)}
                    for p, (data, mode, owner) in _members(content)
                ]
                entry["content"] = {"sha256": sha256(content), "members": members}
            else:
                entry["content"] = ref(entry["path"], content)
        text = yaml.safe_dump(
            golden, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=None
        )
        out[f"nodes/{node}/user-data"] = (
            f"#cloud-config\n{MARK}{sha256(seeds[node]['user-data'])}\n{text}".encode()
        )
        for name in ("meta-data", "network-config"):
            out[f"nodes/{node}/{name}"] = seeds[node][name]
    return out


def manifest(raw: bytes, seeds: Mapping[str, Mapping[str, bytes]]) -> bytes:
    """The golden manifest.json of a bake's: each node's file list, checked to name exactly the files,
    modes, owners and digests its seed writes (and secrets readable by their owner only), replaced by
    the name of its golden user-data, which holds the same facts."""
    doc = json.loads(raw)
    assert [n["name"] for n in doc["nodes"]] == list(seeds)
    for entry in doc["nodes"]:
        written = disk_files(_load_seed(seeds[entry["name"]]["user-data"]))
        listed = sorted((f["path"], f["mode"], f["owner"], f["sha256"]) for f in entry["files"])
        assert listed == [
            (p, mode, owner, sha256(data)) for p, (data, mode, owner) in sorted(written.items())
        ]
        assert all(f["mode"].endswith("00") for f in entry["files"] if f["secret"]), entry["name"]
        entry["files"] = f"nodes/{entry['name']}/user-data"
    return (json.dumps(doc, indent=2) + "\n").encode()


# --------------------------------------------------------------------------------------------------
# reading: a node's golden files -> what lands on the node


def golden_user_data(profile: str, node: str) -> dict[str, Any]:
    """A node's golden user-data (references in place of contents)."""
    text = (GOLDEN / profile / "nodes" / node / "user-data").read_bytes()
    first, mark, _ = text.split(b"\n", 2)
    assert first == b"#cloud-config" and mark.startswith(MARK.encode()), (profile, node)
    return _load_seed(text)


def _read(profile: str, ref: Mapping[str, Any], permissions: str, owner: str) -> GoldenFile:
    if "source" in ref:
        source = str(ref["source"])
        assert source.startswith("templates/bootstrap/") and posixpath.normpath(source) == source, source
        return GoldenFile((REPO / source).read_bytes(), permissions, owner, source)
    rel = str(ref["golden"])
    assert posixpath.normpath(rel) == rel and rel.startswith(("files/", "nodes/")), rel
    data = (GOLDEN / profile / rel).read_bytes()
    assert sha256(data) == ref["sha256"], f"{profile}/{rel}: not the bytes its reference names"
    return GoldenFile(data, permissions, owner)


def _refs(profile: str, node: str) -> list[tuple[str, Mapping[str, Any], str, str]]:
    """(path on the node, reference, permissions, owner) of every file a golden user-data writes, the
    first-boot archive's members in place of the archive."""
    out = []
    for entry in golden_user_data(profile, node).get("write_files", []):
        if entry["path"] == FIRST_BOOT_ARCHIVE:
            out += [(m["path"], m, m["permissions"], m["owner"]) for m in entry["content"]["members"]]
        else:
            out.append((entry["path"], entry["content"], entry["permissions"], entry["owner"]))
    return out


def node_files(profile: str, node: str) -> dict[str, GoldenFile]:
    """What a node's golden user-data leaves on the node once runcmd has unpacked the first-boot
    archive (the archive itself not listed). A path written twice fails, and so does a reference to
    bytes other than those it names."""
    out: dict[str, GoldenFile] = {}
    for path, ref, permissions, owner in _refs(profile, node):
        assert path not in out, f"{profile}/{node}: {path} written twice"
        out[path] = _read(profile, ref, permissions, owner)
    return out


def references(profile: str, node: str) -> dict[str, Path]:
    """path on the node -> the golden file holding its content (shipped scripts, which have none, left
    out)."""
    return {
        path: GOLDEN / profile / ref["golden"] for path, ref, _, _ in _refs(profile, node) if "golden" in ref
    }


# --------------------------------------------------------------------------------------------------
# the inputs the golden bake had, for the per-module golden tests


@cache
def golden_plan(profile: str) -> ClusterPlan:
    return build_plan(load_profile(profile, list(SETS)))


def bundle_token(profile: str) -> str:
    return (BUNDLES / profile / "token").read_text().strip()


def bundle_ca_hash(profile: str) -> str:
    """kubeadm's discovery hash of the bundle's cluster CA (sha256 of its SubjectPublicKeyInfo),
    computed here with `cryptography` directly."""
    cert = x509.load_pem_x509_certificate((BUNDLES / profile / "pki" / "ca.crt").read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + sha256(spki)
