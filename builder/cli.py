"""`bake` command line: argument parsing, progress and summary output, exit codes.

Exit codes: 0 success; 1 `bake check` found drift; 2 bad input or a refused operation (every
problem printed with its path); 70 an internal error (a bug: reported in one line, traceback only
with BAKE_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import __version__, parallel, resources
from .bake import BakeOptions, BakeResult, run
from .bake import Progress as ProgressFn
from .errors import BakeError, Problem
from .pki import sealing

if TYPE_CHECKING:
    from . import check

DEFAULT_PROFILE = "ha-stacked"
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
    _age_arguments(p)
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


def _age_arguments(p: argparse.ArgumentParser) -> None:
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


def _keys(args: argparse.Namespace) -> sealing.Keys:
    """What opens a bundle, for every command that does: the same options, the same terminal prompt."""
    return sealing.Keys.from_env(args.identity, prompt=True, passphrase_file=args.passphrase_file)


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
    _age_arguments(enc)
    dec = sub.add_parser("decrypt", help="write the bundle's private files back in clear")
    dec.add_argument("bundle", type=Path, help="the bundle's directory, e.g. secrets/ha-stacked")
    _age_arguments(dec)
    return p


def secrets_main(argv: Sequence[str]) -> int:
    from .pki import bundledir

    args = _secrets_parser().parse_args(argv)
    keys = _keys(args)
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
        seal = sealing.Seal.new(args.to, phrase)
    changed = bundledir.reseal(args.bundle, reader, seal)
    how = seal.describe() if seal is not None else "in clear"
    Console().print(
        f"{args.bundle}: {'rewritten' if changed else 'unchanged, already'} {how}",
        highlight=False,
        soft_wrap=True,
    )
    return 0


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
    from .node import airgap
    from .plan import build_plan, images
    from .validation.profile import load_profile

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


def _serve_parser() -> argparse.ArgumentParser:
    from .serve import server

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
    _age_arguments(p)
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

    from .serve import catalog, server

    args = _serve_parser().parse_args(argv)
    if len(args.secrets) > len(args.trees):
        raise BakeError([Problem("--secrets", "more bundles than trees: one --secrets per TREE, in order")])
    admin = []
    for text in args.admin:
        try:
            admin.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise BakeError([Problem("--admin", f"{text!r}: {exc}")]) from None
    keys = _keys(args)
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
    from .serve import status

    args = _status_parser().parse_args(argv)
    doc = status.document(args.tree)
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        status.render(Console(width=None if sys.stdout.isatty() else 200), doc)
    return 0


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
    _age_arguments(p)
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument(
        "--jobs",
        type=parallel.jobs_arg,
        default=None,
        metavar="N",
        help="processes validating user-data (default: one per core)",
    )
    return p


@contextmanager
def _progress(console: Console, enabled: bool) -> Iterator[ProgressFn | None]:
    if not enabled:
        yield None
        return
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
    console.print(
        f"checked: user-data size ({targets}), secrets per role, every leaf against kubeadm's reuse rules; "
        f"discovery hash {m['discoveryTokenCaCertHash']}",
        highlight=False,
    )
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


def _print_problems(err: Console, exc: BakeError) -> None:
    for problem in exc.problems:
        err.print(Text.assemble(("error ", "bold red"), str(problem)), highlight=False, soft_wrap=True)


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
        keys=_keys(args),
    )


def bake_main(argv: Sequence[str]) -> int:
    args = _bake_parser().parse_args(argv)
    options = _options(args)
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 140)
    err = Console(stderr=True)
    interactive = err.is_terminal and not args.quiet and not args.json
    with _progress(err, interactive) as update:
        result = run(options, update)
    for warning in result.expiring:  # stderr, whatever -q / --json say: not an error
        err.print(Text.assemble(("warning ", "yellow"), warning), highlight=False, soft_wrap=True)
    if args.json:
        sys.stdout.write(json.dumps(result.manifest, indent=2) + "\n")
    elif not args.quiet:
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
    from . import dryrun

    args = _plan_parser().parse_args(argv)
    doc = dryrun.plan(_options(args))
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif not args.quiet:
        _print_plan(Console(width=None if sys.stdout.isatty() else 140), doc)
    return 1 if doc["changes"] else 0


def check_main(argv: Sequence[str]) -> int:
    from . import check

    args = _check_parser().parse_args(argv)
    report = check.check_tree(args.tree, secrets_dir=args.secrets, jobs=args.jobs, keys=_keys(args))
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    err = Console(stderr=True)
    try:
        if argv and argv[0] == "check":
            return check_main(argv[1:])
        if argv and argv[0] == "images":
            return images_main(argv[1:])
        if argv and argv[0] == "plan":
            return plan_main(argv[1:])
        if argv and argv[0] == "secrets":
            return secrets_main(argv[1:])
        if argv and argv[0] == "serve":
            return serve_main(argv[1:])
        if argv and argv[0] == "status":
            return status_main(argv[1:])
        return bake_main(argv)
    except BakeError as exc:
        _print_problems(err, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted; the previous outputs are untouched")
        return 130
    except Exception as exc:  # a bug: one line, not a traceback, unless asked
        if os.environ.get("BAKE_DEBUG"):
            traceback.print_exc()
        err.print(
            Text.assemble(("internal error ", "bold red"), f"{type(exc).__name__}: {exc}"),
            "(BAKE_DEBUG=1 shows the traceback)",
            highlight=False,
        )
        return 70


if __name__ == "__main__":
    raise SystemExit(main())
