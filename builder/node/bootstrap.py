"""The first-boot bootstrap: plain shell scripts, one systemd unit per phase, and the env file they read.

The scripts (templates/bootstrap/*.sh: lib.sh, one script per phase and the driver) are the same bytes
for every node and every profile; what differs reaches them only through /etc/bake/bootstrap.env, whose
names are fixed here and whose every value is `shlex.quote`d. So no profile string can become shell
code, whatever characters it holds. Each phase runs as its own unit, ordered with Requires=/After=;
bake-bootstrap.service starts the chain and owns the retries (see `unit_text`).
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import cache

import yaml
from cryptography import x509

from .. import paths, resources, yamlio
from ..errors import BakeError, Problem
from ..files import NodeFile, public
from ..model import Cni, Role, versions
from ..plan import ClusterPlan, NodePlan, StaticPod, Topology, images
from . import airgap
from .host import HostPrep
from .kubeadm_config import (
    APISERVER_ETCD_CLIENT_CERT,
    APISERVER_ETCD_CLIENT_KEY,
    ETCD_CA_FILE,
    INIT_CONFIG_PATH,
    JOIN_CONFIG_PATH,
    joins_with_token,
)

SCRIPT_PATH = "/usr/local/sbin/bake-bootstrap"
UNIT_NAME = "bake-bootstrap.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
LIB_DIR = "/usr/local/lib/bake/bootstrap"
"""lib.sh and the phase scripts on the node (the driver, SCRIPT_PATH, sources lib.sh from here)."""
PHASES = ("prep", "packages", "runtime", "wait", "kubeadm", "cni")
"""The phases in their order: bake-bootstrap-<phase>.service runs LIB_DIR/<phase>.sh (lib.sh's PHASES)."""
SCRIPTS_DATA_DIR = "bootstrap"
"""Where the scripts are in the package data (templates/bootstrap/)."""
OTHER_SCRIPTS = ("renew-certs.sh", "report.sh")
"""Beside them: the certificate renewal's (builder.node.renewal) and the reporter, shipped only with
cluster.seed.reportUrl (builder.serve.nodefiles)."""
REPORT_SCRIPT_PATH = f"{LIB_DIR}/report.sh"
"""Called by the units around each run when the profile names a report URL (`report_lines`)."""
ENV_PATH = paths.BOOTSTRAP_ENV
STATE_DIR = "/var/lib/bake"
STEPS_DIR = f"{STATE_DIR}/steps"
DONE_PATH = f"{STATE_DIR}/bootstrap.done"
SAVED_CONFIG_DIR = f"{STATE_DIR}/kubeadm"
LOG_PATH = "/var/log/bake/bootstrap.log"
CAPI_SENTINEL_PATH = "/run/cluster-api/bootstrap-success.complete"
CNI_DIR = paths.CNI_DIR
ADMIN_CONF_PATH = paths.ADMIN_CONF

# Bounded waits of joining nodes; past them the run fails and systemd runs it again (see RETRY_*).
WAIT_ENDPOINT_SECONDS = 1800
WAIT_PEERS_SECONDS = 3600
# The first control plane of an external etcd waits for every member's /health before kubeadm init
# (kubeadm's own external-etcd preflight gives up after ~15 s, too soon when all machines boot at once).
WAIT_ETCD_SECONDS = 900
# kubectl through the endpoint (the VIP can move while control planes join): retried this long.
KUBECTL_RETRY_SECONDS = 600

# cluster.join: token. The first control plane keeps the bundle's token alive for nodes that join later:
# after kubeadm init, then from a timer (at every boot and every JOIN_TOKEN_PERIOD), it re-creates the
# token with the profile's TTL when it is missing or has less than JOIN_TOKEN_REFRESH_SECONDS left.
JOIN_TOKEN_UNIT = "bake-join-token"
JOIN_TOKEN_SERVICE_PATH = f"/etc/systemd/system/{JOIN_TOKEN_UNIT}.service"
JOIN_TOKEN_TIMER_PATH = f"/etc/systemd/system/{JOIN_TOKEN_UNIT}.timer"
JOIN_TOKEN_PERIOD = "30min"
JOIN_TOKEN_REFRESH_SECONDS = 3600  # twice the period: a timer run always comes before the expiry

# A failed run is restarted by systemd (Restart=on-failure, RestartSec), after a delay growing from
# RETRY_BASE_SECONDS (doubling, at most RETRY_MAX_SECONDS), at most RETRY_MAX_ATTEMPTS times per boot;
# the last failure exits GIVE_UP_STATUS, which RestartPreventExitStatus= makes final until a reboot.
RETRY_MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 600
RESTART_SEC = 15
GIVE_UP_STATUS = 75  # EX_TEMPFAIL
ATTEMPTS_PATH = "/run/bake/bootstrap.attempts"
"""Per boot: /run is a tmpfs, so a reboot starts counting again."""
# The node's baked files under what kubeadm reset empties are kept before the first kubeadm run and
# restored after a reset.
KUBEADM_RESET_TREES = paths.KUBEADM_RESET_TREES

# --------------------------------------------------------------------------------------------------
# Pod network add-ons: versions and where they are downloaded from at first boot (the init node only).
# The base URLs are the upstream release locations; pass a CniSource with another base to use a mirror.

CALICO_VERSION = "v3.32.2"
CALICO_BASE_URL = "https://raw.githubusercontent.com/projectcalico/calico"
FLANNEL_VERSION = "v0.28.7"
FLANNEL_BASE_URL = "https://github.com/flannel-io/flannel/releases/download"
CILIUM_VERSION = "1.19.5"
CILIUM_CLI_VERSION = "v0.19.5"
CILIUM_CLI_BASE_URL = "https://github.com/cilium/cilium-cli/releases/download"


@dataclass(frozen=True)
class CniSource:
    """Where the init node fetches its CNI from; override the bases for a mirror or an air gap."""

    calico_base_url: str = CALICO_BASE_URL
    calico_version: str = CALICO_VERSION
    flannel_base_url: str = FLANNEL_BASE_URL
    flannel_version: str = FLANNEL_VERSION
    cilium_cli_base_url: str = CILIUM_CLI_BASE_URL
    cilium_cli_version: str = CILIUM_CLI_VERSION
    cilium_version: str = CILIUM_VERSION

    def urls(self, cni: Cni, arch: str) -> tuple[str, ...]:
        if cni is Cni.CALICO:
            base = f"{self.calico_base_url.rstrip('/')}/{self.calico_version}/manifests"
            return (f"{base}/operator-crds.yaml", f"{base}/tigera-operator.yaml")
        if cni is Cni.FLANNEL:
            return (f"{self.flannel_base_url.rstrip('/')}/{self.flannel_version}/kube-flannel.yml",)
        if cni is Cni.CILIUM:
            tarball = (
                f"{self.cilium_cli_base_url.rstrip('/')}/{self.cilium_cli_version}/cilium-linux-{arch}.tar.gz"
            )
            return (tarball, f"{tarball}.sha256sum")
        return ()


DEFAULT_CNI_SOURCE = CniSource()


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
# CNI configuration, built as data with the profile's pod CIDRs


def _pod_cidrs(plan: ClusterPlan) -> list[str]:
    return plan.settings.pod_subnet.split(",")


def calico_documents(plan: ClusterPlan) -> list[dict[str, object]]:
    """Tigera operator Installation (the IP pools carry the pod CIDRs) and the APIServer."""
    pools = []
    for cidr in _pod_cidrs(plan):
        v6 = ":" in cidr
        pools.append(
            {
                "name": "default-ipv6-ippool" if v6 else "default-ipv4-ippool",
                "blockSize": 122 if v6 else 26,
                "cidr": cidr,
                "encapsulation": "VXLANCrossSubnet",
                "natOutgoing": "Enabled",
                "nodeSelector": "all()",
            }
        )
    return [
        {
            "apiVersion": "operator.tigera.io/v1",
            "kind": "Installation",
            "metadata": {"name": "default"},
            "spec": {"calicoNetwork": {"ipPools": pools}},
        },
        {
            "apiVersion": "operator.tigera.io/v1",
            "kind": "APIServer",
            "metadata": {"name": "default"},
            "spec": {},
        },
    ]


def flannel_net_conf(plan: ClusterPlan) -> dict[str, object]:
    v4 = [c for c in _pod_cidrs(plan) if ":" not in c]
    v6 = [c for c in _pod_cidrs(plan) if ":" in c]
    conf: dict[str, object] = {}
    if v4:
        conf["Network"] = v4[0]
    else:
        conf["EnableIPv4"] = False
    if v6:
        conf["EnableIPv6"] = True
        conf["IPv6Network"] = v6[0]
    conf["EnableNFTables"] = False
    conf["Backend"] = {"Type": "vxlan"}
    return conf


def cilium_values(plan: ClusterPlan) -> dict[str, object]:
    """ipam.mode=kubernetes: pods get addresses from each node's podCIDR, carved by kube-controller-manager
    out of networking.podSubnet, so the profile's pod CIDR is the one in use."""
    cidrs = _pod_cidrs(plan)
    return {
        "ipam": {"mode": "kubernetes"},
        "ipv4": {"enabled": any(":" not in c for c in cidrs)},
        "ipv6": {"enabled": any(":" in c for c in cidrs)},
    }


def cni_config_file(plan: ClusterPlan) -> NodeFile | None:
    cni = plan.settings.cni
    if cni is Cni.CALICO:
        return public(f"{CNI_DIR}/calico-installation.yaml", yamlio.dump_all(calico_documents(plan)))
    if cni is Cni.FLANNEL:
        patch = {"data": {"net-conf.json": json.dumps(flannel_net_conf(plan), indent=2) + "\n"}}
        return public(f"{CNI_DIR}/flannel-net-conf-patch.yaml", yamlio.dump(patch))
    if cni is Cni.CILIUM:
        return public(f"{CNI_DIR}/cilium-values.yaml", yamlio.dump(cilium_values(plan)))
    return None


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


def _pem_certificates(f: NodeFile) -> list[bytes]:
    """PEM certificates in a node file: a .crt, or the base64 data of a kubeconfig."""
    if f.path.endswith(".crt"):
        return _PEM_CERTIFICATE.findall(f.content)
    if not f.path.endswith(".conf") or not any(k.encode() in f.content for k in _KUBECONFIG_CERT_KEYS):
        return []
    doc = yaml.safe_load(f.content)
    found: list[bytes] = []
    for section, inner in (("clusters", "cluster"), ("users", "user")):
        for entry in doc.get(section) or []:
            for key in _KUBECONFIG_CERT_KEYS:
                data = (entry.get(inner) or {}).get(key)
                if isinstance(data, str):
                    found += _PEM_CERTIFICATE.findall(base64.b64decode(data))
    return found


pem_certificates = _pem_certificates


def certificates_not_before(files: Sequence[NodeFile]) -> int | None:
    """The latest NotBefore (Unix time) of the certificates baked for a node: before it, some of them
    are not valid yet and TLS with them fails, so the bootstrap warns about a clock behind it."""
    latest: int | None = None
    for f in files:
        for pem in _pem_certificates(f):
            when = int(x509.load_pem_x509_certificate(pem).not_valid_before_utc.timestamp())
            latest = when if latest is None else max(latest, when)
    return latest


def join_token_id(node_files: Sequence[NodeFile]) -> str:
    """The id of the token the node's InitConfiguration lists: the one `kubeadm token create --config`
    re-creates from that same file, so the script checks exactly that one."""
    for f in node_files:
        if f.path == INIT_CONFIG_PATH:
            for doc in yaml.safe_load_all(f.content):
                if doc and doc.get("kind") == "InitConfiguration":
                    return str(doc["bootstrapTokens"][0]["token"]).split(".", 1)[0]
    raise ValueError(f"no InitConfiguration with a bootstrap token in {INIT_CONFIG_PATH}")


def join_credential_not_after(node_files: Sequence[NodeFile]) -> str:
    """When the node's join credential expires (Unix time), or "" when it joins with the token."""
    for f in node_files:
        if f.path == paths.JOIN_KUBECONFIG:
            doc = yaml.safe_load(f.content)
            pem = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
            return str(int(x509.load_pem_x509_certificate(pem).not_valid_after_utc.timestamp()))
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
    remove_control_plane_taint: str
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
    cni_file = cni_config_file(plan) if role is BootstrapRole.INIT else None
    gap = airgap_values(plan, node, role)
    external_etcd = role is BootstrapRole.INIT and plan.topology is Topology.EXTERNAL_ETCD
    cni_urls = cni_source.urls(c.cni, node.arch.value) if role is BootstrapRole.INIT and not c.airgap else ()
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
        containerd_min_major="2"
        if node.kubelet_info.minor >= versions.CONTAINERD_2_FROM_MINOR
        else "1",
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
        cni_config=cni_file.path if cni_file is not None else "",
        cilium_version=cni_source.cilium_version,
        remove_control_plane_taint=_yes(
            node.is_control_plane and c.allow_scheduling_on_control_planes
        ),
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


# --------------------------------------------------------------------------------------------------
# Script and unit


def phase_unit_name(phase: str) -> str:
    return f"bake-bootstrap-{phase}.service"


def phase_unit_path(phase: str) -> str:
    return f"/etc/systemd/system/{phase_unit_name(phase)}"


def phase_script_path(phase: str) -> str:
    return f"{LIB_DIR}/{phase}.sh"


@cache
def script_texts() -> dict[str, str]:
    """Every script by its file name (lib.sh, bootstrap.sh, <phase>.sh): plain shell from the package
    data, the same bytes for every node."""
    folder = resources.templates_dir() / SCRIPTS_DATA_DIR
    texts = {p.name: p.read_text() for p in sorted(folder.glob("*.sh")) if p.name not in OTHER_SCRIPTS}
    expected = {"lib.sh", "bootstrap.sh", *(f"{p}.sh" for p in PHASES)}
    if set(texts) != expected:
        raise FileNotFoundError(f"{folder}: expected the scripts {sorted(expected)}, found {sorted(texts)}")
    return texts


def script_text() -> str:
    """The driver, installed as SCRIPT_PATH."""
    return script_texts()["bootstrap.sh"]


def report_lines(step: str, *, driver: bool = False) -> tuple[str, str]:
    """The unit lines that report a run to `bake serve` (cluster.seed.reportUrl), before and after
    ExecStart=: '-' so that a failed report never fails the unit; the script bounds its own time and
    always exits 0. No other line of the unit changes, so a seed without a report URL is what it was
    before reports existed."""
    script = REPORT_SCRIPT_PATH
    return (
        f"ExecStartPre=-{script} {step} started\n",
        f"ExecStartPost=-{script} {step} {'finished' if driver else 'done'}\n"
        f"ExecStopPost=-{script} {step} stopped\n",
    )


def unit_text(report: bool = False) -> str:
    # The driver. After cloud-init.service (which runs write_files), never After=cloud-final.service:
    # cloud-final is ordered after multi-user.target on Debian/Ubuntu, and this unit is wanted by
    # multi-user.target, which would be an ordering cycle. runcmd starts it with --no-block on the first
    # boot; later boots start it through multi-user.target until the done file exists.
    # After time-sync.target: certificates and TLS need a right clock (the prep phase warns when the clock
    # is still before the certificates' NotBefore). It does not wait for a first NTP answer (that is
    # systemd-time-wait-sync.service, which has no bound): an air-gapped site must not hang here.
    # The retries live here, not in the phase units: before systemd 254 (RestartMode=direct) a phase
    # restarted by Restart= would already have failed the jobs of the phases that require it, so the
    # chain would stop there. A failed run of the driver (a phase failed) is restarted instead, and its
    # `systemctl start` runs the failed phase and those after it again (a phase that succeeded stays
    # active). Restart=on-failure on a oneshot needs systemd >= 244 (every supported OS has it). The
    # script bounds the attempts itself; the start limit only guards against a script that exits at once.
    # The driver names no phase unit in its dependencies, so the phase units are loaded only when it
    # starts them (after anything that adds drop-ins to them at boot).
    pre, post = report_lines("bootstrap", driver=True) if report else ("", "")
    return (
        "[Unit]\n"
        "Description=bake: bootstrap this Kubernetes node (kubeadm) until it is done\n"
        "Documentation=file:///var/log/bake/bootstrap.log\n"
        "Wants=network-online.target time-sync.target\n"
        "After=network-online.target time-sync.target cloud-init.service\n"
        f"ConditionPathExists=!{DONE_PATH}\n"
        "StartLimitIntervalSec=1h\n"
        f"StartLimitBurst={2 * RETRY_MAX_ATTEMPTS}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"{pre}"
        f"ExecStart={SCRIPT_PATH}\n"
        f"{post}"
        "Restart=on-failure\n"
        f"RestartSec={RESTART_SEC}s\n"
        f"RestartPreventExitStatus={GIVE_UP_STATUS}\n"
        "TimeoutStartSec=infinity\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


_PHASE_DESCRIPTIONS = {
    "prep": "host preparation (kernel modules, sysctls, swap, SELinux, firewall)",
    "packages": "repositories and packages",
    "runtime": "container runtime, air-gapped images, kubelet enabled",
    "wait": "wait for what kubeadm needs (etcd, endpoint, earlier control planes)",
    "kubeadm": "kubeadm init or join (etcd member: its kubelet)",
    "cni": "pod network add-on and control-plane taint",
}


def phase_unit_text(phase: str, report: bool = False) -> str:
    """One phase: a oneshot that stays active once it succeeded (the driver's next run in this boot
    skips it), requiring and ordered after the phase before it; no [Install]: the driver starts it."""
    index = PHASES.index(phase)
    if index == 0:
        deps = (
            "Wants=network-online.target time-sync.target\n"
            "After=network-online.target time-sync.target cloud-init.service\n"
        )
    else:
        previous = phase_unit_name(PHASES[index - 1])
        deps = f"Requires={previous}\nAfter={previous}\n"
    # The wait phase first checks that kubeadm is there at all: a node without it fails at once
    # instead of after the waits.
    check = f"ExecStartPre={phase_script_path('kubeadm')} check\n" if phase == "wait" else ""
    pre, post = report_lines(phase) if report else ("", "")
    return (
        "[Unit]\n"
        f"Description=bake: first-boot phase {phase}: {_PHASE_DESCRIPTIONS[phase]}\n"
        "Documentation=file:///var/log/bake/bootstrap.log\n"
        f"{deps}"
        f"ConditionPathExists=!{DONE_PATH}\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        "RemainAfterExit=yes\n"
        f"{pre}"
        f"{check}"
        f"ExecStart={phase_script_path(phase)}\n"
        f"{post}"
        "TimeoutStartSec=infinity\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
    )


def join_token_units() -> tuple[str, str]:
    """The service and timer that keep the join token alive on the first control plane (cluster.join:
    token). The bootstrap enables the timer once `kubeadm init` is done; the service does nothing before."""
    service = (
        "[Unit]\n"
        "Description=bake: keep the bootstrap token alive for nodes that join later (cluster.join: token)\n"
        "Documentation=file:///var/log/bake/bootstrap.log\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        f"ConditionPathExists={STEPS_DIR}/kubeadm-init.done\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={phase_script_path('kubeadm')} join-token\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
    )
    timer = (
        "[Unit]\n"
        "Description=bake: re-create the bootstrap token when it is missing or about to expire\n"
        "\n"
        "[Timer]\n"
        "OnBootSec=2min\n"
        f"OnUnitActiveSec={JOIN_TOKEN_PERIOD}\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return service, timer


def bootstrap_files(
    plan: ClusterPlan,
    node: NodePlan,
    prep: HostPrep,
    *,
    node_files: Sequence[NodeFile],
    cni_source: CniSource = DEFAULT_CNI_SOURCE,
) -> list[NodeFile]:
    """Scripts, units, env file and (init node) the CNI configuration."""
    values = env_values(plan, node, prep, node_files=node_files, cni_source=cni_source)
    texts = script_texts()
    report = plan.settings.seed.report_url is not None
    files = [
        NodeFile(SCRIPT_PATH, texts["bootstrap.sh"].encode(), 0o755),
        NodeFile(f"{LIB_DIR}/lib.sh", texts["lib.sh"].encode(), 0o644),
        public(UNIT_PATH, unit_text(report)),
        public(ENV_PATH, env_text(values)),
    ]
    for phase in PHASES:
        files.append(NodeFile(phase_script_path(phase), texts[f"{phase}.sh"].encode(), 0o755))
        files.append(public(phase_unit_path(phase), phase_unit_text(phase, report)))
    if bootstrap_role(node) is BootstrapRole.INIT:
        cni_file = cni_config_file(plan)
        if cni_file is not None:
            files.append(cni_file)
        if values["BAKE_JOIN_TOKEN_ID"]:
            service, timer = join_token_units()
            files += [public(JOIN_TOKEN_SERVICE_PATH, service), public(JOIN_TOKEN_TIMER_PATH, timer)]
    return files
