"""The profile: what the user writes. Loaded from YAML, merged with `extends:` and `--set`, validated whole.

Validation is in two passes: the pydantic model checks shapes and field values (every error with its
path), then `semantic_problems` checks what only the whole profile can tell (duplicates, overlaps,
topology). Both collect every problem before failing, so a user fixes a profile in one go.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from . import resources, yamlio
from .errors import Problem, ProfileError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
LINUX_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def _parse_ip(value: Any) -> IPAddress:
    if isinstance(value, IPAddress):
        return value
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    try:
        if text is None or isinstance(value, int):
            raise ValueError
        return ipaddress.ip_address(text)
    except ValueError:
        raise PydanticCustomError(
            "ip", "{value} is not an IPv4 or IPv6 address", {"value": repr(value)}
        ) from None


def _parse_cidr(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("cidr", "{value} is not a CIDR", {"value": repr(value)})
    for part in value.split(","):
        try:
            ipaddress.ip_network(part.strip(), strict=True)
        except ValueError as exc:
            raise PydanticCustomError(
                "cidr", "{value} is not a CIDR: {why}", {"value": repr(part), "why": str(exc)}
            ) from None
    return ",".join(p.strip() for p in value.split(","))


def _parse_mac(value: Any) -> str:
    if not isinstance(value, str) or not MAC_RE.match(value.lower()):
        raise PydanticCustomError(
            "mac", "{value} is not a MAC address like 52:54:00:12:34:56", {"value": repr(value)}
        )
    return value.lower()


def _parse_duration(value: Any) -> str:
    if isinstance(value, str):
        m = DURATION_RE.match(value)
        if m and any(m.groups()) and value:
            return value
    raise PydanticCustomError(
        "duration", "{value} is not a duration like 8760h or 24h0m0s", {"value": repr(value)}
    )


def _parse_name(value: Any) -> str:
    if not isinstance(value, str) or not DNS1123_LABEL.match(value):
        raise PydanticCustomError(
            "name",
            "{value} is not a valid name: lower-case letters, digits and '-', starting and ending "
            "with a letter or digit, at most 63 characters (RFC 1123)",
            {"value": repr(value)},
        )
    return value


IP = Annotated[IPAddress, PlainValidator(_parse_ip), PlainSerializer(str)]
CIDR = Annotated[str, PlainValidator(_parse_cidr)]
MAC = Annotated[str, PlainValidator(_parse_mac)]
Duration = Annotated[str, PlainValidator(_parse_duration)]
Name = Annotated[str, PlainValidator(_parse_name)]


def duration_seconds(text: str) -> int:
    """Go-style duration ("8760h", "24h0m0s") to seconds; the text was validated by `Duration`."""
    m = DURATION_RE.match(text)
    assert m is not None
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return h * 3600 + mi * 60 + s


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


class Seed(Model):
    http_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s'\"`$\\;]+$")
    targets: list[SizeTarget] = Field(default_factory=lambda: [SizeTarget.NOCLOUD])
    # Control-plane and external etcd seeds hold the cluster's private keys (CA keys, sa.key,
    # super-admin.conf, etcd server and peer keys); plain HTTP hands them to anyone who can reach the
    # server, so they stay out of the HTTP tree unless the profile says so (builder.packaging).
    http_publish_control_planes: bool = False


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
    # Part of the node's cloud-init instance-id (builder.cloudinit.instance_id): bumping it is how a
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
    # how the kube-apiserver encrypts Secrets in etcd from the first boot (builder/encryption.py)
    secrets_encryption: Literal["secretbox", "aescbc", "none"] = "secretbox"
    certificate_validity_period: Duration = "8760h"
    ca_certificate_validity_period: Duration = "87600h"
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


# --------------------------------------------------------------------------------------------------
# Loading: extends, --set, pydantic errors as path-named problems


def _loc_to_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part.startswith("function-"):  # pydantic's union/validator markers
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        problems.append(Problem(_loc_to_path(err["loc"]), msg))
    return sorted(set(problems), key=lambda p: (p.path, p.message))


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced by the override."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override


_SET_PATH = re.compile(r"([A-Za-z0-9_-]+)|\[(\d+)\]")


def _split_set_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    for segment in path.split("."):
        if not segment:
            raise ValueError("empty path segment")
        pos = 0
        for m in _SET_PATH.finditer(segment):
            if m.start() != pos:
                raise ValueError(f"cannot parse {segment!r}")
            parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
            pos = m.end()
        if pos != len(segment):
            raise ValueError(f"cannot parse {segment!r}")
    return parts


FREE_FORM = ("cluster.kubelet.config.",)
"""Paths into untyped mappings, where a --set value keeps its YAML type (maxPods=110 is an int)."""


def _set_value(raw: str, path: str) -> Any:
    """Parse a --set value without letting YAML guess types for typed fields.

    Scalars stay strings (pydantic converts them by field type, so `1.30` stays "1.30") except
    under FREE_FORM paths; whole `[...]` / `{...}` flow collections are parsed as YAML (a bracketed
    IPv6 endpoint like `[fd00::1]:6443` is not one); `null` / `~` clear a field.
    """
    if raw in ("null", "~"):
        return None
    if path.startswith(FREE_FORM) or (raw[:1], raw[-1:]) in (("[", "]"), ("{", "}")):
        try:
            value = yamlio.load_document(raw, source=f"--set {path}")
        except ProfileError:
            if path.startswith(FREE_FORM):
                raise
            return raw
        if path.startswith(FREE_FORM) or isinstance(value, list | dict):
            return value
    return raw


def apply_set(data: Any, assignment: str) -> Any:
    """Apply one `--set path=value`; the value is parsed as a YAML scalar/flow value."""
    if "=" not in assignment:
        raise ProfileError([Problem(f"--set {assignment}", "expected path=value")])
    path, _, raw = assignment.partition("=")
    try:
        keys = _split_set_path(path)
    except ValueError as exc:
        raise ProfileError([Problem(f"--set {path}", str(exc))]) from None
    value = _set_value(raw, path)
    if not isinstance(data, dict):
        raise ProfileError([Problem("", "profile is not a mapping")])
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        where = _loc_to_path(keys[: i + 1])
        if isinstance(key, int):
            if not isinstance(node, list) or not 0 <= key < len(node):
                raise ProfileError([Problem(where, "no such list item (--set)")])
        elif not isinstance(node, dict):
            raise ProfileError([Problem(where, "parent is not a mapping (--set)")])
        if last:
            node[key] = value
        else:
            if isinstance(key, str) and key not in node:
                node[key] = {}
            node = node[key]
    return data


def _read_raw(ref: str, *, base_dir: Path | None, chain: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """Read a profile by embedded name or path and resolve its `extends:` chain into one mapping."""
    if len(chain) > 8:
        raise ProfileError([Problem("extends", "chain longer than 8 profiles: " + " -> ".join(chain))])
    path = Path(ref)
    if base_dir is not None and not path.is_absolute() and (base_dir / path).exists():
        path = base_dir / path
    if path.suffix in (".yaml", ".yml") or "/" in ref or path.is_file():
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ProfileError([Problem("--profile", f"cannot read {ref}: {exc.strerror}")]) from None
        source, next_base = str(path), path.parent
    else:
        embedded = resources.profile_text(ref)
        if embedded is None:
            names = ", ".join(resources.profile_names())
            raise ProfileError(
                [Problem("--profile", f"no profile file or embedded profile {ref!r} ({names})")]
            )
        text, source, next_base = embedded, f"profiles/{ref}.yaml", None
    if source in chain:
        raise ProfileError([Problem("extends", "cycle: " + " -> ".join((*chain, source)))])
    data = yamlio.load_document(text, source=source)
    if not isinstance(data, dict):
        raise ProfileError([Problem(source, "a profile must be a YAML mapping")])
    if next_base is not None:
        absolutize_paths(data, next_base)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ProfileError([Problem("extends", "must be a profile name or path")])
        base, _ = _read_raw(parent, base_dir=next_base, chain=(*chain, source))
        data = deep_merge(base, data)
    return data, source


def load_profile(ref: str, sets: Sequence[str] = (), *, check_archives: bool = True) -> Profile:
    """Load, merge and fully validate a profile; raise ProfileError listing every problem.

    `check_archives=False` skips the checks of cluster.airgap's image archives (`bake images` lists
    what to put in them before they exist)."""
    data, _ = _read_raw(ref, base_dir=Path.cwd(), chain=())
    for assignment in sets:
        data = apply_set(data, assignment)
    absolutize_paths(data, Path.cwd())  # what --set added is relative to where bake runs
    return validate(data, check_archives=check_archives)


def absolutize_paths(data: dict[str, Any], base: Path) -> None:
    """Make the file paths of cluster.airgap absolute against the directory of the profile file that
    names them, so `extends:` chains and --set each resolve against their own place. Shapes are
    left to validation: only strings where paths belong are touched."""
    cluster = data.get("cluster")
    airgap = cluster.get("airgap") if isinstance(cluster, dict) else None
    if not isinstance(airgap, dict):
        return
    lists = list(airgap["images"].values()) if isinstance(airgap.get("images"), dict) else []
    lists.append(airgap.get("cniManifests"))
    for paths in lists:
        if isinstance(paths, list):
            for i, item in enumerate(paths):
                if isinstance(item, str) and item and not Path(item).is_absolute():
                    paths[i] = str(base / item)


def validate(data: Any, *, check_archives: bool = True) -> Profile:
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        extra = [p for p in _raw_problems(data) if p not in _pydantic_problems(exc)]
        raise ProfileError(_pydantic_problems(exc) + extra) from None
    problems = list(semantic_problems(profile, check_archives=check_archives))
    if problems:
        raise ProfileError(problems)
    return profile


# --------------------------------------------------------------------------------------------------
# Whole-profile checks


def _networks(cidrs: str) -> list[IPNetwork]:
    return [ipaddress.ip_network(c) for c in cidrs.split(",")]


def split_host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    """Split `host[:port]` / `[v6]:port` / bare IPv6 the way kubeadm's endpoint parsing accepts."""
    if endpoint.startswith("["):
        host, _, rest = endpoint[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"cannot parse {endpoint!r}")
        port_text = rest[1:]
    elif endpoint.count(":") > 1:
        host, port_text = endpoint, ""
    else:
        host, _, port_text = endpoint.partition(":")
    port = default_port
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} is not 1-65535")
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not DNS1123_SUBDOMAIN.match(host):
            raise ValueError(f"host {host!r} is neither an IP address nor a DNS name") from None
    return host, port


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


def _raw_problems(data: Any) -> list[Problem]:
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


def semantic_problems(p: Profile, *, check_archives: bool = True) -> Iterator[Problem]:
    from . import versions

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

    seen_users: dict[str, int] = {}
    for i, u in enumerate(p.defaults.users):
        if u.name in seen_users:
            yield Problem(f"defaults.users[{i}].name", f"duplicate of defaults.users[{seen_users[u.name]}]")
        seen_users[u.name] = i

    # kubeadm's, the kubelet's and the OS's rules on the same input (builder/validation.py), so nothing
    # that rendering or the node would refuse gets past loading, whatever --only renders.
    from . import validation

    yield from validation.problems(p)

    from . import airgap

    yield from airgap.profile_problems(p, check_archives=check_archives)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
