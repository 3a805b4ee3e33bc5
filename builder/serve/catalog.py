"""What one `bake serve` serves: the clusters of the output trees it was given, read once at start.

Each tree's manifest names the nodes (role, address, MAC, architecture) and whether the bake published
the seeds that hold the cluster's keys; the secrets bundle (`--secrets`, default secrets/<cluster>, as
for every command) gives each node's report key and, for TLS, the seed server's certificate. Files are
read from the tree at each request, through its `outputs/<cluster>` link, so a re-bake's seeds are
served at once; a node added by a re-bake needs a restart of the server (its manifest is read here).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..emit import packaging
from ..emit.outputs import STATE_DIR
from ..errors import BakeError, Problem
from ..model.syntax import DNS1123_LABEL, MAC_RE, IPAddress
from ..pki import bundledir, sealing, secrets

STATE_FILE = "serve.sqlite"


@dataclass(frozen=True)
class Node:
    cluster: str
    name: str
    role: str
    ip: IPAddress
    mac: str | None
    arch: str
    published: bool
    """Its seed may be served (packaging.http_published: a worker, or the bake published key seeds)."""
    key: bytes | None = field(default=None, repr=False)
    """Its report key (hex text, as on the node); None when the cluster takes no reports."""


@dataclass(frozen=True)
class Cluster:
    name: str
    tree: Path
    """outputs/<cluster>, the link a bake swaps: files are read through it at each request."""
    state: Path
    """The reports' state (SQLite): beside the bake's lock, outside the generations a re-bake replaces."""
    publish_control_planes: bool
    report_url: str | None
    nodes: dict[str, Node]
    server_pem: tuple[bytes, bytes] | None = field(default=None, repr=False)
    """(certificate, key) of the seed server, from the bundle (an https:// seed URL)."""

    @property
    def reports(self) -> bool:
        return any(n.key is not None for n in self.nodes.values())


@dataclass
class Catalog:
    clusters: dict[str, Cluster]
    by_mac: dict[str, Node]

    def node(self, cluster: str, name: str) -> Node | None:
        c = self.clusters.get(cluster)
        return c.nodes.get(name) if c is not None else None


def state_path(tree: Path, cluster: str) -> Path:
    """Where a cluster's report state lives: outputs/.bake/<cluster>/serve.sqlite for a tree given as
    its link (or as one of its generations); inside the tree itself for a tree copied elsewhere."""
    tree = tree.absolute()
    if tree.is_symlink():
        return tree.parent / STATE_DIR / cluster / STATE_FILE
    if tree.parent.parent.name == STATE_DIR and tree.parent.name == cluster:
        return tree.parent / STATE_FILE
    return tree / STATE_FILE


def _manifest(tree: Path) -> dict[str, Any]:
    try:
        doc = json.loads((tree / "manifest.json").read_bytes())
    except OSError as exc:
        raise BakeError(
            [Problem(str(tree), f"not a baked output tree: manifest.json {exc.strerror}")]
        ) from None
    except ValueError as exc:
        raise BakeError([Problem(f"{tree}/manifest.json", f"not JSON: {exc}")]) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise BakeError([Problem(f"{tree}/manifest.json", "not a bake manifest")])
    return doc


def _node(cluster: str, entry: Any, publish: bool, where: str) -> Node:
    try:
        name, role, arch = str(entry["name"]), str(entry["role"]), str(entry["arch"])
        ip = ipaddress.ip_address(entry["ip"])
        mac = entry.get("mac")
    except (KeyError, TypeError, ValueError) as exc:
        raise BakeError([Problem(where, f"not a node entry: {exc}")]) from None
    if not DNS1123_LABEL.match(name) or (mac is not None and not MAC_RE.match(str(mac))):
        raise BakeError([Problem(where, f"bad node name or MAC: {name!r} {mac!r}")])
    return Node(cluster, name, role, ip, mac, arch, packaging.http_published(role, publish))


def load_cluster(
    tree: Path,
    secrets_dir: Path | None = None,
    keys: sealing.Keys | None = None,
    *,
    with_secrets: bool = True,
    tls: bool = False,
) -> Cluster:
    """One tree and, when its nodes report or the server speaks TLS, its bundle (checked whole);
    `with_secrets` False reads the manifest only (`bake status`)."""
    from ..check import bundle_location

    doc = _manifest(tree)
    name = doc.get("cluster")
    if not isinstance(name, str) or not DNS1123_LABEL.match(name):
        raise BakeError([Problem(f"{tree}/manifest.json", "names no cluster")])
    publish = doc.get("httpPublishControlPlanes") is True
    report_url = doc.get("reportUrl") if isinstance(doc.get("reportUrl"), str) else None
    nodes = [_node(name, e, publish, f"{tree}/manifest.json nodes[{i}]") for i, e in enumerate(doc["nodes"])]
    where = bundle_location(tree, doc, secrets_dir)
    bundle = None
    if with_secrets and (report_url is not None or tls):
        bundledir.interrupted(where)
        reader = sealing.Reader(where, keys or sealing.Keys.from_env(prompt=False))
        bundle = secrets.load_bundle(where, reader)
        if bundle is None:
            why = f"the nodes of {name} report, and their keys are in it" if report_url else "--tls needs it"
            raise BakeError([Problem(str(where), f"no secrets bundle: {why} (--secrets DIR names it)")])
    if bundle is not None and bundle.report_key is not None:
        nodes = [replace(n, key=secrets.report_node_key(bundle, name, n.name)) for n in nodes]
    server = None
    if bundle is not None and bundle.seed_server is not None:
        server = (bundle.seed_server.cert_pem, bundle.seed_server.key_pem)
    return Cluster(
        name=name,
        tree=tree,
        state=state_path(tree, name),
        publish_control_planes=publish,
        report_url=report_url,
        nodes={n.name: n for n in nodes},
        server_pem=server,
    )


def catalog(clusters: list[Cluster]) -> Catalog:
    """The clusters served together: names and MACs must be unique across them (iPXE finds a node by
    its MAC alone)."""
    problems: list[Problem] = []
    by_name: dict[str, Cluster] = {}
    by_mac: dict[str, Node] = {}
    for c in clusters:
        if c.name in by_name:
            problems.append(Problem(str(c.tree), f"cluster {c.name} is served twice"))
            continue
        by_name[c.name] = c
        for n in c.nodes.values():
            if n.mac is None:
                continue
            other = by_mac.get(n.mac)
            if other is not None:
                problems.append(
                    Problem(f"{c.name}/{n.name}", f"MAC {n.mac} is also {other.cluster}/{other.name}'s")
                )
            by_mac[n.mac] = n
    if problems:
        raise BakeError(problems)
    return Catalog(by_name, by_mac)
