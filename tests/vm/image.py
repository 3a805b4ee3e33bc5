"""Guest images for the VM harness, built from Debian 12 packages (no cloud image can be downloaded here).

Two flavours play the "pre-baked" kubeadm node image (`packages.mode: prebaked`), both with cloud-init
(NoCloud only) and the guest test agent from `tests/vm/guest/`:

- `standin`: what Debian ships (containerd 1.6, runc, etcd 3.4) plus TEST DOUBLES for the kubelet
  package; the harness tells the bootstrap to stop before kubeadm (`VmSpec.test_stop`).
- `k8s`: the upstream Kubernetes binaries built here (`tests/k8s`), installed the way their packages
  install them (kubeadm, kubelet, kubectl in /usr/bin, the kubelet unit and kubeadm's drop-in, the CNI
  plugins in /opt/cni/bin, crictl), containerd 2.x from its release layout and Debian's runc. Nothing
  test-only decides what the bootstrap does: the real kubeadm forms the cluster.

The result (kernel, initrd, ext4 `rootfs.raw` with no partition table) is cached OUTSIDE the checkout, under
`${BAKE_VM_CACHE:-/var/cache/bake-vm}/<arch>-<recipe hash>/`, so every clone on the machine (CI's fresh one
included) reuses it; it is rebuilt only when the recipe (this file, the package list, the guest files)
changes. Building needs root (mmdebstrap in root mode, `mkfs.ext4 -d` keeping ownership).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ARCHES = ("amd64", "arm64")
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
BASE_FORMAT = "base-v1"  # bump to force a fresh mmdebstrap run
# Sparse; per-VM writes go to a qcow2 overlay anyway. The k8s flavour's nodes unpack container images.
ROOTFS_SIZE = {"standin": "4G", "k8s": "12G"}

BASE_PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "iproute2",
    "iputils-ping",
    "procps",
    "openssh-client",
    # sshd: a real node image has it, and without it cloud-init 22.4 warns on every boot
    # ("Ignoring config 'ssh_pwauth: ...'. SSH service 'ssh' is not installed.").
    "openssh-server",
    "openssl",
    "sudo",
    "cloud-init",
    "initramfs-tools",
    "e2fsprogs",
    "netbase",
    "curl",
    "ca-certificates",
    "iptables",
    "conntrack",
    "socat",
    "ethtool",
    "ebtables",
    "python3",
    "python3-yaml",
)
# What Debian ships of a node's runtime: containerd 1.6 (the bootstrap writes its config schema 2), runc,
# and etcd 3.4 for the external etcd members run by the kubelet stand-in.
COMMON_PACKAGES = (*BASE_PACKAGES, "containerd", "runc", "etcd-server", "etcd-client")
# The real-Kubernetes flavour brings containerd 2.x itself (Kubernetes >= 1.36 needs it); Debian's runc
# is the OCI runtime its shim calls. systemd-resolved turns the profile's DNS servers (network-config)
# into a resolv.conf, as on Ubuntu nodes; kubeadm then points the kubelet at resolved's upstream file,
# so CoreDNS has a nameserver to forward to (with none, it refuses to start).
K8S_PACKAGES = (*BASE_PACKAGES, "runc", "systemd-resolved")
KERNEL_PACKAGES = {
    "amd64": "linux-image-cloud-amd64",
    # The cloud flavour has virtio-pci/blk/net and isofs, and boots on `-machine virt -cpu cortex-a57`.
    "arm64": "linux-image-cloud-arm64",
}

GUEST_DIR = Path(__file__).resolve().parent / "guest"
FLAVOURS = ("standin", "k8s")
# guest/ file -> (path in the image, mode), per flavour. check.py is NOT here: it travels on the per-run
# baketest ISO.
AGENT_FILES = {
    "bake-test-report": ("/usr/local/sbin/bake-test-report", 0o755),
    "bake-test-report.service": ("/etc/systemd/system/bake-test-report.service", 0o644),
    "bake-test-hooks.service": ("/etc/systemd/system/bake-test-hooks.service", 0o644),
    "bake-test-prepare.service": ("/etc/systemd/system/bake-test-prepare.service", 0o644),
    # the bootstrap's test stop, as drop-ins for its units (installed per VM by bake-test-report --hooks)
    "bake_test_stop.py": ("/usr/local/sbin/bake-test-stop", 0o755),
}
GUEST_FILES = {
    **AGENT_FILES,
    "kubelet-standin": ("/usr/local/sbin/kubelet-standin", 0o755),
    # TEST DOUBLES for the kubelet package (not in Debian 12): its unit, so `systemctl enable kubelet`,
    # drop-ins and `systemd-analyze verify` have something to work on, and /usr/bin/kubelet, which runs
    # the static pod of a KubeletConfiguration's staticPodPath through kubelet-standin (etcd members).
    "kubelet.service": ("/usr/lib/systemd/system/kubelet.service", 0o644),
    "kubelet": ("/usr/bin/kubelet", 0o755),
}
# The files of the upstream packages (kubernetes/release `cmd/krel/templates/latest`: kubelet.spec,
# kubeadm.spec, kubernetes-cni.spec as built for Debian) and of containerd's release layout.
K8S_GUEST_FILES = {
    **AGENT_FILES,
    "k8s/kubelet.service": ("/usr/lib/systemd/system/kubelet.service", 0o644),
    "k8s/10-kubeadm.conf": ("/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", 0o644),
    "k8s/kubelet.env": ("/etc/default/kubelet", 0o644),
    "k8s/containerd.service": ("/usr/local/lib/systemd/system/containerd.service", 0o644),
}
# Empty files the Debian packages ship so that dpkg keeps their directories (kubelet, kubernetes-cni).
K8S_KEEP_FILES = (
    "/var/lib/kubelet/.kubelet-keep",
    "/etc/kubernetes/manifests/.kubelet-keep",
    "/etc/cni/net.d/.kubernetes-cni-keep",
)
# Built binary -> where its package (or release tarball) puts it. CNI plugins go to /opt/cni/bin.
K8S_BINARIES = {
    "kubeadm": "/usr/bin/kubeadm",
    "kubelet": "/usr/bin/kubelet",
    "kubectl": "/usr/bin/kubectl",
    "crictl": "/usr/bin/crictl",
    "containerd": "/usr/local/bin/containerd",
    "containerd-shim-runc-v2": "/usr/local/bin/containerd-shim-runc-v2",
    "ctr": "/usr/local/bin/ctr",
}
CNI_BIN_DIR = "/opt/cni/bin"


def guest_files(flavour: str) -> dict[str, tuple[str, int]]:
    _check_flavour(flavour)
    return GUEST_FILES if flavour == "standin" else K8S_GUEST_FILES


# Fixes for the gotchas in qemu-notes.md (numbers refer to that list).
IMAGE_FILES: dict[str, tuple[int, str]] = {
    # 1: mmdebstrap leaves fstab empty; the root is the whole virtio disk.
    "/etc/fstab": (0o644, "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"),
    # 2: the host's resolv.conf is copied in; the test networks have no DNS.
    "/etc/resolv.conf": (0o644, ""),
    # 3: without it Debian's etcd (and anything resolving localhost) fails.
    "/etc/hosts": (
        0o644,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    ),
    "/etc/hostname": (0o644, "bake-image\n"),
    # 4: en_US.UTF-8 is not generated in minbase; C.UTF-8 always exists.
    "/etc/default/locale": (0o644, "LANG=C.UTF-8\n"),
    # 5, 6: NoCloud only, networkd renderer, a locale and key types that need no generation.
    "/etc/cloud/cloud.cfg.d/99_bake-test-image.cfg": (
        0o644,
        "# bake VM test image (tests/vm/image.py)\n"
        "datasource_list: [NoCloud, None]\n"
        "system_info:\n  network:\n    renderers: [networkd]\n"
        "locale: C.UTF-8\n"
        "ssh_genkeytypes: [ed25519]\n",
    ),
    # 7: do not wait 120 s for a NIC that may never get an address.
    "/etc/systemd/system/systemd-networkd-wait-online.service.d/bake-test.conf": (
        0o644,
        "[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=15\n",
    ),
    # 8: empty machine-id, so every VM (overlay) gets its own on first boot.
    "/etc/machine-id": (0o444, ""),
}
# No image carries the bootstrap's test stop: the harness asks for it per VM (`VmSpec.test_stop`), and
# bake-test-stop (in the image, inert until asked) installs it as drop-ins for the bootstrap's units.
ENABLE_UNITS = (
    "systemd-networkd.service",
    "bake-test-hooks.service",
    "bake-test-prepare.service",
    "bake-test-report.service",
)
# A Debian kubelet package enables its unit on install (it restarts until kubeadm writes its config).
K8S_ENABLE_UNITS = ("containerd.service", "kubelet.service")
# Debian's etcd.service would hold ports 2379/2380 that a static-pod etcd (kubelet-standin) needs;
# the apt timers only cost boot time.
DISABLE_UNITS = ("etcd.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer")
DPKG_OPTS = (
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)


class ImageBuildError(RuntimeError):
    """The guest image could not be built; the message says which step and why."""


@dataclass(frozen=True)
class GuestImage:
    """A built, cached image: what QEMU needs to boot it."""

    arch: str
    directory: Path
    kernel: Path
    initrd: Path
    rootfs: Path

    @property
    def kernel_version(self) -> str:
        return json.loads((self.directory / "image.json").read_text())["kernel_version"]  # type: ignore[no-any-return]


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


DEFAULT_CACHE = Path("/var/cache/bake-vm")


def cache_root() -> Path:
    """Shared by every checkout on the machine (a fresh CI clone reuses what a developer built)."""
    return Path(os.environ.get("BAKE_VM_CACHE") or DEFAULT_CACHE)


def runs_root() -> Path:
    """Overlays and serial logs of `python -m tests.vm run`: per checkout, next to the code they test."""
    return repo_root() / ".cache" / "vm" / "runs"


def packages(arch: str, flavour: str = "standin") -> list[str]:
    _check_arch(arch)
    _check_flavour(flavour)
    chosen = COMMON_PACKAGES if flavour == "standin" else K8S_PACKAGES
    return sorted((*chosen, KERNEL_PACKAGES[arch]))


@dataclass(frozen=True)
class Payload:
    """A built file copied into the image (hashed into the recipe key)."""

    source: Path
    path: str
    mode: int = 0o755


def k8s_payload(arch: str) -> list[Payload]:
    """The built Kubernetes binaries for `arch`, where their packages install them; an error naming what is
    missing (`make k8s` builds them)."""
    from tests.k8s import locate

    bin_dir = locate(arch)
    if bin_dir is None:
        raise ImageBuildError(f"the Kubernetes binaries for {arch} are not built (run `make k8s`)")
    out = []
    missing = []
    for name, path in K8S_BINARIES.items():
        src = bin_dir / name
        if src.is_file():
            out.append(Payload(src, path))
        else:
            missing.append(name)
    for name in cni_plugins(arch):
        src = bin_dir / name
        if src.is_file():
            out.append(Payload(src, f"{CNI_BIN_DIR}/{name}"))
        else:
            missing.append(f"CNI plugin {name}")
    if missing:
        raise ImageBuildError(f"{bin_dir}: missing {', '.join(missing)} (run `make k8s`)")
    return out


def cni_plugins(arch: str) -> list[str]:
    """The containernetworking plugins the build makes (what the kubernetes-cni package installs of them);
    the flannel plugin is not among them: flannel's DaemonSet installs its own."""
    from tests.k8s import build

    return sorted(c.name for c in build.components(arch) if c.module_dir == "cni-plugins")


def payload(arch: str, flavour: str) -> list[Payload]:
    _check_flavour(flavour)
    return k8s_payload(arch) if flavour == "k8s" else []


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """sha256 of a (large) built file, remembered per path, size and mtime within this process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def recipe_hash(arch: str, flavour: str = "standin") -> str:
    """First 12 hex of the sha256 over everything that decides the image's content (the built binaries'
    hashes included)."""
    _check_arch(arch)
    h = hashlib.sha256()
    h.update(f"arch={arch}\n".encode())
    if flavour != "standin":
        h.update(f"flavour={flavour}\n".encode())
    h.update(("packages=" + ",".join(packages(arch, flavour)) + "\n").encode())
    files = guest_files(flavour)
    for name in sorted(files):
        data = (GUEST_DIR / name).read_bytes()
        h.update(f"guest:{name}:{len(data)}\n".encode())
        h.update(data)
    for item in sorted(payload(arch, flavour), key=lambda p: p.path):
        h.update(f"payload:{item.path}:{item.mode:o}:{_file_sha256(item.source)}\n".encode())
    own = Path(__file__).read_bytes()
    h.update(f"builder:{len(own)}\n".encode())
    h.update(own)
    return h.hexdigest()[:12]


def _image_prefix(arch: str, flavour: str) -> str:
    return f"{arch}-" if flavour == "standin" else f"{arch}-{flavour}-"


def image_dir(arch: str, flavour: str = "standin") -> Path:
    return cache_root() / f"{_image_prefix(arch, flavour)}{recipe_hash(arch, flavour)}"


def cached_image(arch: str, flavour: str = "standin") -> GuestImage | None:
    """The image for the current recipe if it is already built, else None (never builds)."""
    d = image_dir(arch, flavour)
    img = _image_at(arch, d)
    return img if img.rootfs.exists() and (d / "image.json").exists() else None


def ensure_image(arch: str, flavour: str = "standin", *, log: bool = True) -> GuestImage:
    """The cached image for the current recipe, building it first if needed (needs root)."""
    img = cached_image(arch, flavour)
    if img is not None:
        return img
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / f".{arch}.lock"):
        img = cached_image(arch, flavour)  # another process may have built it while we waited
        if img is not None:
            return img
        return _build(arch, flavour, log=log)


def _image_at(arch: str, d: Path) -> GuestImage:
    return GuestImage(arch, d, d / "vmlinuz", d / "initrd.img", d / "rootfs.raw")


def _check_arch(arch: str) -> None:
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHES)}")


def _check_flavour(flavour: str) -> None:
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown image flavour {flavour!r}; expected one of {', '.join(FLAVOURS)}")


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _say(log: bool, msg: str) -> None:
    if log:
        print(f"[vm-image] {msg}", file=sys.stderr, flush=True)


def _run(argv: Sequence[str], what: str, *, timeout: float = 1800) -> str:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise ImageBuildError(f"{what}: {argv[0]} is not installed ({e})") from e
    except subprocess.TimeoutExpired as e:
        raise ImageBuildError(f"{what}: timed out after {timeout:.0f} s") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise ImageBuildError(f"{what}: {' '.join(argv[:3])} ... exited {proc.returncode}\n{tail}")
    return proc.stdout


def host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _enable_foreign(arch: str, log: bool) -> None:
    """mmdebstrap runs the arm64 maintainer scripts under qemu-user through binfmt_misc."""
    if arch == host_arch():
        return
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        _say(log, "mounting binfmt_misc")
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], "mount binfmt_misc")
    qemu_name = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}[arch]
    if not (binfmt / qemu_name).exists() or "enabled" not in (binfmt / qemu_name).read_text():
        _run(["update-binfmts", "--enable", qemu_name], f"update-binfmts --enable {qemu_name}")
    out = subprocess.run(["arch-test", arch], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ImageBuildError(
            f"cannot run {arch} binaries here (arch-test: {out.stdout.strip()} {out.stderr.strip()}); "
            "install qemu-user-static binfmt-support arch-test"
        )


def _base_key(arch: str, flavour: str = "standin") -> str:
    """The mmdebstrap tree depends only on these; it is kept so agent changes rebuild in seconds."""
    text = "\n".join((BASE_FORMAT, arch, SUITE, *MIRRORS, *DPKG_OPTS, *packages(arch, flavour)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_KEY = re.compile(r"[0-9a-f]{12}")


def _base_tree(arch: str, flavour: str, *, log: bool) -> Path:
    """The plain mmdebstrap tree for `arch`, built once per package list (root-owned, so root only)."""
    prefix = f"base-{_image_prefix(arch, flavour)}"
    base = cache_root() / f"{prefix}{_base_key(arch, flavour)}"
    if (base / "tree" / "etc" / "os-release").exists() and (base / "ok").exists():
        return base / "tree"
    tmp = cache_root() / f".tmp-{base.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.monotonic()
    try:
        _say(
            log,
            f"mmdebstrap {SUITE} {arch} minbase + {len(packages(arch, flavour))} packages "
            "(amd64 ~1, arm64 ~10 min)",
        )
        argv = [
            "mmdebstrap",
            "--mode=root",
            "--format=directory",
            "--variant=minbase",
            f"--architectures={arch}",
            "--include=" + ",".join(packages(arch, flavour)),
            *(f"--dpkgopt={o}" for o in DPKG_OPTS),
            SUITE,
            str(tmp / "tree"),
            *MIRRORS,
        ]
        _run(argv, "mmdebstrap", timeout=3600)
        (tmp / "ok").write_text(f"{time.monotonic() - started:.0f}\n")
        shutil.rmtree(base, ignore_errors=True)
        os.rename(tmp, base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(log, f"mmdebstrap done after {time.monotonic() - started:.0f} s")
    _prune(prefix, keep=base)
    return base / "tree"


def _build(arch: str, flavour: str, *, log: bool) -> GuestImage:
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building the VM image needs root (mmdebstrap root mode, mkfs.ext4 -d ownership)"
        )
    for tool in ("mmdebstrap", "mkfs.ext4", "systemctl", "dpkg-query", "cp"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"{tool} is not installed (apt-get install mmdebstrap e2fsprogs)")
    items = payload(arch, flavour)  # fails early, naming what is not built
    _enable_foreign(arch, log)
    started = time.monotonic()
    base = _base_tree(arch, flavour, log=log)
    final = image_dir(arch, flavour)
    tmp = cache_root() / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tree = tmp / "tree"
    try:
        _run(["cp", "-a", str(base), str(tree)], "copy base tree")
        kernel_version = _customise(tree, flavour, items)
        shutil.copyfile(tree / "boot" / f"vmlinuz-{kernel_version}", tmp / "vmlinuz")
        shutil.copyfile(tree / "boot" / f"initrd.img-{kernel_version}", tmp / "initrd.img")
        versions = _run(
            ["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W", "-f", "${Package}=${Version}\n"],
            "dpkg-query",
        )
        rootfs = str(tmp / "rootfs.raw")
        _run(
            ["mkfs.ext4", "-q", "-L", "rootfs", "-d", str(tree), rootfs, ROOTFS_SIZE[flavour]], "mkfs.ext4 -d"
        )
        meta = {
            "arch": arch,
            "flavour": flavour,
            "recipe": final.name,
            "suite": SUITE,
            "kernel_version": kernel_version,
            "requested_packages": packages(arch, flavour),
            "payload": {p.path: _file_sha256(p.source) for p in items},
            "installed_packages": versions.split(),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (tmp / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(tree)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(_image_prefix(arch, flavour), keep=final)
    _say(log, f"built {final} in {time.monotonic() - started:.0f} s")
    return _image_at(arch, final)


def _customise(tree: Path, flavour: str, items: Sequence[Payload]) -> str:
    """Apply the gotcha fixes, the guest agent and the flavour's files; returns the kernel version."""
    for path, (mode, content) in IMAGE_FILES.items():
        if flavour == "k8s" and path == "/etc/resolv.conf":
            # resolved's stub, not the build host's file (2); networkd hands it the seed's DNS servers.
            _symlink(tree, path, "../run/systemd/resolve/stub-resolv.conf")
            continue
        _write(tree, path, content.encode(), mode)
    for name, (path, mode) in guest_files(flavour).items():
        _write(tree, path, (GUEST_DIR / name).read_bytes(), mode)
    for item in items:
        _write(tree, item.path, item.source.read_bytes(), item.mode)
    if flavour == "k8s":
        for path in K8S_KEEP_FILES:
            _write(tree, path, b"", 0o644)
    # Host keys generated at build time would be shared by every VM; cloud-init makes fresh ones.
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # 8: a dbus machine-id copy would pin the same id into every VM.
    dbus_id = tree / "var/lib/dbus/machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()
    for state in ("var/lib/bake", "var/log/bake", "var/lib/bake-test"):
        (tree / state).mkdir(parents=True, exist_ok=True)
    enable = (*ENABLE_UNITS, *(K8S_ENABLE_UNITS if flavour == "k8s" else ()))
    _run(["systemctl", f"--root={tree}", "enable", *enable], "systemctl enable")
    present = [u for u in DISABLE_UNITS if _unit_exists(tree, u)]
    if present:
        _run(["systemctl", f"--root={tree}", "disable", *present], "systemctl disable")
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise ImageBuildError(f"expected exactly one kernel in /boot, found {kernels}")
    if not (tree / "boot" / f"initrd.img-{kernels[0]}").exists():
        raise ImageBuildError(f"no initrd for kernel {kernels[0]} (initramfs-tools did not run?)")
    # apt lists only cost space in every overlay.
    shutil.rmtree(tree / "var/lib/apt/lists", ignore_errors=True)
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    return kernels[0]


def _unit_exists(tree: Path, unit: str) -> bool:
    return any(
        (tree / d / unit).exists()
        for d in (
            "lib/systemd/system",
            "usr/lib/systemd/system",
            "usr/local/lib/systemd/system",
            "etc/systemd/system",
        )
    )


def _write(tree: Path, path: str, data: bytes, mode: int) -> None:
    target = tree / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.write_bytes(data)
    os.chmod(target, mode)
    os.chown(target, 0, 0)


def _symlink(tree: Path, path: str, target: str) -> None:
    link = tree / path.lstrip("/")
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)


def _prune(prefix: str, *, keep: Path) -> None:
    """Old recipes' images and trees are dead weight (hundreds of MiB each); only the same flavour's go."""
    for d in cache_root().glob(f"{prefix}*"):
        if d != keep and d.is_dir() and _KEY.fullmatch(d.name.removeprefix(prefix)):
            shutil.rmtree(d, ignore_errors=True)
