"""OCI image archives made here from the built binaries, named as the upstream images.

Each archive is one image for one architecture: an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/``) that also carries Docker's ``manifest.json``, so ``ctr images import``,
``docker load`` and ``podman load`` all take it. Layers are uncompressed (an import in a TCG guest
does not spend minutes inflating) and deterministic: sorted entries, fixed mtimes, uid/gid 0 unless
the upstream image says otherwise.

The contents mirror the upstream images: ``/usr/local/bin/<binary>`` plus ``/go-runner`` as the
entrypoint for the Kubernetes server images, ``/usr/local/bin/etcd``, ``/coredns`` (non-root, with the
bind capability as upstream sets it), ``/pause``, flannel's ``/opt/bin/flanneld``. kube-proxy and
flannel get iptables / nftables / conntrack / ipset and their libraries from Debian's packages
(upstream uses distroless-iptables and Alpine); ``iptables`` points at the nft backend, Debian 12's
default. Archives live in ``<build>/<arch>/images/`` beside ``bin/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from . import CACHE, build

DEFAULT_REPOSITORY = "registry.k8s.io"
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# What distroless-iptables carries that kube-proxy and flannel call; their libraries come along.
NET_PACKAGES = ("iptables", "nftables", "conntrack", "ipset")
BASE_PACKAGES = (*NET_PACKAGES, "busybox-static", "ca-certificates")
# The load balancer of the haproxy-keepalived profiles: Debian's haproxy and keepalived stand in for the
# docker.io images (not reachable here), with what keepalived's health check calls (curl, ip, sh, grep).
LB_PACKAGES = ("haproxy", "keepalived", "curl", "iproute2", "busybox-static")
# Dependencies of the packages' maintainer scripts and of tools the image never runs (perl's modules,
# PAM, dpkg): nothing haproxy, keepalived, curl or ip loads (ldd).
LB_NOT_UNPACKED = frozenset(
    {
        "adduser", "debconf", "dpkg", "gcc-12-base", "init-system-helpers", "lsb-base", "passwd", "tar",
        "usrmerge", "sysvinit-utils", "perl", "perl-base", "perl-modules-5.36", "libfile-find-rule-perl",
        "libnumber-compare-perl", "libtext-glob-perl", "libsnmp-base", "pci.ids", "libpam-modules",
        "libpam-modules-bin", "libpam0g", "libsemanage-common", "libsemanage2", "libaudit-common",
        "libaudit1", "libcap-ng0", "libdb5.3", "libgdbm6", "libgdbm-compat4", "libacl1", "libbz2-1.0",
        "libsasl2-modules-db",
    }
)  # fmt: skip
# Pulled in as dependencies but not needed at run time (maintainer-script and TLS tooling).
NOT_UNPACKED = frozenset(
    {"debconf", "openssl", "libssl3", "ca-certificates", "busybox-static", "gcc-12-base"}
)
EPOCH = 1767225600  # 2026-01-01T00:00:00Z, the mtime of every entry
CREATED = "2026-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NONROOT = 65532  # distroless "nonroot"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# `setcap cap_net_bind_service=+ep`: VFS_CAP_REVISION_2 | effective, permitted bit 10, as setcap writes it
CAP_NET_BIND_SERVICE = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)
PLATFORM_VARIANT = {"arm64": "v8"}


class ImageError(RuntimeError):
    """An image could not be made (binary missing, Debian packages not fetched, unknown name)."""


# --- layer contents --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One tar member; ``path`` has no leading slash."""

    path: str
    kind: str  # "dir" | "file" | "symlink"
    mode: int = 0o755
    data: bytes = b""
    target: str = ""
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """A deterministic uncompressed layer: parents added, sorted by path, fixed mtime, PAX format."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        by_path[e.path.strip("/")] = e
    for path in list(by_path):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            by_path.setdefault(parent, Entry(parent, "dir"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(by_path):
            e = by_path[path]
            info = tarfile.TarInfo(path)
            info.mtime = EPOCH
            info.mode = e.mode
            info.uid, info.gid = e.uid, e.gid
            info.uname = info.gname = ""
            if e.xattrs:  # Go's archive/tar (containerd) reads these as raw bytes
                info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8") for k, v in e.xattrs}
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = e.target
                tar.addfile(info)
            else:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
    return buf.getvalue()


def base_entries() -> list[Entry]:
    """What distroless/static gives every upstream image: users, groups, CA bundle, /tmp."""
    passwd = (
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
    )
    group = f"root:x:0:\ntty:x:5:\nstaff:x:50:\nnobody:x:65534:\nnonroot:x:{NONROOT}:\n"
    return [
        Entry("etc/passwd", "file", 0o644, passwd.encode()),
        Entry("etc/group", "file", 0o644, group.encode()),
        Entry("etc/nsswitch.conf", "file", 0o644, b"passwd: files\ngroup: files\nhosts: files dns\n"),
        Entry("etc/ssl/certs/ca-certificates.crt", "file", 0o644, ca_bundle()),
        Entry("root", "dir", 0o700),
        Entry("home/nonroot", "dir", 0o700, uid=NONROOT, gid=NONROOT),
        Entry("tmp", "dir", 0o1777),
        Entry("var/run", "symlink", 0o777, target="../run"),
        Entry("run", "dir", 0o755),
    ]


def tree_entries(root: Path, prefix: str = "") -> list[Entry]:
    """Every file, directory and symlink under ``root``, modes kept (an unpacked Debian tree)."""
    out: list[Entry] = []
    for path in sorted(root.rglob("*")):
        rel = prefix + path.relative_to(root).as_posix()
        st = path.lstat()
        mode = st.st_mode & 0o7777
        if path.is_symlink():
            out.append(Entry(rel, "symlink", 0o777, target=os.readlink(path)))
        elif path.is_dir():
            out.append(Entry(rel, "dir", mode))
        else:
            out.append(Entry(rel, "file", mode, path.read_bytes()))
    return out


# --- Debian packages ------------------------------------------------------------------------------


def _debian_key(packages: Sequence[str]) -> str:
    text = "\n".join(("debs-v1", SUITE, *MIRRORS, *packages))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def debian_debs(arch: str, packages: Sequence[str] = BASE_PACKAGES, *, log: bool = True) -> list[Path]:
    """The .deb files (``packages`` and their dependencies) for ``arch``, fetched once from Debian's mirror.

    mmdebstrap's ``extract`` variant resolves the dependencies and downloads for any architecture
    without running a maintainer script; only its package cache is kept.
    """
    base = CACHE / f"debian-{_debian_key(packages)}" / arch
    with build.file_lock(base.parent / f".{arch}.lock"):
        if not (base / "ok").exists():
            _fetch_debs(arch, packages, base, log)
    return sorted(base.glob("*.deb"))


def _fetch_debs(arch: str, packages: Sequence[str], base: Path, log: bool) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    tmp = base.parent / f".{arch}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    build.say(log, f"fetching Debian {SUITE} packages for {arch}: {', '.join(packages)} ...")
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--format=directory",
        "--variant=extract",
        "--skip=cleanup/apt/cache",
        f"--architectures={arch}",
        "--include=" + ",".join(packages),
        SUITE,
        str(tmp / "tree"),
        *MIRRORS,
    ]
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ImageError(f"mmdebstrap failed:\n{res.stderr.strip()[-2000:]}")
    for deb in (tmp / "tree/var/cache/apt/archives").glob("*.deb"):
        shutil.move(deb, tmp / deb.name)
    shutil.rmtree(tmp / "tree")
    (tmp / "ok").write_text("\n".join(sorted(p.name for p in tmp.glob("*.deb"))) + "\n")
    shutil.rmtree(base, ignore_errors=True)
    os.rename(tmp, base)


def _deb_field(deb: Path, name: str) -> str:
    res = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True)
    return res.stdout.strip()


def _unpack(debs: Sequence[Path], dest: Path) -> None:
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)


def _prune_docs(root: Path) -> None:
    """Drop manuals and translations; keep each package's copyright file, as distroless does."""
    for sub in ("usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale", "usr/share/bug"):
        shutil.rmtree(root / sub, ignore_errors=True)
    doc = root / "usr/share/doc"
    if doc.is_dir():
        for path in sorted(doc.rglob("*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.name != "copyright":
                path.unlink()


def _packages(arch: str, log: bool, packages: Sequence[str] = BASE_PACKAGES) -> dict[str, Path]:
    return {_deb_field(d, "Package"): d for d in debian_debs(arch, packages, log=log)}


def net_tools_entries(arch: str, work: Path, *, log: bool = True) -> list[Entry]:
    """iptables (nft and legacy), nft, conntrack, ipset and every library they load, from Debian."""
    debs = [d for name, d in _packages(arch, log).items() if name not in NOT_UNPACKED]
    root = work / f"net-{arch}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _unpack(debs, root)
    _prune_docs(root)
    sbin = root / "usr/sbin"
    # what update-alternatives does on a Debian 12 host: the nft backend by default
    for tool in (
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    ):
        link = sbin / tool
        if not link.exists():
            link.symlink_to(tool.replace("tables", "tables-nft", 1))
    for tool in ("iptables-nft", "nft", "conntrack", "ipset"):
        if not (sbin / tool).exists():
            raise ImageError(f"Debian packages for {arch} lack /usr/sbin/{tool}")
    return tree_entries(root)


def busybox_entries(arch: str, work: Path, *, log: bool = True) -> list[Entry]:
    """Debian's static busybox with ``cp`` and ``sh``: what flannel's CNI-plugin init container calls."""
    root = work / f"busybox-{arch}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _unpack([_packages(arch, log)["busybox-static"]], root)
    busybox = root / "bin/busybox"
    if not busybox.exists():
        raise ImageError("busybox-static has no /bin/busybox")
    return [
        Entry("bin/busybox", "file", 0o755, busybox.read_bytes()),
        Entry("bin/cp", "symlink", 0o777, target="busybox"),
        Entry("bin/sh", "symlink", 0o777, target="busybox"),
    ]


def lb_entries(arch: str, work: Path, *, log: bool = True) -> list[Entry]:
    """haproxy, keepalived, curl, ip and busybox's sh / grep with every library they load, from Debian."""
    debs = [d for name, d in _packages(arch, log, LB_PACKAGES).items() if name not in LB_NOT_UNPACKED]
    root = work / f"lb-{arch}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _unpack(debs, root)
    _prune_docs(root)
    # perl's modules: libperl.so is loaded (net-snmp links it) but keepalived runs no perl code
    for perl in [*root.glob("usr/lib/*/perl"), *root.glob("usr/lib/*/perl5"), *root.glob("usr/share/perl*")]:
        shutil.rmtree(perl)
    for tool in ("sh", "grep"):
        link = root / "bin" / tool
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    for binary in ("usr/sbin/haproxy", "usr/sbin/keepalived", "usr/bin/curl", "bin/busybox"):
        if not (root / binary).exists():
            raise ImageError(f"Debian packages for {arch} lack /{binary}")
    return tree_entries(root)


def lb_image_tags(arch: str, *, log: bool = True) -> dict[str, str]:
    """The tag each load-balancer image gets here: ``debian12-<package version>``, so that nobody takes it
    for the docker.io image of that name (a profile points at it with ``cluster.images.<name>.imageTag``)."""
    debs = _packages(arch, log, LB_PACKAGES)
    return {
        kind: "debian12-" + re.sub(r"[^A-Za-z0-9_.-]", "_", _deb_field(debs[kind], "Version"))
        for kind in ("haproxy", "keepalived")
    }


def lb_image_names(arch: str, *, log: bool = True) -> dict[str, str]:
    """kind -> the name the bake gives the load-balancer image with the tags of ``lb_image_tags``."""
    from builder.plan import images as product

    tags = lb_image_tags(arch, log=log)
    refs = {"haproxy": product.HAPROXY, "keepalived": product.KEEPALIVED}
    return {kind: f"{refs[kind].repository}/{kind}:{tag}" for kind, tag in tags.items()}


@cache
def ca_bundle() -> bytes:
    """/etc/ssl/certs/ca-certificates.crt as update-ca-certificates writes it from Debian's package."""
    deb = _packages(build.host_arch(), False)["ca-certificates"]
    tmp = CACHE / "src" / f"ca-certificates-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _unpack([deb], tmp)
    certs = sorted(
        (tmp / "usr/share/ca-certificates").rglob("*.crt"), key=lambda p: p.relative_to(tmp).as_posix()
    )
    if not certs:
        raise ImageError("ca-certificates has no certificates")
    data = b"".join(c.read_bytes().rstrip(b"\n") + b"\n" for c in certs)
    shutil.rmtree(tmp)
    return data


# --- image definitions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """How one upstream image is laid out and started."""

    kind: str
    files: tuple[tuple[str, str], ...]  # (path in the image, binary in bin/)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    net_tools: bool = False
    busybox: bool = False
    lb: bool = False
    bind_cap: tuple[str, ...] = ()  # paths given cap_net_bind_service=+ep
    ports: tuple[str, ...] = ()
    env: tuple[str, ...] = (PATH_ENV,)
    workdir: str = "/"
    labels: dict[str, str] = field(default_factory=dict)


def _server(name: str, *, net_tools: bool = False, bind_cap: bool = False) -> ImageSpec:
    # upstream build/server-image/Dockerfile: the binary in /usr/local/bin, kube-log-runner as /go-runner
    path = f"usr/local/bin/{name}"
    return ImageSpec(
        name,
        ((path, name), ("go-runner", "kube-log-runner")),
        entrypoint=("/go-runner",),
        net_tools=net_tools,
        bind_cap=(path,) if bind_cap else (),
    )


SPECS: dict[str, ImageSpec] = {
    s.kind: s
    for s in (
        _server("kube-apiserver", bind_cap=True),
        _server("kube-controller-manager"),
        _server("kube-scheduler"),
        _server("kube-proxy", net_tools=True),
        ImageSpec(
            "etcd",
            tuple((f"usr/local/bin/{b}", b) for b in ("etcd", "etcdctl", "etcdutl")),
            entrypoint=("/usr/local/bin/etcd",),
            ports=("2379/tcp", "2380/tcp"),
        ),
        # coredns's Dockerfile: distroless static nonroot, setcap on /coredns
        ImageSpec(
            "coredns",
            (("coredns", "coredns"),),
            entrypoint=("/coredns",),
            user="nonroot:nonroot",
            bind_cap=("coredns",),
            ports=("53/tcp", "53/udp"),
        ),
        # build/pause/Dockerfile: scratch, USER 65535:65535
        ImageSpec("pause", (("pause", "pause"),), entrypoint=("/pause",), user="65535:65535", env=()),
        ImageSpec(
            "flannel",
            (("opt/bin/flanneld", "flanneld"), ("opt/bin/install-conf", "install-conf")),
            entrypoint=("/opt/bin/flanneld",),
            net_tools=True,
        ),
        ImageSpec("flannel-cni-plugin", (("flannel", "flannel"),), busybox=True),
        # what the docker.io images start: haproxy's docker-entrypoint.sh adds -W -db to its CMD, osixia's
        # process.sh runs keepalived on the mounted config in the foreground with logs on the console
        ImageSpec(
            "haproxy",
            (),
            entrypoint=("/usr/sbin/haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"),
            lb=True,
        ),
        ImageSpec(
            "keepalived",
            (),
            entrypoint=(
                "/usr/sbin/keepalived",
                "-f",
                "/usr/local/etc/keepalived/keepalived.conf",
                "--dont-fork",
                "--log-console",
            ),
            lb=True,
        ),
    )
}


# --- names ---------------------------------------------------------------------------------------


def kubeadm_image_names(image_repository: str = DEFAULT_REPOSITORY) -> list[str]:
    """``kubeadm config images list`` of the built kubeadm (host arch) for its own version."""
    host = build.host_arch()
    bindir = build.output_dir(host) / "bin"
    kubeadm = bindir / "kubeadm"
    if not kubeadm.exists():
        raise ImageError(f"no kubeadm built for {host} (python -m tests.k8s.build --arch {host})")
    version = build.component_version(next(c for c in build.COMPONENTS if c.name == "kubeadm"))
    argv = [str(kubeadm), "config", "images", "list", "--kubernetes-version", version]
    argv += ["--image-repository", image_repository]
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise ImageError(f"kubeadm config images list failed: {res.stderr.strip()}")
    return [line.strip() for line in res.stdout.splitlines() if line.strip()]


def kind_of(name: str) -> str:
    """Which built image a kubeadm image name stands for (its last path element, tag dropped)."""
    repo = name.rsplit("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        last = last.rsplit(":", 1)[0]
    if last not in SPECS:
        raise ImageError(f"{name}: no image of that kind is built here (known: {', '.join(sorted(SPECS))})")
    return last


@cache
def flannel_manifest_images() -> dict[str, str]:
    """Image names in upstream's kube-flannel.yml, keyed by kind."""
    path = build.module_source("flannel", build.FLANNEL) / "Documentation/kube-flannel.yml"
    names = sorted(set(re.findall(r"image: (\S+)", path.read_text())))
    out: dict[str, str] = {}
    for n in names:
        kind = n.rsplit("/", 1)[-1].split(":")[0]
        out[kind] = n
    if set(out) != {"flannel", "flannel-cni-plugin"}:
        raise ImageError(f"{path}: unexpected images {names}")
    return out


def flannel_image_names() -> dict[str, str]:
    """flannel's images as made here.

    flannel's is named exactly as the manifest does (same version as go.mod). The CNI-plugin image
    holds the plugin built from the CNI plugins module (its own module is not served), so it keeps
    the manifest's repository but a tag naming that source; a manifest using it is edited to match.
    """
    manifest = flannel_manifest_images()
    flannel_version = build.module_requirements("flannel")[build.FLANNEL]
    if not manifest["flannel"].endswith(f":{flannel_version}"):
        raise ImageError(f"kube-flannel.yml names {manifest['flannel']}, go.mod has {flannel_version}")
    plugin = next(c for c in build.COMPONENTS if c.name == "flannel")
    repo = manifest["flannel-cni-plugin"].rsplit(":", 1)[0]
    return {
        "flannel": manifest["flannel"],
        "flannel-cni-plugin": f"{repo}:cni-plugins-{build.component_version(plugin)}",
    }


# --- writing -------------------------------------------------------------------------------------


def images_dir(arch: str = "amd64") -> Path:
    """Where the image archives for ``arch`` live."""
    return build.output_dir(arch) / "images"


def archive_name(name: str) -> str:
    """File name of an image's archive: the reference with '/' and ':' made safe."""
    return re.sub(r"[/:@]", "_", name) + ".tar"


def _blob_dir(arch: str) -> Path:
    return images_dir(arch) / ".blobs"


def _put_blob(arch: str, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    path = _blob_dir(arch) / digest
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.rename(tmp, path)
    return {"digest": f"sha256:{digest}", "size": len(data)}


class _Maker:
    """Builds each kind's blobs once per arch; layers shared between images are stored once."""

    def __init__(self, arch: str, log: bool) -> None:
        self.arch = arch
        self.log = log
        self.bindir = build.output_dir(arch) / "bin"
        self.work = CACHE / "src" / f"images-{arch}-{os.getpid()}"
        self._layers: dict[str, tuple[dict[str, Any], str]] = {}
        self._manifests: dict[str, dict[str, Any]] = {}

    def _layer(self, key: str, make: Any) -> tuple[dict[str, Any], str]:
        if key not in self._layers:
            data = layer_tar(make())
            desc = _put_blob(self.arch, data)
            self._layers[key] = (desc, desc["digest"])  # uncompressed: the diff_id is the digest
        return self._layers[key]

    def _binary(self, name: str) -> bytes:
        path = self.bindir / name
        if not path.exists():
            raise ImageError(f"{path} is not built")
        return path.read_bytes()

    def manifest(self, kind: str) -> dict[str, Any]:
        """The manifest descriptor (with platform) of ``kind``, writing its blobs if needed."""
        if kind in self._manifests:
            return self._manifests[kind]
        spec = SPECS[kind]
        layers = []
        if kind != "pause":  # pause is FROM scratch
            layers.append(self._layer("base", base_entries))
        if spec.net_tools:
            layers.append(self._layer("net", lambda: net_tools_entries(self.arch, self.work, log=self.log)))
        if spec.busybox:
            layers.append(self._layer("busybox", lambda: busybox_entries(self.arch, self.work, log=self.log)))
        if spec.lb:
            layers.append(self._layer("lb", lambda: lb_entries(self.arch, self.work, log=self.log)))

        def app() -> list[Entry]:
            out = []
            for path, binary in spec.files:
                caps = (("security.capability", CAP_NET_BIND_SERVICE),) if path in spec.bind_cap else ()
                out.append(Entry(path, "file", 0o755, self._binary(binary), xattrs=caps))
            return out

        if spec.files:
            layers.append(self._layer(f"app-{kind}", app))
        config: dict[str, Any] = {"Env": list(spec.env), "WorkingDir": spec.workdir}
        if spec.entrypoint:
            config["Entrypoint"] = list(spec.entrypoint)
        if spec.cmd:
            config["Cmd"] = list(spec.cmd)
        if spec.user:
            config["User"] = spec.user
        if spec.ports:
            config["ExposedPorts"] = {p: {} for p in spec.ports}
        if spec.labels:
            config["Labels"] = dict(spec.labels)
        image_config: dict[str, Any] = {
            "architecture": self.arch,
            "os": "linux",
            "created": CREATED,
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [diff for _, diff in layers]},
            "history": [{"created": CREATED, "created_by": f"bake tests/k8s images: {kind}"} for _ in layers],
        }
        if self.arch in PLATFORM_VARIANT:
            image_config["variant"] = PLATFORM_VARIANT[self.arch]
        config_desc = {"mediaType": OCI_CONFIG, **_put_blob(self.arch, _json(image_config))}
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc,
            "layers": [{"mediaType": OCI_LAYER, **desc} for desc, _ in layers],
        }
        platform = {"architecture": self.arch, "os": "linux"}
        if self.arch in PLATFORM_VARIANT:
            platform["variant"] = PLATFORM_VARIANT[self.arch]
        desc = {"mediaType": OCI_MANIFEST, **_put_blob(self.arch, _json(manifest)), "platform": platform}
        self._manifests[kind] = {"descriptor": desc, "manifest": manifest}
        return self._manifests[kind]

    def write(self, kind: str, name: str) -> Path:
        """The archive of image ``kind`` named ``name`` (written once, then reused)."""
        out = images_dir(self.arch) / archive_name(name)
        if out.exists():
            return out
        m = self.manifest(kind)
        desc = dict(m["descriptor"])
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else "latest"
        desc["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}
        blob = m["manifest"]
        digests = [desc["digest"], blob["config"]["digest"], *(layer["digest"] for layer in blob["layers"])]
        docker = [
            {
                "Config": _blob_path(blob["config"]["digest"]),
                "RepoTags": [name],
                "Layers": [_blob_path(layer["digest"]) for layer in blob["layers"]],
            }
        ]
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, "blobs", None)
            _add(tar, "blobs/sha256", None)
            for digest in sorted(set(digests)):
                _add(tar, _blob_path(digest), _blob_dir(self.arch) / digest.split(":", 1)[1])
            _add(tar, "index.json", _json(index))
            _add(tar, "manifest.json", _json(docker))
            _add(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        os.rename(tmp, out)
        return out


def _blob_path(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]


def _json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _add(tar: tarfile.TarFile, path: str, src: bytes | Path | None) -> None:
    info = tarfile.TarInfo(path)
    info.mtime = EPOCH
    info.uname = info.gname = ""
    if src is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    info.mode = 0o644
    if isinstance(src, Path):
        info.size = src.stat().st_size
        with src.open("rb") as fh:
            tar.addfile(info, fh)
    else:
        info.size = len(src)
        tar.addfile(info, io.BytesIO(src))


@contextmanager
def _making(arch: str, log: bool) -> Iterator[_Maker]:
    """A maker holding the per-arch lock (clones sharing the cache key build each archive once)."""
    if not (build.output_dir(arch) / "versions.json").exists():
        raise ImageError(f"binaries for {arch} are not built (python -m tests.k8s.build --arch {arch})")
    with build.file_lock(build.output_dir(arch).parent / f".{arch}.images.lock"):
        images_dir(arch).mkdir(parents=True, exist_ok=True)
        maker = _Maker(arch, log)
        try:
            yield maker
        finally:
            shutil.rmtree(maker.work, ignore_errors=True)


def write_archive(arch: str, kind: str, name: str, *, log: bool = True) -> Path:
    """One archive of image ``kind`` (see SPECS) for ``arch`` under any name (another repository)."""
    if kind not in SPECS:
        raise ImageError(f"unknown image kind {kind!r} (known: {', '.join(sorted(SPECS))})")
    with _making(arch, log) as maker:
        return maker.write(kind, name)


def available_kinds(arch: str) -> list[str]:
    """Kinds whose binaries are built for ``arch``."""
    built = {c.name for c in build.components(arch)}
    return [k for k, s in SPECS.items() if all(b in built for _, b in s.files)]


def build_images(
    arch: str, image_repository: str = DEFAULT_REPOSITORY, *, lb: bool = False, log: bool = True
) -> dict[str, Path]:
    """Archives of kubeadm's images (for ``image_repository``) and flannel's, for what ``arch`` has built;
    with ``lb`` also haproxy's and keepalived's (named by ``lb_image_names``).

    Returns image name -> archive path. On arm64 only the worker's images exist (kube-proxy, pause,
    CoreDNS, flannel); a control-plane image asked for there is left out.
    """
    have = set(available_kinds(arch))
    wanted = [(kind_of(n), n) for n in kubeadm_image_names(image_repository)]
    wanted += [(k, n) for k, n in flannel_image_names().items()]
    if lb:
        wanted += list(lb_image_names(arch, log=log).items())
    out: dict[str, Path] = {}
    with _making(arch, log) as maker:
        for kind, name in wanted:
            if kind not in have:
                continue
            if not (images_dir(arch) / archive_name(name)).exists():
                build.say(log, f"image {name} ({arch})")
            out[name] = maker.write(kind, name)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print kubeadm's image list, or write the archives for one arch and repository."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.k8s.images")
    ap.add_argument("--arch", default="amd64", choices=build.ARCHES)
    ap.add_argument("--image-repository", default=DEFAULT_REPOSITORY)
    ap.add_argument("--lb", action="store_true", help="also haproxy's and keepalived's (from Debian)")
    args = ap.parse_args(argv)
    try:
        for name, path in build_images(args.arch, args.image_repository, lb=args.lb).items():
            print(f"{name}\t{path}")
    except (ImageError, build.BuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
