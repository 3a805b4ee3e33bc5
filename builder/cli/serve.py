"""`bake serve` (the seed server and the nodes' reports) and `bake status` (what the reports told)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from ..errors import BakeError, Problem
from .common import age_arguments, bundle_keys


def _serve_parser() -> argparse.ArgumentParser:
    from ..serve import server

    p = argparse.ArgumentParser(
        prog="bake serve",
        description="Serve the seed trees of baked clusters to their nodes (nocloud-net files, iPXE scripts, "
        "the air-gap images seed): each node gets only its own seed, matched by its source address and "
        "MAC; control-plane seeds only where the bake published them. Take the nodes' signed first-boot "
        "reports (cluster.seed.reportUrl) and show them live at / (the --admin networks only). Every "
        "request is logged on stderr.",
    )
    p.add_argument(
        "trees", type=Path, nargs="+", metavar="TREE", help="a cluster's output tree, e.g. outputs/ha-stacked"
    )
    p.add_argument(
        "--listen",
        default=server.DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help="address to bind (default: %(default)s; the provisioning network's, e.g. 10.77.0.1:8080)",
    )
    p.add_argument(
        "--secrets",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="the secrets bundle of each TREE, in their order (default: secrets/<cluster>); it holds the "
        "nodes' report keys and the seed server certificate",
    )
    age_arguments(p)
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with the bundle's seed server certificate (an https:// seed URL in the profile)",
    )
    p.add_argument(
        "--admin",
        action="append",
        default=[],
        metavar="CIDR",
        help="networks that may see the live page and /api/state (repeatable; default: loopback only)",
    )
    return p


def serve_main(argv: Sequence[str]) -> int:
    import ipaddress

    from ..serve import catalog, server

    args = _serve_parser().parse_args(argv)
    if len(args.secrets) > len(args.trees):
        raise BakeError([Problem("--secrets", "more bundles than trees: one --secrets per TREE, in order")])
    admin = []
    for text in args.admin:
        try:
            admin.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise BakeError([Problem("--admin", f"{text!r}: {exc}")]) from None
    keys = bundle_keys(args)
    clusters = [
        catalog.load_cluster(tree, args.secrets[i] if i < len(args.secrets) else None, keys, tls=args.tls)
        for i, tree in enumerate(args.trees)
    ]
    cat = catalog.catalog(clusters)
    srv = server.make_server(
        cat, server.parse_listen(args.listen), tls=args.tls, admin=tuple(admin) or server.DEFAULT_ADMIN
    )
    err = Console(stderr=True)
    admins = ", ".join(str(n) for n in srv.admin)
    err.print(f"bake serve: {srv.url} (live page for {admins})", highlight=False)
    for c in cat.clusters.values():
        served = [n.name for n in c.nodes.values() if n.published]
        withheld = [n.name for n in c.nodes.values() if not n.published]
        err.print(
            f"  {c.name}: seeds at {srv.url}{c.name}/<node>/ for {', '.join(served) or 'no node'}"
            + (f"; withheld (their seeds hold the cluster's keys): {', '.join(withheld)}" if withheld else "")
            + (f"; reports to {c.report_url}, state {c.state}" if c.reports else "; its nodes do not report"),
            highlight=False,
            soft_wrap=True,
        )
    server.run(srv)
    err.print("bake serve: stopped; the reports' state stays on disk", highlight=False)
    return 0


def _status_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bake status",
        description="Show the first boot of a cluster's nodes as their reports to `bake serve` tell it: each "
        "node's role, address, current step, time per step, failures with their log tail.",
    )
    p.add_argument("tree", type=Path, help="the cluster's output directory, e.g. outputs/ha-stacked")
    p.add_argument("--json", action="store_true", help="print the state as JSON (the live page's document)")
    return p


def status_main(argv: Sequence[str]) -> int:
    from ..serve import status

    args = _status_parser().parse_args(argv)
    doc = status.document(args.tree)
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        status.render(Console(width=None if sys.stdout.isatty() else 200), doc)
    return 0
