"""`bake` and `bake plan` (the same arguments): the progress bar, the summary, the plan's listing."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__, parallel, resources
from ..bake import BakeOptions, BakeResult, run
from ..bake import Progress as ProgressFn
from ..errors import BakeError
from ..pki import sealing
from .common import DEFAULT_PROFILE, age_arguments, bundle_keys

if TYPE_CHECKING:  # rich is imported where it prints: `bake -q` that keeps its tree prints nothing
    from rich.console import Console

EPILOG = """\
examples:
  bake                                   bake the default profile (ha-stacked) into outputs/ha-stacked/
  bake --profile ./my-site.yaml          bake your own profile (it may `extends: ha-stacked`)
  bake -p single-master --set cluster.kubernetesVersion=1.35 --set nodes[1].ip=10.77.0.40
  bake -p ha-stacked --only worker-2     re-render one node, keep the rest of the tree
  bake check outputs/ha-stacked          re-verify an output tree; non-zero exit on any drift
  bake plan -p ha-stacked [--json]       what a bake would change, without writing (exit 1 if anything)
  bake images -p ha-stacked [--json]     every image the nodes need, per architecture and role
  bake --encrypt-to age1...              a new secrets bundle with its private files encrypted with age
  bake secrets encrypt secrets/ha-stacked --to age1...   encrypt an existing bundle (decrypt: back in clear)
  bake serve outputs/ha-stacked --listen 10.77.0.1:8080   serve the seeds, take the nodes' reports, live page
  bake status outputs/ha-stacked [--json]                 the nodes' first-boot steps, as the page shows them

embedded profiles: {profiles}
"""


def _bake_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bake",
        description="Bake a kubeadm cluster offline: PKI and bootstrap token, per-node cloud-init, "
        "NoCloud seed ISOs, raw and HTTP seeds. The secrets bundle is kept apart from the outputs, in "
        "secrets/<cluster>/ (or --secrets), and reused by later bakes.",
        epilog=EPILOG.format(profiles=", ".join(resources.profile_names())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-p",
        "--profile",
        default=DEFAULT_PROFILE,
        help="embedded profile name or path to a YAML profile (default: %(default)s)",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a profile field, e.g. cluster.cni=flannel or nodes[2].ip=10.0.0.5 "
        "(value parsed as YAML; repeatable)",
    )
    p.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("outputs"),
        help="output root; the cluster goes to OUT/<cluster>/ (default: %(default)s)",
    )
    p.add_argument(
        "--secrets",
        type=Path,
        metavar="DIR",
        help="the cluster's secrets bundle, created there if missing (default: secrets/<cluster>, "
        "outside the output tree)",
    )
    age_arguments(p)
    p.add_argument(
        "--encrypt-to",
        action="append",
        default=[],
        metavar="RECIPIENT",
        help="encrypt a new secrets bundle with age to this recipient (age1... or ssh-ed25519 ...; "
        "repeatable); an existing bundle keeps its recipients (`bake secrets encrypt` changes them)",
    )
    p.add_argument(
        "--passphrase",
        action="store_true",
        help=f"encrypt a new secrets bundle with a passphrase (${sealing.ENV_PASSPHRASE}, else asked on "
        "the terminal)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NODE",
        help="re-render only this node (repeatable); other nodes are carried over",
    )
    p.add_argument(
        "--base-url",
        help="base URL the HTTP seed tree will be served from (overrides cluster.seed.httpBaseUrl)",
    )
    p.add_argument(
        "--rotate-ca",
        action="store_true",
        help="regenerate every CA, the service-account key and all certificates "
        "(existing nodes will no longer trust the new ones)",
    )
    p.add_argument("--rotate-token", action="store_true", help="generate a new bootstrap token")
    p.add_argument(
        "-j",
        "--jobs",
        type=parallel.jobs_arg,
        default=None,
        metavar="N",
        help="processes for key generation and node rendering; the output does not depend on it "
        "(default: one per core)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the manifest as JSON instead of the summary")
    out.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--version", action="version", version=f"bake {__version__}")
    return p


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    if stderr:
        return Console(stderr=True)
    return Console(stderr=False, width=None if sys.stdout.isatty() else 140)


@contextmanager
def _progress(console: Console | None) -> Iterator[ProgressFn | None]:
    """A progress bar on `console` when it is a terminal."""
    if console is None or not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]baking[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def update(name: str, done: int, total: int) -> None:
            bar.update(task, description=name, completed=done, total=total)

        yield update


def _summary(console: Console, result: BakeResult) -> None:
    from rich.table import Table
    from rich.text import Text

    m = result.manifest
    title = f"{m['cluster']}: Kubernetes {m['kubernetesVersion']}, {m['topology']}"
    if m["endpoint"]:
        title += f", endpoint {m['endpoint']}"
    table = Table(title=title, title_justify="left")
    numeric = ("seed.iso", "user-data", "files", "certs")
    for col in ("node", "role", "address", "arch", "os", *numeric):
        table.add_column(col, justify="right" if col in numeric else "left")
    for n in m["nodes"]:
        sizes = {rel.rsplit("/", 1)[-1]: (result.tree / rel).stat().st_size for rel in n["artifacts"]}
        table.add_row(
            n["name"], n["role"], n["ip"], n["arch"], n["os"],
            f"{sizes.get('seed.iso', 0):,}", f"{sizes.get('user-data', 0):,}",
            str(len(n["files"])), str(len(n["certificates"])),
        )  # fmt: skip
    console.print(table)
    targets = ", ".join(t.value for t in result.plan.settings.seed.targets)
    checked = (
        f"user-data size ({targets}), secrets per role, every leaf against kubeadm's reuse rules; "
        f"discovery hash {m['discoveryTokenCaCertHash']}"
    )
    if result.steady:
        checked = (
            "code, profile, secrets bundle (byte for byte) and SOURCE_DATE_EPOCH are those of the bake that "
            f"made this tree, and every file is the one it wrote; that bake checked {checked}"
        )
    console.print(f"checked: {checked}", highlight=False)
    withheld = [n["name"] for n in m["nodes"] if not any(rel.startswith("http/") for rel in n["artifacts"])]
    if withheld:
        console.print(
            f"HTTP seed tree: {', '.join(withheld)} not published (their seeds hold the cluster's private "
            "keys; cluster.seed.httpPublishControlPlanes: true publishes them on an isolated network)",
            highlight=False,
        )
    for change in result.changes:
        console.print(Text.assemble(("secrets ", "yellow"), str(change)))
    for seed in m.get("imageSeeds", []):
        console.print(
            f"images seed {seed['arch']}: {seed['iso']['path']} ({seed['iso']['size']:,} bytes, label "
            f"{seed['label']}), {len(seed['files'])} files, {len(seed['images'])} images",
            highlight=False,
        )
    for warning in (*result.plan.warnings, *result.warnings):
        console.print(Text.assemble(("warning ", "yellow"), warning))
    console.print(f"wrote {result.rewritten} files, kept {result.linked} unchanged")


def _options(args: argparse.Namespace) -> BakeOptions:
    """`bake` and `bake plan` take the same arguments: one reading of them."""
    if args.only and (args.rotate_ca or args.rotate_token):
        raise BakeError(
            "--only cannot be combined with --rotate-ca / --rotate-token: rotations re-render every node"
        )
    return BakeOptions(
        profile=args.profile,
        sets=tuple(args.sets),
        out_root=args.out,
        secrets=args.secrets,
        only=tuple(args.only),
        rotate_ca=args.rotate_ca,
        rotate_token=args.rotate_token,
        base_url=args.base_url,
        jobs=args.jobs,
        encrypt_to=tuple(args.encrypt_to),
        passphrase=args.passphrase,
        keys=bundle_keys(args),
    )


def bake_main(argv: Sequence[str]) -> int:
    args = _bake_parser().parse_args(argv)
    options = _options(args)
    err = None if args.quiet or args.json else _console(stderr=True)
    with _progress(err) as update:
        result = run(options, update)
    if result.expiring:  # on stderr, whatever -q / --json say: not an error
        from rich.text import Text

        err = err or _console(stderr=True)
        for warning in result.expiring:
            err.print(Text.assemble(("warning ", "yellow"), warning), highlight=False, soft_wrap=True)
    if args.json:
        sys.stdout.flush()
        sys.stdout.buffer.write((result.tree / "manifest.json").read_bytes())
    elif not args.quiet:
        console = _console()
        _summary(console, result)
        console.print(f"outputs in {args.out / result.plan.name}, secrets bundle in {result.secrets_dir}")
    return 0


def _plan_parser() -> argparse.ArgumentParser:
    p = _bake_parser()
    p.prog = "bake plan"
    p.description = (
        "Show what `bake` with the same arguments would do, writing nothing: per node the files added, "
        "changed (with a short diff, never for secrets) and removed and instance-id changes; leaves "
        "re-issued and why, secrets created; output files. Exit 0: nothing would change; 1: a bake "
        "would change something; 2: bad input or a bake that would be refused."
    )
    p.epilog = None
    return p


def _print_plan(console: Console, doc: dict[str, Any]) -> None:
    from rich.text import Text

    state = "" if doc["treeExists"] else " (no tree yet)"
    console.print(f"plan for {doc['cluster']}: {doc['tree']}{state}", highlight=False)
    sec = doc["secrets"]
    console.print(
        f"secrets bundle {sec['bundle']}: {'would be written' if sec['written'] else 'unchanged'}",
        highlight=False,
    )
    for change in sec["changes"]:
        console.print(Text.assemble(("  secrets ", "yellow"), change), highlight=False)
    for name, node in doc["nodes"].items():
        if node["status"] == "unchanged":
            continue
        line = f"{name}: {node['status']}"
        iid = node.get("instanceId")
        if isinstance(iid, dict):
            line += f", instance-id {iid['from']} -> {iid['to']} (cloud-init runs again on that node)"
        console.print(line, highlight=False)
        for seed in node.get("seed", []):
            console.print(Text.assemble(("  ~ ", "yellow"), f"seed {seed['file']}"), highlight=False)
            if seed.get("diff"):
                console.print(Text(seed["diff"].rstrip("\n")), highlight=False, soft_wrap=True)
        files = node.get("files", {})
        for path in files.get("added", []):
            console.print(Text.assemble(("  + ", "green"), path), highlight=False)
        for item in files.get("changed", []):
            note = " (secret, not shown)" if item.get("secret") else ""
            console.print(Text.assemble(("  ~ ", "yellow"), item["path"] + note), highlight=False)
            if item.get("diff"):
                console.print(Text(item["diff"].rstrip("\n")), highlight=False, soft_wrap=True)
        for path in files.get("removed", []):
            console.print(Text.assemble(("  - ", "red"), path), highlight=False)
    out = doc["outputs"]
    counts = ", ".join(f"{len(out[k])} {k}" for k in ("added", "changed", "removed"))
    console.print(f"output files: {counts}", highlight=False)
    console.print("a bake would change the above" if doc["changes"] else "no changes", highlight=False)


def plan_main(argv: Sequence[str]) -> int:
    from .. import dryrun

    args = _plan_parser().parse_args(argv)
    doc = dryrun.plan(_options(args))
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif not args.quiet:
        _print_plan(_console(), doc)
    return 1 if doc["changes"] else 0
