"""The node's OS family: one class per family supplies what differs between operating systems.

`AptFamily` (Debian, Ubuntu) and `DnfFamily` (EL 9 rebuilds, RHEL, Fedora) each give their package
repositories (Kubernetes from pkgs.k8s.io, CRI-O, containerd 2.x from a Docker-style repository), package
names and version pins, and their quirks (swap on zram, SELinux). `for_os` picks the instance of the
profile's OS from one table, so no other module compares distribution names; a new OS is a new row (or
a new class for a new package manager). Pure: files and data, the script acts on them.

Sources: pkgs.k8s.io's repository layout (kubernetes.io "Installing kubeadm"), CRI-O's packaging
(github.com/cri-o/packaging), Docker's repository layout (docs.docker.com/engine/install/), Fedora's
zram-generator defaults (fedoraproject.org/wiki/Changes/SwapOnZRAM).
"""

from __future__ import annotations

import configparser
import io
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from ..files import NodeFile, public
from . import Arch, ContainerdRepository, OsName, Packages

K8S_PACKAGES = ("kubelet", "kubeadm", "kubectl")

# apt sources are staged here and moved into /etc/apt/sources.list.d by the script only once their
# keyring exists: an apt source whose signed-by file is missing makes every `apt-get update` fail,
# including the one that may be needed to install curl/gpg to fetch the key.
APT_STAGING_DIR = "/etc/bake/apt"
APT_KEYRING_DIR = "/etc/apt/keyrings"
YUM_REPOS_DIR = "/etc/yum.repos.d"
ZRAM_GENERATOR_PATH = "/etc/systemd/zram-generator.conf"


class PackageFamily(StrEnum):
    APT = "apt"
    DNF = "dnf"


@dataclass(frozen=True)
class AptKey:
    url: str
    keyring: str


@dataclass(frozen=True)
class Repositories:
    """What a node's package sources must offer, whatever its OS family."""

    packages: Packages
    kube_minors: tuple[tuple[str, str], ...]
    """(repository name, minor): the cluster's, then the kubelet's if it differs (one repository a minor)."""
    crio_minor: str | None
    """CRI-O's stable stream for this minor, or None when the runtime is containerd."""
    containerd: ContainerdRepository | None
    """containerd 2.x from this Docker-style repository, or None (CRI-O, or the OS's own containerd)."""
    arch: Arch


@dataclass(frozen=True)
class RepositoryFiles:
    files: tuple[NodeFile, ...]
    apt_keys: tuple[AptKey, ...] = ()
    apt_staged_sources: tuple[str, ...] = ()


def k8s_url(base: str, minor: str, kind: str) -> str:
    """pkgs.k8s.io's core stable stream of a minor, `kind` deb or rpm."""
    return f"{base.rstrip('/')}/core:/stable:/v{minor}/{kind}/"


def crio_url(base: str, minor: str, kind: str) -> str:
    """CRI-O's stable stream for a minor on the openSUSE build service's download host (its packages
    left pkgs.k8s.io's addons:/cri-o: path, where the stable streams now answer 403)."""
    return f"{base.rstrip('/')}/isv:/cri-o:/stable:/v{minor}/{kind}/"


class OsFamily(ABC):
    """What one OS family needs that another does not; the instances are rows of `FAMILIES`."""

    package_family: ClassVar[PackageFamily]
    base_packages: ClassVar[tuple[str, ...]]
    """Guide part 8 (preflight warnings) plus what fetching repository keys needs."""
    selinux_permissive: ClassVar[bool]
    """SELinux enforcing by default, which kubeadm's static pods do not survive (guide part 1)."""

    def __init__(self, docker_distro: str, *, swap_on_zram: bool = False) -> None:
        self.docker_distro = docker_distro
        """The directory of Docker's repository layout for this OS (EL rebuilds use `centos`)."""
        self.swap_on_zram = swap_on_zram

    @abstractmethod
    def package_spec(self, package: str, version: str) -> str:
        """A package pinned to one upstream version, in this package manager's syntax."""

    @abstractmethod
    def repositories(self, wanted: Repositories) -> RepositoryFiles:
        """The repository definitions that offer `wanted`."""

    def swap_files(self) -> list[NodeFile]:
        """Files that keep swap off across reboots (the kubelet refuses to start with swap on)."""
        if not self.swap_on_zram:
            return []
        # Fedora enables swap on zram by default; an empty generator config in /etc disables it.
        return [public(ZRAM_GENERATOR_PATH, "# bake: no swap on zram (the kubelet needs swap off)\n")]


class AptFamily(OsFamily):
    """Debian and Ubuntu: apt with signed-by keyrings, sources staged until their key is fetched."""

    package_family = PackageFamily.APT
    base_packages = ("ca-certificates", "conntrack", "curl", "ebtables", "ethtool", "gpg", "socat")
    selinux_permissive = False

    def __init__(self, docker_distro: str, codename: str) -> None:
        super().__init__(docker_distro)
        self.codename = codename
        """The release's suite, for repositories laid out by suite (Docker's containerd.io)."""

    def package_spec(self, package: str, version: str) -> str:
        return f"{package}={version}-*"

    def repositories(self, wanted: Repositories) -> RepositoryFiles:
        pkgs = wanted.packages
        # (name, deb line after signed-by, key URL)
        repos = [
            (name, f"{url} /", f"{url}Release.key")
            for name, url in ((n, k8s_url(pkgs.apt_base_url, m, "deb")) for n, m in wanted.kube_minors)
        ]
        if wanted.crio_minor is not None:
            url = crio_url(pkgs.crio_base_url, wanted.crio_minor, "deb")
            repos.append(("cri-o", f"{url} /", f"{url}Release.key"))
        elif wanted.containerd is not None:
            base = f"{wanted.containerd.base_url.rstrip('/')}/{self.docker_distro}"
            repos.append(("containerd", f"{base} {self.codename} stable", f"{base}/gpg"))
        files, keys, staged = [], [], []
        for name, line, key in repos:
            keyring = f"{APT_KEYRING_DIR}/{name}-apt-keyring.gpg"
            staged_path = f"{APT_STAGING_DIR}/{name}.list"
            files.append(public(staged_path, f"deb [signed-by={keyring}] {line}\n"))
            keys.append(AptKey(key, keyring))
            staged.append(staged_path)
        return RepositoryFiles(tuple(files), tuple(keys), tuple(staged))


_ARCH_RPM = {Arch.AMD64: "x86_64", Arch.ARM64: "aarch64"}


def repo_ini(sections: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """A yum/dnf .repo file (INI, `key=value` as dnf's own tools write it)."""
    parser = configparser.RawConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
    for name, items in sections.items():
        parser[name] = dict(items)
    out = io.StringIO()
    parser.write(out, space_around_delimiters=False)
    return out.getvalue().rstrip("\n") + "\n"  # configparser ends every section with a blank line


class DnfFamily(OsFamily):
    """EL 9 (RHEL and its rebuilds) and Fedora: dnf with .repo files, SELinux enforcing by default."""

    package_family = PackageFamily.DNF
    # dnf resolves `ebtables` by its provides (iptables-ebtables / iptables-nft on EL 9 and Fedora); the
    # kubelet RPM requires the same name (spec 6.1), so it is installable wherever the kubelet is.
    # No `curl`: EL 9 images ship `curl-minimal`, which conflicts with it; the script installs curl only
    # where no curl command exists at all.
    base_packages = ("ca-certificates", "conntrack-tools", "ebtables", "ethtool", "iptables", "socat")
    selinux_permissive = True

    def __init__(self, docker_distro: str, release: str, *, swap_on_zram: bool = False) -> None:
        super().__init__(docker_distro, swap_on_zram=swap_on_zram)
        self.release = release
        """`<release>` of Docker's rpm layout."""

    def package_spec(self, package: str, version: str) -> str:
        return f"{package}-{version}"

    def repositories(self, wanted: Repositories) -> RepositoryFiles:
        pkgs = wanted.packages
        kube: dict[str, list[tuple[str, str]]] = {}
        for name, minor in wanted.kube_minors:
            url = k8s_url(pkgs.rpm_base_url, minor, "rpm")
            kube[name] = [
                ("name", f"Kubernetes {minor}"),
                *self._signed(url, f"{url}repodata/repomd.xml.key"),
                ("exclude", "kubelet kubeadm kubectl cri-tools kubernetes-cni"),
            ]
        files = [public(f"{YUM_REPOS_DIR}/kubernetes.repo", repo_ini(kube))]
        if wanted.crio_minor is not None:
            url = crio_url(pkgs.crio_base_url, wanted.crio_minor, "rpm")
            crio = [("name", "CRI-O"), *self._signed(url, f"{url}repodata/repomd.xml.key")]
            files.append(public(f"{YUM_REPOS_DIR}/cri-o.repo", repo_ini({"cri-o": crio})))
        elif wanted.containerd is not None:
            # Docker's layout: {base}/{centos|rhel|fedora}/<release>/<arch>/stable, for the node's own arch.
            base = f"{wanted.containerd.base_url.rstrip('/')}/{self.docker_distro}"
            url = f"{base}/{self.release}/{_ARCH_RPM[wanted.arch]}/stable"
            name = f"containerd ({wanted.containerd.package})"
            containerd = [("name", name), *self._signed(url, f"{base}/gpg")]
            files.append(public(f"{YUM_REPOS_DIR}/containerd.repo", repo_ini({"containerd": containerd})))
        return RepositoryFiles(tuple(files))

    @staticmethod
    def _signed(baseurl: str, gpgkey: str) -> list[tuple[str, str]]:
        return [("baseurl", baseurl), ("enabled", "1"), ("gpgcheck", "1"), ("gpgkey", gpgkey)]


FAMILIES: Mapping[OsName, OsFamily] = {
    OsName.UBUNTU_2204: AptFamily("ubuntu", "jammy"),
    OsName.UBUNTU_2404: AptFamily("ubuntu", "noble"),
    OsName.DEBIAN_12: AptFamily("debian", "bookworm"),
    OsName.DEBIAN_13: AptFamily("debian", "trixie"),
    OsName.ROCKY_9: DnfFamily("centos", "9"),
    OsName.ALMA_9: DnfFamily("centos", "9"),
    OsName.RHEL_9: DnfFamily("rhel", "9"),
    OsName.FEDORA_41: DnfFamily("fedora", "41", swap_on_zram=True),
    OsName.FEDORA_42: DnfFamily("fedora", "42", swap_on_zram=True),
}


def for_os(name: OsName) -> OsFamily:
    """The family instance of an OS (every `OsName` has a row: tests/test_host.py checks)."""
    return FAMILIES[name]
