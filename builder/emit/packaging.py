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


@dataclass(frozen=True)
class UserDataCap:
    """A provider's user-data cap, counted the way its API counts it.

    Nova checks the base64 text it is given (`maxLength` 65,535 on `user_data`, so at most 49,149
    bytes), the others the bytes. A provider whose API field carries any bytes (base64 in transit) can
    take `user-data.gz`: cloud-init decompresses gzip user-data whatever the datasource.
    """

    limit: int
    counts_base64: bool
    takes_gzip: bool
    source: str

    def measure(self, size: int) -> int:
        """What the provider counts for `size` bytes of user-data."""
        return 4 * -(-size // 3) if self.counts_base64 else size

    def fits(self, size: int) -> bool:
        return self.measure(size) <= self.limit

    def ships(self, raw: int, gz: int) -> str | None:
        """Which of a node's files to give the provider: `user-data`, `user-data.gz`, or None (neither
        fits)."""
        if self.fits(raw):
            return "user-data"
        return "user-data.gz" if self.takes_gzip and self.fits(gz) else None

    def describe(self, size: int) -> str:
        """`size` as the provider counts it: `54,329 bytes, 72,440 in base64`."""
        return f"{size:,} bytes" + (f", {self.measure(size):,} in base64" if self.counts_base64 else "")


CAPS: dict[SizeTarget, UserDataCap] = {
    SizeTarget.AWS: UserDataCap(16384, counts_base64=False, takes_gzip=True,
                                source="EC2 user data, before base64"),
    SizeTarget.HETZNER: UserDataCap(32768, counts_base64=False, takes_gzip=False,
                                    source="user_data, a JSON string: text only"),
    SizeTarget.OPENSTACK: UserDataCap(65535, counts_base64=True, takes_gzip=True,
                                      source="nova user_data: maxLength of the base64 text"),
    SizeTarget.AZURE: UserDataCap(65535, counts_base64=False, takes_gzip=True,
                                  source="customData: the decoded binary array"),
    SizeTarget.GCP: UserDataCap(262144, counts_base64=False, takes_gzip=False,
                                source="metadata value, a string: text only"),
}  # fmt: skip
"""Every target but `nocloud`, which has no cap."""


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
        cap = CAPS.get(target)
        if cap is None or cap.ships(size, len(gz)):
            continue  # user-data.gz: gzip_notes says to ship it
        gz_clause = (
            f"not even its gzip form user-data.gz fits ({cap.describe(len(gz))}), "
            if cap.takes_gzip
            else f"{target.value} takes text user-data only, "
        )
        problems.append(
            Problem(
                f"nodes[{node_index}] ({rendered.node.name})",
                f"user-data is {cap.describe(size)}: {cap.measure(size) - cap.limit:,} over the "
                f"{target.value} limit of {cap.limit:,} ({cap.source}); {gz_clause}serve the HTTP seed "
                f"tree instead (cluster.seed.httpBaseUrl, outputs/<cluster>/http/{http_note})",
            )
        )
    return problems


def gzip_notes(sizes: Sequence[tuple[str, int, int]], targets: Sequence[SizeTarget]) -> list[str]:
    """For each target whose cap the raw user-data of some nodes exceeds while their gzip form fits
    and the target takes gzip: which file to ship instead. `sizes`: (node, raw size, gzip size)."""
    notes = []
    for target in targets:
        cap = CAPS.get(target)
        if cap is None:
            continue
        over = [(name, gz) for name, raw, gz in sizes if cap.ships(raw, gz) == "user-data.gz"]
        if not over:
            continue
        names = ", ".join(name for name, _ in over[:5])
        if len(over) > 5:
            names += f" and {len(over) - 5} more"
        notes.append(
            f"{target.value}: ship nodes/<node>/user-data.gz, not user-data, for {names}: their raw "
            f"user-data is over the {target.value} limit of {cap.limit:,} ({cap.source}), their gzip form "
            f"fits (largest {cap.describe(max(gz for _, gz in over))}; cloud-init decompresses it)"
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
