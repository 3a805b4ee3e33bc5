"""Whole-profile checks: what no single field can tell (versions, overlapping networks, duplicate names and
addresses, address families, topology, the control-plane endpoint, SANs, users)."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import Problem
from ..model import Cluster, LoadBalancerKind, Profile, Role, versions
from ..model.syntax import DNS1123_SUBDOMAIN, IPNetwork, duration_seconds, split_host_port


def _networks(cidrs: str) -> list[IPNetwork]:
    return [ipaddress.ip_network(c) for c in cidrs.split(",")]


def _dupes(values: Sequence[Any], path: str, what: str) -> Iterator[Problem]:
    first: dict[Any, int] = {}
    for i, v in enumerate(values):
        if v is None:
            continue
        if v in first:
            yield Problem(f"nodes[{i}].{path}", f"duplicate {what} of nodes[{first[v]}]")
        else:
            first[v] = i


def _overlaps(pod_subnet: str, service_subnet: str) -> Iterator[Problem]:
    for pn in _networks(pod_subnet):
        for sn in _networks(service_subnet):
            if pn.version == sn.version and pn.overlaps(sn):
                yield Problem("cluster.podSubnet", f"{pn} overlaps cluster.serviceSubnet {sn}")


def raw_problems(data: Any) -> list[Problem]:
    """The whole-profile checks that still make sense when some fields failed validation, so one
    run reports a bad address and a duplicate name together."""
    if not isinstance(data, dict):
        return []
    problems: list[Problem] = []
    nodes = data.get("nodes")
    if isinstance(nodes, list):
        rows = [n if isinstance(n, dict) else {} for n in nodes]
        for key, what in (("name", "name"), ("ip", "address"), ("mac", "MAC address")):
            values = [r[key].lower() if isinstance(r.get(key), str) else None for r in rows]
            problems += _dupes(values, key, what)
    cluster = data.get("cluster")
    if isinstance(cluster, dict):
        pod = cluster.get("podSubnet", Cluster.model_fields["pod_subnet"].default)
        svc = cluster.get("serviceSubnet", Cluster.model_fields["service_subnet"].default)
        with contextlib.suppress(ValueError):
            problems += _overlaps(str(pod), str(svc))
    return problems


def problems(p: Profile) -> Iterator[Problem]:
    """Versions, networks, addresses, topology, endpoint, SANs and users of a schema-valid profile."""
    c = p.cluster
    info: versions.MinorInfo | None = None
    try:
        info = versions.lookup(c.kubernetes_version, path="cluster.kubernetesVersion")
    except versions.VersionError as exc:
        yield from exc.problems
    if info is not None and c.encryption_algorithm == "ECDSA-P384" and not info.ecdsa_p384:
        yield Problem("cluster.encryptionAlgorithm", "ECDSA-P384 needs Kubernetes 1.34 or newer")

    pods, services = _networks(c.pod_subnet), _networks(c.service_subnet)
    yield from _overlaps(c.pod_subnet, c.service_subnet)
    if services[0].num_addresses < 16:
        yield Problem("cluster.serviceSubnet", f"{services[0]} is too small (kube-dns uses its 10th address)")

    yield from _dupes([n.name for n in p.nodes], "name", "name")
    yield from _dupes([n.ip for n in p.nodes], "ip", "address")
    yield from _dupes([n.mac for n in p.nodes], "mac", "MAC address")

    families = set()
    for i, n in enumerate(p.nodes):
        families.add(n.ip.version)
        for label, nets in (("cluster.podSubnet", pods), ("cluster.serviceSubnet", services)):
            for net in nets:
                if n.ip.version == net.version and n.ip in net:
                    yield Problem(f"nodes[{i}].ip", f"{n.ip} is inside {label} {net}")
        if n.kubernetes_version is not None:
            if n.role is not Role.WORKER:
                yield Problem(f"nodes[{i}].kubernetesVersion", "only workers may run another kubelet version")
            elif info is not None:
                try:
                    versions.lookup(n.kubernetes_version, path=f"nodes[{i}].kubernetesVersion")
                except versions.VersionError as exc:
                    yield from exc.problems
                    continue
                for msg in versions.skew_problems(c.kubernetes_version, n.kubernetes_version):
                    yield Problem(f"nodes[{i}].kubernetesVersion", msg)
        if n.role is Role.ETCD and n.labels:
            yield Problem(f"nodes[{i}].labels", "etcd members are not Kubernetes nodes")
    reported: set[str] = set()
    for i, n in enumerate(p.nodes):
        gw = n.gateway if n.gateway is not None else p.defaults.gateway
        where = f"nodes[{i}].gateway" if n.gateway is not None else "defaults.gateway"
        if gw is not None and gw.version != n.ip.version and where not in reported:
            reported.add(where)
            yield Problem(where, f"{gw} is not of the same address family as nodes[{i}].ip {n.ip}")
    if len(families) > 1:
        yield Problem("nodes", "mixing IPv4 and IPv6 node addresses is not supported (dual-stack)")

    roles = [n.role for n in p.nodes]
    cps, etcds, workers = roles.count(Role.CONTROL_PLANE), roles.count(Role.ETCD), roles.count(Role.WORKER)
    if cps == 0 and (workers or not etcds):
        yield Problem(
            "nodes", "needs at least one control-plane node (or only etcd nodes for an etcd cluster)"
        )
    if c.allow_scheduling_on_control_planes and cps == 0:
        yield Problem("cluster.allowSchedulingOnControlPlanes", "there is no control plane")

    lb = c.load_balancer
    if c.control_plane_endpoint is not None:
        try:
            split_host_port(c.control_plane_endpoint, 6443)
        except ValueError as exc:
            yield Problem("cluster.controlPlaneEndpoint", str(exc))
    if lb.kind in (LoadBalancerKind.KUBE_VIP, LoadBalancerKind.HAPROXY_KEEPALIVED):
        if lb.vip is None:
            yield Problem("cluster.loadBalancer.vip", f"required with kind {lb.kind.value}")
        elif any(n.ip == lb.vip for n in p.nodes):
            yield Problem("cluster.loadBalancer.vip", f"{lb.vip} is also a node address")
        elif families and lb.vip.version not in families:
            yield Problem("cluster.loadBalancer.vip", f"{lb.vip} is not of the nodes' address family")
        else:
            for label, nets in (("cluster.podSubnet", pods), ("cluster.serviceSubnet", services)):
                for net in nets:
                    if lb.vip.version == net.version and lb.vip in net:
                        yield Problem("cluster.loadBalancer.vip", f"{lb.vip} is inside {label} {net}")
        if cps == 0:
            yield Problem("cluster.loadBalancer.kind", "a control-plane load balancer needs control planes")
    if lb.kind is LoadBalancerKind.EXTERNAL and c.control_plane_endpoint is None:
        yield Problem("cluster.controlPlaneEndpoint", "required with cluster.loadBalancer.kind external")
    if cps > 1 and c.control_plane_endpoint is None and lb.kind in (LoadBalancerKind.NONE,):
        yield Problem(
            "cluster.controlPlaneEndpoint",
            "several control planes need a stable endpoint: set it, or a loadBalancer with a vip",
        )

    for i, arg in enumerate(c.api_server.extra_args):
        if arg.name == "encryption-provider-config" and c.secrets_encryption != "none":
            yield Problem(
                f"cluster.apiServer.extraArgs[{i}]",
                f"encryption-provider-config is set by the bake (cluster.secretsEncryption: "
                f"{c.secrets_encryption}); set cluster.secretsEncryption: none to pass your own",
            )
    for i, san in enumerate(c.api_server.cert_sans):
        if not _is_ip(san) and not DNS1123_SUBDOMAIN.match(san.removeprefix("*.")):
            yield Problem(
                f"cluster.apiServer.certSANs[{i}]", f"{san!r} is neither an IP address nor a DNS name"
            )
    for field, sans in (("serverCertSANs", c.etcd.server_cert_sans), ("peerCertSANs", c.etcd.peer_cert_sans)):
        for i, san in enumerate(sans):
            if not _is_ip(san) and not DNS1123_SUBDOMAIN.match(san.removeprefix("*.")):
                yield Problem(
                    f"cluster.etcd.{field}[{i}]", f"{san!r} is neither an IP address nor a DNS name"
                )

    yield from _certificate_lifetimes(c)

    seen_users: dict[str, int] = {}
    for i, u in enumerate(p.defaults.users):
        if u.name in seen_users:
            yield Problem(f"defaults.users[{i}].name", f"duplicate of defaults.users[{seen_users[u.name]}]")
        seen_users[u.name] = i


MIN_CERTIFICATE_VALIDITY = 3600
"""Leaves shorter-lived than this would expire between two looks of any sensible renewal timer."""


def _certificate_lifetimes(c: Cluster) -> Iterator[Problem]:
    """Leaf validity and the renewal window must fit in one another: a window as long as the leaves'
    lifetime would renew every certificate on every run."""
    leaf = duration_seconds(c.certificate_validity_period)
    if leaf < MIN_CERTIFICATE_VALIDITY:
        yield Problem("cluster.certificateValidityPeriod", "give at least 1h (kubeadm's default is 8760h)")
    renewal = c.certificate_renewal
    if renewal.enabled and leaf >= MIN_CERTIFICATE_VALIDITY and duration_seconds(renewal.before) >= leaf:
        yield Problem(
            "cluster.certificateRenewal.before",
            f"{renewal.before} is not shorter than cluster.certificateValidityPeriod "
            f"{c.certificate_validity_period}: a renewed certificate would be due again at once",
        )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
