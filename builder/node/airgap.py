"""Air gap: the per-architecture images seed, and the checks that make it complete before anything boots.

With `cluster.airgap` set, nothing is pulled or downloaded at first boot. For each architecture its
nodes run, the bake packs the image archives the user brings (OCI or docker-archive tars that name
their images: `docker save`, `podman save`, `ctr images export`, `skopeo copy ... docker-archive:`)
and the CNI's manifests into one images seed: an ISO 9660 image labelled `bakeimg-<arch>`
(`images/<arch>/images.iso`), with the same files under the HTTP seed tree (`http/_images/<arch>/`,
`_` keeps it apart from node names). The bootstrap finds the seed by its label, imports the archives
into the container runtime before kubeadm and checks that every image the node needs
(builder.plan.images.node_images) is there.

At bake time the archives' own indexes (docker `manifest.json` RepoTags, OCI `index.json`
annotations) are read, so an archive set that lacks an image a node needs fails the bake, not the
boot. Archives are streamed, never held in memory.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from ..emit import iso
from ..errors import BakeError, Problem
from ..model import Arch, Cni, Profile
from ..plan import ClusterPlan, images

LABEL_PREFIX = "bakeimg-"
CNI_DIR = "cni"
SUMS_NAME = "SHA256SUMS"
HTTP_DIR = "http/_images"
ISO_DIR = "images"
MAX_ARCHIVE = 0xFFFFFFFF
"""ISO 9660 records one extent per file: 4 GiB - 1 bytes."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")


def label(arch: str) -> str:
    return f"{LABEL_PREFIX}{arch}"


def iso_rel(arch: str) -> str:
    return f"{ISO_DIR}/{arch}/images.iso"


def http_rel(arch: str) -> str:
    return f"{HTTP_DIR}/{arch}"


@dataclass(frozen=True)
class SeedFile:
    """One file of an images seed: `name` is its path on the seed, `path` where it is read from."""

    name: str
    path: Path
    kind: str  # "archive" or "cni-manifest"


# --------------------------------------------------------------------------------------------------
# profile checks


def _archive_files(entry: str, where: str) -> tuple[list[Path], list[Problem]]:
    path = Path(entry)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix == ".tar" and p.is_file())
        if not found:
            return [], [Problem(where, f"directory {entry} holds no *.tar image archive")]
        return found, []
    if not path.exists():
        return [], [Problem(where, f"no such file or directory: {entry}")]
    if not path.is_file():
        return [], [Problem(where, f"{entry} is not a regular file")]
    return [path], []


def _name_problem(name: str, where: str) -> Problem | None:
    if not _NAME_RE.match(name):
        return Problem(
            where,
            f"file name {name!r} cannot go on the images seed: use 1-64 of A-Z a-z 0-9 . _ + -, "
            "starting with a letter or digit",
        )
    return None


def archive_files(entries: Sequence[str], where: str) -> tuple[list[SeedFile], list[Problem]]:
    """The archives one architecture's entries name (directories expanded to their *.tar files)."""
    out: list[SeedFile] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        paths, found = _archive_files(entry, at)
        problems += found
        for path in paths:
            bad = _name_problem(path.name, at)
            if bad is None and path.name in (CNI_DIR, SUMS_NAME):
                bad = Problem(at, f"{path.name!r} is a name the images seed keeps for itself: rename it")
            if bad is not None:
                problems.append(bad)
                continue
            if path.name in seen:
                problems.append(Problem(at, f"{path} has the same file name as {seen[path.name]}"))
                continue
            try:
                size = path.stat().st_size
                with path.open("rb"):
                    pass
            except OSError as exc:
                problems.append(Problem(at, f"cannot read {path}: {exc.strerror or exc}"))
                continue
            if size > MAX_ARCHIVE:
                problems.append(Problem(at, f"{path} is larger than 4 GiB - 1: split it into smaller ones"))
                continue
            seen[path.name] = str(path)
            out.append(SeedFile(path.name, path, "archive"))
    return out, problems


def seed_names(entries: tuple[str, ...], *, manifests: bool = False) -> tuple[str, ...]:
    """Paths on the images seed of the archives (or CNI manifests) that `entries` name."""
    files, problems = (manifest_files if manifests else archive_files)(entries, "cluster.airgap")
    if problems:
        raise BakeError(problems)
    return tuple(f.name for f in files)


def node_archives(entries: tuple[str, ...], wanted: Iterable[str]) -> tuple[str, ...]:
    """The archives a node imports: those holding an image it runs, and those whose images are not
    all named (what they hold cannot be told). Importing another role's images only costs first-boot
    time: several minutes on slow machines for the control-plane images a worker never runs."""
    files, problems = archive_files(entries, "cluster.airgap")
    if problems:
        raise BakeError(problems)
    want = set(wanted)
    return tuple(f.name for f in files if (refs := _archive_refs_of(f.path)) is None or refs & want)


def _archive_refs_of(path: Path) -> frozenset[str] | None:
    st = path.stat()
    return _archive_refs_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _archive_refs_cached(path: str, size: int, mtime_ns: int) -> frozenset[str] | None:
    """Read once per archive and bake, not once per node: (size, mtime) stand for its content."""
    refs = archive_refs(Path(path))
    return None if refs is None else frozenset(refs)


def manifest_files(entries: Sequence[str], where: str) -> tuple[list[SeedFile], list[Problem]]:
    out: list[SeedFile] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        path = Path(entry)
        bad = _name_problem(path.name, at)
        if bad is not None:
            problems.append(bad)
            continue
        if path.name in seen:
            problems.append(Problem(at, f"two manifests are named {path.name}"))
            continue
        seen.add(path.name)
        try:
            images.manifest_images(path)
        except OSError as exc:
            problems.append(Problem(at, f"cannot read {entry}: {exc.strerror or exc}"))
            continue
        except yaml.YAMLError as exc:
            problems.append(Problem(at, f"{entry} is not a YAML manifest: {str(exc).splitlines()[0]}"))
            continue
        out.append(SeedFile(f"{CNI_DIR}/{path.name}", path, "cni-manifest"))
    return out, problems


_MIRROR_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(:[0-9]{1,5})?\Z")
_MIRROR_URL = re.compile(
    r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?\Z"
)


def mirror_problems(mirrors: dict[str, list[str]]) -> Iterator[Problem]:
    for host, urls in mirrors.items():
        where = f"cluster.registryMirrors.{host}"
        if not _MIRROR_HOST.match(host):
            yield Problem(where, f"{host!r} is not a registry host like docker.io or registry.local:5000")
        if not urls:
            yield Problem(where, "name at least one mirror URL")
        for i, url in enumerate(urls):
            if not _MIRROR_URL.match(url):
                yield Problem(f"{where}[{i}]", f"{url!r} is not a mirror URL like https://mirror.local:5000")


def profile_problems(p: Profile, *, check_archives: bool = True) -> Iterator[Problem]:
    """Checks of cluster.images, cluster.registryMirrors and cluster.airgap (files included)."""
    c = p.cluster
    yield from images.override_problems(c.images)
    yield from mirror_problems(c.registry_mirrors)
    a = c.airgap
    if a is None:
        return
    used: dict[str, int] = {}
    for i, n in enumerate(p.nodes):
        used.setdefault((n.arch or p.defaults.arch).value, i)
    known = [arch.value for arch in Arch]
    for arch in a.images:
        if arch not in known:
            yield Problem(f"cluster.airgap.images.{arch}", f"not an architecture ({', '.join(known)})")
        elif arch not in used:
            yield Problem(f"cluster.airgap.images.{arch}", f"no node runs on {arch}")
    for arch, first in sorted(used.items()):
        where = f"cluster.airgap.images.{arch}"
        if not a.images.get(arch):
            yield Problem(
                where,
                f"required: nodes[{first}] ({p.nodes[first].name}) runs on {arch} and cluster.airgap "
                "is set (nothing is pulled at first boot)",
            )
        elif check_archives:
            yield from archive_files(a.images[arch], where)[1]
    if c.cni is not Cni.NONE and not a.cni_manifests:
        yield Problem(
            "cluster.airgap.cniManifests",
            f"required with cluster.cni {c.cni.value}: with cluster.airgap nothing is downloaded at first "
            "boot, so name the CNI's manifests (e.g. kube-flannel.yml)",
        )
    if c.cni is Cni.NONE and a.cni_manifests:
        yield Problem("cluster.airgap.cniManifests", "cluster.cni is none: no manifests are applied")
    yield from manifest_files(a.cni_manifests, "cluster.airgap.cniManifests")[1]
    yield from images.ref_problems(a.extra_images, "cluster.airgap.extraImages")


# --------------------------------------------------------------------------------------------------
# what the archives hold


def _json_member(tar: tarfile.TarFile, name: str) -> Any:
    try:
        member = tar.getmember(name)
    except KeyError:
        return None
    fh = tar.extractfile(member)
    if fh is None:
        return None
    try:
        return json.loads(fh.read(16 << 20))
    except ValueError:
        return None


def archive_refs(path: Path) -> set[str] | None:
    """The normalized names an archive gives its images, or None when some image has no full name.

    docker-archive: manifest.json RepoTags. OCI: index.json `io.containerd.image.name`, or
    `org.opencontainers.image.ref.name` when that is a whole reference (it may be a bare tag).
    """
    try:
        with tarfile.open(path, "r:") as tar:
            docker = _json_member(tar, "manifest.json")
            oci = _json_member(tar, "index.json")
    except (OSError, tarfile.TarError):
        return None
    refs: set[str] = set()
    unnamed = False
    if isinstance(docker, list):
        for entry in docker:
            tags = entry.get("RepoTags") if isinstance(entry, dict) else None
            if tags:
                refs.update(images.normalize(t) for t in tags if isinstance(t, str))
            else:
                unnamed = True
    if isinstance(oci, dict) and not refs:
        for desc in oci.get("manifests", []) or []:
            notes = desc.get("annotations", {}) if isinstance(desc, dict) else {}
            name = notes.get("io.containerd.image.name") or notes.get("org.opencontainers.image.ref.name")
            if isinstance(name, str) and "/" in name and images.valid_ref(name):
                refs.add(images.normalize(name))
            else:
                unnamed = True
    if docker is None and oci is None:
        return None
    return None if unnamed else refs


@dataclass(frozen=True)
class ArchSeed:
    """Everything one architecture's images seed holds, and what its nodes need."""

    arch: str
    archives: tuple[SeedFile, ...]
    manifests: tuple[SeedFile, ...]
    needed: tuple[str, ...]  # normalized references
    missing: tuple[str, ...]  # needed, and in no archive that names its images
    unknown: tuple[str, ...]  # archives whose images are not all named: cannot be checked here

    @property
    def files(self) -> tuple[SeedFile, ...]:
        return (*self.archives, *self.manifests)


def seeds(plan: ClusterPlan) -> list[ArchSeed]:
    """One ArchSeed per architecture the nodes run, in name order; [] without cluster.airgap."""
    a = plan.settings.airgap
    if a is None:
        return []
    manifests, problems = manifest_files(a.cni_manifests, "cluster.airgap.cniManifests")
    out = []
    for arch in sorted({n.arch.value for n in plan.nodes}):
        archives, found = archive_files(a.images.get(arch, []), f"cluster.airgap.images.{arch}")
        problems += found
        needed = [i.normalized for i in images.arch_images(plan, arch)]
        have: set[str] = set()
        unknown = []
        for archive in archives:
            refs = archive_refs(archive.path)
            if refs is None:
                unknown.append(archive.name)
            else:
                have |= refs
        missing = tuple(r for r in needed if r not in have)
        out.append(ArchSeed(arch, tuple(archives), tuple(manifests), tuple(needed), missing, tuple(unknown)))
    if problems:
        raise BakeError(problems)
    return out


def completeness_problems(seeds_: Sequence[ArchSeed]) -> list[Problem]:
    """A needed image absent from archives that all name their images fails the bake."""
    return [
        Problem(
            f"cluster.airgap.images.{s.arch}",
            f"the archives lack {len(s.missing)} image(s) the {s.arch} nodes need: " + ", ".join(s.missing),
        )
        for s in seeds_
        if s.missing and not s.unknown
    ]


# --------------------------------------------------------------------------------------------------
# the seed itself


def sums_text(digests: dict[str, str]) -> bytes:
    return "".join(f"{d}  {name}\n" for name, d in sorted(digests.items())).encode()


def write_iso(out: BinaryIO, seed: ArchSeed, sums: bytes, *, epoch: int) -> None:
    """The images ISO: archives at the root, manifests under cni/, SHA256SUMS; streamed to `out`."""
    entries: list[tuple[str, Path | bytes]] = [(f.name, f.path) for f in seed.files]
    entries.append((SUMS_NAME, sums))
    iso.write_tree_iso(out, entries, label=label(seed.arch), epoch=epoch)


def copy_to(out: BinaryIO, source: Path) -> None:
    with source.open("rb") as fh:
        shutil.copyfileobj(fh, out, 1 << 20)


def seed_manifest(seed: ArchSeed, digests: dict[str, str], iso_digest: str, iso_size: int) -> dict[str, Any]:
    return {
        "arch": seed.arch,
        "label": label(seed.arch),
        "iso": {"path": iso_rel(seed.arch), "sha256": iso_digest, "size": iso_size},
        "http": http_rel(seed.arch) + "/",
        "files": [
            {"name": f.name, "kind": f.kind, "sha256": digests[f.name], "size": f.path.stat().st_size}
            for f in seed.files
        ],
        "images": list(seed.needed),
        "unchecked": list(seed.unknown),
    }
