"""Certificate renewal on the nodes: a timer on control planes and external etcd members that renews the
node's kubeadm leaf certificates inside a window before they expire (cluster.certificateRenewal).

kubeadm's leaves live `cluster.certificateValidityPeriod` (one year by default) and nothing renews them
unless the cluster is upgraded: an offline-baked cluster would stop on its first birthday. The script
(templates/bootstrap/renew-certs.sh, the same bytes for every node) reads every value from
RENEW_ENV_PATH, whose names are fixed here and whose values are `shlex.quote`d, as the bootstrap's.

What it may renew: what kubeadm can sign on the node, i.e. leaves whose CA key the node holds
(placement.TABLE). Every etcd member, stacked or external, holds the etcd CA key and renews its own etcd
leaves; with external etcd the control planes do not, so their apiserver-etcd-client is renewed by
re-bake only: the script watches it, and once it is due writes a journal warning (its expiry, re-bake
and re-seed, or the copy by hand) and fails the unit (a bake re-issues what is inside the window,
secrets.reconcile; `bake check`'s calendar marks it, check.REBAKE_ONLY). Workers get nothing: the
kubelet rotates its own client certificate.

kubeadm reads a renewal config (RENEW_CONFIG_PATH): for `certs renew` it needs a ClusterConfiguration
(validity period, key algorithm, etcd local or external) and, not to guess the node's address from its
routes, an InitConfiguration naming the node. Neither the node's InitConfiguration (it holds the
bootstrap token) nor a JoinConfiguration (kubeadm refuses it: "no InitConfiguration or
ClusterConfiguration kind was found") would do, so the bake writes this one, which holds no secret.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from functools import cache
from typing import Any

from .. import paths, resources, yamlio
from ..files import NodeFile, public
from ..model import Role
from ..pki import placement, secrets
from ..plan import API_PORT, ClusterPlan, NodePlan, StaticPod, Topology, host_port
from . import kubeadm_config
from .static_pods import etcd as etcd_pod

UNIT = "bake-renew-certs"
SERVICE_PATH = f"/etc/systemd/system/{UNIT}.service"
TIMER_PATH = f"/etc/systemd/system/{UNIT}.timer"
TIMER_NAME = f"{UNIT}.timer"
SCRIPT_PATH = "/usr/local/sbin/bake-renew-certs"
SCRIPT_NAME = "renew-certs.sh"
"""The script in the package data, beside the bootstrap's (templates/bootstrap/)."""
RENEW_ENV_PATH = f"{paths.BAKE_DIR}/renew-certs.env"
RENEW_CONFIG_PATH = f"{paths.BAKE_DIR}/kubeadm-renew.yaml"
PARK_DIR = f"{paths.BAKE_DIR}/renew-parked"
"""Where a manifest waits while its pod stops: outside the kubelet's staticPodPath."""
BOOTSTRAP_DONE = "/var/lib/bake/bootstrap.done"
"""Nothing to renew before the node is bootstrapped (the service's condition)."""

WAIT_SECONDS = 300
"""How long one static pod may take to stop, and then to run and answer again."""
STAGGER_SECONDS = 1800
"""Per node of the same kind, a wait before renewing: the leaves of a cluster are baked together, so
every control plane comes due the same day; staggered, no two restart etcd or kube-apiserver at once."""
TIMER_RANDOM_DELAY = "15min"

# Each leaf kubeadm manages: (file under the PKI dir without .crt, the CA that signs it). kubeadm's names.
LEAF_FILES: Mapping[str, tuple[str, str]] = {
    "apiserver": ("apiserver", "ca"),
    "apiserver-kubelet-client": ("apiserver-kubelet-client", "ca"),
    "front-proxy-client": ("front-proxy-client", "front-proxy-ca"),
    "apiserver-etcd-client": ("apiserver-etcd-client", "etcd-ca"),
    "etcd-server": ("etcd/server", "etcd-ca"),
    "etcd-peer": ("etcd/peer", "etcd-ca"),
    "etcd-healthcheck-client": ("etcd/healthcheck-client", "etcd-ca"),
}
RENEWED_KUBECONFIGS = ("admin", "super-admin", "controller-manager", "scheduler")
"""What `kubeadm certs renew all` renews besides the leaves; kubelet.conf is the kubelet's own."""

CA_KEY_FILES: Mapping[str, str] = {"ca": "ca", "front-proxy-ca": "front-proxy-ca", "etcd-ca": "etcd/ca"}


def applies(plan: ClusterPlan, node: NodePlan) -> bool:
    return plan.settings.certificate_renewal.enabled and node.role in (Role.CONTROL_PLANE, Role.ETCD)


def watched_certificates(plan: ClusterPlan, node: NodePlan) -> list[tuple[str, str, str]]:
    """(kubeadm's name, file on the node, the file of the CA key that signs it) of every renewable
    certificate the node holds, in kubeadm's order."""
    row = placement.for_node(plan, node)
    out = []
    for leaf in row.leaves:
        base, ca = LEAF_FILES[leaf]
        out.append((leaf, f"{paths.PKI_DIR}/{base}.crt", f"{paths.PKI_DIR}/{CA_KEY_FILES[ca]}.key"))
    for kind in row.kubeconfigs:
        if kind in RENEWED_KUBECONFIGS:
            out.append((f"{kind}.conf", f"{paths.KUBERNETES_DIR}/{kind}.conf", f"{paths.PKI_DIR}/ca.key"))
    return out


def _etcd_health_url(plan: ClusterPlan, node: NodePlan) -> str:
    metrics = next(
        (a.value for a in plan.settings.etcd.extra_args if a.name == "listen-metrics-urls"),
        f"http://{host_port('::1' if node.ip.version == 6 else '127.0.0.1', etcd_pod.ETCD_METRICS_PORT)}",
    )
    host, port, scheme = etcd_pod.etcd_probe_endpoint(metrics, node.ip.version == 6)
    return f"{scheme.lower()}://{host_port(host, port)}/readyz"


def restarted_pods(plan: ClusterPlan, node: NodePlan) -> list[tuple[str, str]]:
    """(static pod, the URL that answers once it serves again, or ""), in the order they restart: etcd
    first, then the API server and the components that reach it (kubeadm's probe endpoints), kube-vip."""
    pods: list[tuple[str, str]] = []
    if node.role is Role.ETCD or plan.topology is Topology.STACKED:
        pods.append((StaticPod.ETCD.value, _etcd_health_url(plan, node)))
    if node.role is Role.CONTROL_PLANE:
        loopback = "::1" if node.ip.version == 6 else "127.0.0.1"
        pods += [
            ("kube-apiserver", f"https://{host_port(str(node.ip), API_PORT)}/livez"),
            ("kube-controller-manager", f"https://{host_port(loopback, 10257)}/healthz"),
            ("kube-scheduler", f"https://{host_port(loopback, 10259)}/healthz"),
        ]
        if StaticPod.KUBE_VIP in node.static_pods:
            # it reads admin.conf (super-admin.conf at first), whose certificate was just renewed; no
            # health endpoint of its own: a new container that keeps running
            pods.append((StaticPod.KUBE_VIP.value, ""))
    return pods


def _stagger(plan: ClusterPlan, node: NodePlan) -> int:
    same = [n for n in plan.nodes if n.role is node.role]
    return same.index(node) * STAGGER_SECONDS


def env_values(plan: ClusterPlan, node: NodePlan) -> dict[str, str]:
    r = plan.settings.certificate_renewal
    return {
        "BAKE_RENEW_NODE": node.name,
        "BAKE_RENEW_ROLE": node.role.value,
        # the window bake and bake check judge by too (secrets.due_window)
        "BAKE_RENEW_BEFORE_SECONDS": str(int(secrets.renewal_before(r).total_seconds())),
        "BAKE_RENEW_CONFIG": RENEW_CONFIG_PATH,
        "BAKE_RENEW_ALL": "yes" if node.role is Role.CONTROL_PLANE else "no",
        "BAKE_RENEW_CERTS": " ".join("=".join(c) for c in watched_certificates(plan, node)),
        "BAKE_RENEW_PODS": " ".join("=".join(p) for p in restarted_pods(plan, node)),
        "BAKE_RENEW_MANIFESTS_DIR": paths.MANIFESTS_DIR,
        "BAKE_RENEW_PARK_DIR": PARK_DIR,
        "BAKE_RENEW_CRI_SOCKET": plan.cri_socket,
        "BAKE_RENEW_WAIT_SECONDS": str(WAIT_SECONDS),
        "BAKE_RENEW_STAGGER_SECONDS": str(_stagger(plan, node)),
    }


ENV_NAMES = (
    "BAKE_RENEW_NODE",
    "BAKE_RENEW_ROLE",
    "BAKE_RENEW_BEFORE_SECONDS",
    "BAKE_RENEW_CONFIG",
    "BAKE_RENEW_ALL",
    "BAKE_RENEW_CERTS",
    "BAKE_RENEW_PODS",
    "BAKE_RENEW_MANIFESTS_DIR",
    "BAKE_RENEW_PARK_DIR",
    "BAKE_RENEW_CRI_SOCKET",
    "BAKE_RENEW_WAIT_SECONDS",
    "BAKE_RENEW_STAGGER_SECONDS",
)


def env_text(values: Mapping[str, str]) -> str:
    if tuple(values) != ENV_NAMES:
        raise ValueError("renewal env names differ from ENV_NAMES")
    lines = [f"# bake: values for {SCRIPT_PATH} (each one shell-quoted)"]
    for name, value in values.items():
        if "\x00" in value or any(c.isspace() and c != " " for c in value):
            raise ValueError(f"{name}: {value!r} cannot be passed to the script")
        lines.append(f"{name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def renewal_config(plan: ClusterPlan, node: NodePlan) -> list[dict[str, Any]]:
    """The documents of RENEW_CONFIG_PATH: an InitConfiguration naming the node (no token) and the
    cluster's ClusterConfiguration, or for an etcd member the guide's local-etcd one."""
    init = {
        "apiVersion": kubeadm_config.KUBEADM_API,
        "kind": "InitConfiguration",
        "nodeRegistration": {"name": node.name, "criSocket": plan.cri_socket},
        "localAPIEndpoint": {"advertiseAddress": str(node.ip), "bindPort": API_PORT},
    }
    if node.role is Role.CONTROL_PLANE:
        return [init, kubeadm_config.cluster_configuration(plan)]
    s = plan.settings
    cluster = {
        "apiVersion": kubeadm_config.KUBEADM_API,
        "kind": "ClusterConfiguration",
        "clusterName": plan.name,
        "kubernetesVersion": f"v{plan.version}",
        "certificatesDir": paths.PKI_DIR,
        "etcd": {"local": {"dataDir": s.etcd.data_dir}},
        "encryptionAlgorithm": s.encryption_algorithm,
        "certificateValidityPeriod": kubeadm_config.go_duration_text(s.certificate_validity_period),
        "caCertificateValidityPeriod": kubeadm_config.go_duration_text(s.ca_certificate_validity_period),
    }
    return [init, cluster]


@cache
def script_text() -> str:
    return (resources.templates_dir() / "bootstrap" / SCRIPT_NAME).read_text()


def units(on_calendar: str) -> tuple[str, str]:
    service = (
        "[Unit]\n"
        "Description=bake: renew this node's kubeadm certificates inside the window before they expire\n"
        "Documentation=https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-certs/\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        f"ConditionPathExists={BOOTSTRAP_DONE}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={SCRIPT_PATH}\n"
        "TimeoutStartSec=3h\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
    )
    timer = (
        "[Unit]\n"
        "Description=bake: look for kubeadm certificates inside their renewal window\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar={on_calendar}\n"
        f"RandomizedDelaySec={TIMER_RANDOM_DELAY}\n"
        "Persistent=true\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return service, timer


def renewal_files(plan: ClusterPlan, node: NodePlan) -> list[NodeFile]:
    """Script, env file, kubeadm renewal config, service and timer; nothing for workers or when disabled."""
    if not applies(plan, node):
        return []
    service, timer = units(plan.settings.certificate_renewal.on_calendar)
    return [
        NodeFile(SCRIPT_PATH, script_text().encode(), 0o755),
        public(RENEW_ENV_PATH, env_text(env_values(plan, node))),
        public(RENEW_CONFIG_PATH, yamlio.dump_all(renewal_config(plan, node))),
        public(SERVICE_PATH, service),
        public(TIMER_PATH, timer),
    ]
