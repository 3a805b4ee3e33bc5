"""Every Kubernetes-minor-dependent fact the baker needs, in one table (1.31 – 1.37).

Renderers must ask this module instead of hard-coding versions, so that a new minor is one new row.
The module is long because it is that one table: a row per minor with the source of each fact beside
it, and the few functions that read it; a new minor is reviewed here, in one place.
Each row carries comments naming the upstream source of every fact; ``# unverified:`` marks the ones
that could not be confirmed against upstream text and says why.

Abbreviations used in the citations:
  k/k     = github.com/kubernetes/kubernetes (PR numbers are k/k unless another repository is named)
  spec    = the kubeadm reference the project started from (1.31 – 1.34 era); upstream sources win
  images  = output of ``kubeadm config images list --kubernetes-version <default_patch>`` (or of a cluster
            that kubeadm built at that version) seen in public material. The etcd tag can change in
            patch releases, so the tag belongs to ``default_patch``, not to the whole minor.

What changed per minor (only what a kubeadm config / static pod / kubelet / containerd renderer sees):

1.31  v1beta4 kubeadm API added (v1beta3 deprecated but accepted); ControlPlaneKubeletLocalMode alpha
      (PR #125582); etcd 3.5.15-0, pause 3.10, CoreDNS v1.11.3 from 1.31.1 (1.31.0 shipped v1.11.1).
1.32  NodeLocalCRISocket alpha (PR #128031); etcd 3.5.16-0 (constants.go @ release-1.32).
1.33  ControlPlaneKubeletLocalMode beta, on by default (PR #129956); WaitForAllControlPlaneComponents
      beta (spec 6.5); the GA EtcdLearnerMode gate removed (PR #129589); etcd 3.5.21-0, CoreDNS v1.12.0
      (coredns/deployment PR #306).
1.34  etcd 3.6 (3.6.4-0): kubeadm switches to ``--feature-gates=InitialCorruptCheck=true`` and
      ``--watch-progress-notify-interval`` for etcd >= 3.6.0 (PR #132838); named probe port
      ``probe-port`` (PR #132776, spec 5.1); ECDSA-P384 (PR #131677); NodeLocalCRISocket beta, on by
      default (k/website PR #51503); pause 3.10.1, CoreDNS v1.12.1.
1.35  kubeadm stops writing ``--pod-infra-container-image`` and the kubelet no longer accepts it
      (PR #133778, PR #133779); ControlPlaneKubeletLocalMode GA and locked (PR #134106);
      ``etcd.external.httpEndpoints`` added to v1beta4 (PR #134890); the GA WaitForAllControlPlaneComponents
      gate removed (PR #134781); etcd 3.6.6-0 (PR #135271),
      CoreDNS v1.13.1; cgroup v1 (k/website PR #56945) and kube-proxy ipvs mode (k/k PR #139067)
      deprecated.
1.36  kubeadm drops the etcd < 3.6 flag branch and always uses the 3.6 flags (PR #135701);
      NodeLocalCRISocket GA and locked (PR #135742, merged after 1.35.0); the GA
      ControlPlaneKubeletLocalMode gate removed (PR #135773); etcd 3.6.8-0,
      pause 3.10.2, CoreDNS v1.14.2. NOTE: v1beta3 is still accepted in 1.36 (see 1.37), which
      contradicts spec 4.1.
1.37  v1beta3 API and the PublicKeysECDSA gate removed, placeholder ``v1`` API added (PR #136016, listed
      in CHANGELOG-1.37.md under v1.37.0-alpha.1); NodeLocalCRISocket gate removed (PR #138645);
      ControlPlaneKubeletLocalMode and WaitForAllControlPlaneComponents gates removed (their
      behaviour kept), RootlessControlPlane the only gate left (features.go @ v1.37.2);
      etcd 3.7.0-0 (PR #139427 moved the default to 3.7.0-rc.0 in alpha.1), CoreDNS v1.14.6,
      pause 3.10.2; preflight warns when the runtime lacks the CRI RuntimeConfig RPC (PR #139122),
      i.e. on containerd 1.7.

The module is pure: no I/O, no environment, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import BakeError, Problem

__all__ = [
    "CONTAINERD_2_FROM_MINOR",
    "DISTRO_CONTAINERD",
    "NEWEST_MINOR",
    "OLDEST_MINOR",
    "TABLE",
    "MinorInfo",
    "VersionError",
    "full_version",
    "image_tag_key",
    "lookup",
    "parse_version",
    "skew_problems",
]


class VersionError(BakeError, ValueError):
    """A version string that is malformed or outside the table.

    It is a ``ValueError`` for callers that only parse, and a ``BakeError`` so the CLI prints it
    instead of a traceback.
    """


# Feature-gate states used in MinorInfo.feature_gates.
ALPHA = "alpha"  # exists, off by default
BETA = "beta"  # exists, on by default
GA = "ga"  # exists, locked to true: setting it to false is an error
DEPRECATED = "deprecated"  # exists only for backwards compatibility
REMOVED = "removed"  # naming it in featureGates is an error ("unrecognized feature-gate key")
ABSENT = "absent"  # not introduced yet: naming it is an error too


@dataclass(frozen=True)
class MinorInfo:
    """Version-dependent facts for one Kubernetes minor (1.<minor>)."""

    minor: int
    # Full version used when a profile only says "1.<minor>"; a release whose images were seen.
    default_patch: str
    # kubeadm's etcd image tag for default_patch (SupportedEtcdVersion[minor] of that kubeadm binary).
    etcd_tag: str
    # constants.PauseVersion; must also be containerd's sandbox image.
    pause_tag: str
    # constants.CoreDNSVersion.
    coredns_tag: str
    # etcd static pod uses --feature-gates=InitialCorruptCheck=true and --watch-progress-notify-interval=5s
    # instead of --experimental-initial-corrupt-check=true / --experimental-watch-progress-notify-interval=5s.
    etcd_36_flags: bool
    # ControlPlaneKubeletLocalMode on by default: a control plane's kubelet.conf points at its own
    # advertiseAddress:bindPort instead of controlPlaneEndpoint.
    control_plane_kubelet_local_mode: bool
    # NodeLocalCRISocket on by default: /var/lib/kubelet/instance-config.yaml carries
    # containerRuntimeEndpoint and kubeadm-flags.env has no --container-runtime-endpoint.
    node_local_cri_socket: bool
    # Static pods declare ports: [{name: probe-port, ...}] and probes use port: probe-port.
    named_probe_port: bool
    # ClusterConfiguration.encryptionAlgorithm: ECDSA-P384 is accepted.
    ecdsa_p384: bool
    # kubeadm.k8s.io/v1beta3 documents are still accepted.
    v1beta3_accepted: bool
    # containerd config schema to render: 2 (containerd 1.7) or 3 (containerd 2.x). A choice of this
    # project, not an upstream fact: see CONTAINERD_CHOICE below.
    containerd_config_version: int
    # kubeadm-flags.env carries --pod-infra-container-image=<repo>/pause:<pause_tag>. From 1.35 kubeadm
    # no longer writes it and the 1.35 kubelet refuses to start with it (unknown flag).
    pod_infra_container_image_flag: bool
    # ClusterConfiguration.etcd.external.httpEndpoints (etcd's --listen-client-http-urls side) accepted.
    etcd_external_http_endpoints: bool
    # extraArgs order: False = defaults and user args merged and sorted by name then value;
    # True = only kubeadm's defaults are sorted and user args keep their order (spec 5.1).
    extra_args_user_order_kept: bool
    # Every kubeadm feature gate of this minor (InitFeatureGates in cmd/kubeadm/app/features/features.go)
    # with its state, plus the removed ones bake knew about (see ALPHA ... ABSENT). A name that is not
    # ALPHA/BETA/GA/DEPRECATED here is refused at bake time, as kubeadm refuses it.
    feature_gates: tuple[tuple[str, str], ...]

    @property
    def version(self) -> str:
        """The minor as "1.<minor>"."""
        return f"1.{self.minor}"

    @property
    def etcd_version(self) -> tuple[int, int, int]:
        """The etcd release inside etcd_tag ("3.6.4-0" -> (3, 6, 4))."""
        major, minor, patch, _ = image_tag_key(self.etcd_tag)
        return major, minor, patch

    def gate_state(self, name: str) -> str:
        """State of a kubeadm feature gate in this minor; ABSENT if the table does not know it."""
        return dict(self.feature_gates).get(name, ABSENT)

    @property
    def kubeadm_gates(self) -> tuple[str, ...]:
        """The feature gate names this minor's kubeadm accepts (any other is "unrecognized")."""
        return tuple(sorted(n for n, state in self.feature_gates if state in (ALPHA, BETA, GA, DEPRECATED)))


# Why containerd_config_version is what it is. pkgs.k8s.io ships kubelet/kubeadm/kubectl/cri-tools/CNI
# plugins but no container runtime, so no upstream document pairs a minor with a containerd release.
#  - 31..34 -> 2 (containerd 1.7, the runtime Debian/Ubuntu archives carried in that period;
#    unverified: distro package versions were not looked up). kubeadm still passes
#    --pod-infra-container-image up to 1.34, so containerd 1.7's sandbox_image handling is enough.
#  - 35..37 -> 3 (containerd 2.x): from 1.35 kubeadm stops passing --pod-infra-container-image
#    (k/k PR #133778) and keeping the pause image safe from the kubelet's image GC relies on the CRI
#    "pinned" images of the runtime, which kubeadm's maintainers tie to containerd 2.0+ (kubernetes/kubeadm
#    issue #3108); the containerd 1.7 backport of the CRI RuntimeConfig RPC was closed unmerged
#    (containerd/containerd PR #11346), kubeadm 1.37 preflight warns on runtimes without it (k/k PR
#    #139122) and the kubelet drops the cgroup-driver fallback for such runtimes in 1.38 (k/k PR #139121).
CONTAINERD_CHOICE = "2 for 1.31-1.34 (containerd 1.7), 3 for 1.35+ (containerd 2.x)"

# The first kubelet minor that containerd 1.x no longer supports. "Kubernetes 1.35 is the last release
# supporting containerd 1.x. You must switch to containerd 2.0 or later before upgrading to the next
# Kubernetes version" (Amazon EKS user guide, Kubernetes 1.35 release notes, citing the upstream v1.35
# announcement where SIG Node flagged v1.35 as the last release for the containerd v1.x series). The
# kubelet is the runtime's client, so this applies per node (nodes[].kubernetesVersion).
CONTAINERD_2_FROM_MINOR = 36

# containerd in each OS's own archive (major.minor), for `cluster.containerRuntimeSource: distro`;
# None: the distribution ships no containerd. An OS missing here is not known, so not refused.
DISTRO_CONTAINERD: Mapping[str, str | None] = MappingProxyType(
    {
        # Debian bookworm: containerd 1.6.20~ds1-1+deb12u3 (`apt-cache policy containerd` on Debian 12).
        "debian-12": "1.6",
        # Debian trixie: 1.7.24~ds1 ("no containerd 2.X.Y versions are available on Debian repositories,
        # not even on trixie", docker/containerd-packaging PR #426, 2025-08-29).
        "debian-13": "1.7",
        # Ubuntu: jammy-updates and noble(-updates) carry the 1.7 series.
        # unverified: the exact patch levels were not looked up; no 2.x is in either series.
        "ubuntu-22.04": "1.7",
        "ubuntu-24.04": "1.7",
        # RHEL 9 and its rebuilds: containerd is not in BaseOS/AppStream (Docker's containerd.io is the
        # usual source, as the kubeadm install guide's container-runtime page points out).
        "rhel-9": None,
        "rocky-9": None,
        "alma-9": None,
        # fedora-41 / fedora-42: unverified which containerd series their archives carry; not listed.
    }
)

_CPKLM = "ControlPlaneKubeletLocalMode"
_NLCS = "NodeLocalCRISocket"
_WFACPC = "WaitForAllControlPlaneComponents"
_PKECDSA = "PublicKeysECDSA"
_ELM = "EtcdLearnerMode"
_RCP = "RootlessControlPlane"

_ROWS: tuple[MinorInfo, ...] = (
    MinorInfo(
        minor=31,
        # 1.31.1: minikube pkg/minikube/constants/constants_kubeadm_images.go (generated from kubeadm)
        # lists v1.31.1 -> etcd 3.5.15-0, pause 3.10, coredns v1.11.3; v1.31.0 had coredns v1.11.1,
        # so 1.31.1 is the first patch matching spec 5.6 (cmd/kubeadm/app/constants/constants.go @ v1.31).
        default_patch="1.31.1",
        etcd_tag="3.5.15-0",  # spec 5.6; minikube constants_kubeadm_images.go "v1.31.1"
        pause_tag="3.10",  # spec 5.6; minikube constants_kubeadm_images.go "v1.31.1"
        coredns_tag="v1.11.3",  # spec 5.6; minikube "v1.31.1"; coredns/deployment PR #301 (k/k PR #126796)
        etcd_36_flags=False,  # etcd 3.5 keeps --experimental-* (local.go, spec 5.5; k/k PR #132838 is 1.34)
        control_plane_kubelet_local_mode=False,  # alpha, off (k/k PR #125582; spec 6.5)
        node_local_cri_socket=False,  # gate does not exist yet (alpha in 1.32, k/k PR #128031; spec 6.5)
        named_probe_port=False,  # 1.34+ only (k/k PR #132776; spec 5.1)
        ecdsa_p384=False,  # 1.34+ only (k/k PR #131677; spec 1.5)
        v1beta3_accepted=True,  # deprecated in 1.31, still accepted (spec 4.1)
        containerd_config_version=2,  # CONTAINERD_CHOICE
        pod_infra_container_image_flag=True,  # cmd/kubeadm/app/phases/kubelet/flags.go (spec 6.2)
        etcd_external_http_endpoints=False,  # added in 1.35 (k/k PR #134890)
        extra_args_user_order_kept=False,  # ArgumentsToCommand sorts all args (spec 5.1)
        feature_gates=(
            (_CPKLM, ALPHA),  # k/k PR #125582 (release notes of v1.31.0-rc.0, sig-release PR #2584)
            (_NLCS, ABSENT),  # k/k PR #128031 adds it in 1.32
            (_WFACPC, ALPHA),  # spec 6.5 (alpha 1.30)
            (_PKECDSA, DEPRECATED),  # k/k PR #120417 deprecated it; spec 1.5
            (_ELM, BETA),  # beta since 1.29 (k/k PR #120228), GA in 1.32 (k/k PR #126374)
            (_RCP, ALPHA),  # features.go (alpha since 1.22)
            # UpgradeAddonsBeforeControlPlane was removed in 1.31 (k/k PR #124715): not listed, so refused.
        ),
    ),
    MinorInfo(
        minor=32,
        default_patch="1.32.0",  # images: v1.32.0 -> coredns v1.11.3, pause 3.10, etcd 3.5.16-0 (several)
        # constants.go @ release-1.32: DefaultEtcdVersion = "3.5.16-0". Later 1.32 patches map 32 to
        # "3.5.24-0" (same file at commit 00886ac01fec1c8432967e8bb597828f46a9ba8b): patch-dependent.
        etcd_tag="3.5.16-0",
        pause_tag="3.10",  # constants.go @ release-1.32: PauseVersion = "3.10"
        coredns_tag="v1.11.3",  # constants.go @ release-1.32; coredns/deployment PR #303
        etcd_36_flags=False,  # etcd 3.5 (spec 5.5)
        control_plane_kubelet_local_mode=False,  # still alpha (beta in 1.33, k/k PR #129956)
        node_local_cri_socket=False,  # alpha (k/k PR #128031; spec 6.5)
        named_probe_port=False,  # k/k PR #132776 is 1.34
        ecdsa_p384=False,  # k/k PR #131677 is 1.34
        v1beta3_accepted=True,  # spec 4.1
        containerd_config_version=2,  # CONTAINERD_CHOICE
        pod_infra_container_image_flag=True,  # flags.go (spec 6.2)
        etcd_external_http_endpoints=False,  # k/k PR #134890 is 1.35
        extra_args_user_order_kept=False,  # spec 5.1
        feature_gates=(
            (_CPKLM, ALPHA),  # k/k PR #129956 (beta) is 1.33
            (_NLCS, ALPHA),  # k/k PR #128031; spec 6.5
            (_WFACPC, ALPHA),  # spec 6.5
            (_PKECDSA, DEPRECATED),  # spec 1.5
            (_ELM, GA),  # k/k PR #126374; features.go @ v1.33.0-alpha.0 still lists it
            (_RCP, ALPHA),  # features.go @ v1.33.0-alpha.0
        ),
    ),
    MinorInfo(
        minor=33,
        default_patch="1.33.0",  # images: kubeadm config images list v1.33.0 (two independent outputs)
        etcd_tag="3.5.21-0",  # images v1.33.0; spec 5.6 (later 1.33 patches move to 3.5.2x-0)
        pause_tag="3.10",  # images v1.33.0; kubernetes/kubeadm issue #3232 (v1.33.4 expects pause:3.10)
        # images v1.33.0; coredns/deployment PR #306 (k/k build/dependencies.yaml @ v1.33.0)
        coredns_tag="v1.12.0",
        etcd_36_flags=False,  # etcd 3.5 (spec 5.5)
        control_plane_kubelet_local_mode=True,  # beta, default on (k/k PR #129956; spec 6.5)
        node_local_cri_socket=False,  # alpha until 1.34 (k/website PR #51503 targets dev-1.34)
        named_probe_port=False,  # k/k PR #132776 is 1.34
        ecdsa_p384=False,  # k/k PR #131677 (merged May 2025) is 1.34
        v1beta3_accepted=True,  # spec 4.1
        containerd_config_version=2,  # CONTAINERD_CHOICE
        pod_infra_container_image_flag=True,  # flags.go; spec 6.2 example for 1.33
        etcd_external_http_endpoints=False,  # k/k PR #134890 is 1.35
        extra_args_user_order_kept=False,  # spec 5.1
        feature_gates=(
            (_CPKLM, BETA),  # k/k PR #129956
            (_NLCS, ALPHA),  # spec 6.5; features.go @ v1.34.0-rc.0 says "beta in v1.34"
            (_WFACPC, BETA),  # spec 6.5
            (_PKECDSA, DEPRECATED),  # spec 1.5
            (_ELM, REMOVED),  # k/k PR #129589 ("remove it in 1.33")
            (_RCP, ALPHA),  # features.go
        ),
    ),
    MinorInfo(
        minor=34,
        # images: `minikube image ls` of a v1.34.0 cluster (minikube takes them from kubeadm): etcd 3.6.4-0,
        # coredns v1.12.1, pause 3.10.1. spec 5.6 has the same etcd tag, and 3.6.5-0 for later patches.
        default_patch="1.34.0",
        etcd_tag="3.6.4-0",  # images v1.34.0; spec 5.6
        pause_tag="3.10.1",  # images v1.34.0 (spec 5.6 had it [unverified]; v1.34.0-beta.0 still had 3.10)
        coredns_tag="v1.12.1",  # images v1.34.0; CHANGELOG-1.34.md "CoreDNS upgraded to v1.12.1"
        etcd_36_flags=True,  # local.go: new flags when etcd image >= 3.6.0 (k/k PR #132838; spec 5.5)
        control_plane_kubelet_local_mode=True,  # beta, default on (k/k PR #129956)
        node_local_cri_socket=True,  # beta, default on (k/website PR #51503 for dev-1.34; spec 6.2/6.5)
        named_probe_port=True,  # k/k PR #132776 (spec 5.1)
        ecdsa_p384=True,  # k/k PR #131677 "kubeadm: add support for ECDSA-P384 ... in v1beta4"
        v1beta3_accepted=True,  # spec 4.1
        containerd_config_version=2,  # CONTAINERD_CHOICE
        pod_infra_container_image_flag=True,  # removal (k/k PR #133778, 2025-08-29) came after 1.34.0
        etcd_external_http_endpoints=False,  # k/k PR #134890 is 1.35
        extra_args_user_order_kept=False,  # spec 5.1
        feature_gates=(
            (_CPKLM, BETA),  # GA only in 1.35 (k/k PR #134106)
            (_NLCS, BETA),  # k/website PR #51503
            (_WFACPC, GA),  # spec 6.5; k/k PR #134781 ("GA and locked ... in 1.34")
            (_PKECDSA, DEPRECATED),  # spec 1.5
            (_ELM, REMOVED),  # k/k PR #129589; absent from features.go @ v1.34.0-rc.0
            (_RCP, ALPHA),  # features.go @ v1.34.0-rc.0
        ),
    ),
    MinorInfo(
        minor=35,
        # images: v1.35.0 lists from two public scripts agree: etcd 3.6.6-0, coredns v1.13.1, pause 3.10.1.
        default_patch="1.35.0",
        # k/k PR #135271 ("etcd: Update etcd to v3.6.6") sets SupportedEtcdVersion[current minor] and
        # DefaultEtcdVersion to "3.6.6-0" in cmd/kubeadm/app/constants/constants.go on the 1.35 branch.
        etcd_tag="3.6.6-0",
        pause_tag="3.10.1",  # images v1.35.0
        coredns_tag="v1.13.1",  # images v1.35.0
        etcd_36_flags=True,  # etcd 3.6 (k/k PR #132838)
        control_plane_kubelet_local_mode=True,  # GA and locked (k/k PR #134106)
        # Still beta/default-on in 1.35: the GA PR (k/k PR #135742) was approved 2025-12-19, after 1.35.0.
        # spec 6.5 says GA 1.35; either way it is on by default.
        node_local_cri_socket=True,
        named_probe_port=True,  # k/k PR #132776
        ecdsa_p384=True,  # k/k PR #131677
        v1beta3_accepted=True,  # PR #136016 ("The 1.35 kubeadm binary can be used to migrate") is later
        containerd_config_version=3,  # CONTAINERD_CHOICE
        # k/k PR #133778: kubeadm stops writing the flag; k/k PR #133779 removes it from the kubelet in 1.35
        # (CHANGELOG-1.35.md urgent upgrade notes, cited by kubermatic/operating-system-manager PR #555).
        pod_infra_container_image_flag=False,
        # k/k PR #134890, opened 2025-10-26 before the 1.35 freeze.
        # unverified: its merge date was not seen, so 1.35 (not 1.36) is inferred.
        etcd_external_http_endpoints=True,
        extra_args_user_order_kept=False,  # spec 5.1
        feature_gates=(
            (_CPKLM, GA),  # k/k PR #134106
            (_NLCS, BETA),  # k/k PR #135742 (GA) merged after 1.35.0
            (_WFACPC, REMOVED),  # k/k PR #134781 (opened and approved 2025-10, in the 1.35 cycle)
            (_PKECDSA, DEPRECATED),  # removed only with v1beta3 (k/k PR #136016, 1.37)
            (_ELM, REMOVED),  # k/k PR #129589
            (_RCP, ALPHA),  # features.go
        ),
    ),
    MinorInfo(
        minor=36,
        # images: `kubeadm config images list` output for v1.36.4 (coredns v1.14.2, pause 3.10.2,
        # etcd 3.6.8-0); v1.36.1 pull lists agree. 1.36.0 itself was not seen listed.
        default_patch="1.36.4",
        # images v1.36.4 and v1.36.1; etcd-io docs "Bump etcd Version in Kubernetes" show the 1.36 map as
        # {34, 35, 36: "3.6.8-0"} before k/k PR #137956 (3.6.9, held until after the 1.36 freeze).
        # Master later went to 3.6.10/3.6.11 "for v1.34, v1.35, v1.36" (k/k PRs #138392, #138746) but 1.36.4
        # still lists 3.6.8-0.
        etcd_tag="3.6.8-0",
        pause_tag="3.10.2",  # images v1.36.4; kubeclipper/kubeclipper PR #947 ("k8s 1.36 uses pause:3.10.2")
        coredns_tag="v1.14.2",  # images v1.36.4
        etcd_36_flags=True,  # local.go always uses the 3.6 flags from 1.36 (k/k PR #135701)
        control_plane_kubelet_local_mode=True,  # GA (k/k PR #134106)
        node_local_cri_socket=True,  # GA and locked (k/k PR #135742)
        named_probe_port=True,  # k/k PR #132776
        ecdsa_p384=True,  # k/k PR #131677
        # v1beta3 was removed by k/k PR #136016, which CHANGELOG-1.37.md lists under v1.37.0-alpha.1
        # ("Changelog since v1.36.0"); kubernetes/kubeadm PR #3311 (2026-05-30) still waited for it and
        # kubernetes-sigs/image-builder PR #2152 says "fully removed from 1.37". spec 4.1 (1.36) is wrong.
        v1beta3_accepted=True,
        containerd_config_version=3,  # CONTAINERD_CHOICE
        pod_infra_container_image_flag=False,  # k/k PR #133778
        etcd_external_http_endpoints=True,  # k/k PR #134890
        # spec 5.1: "1.36 changes this: only the defaults are sorted and user order is kept".
        # unverified: the k/k PR for this change was not found.
        extra_args_user_order_kept=True,
        feature_gates=(
            (_CPKLM, REMOVED),  # k/k PR #135773 ("went GA in 1.35. It can be removed in 1.36")
            (_NLCS, GA),  # k/k PR #135742
            (_WFACPC, REMOVED),  # k/k PR #134781
            (_PKECDSA, DEPRECATED),  # k/k PR #136016 is 1.37
            (_ELM, REMOVED),  # k/k PR #129589
            (_RCP, ALPHA),  # features.go
        ),
    ),
    MinorInfo(
        minor=37,
        # Checked against kubeadm v1.37.2 built from k8s.io/kubernetes@v1.37.2 (the release the real-kubeadm
        # tests build): `kubeadm config images list --kubernetes-version v1.37.2` lists etcd 3.7.0-0,
        # pause 3.10.2, coredns v1.14.6 (cmd/kubeadm/app/constants/constants.go @ v1.37.2:
        # DefaultEtcdVersion, PauseVersion, CoreDNSVersion). 1.37.0 was released 2026-08-26
        # (kubernetes/website PR #55932).
        default_patch="1.37.2",
        etcd_tag="3.7.0-0",  # images v1.37.2; k/k PR #139427 moved the default to 3.7.0-rc.0 in alpha.1
        pause_tag="3.10.2",  # images v1.37.2
        coredns_tag="v1.14.6",  # images v1.37.2 (k/k PR #138536 had bumped to 1.14.3 in alpha.1)
        # etcd 3.7 removed the --experimental-* flags (etcd-io/etcd PR #19959 via k/k PR #132838); kubeadm
        # uses the 3.6 names unconditionally (k/k PR #135701; phases/etcd/local.go @ v1.37.2).
        etcd_36_flags=True,
        # The gate is gone but the behaviour stays: `init phase kubeconfig kubelet` drops
        # controlPlaneEndpoint for kubelet.conf (cmd/phases/init/kubeconfig.go @ v1.37.2).
        control_plane_kubelet_local_mode=True,
        # behaviour always on (instance-config.yaml); gate removed (k/k PR #138645)
        node_local_cri_socket=True,
        named_probe_port=True,  # k/k PR #132776
        ecdsa_p384=True,  # k/k PR #131677
        v1beta3_accepted=False,  # k/k PR #136016 (CHANGELOG-1.37.md, v1.37.0-alpha.1)
        # CONTAINERD_CHOICE; kubeadm preflight warns without RuntimeConfig (k/k PR #139122)
        containerd_config_version=3,
        pod_infra_container_image_flag=False,  # k/k PR #133778
        etcd_external_http_endpoints=True,  # k/k PR #134890
        # util/arguments.go @ v1.37.2: sorted defaults first, then the extraArgs in their own order
        extra_args_user_order_kept=True,
        # features.go @ v1.37.2 (InitFeatureGates) and `kubeadm init --help` list only RootlessControlPlane.
        feature_gates=(
            # cmd/kubeadm/app/features/features.go @ v1.37.2 knows RootlessControlPlane only.
            (_CPKLM, REMOVED),  # k/k PR #135773
            (_NLCS, REMOVED),  # k/k PR #138645
            (_WFACPC, REMOVED),  # k/k PR #134781
            (_PKECDSA, REMOVED),  # k/k PR #136016
            (_ELM, REMOVED),  # k/k PR #129589
            (_RCP, ALPHA),  # features.go @ v1.37.2 (deprecated in favour of UserNamespacesSupport)
        ),
    ),
)

TABLE: Mapping[int, MinorInfo] = MappingProxyType({row.minor: row for row in _ROWS})
OLDEST_MINOR: int = min(TABLE)
NEWEST_MINOR: int = max(TABLE)

_VERSION_RE = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?")
_IMAGE_TAG_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:-(\d+))?")


def _supported_range() -> str:
    return f"1.{OLDEST_MINOR} – 1.{NEWEST_MINOR}"


def parse_version(text: str) -> tuple[int, int, int]:
    """Parse "1.35", "1.35.2" or "v1.35.2" into (major, minor, patch); a missing patch is 0.

    Pre-release and build suffixes are refused: packages and images exist only for releases.
    Raises VersionError (a ValueError).
    """
    if not isinstance(text, str):
        raise VersionError(f"kubernetes version must be a string like 1.35 or 1.35.2, got {text!r}")
    match = _VERSION_RE.fullmatch(text.strip())
    if match is None:
        raise VersionError(
            f"{text!r} is not a kubernetes version: expected MAJOR.MINOR or MAJOR.MINOR.PATCH, "
            "optionally with a leading 'v' (e.g. 1.35, 1.35.2, v1.35.2)"
        )
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def _has_patch(text: str) -> bool:
    match = _VERSION_RE.fullmatch(text.strip())
    return match is not None and match.group(3) is not None


def _error(path: str, message: str) -> VersionError:
    return VersionError([Problem(path, message)])


def lookup(version: str, *, path: str = "") -> MinorInfo:
    """Return the row for a version's minor; VersionError (a BakeError) if it is malformed or unsupported.

    ``path`` locates the value in the profile (e.g. "kubernetesVersion") for the error message.
    """
    try:
        major, minor, _ = parse_version(version)
    except VersionError as exc:
        raise _error(path, str(exc)) from None
    shown = version.strip().removeprefix("v")
    if major != 1 or minor not in TABLE:
        raise _error(
            path, f"kubernetes version {shown} is not supported: this bake supports {_supported_range()}"
        )
    return TABLE[minor]


def full_version(version: str, *, path: str = "") -> str:
    """Complete a version to MAJOR.MINOR.PATCH without a 'v'.

    "1.35" -> TABLE[35].default_patch, "v1.35.2" -> "1.35.2"; unsupported minors raise VersionError.
    """
    info = lookup(version, path=path)
    if not _has_patch(version):
        return info.default_patch
    major, minor, patch = parse_version(version)
    return f"{major}.{minor}.{patch}"


def skew_problems(control_plane: str, kubelet: str) -> list[str]:
    """Check the kubelet / kube-apiserver skew policy (spec 7.5); an empty list means it is fine.

    The policy is in minors: a kubelet is never newer than kube-apiserver and at most 3 minors older
    (content/en/releases/version-skew-policy.md). Patch levels do not matter. Whether both versions are
    in TABLE is lookup()'s business, not this function's. Malformed input raises VersionError.
    """
    cp_major, cp_minor, _ = parse_version(control_plane)
    kl_major, kl_minor, _ = parse_version(kubelet)
    if cp_major != kl_major:
        return [
            f"kubelet {kubelet} and control plane {control_plane} have different major versions: "
            "the kubelet must be within 3 minors of kube-apiserver"
        ]
    if kl_minor > cp_minor:
        return [
            f"kubelet {kubelet} is newer than the control plane {control_plane}: "
            "a kubelet must never be newer than kube-apiserver"
        ]
    behind = cp_minor - kl_minor
    if behind > 3:
        return [
            f"kubelet {kubelet} is {behind} minor versions older than the control plane {control_plane}: "
            "at most 3 are supported"
        ]
    return []


def image_tag_key(tag: str) -> tuple[int, int, int, int]:
    """Order image tags such as "3.5.15-0", "3.10", "v1.14.6" (missing parts count as 0)."""
    match = _IMAGE_TAG_RE.fullmatch(tag)
    if match is None:
        raise ValueError(f"unexpected image tag {tag!r}")
    major, minor, patch, build = (int(part or 0) for part in match.groups())
    return major, minor, patch, build
