"""`bake secrets encrypt|decrypt`: a bundle's private files sealed with age, resealed or in clear."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from ..errors import BakeError, Problem
from ..pki import recipients, sealing
from .common import age_arguments, bundle_keys


def _secrets_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bake secrets",
        description="Encrypt a secrets bundle's private files with age, change whom they are encrypted "
        "to, or write them back in clear. A bake never does this by itself.",
    )
    sub = p.add_subparsers(dest="action", required=True)
    enc = sub.add_parser(
        "encrypt",
        help="(re-)encrypt the bundle's private files to exactly the recipients / passphrase named here",
    )
    enc.add_argument("bundle", type=Path, help="the bundle's directory, e.g. secrets/ha-stacked")
    enc.add_argument(
        "--to", action="append", default=[], metavar="RECIPIENT", help="age recipient (repeatable)"
    )
    enc.add_argument(
        "--passphrase",
        action="store_true",
        help=f"also a passphrase (${sealing.ENV_PASSPHRASE}, else asked twice on the terminal)",
    )
    age_arguments(enc)
    dec = sub.add_parser("decrypt", help="write the bundle's private files back in clear")
    dec.add_argument("bundle", type=Path, help="the bundle's directory, e.g. secrets/ha-stacked")
    age_arguments(dec)
    return p


def secrets_main(argv: Sequence[str]) -> int:
    from ..pki import bundledir

    args = _secrets_parser().parse_args(argv)
    keys = bundle_keys(args)
    reader = sealing.Reader(args.bundle, keys)
    seal = None
    if args.action == "encrypt":
        if not args.to and not args.passphrase:
            raise BakeError(
                [Problem("bake secrets encrypt", "name at least one --to RECIPIENT or --passphrase")]
            )
        phrase = None
        if args.passphrase:
            phrase = keys.new_passphrase(f"the secrets bundle {args.bundle}")
            if phrase is None:
                raise BakeError(
                    [
                        Problem(
                            "--passphrase",
                            f"give --passphrase-file, set {sealing.ENV_PASSPHRASE} or run on a terminal "
                            "to be asked",
                        )
                    ]
                )
        seal = recipients.Seal.new(args.to, phrase)
    changed = bundledir.reseal(args.bundle, reader, seal)
    how = seal.describe() if seal is not None else "in clear"
    Console().print(
        f"{args.bundle}: {'rewritten' if changed else 'unchanged, already'} {how}",
        highlight=False,
        soft_wrap=True,
    )
    return 0
