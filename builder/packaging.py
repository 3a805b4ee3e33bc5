"""Per-node artifacts from a rendered node: NoCloud seed ISO, raw and gzip user-data, HTTP seed tree.

Size limits are the user-data limits of the targets the profile names; a node that cannot fit fails
the bake (before anything is swapped in) with the overflow and the way out.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

from . import iso
from .cloudinit import RenderedNode
from .errors import Problem
from .profile import SizeTarget

SIZE_LIMITS: dict[SizeTarget, int | None] = {
    SizeTarget.AWS: 16384,  # EC2 user data, before base64
    SizeTarget.HETZNER: 32768,
    SizeTarget.OPENSTACK: 65535,  # nova user_data column
    SizeTarget.AZURE: 65535,  # customData, before base64
    SizeTarget.GCP: 262144,  # metadata value limit
    SizeTarget.NOCLOUD: None,
}


@dataclass(frozen=True)
class Artifact:
    rel: str
    data: bytes
    mode: int


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (mtime 0, no file name) that cloud-init accepts as user-data."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def size_problems(
    node_index: int, rendered: RenderedNode, targets: list[SizeTarget], gz: bytes
) -> list[Problem]:
    problems = []
    size = len(rendered.user_data)
    for target in targets:
        limit = SIZE_LIMITS[target]
        if limit is None or size <= limit:
            continue
        way_out = (
            f"its gzip form user-data.gz ({len(gz):,} bytes) fits: ship that instead"
            if len(gz) <= limit
            else "not even gzip fits"
        )
        problems.append(
            Problem(
                f"nodes[{node_index}] ({rendered.node.name})",
                f"user-data is {size:,} bytes, {size - limit:,} over the {target.value} limit of {limit:,}; "
                f"{way_out}, or serve the HTTP seed tree (cluster.seed.httpBaseUrl, outputs/<cluster>/http/)",
            )
        )
    return problems


def kernel_cmdline(base_url: str, node: str) -> str:
    """The NoCloud-net kernel argument; the ';' must be escaped as '\\;' inside GRUB configs."""
    return f"ds=nocloud;s={base_url.rstrip('/')}/{node}/"


def ipxe_script(base_url: str, node: str) -> str:
    return (
        "#!ipxe\n"
        f"# {node}: boot your installer kernel/initrd with the NoCloud-net seed for this node.\n"
        "# Set ${kernel} and ${initrd} to your image's URLs before chaining this script.\n"
        f"kernel ${{kernel}} ip=dhcp {kernel_cmdline(base_url, node)}\n"
        "initrd ${initrd}\n"
        "boot\n"
    )


def node_artifacts(rendered: RenderedNode, *, epoch: int, base_url: str | None, gz: bytes) -> list[Artifact]:
    """Everything written for one node, relative to the cluster's output root, 0600 throughout."""
    name = rendered.node.name
    seed = {
        "user-data": rendered.user_data,
        "meta-data": rendered.meta_data,
        "network-config": rendered.network_config,
    }
    out = [Artifact(f"nodes/{name}/{fname}", data, 0o600) for fname, data in seed.items()]
    out.append(Artifact(f"nodes/{name}/user-data.gz", gz, 0o600))
    out.append(Artifact(f"nodes/{name}/seed.iso", iso.build_seed_iso(seed, epoch=epoch), 0o600))
    out += [Artifact(f"http/{name}/{fname}", data, 0o600) for fname, data in seed.items()]
    out.append(Artifact(f"http/{name}/vendor-data", b"", 0o600))
    if base_url:
        out.append(
            Artifact(f"http/{name}/cmdline.txt", (kernel_cmdline(base_url, name) + "\n").encode(), 0o644)
        )
        out.append(Artifact(f"http/{name}/boot.ipxe", ipxe_script(base_url, name).encode(), 0o644))
    return out
