"""The field sets of the documents `kubeadm --config` reads, so that a misspelt key fails the bake.

kubeadm only *warns* about unknown fields (strict decoding errors are logged, then the document is
decoded leniently and the field is dropped), so a typo in a generated config silently loses a
setting on the node. `unknown_fields` reports every key that the upstream Go types do not declare.

Sources (json tags of the Go structs; every `,inline` struct is flattened into its parent):

- kubeadm.k8s.io/v1beta4: kubernetes/kubernetes `cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go` at
  commit 1329935739c3aa007d23cb9a4dadfee9d59ff79b. That revision has `timeouts`, `imagePullSerial`,
  `extraEnvs`, `dns.disabled`/`proxy.disabled` and `UpgradeConfiguration`, and its
  `encryptionAlgorithm` comment does not list ECDSA-P384 yet (k/k PR #131677, 1.34): it is the
  release-1.31 .. release-1.33 state. kubernetes/website
  `content/en/docs/reference/config-api/kubeadm-config.v1beta4.md` (generated from the same types,
  v1.31 links) agrees field by field.
  Later additions taken from elsewhere: `etcd.external.httpEndpoints` (k/k PR #134890, 1.35; present in
  the generated v1beta4 reference of kubernetes/website's uk translation).
- BootstrapToken: `cmd/kubeadm/app/apis/bootstraptoken/v1/types.go`
  (commit 95f08499d652a6211121d8af35f470609217c730).
- corev1.Taint / corev1.EnvVar: k8s.io/api core/v1 (`key, value, effect, timeAdded`;
  `name, value, valueFrom`).
- kubelet.config.k8s.io/v1beta1 KubeletConfiguration: `staging/src/k8s.io/kubelet/config/v1beta1/types.go`
  (commit 8383bd62ee26c68c4eac4b49431d3403d0880a26, ~1.27) united with the reference generated from
  the same file for 1.35 (kubernetes/website `content/en/docs/reference/config-api/kubelet-config.v1beta1.md`,
  commit 037ed19f7a0151940df9de98ce66c8e79bac508e), which adds podLogsDir, imageMaximumGCAge,
  containerRuntimeEndpoint, failCgroupV1, userNamespaces and the other 1.28 - 1.35 fields.
  Fields added by 1.36 / 1.37 were not seen: a new kubelet field has to be added here before a profile
  can use it.

The sets are a union over 1.31 - 1.37: a field removed in one minor would still pass here. The
renderers only emit fields that every supported minor accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
KUBELET_API = "kubelet.config.k8s.io/v1beta1"


class Leaf:
    """A value whose inside is not checked: scalars, and maps with free keys (featureGates)."""

    def __repr__(self) -> str:
        return "LEAF"


LEAF = Leaf()


@dataclass(frozen=True)
class ListOf:
    item: Schema


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, Schema] = field(default_factory=dict)


Schema = Leaf | ListOf | Obj


def _obj(**fields: Schema) -> Obj:
    return Obj(dict(fields))


def _leaves(*names: str) -> dict[str, Schema]:
    return dict.fromkeys(names, LEAF)


TYPE_META = _leaves("apiVersion", "kind")

# --- shared v1beta4 pieces -------------------------------------------------------------------------

ARG = _obj(name=LEAF, value=LEAF)
ENV_VAR = _obj(name=LEAF, value=LEAF, valueFrom=LEAF)  # EnvVar{corev1.EnvVar `json:",inline"`}
TAINT = _obj(key=LEAF, value=LEAF, effect=LEAF, timeAdded=LEAF)
HOST_PATH_MOUNT = _obj(name=LEAF, hostPath=LEAF, mountPath=LEAF, readOnly=LEAF, pathType=LEAF)
API_ENDPOINT = _obj(advertiseAddress=LEAF, bindPort=LEAF)
PATCHES = _obj(directory=LEAF)
IMAGE_META = _leaves("imageRepository", "imageTag")
TIMEOUTS = Obj(
    _leaves(
        "controlPlaneComponentHealthCheck",
        "kubeletHealthCheck",
        "kubernetesAPICall",
        "etcdAPICall",
        "tlsBootstrap",
        "discovery",
        "upgradeManifests",
    )
)
BOOTSTRAP_TOKEN = Obj(_leaves("token", "description", "ttl", "expires", "usages", "groups"))
NODE_REGISTRATION = Obj(
    {
        **_leaves("name", "criSocket", "ignorePreflightErrors", "imagePullPolicy", "imagePullSerial"),
        "taints": ListOf(TAINT),
        "kubeletExtraArgs": ListOf(ARG),
    }
)
CONTROL_PLANE_COMPONENT: dict[str, Schema] = {
    "extraArgs": ListOf(ARG),
    "extraVolumes": ListOf(HOST_PATH_MOUNT),
    "extraEnvs": ListOf(ENV_VAR),
}
LOCAL_ETCD = Obj(
    {
        **IMAGE_META,
        "dataDir": LEAF,
        "extraArgs": ListOf(ARG),
        "extraEnvs": ListOf(ENV_VAR),
        "serverCertSANs": LEAF,
        "peerCertSANs": LEAF,
    }
)
EXTERNAL_ETCD = Obj(_leaves("endpoints", "httpEndpoints", "caFile", "certFile", "keyFile"))

# --- the kinds ----------------------------------------------------------------------------------

INIT_CONFIGURATION = Obj(
    {
        **TYPE_META,
        "bootstrapTokens": ListOf(BOOTSTRAP_TOKEN),
        "dryRun": LEAF,
        "nodeRegistration": NODE_REGISTRATION,
        "localAPIEndpoint": API_ENDPOINT,
        "certificateKey": LEAF,
        "skipPhases": LEAF,
        "patches": PATCHES,
        "timeouts": TIMEOUTS,
    }
)

CLUSTER_CONFIGURATION = Obj(
    {
        **TYPE_META,
        "etcd": _obj(local=LOCAL_ETCD, external=EXTERNAL_ETCD),
        "networking": Obj(_leaves("serviceSubnet", "podSubnet", "dnsDomain")),
        "kubernetesVersion": LEAF,
        "controlPlaneEndpoint": LEAF,
        "apiServer": Obj({**CONTROL_PLANE_COMPONENT, "certSANs": LEAF}),
        "controllerManager": Obj(CONTROL_PLANE_COMPONENT),
        "scheduler": Obj(CONTROL_PLANE_COMPONENT),
        "dns": Obj({**IMAGE_META, "disabled": LEAF}),
        "proxy": _obj(disabled=LEAF),
        "certificatesDir": LEAF,
        "imageRepository": LEAF,
        "featureGates": LEAF,
        "clusterName": LEAF,
        "encryptionAlgorithm": LEAF,
        "certificateValidityPeriod": LEAF,
        "caCertificateValidityPeriod": LEAF,
    }
)

JOIN_CONFIGURATION = Obj(
    {
        **TYPE_META,
        "dryRun": LEAF,
        "nodeRegistration": NODE_REGISTRATION,
        "caCertPath": LEAF,
        "discovery": _obj(
            bootstrapToken=Obj(
                _leaves("token", "apiServerEndpoint", "caCertHashes", "unsafeSkipCAVerification")
            ),
            file=_obj(kubeConfigPath=LEAF),
            tlsBootstrapToken=LEAF,
        ),
        "controlPlane": _obj(localAPIEndpoint=API_ENDPOINT, certificateKey=LEAF),
        "skipPhases": LEAF,
        "patches": PATCHES,
        "timeouts": TIMEOUTS,
    }
)

# KubeletConfiguration: every top-level json tag. Nested structs are checked only where the renderer
# itself writes into them (authentication, authorization); the rest are leaves.
KUBELET_CONFIGURATION_FIELDS: tuple[str, ...] = (
    "enableServer",
    "staticPodPath",
    "podLogsDir",
    "syncFrequency",
    "fileCheckFrequency",
    "httpCheckFrequency",
    "staticPodURL",
    "staticPodURLHeader",
    "address",
    "port",
    "readOnlyPort",
    "tlsCertFile",
    "tlsPrivateKeyFile",
    "tlsCipherSuites",
    "tlsMinVersion",
    "rotateCertificates",
    "serverTLSBootstrap",
    "authentication",
    "authorization",
    "registryPullQPS",
    "registryBurst",
    "imagePullCredentialsVerificationPolicy",
    "preloadedImagesVerificationAllowlist",
    "eventRecordQPS",
    "eventBurst",
    "enableDebuggingHandlers",
    "enableContentionProfiling",
    "healthzPort",
    "healthzBindAddress",
    "oomScoreAdj",
    "clusterDomain",
    "clusterDNS",
    "streamingConnectionIdleTimeout",
    "nodeStatusUpdateFrequency",
    "nodeStatusReportFrequency",
    "nodeLeaseDurationSeconds",
    "imageMinimumGCAge",
    "imageMaximumGCAge",
    "imageGCHighThresholdPercent",
    "imageGCLowThresholdPercent",
    "volumeStatsAggPeriod",
    "kubeletCgroups",
    "systemCgroups",
    "cgroupRoot",
    "cgroupsPerQOS",
    "cgroupDriver",
    "cpuManagerPolicy",
    "singleProcessOOMKill",
    "cpuManagerPolicyOptions",
    "cpuManagerReconcilePeriod",
    "memoryManagerPolicy",
    "topologyManagerPolicy",
    "topologyManagerScope",
    "topologyManagerPolicyOptions",
    "qosReserved",
    "runtimeRequestTimeout",
    "hairpinMode",
    "maxPods",
    "podCIDR",
    "podPidsLimit",
    "resolvConf",
    "runOnce",
    "cpuCFSQuota",
    "cpuCFSQuotaPeriod",
    "nodeStatusMaxImages",
    "maxOpenFiles",
    "contentType",
    "kubeAPIQPS",
    "kubeAPIBurst",
    "serializeImagePulls",
    "maxParallelImagePulls",
    "evictionHard",
    "evictionSoft",
    "evictionSoftGracePeriod",
    "evictionPressureTransitionPeriod",
    "evictionMaxPodGracePeriod",
    "evictionMinimumReclaim",
    "mergeDefaultEvictionSettings",
    "podsPerCore",
    "enableControllerAttachDetach",
    "protectKernelDefaults",
    "makeIPTablesUtilChains",
    "iptablesMasqueradeBit",
    "iptablesDropBit",
    "featureGates",
    "failSwapOn",
    "memorySwap",
    "containerLogMaxSize",
    "containerLogMaxFiles",
    "containerLogMaxWorkers",
    "containerLogMonitorInterval",
    "configMapAndSecretChangeDetectionStrategy",
    "systemReserved",
    "kubeReserved",
    "reservedSystemCPUs",
    "showHiddenMetricsForVersion",
    "systemReservedCgroup",
    "kubeReservedCgroup",
    "enforceNodeAllocatable",
    "allowedUnsafeSysctls",
    "volumePluginDir",
    "providerID",
    "kernelMemcgNotification",
    "logging",
    "enableSystemLogHandler",
    "enableSystemLogQuery",
    "shutdownGracePeriod",
    "shutdownGracePeriodCriticalPods",
    "shutdownGracePeriodByPodPriority",
    "crashLoopBackOff",
    "reservedMemory",
    "enableProfilingHandler",
    "enableDebugFlagsHandler",
    "seccompDefault",
    "memoryThrottlingFactor",
    "registerWithTaints",
    "registerNode",
    "tracing",
    "localStorageCapacityIsolation",
    "containerRuntimeEndpoint",
    "imageServiceEndpoint",
    "failCgroupV1",
    "userNamespaces",
)

KUBELET_CONFIGURATION = Obj(
    {
        **TYPE_META,
        **_leaves(*KUBELET_CONFIGURATION_FIELDS),
        "authentication": _obj(
            x509=_obj(clientCAFile=LEAF),
            webhook=_obj(enabled=LEAF, cacheTTL=LEAF),
            anonymous=_obj(enabled=LEAF),
        ),
        "authorization": _obj(mode=LEAF, webhook=_obj(cacheAuthorizedTTL=LEAF, cacheUnauthorizedTTL=LEAF)),
    }
)

KINDS: Mapping[tuple[str, str], Obj] = {
    (KUBEADM_API, "InitConfiguration"): INIT_CONFIGURATION,
    (KUBEADM_API, "ClusterConfiguration"): CLUSTER_CONFIGURATION,
    (KUBEADM_API, "JoinConfiguration"): JOIN_CONFIGURATION,
    (KUBELET_API, "KubeletConfiguration"): KUBELET_CONFIGURATION,
}


def _walk(value: Any, schema: Schema, path: str, out: list[str]) -> None:
    if isinstance(schema, Leaf):
        return
    if isinstance(schema, ListOf):
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, schema.item, f"{path}[{i}]", out)
        return
    if not isinstance(value, Mapping):
        return  # wrong types are kubeadm's strict decoder's business; we only hunt unknown keys
    for key, item in value.items():
        where = f"{path}.{key}" if path else str(key)
        sub = schema.fields.get(key) if isinstance(key, str) else None
        if sub is None:
            out.append(where)
        else:
            _walk(item, sub, where, out)


def schema_for(doc: Mapping[str, Any]) -> Obj | None:
    return KINDS.get((str(doc.get("apiVersion")), str(doc.get("kind"))))


def unknown_fields(doc: Mapping[str, Any]) -> list[str]:
    """Dotted paths of keys the upstream types do not declare; ["kind"] for a kind we do not know."""
    schema = schema_for(doc)
    if schema is None:
        return ["kind"]
    out: list[str] = []
    _walk(doc, schema, "", out)
    return out
