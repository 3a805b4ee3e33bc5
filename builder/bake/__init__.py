"""The whole bake, one way through: profile -> plan -> secrets -> per-node files -> output tree.

Nodes are rendered and written in worker processes (keys and plan reach them by fork), each to its own
directories, a bounded number in flight, and entered into the manifest in plan order: memory stays flat
with fleet size and the tree is the same whatever the number of processes.
Nothing becomes visible until every node is written and checked; then the tree is swapped in.
This module holds the order of the steps; `render` writes the nodes and the images seeds from what
`shared` holds, `manifest` describes the tree, `incremental` decides what a re-bake keeps from the
previous one.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import parallel
from ..emit import packaging
from ..emit.outputs import DryTree, OutputTree
from ..errors import BakeError, Problem, SecretsError
from ..files import private_dirs
from ..node import airgap, cloudinit, distribute
from ..pki import bundledir, sealing, secrets
from ..plan import ClusterPlan, NodePlan, build_plan
from ..validation.profile import load_profile
from . import incremental, render
from .manifest import NodeEntries, PreviousManifest, cluster_manifest, node_text
from .render import lock_kept_from_workers, seed_warnings, write_images_seed
from .shared import Shared

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BakeOptions:
    profile: str
    sets: tuple[str, ...] = ()
    out_root: Path = Path("outputs")
    secrets: Path | None = None
    """The bundle's directory; None: bundledir.default_path(cluster), apart from the output tree."""
    only: tuple[str, ...] = ()
    rotate_ca: bool = False
    rotate_token: bool = False
    base_url: str | None = None
    now: datetime | None = None
    dry_run: bool = False
    """`bake plan`: compute everything, write nothing (no output tree, no bundle, no move)."""
    observe: Callable[[NodePlan, cloudinit.RenderedNode], None] | None = None
    """Called with each node rendered (bake plan compares it with the current tree)."""
    jobs: int | None = None
    """Worker processes; None: one per core (1 with dry_run or observe, which need every node here)."""
    encrypt_to: tuple[str, ...] = ()
    """age recipients a new bundle is encrypted to (an existing one keeps its own: sealing.wanted)."""
    passphrase: bool = False
    """Encrypt a new bundle with a passphrase ($BAKE_SECRETS_PASSPHRASE, else asked on a terminal)."""
    keys: sealing.Keys | None = None
    """What opens an encrypted bundle; None: sealing.Keys.from_env()."""


@dataclass
class BakeResult:
    plan: ClusterPlan
    tree: Path
    secrets_dir: Path
    changes: list[secrets.Change] = field(default_factory=list)
    rewritten: int = 0
    linked: int = 0
    warnings: list[str] = field(default_factory=list)
    bundle_written: bool = False
    """The bundle's files changed (with dry_run: would change)."""
    written: dict[str, str] = field(default_factory=dict)
    """Every file of the new tree -> sha256."""
    expiring: list[str] = field(default_factory=list)
    """Certificates of the bundle inside their window (secrets.due_window, cluster.certificateRenewal.before)
    that the bake did not re-issue: CAs, leaves --only kept (a warning, on stderr)."""
    steady: bool = False
    """Kept on its inputs alone: the same as those of the bake that made the current tree, which every
    file still matches (incremental.steady); nothing of the bundle was loaded."""

    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        """The tree's manifest.json, read when asked for: the bake never holds every node's entry.
        (`bake plan` writes no tree: this is then the current tree's.)"""
        data: dict[str, Any] = json.loads((self.tree / "manifest.json").read_bytes())
        return data


def source_epoch(bundle: secrets.Bundle) -> int:
    """Timestamps inside artifacts: SOURCE_DATE_EPOCH if set, else the bundle's creation time."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is not None:
        try:
            return int(env)
        except ValueError:
            raise BakeError([Problem("SOURCE_DATE_EPOCH", f"{env!r} is not an integer")]) from None
    return bundle.created


def _expiring(plan: ClusterPlan, bundle: secrets.Bundle, now: datetime) -> list[str]:
    from .. import check  # the calendar is `bake check`'s

    return check.expiry_warnings(bundle, now, plan.settings.certificate_renewal)


def _gzip_notes(plan: ClusterPlan, size: Callable[[str], int]) -> list[str]:
    """packaging.gzip_notes for the nodes of a tree whose files `size` measures (rendered, reused or
    carried over alike: read from the files themselves)."""
    sizes = []
    for node in plan.nodes:
        try:
            sizes.append(
                (node.name, size(f"nodes/{node.name}/user-data"), size(f"nodes/{node.name}/user-data.gz"))
            )
        except (KeyError, OSError):
            continue
    return packaging.gzip_notes(sizes, plan.settings.seed.targets)


def _existing_bundle(
    tree: OutputTree, path: Path, dry_run: bool = False, reader: sealing.Reader | None = None
) -> tuple[secrets.Bundle | None, list[secrets.Change]]:
    """The bundle at `path` (opened by `reader`), or the one an older bake kept inside the output tree,
    moved to `path`."""
    bundledir.interrupted(path)
    if path.exists():
        return secrets.load_bundle(path, reader), []
    legacy = tree.previous / bundledir.LEGACY_NAME if tree.previous is not None else None
    if legacy is None or not legacy.is_dir():
        return None, []
    bundle = secrets.load_bundle(legacy)  # checked before it is moved: a bad bundle stays where it was
    if not dry_run:
        bundledir.migrate(legacy, path)
    verb = "would move" if dry_run else "moved"
    moved = secrets.Change(
        "bundle",
        f"{verb} the secrets bundle out of the output tree to {path} (once; deleting the outputs no "
        "longer deletes the keys)",
    )
    return bundle, [moved]


def _previous_entry(previous: PreviousManifest | None, name: str) -> dict[str, Any] | None:
    found = previous.node(name) if previous is not None else None
    return found[0] if found is not None else None


def _refuse_foreign_ca(
    tree: OutputTree, previous: PreviousManifest | None, bundle: secrets.Bundle, path: Path, rotate_ca: bool
) -> None:
    """An output tree baked with another CA means nodes that will not trust this bundle's: say so."""
    if rotate_ca or previous is None:
        return
    before = previous.rest.get("discoveryTokenCaCertHash")
    if before is not None and before != bundle.discovery_hash:
        raise SecretsError(
            [
                Problem(
                    "secrets",
                    f"{tree.link} was baked with another cluster CA ({before}) than the bundle at {path} "
                    f"({'a new one' if not path.exists() else bundle.discovery_hash}); nodes baked before "
                    "would not trust it. Point --secrets at that cluster's bundle, or pass --rotate-ca to "
                    "start over with a new CA",
                )
            ]
        )


def run(options: BakeOptions, progress: Progress | None = None) -> BakeResult:
    profile = load_profile(options.profile, options.sets)
    plan = build_plan(profile)
    names = {n.name for n in plan.nodes}
    unknown = [n for n in options.only if n not in names]
    if unknown:
        raise BakeError([Problem("--only", f"no node named {n!r} in the profile") for n in unknown])
    seeds = airgap.seeds(plan)  # before anything is written: an incomplete archive set fails here
    incomplete = airgap.completeness_problems(seeds)
    if incomplete:
        raise BakeError(incomplete)
    now = options.now or secrets.utcnow()
    # observe needs every rendered node in this process, and a DryTree lives only here: one process
    in_process = options.dry_run or options.observe is not None
    jobs = 1 if in_process else options.jobs or parallel.default_jobs()
    base_url = options.base_url or plan.settings.seed.http_base_url
    tree_class = DryTree if options.dry_run else OutputTree
    with tree_class(options.out_root, plan.name) as tree, lock_kept_from_workers(tree):
        bundle_path = options.secrets or bundledir.default_path(plan.name)
        keys = options.keys or sealing.Keys.from_env()
        reader = sealing.Reader(bundle_path, keys)
        # a bake that may keep the current tree as it is: not a plan, not --only, no archives to read back,
        # nothing asked of the bundle
        keepable = not (
            options.dry_run or in_process or options.only or seeds or options.rotate_ca
            or options.rotate_token or options.encrypt_to or options.passphrase
        )  # fmt: skip
        key = incremental.steady_key(plan, bundle_path, base_url) if keepable else None
        as_recorded = incremental.steady(tree, key, now) if key is not None else None
        if as_recorded is not None:
            final = tree.keep_previous(as_recorded[0])
            return BakeResult(
                plan, final, bundle_path, [], 0, tree.linked, as_recorded[1], False, dict(tree.written), [],
                steady=True,
            )  # fmt: skip
        existing, notices = _existing_bundle(tree, bundle_path, options.dry_run, reader)
        current = reader.seal() if bundle_path.exists() else None
        seal = sealing.wanted(
            current, existing is not None, options.encrypt_to, options.passphrase, bundle_path, keys
        )
        if options.only and existing is None:
            raise BakeError([Problem("--only", "needs an existing bake of this cluster to update")])
        bundle, changes = secrets.reconcile(
            plan,
            existing,
            now=now,
            rotate_ca=options.rotate_ca,
            rotate_token=options.rotate_token,
            only=set(options.only) or None,
            jobs=jobs,
        )
        previous = PreviousManifest.read(tree)
        _refuse_foreign_ca(tree, previous, bundle, bundle_path, options.rotate_ca)
        if existing is None:
            verb = "would create" if options.dry_run else "creating"
            notices.append(
                secrets.Change(
                    "bundle",
                    f"no secrets bundle at {bundle_path}: {verb} a new one with new CAs"
                    + (f" ({seal.describe()})" if seal is not None else "")
                    + "; keep it safe, every later bake of this cluster needs it",
                )
            )
        changes = notices + changes
        # --only keeps the other nodes' seeds and leaves as they are: say which of those leaves are due
        carried = [owner for owner in bundle.leaves if options.only and owner not in options.only]
        stale = [str(c) for c in secrets.stale_leaves(plan, bundle, carried, now)]
        admin_conf = distribute.operator_admin_conf(plan, bundle) if plan.control_planes else None
        epoch = source_epoch(bundle)
        problems: list[Problem] = []
        publish = plan.settings.seed.http_publish_control_planes
        total = len(plan.nodes)
        plan_digest = incremental.plan_digest(plan)
        # bake plan renders every node to compare, --only re-renders what it names: neither links
        previous_packed = incremental.previous_inputs(tree, incremental.PACKED_FILE)
        linkable = {} if in_process or options.only else previous_packed
        shared = Shared(
            plan, bundle, epoch, base_url, publish, tree, options.observe, plan_digest,
            previous=previous, packed=linkable,
        )  # fmt: skip
        previous_inputs = incremental.previous_inputs(tree)
        # a node the previous bake has no digest for is rendered whatever its inputs: its worker computes
        # the digest from the files it renders anyway (render.write_node)
        for node in plan.nodes:
            if (options.only and node.name not in options.only) or node.name not in previous_inputs:
                continue
            pki_files = distribute.node_pki_sources(plan, node, bundle)
            shared.inputs[node.name] = incremental.node_inputs(node, pki_files, bundle, shared)
        files = list(secrets.bundle_files(bundle, plan))
        # The common re-bake: nothing changed. The current tree stays as it is, checked file by file,
        # instead of a new generation of links that is then swapped in.
        if (
            keepable
            and existing is not None
            and changes == notices
            and previous is not None
            and previous_inputs == shared.inputs
            and len(shared.inputs) == len(plan.nodes)
            and bundledir.unchanged(bundle_path, files, seal, reader)
        ):
            rest = {k: v for k, v in cluster_manifest(plan, bundle).items() if k != "nodes"}
            inputs_text = json.dumps(shared.inputs, indent=2, sort_keys=True) + "\n"
            expected = {
                incremental.INPUTS_FILE: inputs_text.encode(),
                **({"admin.conf": admin_conf} if admin_conf is not None else {}),
            }
            kept = None
            # the manifest compared as data (the nodes' entries are the previous ones, so their names
            # and order); the file's bytes are SHA256SUMS', which intact_previous checks
            same = (
                previous.names == [n.name for n in plan.nodes]
                and json.loads(json.dumps(rest)) == previous.rest
            )
            if same and all(tree.previous_bytes(r) == b for r, b in expected.items()):
                kept = tree.intact_previous()
            if kept is not None and all(r in kept for r in [*expected, "manifest.json"]):
                final = tree.keep_previous(kept)
                warnings = stale + _gzip_notes(plan, lambda rel: (final / rel).stat().st_size)
                expiring = _expiring(plan, bundle, now)
                if not expiring:
                    incremental.record_steady(tree, final, plan, bundle, bundle_path, base_url, now, warnings)
                return BakeResult(
                    plan, final, bundle_path, changes, 0, tree.linked, warnings, False,
                    dict(tree.written), expiring,
                )  # fmt: skip
        if admin_conf is not None:
            tree.write("admin.conf", admin_conf, 0o600)
        # the directories workers would otherwise race to create (one process, or a DryTree: none)
        shared_dirs = ["nodes"] if plan.nodes and jobs > 1 else []
        if shared_dirs and any(packaging.http_published(n.role, publish) for n in plan.nodes):
            shared_dirs.append("http")
        for rel in shared_dirs:
            private_dirs(tree.path(rel))
        reused: set[int] = set()
        todo = []
        for i, node in enumerate(plan.nodes):
            if options.only and node.name not in options.only:
                continue
            # --only re-renders what it names, whatever its inputs; bake plan renders every node to compare
            if (
                not options.only
                and not in_process
                and incremental.reuse(
                    tree,
                    _previous_entry(previous, node.name),
                    shared.inputs.get(node.name),
                    previous_inputs.get(node.name),
                )
                is not None
            ):
                reused.add(i)
            else:
                todo.append(i)
        state = None if options.dry_run else tree.state
        packed: dict[str, str] = {}
        with contextlib.closing(NodeEntries(state)) as node_entries:
            with contextlib.closing(parallel.ordered_map(render.write_node, shared, todo, jobs)) as outputs:
                for i, node in enumerate(plan.nodes):
                    if progress:
                        progress(node.name, i, total)
                    if options.only and node.name not in options.only:
                        http = packaging.http_published(node.role, publish)
                        previous_entry = _previous_entry(previous, node.name)
                        kept = incremental.carry_over(tree, previous_entry, node, http, base_url)
                        node_entries.add(node_text(kept))
                        continue
                    if i in reused:  # same inputs as the previous bake: its files are linked already
                        assert previous is not None
                        found = previous.node(node.name)
                        assert found is not None, (
                            f"{node.name}: the previous manifest changed during the bake"
                        )
                        node_entries.add(found[1])
                        continue
                    out = next(outputs)
                    problems += out.problems
                    if out.remote:
                        tree.written.update(out.written)
                        tree.rewritten += out.rewritten
                        tree.linked += out.linked
                    node_entries.add(out.entry)
                    shared.inputs[node.name] = out.inputs
                    packed[node.name] = out.packed
            if problems:
                raise BakeError(problems)
            gzip_notes = _gzip_notes(plan, tree.size)
            # what the next bake compares against; a node not rendered keeps its previous digests
            for name, fresh, before in (
                (incremental.INPUTS_FILE, shared.inputs, previous_inputs),
                (incremental.PACKED_FILE, packed, previous_packed),
            ):
                digests = {n.name: fresh.get(n.name, before.get(n.name)) for n in plan.nodes}
                known = {node: digest for node, digest in digests.items() if digest is not None}
                tree.write(name, (json.dumps(known, indent=2, sort_keys=True) + "\n").encode(), 0o600)
            image_seeds = []
            for seed in seeds:
                if progress:
                    progress(f"images seed {seed.arch}", total, total)
                image_seeds.append(write_images_seed(tree, seed, epoch))
            if progress:
                progress("manifest", total, total)
            manifest = cluster_manifest(plan, bundle)
            if image_seeds:
                manifest["imageSeeds"] = image_seeds
            tree.write_stream("manifest.json", lambda out: node_entries.write_manifest(out, manifest))
            sums = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(tree.written.items()))
            tree.write("SHA256SUMS", sums.encode(), 0o600)
            # the bundle last, just before the swap: a bake that failed above changed nothing on disk
            if options.dry_run:
                bundledir.interrupted(bundle_path)
                bundle_written = not bundledir.unchanged(bundle_path, files, seal, reader)
            else:
                bundle_written = bundledir.save(bundle_path, files, seal, reader)
            final = tree.commit()
            if state is not None:
                node_entries.keep(manifest, final)
            expiring = _expiring(plan, bundle, now)
            warnings = seed_warnings(seeds) + stale + gzip_notes
            if keepable and not expiring:
                incremental.record_steady(tree, final, plan, bundle, bundle_path, base_url, now, warnings)
            return BakeResult(
                plan, final, bundle_path, changes, tree.rewritten, tree.linked, warnings, bundle_written,
                dict(tree.written), expiring,
            )  # fmt: skip
