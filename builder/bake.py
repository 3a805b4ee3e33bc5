"""The whole bake, one way through: profile -> plan -> secrets -> per-node files -> output tree.

Nodes are rendered and written in worker processes (keys and plan reach them by fork), each to its own
directories, a bounded number in flight, and entered into the manifest in plan order: memory stays flat
with fleet size and the tree is the same whatever the number of processes.
Nothing becomes visible until every node is written and checked; then the tree is swapped in.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__, parallel, resources
from .emit import packaging
from .emit.outputs import DryTree, OutputTree
from .errors import BakeError, OutputError, Problem, SecretsError
from .files import NodeFile, private_dirs
from .node import airgap, cloudinit, distribute
from .pki import bundledir, sealing, secrets
from .plan import ClusterPlan, NodePlan, build_plan, images
from .validation.profile import load_profile

MANIFEST_FORMAT = 1
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
    manifest: dict[str, Any]
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


def source_epoch(bundle: secrets.Bundle) -> int:
    """Timestamps inside artifacts: SOURCE_DATE_EPOCH if set, else the bundle's creation time."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is not None:
        try:
            return int(env)
        except ValueError:
            raise BakeError([Problem("SOURCE_DATE_EPOCH", f"{env!r} is not an integer")]) from None
    return bundle.created


def _cert_entries(bundle: secrets.Bundle, owner: str) -> list[dict[str, str]]:
    return [
        {"name": name, "notAfter": held.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
        for name, held in sorted(bundle.leaves.get(owner, {}).items())
    ]


def node_manifest(
    node: NodePlan, rendered: cloudinit.RenderedNode, artifacts: dict[str, str], bundle: secrets.Bundle
) -> dict[str, Any]:
    return {
        "name": node.name,
        "role": node.role.value,
        "ip": str(node.ip),
        "prefixLength": node.prefix_length,
        "mac": node.mac,
        "arch": node.arch.value,
        "os": node.os.name.value,
        "kubeletVersion": node.kubelet_version,
        "instanceId": rendered.instance_id,
        "artifacts": dict(sorted(artifacts.items())),
        "files": [
            {"path": f.path, "mode": f.mode_text, "owner": f.owner, "sha256": f.sha256, "secret": f.secret}
            for f in rendered.files
        ],
        "certificates": _cert_entries(bundle, node.name),
    }


def _carry_over(
    tree: OutputTree, entry: dict[str, Any] | None, node: NodePlan, http: bool, base_url: str | None
) -> dict[str, Any]:
    """bake --only: a node that is not re-rendered keeps its previous files, except that its HTTP seed
    follows this bake's rule (cluster.seed.httpPublishControlPlanes): dropped when it may not be
    published any more, written from its previous seed files when it may be and was not."""
    name = node.name
    if entry is None:
        raise OutputError(f"--only: the previous bake has no complete output for {name}")
    http_dir = f"http/{name}/"
    artifacts = {
        rel: digest
        for rel, digest in entry.get("artifacts", {}).items()
        if http or not rel.startswith(http_dir)
    }
    if not all(tree.link_previous(rel) for rel in artifacts):
        raise OutputError(f"--only: the previous bake has no complete output for {name}")
    if http and not any(rel.startswith(http_dir) for rel in artifacts):
        seed = {f: tree.previous_bytes(f"nodes/{name}/{f}") for f in packaging.SEED_NAMES}
        present = {f: data for f, data in seed.items() if data is not None}
        if len(present) != len(seed):
            raise OutputError(f"--only: the previous bake has no complete output for {name}")
        for art in packaging.http_artifacts(name, present, base_url):
            tree.write(art.rel, art.data, art.mode)
            artifacts[art.rel] = hashlib.sha256(art.data).hexdigest()
    return {**entry, "artifacts": dict(sorted(artifacts.items()))}


def cluster_manifest(
    plan: ClusterPlan, bundle: secrets.Bundle, nodes: list[dict[str, Any]]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "cluster": plan.name,
        "kubernetesVersion": plan.version,
        "topology": plan.topology.value,
        "endpoint": plan.api_endpoint().hostport if plan.control_planes else None,
        # which seeds the HTTP tree holds: workers always, control planes and etcd members only when
        # true (packaging.http_published); `bake check` reads it
        "httpPublishControlPlanes": plan.settings.seed.http_publish_control_planes,
        "discoveryTokenCaCertHash": bundle.discovery_hash,
        "join": plan.settings.join.value,
        # the window a certificate is due in (secrets.due_window): `bake check` warns by it
        "certificateRenewal": {
            "enabled": plan.settings.certificate_renewal.enabled,
            "before": plan.settings.certificate_renewal.before,
        },
        "secretsCreated": datetime.fromtimestamp(bundle.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "certificateAuthorities": [
            {"name": name, "notAfter": ca.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
            for name, ca in sorted(bundle.cas.items())
        ],
        "operatorCertificates": _cert_entries(bundle, secrets.OPERATOR),
        "nodes": nodes,
    }
    url = plan.settings.seed.report_url
    if url is not None:  # `bake serve` reads it; absent without a report URL (goldens stay as they were)
        doc["reportUrl"] = url
    return doc


def _previous_manifest(tree: OutputTree) -> dict[str, Any] | None:
    raw = tree.previous_bytes("manifest.json")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def write_images_seed(tree: OutputTree, seed: airgap.ArchSeed, epoch: int) -> dict[str, Any]:
    """One architecture's images seed: the files under the HTTP tree, then the ISO, both streamed."""
    http = airgap.http_rel(seed.arch)
    digests = {}
    for f in seed.files:
        copy = functools.partial(airgap.copy_to, source=f.path)
        digests[f.name] = tree.write_stream(f"{http}/{f.name}", copy)
    sums = airgap.sums_text(digests)
    tree.write(f"{http}/{airgap.SUMS_NAME}", sums, 0o600)
    rel = airgap.iso_rel(seed.arch)
    digest = tree.write_stream(rel, lambda out: airgap.write_iso(out, seed, sums, epoch=epoch))
    return airgap.seed_manifest(seed, digests, digest, tree.size(rel))


def _expiring(plan: ClusterPlan, bundle: secrets.Bundle, now: datetime) -> list[str]:
    from . import check  # the calendar is `bake check`'s

    return check.expiry_warnings(bundle, now, plan.settings.certificate_renewal)


def _seed_warnings(seeds: list[airgap.ArchSeed]) -> list[str]:
    return [
        f"images seed {s.arch}: {', '.join(s.unknown)} do not name all their images; which images the "
        f"{s.arch} nodes will find is checked at first boot only"
        for s in seeds
        if s.unknown
    ]


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


def _refuse_foreign_ca(tree: OutputTree, bundle: secrets.Bundle, path: Path, rotate_ca: bool) -> None:
    """An output tree baked with another CA means nodes that will not trust this bundle's: say so."""
    raw = tree.previous_bytes("manifest.json")
    if rotate_ca or raw is None:
        return
    try:
        before = json.loads(raw).get("discoveryTokenCaCertHash")
    except (ValueError, AttributeError):
        return
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


def tool_sources() -> list[tuple[str, Path]]:
    """Every file a node's files are made from, by a name that says where it is: all of the package's
    modules (every stage sub-package renders part of a node) and all templates. By relative path, not
    file name: the packages hold several `__init__.py`."""
    package = Path(__file__).parent
    templates = resources.templates_dir()
    code = [(p.relative_to(package.parent).as_posix(), p) for p in sorted(package.rglob("*.py"))]
    data = [(f"templates/{p.relative_to(templates).as_posix()}", p) for p in sorted(templates.rglob("*"))]
    return [*code, *((name, p) for name, p in data if p.is_file())]


@functools.cache
def tool_digest() -> str:
    """This bake's code and templates: a node baked by another version of either is re-rendered."""
    h = hashlib.sha256(__version__.encode())
    for name, path in tool_sources():
        h.update(b"\0" + name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def node_inputs(
    plan_digest: str, node: NodePlan, pki_files: list[NodeFile], bundle: secrets.Bundle, shared: _Shared
) -> str:
    """Digest of everything a node's files are made from: the plan (whole: a node's files may name
    other nodes; it holds join mode and window, generations, Secrets encryption), the bundle items it
    receives (its leaves, join credential, encryption key), the values every node gets, the images it
    expects, code and templates.
    Same digest as the previous bake, and files that still match its manifest: nothing to re-render."""
    h = hashlib.sha256()
    for part in (tool_digest(), plan_digest, node.name, bundle.token, bundle.discovery_hash):
        h.update(part.encode() + b"\0")
    h.update(repr((shared.epoch, shared.base_url, shared.publish, _cert_entries(bundle, node.name))).encode())
    # the images the node checks before kubeadm: the CNI's are read from its manifests' content, which the
    # plan names by path only
    h.update(repr([i.normalized for i in images.node_images(shared.plan, node)]).encode())
    for f in pki_files:
        h.update(f"\0{f.path}\0{f.mode:o}\0{f.owner}\0{f.sensitivity}\0".encode() + f.content)
    return h.hexdigest()


INPUTS_FILE = "inputs.json"  # node -> digest of its inputs; kept out of manifest.json, which is golden


def _previous_inputs(tree: OutputTree) -> dict[str, str]:
    raw = tree.previous_bytes(INPUTS_FILE)
    try:
        data = json.loads(raw) if raw is not None else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _reuse(
    tree: OutputTree, entry: dict[str, Any] | None, digest: str, previous: str | None
) -> dict[str, Any] | None:
    """The previous bake's files of a node whose inputs did not change, linked into this generation,
    or None (nothing linked) when any of them is missing or differs from the previous manifest."""
    if entry is None or previous != digest:
        return None
    artifacts = entry.get("artifacts")
    if not isinstance(artifacts, dict) or not artifacts:
        return None
    linked: list[str] = []
    for rel, want in artifacts.items():
        if not isinstance(rel, str) or not tree.link_previous(rel) or tree.written[rel] != want:
            for undo in [*linked, rel]:  # back out: the node is rendered afresh
                if tree.written.pop(undo, None) is not None:
                    tree.path(undo).unlink()
                    tree.linked -= 1
            return None
        linked.append(rel)
    return entry


@dataclass(frozen=True)
class _Shared:
    """What every node's rendering reads; handed to the worker processes by fork (it holds keys)."""

    plan: ClusterPlan
    bundle: secrets.Bundle
    epoch: int
    base_url: str | None
    publish: bool
    tree: OutputTree
    observe: Callable[[NodePlan, cloudinit.RenderedNode], None] | None = None
    """BakeOptions.observe: only with one job, so that it is called in this process."""
    parent: int = field(default_factory=os.getpid)
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _NodeOutput:
    """A rendered node, its files already written; from a worker, what the parent's tree must learn."""

    entry: dict[str, Any]
    problems: list[Problem]
    written: dict[str, str]
    rewritten: int
    linked: int
    remote: bool
    sizes: tuple[int, int] = (0, 0)
    """Its raw and gzip user-data sizes (packaging.gzip_notes)."""


def _user_data_size(tree: OutputTree, name: str) -> tuple[int, int] | None:
    """A reused or carried-over node's (raw, gzip) user-data sizes, None when not known."""
    try:
        return tree.size(f"nodes/{name}/user-data"), tree.size(f"nodes/{name}/user-data.gz")
    except (KeyError, OSError):
        return None


def _render(shared: _Shared, index: int) -> _NodeOutput:
    """One node's files and manifest entry: independent of every other node, so run in any process."""
    plan, bundle = shared.plan, shared.bundle
    node = plan.nodes[index]
    rendered = cloudinit.render_node(
        plan,
        node,
        pki_files=distribute.node_pki_files(plan, node, bundle),
        token=bundle.token,
        ca_hash=bundle.discovery_hash,
    )
    if shared.observe is not None:
        shared.observe(node, rendered)
    gz = packaging.gzip_bytes(rendered.user_data)
    problems = packaging.size_problems(index, rendered, list(plan.settings.seed.targets), gz)
    http = packaging.http_published(node.role, shared.publish)
    arts = packaging.node_artifacts(rendered, epoch=shared.epoch, base_url=shared.base_url, gz=gz, http=http)
    # written here, in the worker (its own files only, under nodes/<name>/ and http/<name>/): sending
    # ~200 KB a node back to the parent cost more than writing it
    tree = shared.tree
    rewritten, linked = tree.rewritten, tree.linked
    for art in arts:
        tree.write(art.rel, art.data, art.mode)
    digests = {art.rel: tree.written[art.rel] for art in arts}
    entry = node_manifest(node, rendered, digests, bundle)
    remote = os.getpid() != shared.parent
    sizes = (len(rendered.user_data), len(gz))
    new, relinked = tree.rewritten - rewritten, tree.linked - linked
    return _NodeOutput(entry, problems, digests, new, relinked, remote, sizes)


@contextlib.contextmanager
def _lock_kept_from_workers(tree: OutputTree) -> Iterator[None]:
    """Worker processes close the tree's lock: one outliving this bake must not block the next."""
    fd = tree._lock_fd
    if fd is not None:
        parallel.WORKER_CLOSES.add(fd)
    try:
        yield
    finally:
        if fd is not None:
            parallel.WORKER_CLOSES.discard(fd)


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
    with tree_class(options.out_root, plan.name) as tree, _lock_kept_from_workers(tree):
        bundle_path = options.secrets or bundledir.default_path(plan.name)
        keys = options.keys or sealing.Keys.from_env()
        reader = sealing.Reader(bundle_path, keys)
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
        _refuse_foreign_ca(tree, bundle, bundle_path, options.rotate_ca)
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
        if plan.control_planes:
            tree.write("admin.conf", distribute.operator_admin_conf(plan, bundle), 0o600)
        epoch = source_epoch(bundle)
        previous = _previous_manifest(tree)
        previous_nodes = {n.get("name"): n for n in (previous or {}).get("nodes", [])}
        problems: list[Problem] = []
        publish = plan.settings.seed.http_publish_control_planes
        node_entries = []
        total = len(plan.nodes)
        shared = _Shared(plan, bundle, epoch, base_url, publish, tree, options.observe)
        # the directories workers would otherwise race to create (one process, or a DryTree: none)
        shared_dirs = ["nodes"] if plan.nodes and jobs > 1 else []
        if shared_dirs and any(packaging.http_published(n.role, publish) for n in plan.nodes):
            shared_dirs.append("http")
        for rel in shared_dirs:
            private_dirs(tree.path(rel))
        plan_digest = hashlib.sha256(repr(plan).encode()).hexdigest()
        previous_inputs = _previous_inputs(tree)
        reused: dict[int, dict[str, Any]] = {}
        todo = []
        for i, node in enumerate(plan.nodes):
            if options.only and node.name not in options.only:
                continue
            pki_files = distribute.node_pki_files(plan, node, bundle)
            shared.inputs[node.name] = node_inputs(plan_digest, node, pki_files, bundle, shared)
            entry = None
            # --only re-renders what it names, whatever its inputs; bake plan renders every node to compare
            if not options.only and not in_process:
                entry = _reuse(
                    tree,
                    previous_nodes.get(node.name),
                    shared.inputs[node.name],
                    previous_inputs.get(node.name),
                )
            if entry is not None:
                reused[i] = entry
            else:
                todo.append(i)
        sizes: list[tuple[str, int, int]] = []
        with contextlib.closing(parallel.ordered_map(_render, shared, todo, jobs)) as outputs:
            for i, node in enumerate(plan.nodes):
                if progress:
                    progress(node.name, i, total)
                if options.only and node.name not in options.only:
                    http = packaging.http_published(node.role, publish)
                    node_entries.append(
                        _carry_over(tree, previous_nodes.get(node.name), node, http, base_url)
                    )
                    known_size = _user_data_size(tree, node.name)
                    if known_size is not None:
                        sizes.append((node.name, *known_size))
                    continue
                if i in reused:  # same inputs as the previous bake: its files are linked already
                    node_entries.append(reused[i])
                    known_size = _user_data_size(tree, node.name)
                    if known_size is not None:
                        sizes.append((node.name, *known_size))
                    continue
                out = next(outputs)
                sizes.append((node.name, *out.sizes))
                problems += out.problems
                if out.remote:
                    tree.written.update(out.written)
                    tree.rewritten += out.rewritten
                    tree.linked += out.linked
                node_entries.append(out.entry)
        if problems:
            raise BakeError(problems)
        gzip_notes = packaging.gzip_notes(sizes, plan.settings.seed.targets)
        # what the next bake compares against; a node carried over by --only keeps its previous digest
        inputs = {n.name: shared.inputs.get(n.name, previous_inputs.get(n.name)) for n in plan.nodes}
        known = {name: digest for name, digest in inputs.items() if digest is not None}
        tree.write(INPUTS_FILE, (json.dumps(known, indent=2, sort_keys=True) + "\n").encode(), 0o600)
        image_seeds = []
        for seed in seeds:
            if progress:
                progress(f"images seed {seed.arch}", total, total)
            image_seeds.append(write_images_seed(tree, seed, epoch))
        if progress:
            progress("manifest", total, total)
        manifest = cluster_manifest(plan, bundle, node_entries)
        if image_seeds:
            manifest["imageSeeds"] = image_seeds
        tree.write("manifest.json", (json.dumps(manifest, indent=2) + "\n").encode(), 0o600)
        sums = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(tree.written.items()))
        tree.write("SHA256SUMS", sums.encode(), 0o600)
        # the bundle last, just before the swap: a bake that failed above changed nothing on disk
        files = list(secrets.bundle_files(bundle, plan))
        if options.dry_run:
            bundledir.interrupted(bundle_path)
            bundle_written = not bundledir.unchanged(bundle_path, files, seal, reader)
        else:
            bundle_written = bundledir.save(bundle_path, files, seal, reader)
        final = tree.commit()
        return BakeResult(
            plan, final, manifest, bundle_path, changes, tree.rewritten, tree.linked,
            _seed_warnings(seeds) + stale + gzip_notes, bundle_written, dict(tree.written),
            _expiring(plan, bundle, now),
        )  # fmt: skip
