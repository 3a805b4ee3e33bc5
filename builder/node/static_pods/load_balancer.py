"""The control-plane load balancer as static pods: kube-vip, or haproxy and keepalived with their configs.

Sources:
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
from typing import Any

from ... import paths, resources
from ...model import LoadBalancerKind
from ...model.syntax import IPAddress
from ...plan import API_PORT, ClusterPlan, NodePlan, bracket, images
from .frame import component_pod, host_path_volume

HAPROXY_CFG_PATH = "/etc/haproxy/haproxy.cfg"
KEEPALIVED_CONF_PATH = "/etc/keepalived/keepalived.conf"
CHECK_SCRIPT_PATH = "/etc/keepalived/check_apiserver.sh"
KUBE_VIP_KUBECONFIG_MOUNT = paths.ADMIN_CONF  # where kube-vip reads its kubeconfig, whichever file it is
KUBE_VIP_LEASE = "plndr-cp-lock"

# Template values must match these before they reach a template, so no value can add a line, a
# block or a shell word: a config's structure comes from the template only. `\Z`, not `$`, which
# also matches before a final newline.
_SAFE = {
    "name": re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z"),
    "interface": re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z"),
    "address": re.compile(r"^[0-9A-Fa-f:.]{2,45}\Z"),
    "hex": re.compile(r"^[0-9a-f]{1,16}\Z"),
}


def _safe(kind: str, value: object, path: str) -> str:
    """Defence in depth: builder.validation refuses such values at load, so a miss here is a bug."""
    text = str(value)
    if not _SAFE[kind].match(text):
        raise AssertionError(f"{path}: {text!r} cannot be written into a load-balancer config")
    return text


def _lb(plan: ClusterPlan, kind: LoadBalancerKind) -> IPAddress:
    lb = plan.settings.load_balancer
    if lb.kind is not kind or lb.vip is None:
        raise ValueError(f"cluster.loadBalancer is {lb.kind.value}, not {kind.value} with a vip")
    return lb.vip


# --------------------------------------------------------------------------------------------------
# kube-vip


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
    volumes = [host_path_volume("kubeconfig", node.kube_vip_kubeconfig, "File")]
    # kube-vip talks to https://kubernetes:6443, i.e. the local kube-apiserver, never to its own VIP.
    return component_pod(
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
    volumes = [host_path_volume("haproxyconf", HAPROXY_CFG_PATH, "File")]
    return component_pod("haproxy", container, volumes)


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
        host_path_volume("check", CHECK_SCRIPT_PATH, "File"),
        host_path_volume("config", KEEPALIVED_CONF_PATH, "File"),
    ]
    return component_pod("keepalived", container, volumes)


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
