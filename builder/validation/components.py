"""Checks of user input against kubeadm's, the kubelet's and the node OS's rules, on the whole profile.

They run when the profile is loaded (`builder.validation.problems`), before anything is rendered and
for every node whatever `--only` selects, so a profile that a renderer would choke on, or that kubeadm
or the kubelet would refuse on the node, is refused at bake time with the field's path. Renderers trust
a validated profile and do not check these again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import Problem
from ..model import (
    LoadBalancerKind,
    PackageMode,
    Profile,
    Role,
    Runtime,
    RuntimeSource,
    kubeadm_schema,
    versions,
)
from ..model.syntax import DNS1123_SUBDOMAIN

# --------------------------------------------------------------------------------------------------
# kubeadm feature gates


def feature_gate_problems(p: Profile, info: versions.MinorInfo) -> Iterator[Problem]:
    """kubeadm refuses a gate it does not know ("unrecognized feature-gate key") and a GA gate set false."""
    for name, value in p.cluster.feature_gates.items():
        state = info.gate_state(name)
        path = f"cluster.featureGates.{name}"
        if state in (versions.REMOVED, versions.ABSENT):
            known = ", ".join(info.kubeadm_gates) or "none"
            why = "was removed" if state == versions.REMOVED else "is not a kubeadm feature gate"
            yield Problem(path, f"{name} {why} in kubeadm {info.version} (its gates: {known})")
        elif state == versions.GA and value is False:
            yield Problem(path, f"{name} is GA and locked to true in kubeadm {info.version}")


# --------------------------------------------------------------------------------------------------
# KubeletConfiguration


def kubelet_config_problems(config: Mapping[str, Any]) -> list[Problem]:
    """cluster.kubelet.config: only KubeletConfiguration v1beta1 fields, at any depth."""
    allowed = set(kubeadm_schema.KUBELET_CONFIGURATION_FIELDS)
    problems = []
    for key in config:
        path = f"cluster.kubelet.config.{key}"
        if key in ("apiVersion", "kind"):
            problems.append(Problem(path, "bake writes apiVersion and kind itself"))
        elif key not in allowed:
            problems.append(Problem(path, "not a KubeletConfiguration (kubelet.config.k8s.io/v1beta1) field"))
    if problems:
        return problems
    doc = {"apiVersion": kubeadm_schema.KUBELET_API, "kind": "KubeletConfiguration", **config}
    return [
        Problem(f"cluster.kubelet.config.{p}", "not a KubeletConfiguration v1beta1 field")
        for p in kubeadm_schema.unknown_fields(doc)
    ]


# --------------------------------------------------------------------------------------------------
# kubelet flags and node labels

# Kubernetes label syntax (apimachinery validation.IsQualifiedName / IsValidLabelValue).
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?\Z")
# The kubelet refuses --node-labels in the kubernetes.io / k8s.io namespaces except these
# (k8s.io/kubelet/pkg/apis well_known_labels.go: KubeletLabels / KubeletLabelNamespaces).
_KUBELET_LABELS = frozenset(
    {
        "kubernetes.io/hostname",
        "kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "node.kubernetes.io/instance-type",
    }
)
_KUBELET_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")
RESERVED_KUBELET_ARGS = {"node-ip": "nodes[].ip", "node-labels": "nodes[].labels"}
"""Flags bake derives itself (kubeadm_config.kubelet_extra_args)."""


def label_problems(key: str, value: str, path: str) -> Iterator[Problem]:
    prefix, slash, name = key.rpartition("/")
    if not _LABEL_NAME.match(name) or (slash and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))):
        yield Problem(path, f"{key!r} is not a valid label key (optional DNS prefix/, then a name)")
        return
    if not _LABEL_VALUE.match(value):
        yield Problem(path, f"{value!r} is not a valid label value (63 letters, digits, '-', '_', '.')")
    if prefix and (prefix.endswith(("kubernetes.io", "k8s.io"))):
        allowed = key in _KUBELET_LABELS or any(
            prefix == ns or prefix.endswith("." + ns) for ns in _KUBELET_LABEL_NAMESPACES
        )
        if not allowed:
            yield Problem(
                path,
                f"the kubelet refuses to set {key!r} itself (kubernetes.io/k8s.io labels are limited to "
                "node.kubernetes.io/, kubelet.kubernetes.io/ and a few well-known ones); set it after join",
            )


def kubelet_arg_problems(p: Profile) -> Iterator[Problem]:
    """Reserved kubelet flags anywhere, and every node's labels (the kubelet's --node-labels rules)."""
    for j, a in enumerate(p.cluster.kubelet.extra_args):
        if a.name in RESERVED_KUBELET_ARGS:
            yield Problem(
                f"cluster.kubelet.extraArgs[{j}].name",
                f"bake sets --{a.name} from {RESERVED_KUBELET_ARGS[a.name]}",
            )
    for i, n in enumerate(p.nodes):
        for j, a in enumerate(n.kubelet_extra_args):
            if a.name in RESERVED_KUBELET_ARGS:
                yield Problem(
                    f"nodes[{i}].kubeletExtraArgs[{j}].name",
                    f"bake sets --{a.name} from {RESERVED_KUBELET_ARGS[a.name]}",
                )
        for key, value in sorted(n.labels.items()):
            yield from label_problems(key, value, f"nodes[{i}].labels.{key}")


# --------------------------------------------------------------------------------------------------
# control-plane load balancer

MAX_KEEPALIVED_CONTROL_PLANES = 150
"""keepalived priorities are 1-254: 100 + (n - 1 - index) with a check weight of -n must stay in range."""


def load_balancer_problems(p: Profile) -> Iterator[Problem]:
    lb = p.cluster.load_balancer
    if lb.kind is not LoadBalancerKind.HAPROXY_KEEPALIVED:
        return
    if lb.port < 1024:
        yield Problem(
            "cluster.loadBalancer.port", "haproxy runs unprivileged in its image: use a port >= 1024"
        )
    elif lb.port == 6443:
        yield Problem(
            "cluster.loadBalancer.port", "haproxy shares the host network with kube-apiserver (6443)"
        )
    cps = sum(1 for n in p.nodes if n.role is Role.CONTROL_PLANE)
    if cps > MAX_KEEPALIVED_CONTROL_PLANES:
        yield Problem(
            "nodes", f"keepalived priorities allow at most {MAX_KEEPALIVED_CONTROL_PLANES} control planes"
        )


# --------------------------------------------------------------------------------------------------
# container runtime


def runtime_problems(p: Profile) -> Iterator[Problem]:
    """A distro containerd where Kubernetes does not support it (or the OS has none), at bake time.

    Only when bake installs the packages: a `packages.mode: prebaked` image is its builder's business
    (the bootstrap still logs a warning on the node).
    """
    c = p.cluster
    if (
        c.container_runtime is not Runtime.CONTAINERD
        or c.container_runtime_source is not RuntimeSource.DISTRO
        or c.packages.mode is PackageMode.PREBAKED
    ):
        return
    way_out = (
        "use cluster.containerRuntimeSource: repository (containerd 2.x from cluster.containerdRepository), "
        "or packages.mode: prebaked with an image that carries containerd 2"
    )
    reported: set[str] = set()
    for i, n in enumerate(p.nodes):
        os_name = (n.os or p.defaults.os).value
        if os_name in reported or os_name not in versions.DISTRO_CONTAINERD:
            continue
        shipped = versions.DISTRO_CONTAINERD[os_name]
        try:
            minor = versions.lookup(n.kubernetes_version or c.kubernetes_version).minor
        except versions.VersionError:
            continue  # reported by validation.structure
        if shipped is None:
            why = f"{os_name} ships no containerd package (nodes[{i}] {n.name})"
        elif int(shipped.split(".")[0]) < 2 and minor >= versions.CONTAINERD_2_FROM_MINOR:
            why = (
                f"{os_name}'s own containerd is {shipped}, and the kubelet of nodes[{i}] {n.name} "
                f"(1.{minor}) needs containerd 2.x: Kubernetes 1.{versions.CONTAINERD_2_FROM_MINOR - 1} "
                "was the last release to support containerd 1.x"
            )
        else:
            continue
        reported.add(os_name)
        yield Problem("cluster.containerRuntimeSource", f"{why}; {way_out}")


# --------------------------------------------------------------------------------------------------
# everything


def problems(p: Profile) -> Iterator[Problem]:
    """Every check of this module; `info` problems (unsupported versions) are the profile's own."""
    info: versions.MinorInfo | None
    try:
        info = versions.lookup(p.cluster.kubernetes_version)
    except versions.VersionError:
        info = None  # reported by validation.structure
    if info is not None:
        yield from feature_gate_problems(p, info)
    yield from kubelet_config_problems(p.cluster.kubelet.config)
    yield from kubelet_arg_problems(p)
    yield from load_balancer_problems(p)
    yield from runtime_problems(p)
