"""The profile schema: what the user writes, as frozen pydantic models (camelCase keys, no unknown keys).

Shapes and single-field values are checked here, every error with its path; what only the whole profile
can tell is checked by `builder.validation`, and loading (extends, --set) is `builder.validation.profile`.

The module is long because it is one document's schema: every section of a profile, each a short class
with its own checks, in the order a profile is written, so that a key is looked up in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from .syntax import (
    CIDR,
    DNS1123_SUBDOMAIN,
    IP,
    LINUX_USER_RE,
    MAC,
    Duration,
    Name,
    ServerUrl,
    duration_seconds,
)


class Model(BaseModel):
    """Base for every profile section: camelCase keys like kubeadm's, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, strict=False
    )


class Arg(Model):
    """A component flag in kubeadm v1beta4 form; a list allows the same flag twice, as kubeadm does."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    value: str

    @field_validator("value", mode="before")
    @classmethod
    def _scalar_to_str(cls, v: Any) -> Any:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        return v


def _args_before(v: Any) -> Any:
    """Accept the guide's map form (`name: value`) as well as v1beta4's list of {name, value}."""
    if isinstance(v, Mapping):
        return [{"name": k, "value": val} for k, val in v.items()]
    return v


ExtraArgs = Annotated[list[Arg], Field(default_factory=list)]


class Component(Model):
    extra_args: ExtraArgs

    _normalise = field_validator("extra_args", mode="before")(lambda cls, v: _args_before(v))


class ApiServer(Component):
    cert_sans: list[str] = Field(default_factory=list, alias="certSANs")


class EtcdSettings(Component):
    server_cert_sans: list[str] = Field(default_factory=list, alias="serverCertSANs")
    peer_cert_sans: list[str] = Field(default_factory=list, alias="peerCertSANs")
    data_dir: str = "/var/lib/etcd"


class Kubelet(Model):
    """Cluster-wide KubeletConfiguration fields and kubelet flags (guide part 7)."""

    config: dict[str, Any] = Field(default_factory=dict)
    extra_args: ExtraArgs

    _normalise = field_validator("extra_args", mode="before")(lambda cls, v: _args_before(v))


class Cni(StrEnum):
    CALICO = "calico"
    FLANNEL = "flannel"
    CILIUM = "cilium"
    NONE = "none"


class Runtime(StrEnum):
    CONTAINERD = "containerd"
    CRIO = "crio"


class RuntimeSource(StrEnum):
    """Where containerd comes from: the OS's own archive, or a repository that ships containerd 2.x."""

    DISTRO = "distro"
    REPOSITORY = "repository"


class ContainerdRepository(Model):
    """A containerd package repository laid out like Docker's (download.docker.com/linux).

    apt: `{baseUrl}/{ubuntu|debian} <codename> stable`; rpm: `{baseUrl}/{centos|rhel|fedora}/<release>/
    <arch>/stable`; signing key `{baseUrl}/<distro>/gpg`. Its containerd.io packages are containerd 2.x.
    """

    base_url: str = Field(default="https://download.docker.com/linux", pattern=r"^https?://[^\s'\"`$\\]+$")
    package: str = Field(default="containerd.io", pattern=r"^[a-z0-9][a-z0-9.+-]*$")


class JoinCredential(StrEnum):
    """How joining nodes authenticate to the cluster the first time (`cluster.join`).

    `certificate`: each joining node carries its own client certificate (system:node:<name>, valid for
    `cluster.joinWindow`) in a discovery kubeconfig that pins the cluster CA; no bootstrap token exists
    after `kubeadm init`. `token`: kubeadm's shared bootstrap token with the CA hash pinned, kept alive
    by the first control plane.
    """

    CERTIFICATE = "certificate"
    TOKEN = "token"


class LoadBalancerKind(StrEnum):
    NONE = "none"
    KUBE_VIP = "kube-vip"
    HAPROXY_KEEPALIVED = "haproxy-keepalived"
    EXTERNAL = "external"


class LoadBalancer(Model):
    kind: LoadBalancerKind = LoadBalancerKind.NONE
    vip: IP | None = None
    interface: str = Field(default="eth0", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    port: int = Field(default=8443, ge=1, le=65535, description="haproxy frontend port")


class PackageMode(StrEnum):
    REPOS = "repos"
    PREBAKED = "prebaked"


class Packages(Model):
    mode: PackageMode = PackageMode.REPOS
    apt_base_url: str = Field(default="https://pkgs.k8s.io", pattern=r"^https?://[^\s'\"`$\\]+$")
    rpm_base_url: str = Field(default="https://pkgs.k8s.io", pattern=r"^https?://[^\s'\"`$\\]+$")
    # CRI-O's stable packages left pkgs.k8s.io's addons path for the openSUSE build service's own
    # download host: {crioBaseUrl}/isv:/cri-o:/stable:/v1.NN/{deb,rpm}/
    crio_base_url: str = Field(
        default="https://download.opensuse.org/repositories", pattern=r"^https?://[^\s'\"`$\\]+$"
    )


class SizeTarget(StrEnum):
    AWS = "aws"
    HETZNER = "hetzner"
    OPENSTACK = "openstack"
    AZURE = "azure"
    GCP = "gcp"
    NOCLOUD = "nocloud"


class KubeadmTimeouts(Model):
    """kubeadm's v1beta4 `timeouts` for `kubeadm init` / `kubeadm join`, for slow hardware (emulated or
    small machines); a field left out keeps kubeadm's default. The control-plane health check also sizes
    the static pods' startup probes, as kubeadm does."""

    control_plane_component_health_check: Duration | None = None  # kubeadm default 4m
    kubelet_health_check: Duration | None = None  # 4m
    kubernetes_api_call: Duration | None = Field(default=None, alias="kubernetesAPICall")  # 1m
    etcd_api_call: Duration | None = Field(default=None, alias="etcdAPICall")  # 2m
    tls_bootstrap: Duration | None = None  # 5m, joining nodes
    discovery: Duration | None = None  # 5m, joining nodes

    @field_validator("*")
    @classmethod
    def _positive(cls, v: str | None) -> str | None:
        if v is not None and duration_seconds(v) == 0:
            raise PydanticCustomError("duration", "a timeout must be longer than 0s", {})
        return v


class CertificateRenewal(Model):
    """`cluster.certificateRenewal`: the timer on control planes and etcd members that renews the node's
    kubeadm leaf certificates (`kubeadm certs renew`) once they are within `before` of their expiry, then
    restarts the static pods one at a time (builder/node/renewal.py). Workers need none: kubelet rotates its
    own.
    """

    enabled: bool = True
    before: Duration = "720h"
    """The window before a certificate's NotAfter in which the node renews it, a bake re-issues the
    bundle's copy (the bundle does not see the nodes' renewals), and `bake` and `bake check` warn: one
    window, decided by secrets.due_window."""
    on_calendar: str = Field(default="daily", pattern=r"^[A-Za-z0-9*:/.,~ -]{1,100}$")
    """When the timer looks: a systemd.time(7) calendar expression (the unit is verified in the tests)."""

    @field_validator("before")
    @classmethod
    def _positive(cls, v: str) -> str:
        if duration_seconds(v) < 3600:
            raise PydanticCustomError(
                "duration", "{value}: renew at least 1h before expiry (e.g. 720h)", {"value": repr(v)}
            )
        return v


class Seed(Model):
    http_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s'\"`$\\;]+$")
    targets: list[SizeTarget] = Field(default_factory=lambda: [SizeTarget.NOCLOUD])
    # Control-plane and external etcd seeds hold the cluster's private keys (CA keys, sa.key,
    # super-admin.conf, etcd server and peer keys); plain HTTP hands them to anyone who can reach the
    # server, so they stay out of the HTTP tree unless the profile says so (builder.emit.packaging).
    http_publish_control_planes: bool = False
    # `bake serve`: where each node reports the steps of its first boot (signed with its own report key,
    # builder/serve/). None: no report key, script or unit line is baked, the seeds are as without it.
    # An https:// URL also gives the bundle a seed CA and a server certificate for its host, which the
    # nodes pin.
    report_url: ServerUrl | None = None


class ImageOverride(Model):
    """kubeadm's ImageMeta for one image: another repository and/or tag (cluster.images.<name>)."""

    image_repository: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.:/_-]+$")
    image_tag: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


PathText = Annotated[str, Field(min_length=1)]


class Airgap(Model):
    """Nothing is pulled or fetched at first boot: images come from archives on a per-architecture
    images seed, the CNI's manifests from files baked onto that seed."""

    images: dict[str, list[PathText]] = Field(
        default_factory=dict, description="per architecture: image archives (OCI / docker tar) or directories"
    )
    cni_manifests: list[PathText] = Field(default_factory=list, alias="cniManifests")
    extra_images: list[str] = Field(default_factory=list)


class OsName(StrEnum):
    UBUNTU_2204 = "ubuntu-22.04"
    UBUNTU_2404 = "ubuntu-24.04"
    DEBIAN_12 = "debian-12"
    DEBIAN_13 = "debian-13"
    ROCKY_9 = "rocky-9"
    ALMA_9 = "alma-9"
    RHEL_9 = "rhel-9"
    FEDORA_41 = "fedora-41"
    FEDORA_42 = "fedora-42"


class Arch(StrEnum):
    AMD64 = "amd64"
    ARM64 = "arm64"


class Role(StrEnum):
    CONTROL_PLANE = "control-plane"
    WORKER = "worker"
    ETCD = "etcd"


class User(Model):
    name: str
    groups: list[str] = Field(default_factory=list)
    sudo: bool = False
    shell: str = Field(default="/bin/bash", pattern=r"^/[A-Za-z0-9/_.-]+$")
    ssh_authorized_keys: list[str] = Field(default_factory=list)
    password_hash: str | None = Field(default=None, description="crypt(3) hash")
    password: str | None = Field(default=None, description="clear text; hashed with SHA-512 crypt at bake")

    @field_validator("name")
    @classmethod
    def _user_name(cls, v: str) -> str:
        if not LINUX_USER_RE.match(v):
            raise PydanticCustomError("user", "{value} is not a valid Linux user name", {"value": repr(v)})
        return v

    @field_validator("ssh_authorized_keys")
    @classmethod
    def _keys_single_line(cls, v: list[str]) -> list[str]:
        for key in v:
            if "\n" in key or "\r" in key:
                raise PydanticCustomError("sshkey", "an SSH key must be a single line", {})
        return v

    @model_validator(mode="after")
    def _one_password(self) -> User:
        if self.password is not None and self.password_hash is not None:
            raise PydanticCustomError("password", "give password or passwordHash, not both", {})
        return self


class NodeDefaults(Model):
    os: OsName = OsName.UBUNTU_2404
    arch: Arch = Arch.AMD64
    users: list[User] = Field(default_factory=list)
    interface: str = Field(default="eth0", pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    prefix_length: int | None = Field(default=None, ge=1, le=128)
    gateway: IP | None = None
    dns: list[IP] = Field(default_factory=list)


class Node(Model):
    name: Name
    role: Role
    ip: IP
    mac: MAC | None = None
    arch: Arch | None = None
    os: OsName | None = None
    interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,15}$")
    prefix_length: int | None = Field(default=None, ge=1, le=128)
    gateway: IP | None = None
    dns: list[IP] | None = None
    kubernetes_version: Annotated[str, PlainValidator(_version_text)] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    kubelet_extra_args: ExtraArgs
    # Part of the node's cloud-init instance-id (builder.node.cloudinit.instance_id): bumping it is how a
    # machine is re-provisioned from its seed; re-bakes without a bump never make cloud-init run again.
    generation: int = Field(default=0, ge=0)

    _normalise = field_validator("kubelet_extra_args", mode="before")(lambda cls, v: _args_before(v))


def _version_text(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "version", '{value} was read as a number: quote it, e.g. "1.35"', {"value": repr(value)}
        )
    return value


class Cluster(Model):
    name: Name
    kubernetes_version: Annotated[str, PlainValidator(_version_text)]
    control_plane_endpoint: str | None = None
    pod_subnet: CIDR = "10.244.0.0/16"
    service_subnet: CIDR = "10.96.0.0/12"
    dns_domain: str = "cluster.local"
    cni: Cni = Cni.CALICO
    container_runtime: Runtime = Runtime.CONTAINERD
    # containerd only: `repository` (default) installs containerd 2.x from containerdRepository on every
    # OS; `distro` takes the OS's own package (refused where that is too old or absent; see validation).
    container_runtime_source: RuntimeSource = RuntimeSource.REPOSITORY
    containerd_repository: ContainerdRepository = Field(default_factory=ContainerdRepository)
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    image_repository: str = Field(default="registry.k8s.io", pattern=r"^[A-Za-z0-9.:/_-]+$")
    encryption_algorithm: Literal["RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384"] = "RSA-2048"
    # how the kube-apiserver encrypts Secrets in etcd from the first boot (builder/pki/encryption.py)
    secrets_encryption: Literal["secretbox", "aescbc", "none"] = "secretbox"
    certificate_validity_period: Duration = "8760h"
    ca_certificate_validity_period: Duration = "87600h"
    certificate_renewal: CertificateRenewal = Field(default_factory=CertificateRenewal)
    token_ttl: Duration = Field(default="24h", alias="tokenTTL")
    join: JoinCredential = JoinCredential.CERTIFICATE
    join_window: Duration = "720h"
    api_server: ApiServer = Field(default_factory=ApiServer)
    controller_manager: Component = Field(default_factory=Component)
    scheduler: Component = Field(default_factory=Component)
    etcd: EtcdSettings = Field(default_factory=EtcdSettings)
    kubelet: Kubelet = Field(default_factory=Kubelet)
    feature_gates: dict[str, bool] = Field(default_factory=dict)
    allow_scheduling_on_control_planes: bool = False
    kubeadm_timeouts: KubeadmTimeouts = Field(default_factory=KubeadmTimeouts)
    packages: Packages = Field(default_factory=Packages)
    seed: Seed = Field(default_factory=Seed)
    images: dict[str, ImageOverride] = Field(default_factory=dict)
    airgap: Airgap | None = None
    registry_mirrors: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("join_window")
    @classmethod
    def _join_window(cls, v: str) -> str:
        if duration_seconds(v) < 3600:
            raise PydanticCustomError(
                "duration",
                "{value}: the join window is how long after the bake a node may first join; "
                "give at least 1h (e.g. 720h)",
                {"value": repr(v)},
            )
        return v

    @field_validator("dns_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        if not DNS1123_SUBDOMAIN.match(v):
            raise PydanticCustomError("domain", "{value} is not a DNS domain (RFC 1123)", {"value": repr(v)})
        return v


class Profile(Model):
    description: str | None = None
    cluster: Cluster
    defaults: NodeDefaults = Field(default_factory=NodeDefaults)
    nodes: list[Node] = Field(min_length=1)
