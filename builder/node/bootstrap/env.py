"""The env file, /etc/bake/bootstrap.env: every value the first-boot scripts read, under names fixed
here (`BootstrapEnv`, `AIRGAP_NAMES`), each one `shlex.quote`d, so no profile string can become shell code."""

from __future__ import annotations

import base64
import functools
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from cryptography import x509

from ... import paths, yamlio
from ...errors import BakeError, Problem
from ...files import NodeFile
from ...model import Role, versions
from ...plan import ClusterPlan, NodePlan, StaticPod, Topology, images
from .. import airgap
from ..host import HostPrep
from ..kubeadm_config import (
    APISERVER_ETCD_CLIENT_CERT,
    APISERVER_ETCD_CLIENT_KEY,
    ETCD_CA_FILE,
    INIT_CONFIG_PATH,
    JOIN_CONFIG_PATH,
    joins_with_token,
)
from .cni import DEFAULT_CNI_SOURCE, CniSource, cni_config_path, downloads
from .layout import (
    ADMIN_CONF_PATH,
    JOIN_TOKEN_REFRESH_SECONDS,
    KUBEADM_RESET_TREES,
    KUBECTL_RETRY_SECONDS,
    RETRY_BASE_SECONDS,
    RETRY_MAX_ATTEMPTS,
    RETRY_MAX_SECONDS,
    WAIT_ENDPOINT_SECONDS,
    WAIT_ETCD_SECONDS,
    WAIT_PEERS_SECONDS,
)


class BootstrapRole(StrEnum):
    INIT = "init"
    JOIN_CONTROL_PLANE = "join-control-plane"
    WORKER = "worker"
    ETCD = "etcd"


def bootstrap_role(node: NodePlan) -> BootstrapRole:
    if node.role is Role.ETCD:
        return BootstrapRole.ETCD
    if node.role is Role.WORKER:
        return BootstrapRole.WORKER
    return BootstrapRole.INIT if node.is_init else BootstrapRole.JOIN_CONTROL_PLANE


# --------------------------------------------------------------------------------------------------
# Air gap (builder.node.airgap): where the images seed is, what to import, what must be present after


def airgap_values(plan: ClusterPlan, node: NodePlan, role: BootstrapRole) -> dict[str, str]:
    """Empty values without cluster.airgap; the seed's archives and manifests are named by their
    path on the seed, the images by the normalized names the runtimes list them under."""
    gap = plan.settings.airgap
    if gap is None:
        return dict.fromkeys(AIRGAP_NAMES, "") | {"BAKE_AIRGAP": "no"}
    arch = node.arch.value
    base = plan.settings.seed.http_base_url
    url = f"{base.rstrip('/')}/{airgap.http_rel(arch).removeprefix('http/')}" if base else ""
    manifests = airgap.seed_names(tuple(gap.cni_manifests), manifests=True)
    needed = [i.normalized for i in images.node_images(plan, node)]
    return {
        "BAKE_AIRGAP": "yes",
        "BAKE_IMAGES_LABEL": airgap.label(arch),
        "BAKE_IMAGES_URL": url,
        "BAKE_IMAGE_ARCHIVES": _words(airgap.node_archives(tuple(gap.images.get(arch, ())), needed)),
        "BAKE_IMAGES": _words(needed),
        "BAKE_CNI_MANIFESTS": _words(manifests if role is BootstrapRole.INIT else ()),
    }


AIRGAP_NAMES = (
    "BAKE_AIRGAP",
    "BAKE_IMAGES_LABEL",
    "BAKE_IMAGES_URL",
    "BAKE_IMAGE_ARCHIVES",
    "BAKE_IMAGES",
    "BAKE_CNI_MANIFESTS",
)


# --------------------------------------------------------------------------------------------------
# The env file


def _words(values: Sequence[str]) -> str:
    for v in values:
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"list item {v!r} cannot travel space-separated")
    return " ".join(values)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.S)
_KUBECONFIG_CERT_KEYS = ("certificate-authority-data", "client-certificate-data")


def pem_certificates(f: NodeFile) -> list[bytes]:
    """PEM certificates in a node file: a .crt, or the base64 data of a kubeconfig."""
    if f.path.endswith(".crt"):
        return _PEM_CERTIFICATE.findall(f.content)
    if not f.path.endswith(".conf") or not any(k.encode() in f.content for k in _KUBECONFIG_CERT_KEYS):
        return []
    doc = _kubeconfig(f.content)
    found: list[bytes] = []
    for section, inner in (("clusters", "cluster"), ("users", "user")):
        for entry in doc.get(section) or []:
            for key in _KUBECONFIG_CERT_KEYS:
                data = (entry.get(inner) or {}).get(key)
                if isinstance(data, str):
                    found += _PEM_CERTIFICATE.findall(base64.b64decode(data))
    return found


@functools.lru_cache(maxsize=64)
def _kubeconfig(content: bytes) -> Any:
    """A kubeconfig this tool wrote, parsed once: the clock check and the join credential's expiry both
    read a worker's join kubeconfig. Read only, never changed."""
    return yamlio.load_own(content)


@functools.lru_cache(maxsize=256)
def _validity(pem: bytes) -> tuple[int, int]:
    """(NotBefore, NotAfter) in Unix time; cached, as every node of a cluster carries the same CAs."""
    cert = x509.load_pem_x509_certificate(pem)
    return int(cert.not_valid_before_utc.timestamp()), int(cert.not_valid_after_utc.timestamp())


def certificates_not_before(files: Sequence[NodeFile]) -> int | None:
    """The latest NotBefore (Unix time) of the certificates baked for a node: before it, some of them
    are not valid yet and TLS with them fails, so the bootstrap warns about a clock behind it."""
    latest: int | None = None
    for f in files:
        for pem in pem_certificates(f):
            when = _validity(pem)[0]
            latest = when if latest is None else max(latest, when)
    return latest


def join_token_id(node_files: Sequence[NodeFile]) -> str:
    """The id of the token the node's InitConfiguration lists: the one `kubeadm token create --config`
    re-creates from that same file, so the script checks exactly that one."""
    for f in node_files:
        if f.path == INIT_CONFIG_PATH:
            for doc in yamlio.load_all_own(f.content):
                if doc and doc.get("kind") == "InitConfiguration":
                    return str(doc["bootstrapTokens"][0]["token"]).split(".", 1)[0]
    raise ValueError(f"no InitConfiguration with a bootstrap token in {INIT_CONFIG_PATH}")


def join_credential_not_after(node_files: Sequence[NodeFile]) -> str:
    """When the node's join credential expires (Unix time), or "" when it joins with the token."""
    for f in node_files:
        if f.path == paths.JOIN_KUBECONFIG:
            doc = _kubeconfig(f.content)
            pem = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
            return str(_validity(pem)[1])
    return ""


@dataclass(frozen=True)
class BootstrapEnv:
    """Every value the first-boot scripts read but the air-gap ones (airgap.AIRGAP_NAMES): field ``x_y``
    is the env name ``BAKE_X_Y``, so the names are stated once, here."""

    cluster: str
    node_name: str
    role: str
    os: str
    arch: str
    kubernetes_version: str
    kubelet_version: str
    certs_not_before: str
    package_mode: str
    pkg_family: str
    base_packages: str
    runtime_packages: str
    kube_packages: str
    hold_packages: str
    kube_repos: str
    apt_key_urls: str
    apt_keyrings: str
    apt_staged_sources: str
    runtime_service: str
    cri_socket: str
    containerd_config_version: str
    containerd_min_major: str
    selinux_permissive: str
    firewall_tcp: str
    firewall_udp: str
    firewall_protocols: str
    kubeadm_config: str
    keep_files: str
    retry_max_attempts: str
    retry_base_seconds: str
    retry_max_seconds: str
    kubectl_retry_seconds: str
    api_endpoint: str
    wait_endpoint_seconds: str
    join_after: str
    join_after_pods: str
    wait_peers_seconds: str
    etcd_endpoints: str
    etcd_ca: str
    etcd_cert: str
    etcd_key: str
    wait_etcd_seconds: str
    kube_vip_manifest: str
    cni: str
    cni_urls: str
    cni_config: str
    cilium_version: str
    join: str
    join_token_id: str
    join_token_refresh_seconds: str
    join_credential: str
    join_not_after: str

    def values(self) -> dict[str, str]:
        return {f"BAKE_{f.name.upper()}": getattr(self, f.name) for f in fields(self)}


def env_values(
    plan: ClusterPlan,
    node: NodePlan,
    prep: HostPrep,
    *,
    node_files: Sequence[NodeFile],
    cni_source: CniSource = DEFAULT_CNI_SOURCE,
) -> dict[str, str]:
    """Every name the script reads, in a fixed order; `node_files` are the node's other files."""
    c = plan.settings
    role = bootstrap_role(node)
    written = {f.path for f in node_files}
    kubeadm_config = {
        BootstrapRole.INIT: INIT_CONFIG_PATH,
        BootstrapRole.JOIN_CONTROL_PLANE: JOIN_CONFIG_PATH,
        BootstrapRole.WORKER: JOIN_CONFIG_PATH,
        BootstrapRole.ETCD: "",
    }[role]
    joining = role in (BootstrapRole.JOIN_CONTROL_PLANE, BootstrapRole.WORKER)
    earlier = [n.name for n in plan.control_planes if n.index < node.index] if node.is_control_plane else []
    if role is not BootstrapRole.JOIN_CONTROL_PLANE:
        earlier = []
    join_after_pods = ["etcd", "kube-apiserver"] if plan.topology is Topology.STACKED else ["kube-apiserver"]
    # kube-vip reading super-admin.conf must lose it once kubeadm init has made admin.conf usable
    kube_vip = (
        paths.manifest(StaticPod.KUBE_VIP) if node.kube_vip_kubeconfig == paths.SUPER_ADMIN_CONF else ""
    )
    cni_config = cni_config_path(c.cni) if role is BootstrapRole.INIT else None
    gap = airgap_values(plan, node, role)
    external_etcd = role is BootstrapRole.INIT and plan.topology is Topology.EXTERNAL_ETCD
    cni_urls = downloads(plan, node.arch.value, cni_source) if role is BootstrapRole.INIT else ()
    fw = prep.firewall
    keeps_token = role is BootstrapRole.INIT and joins_with_token(plan)
    join_not_after = join_credential_not_after(node_files) if joining else ""
    env = BootstrapEnv(
        cluster=plan.name,
        node_name=node.name,
        role=role.value,
        os=node.os.name.value,
        arch=node.arch.value,
        kubernetes_version=plan.version,
        kubelet_version=node.kubelet_version,
        certs_not_before=str(certificates_not_before(node_files) or ""),
        package_mode=c.packages.mode.value,
        pkg_family=prep.package_family.value,
        base_packages=_words(prep.base_packages),
        runtime_packages=_words(prep.runtime_packages),
        kube_packages=_words(prep.kube_packages),
        hold_packages=_words(prep.hold_packages),
        kube_repos=_words(prep.kube_repo_ids),
        apt_key_urls=_words([k.url for k in prep.apt_keys]),
        apt_keyrings=_words([k.keyring for k in prep.apt_keys]),
        apt_staged_sources=_words(prep.apt_staged_sources),
        runtime_service=prep.runtime_service,
        cri_socket=prep.cri_socket,
        containerd_config_version=str(prep.containerd_config_version or ""),
        containerd_min_major="2" if node.kubelet_info.minor >= versions.CONTAINERD_2_FROM_MINOR else "1",
        selinux_permissive=_yes(prep.selinux_permissive),
        firewall_tcp=_words(fw.tcp),
        firewall_udp=_words(fw.udp),
        firewall_protocols=_words(fw.protocols),
        kubeadm_config=kubeadm_config,
        keep_files=_words(
            sorted(p for p in written if p.startswith(KUBEADM_RESET_TREES)) if kubeadm_config else []
        ),
        retry_max_attempts=str(RETRY_MAX_ATTEMPTS),
        retry_base_seconds=str(RETRY_BASE_SECONDS),
        retry_max_seconds=str(RETRY_MAX_SECONDS),
        kubectl_retry_seconds=str(KUBECTL_RETRY_SECONDS),
        api_endpoint=plan.api_endpoint().hostport if joining else "",
        wait_endpoint_seconds=str(WAIT_ENDPOINT_SECONDS),
        join_after=_words(earlier),
        join_after_pods=_words(join_after_pods),
        wait_peers_seconds=str(WAIT_PEERS_SECONDS),
        etcd_endpoints=_words(plan.etcd_client_urls) if external_etcd else "",
        etcd_ca=ETCD_CA_FILE if external_etcd else "",
        etcd_cert=APISERVER_ETCD_CLIENT_CERT if external_etcd else "",
        etcd_key=APISERVER_ETCD_CLIENT_KEY if external_etcd else "",
        wait_etcd_seconds=str(WAIT_ETCD_SECONDS),
        kube_vip_manifest=kube_vip,
        cni=c.cni.value if role is BootstrapRole.INIT else "none",
        cni_urls=_words(cni_urls),
        cni_config=cni_config or "",
        cilium_version=cni_source.cilium_version,
        join=c.join.value,
        join_token_id=join_token_id(node_files) if keeps_token else "",
        join_token_refresh_seconds=str(JOIN_TOKEN_REFRESH_SECONDS),
        join_credential=paths.JOIN_KUBECONFIG if join_not_after else "",
        join_not_after=join_not_after,
    )
    values = {**env.values(), **gap}
    if role is BootstrapRole.JOIN_CONTROL_PLANE and earlier and ADMIN_CONF_PATH not in written:
        raise BakeError(
            [
                Problem(
                    f"node {node.name}",
                    f"a joining control plane needs {ADMIN_CONF_PATH} to check the join order",
                )
            ]
        )
    return values


ENV_NAMES = (*(f"BAKE_{f.name.upper()}" for f in fields(BootstrapEnv)), *AIRGAP_NAMES)
"""The fixed set of names the script reads (it runs with `set -u`: a missing one stops it)."""


def env_text(values: Mapping[str, str]) -> str:
    """`NAME=<shlex.quote(value)>` lines; only the fixed names, every value quoted."""
    if tuple(values) != ENV_NAMES:
        raise ValueError("bootstrap env names differ from ENV_NAMES")
    lines = ["# bake: values for /usr/local/sbin/bake-bootstrap (each one shell-quoted)"]
    for name, value in values.items():
        if "\x00" in value:
            raise ValueError(f"{name}: NUL cannot be passed to a shell")
        lines.append(f"{name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"
