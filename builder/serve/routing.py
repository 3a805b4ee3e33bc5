"""Which file a seed request may have: a node gets its own seed, nothing else, and the rules say why.

The URL space (`/<cluster>/` is what `outputs/<cluster>/http/` holds, so a bake with
`--base-url http://SERVER:PORT/<cluster>` writes PXE snippets that point here):

- `/<cluster>/<node>/{user-data,meta-data,network-config,vendor-data}`: nocloud-net's files;
- `/<cluster>/<node>/{boot.ipxe,cmdline.txt}`: the node's PXE snippets (a bake with a base URL);
- `/ipxe?mac=<MAC>`: one iPXE entry for every node (`chain http://SERVER/ipxe?mac=${net0/mac}`): the
  node's boot.ipxe, found by its MAC;
- `/<cluster>/_images/<arch>/<file>`: the air-gap images seed, for the cluster's nodes of that arch.

The rules, each refused with 403 and its reason (the server logs it):

1. **source address**: the request comes from the node's address in the manifest (the provisioning
   DHCP server gives each node its profile address, or the node has it already): one node cannot
   read another's seed from its own address;
2. **MAC**: a request that names a MAC (`?mac=`, which iPXE passes) must name the node's; an iPXE
   request must name one when the manifest has the node's (cloud-init's fetches cannot, so for them the
   MAC is checked only when given);
3. **the control-plane rule**: a control plane's or etcd member's seed (the cluster's CA keys,
   super-admin.conf, etcd keys) is served only when the bake published it
   (`cluster.seed.httpPublishControlPlanes`); neither the source address nor the MAC is a proof (both
   can be forged on the segment), and TLS hides the bytes but proves nothing about the client either,
   so TLS does not lift this rule.

Anything else (an unknown cluster, node, file or route) is 404. Pure: the server does the I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ..model.syntax import IPAddress
from .catalog import Catalog, Cluster, Node

SEED_FILES = ("user-data", "meta-data", "network-config", "vendor-data")
PXE_FILES = ("boot.ipxe", "cmdline.txt")
IPXE_ROUTE = "/ipxe"
IMAGES_DIR = "_images"
_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}\Z")
_MAC = re.compile(r"^[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}\Z")


@dataclass(frozen=True)
class Decision:
    status: int
    reason: str
    """Why, for the log line (never sent to the client beyond the status)."""
    file: Path | None = None
    node: Node | None = None
    content_type: str = "text/plain; charset=utf-8"

    @property
    def ok(self) -> bool:
        return self.status == 200


def normalise_mac(text: str) -> str | None:
    """aa:bb:cc:dd:ee:ff from any of iPXE's spellings (colons, hyphens, none; any case), else None."""
    text = text.strip().lower()
    if not _MAC.match(text):
        return None
    digits = re.sub(r"[:-]", "", text)
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def source_address(host: str) -> IPAddress | None:
    """The client's address as the socket gives it; an IPv4-mapped IPv6 address (a dual-stack listener)
    is the IPv4 address it maps."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _content_type(name: str) -> str:
    if name in SEED_FILES or name in PXE_FILES or name.endswith((".txt", "SUMS", ".yaml", ".yml")):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def _authorise(node: Node, source: IPAddress | None, mac: str | None, mac_required: bool) -> Decision | None:
    """The rules for one node's seed; None when the request may have it."""
    who = f"{node.cluster}/{node.name}"
    if mac is not None and mac != node.mac:
        return Decision(
            403, f"refused: MAC {mac} is not {who}'s ({node.mac or 'none in the manifest'})", node=node
        )
    if mac_required and node.mac is not None and mac is None:
        return Decision(
            403, f"refused: an iPXE request for {who} must name its MAC (?mac=${{net0/mac}})", node=node
        )
    if source != node.ip:
        return Decision(403, f"refused: source {source} is not {who}'s address {node.ip}", node=node)
    if not node.published:
        return Decision(
            403,
            f"refused: {who} is a {node.role}: its seed holds the cluster's private keys and the bake did "
            "not publish it (cluster.seed.httpPublishControlPlanes: false)",
            node=node,
        )
    return None


def _file(cluster: Cluster, rel: str, node: Node | None, what: str) -> Decision:
    path = cluster.tree / "http" / rel
    if not path.is_file():
        return Decision(404, f"no {what} ({rel} is not in the tree)", node=node)
    return Decision(200, f"{what}", file=path, node=node, content_type=_content_type(path.name))


def decide(catalog: Catalog, path: str, query: Mapping[str, Sequence[str]], client: str) -> Decision:
    """The decision for a GET of `path` (already split from its query) from the address `client`."""
    source = source_address(client)
    macs = query.get("mac", [])
    if len(macs) > 1:
        return Decision(400, "refused: more than one mac=")
    mac: str | None = None
    if macs:
        mac = normalise_mac(macs[0])
        if mac is None:
            return Decision(400, f"refused: {macs[0][:40]!r} is not a MAC address")
    if path == IPXE_ROUTE:
        if mac is None:
            return Decision(403, "refused: /ipxe needs the node's MAC (?mac=${net0/mac})")
        node = catalog.by_mac.get(mac)
        if node is None:
            return Decision(403, f"refused: no node has MAC {mac}")
        refused = _authorise(node, source, mac, mac_required=True)
        if refused is not None:
            return refused
        return _file(
            catalog.clusters[node.cluster], f"{node.name}/boot.ipxe", node, f"iPXE script of {node.name}"
        )
    parts = [unquote(p) for p in path.split("/")[1:]]
    if len(parts) < 3 or any(not p or p in (".", "..") or "/" in p or "\\" in p for p in parts):
        return Decision(404, "no such route")
    cluster = catalog.clusters.get(parts[0])
    if cluster is None:
        return Decision(404, f"no cluster {parts[0][:64]!r}")
    if parts[1] == IMAGES_DIR:
        return _images(cluster, parts[2:], source)
    if len(parts) != 3:
        return Decision(404, "no such route")
    node = cluster.nodes.get(parts[1])
    if node is None:
        return Decision(404, f"no node {parts[1][:64]!r} in {cluster.name}")
    name = parts[2]
    if name not in SEED_FILES and name not in PXE_FILES:
        return Decision(404, f"no seed file {name[:64]!r}", node=node)
    refused = _authorise(node, source, mac, mac_required=name == "boot.ipxe")
    if refused is not None:
        return refused
    return _file(cluster, f"{node.name}/{name}", node, f"{name} of {node.name}")


def _images(cluster: Cluster, rest: list[str], source: IPAddress | None) -> Decision:
    """The images seed of one architecture, for the cluster's nodes of that architecture only."""
    # archives at the seed's root, the CNI manifests under cni/ (builder.node.airgap)
    if not 2 <= len(rest) <= 3 or not all(_SAFE_FILE.match(p) for p in rest[1:]):
        return Decision(404, "no such images file")
    arch, name = rest[0], "/".join(rest[1:])
    nodes = [n for n in cluster.nodes.values() if n.ip == source]
    if not nodes:
        return Decision(403, f"refused: source {source} is no node of {cluster.name}")
    if all(n.arch != arch for n in nodes):
        return Decision(403, f"refused: {nodes[0].name} runs {nodes[0].arch}, not {arch}", node=nodes[0])
    return _file(cluster, f"{IMAGES_DIR}/{arch}/{name}", nodes[0], f"images seed {arch}/{name}")
