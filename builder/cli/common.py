"""What several sub-commands share: the default profile, and the options and prompt that open a
secrets bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..pki import sealing

DEFAULT_PROFILE = "ha-stacked"


def age_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--identity",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help=f"age identity file (or OpenSSH private key) that opens an encrypted secrets bundle "
        f"(repeatable; default: ${sealing.ENV_IDENTITY}); a passphrase is read from --passphrase-file, "
        f"else ${sealing.ENV_PASSPHRASE}, else asked on the terminal",
    )
    p.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="PATH",
        help="the secrets bundle's passphrase is the first line of this file (never give it on the "
        "command line: every user sees the process list)",
    )


def bundle_keys(args: argparse.Namespace) -> sealing.Keys:
    """What opens a bundle, for every command that does: the same options, the same terminal prompt."""
    return sealing.Keys.from_env(args.identity, prompt=True, passphrase_file=args.passphrase_file)
