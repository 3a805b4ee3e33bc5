"""A test pod image for the e2e VMs: Debian's static busybox as a one-layer OCI image archive.

The real-kubeadm VMs have no registry to pull from, so the pods the e2e tests run (DNS lookups, an HTTP
server and a client across nodes) use an image made here from a Debian package and imported like every
other archive. The archive is an OCI image layout tar (what `ctr images import` and `bake`'s air-gap path
read), byte-identical for the same busybox: every timestamp is zero and every owner root.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from .image import cache_root

BUSYBOX_IMAGE = "bake.test/busybox:1.35"
# The applets the tests call; each is a symlink to /bin/busybox in the image.
APPLETS = ("sh", "nslookup", "wget", "httpd", "sleep", "cat", "echo", "hostname", "mkdir", "ip")


def _tar_bytes(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info in entries:
            content = data.get(info.name)
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    return info


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def image_archive(name: str, arch: str, files: dict[str, bytes], entrypoint: list[str]) -> bytes:
    """An OCI image layout tar with one image `name` for linux/`arch`: `files` (path -> content,
    executables) plus APPLETS symlinks to /bin/busybox, /tmp and /www."""
    entries = [_info("bin", tarfile.DIRTYPE, 0o755), _info("tmp", tarfile.DIRTYPE, 0o1777)]
    entries.append(_info("www", tarfile.DIRTYPE, 0o755))
    data = {}
    for path, content in sorted(files.items()):
        rel = path.lstrip("/")
        entries.append(_info(rel, tarfile.REGTYPE, 0o755, len(content)))
        data[rel] = content
    entries += [_info(f"bin/{a}", tarfile.SYMTYPE, 0o777, link="busybox") for a in APPLETS]
    layer_tar = _tar_bytes(entries, data)
    layer_gz = gzip.compress(layer_tar, mtime=0)
    blobs: dict[str, bytes] = {}
    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(blobs, layer_gz)}
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
    }
    config_desc = {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        **_blob(blobs, json.dumps(config, sort_keys=True, separators=(",", ":")).encode()),
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer],
    }
    manifest_desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(blobs, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()),
        "platform": {"architecture": arch, "os": "linux"},
        "annotations": {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
        },
    }
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}
    index["manifests"] = [manifest_desc]
    top = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(index, sort_keys=True, separators=(",", ":")).encode(),
    }
    out_entries = [_info(n, tarfile.REGTYPE, 0o644, len(b)) for n, b in top.items()]
    out_entries += [_info("blobs", tarfile.DIRTYPE, 0o755), _info("blobs/sha256", tarfile.DIRTYPE, 0o755)]
    out_data = dict(top)
    for digest, blob in sorted(blobs.items()):
        path = f"blobs/sha256/{digest.removeprefix('sha256:')}"
        out_entries.append(_info(path, tarfile.REGTYPE, 0o644, len(blob)))
        out_data[path] = blob
    return _tar_bytes(out_entries, out_data)


def _busybox_binary(arch: str, work: Path) -> bytes:
    """/bin/busybox of Debian 12's busybox-static for `arch` (`apt-get download`, then dpkg-deb -x)."""
    pkg = "busybox-static" if arch == _dpkg_arch() else f"busybox-static:{arch}"
    proc = subprocess.run(
        ["apt-get", "download", pkg], cwd=work, capture_output=True, text=True, timeout=300, check=False
    )
    debs = sorted(work.glob("busybox-static_*.deb"))
    if proc.returncode != 0 or not debs:
        raise RuntimeError(f"apt-get download {pkg} failed: {proc.stdout}{proc.stderr}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(work / "x")], check=True, timeout=120)
    return (work / "x" / "bin" / "busybox").read_bytes()


def _dpkg_arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def busybox_archive(arch: str) -> Path:
    """The busybox test image archive for `arch`, made once and cached next to the guest images."""
    out = cache_root() / "test-images" / f"busybox-{arch}.tar"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bake-busybox-") as tmp:
        binary = _busybox_binary(arch, Path(tmp))
        data = image_archive(BUSYBOX_IMAGE, arch, {"/bin/busybox": binary}, ["/bin/sh"])
        part = out.with_suffix(".part")
        part.write_bytes(data)
        shutil.move(part, out)
    return out
