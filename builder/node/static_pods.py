"""Static pods bake writes itself: external etcd members and the control-plane load balancer.

For stacked control planes kubeadm writes etcd, kube-apiserver, kube-controller-manager and
kube-scheduler itself; bake never renders those.

Sources:
- etcd: kubeadm's `phases/etcd/local.go` / `util/staticpod/utils.go` as described in kubeadm-spec.md
  5.1 and 5.5, with the whole static `--initial-cluster` and `--initial-cluster-state=new` that the
  HA external-etcd guide passes as extraArgs (ahead of the profile's extraArgs). Flag order follows
  `ArgumentsToCommand` (cmd/kubeadm/app/util/arguments.go): defaults overridden by name, then
  everything sorted by name and value; from k/k PR #135400 (1.36, backported to late 1.32 - 1.35
  patches) only the defaults are sorted and the extraArgs follow them in their own order
  (MinorInfo.extra_args_user_order_kept), so the pod is the one `kubeadm init phase etcd local` writes
  for the guide's config.
  Keys are written sorted, as Go's sigs.k8s.io/yaml does for kubeadm's own manifests.
- kube-vip: kube-vip `pkg/kubevip/config_generator.go` (`manifest pod --arp --controlplane
  --leaderElection`) as mirrored for v1.0.3 by kubernetes-sigs/kubespray
  `roles/kubernetes/node/templates/manifests/kube-vip.manifest.j2`; `vip_cidr` became `vip_subnet`
  in kube-vip 0.9.0 and `vip_address` is deprecated in favour of `address` (config_envvar.go).
  kube-vip issue #684: from Kubernetes 1.29 `admin.conf` has no rights until kubeadm init has created
  the `kubeadm:cluster-admins` binding, so the init node mounts `super-admin.conf` (which only
  `kubeadm init` writes) at the path kube-vip reads, `/etc/kubernetes/admin.conf`.
- haproxy / keepalived: kubernetes/kubeadm `docs/ha-considerations.md` ("Option 2: Run the services
  as static pods"), with keepalived image 2.0.20 (kubernetes/kubeadm issue #2478: older osixia
  images lack the curl the check script needs).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .. import paths, resources, yamlio
from ..files import NodeFile, public
from ..model import Arg, LoadBalancerKind, Role
from ..model.syntax import IPAddress
from ..plan import API_PORT, ClusterPlan, NodePlan, StaticPod, Topology, bracket, host_port, images
from .kubeadm_config import control_plane_health_check_seconds

# Upstream references of the load balancers' images (builder.plan.images pins them and applies
# cluster.imageRepository and cluster.images to them).
KUBE_VIP_IMAGE = images.KUBE_VIP.upstream_ref
HAPROXY_IMAGE = images.HAPROXY.upstream_ref
KEEPALIVED_IMAGE = images.KEEPALIVED.upstream_ref

ETCD_PKI = paths.ETCD_PKI_DIR
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_METRICS_PORT = 2381
PROBE_PORT_NAME = "probe-port"
NODE_CRITICAL_PRIORITY = 2000001000

MANIFEST_MODE = 0o600  # kubeadm writes manifests 0600 into a 0700 directory
HAPROXY_CFG_PATH = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF_PATH = "/etc/keepalived/keepalived.conf"
CHECK_SCRIPT_PATH = "/etc/keepalived/check_apiserver.sh"
KUBE_VIP_KUBECONFIG_MOUNT = paths.ADMIN_CONF  # where kube-vip reads its kubeconfig, whichever file it is
KUBE_VIP_LEASE = "plndr-cp-lock"

# Template values must match these before they reach a template, so no value can add a line, a
# block or a shell word: a config's structure comes from the template only.
_SAFE = {
    "name": re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"),
    "interface": re.compile(r"^[A-Za-z0-9_.-]{1,15}$"),
    "address": re.compile(r"^[0-9A-Fa-f:.]{2,45}$"),
    "hex": re.compile(r"^[0-9a-f]{1,16}$"),
}


# --------------------------------------------------------------------------------------------------
# helpers


def _sorted(value: Any) -> Any:
    """Mapping keys sorted at every level (lists keep their order), like Go's YAML marshalling."""
    if isinstance(value, Mapping):
        return _sorted_mapping(value)
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _sorted_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _sorted(value[k]) for k in sorted(value)}


def arguments_to_command(
    base: Sequence[tuple[str, str]], overrides: Sequence[Arg], *, user_order_kept: bool
) -> list[str]:
    """kubeadm's ArgumentsToCommand: a user arg replaces every default of the same name.

    Before k/k PR #135400 everything is sorted by name, then value. After it only the defaults are
    sorted and the user's args follow them in their own order ("In the return list, base arguments
    will precede override arguments", cmd/kubeadm/app/util/arguments.go @ v1.37.2).
    """
    names = {a.name for a in overrides}
    kept = sorted((n, v) for n, v in base if n not in names)
    user = [(a.name, a.value) for a in overrides]
    args = [*kept, *user] if user_order_kept else sorted([*user, *kept])
    return [f"--{n}={v}" for n, v in args]


def _probe(
    host: str, path: str, port: int | str, scheme: str, kind: str, startup_threshold: int
) -> dict[str, Any]:
    """staticpodutil.{Liveness,Readiness,Startup}Probe (kubeadm-spec.md 5.1): zero fields omitted."""
    probe: dict[str, Any] = {"httpGet": {"host": host, "path": path, "port": port, "scheme": scheme}}
    probe["timeoutSeconds"] = 15
    if kind == "liveness":
        probe.update(initialDelaySeconds=10, periodSeconds=10, failureThreshold=8)
    elif kind == "readiness":
        probe.update(periodSeconds=1, failureThreshold=3)
    else:
        probe.update(initialDelaySeconds=10, periodSeconds=10, failureThreshold=startup_threshold)
    return probe


def _pod(name: str, container: dict[str, Any], volumes: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """kubeadm's ComponentPod frame: kube-system, host network, node-critical, RuntimeDefault seccomp."""
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "hostNetwork": True,
        "priority": NODE_CRITICAL_PRIORITY,
        "priorityClassName": "system-node-critical",
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": volumes,
        **spec,
    }
    return _sorted_mapping(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "labels": {"component": name, "tier": "control-plane"},
                "name": name,
                "namespace": "kube-system",
            },
            "spec": pod_spec,
        }
    )


def _host_path_volume(name: str, path: str, type_: str) -> dict[str, Any]:
    return {"hostPath": {"path": path, "type": type_}, "name": name}


def _safe(kind: str, value: object, path: str) -> str:
    """Defence in depth: builder.validation refuses such values at load, so a miss here is a bug."""
    text = str(value)
    if not _SAFE[kind].match(text):
        raise AssertionError(f"{path}: {text!r} cannot be written into a load-balancer config")
    return text


# --------------------------------------------------------------------------------------------------
# etcd (external members)


def _etcd_probe_endpoint(listen_metrics_urls: str) -> tuple[str, int, str]:
    """GetEtcdProbeEndpoint: host, port and scheme of the first listen-metrics-urls entry."""
    first = urlsplit(listen_metrics_urls.split(",")[0])
    host = first.hostname or "127.0.0.1"
    return host, first.port or ETCD_METRICS_PORT, (first.scheme or "http").upper()


etcd_probe_endpoint = _etcd_probe_endpoint
"""For the renewal script's health check of a restarted etcd (builder.node.renewal)."""


def etcd_pod(plan: ClusterPlan, member: NodePlan) -> dict[str, Any]:
    """kubeadm's etcd static pod for a member of an external etcd cluster, all members known up front."""
    if plan.topology is Topology.STACKED or member.role is not Role.ETCD:
        raise ValueError(f"{member.name}: kubeadm itself writes the etcd pod of a stacked control plane")
    info, s = plan.info, plan.settings
    localhost = "::1" if member.ip.version == 6 else "127.0.0.1"
    client_url = member.url(ETCD_CLIENT_PORT)
    peer_url = member.url(ETCD_PEER_PORT)
    data_dir = s.etcd.data_dir
    base = [
        ("advertise-client-urls", client_url),
        ("cert-file", f"{ETCD_PKI}/server.crt"),
        ("client-cert-auth", "true"),
        ("data-dir", data_dir),
        ("initial-advertise-peer-urls", peer_url),
        ("key-file", f"{ETCD_PKI}/server.key"),
        ("listen-client-urls", f"https://{host_port(localhost, ETCD_CLIENT_PORT)},{client_url}"),
        ("listen-metrics-urls", f"http://{host_port(localhost, ETCD_METRICS_PORT)}"),
        ("listen-peer-urls", peer_url),
        ("name", member.name),
        ("peer-cert-file", f"{ETCD_PKI}/peer.crt"),
        ("peer-client-cert-auth", "true"),
        ("peer-key-file", f"{ETCD_PKI}/peer.key"),
        ("peer-trusted-ca-file", f"{ETCD_PKI}/ca.crt"),
        ("snapshot-count", "10000"),
        ("trusted-ca-file", f"{ETCD_PKI}/ca.crt"),
    ]
    if info.etcd_36_flags:
        base += [("feature-gates", "InitialCorruptCheck=true"), ("watch-progress-notify-interval", "5s")]
    else:
        base += [
            ("experimental-initial-corrupt-check", "true"),
            ("experimental-watch-progress-notify-interval", "5s"),
        ]
    extra = s.etcd.extra_args
    user_names = {a.name for a in extra}
    guide = [  # the guide's extraArgs, unless the profile's own extraArgs name them
        Arg(name=n, value=v)
        for n, v in (("initial-cluster", plan.etcd_initial_cluster), ("initial-cluster-state", "new"))
        if n not in user_names
    ]
    overrides = [*guide, *extra]
    kept = info.extra_args_user_order_kept
    command = ["etcd", *arguments_to_command(base, overrides, user_order_kept=kept)]

    metrics = next(
        (a.value for a in extra if a.name == "listen-metrics-urls"), dict(base)["listen-metrics-urls"]
    )
    probe_host, probe_port, probe_scheme = _etcd_probe_endpoint(metrics)
    port: int | str = PROBE_PORT_NAME if info.named_probe_port else probe_port
    startup = -(-control_plane_health_check_seconds(plan) // 10)
    container: dict[str, Any] = {
        "command": command,
        "image": images.etcd_image(plan),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": _probe(probe_host, "/livez", port, probe_scheme, "liveness", startup),
        "name": "etcd",
        "readinessProbe": _probe(probe_host, "/readyz", port, probe_scheme, "readiness", startup),
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
        "startupProbe": _probe(probe_host, "/readyz", port, probe_scheme, "startup", startup),
        "volumeMounts": [  # kubeadm keeps this order (data first), unlike the sorted volumes
            {"mountPath": data_dir, "name": "etcd-data"},
            {"mountPath": ETCD_PKI, "name": "etcd-certs"},
        ],
    }
    if info.named_probe_port:
        container["ports"] = [{"containerPort": probe_port, "name": PROBE_PORT_NAME, "protocol": "TCP"}]
    volumes = [
        _host_path_volume("etcd-certs", ETCD_PKI, "DirectoryOrCreate"),
        _host_path_volume("etcd-data", data_dir, "DirectoryOrCreate"),
    ]
    pod = _pod("etcd", container, volumes)
    pod["metadata"]["annotations"] = {"kubeadm.kubernetes.io/etcd.advertise-client-urls": client_url}
    return _sorted_mapping(pod)


# --------------------------------------------------------------------------------------------------
# kube-vip


def _lb(plan: ClusterPlan, kind: LoadBalancerKind) -> IPAddress:
    lb = plan.settings.load_balancer
    if lb.kind is not kind or lb.vip is None:
        raise ValueError(f"cluster.loadBalancer is {lb.kind.value}, not {kind.value} with a vip")
    return lb.vip


def kube_vip_pod(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    """kube-vip in ARP mode holding the control-plane VIP on port 6443, with leader election."""
    vip = _lb(plan, LoadBalancerKind.KUBE_VIP)
    if not node.is_control_plane:
        raise ValueError(f"{node.name} is not a control plane")
    lb = plan.settings.load_balancer
    env = [
        ("vip_arp", "true"),
        ("port", str(API_PORT)),
        ("vip_nodename", node.name),
        ("vip_interface", lb.interface),
        ("vip_subnet", "128" if vip.version == 6 else "32"),
        ("cp_enable", "true"),
        ("cp_namespace", "kube-system"),
        ("svc_enable", "false"),
        ("vip_leaderelection", "true"),
        ("vip_leasename", KUBE_VIP_LEASE),
        ("vip_leaseduration", "5"),
        ("vip_renewdeadline", "3"),
        ("vip_retryperiod", "1"),
        ("address", str(vip)),
    ]
    container = {
        "args": ["manager"],
        "env": [{"name": n, "value": v} for n, v in env],
        "image": images.third_party_image(plan, images.KUBE_VIP),
        "imagePullPolicy": "IfNotPresent",
        "name": "kube-vip",
        "resources": {},
        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}},
        "volumeMounts": [{"mountPath": KUBE_VIP_KUBECONFIG_MOUNT, "name": "kubeconfig", "readOnly": True}],
    }
    # type File: never let the runtime create a directory where kubeadm is about to write a kubeconfig.
    assert node.kube_vip_kubeconfig is not None, "the plan gives every control plane with kube-vip one"
    volumes = [_host_path_volume("kubeconfig", node.kube_vip_kubeconfig, "File")]
    # kube-vip talks to https://kubernetes:6443, i.e. the local kube-apiserver, never to its own VIP.
    return _pod(
        "kube-vip", container, volumes, hostAliases=[{"hostnames": ["kubernetes"], "ip": "127.0.0.1"}]
    )


# --------------------------------------------------------------------------------------------------
# haproxy + keepalived


def _loopback(plan: ClusterPlan) -> str:
    return "::1" if plan.ipv6 else "127.0.0.1"


def _check_port(plan: ClusterPlan) -> int:
    """haproxy's frontend port (validated at load: >= 1024 and not 6443, builder/validation/)."""
    return plan.settings.load_balancer.port


def haproxy_pod(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    _lb(plan, LoadBalancerKind.HAPROXY_KEEPALIVED)
    if not node.is_control_plane:
        raise ValueError(f"{node.name} is not a control plane")
    port = _check_port(plan)
    container = {
        "image": images.third_party_image(plan, images.HAPROXY),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": {
            "failureThreshold": 8,
            "httpGet": {"host": _loopback(plan), "path": "/healthz", "port": port, "scheme": "HTTPS"},
        },
        "name": "haproxy",
        "resources": {},
        "volumeMounts": [
            {"mountPath": "/usr/local/etc/haproxy/haproxy.cfg", "name": "haproxyconf", "readOnly": True}
        ],
    }
    volumes = [_host_path_volume("haproxyconf", HAPROXY_CFG_PATH, "File")]
    return _pod("haproxy", container, volumes)


def keepalived_pod(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    _lb(plan, LoadBalancerKind.HAPROXY_KEEPALIVED)
    if not node.is_control_plane:
        raise ValueError(f"{node.name} is not a control plane")
    container = {
        "image": images.third_party_image(plan, images.KEEPALIVED),
        "imagePullPolicy": "IfNotPresent",
        "name": "keepalived",
        "resources": {},
        "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_BROADCAST", "NET_RAW"]}},
        "volumeMounts": [
            {"mountPath": "/usr/local/etc/keepalived/keepalived.conf", "name": "config"},
            {"mountPath": CHECK_SCRIPT_PATH, "name": "check"},
        ],
    }
    volumes = [
        _host_path_volume("check", CHECK_SCRIPT_PATH, "File"),
        _host_path_volume("config", KEEPALIVED_CONF_PATH, "File"),
    ]
    return _pod("keepalived", container, volumes)


def _render(name: str, **values: Any) -> str:
    return resources.templates().get_template(name).render(**values)


def _cp_path(plan: ClusterPlan, node: NodePlan, field: str) -> str:
    return f"nodes[{plan.position(node.name)}].{field}"


def haproxy_cfg(plan: ClusterPlan) -> str:
    vip = _lb(plan, LoadBalancerKind.HAPROXY_KEEPALIVED)
    port = _check_port(plan)
    servers = [
        {
            "name": _safe("name", cp.name, _cp_path(plan, cp, "name")),
            # haproxy takes the last ':' as the port separator, so IPv6 needs no brackets
            "address": f"{_safe('address', cp.ip, _cp_path(plan, cp, 'ip'))}:{API_PORT}",
        }
        for cp in plan.control_planes
    ]
    return _render(
        "haproxy.cfg.j2",
        cluster=_safe("name", plan.name, "cluster.name"),
        bind=f":::{port} v4v6" if vip.version == 6 else f"*:{port}",
        servers=servers,
    )


def _digest(plan: ClusterPlan, purpose: str) -> bytes:
    return hashlib.sha256(f"bake:{purpose}:{plan.name}".encode()).digest()


def vrrp_router_id(plan: ClusterPlan) -> int:
    """Same on every control plane, different between clusters sharing a subnet (1 - 255)."""
    return 1 + int.from_bytes(_digest(plan, "vrrp-router-id")[:4], "big") % 255


def keepalived_conf(plan: ClusterPlan, node: NodePlan) -> str:
    """VRRP: control plane 0 starts as MASTER; priorities fall with the index and a failing check drops
    a node below every healthy one (weight -N; the HA doc's fixed -2 only works for two nodes)."""
    vip = _lb(plan, LoadBalancerKind.HAPROXY_KEEPALIVED)
    if not node.is_control_plane:
        raise ValueError(f"{node.name} is not a control plane")
    cps = plan.control_planes  # at most validation.MAX_KEEPALIVED_CONTROL_PLANES
    lb = plan.settings.load_balancer
    index = cps.index(node)
    v6 = vip.version == 6
    return _render(
        "keepalived.conf.j2",
        cluster=_safe("name", plan.name, "cluster.name"),
        router_id=_safe("name", node.name, _cp_path(plan, node, "name")),
        state="MASTER" if index == 0 else "BACKUP",
        interface=_safe("interface", lb.interface, "cluster.loadBalancer.interface"),
        virtual_router_id=vrrp_router_id(plan),
        priority=100 + (len(cps) - 1 - index),
        weight=-len(cps),
        # VRRPv3 (IPv6) has no authentication; for v4 the PASS is a cluster-derived constant, not a secret.
        auth_pass=None if v6 else _safe("hex", _digest(plan, "vrrp-auth").hex()[:8], "cluster.name"),
        vip=_safe("address", vip, "cluster.loadBalancer.vip"),
        src_ip=_safe("address", node.ip, _cp_path(plan, node, "ip")),
        peers=[_safe("address", cp.ip, _cp_path(plan, cp, "ip")) for cp in cps if cp is not node],
        script=CHECK_SCRIPT_PATH,
    )


def check_apiserver_sh(plan: ClusterPlan) -> str:
    vip = _lb(plan, LoadBalancerKind.HAPROXY_KEEPALIVED)
    return _render(
        "check_apiserver.sh.j2",
        vip=_safe("address", vip, "cluster.loadBalancer.vip"),
        vip_host=bracket(_safe("address", vip, "cluster.loadBalancer.vip")),
        local_host=bracket(_loopback(plan)),
        port=_check_port(plan),
    )


# --------------------------------------------------------------------------------------------------
# which node gets what


def _manifest(pod: StaticPod, content: dict[str, Any]) -> NodeFile:
    return public(paths.manifest(pod.value), yamlio.dump(content), mode=MANIFEST_MODE)


def node_static_pod_files(plan: ClusterPlan, node: NodePlan) -> list[NodeFile]:
    """The manifests of the static pods the plan gives the node (NodePlan.static_pods), then their configs."""
    pods = {
        StaticPod.ETCD: etcd_pod,
        StaticPod.KUBE_VIP: kube_vip_pod,
        StaticPod.HAPROXY: haproxy_pod,
        StaticPod.KEEPALIVED: keepalived_pod,
    }
    files = [_manifest(pod, pods[pod](plan, node)) for pod in node.static_pods]
    if StaticPod.HAPROXY in node.static_pods:
        files.append(public(HAPROXY_CFG_PATH, haproxy_cfg(plan)))
    if StaticPod.KEEPALIVED in node.static_pods:
        files += [
            public(KEEPALIVED_CONF_PATH, keepalived_conf(plan, node), mode=0o600),
            public(CHECK_SCRIPT_PATH, check_apiserver_sh(plan), mode=0o755),
        ]
    return files
