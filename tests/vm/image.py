"""Guest image for the VM harness, built from Debian 12 packages only (no cloud image can be downloaded here).

The image stands in for a "pre-baked" kubeadm node image: the packages a node needs that Debian ships,
cloud-init with a NoCloud-only datasource list, the guest test agent from `tests/vm/guest/`, and the marker
`/etc/bake/test-stop-before-kubeadm` that tells the renderer's bootstrap to stop before kubeadm (kubeadm and
kubelet are not packaged in Debian 12).

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
ROOTFS_SIZE = "4G"  # sparse; per-VM writes go to a qcow2 overlay anyway

COMMON_PACKAGES = (
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
    "containerd",
    "runc",
    "etcd-server",
    "etcd-client",
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
KERNEL_PACKAGES = {
    "amd64": "linux-image-cloud-amd64",
    # The cloud flavour has virtio-pci/blk/net and isofs, and boots on `-machine virt -cpu cortex-a57`.
    "arm64": "linux-image-cloud-arm64",
}

GUEST_DIR = Path(__file__).resolve().parent / "guest"
# guest/ file -> (path in the image, mode). check.py is NOT here: it travels on the per-run baketest ISO.
GUEST_FILES = {
    "bake-test-report": ("/usr/local/sbin/bake-test-report", 0o755),
    "bake-test-report.service": ("/etc/systemd/system/bake-test-report.service", 0o644),
    "bake-test-hooks.service": ("/etc/systemd/system/bake-test-hooks.service", 0o644),
    "kubelet-standin": ("/usr/local/sbin/kubelet-standin", 0o755),
    # TEST DOUBLES for the kubelet package (not in Debian 12): its unit, so `systemctl enable kubelet`,
    # drop-ins and `systemd-analyze verify` have something to work on, and /usr/bin/kubelet, which runs
    # the static pod of a KubeletConfiguration's staticPodPath through kubelet-standin (etcd members).
    "kubelet.service": ("/usr/lib/systemd/system/kubelet.service", 0o644),
    "kubelet": ("/usr/bin/kubelet", 0o755),
}

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
    # The pre-baked image's declared test-only stop (see tests/vm/README.md, "Contract").
    "/etc/bake/test-stop-before-kubeadm": (
        0o644,
        "This image cannot run kubeadm (not packaged in Debian 12): bake-bootstrap stops before it.\n",
    ),
}
ENABLE_UNITS = ("systemd-networkd.service", "bake-test-hooks.service", "bake-test-report.service")
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


def packages(arch: str) -> list[str]:
    _check_arch(arch)
    return sorted((*COMMON_PACKAGES, KERNEL_PACKAGES[arch]))


def recipe_hash(arch: str) -> str:
    """First 12 hex of the sha256 over everything that decides the image's content."""
    _check_arch(arch)
    h = hashlib.sha256()
    h.update(f"arch={arch}\n".encode())
    h.update(("packages=" + ",".join(packages(arch)) + "\n").encode())
    for name in sorted(GUEST_FILES):
        data = (GUEST_DIR / name).read_bytes()
        h.update(f"guest:{name}:{len(data)}\n".encode())
        h.update(data)
    own = Path(__file__).read_bytes()
    h.update(f"builder:{len(own)}\n".encode())
    h.update(own)
    return h.hexdigest()[:12]


def image_dir(arch: str) -> Path:
    return cache_root() / f"{arch}-{recipe_hash(arch)}"


def cached_image(arch: str) -> GuestImage | None:
    """The image for the current recipe if it is already built, else None (never builds)."""
    d = image_dir(arch)
    img = _image_at(arch, d)
    return img if img.rootfs.exists() and (d / "image.json").exists() else None


def ensure_image(arch: str, *, log: bool = True) -> GuestImage:
    """The cached image for the current recipe, building it first if needed (needs root)."""
    img = cached_image(arch)
    if img is not None:
        return img
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / f".{arch}.lock"):
        img = cached_image(arch)  # another process may have built it while we waited
        if img is not None:
            return img
        return _build(arch, log=log)


def _image_at(arch: str, d: Path) -> GuestImage:
    return GuestImage(arch, d, d / "vmlinuz", d / "initrd.img", d / "rootfs.raw")


def _check_arch(arch: str) -> None:
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHES)}")


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


def _base_key(arch: str) -> str:
    """The mmdebstrap tree depends only on these; it is kept so agent changes rebuild in seconds."""
    text = "\n".join((BASE_FORMAT, arch, SUITE, *MIRRORS, *DPKG_OPTS, *packages(arch)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _base_tree(arch: str, *, log: bool) -> Path:
    """The plain mmdebstrap tree for `arch`, built once per package list (root-owned, so root only)."""
    base = cache_root() / f"base-{arch}-{_base_key(arch)}"
    if (base / "tree" / "etc" / "os-release").exists() and (base / "ok").exists():
        return base / "tree"
    tmp = cache_root() / f".tmp-{base.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.monotonic()
    try:
        _say(
            log,
            f"mmdebstrap {SUITE} {arch} minbase + {len(packages(arch))} packages (amd64 ~1, arm64 ~10 min)",
        )
        argv = [
            "mmdebstrap",
            "--mode=root",
            "--format=directory",
            "--variant=minbase",
            f"--architectures={arch}",
            "--include=" + ",".join(packages(arch)),
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
    for old in cache_root().glob(f"base-{arch}-*"):
        if old != base:
            shutil.rmtree(old, ignore_errors=True)
    return base / "tree"


def _build(arch: str, *, log: bool) -> GuestImage:
    if os.geteuid() != 0:
        raise ImageBuildError(
            "building the VM image needs root (mmdebstrap root mode, mkfs.ext4 -d ownership)"
        )
    for tool in ("mmdebstrap", "mkfs.ext4", "systemctl", "dpkg-query", "cp"):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"{tool} is not installed (apt-get install mmdebstrap e2fsprogs)")
    _enable_foreign(arch, log)
    started = time.monotonic()
    base = _base_tree(arch, log=log)
    final = image_dir(arch)
    tmp = cache_root() / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tree = tmp / "tree"
    try:
        _run(["cp", "-a", str(base), str(tree)], "copy base tree")
        kernel_version = _customise(tree)
        shutil.copyfile(tree / "boot" / f"vmlinuz-{kernel_version}", tmp / "vmlinuz")
        shutil.copyfile(tree / "boot" / f"initrd.img-{kernel_version}", tmp / "initrd.img")
        versions = _run(
            ["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W", "-f", "${Package}=${Version}\n"],
            "dpkg-query",
        )
        _run(
            ["mkfs.ext4", "-q", "-L", "rootfs", "-d", str(tree), str(tmp / "rootfs.raw"), ROOTFS_SIZE],
            "mkfs.ext4 -d",
        )
        meta = {
            "arch": arch,
            "recipe": final.name,
            "suite": SUITE,
            "kernel_version": kernel_version,
            "requested_packages": packages(arch),
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
    _prune_old(arch, keep=final)
    _say(log, f"built {final} in {time.monotonic() - started:.0f} s")
    return _image_at(arch, final)


def _customise(tree: Path) -> str:
    """Apply the gotcha fixes and the guest agent; returns the kernel version found in /boot."""
    for path, (mode, content) in IMAGE_FILES.items():
        _write(tree, path, content.encode(), mode)
    for name, (path, mode) in GUEST_FILES.items():
        _write(tree, path, (GUEST_DIR / name).read_bytes(), mode)
    # Host keys generated at build time would be shared by every VM; cloud-init makes fresh ones.
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # 8: a dbus machine-id copy would pin the same id into every VM.
    dbus_id = tree / "var/lib/dbus/machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()
    for state in ("var/lib/bake", "var/log/bake", "var/lib/bake-test"):
        (tree / state).mkdir(parents=True, exist_ok=True)
    _run(["systemctl", f"--root={tree}", "enable", *ENABLE_UNITS], "systemctl enable")
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
        for d in ("lib/systemd/system", "usr/lib/systemd/system", "etc/systemd/system")
    )


def _write(tree: Path, path: str, data: bytes, mode: int) -> None:
    target = tree / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.write_bytes(data)
    os.chmod(target, mode)
    os.chown(target, 0, 0)


def _prune_old(arch: str, *, keep: Path) -> None:
    """Old recipes' images are dead weight (a few hundred MiB each)."""
    for d in cache_root().glob(f"{arch}-*"):
        if d != keep and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)
