"""`bake images`: every image a profile's nodes need, per architecture and role."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console

from ..errors import BakeError, Problem
from .common import DEFAULT_PROFILE


def _images_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bake images",
        description="List every container image the nodes of a profile need, per architecture and role: "
        "kubeadm's images for the profile's version and imageRepository, the load balancer's and the "
        "CNI's. With cluster.airgap these are what the image archives must hold.",
    )
    p.add_argument(
        "-p",
        "--profile",
        default=DEFAULT_PROFILE,
        help="embedded profile name or path to a YAML profile (default: %(default)s)",
    )
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the lists as JSON")
    out.add_argument(
        "--arch", help="print only this architecture's images, one a line (e.g. for `xargs -n1 docker pull`)"
    )
    return p


def images_main(argv: Sequence[str]) -> int:
    from ..node import airgap
    from ..plan import build_plan, images
    from ..validation.profile import load_profile

    args = _images_parser().parse_args(argv)
    plan = build_plan(load_profile(args.profile, args.sets, check_archives=False))
    listing = images.listing(plan)
    if args.arch is not None:
        if args.arch not in listing["architectures"]:
            known = ", ".join(listing["architectures"])
            raise BakeError([Problem("--arch", f"no node runs on {args.arch!r} (the nodes run {known})")])
        sys.stdout.write("".join(f"{ref}\n" for ref in listing["architectures"][args.arch]["images"]))
        return 0
    if args.json:
        sys.stdout.write(json.dumps(listing, indent=2) + "\n")
        return 0
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(
        f"{plan.name}: Kubernetes {plan.version}, imageRepository {plan.settings.image_repository}",
        highlight=False,
    )
    for arch, entry in listing["architectures"].items():
        for role, held in entry["roles"].items():
            console.print(f"{arch} {role} ({', '.join(held['nodes'])})", highlight=False)
            for ref in held["images"]:
                console.print(f"  {ref}", highlight=False, soft_wrap=True)
    if not listing["cniImagesKnown"]:
        console.print(
            f"cni {plan.settings.cni.value}: its images are not known at bake time (its manifests are "
            "downloaded at first boot); name them in cluster.airgap.cniManifests",
            highlight=False,
        )
    if plan.settings.airgap is not None:
        try:
            for seed in airgap.seeds(plan):
                state = (
                    "not all named, checked at first boot"
                    if seed.unknown
                    else (f"missing {', '.join(seed.missing)}" if seed.missing else "complete")
                )
                console.print(f"{seed.arch} archives: {state}", highlight=False, soft_wrap=True)
        except BakeError as exc:
            console.print(f"archives not checked: {exc.problems[0]}", highlight=False, soft_wrap=True)
    return 0
