"""Per-node artifacts from a rendered node: NoCloud seed ISO, raw and gzip user-data, HTTP seed tree
(workers only, unless the profile publishes the seeds that hold the cluster's keys: http_published).

Size limits are the user-data limits of the targets the profile names; a node that cannot fit fails
the bake (before anything is swapped in) with the overflow and the way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import Problem
from ..model import Role, SizeTarget
from ..node.archive import gzip_bytes as gzip_bytes  # the seeds' user-data.gz, deterministic
from ..node.cloudinit import RenderedNode
from . import iso

SIZE_LIMITS: dict[SizeTarget, int | None] = {
    SizeTarget.AWS: 16384,  # EC2 user data, before base64
    SizeTarget.HETZNER: 32768,
    SizeTarget.OPENSTACK: 65535,  # nova user_data column
    SizeTarget.AZURE: 65535,  # customData, before base64
    SizeTarget.GCP: 262144,  # metadata value limit
    SizeTarget.NOCLOUD: None,
}


# Roles whose seed holds private keys of the cluster: control planes (CA keys, sa.key, super-admin.conf,
# every control-plane leaf) and external etcd members (etcd server and peer keys).
KEY_HOLDING_ROLES = frozenset({Role.CONTROL_PLANE, Role.ETCD})


@dataclass(frozen=True)
class Artifact:
    rel: str
    data: bytes
    mode: int
    same_as: str | None = None
    """Another artifact of the node with these very bytes and mode, written before this one: this one
    is a hard link to it (the HTTP tree's copy of a seed file)."""


ACCEPTS_GZIP = frozenset({SizeTarget.AWS})
"""Targets that take gzip user-data as it is (cloud-init decompresses it): EC2 documents it. Others
may too, but the bake only counts on what the provider documents."""


def _fits_as_gzip(target: SizeTarget, limit: int, gz: bytes) -> bool:
    return target in ACCEPTS_GZIP and len(gz) <= limit


def size_problems(
    node_index: int, rendered: RenderedNode, targets: list[SizeTarget], gz: bytes
) -> list[Problem]:
    problems = []
    size = len(rendered.user_data)
    http_note = (
        "; a control-plane or etcd seed only with cluster.seed.httpPublishControlPlanes"
        if rendered.node.role in KEY_HOLDING_ROLES
        else ""
    )
    for target in targets:
        limit = SIZE_LIMITS[target]
        if limit is None or size <= limit or _fits_as_gzip(target, limit, gz):
            continue  # the last: gzip_notes says to ship user-data.gz
        way_out = (
            f"its gzip form user-data.gz ({len(gz):,} bytes) fits: ship that instead if {target.value} "
            "takes gzip user-data"
            if len(gz) <= limit
            else "not even gzip fits"
        )
        problems.append(
            Problem(
                f"nodes[{node_index}] ({rendered.node.name})",
                f"user-data is {size:,} bytes, {size - limit:,} over the {target.value} limit of {limit:,}; "
                f"{way_out}, or serve the HTTP seed tree (cluster.seed.httpBaseUrl, outputs/<cluster>/http/"
                f"{http_note})",
            )
        )
    return problems


def gzip_notes(sizes: Sequence[tuple[str, int, int]], targets: Sequence[SizeTarget]) -> list[str]:
    """For each target whose limit the raw user-data of some nodes exceeds while their gzip form fits
    and the target takes gzip: which file to ship instead. `sizes`: (node, raw size, gzip size)."""
    notes = []
    for target in targets:
        limit = SIZE_LIMITS[target]
        if limit is None or target not in ACCEPTS_GZIP:
            continue
        over = [(name, gz) for name, raw, gz in sizes if raw > limit and gz <= limit]
        if not over:
            continue
        names = ", ".join(name for name, _ in over[:5])
        if len(over) > 5:
            names += f" and {len(over) - 5} more"
        notes.append(
            f"{target.value}: ship nodes/<node>/user-data.gz, not user-data, for {names}: their raw "
            f"user-data is over the {target.value} limit of {limit:,} bytes, their gzip form fits "
            f"(largest {max(gz for _, gz in over):,} bytes; {target.value} takes gzip user-data)"
        )
    return notes


def kernel_cmdline(base_url: str, node: str) -> str:
    """The NoCloud-net kernel argument; the ';' must be escaped as '\\;' inside GRUB configs.

    `nocloud-net`, not `nocloud`: cloud-init before 24.1 (Debian 12, Ubuntu 22.04, EL9) reads
    `ds=nocloud` as the local mode, whose datasource is dropped once the network stage runs, so the
    node boots on the fallback datasource and never runs its user-data. Later versions still accept
    `nocloud-net` (a deprecated alias since 24.1)."""
    return f"ds=nocloud-net;s={base_url.rstrip('/')}/{node}/"


def ipxe_script(base_url: str, node: str) -> str:
    return (
        "#!ipxe\n"
        f"# {node}: boot your installer kernel/initrd with the NoCloud-net seed for this node.\n"
        "# Set ${kernel} and ${initrd} to your image's URLs before chaining this script.\n"
        f"kernel ${{kernel}} ip=dhcp {kernel_cmdline(base_url, node)}\n"
        "initrd ${initrd}\n"
        "boot\n"
    )


def http_published(role: Role | str, publish_control_planes: bool) -> bool:
    """Whether a node's seed goes into the plain-HTTP tree (`http/<node>/`); `role` may be the text of
    a manifest (Role is a StrEnum: "etcd" == Role.ETCD).

    Anyone who can reach a plain HTTP server can fetch what it serves, and nocloud-net has no client
    authentication: a control-plane seed there hands out the cluster CA keys and super-admin.conf. So
    only workers (whose seed carries no private key of the cluster, only their join credential) are
    published, unless the profile sets cluster.seed.httpPublishControlPlanes (an isolated provisioning
    network). The bake, `bake serve` and `bake check` all decide by this function; a role it does not
    know (a tampered manifest) is withheld like a key holder.
    """
    return role == Role.WORKER or publish_control_planes


SEED_NAMES = ("user-data", "meta-data", "network-config")


def seed_files(rendered: RenderedNode) -> dict[str, bytes]:
    """The three NoCloud files, as the ISO, the node directory and the HTTP tree carry them."""
    contents = (rendered.user_data, rendered.meta_data, rendered.network_config)
    return dict(zip(SEED_NAMES, contents, strict=True))


def http_artifacts(name: str, seed: dict[str, bytes], base_url: str | None) -> list[Artifact]:
    """One node's nocloud-net directory `http/<node>/` (and its PXE / iPXE snippets with a base URL);
    its seed files are the node directory's (`nodes/<node>/`), written first."""
    out = [
        Artifact(f"http/{name}/{fname}", data, 0o600, same_as=f"nodes/{name}/{fname}")
        for fname, data in seed.items()
    ]
    out.append(Artifact(f"http/{name}/vendor-data", b"", 0o600))
    if base_url:
        out.append(
            Artifact(f"http/{name}/cmdline.txt", (kernel_cmdline(base_url, name) + "\n").encode(), 0o644)
        )
        out.append(Artifact(f"http/{name}/boot.ipxe", ipxe_script(base_url, name).encode(), 0o644))
    return out


def node_artifacts(
    rendered: RenderedNode, *, epoch: int, base_url: str | None, gz: bytes, http: bool
) -> list[Artifact]:
    """Everything written for one node, relative to the cluster's output root, 0600 throughout;
    `http` (see http_published) says whether its HTTP seed directory is among them."""
    return seed_artifacts(
        rendered.node.name, seed_files(rendered), epoch=epoch, base_url=base_url, gz=gz, http=http
    )


def seed_artifacts(
    name: str, seed: dict[str, bytes], *, epoch: int, base_url: str | None, gz: bytes, http: bool
) -> list[Artifact]:
    """node_artifacts from the node's three seed files (`make bench` packs baked ones with it)."""
    out = [Artifact(f"nodes/{name}/{fname}", data, 0o600) for fname, data in seed.items()]
    out.append(Artifact(f"nodes/{name}/user-data.gz", gz, 0o600))
    out.append(Artifact(f"nodes/{name}/seed.iso", iso.build_seed_iso(seed, epoch=epoch), 0o600))
    if http:
        out += http_artifacts(name, seed, base_url)
    return out
