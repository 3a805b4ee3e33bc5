"""Every container image a node needs, computed in one place.

The static pods, the containerd / CRI-O sandbox image, the bootstrap's air-gap check and `bake images`
all read this module, so what a node is told to run and what it is checked to hold cannot drift apart.

kubeadm's own images follow cmd/kubeadm/app/images/images.go (v1.37.2) rule by rule:
- kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy: `<imageRepository>/<name>:<tag>`,
  the tag being the Kubernetes version with every character outside `[-\\w.]` replaced by `_`
  (util.KubernetesVersionToImageTag); no per-image override exists for them;
- CoreDNS: `<repo>/coredns:<tag>` where repo is `dns.imageRepository` or else `imageRepository`, and
  `registry.k8s.io` becomes `registry.k8s.io/coredns` (the upstream image moved to
  registry.k8s.io/coredns/coredns); tag `dns.imageTag` or constants.CoreDNSVersion;
- pause: `<imageRepository>/pause:<constants.PauseVersion>`, never overridable;
- etcd (local etcd only): `<etcd.local.imageRepository or imageRepository>/etcd:<tag>`.
GetControlPlaneImages lists them in the order apiserver, controller-manager, scheduler, proxy, CoreDNS,
pause, etcd; `control_plane_images` keeps that order so its output compares line by line with
`kubeadm config images list`.

kube-vip, haproxy and keepalived are not kubeadm's: with the default imageRepository they keep their
upstream references; with another imageRepository (a site's own registry) they live at
`<imageRepository>/<name>:<tag>`, flattened as kubeadm flattens CoreDNS. `cluster.images.<name>`
replaces the repository and/or the tag of etcd, coredns, kube-vip, haproxy and keepalived.

The CNI's images are the ones its manifests name (`cluster.airgap.cniManifests`), plus
`cluster.airgap.extraImages` for images an operator deploys that no manifest names. Without the
manifests (they are downloaded at first boot) the CNI's images are not known at bake time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import yamlio
from ..errors import Problem
from ..model import LoadBalancerKind, Role
from . import ClusterPlan, NodePlan, Topology

DEFAULT_REPOSITORY = "registry.k8s.io"
"""kubeadm's DefaultImageRepository (apis/kubeadm/v1beta4/defaults.go)."""

KUBERNETES_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBE_PROXY = "kube-proxy"
COREDNS = "coredns"
PAUSE = "pause"
ETCD = "etcd"


@dataclass(frozen=True)
class ThirdParty:
    """An image that is not kubeadm's: its upstream repository and the tag this baker pins."""

    name: str
    repository: str
    tag: str

    @property
    def upstream_ref(self) -> str:
        return f"{self.repository}/{self.name}:{self.tag}"


# kube-vip v1.0.3 (2025-12): the release kubespray's manifest template follows (kubespray PR #12815).
KUBE_VIP = ThirdParty("kube-vip", "ghcr.io/kube-vip", "v1.0.3")
# haproxy 3.2 is the LTS branch (May 2025); 3.2.25 is a published patch of it.
HAPROXY = ThirdParty("haproxy", "docker.io/library", "3.2.25")
# The image kubeadm's HA doc uses (2.0.17) carries curl from 2.0.17 on; 2.0.20 is osixia's last release.
KEEPALIVED = ThirdParty("keepalived", "docker.io/osixia", "2.0.20")

OVERRIDABLE = (COREDNS, ETCD, HAPROXY.name, KEEPALIVED.name, KUBE_VIP.name)
"""Keys of `cluster.images`: kubeadm overrides only etcd and CoreDNS; pause and the control-plane
components follow imageRepository alone."""


@dataclass(frozen=True)
class Image:
    """One image a node needs; `ref` is written as kubeadm and the static pods write it."""

    name: str
    ref: str
    source: str  # "kubeadm", "load-balancer", "cni" or "extra"

    @property
    def normalized(self) -> str:
        return normalize(self.ref)


# --------------------------------------------------------------------------------------------------
# references

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\Z")
_REF = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?/)?"  # optional registry host[:port]
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"  # path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # tag
    r"(?:@sha256:[0-9a-f]{64})?$"
)


def valid_ref(ref: str) -> bool:
    """A reference the runtimes accept (distribution/reference grammar, sha256 digests only)."""
    return bool(_REF.match(ref)) and len(ref) <= 512


def normalize(ref: str) -> str:
    """The fully qualified name containerd and CRI-O store a reference under.

    `haproxy:3` -> `docker.io/library/haproxy:3`, `me/app` -> `docker.io/me/app:latest`; a first
    component with a '.' or ':' (or `localhost`) is a registry host and stays as it is.
    """
    name, digest = ref, ""
    m = _DIGEST.search(ref)
    if m:
        name, digest = ref[: m.start()], m.group(0)
    first, slash, rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        first, rest = "docker.io", name
    if first == "docker.io" and "/" not in rest:
        rest = f"library/{rest}"
    last = rest.rsplit("/", 1)[-1]
    if ":" not in last and not digest:
        rest += ":latest"
    return f"{first}/{rest}{digest}"


def image_tag(version: str) -> str:
    """kubeadm's KubernetesVersionToImageTag: characters outside [-\\w.] become '_' (v1.37.1+x: v1.37.1_x)."""
    return re.sub(r"[^-\w.]", "_", version)


# --------------------------------------------------------------------------------------------------
# one image each


def _override(plan: ClusterPlan, name: str) -> tuple[str | None, str | None]:
    o = plan.settings.images.get(name)
    return (o.image_repository, o.image_tag) if o is not None else (None, None)


def kubernetes_image(plan: ClusterPlan, name: str) -> str:
    return f"{plan.settings.image_repository}/{name}:{image_tag('v' + plan.version)}"


def coredns_image(plan: ClusterPlan) -> str:
    """GetDNSImage: the default registry's CoreDNS lives one level down, at registry.k8s.io/coredns/."""
    repo, tag = _override(plan, COREDNS)
    repo = repo or plan.settings.image_repository
    if repo == DEFAULT_REPOSITORY:
        repo = f"{repo}/coredns"
    return f"{repo}/{COREDNS}:{tag or plan.info.coredns_tag}"


def pause_image(plan: ClusterPlan) -> str:
    """GetPauseImage of the cluster's kubeadm, which every node runs (skewed kubelets included)."""
    return f"{plan.settings.image_repository}/{PAUSE}:{plan.info.pause_tag}"


def etcd_image(plan: ClusterPlan) -> str:
    repo, tag = _override(plan, ETCD)
    return f"{repo or plan.settings.image_repository}/{ETCD}:{tag or plan.info.etcd_tag}"


def third_party_image(plan: ClusterPlan, image: ThirdParty) -> str:
    repo, tag = _override(plan, image.name)
    if repo is None:
        custom = plan.settings.image_repository
        repo = image.repository if custom == DEFAULT_REPOSITORY else custom
    return f"{repo}/{image.name}:{tag or image.tag}"


def kubeadm_image_overrides(plan: ClusterPlan) -> dict[str, dict[str, str]]:
    """The ImageMeta kubeadm's ClusterConfiguration needs for the profile's etcd / CoreDNS overrides."""
    out: dict[str, dict[str, str]] = {}
    for name in (COREDNS, ETCD):
        repo, tag = _override(plan, name)
        meta = {}
        if repo is not None:
            meta["imageRepository"] = repo
        if tag is not None:
            meta["imageTag"] = tag
        if meta:
            out[name] = meta
    return out


# --------------------------------------------------------------------------------------------------
# lists


def control_plane_images(plan: ClusterPlan) -> list[Image]:
    """GetControlPlaneImages for the baked ClusterConfiguration, in kubeadm's order."""
    images = [Image(n, kubernetes_image(plan, n), "kubeadm") for n in (*KUBERNETES_IMAGES, KUBE_PROXY)]
    images.append(Image(COREDNS, coredns_image(plan), "kubeadm"))
    images.append(Image(PAUSE, pause_image(plan), "kubeadm"))
    if plan.topology is Topology.STACKED:
        images.append(Image(ETCD, etcd_image(plan), "kubeadm"))
    return images


def load_balancer_images(plan: ClusterPlan) -> list[Image]:
    kind = plan.settings.load_balancer.kind
    if kind is LoadBalancerKind.KUBE_VIP:
        return [Image(KUBE_VIP.name, third_party_image(plan, KUBE_VIP), "load-balancer")]
    if kind is LoadBalancerKind.HAPROXY_KEEPALIVED:
        return [
            Image(HAPROXY.name, third_party_image(plan, HAPROXY), "load-balancer"),
            Image(KEEPALIVED.name, third_party_image(plan, KEEPALIVED), "load-balancer"),
        ]
    return []


def _walk_images(value: Any) -> Iterator[str]:
    """Every `image` of every container list (containers, initContainers, ephemeralContainers)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in ("containers", "initContainers", "ephemeralContainers") and isinstance(item, list):
                for container in item:
                    if isinstance(container, Mapping) and isinstance(container.get("image"), str):
                        yield container["image"]
            yield from _walk_images(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_images(item)


@lru_cache(maxsize=32)
def _manifest_images(path: str, size: int, mtime_ns: int) -> tuple[str, ...]:
    del size, mtime_ns  # part of the cache key only: a changed file is read again
    with open(path, "rb") as fh:
        docs = yamlio.load_all_own(fh)
    return tuple(dict.fromkeys(ref for doc in docs for ref in _walk_images(doc)))


def manifest_images(path: Path) -> tuple[str, ...]:
    """The container images a Kubernetes manifest file names, in order of appearance.

    Raises OSError or yaml.YAMLError; profile validation reports those with the field path.
    """
    st = path.stat()
    return _manifest_images(str(path), st.st_size, st.st_mtime_ns)


def cni_images(plan: ClusterPlan) -> list[Image] | None:
    """The CNI's images, or None when its manifests are downloaded at first boot (not known here)."""
    airgap = plan.settings.airgap
    if airgap is None:
        return None
    refs: dict[str, None] = {}
    for manifest in airgap.cni_manifests:
        refs.update(dict.fromkeys(manifest_images(Path(manifest))))
    return [Image(ref, ref, "cni") for ref in refs]


def extra_images(plan: ClusterPlan) -> list[Image]:
    airgap = plan.settings.airgap
    return [Image(ref, ref, "extra") for ref in (airgap.extra_images if airgap is not None else ())]


def _unique(images: Iterable[Image]) -> list[Image]:
    seen: dict[str, Image] = {}
    for image in images:
        seen.setdefault(image.normalized, image)
    return list(seen.values())


def node_images(plan: ClusterPlan, node: NodePlan) -> list[Image]:
    """Every image `node` runs: what the bootstrap checks before kubeadm when cluster.airgap is set.

    kube-proxy, CoreDNS and the CNI's pods may land on any Kubernetes node (CoreDNS tolerates the
    control-plane taint), so every control plane and worker needs them; an external etcd member is no
    Kubernetes node and runs etcd alone.
    """
    pause = Image(PAUSE, pause_image(plan), "kubeadm")
    if node.role is Role.ETCD:
        return [Image(ETCD, etcd_image(plan), "kubeadm"), pause]
    images: list[Image] = []
    if node.role is Role.CONTROL_PLANE:
        images += [i if i.name != PAUSE else pause for i in control_plane_images(plan)]
        images += load_balancer_images(plan)
    else:
        images += [
            Image(KUBE_PROXY, kubernetes_image(plan, KUBE_PROXY), "kubeadm"),
            Image(COREDNS, coredns_image(plan), "kubeadm"),
            pause,
        ]
    images += cni_images(plan) or []
    images += extra_images(plan)
    return _unique(images)


def arch_images(plan: ClusterPlan, arch: str) -> list[Image]:
    """What the image archives of one architecture must hold: the union over its nodes."""
    return _unique(i for n in plan.nodes if n.arch.value == arch for i in node_images(plan, n))


def override_problems(plan_images: Mapping[str, Any]) -> Iterator[Problem]:
    for name in plan_images:
        if name not in OVERRIDABLE:
            yield Problem(
                f"cluster.images.{name}",
                "no such overridable image; one of "
                + ", ".join(OVERRIDABLE)
                + " (the control-plane components and pause follow cluster.imageRepository)",
            )


def ref_problems(refs: Sequence[str], path: str) -> Iterator[Problem]:
    for i, ref in enumerate(refs):
        if not valid_ref(ref):
            yield Problem(f"{path}[{i}]", f"{ref!r} is not an image reference like registry/name:tag")


# --------------------------------------------------------------------------------------------------
# `bake images`


def listing(plan: ClusterPlan) -> dict[str, Any]:
    """What `bake images --json` prints: per architecture the union (what its archives must hold)
    and the images of each role, then each node's own list. References are written as kubeadm and
    the manifests write them (`normalize` gives the names the runtimes store them under)."""
    archs: dict[str, Any] = {}
    nodes: dict[str, Any] = {}
    for node in plan.nodes:
        refs = [i.ref for i in node_images(plan, node)]
        nodes[node.name] = {"arch": node.arch.value, "role": node.role.value, "images": refs}
        entry = archs.setdefault(node.arch.value, {"images": [], "roles": {}})
        role = entry["roles"].setdefault(node.role.value, {"nodes": [], "images": []})
        role["nodes"].append(node.name)
        for ref in refs:
            if ref not in role["images"]:
                role["images"].append(ref)
    for arch, entry in archs.items():
        entry["images"] = [i.ref for i in arch_images(plan, arch)]
    return {
        "cluster": plan.name,
        "kubernetesVersion": plan.version,
        "imageRepository": plan.settings.image_repository,
        "cni": plan.settings.cni.value,
        "cniImagesKnown": cni_images(plan) is not None or plan.settings.cni.value == "none",
        "architectures": dict(sorted(archs.items())),
        "nodes": nodes,
    }
