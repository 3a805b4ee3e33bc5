"""kubeadm's own config documents (v1beta4 + KubeletConfiguration v1beta1), built as data.

The node runs `kubeadm init --config INIT_CONFIG_PATH` (first control plane) or
`kubeadm join --config JOIN_CONFIG_PATH` (everyone else but etcd-only members). Everything version-
dependent comes from `plan.info` / `node.kubelet_info` (builder.model.versions.MinorInfo).

Upstream facts relied on (see kubeadm-spec.md sections 2, 4 and 6):
- `kubeadm join --config` reads only the JoinConfiguration document: `documentMapToJoinConfiguration`
  (cmd/kubeadm/app/util/config/joinconfiguration.go) skips every other kind ("not interested in
  anything other than JoinConfiguration"), and the v1beta4 reference says "When executing kubeadm join
  with the --config option, the JoinConfiguration type should be provided". A joining node gets its
  KubeletConfiguration from the `kube-system/kubelet-config` ConfigMap that `kubeadm init` uploads, so
  the KubeletConfiguration document is written only into the init node's file.
- `kubeadm join` preflight (`JoinNodeChecks`, cmd/kubeadm/app/preflight/checks.go) does not look at
  /etc/kubernetes/manifests (the DirAvailable check went in k/k PR #104942, 1.23), and a joining
  control plane runs the init checks, which only look for kubeadm's own four manifests: the
  load-balancer static pods placed before `kubeadm join` need no ignored preflight check.
- The profile was validated when it was loaded (builder/validation/): feature gates, kubelet
  configuration fields, kubelet flags and labels are not checked again here.
- `nodeRegistration.taints` has no omitempty: absent means "kubeadm's control-plane taint", `[]` none.
- Join credentials (cluster.join). `certificate`: `discovery.file.kubeConfigPath` names the node's baked
  kubeconfig; kubeadm validates the server against its CA and, the file carrying credentials
  (`HasAuthenticationCredentials`), uses them for the TLS bootstrap (discovery.For in
  cmd/kubeadm/app/discovery/discovery.go); no tlsBootstrapToken. `kubeadm init` always creates the
  InitConfiguration's bootstrap tokens, and one random 24h token when none is listed
  (SetDefaults_BootstrapTokens), so the init node lists the bundle's token with a TTL of 1s: it is
  expired before anyone could use it, and kube-controller-manager's tokencleaner deletes it.
  `token`: token discovery pinned to the CA hash, the token also being the TLS bootstrap token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from .. import paths, yamlio
from ..errors import BakeError, Problem
from ..files import NodeFile, secret
from ..model import Arg, JoinCredential, Role, kubeadm_schema, versions
from ..model.syntax import duration_seconds
from ..pki import encryption
from ..plan import API_PORT, ClusterPlan, NodePlan, Topology, images
from ..validation.profile import deep_merge

INIT_CONFIG_PATH = "/run/kubeadm/kubeadm.yaml"
JOIN_CONFIG_PATH = "/run/kubeadm/kubeadm-join-config.yaml"

KUBEADM_API = kubeadm_schema.KUBEADM_API
KUBELET_API = kubeadm_schema.KUBELET_API

PKI_DIR = paths.PKI_DIR
MANIFESTS_DIR = paths.MANIFESTS_DIR
ETCD_CA_FILE = f"{paths.ETCD_PKI_DIR}/ca.crt"
APISERVER_ETCD_CLIENT_CERT = f"{PKI_DIR}/apiserver-etcd-client.crt"
APISERVER_ETCD_CLIENT_KEY = f"{PKI_DIR}/apiserver-etcd-client.key"

# kubeadm's defaults for a bootstrap token (cmd/kubeadm/app/apis/bootstraptoken/v1 defaults.go).
TOKEN_USAGES = ("signing", "authentication")
TOKEN_GROUPS = ("system:bootstrappers:kubeadm:default-node-token",)
# cluster.join: certificate: the TTL of the one token kubeadm init insists on creating (see above).
# 0 would mean "never expires" to kubeadm; 1s is the shortest TTL it can express.
INERT_TOKEN_TTL = "1s"
DISCOVERY_TIMEOUT = "5m0s"  # kubeadm's default, written out so a join never waits longer
CONTROL_PLANE_HEALTH_CHECK_SECONDS = 240  # kubeadm's default controlPlaneComponentHealthCheck (4m)
# The v1beta4 `timeouts` each command reads (cluster.kubeadmTimeouts): init waits for the kubelet, the
# control plane, the API and etcd; a join also discovers the cluster and TLS-bootstraps its kubelet.
INIT_TIMEOUTS = ("controlPlaneComponentHealthCheck", "kubeletHealthCheck", "kubernetesAPICall", "etcdAPICall")
JOIN_TIMEOUTS = (*INIT_TIMEOUTS, "tlsBootstrap", "discovery")
LOCAL_MODE_GATE = "ControlPlaneKubeletLocalMode"

TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}\Z")
CA_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")


# --------------------------------------------------------------------------------------------------
# small helpers


def go_duration(seconds: int) -> str:
    """Format like Go's time.Duration.String(): 8760h0m0s, 1h30m0s, 5m0s, 30s, 0s."""
    if seconds == 0:
        return "0s"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def go_duration_text(text: str) -> str:
    """A profile duration ("8760h", "24h0m0s") in the form kubeadm writes back."""
    return go_duration(duration_seconds(text))


def timeouts(plan: ClusterPlan, keys: Sequence[str]) -> dict[str, str]:
    """The profile's kubeadm timeouts among `keys`, in kubeadm's duration form."""
    chosen = plan.settings.kubeadm_timeouts.model_dump(by_alias=True, exclude_none=True)
    return {k: go_duration_text(chosen[k]) for k in keys if k in chosen}


def control_plane_health_check_seconds(plan: ClusterPlan) -> int:
    """What kubeadm sizes its static pods' startup probes by (staticpod.StartupProbe)."""
    chosen = plan.settings.kubeadm_timeouts.control_plane_component_health_check
    return CONTROL_PLANE_HEALTH_CHECK_SECONDS if chosen is None else duration_seconds(chosen)


def args_list(args: Iterable[Arg]) -> list[dict[str, str]]:
    return [{"name": a.name, "value": a.value} for a in args]


def _node_index(plan: ClusterPlan, node: NodePlan) -> int:
    return plan.position(node.name)


def check_token(token: str) -> None:
    if not TOKEN_RE.match(token):
        raise BakeError([Problem("token", "a bootstrap token looks like abcdef.0123456789abcdef")])


def check_ca_hash(ca_hash: str) -> None:
    if not CA_HASH_RE.match(ca_hash):
        raise BakeError([Problem("caCertHash", "expected sha256:<64 lower-case hex digits>")])


# --------------------------------------------------------------------------------------------------
# ClusterConfiguration


def _cert_sans(plan: ClusterPlan) -> list[str]:
    """Endpoint host and load-balancer VIP first (kubeadm adds the endpoint too), then the profile's."""
    sans: list[str] = []
    if plan.endpoint is not None:
        sans.append(plan.endpoint.host)
    vip = plan.settings.load_balancer.vip
    if vip is not None:
        sans.append(str(vip))
    sans.extend(plan.settings.api_server.cert_sans)
    return list(dict.fromkeys(sans))


def feature_gates(plan: ClusterPlan) -> dict[str, bool]:
    """The profile's kubeadm feature gates (validated against this minor at load), plus the ones bake needs.

    ControlPlaneKubeletLocalMode is switched on where it exists but is off by default (alpha: 1.31,
    1.32), as Cluster API does for >= 1.31: a control plane's kubelet then talks to its own
    kube-apiserver instead of the load-balanced endpoint that may not be up yet. From beta on it is
    the default and naming it is noise (and an error once the gate is removed).
    """
    gates = dict(plan.settings.feature_gates)
    if plan.control_planes and plan.info.gate_state(LOCAL_MODE_GATE) == versions.ALPHA:
        gates.setdefault(LOCAL_MODE_GATE, True)
    return dict(sorted(gates.items()))


def _etcd(plan: ClusterPlan) -> dict[str, Any]:
    e = plan.settings.etcd
    if plan.topology is Topology.STACKED:
        local: dict[str, Any] = dict(images.kubeadm_image_overrides(plan).get(images.ETCD, {}))
        local["dataDir"] = e.data_dir
        if e.server_cert_sans:
            local["serverCertSANs"] = list(e.server_cert_sans)
        if e.peer_cert_sans:
            local["peerCertSANs"] = list(e.peer_cert_sans)
        if e.extra_args:
            local["extraArgs"] = args_list(e.extra_args)
        return {"local": local}
    return {
        "external": {
            "endpoints": list(plan.etcd_client_urls),
            "caFile": ETCD_CA_FILE,
            "certFile": APISERVER_ETCD_CLIENT_CERT,
            "keyFile": APISERVER_ETCD_CLIENT_KEY,
        }
    }


def _component(args: Sequence[Arg]) -> dict[str, Any]:
    return {"extraArgs": args_list(args)} if args else {}


def cluster_configuration(plan: ClusterPlan) -> dict[str, Any]:
    s = plan.settings
    if not plan.control_planes:
        raise BakeError([Problem("nodes", "a ClusterConfiguration needs a control plane")])
    doc: dict[str, Any] = {
        "apiVersion": KUBEADM_API,
        "kind": "ClusterConfiguration",
        "clusterName": plan.name,
        "kubernetesVersion": f"v{plan.version}",
    }
    if plan.endpoint is not None:
        doc["controlPlaneEndpoint"] = plan.endpoint.hostport
    doc["certificatesDir"] = PKI_DIR
    doc["imageRepository"] = s.image_repository
    doc["networking"] = {
        "serviceSubnet": s.service_subnet,
        "podSubnet": s.pod_subnet,
        "dnsDomain": s.dns_domain,
    }
    api_server: dict[str, Any] = {"certSANs": _cert_sans(plan)}
    api_server.update(_component(s.api_server.extra_args))
    enc_args, enc_volumes = encryption.apiserver_settings(s.secrets_encryption)
    if enc_args:
        api_server["extraArgs"] = [*api_server.get("extraArgs", []), *enc_args]
        api_server["extraVolumes"] = enc_volumes
    doc["apiServer"] = api_server
    for key, comp in (("controllerManager", s.controller_manager), ("scheduler", s.scheduler)):
        if comp.extra_args:
            doc[key] = _component(comp.extra_args)
    doc["etcd"] = _etcd(plan)
    doc["dns"] = {**images.kubeadm_image_overrides(plan).get(images.COREDNS, {}), "disabled": False}
    doc["proxy"] = {"disabled": False}
    doc["encryptionAlgorithm"] = s.encryption_algorithm
    doc["certificateValidityPeriod"] = go_duration_text(s.certificate_validity_period)
    doc["caCertificateValidityPeriod"] = go_duration_text(s.ca_certificate_validity_period)
    gates = feature_gates(plan)
    if gates:
        doc["featureGates"] = gates
    return doc


# --------------------------------------------------------------------------------------------------
# KubeletConfiguration


def _kubelet_defaults(plan: ClusterPlan) -> dict[str, Any]:
    """What bake sets; kubeadm's componentconfigs/kubelet.go Default() agrees on every value."""
    return {
        "apiVersion": KUBELET_API,
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": f"{PKI_DIR}/ca.crt"},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "systemd",
        "clusterDNS": [str(plan.cluster_dns_ip)],
        "clusterDomain": plan.settings.dns_domain,
        "containerRuntimeEndpoint": plan.cri_socket,
        "rotateCertificates": True,
        "staticPodPath": MANIFESTS_DIR,
    }


def kubelet_configuration(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    """The cluster-wide KubeletConfiguration (cluster.kubelet.config merged over bake's defaults).

    kubeadm uploads it to `kube-system/kubelet-config` and every joining kubelet downloads that, so it
    is the same for every node: `node.kubelet_version` only changes the node's packages and flags, not
    this document. `node` is the node whose config file carries it (the init node).
    """
    del node  # same document for every node; see above
    merged = deep_merge(_kubelet_defaults(plan), dict(plan.settings.kubelet.config))
    assert isinstance(merged, dict)
    return merged


# --------------------------------------------------------------------------------------------------
# InitConfiguration / JoinConfiguration


def kubelet_extra_args(plan: ClusterPlan, node: NodePlan) -> list[dict[str, str]]:
    """node-ip always, then cluster.kubelet.extraArgs, the node's own (which win by name), node-labels."""
    cluster_args = plan.settings.kubelet.extra_args
    node_args = node.kubelet_extra_args
    own = {a.name for a in node_args}
    out = [{"name": "node-ip", "value": str(node.ip)}]
    out += args_list(a for a in cluster_args if a.name not in own)
    out += args_list(node_args)
    if node.labels:
        out.append({"name": "node-labels", "value": ",".join(f"{k}={v}" for k, v in node.labels)})
    return out


def node_registration(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    reg: dict[str, Any] = {"name": node.name, "criSocket": plan.cri_socket}
    if node.is_control_plane and plan.settings.allow_scheduling_on_control_planes:
        reg["taints"] = []  # no omitempty upstream: [] removes the control-plane taint, absent keeps it
    reg["kubeletExtraArgs"] = kubelet_extra_args(plan, node)
    return reg


def _local_api_endpoint(node: NodePlan) -> dict[str, Any]:
    return {"advertiseAddress": str(node.ip), "bindPort": API_PORT}


def init_configuration(plan: ClusterPlan, node: NodePlan, token: str) -> dict[str, Any]:
    check_token(token)
    if not node.is_init:
        raise BakeError(
            [Problem(f"nodes[{_node_index(plan, node)}]", f"{node.name} does not run kubeadm init")]
        )
    ttl = plan.settings.token_ttl if joins_with_token(plan) else INERT_TOKEN_TTL
    doc: dict[str, Any] = {
        "apiVersion": KUBEADM_API,
        "kind": "InitConfiguration",
        "bootstrapTokens": [
            {
                "token": token,
                "ttl": go_duration_text(ttl),
                "usages": list(TOKEN_USAGES),
                "groups": list(TOKEN_GROUPS),
            }
        ],
        "nodeRegistration": node_registration(plan, node),
        "localAPIEndpoint": _local_api_endpoint(node),
    }
    chosen = timeouts(plan, INIT_TIMEOUTS)
    if chosen:
        doc["timeouts"] = chosen
    return doc


def joins_with_token(plan: ClusterPlan) -> bool:
    return plan.settings.join is JoinCredential.TOKEN


def discovery(plan: ClusterPlan, token: str, ca_hash: str) -> dict[str, Any]:
    """The JoinConfiguration's discovery: the node's own credential file, or the shared token."""
    if not joins_with_token(plan):
        return {"file": {"kubeConfigPath": paths.JOIN_KUBECONFIG}}
    check_token(token)
    check_ca_hash(ca_hash)
    return {
        "bootstrapToken": {
            "apiServerEndpoint": plan.api_endpoint().hostport,
            "token": token,
            "caCertHashes": [ca_hash],
        }
    }


def join_configuration(plan: ClusterPlan, node: NodePlan, token: str, ca_hash: str) -> dict[str, Any]:
    if node.role is Role.ETCD or node.is_init:
        raise BakeError(
            [Problem(f"nodes[{_node_index(plan, node)}]", f"{node.name} does not run kubeadm join")]
        )
    doc: dict[str, Any] = {
        "apiVersion": KUBEADM_API,
        "kind": "JoinConfiguration",
        "nodeRegistration": node_registration(plan, node),
        "discovery": discovery(plan, token, ca_hash),
    }
    if node.is_control_plane:
        # No certificateKey: ca, sa, front-proxy-ca (and etcd-ca when stacked) are pre-placed on disk.
        doc["controlPlane"] = {"localAPIEndpoint": _local_api_endpoint(node)}
    chosen = timeouts(plan, JOIN_TIMEOUTS)
    chosen.setdefault("discovery", DISCOVERY_TIMEOUT)
    doc["timeouts"] = chosen
    return doc


# --------------------------------------------------------------------------------------------------
# files


def config_documents(plan: ClusterPlan, node: NodePlan, token: str, ca_hash: str) -> list[dict[str, Any]]:
    """The documents of the node's kubeadm config file, in file order; [] for etcd-only members."""
    if node.role is Role.ETCD:
        return []
    if node.is_init:
        return [
            init_configuration(plan, node, token),
            cluster_configuration(plan),
            kubelet_configuration(plan, node),
        ]
    return [join_configuration(plan, node, token, ca_hash)]


def node_config_files(plan: ClusterPlan, node: NodePlan, token: str, ca_hash: str) -> list[NodeFile]:
    docs = config_documents(plan, node, token, ca_hash)
    if not docs:
        return []
    bad = [f"{d['kind']}.{p}" for d in docs for p in kubeadm_schema.unknown_fields(d)]
    if bad:  # a renderer bug, never the user's: fail loudly rather than let kubeadm drop the field
        raise AssertionError(f"unknown kubeadm config fields: {bad}")
    path = INIT_CONFIG_PATH if node.is_init else JOIN_CONFIG_PATH
    return [secret(path, yamlio.dump_all(docs).encode())]
