"""The etcd static pod of an external etcd member.

Source: kubeadm's `phases/etcd/local.go` / `util/staticpod/utils.go` as described in kubeadm-spec.md
5.1 and 5.5, with the whole static `--initial-cluster` and `--initial-cluster-state=new` that the
HA external-etcd guide passes as extraArgs (ahead of the profile's extraArgs). Flag order follows
`ArgumentsToCommand` (cmd/kubeadm/app/util/arguments.go): defaults overridden by name, then
everything sorted by name and value; from k/k PR #135400 (1.36, backported to late 1.32 - 1.35
patches) only the defaults are sorted and the extraArgs follow them in their own order
(MinorInfo.extra_args_user_order_kept), so the pod is the one `kubeadm init phase etcd local` writes
for the guide's config.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ... import paths
from ...model import Arg, Role
from ...plan import ClusterPlan, NodePlan, Topology, host_port, images
from ..kubeadm_config import control_plane_health_check_seconds
from .frame import arguments_to_command, component_pod, host_path_volume, probe, sorted_mapping

ETCD_PKI = paths.ETCD_PKI_DIR
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_METRICS_PORT = 2381
PROBE_PORT_NAME = "probe-port"


def etcd_probe_endpoint(listen_metrics_urls: str, ipv6: bool) -> tuple[str, int, str]:
    """GetEtcdProbeEndpoint: host, port and scheme of the first listen-metrics-urls entry (also the
    renewal script's health check of a restarted etcd, builder.node.renewal).

    As kubeadm: HTTPS only for an `https` URL, anything else is probed over HTTP; no host means the
    loopback address of the member's family; an unparsable URL or port gives the defaults.
    """
    localhost = "::1" if ipv6 else "127.0.0.1"
    try:
        first = urlsplit(listen_metrics_urls.split(",")[0])
        host, port = first.hostname, first.port
    except ValueError:
        return localhost, ETCD_METRICS_PORT, "HTTP"
    return host or localhost, port or ETCD_METRICS_PORT, "HTTPS" if first.scheme == "https" else "HTTP"


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
    probe_host, probe_port, probe_scheme = etcd_probe_endpoint(metrics, member.ip.version == 6)
    port: int | str = PROBE_PORT_NAME if info.named_probe_port else probe_port
    startup = -(-control_plane_health_check_seconds(plan) // 10)
    container: dict[str, Any] = {
        "command": command,
        "image": images.etcd_image(plan),
        "imagePullPolicy": "IfNotPresent",
        "livenessProbe": probe(probe_host, "/livez", port, probe_scheme, "liveness", startup),
        "name": "etcd",
        "readinessProbe": probe(probe_host, "/readyz", port, probe_scheme, "readiness", startup),
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
        "startupProbe": probe(probe_host, "/readyz", port, probe_scheme, "startup", startup),
        "volumeMounts": [  # kubeadm keeps this order (data first), unlike the sorted volumes
            {"mountPath": data_dir, "name": "etcd-data"},
            {"mountPath": ETCD_PKI, "name": "etcd-certs"},
        ],
    }
    if info.named_probe_port:
        container["ports"] = [{"containerPort": probe_port, "name": PROBE_PORT_NAME, "protocol": "TCP"}]
    volumes = [
        host_path_volume("etcd-certs", ETCD_PKI, "DirectoryOrCreate"),
        host_path_volume("etcd-data", data_dir, "DirectoryOrCreate"),
    ]
    pod = component_pod("etcd", container, volumes)
    pod["metadata"]["annotations"] = {"kubeadm.kubernetes.io/etcd.advertise-client-urls": client_url}
    return sorted_mapping(pod)
