"""`bake check`: the findings on an output tree, and the expiry calendar."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from .. import parallel
from .common import age_arguments, bundle_keys

if TYPE_CHECKING:
    from .. import check


def _check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bake check",
        description="Re-verify a baked output tree: checksums, certificate chains and expiry, "
        "user-data schema, seed ISO contents, secret placement and file modes.",
    )
    p.add_argument("tree", type=Path, help="the cluster's output directory, e.g. outputs/ha-stacked")
    p.add_argument(
        "--secrets",
        type=Path,
        metavar="DIR",
        help="the cluster's secrets bundle (default: secrets/<cluster>, else a bundle an older bake kept "
        "in the tree)",
    )
    age_arguments(p)
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument(
        "--jobs",
        type=parallel.jobs_arg,
        default=None,
        metavar="N",
        help="processes validating user-data (default: one per core)",
    )
    return p


def check_main(argv: Sequence[str]) -> int:
    from .. import check

    args = _check_parser().parse_args(argv)
    report = check.check_tree(args.tree, secrets_dir=args.secrets, jobs=args.jobs, keys=bundle_keys(args))
    console = Console()
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        for finding in report.findings:
            colour = {"error": "red", "warning": "yellow", "ok": "green"}[finding.level]
            console.print(
                Text.assemble((f"{finding.level:7} ", colour), f"{finding.where}: {finding.message}"),
                highlight=False,
            )
        _print_calendar(console, report)
        console.print(f"{report.errors} errors, {report.warnings} warnings, {report.oks} checks passed")
    return 1 if report.errors else 0


def _print_calendar(console: Console, report: check.Report) -> None:
    """The expiry calendar: every certificate of the bundle and the seeds, soonest first."""
    if not report.calendar:
        return
    console.print(f"expiry calendar ({len(report.calendar)} certificates, soonest first):", highlight=False)
    for e in report.calendar:
        days = e.days_left(report.now)
        due = e.not_after - report.now < e.window(report.renewal)[0]
        colour = "red" if e.not_after <= report.now else "yellow" if due else ""
        console.print(
            Text.assemble(
                f"  {e.not_after:%Y-%m-%d %H:%M}Z ",
                (f"{days:>6} days ", colour),
                f"{e.node:<14} {e.file}  ({e.subject})",
                (f"  [{e.note}]" if e.note else "", "yellow" if e.note else ""),
            ),
            highlight=False,
            soft_wrap=True,
        )
