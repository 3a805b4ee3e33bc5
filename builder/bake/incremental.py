"""What a re-bake keeps from the previous one: a node whose inputs (code and templates included) did
not change is linked, not rendered; `--only` carries the other nodes over."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import zlib
from collections.abc import Mapping
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any

from .. import __version__, resources
from ..emit import packaging
from ..emit.outputs import OutputTree
from ..errors import OutputError
from ..files import write_new
from ..model import Role
from ..node.distribute import PkiFile
from ..pki import bundledir, secrets
from ..plan import ClusterPlan, NodePlan, images
from .manifest import cert_entries
from .shared import Shared


def tool_sources() -> list[tuple[str, Path]]:
    """Every file a node's files are made from, by a name that says where it is: all of the package's
    modules (every stage sub-package renders part of a node) and all templates. By relative path, not
    file name: the packages hold several `__init__.py`."""
    package = Path(__file__).parent.parent
    templates = resources.templates_dir()
    code = [(p.relative_to(package.parent).as_posix(), p) for p in sorted(package.rglob("*.py"))]
    data = [(f"templates/{p.relative_to(templates).as_posix()}", p) for p in sorted(templates.rglob("*"))]
    return [*code, *((name, p) for name, p in data if p.is_file())]


def environment() -> list[str]:
    """What shapes a node's bytes besides the code: Python, zlib, and every installed distribution by its
    dist-info name, which carries its version (PyYAML's dumper, Jinja2, pycdlib, zopfli...). An upgrade
    of any of them re-renders every node, unrelated ones too: rare, and never stale. Directory names, not
    importlib.metadata, which would add some 80 ms to an unchanged re-bake."""
    found = [sys.version, zlib.ZLIB_RUNTIME_VERSION]
    for entry in sys.path:
        if Path(entry).name in ("site-packages", "dist-packages") and os.path.isdir(entry):
            found += sorted(n for n in os.listdir(entry) if n.endswith((".dist-info", ".egg-info")))
    return found


@functools.cache
def tool_digest() -> str:
    """This bake's code and templates, and the environment it runs in: a node baked by another version
    of any of them is re-rendered."""
    h = hashlib.sha256(__version__.encode())
    for part in environment():
        h.update(b"\0" + part.encode())
    for name, path in tool_sources():
        h.update(b"\0" + name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def plan_digest(plan: ClusterPlan) -> str:
    """The part of the plan that every node's files may be made from: all of it but the workers and the
    plan's warnings (which only the command line prints). A node's files never name a worker other than
    itself (tests/test_incremental.py edits, adds and removes workers and renders every other node), so
    a worker edit renders that worker only; node_inputs adds the node's own plan."""
    kept = dataclasses.replace(
        plan, nodes=tuple(n for n in plan.nodes if n.role is not Role.WORKER), warnings=()
    )
    return hashlib.sha256(repr(kept).encode()).hexdigest()


def node_inputs(node: NodePlan, pki_files: list[PkiFile], bundle: secrets.Bundle, shared: Shared) -> str:
    """Digest of everything a node's files are made from: the plan (plan_digest: all but the other
    workers; it holds join mode and window, generations, Secrets encryption) and the node's own, the
    bundle items it receives (its leaves, join credential, encryption key), the values every node gets,
    the images it expects, code and templates. The PKI files by what they are made from
    (distribute.PkiFile): a re-bake digests every node without rendering its kubeconfigs.
    Same digest as the previous bake, and files that still match its manifest: nothing to re-render."""
    h = hashlib.sha256()
    for part in (tool_digest(), shared.plan_digest, repr(node), bundle.token, bundle.discovery_hash):
        h.update(part.encode() + b"\0")
    h.update(repr((shared.epoch, shared.base_url, shared.publish, cert_entries(bundle, node.name))).encode())
    # the images the node checks before kubeadm: the CNI's are read from its manifests' content, which the
    # plan names by path only
    h.update(repr([i.normalized for i in images.node_images(shared.plan, node)]).encode())
    for f in pki_files:
        material = f.material
        h.update(f"\0{len(material)}\0".encode() + material)
    return h.hexdigest()


def packed_inputs(entry: dict[str, Any], seed: dict[str, bytes], http: bool, shared: Shared) -> str:
    """Digest of what a rendered node's artifacts and manifest entry are made from: its seed files, its
    entry without the artifacts (packaging.node_artifacts and manifest.node_manifest are in the code's
    digest), the timestamps and base URL they carry, and whether its seed is published.
    A profile edit outside the workers changes every node's inputs (plan_digest), so every node is
    rendered again; a node whose seed and entry came out the same is then linked, not packed and written
    again."""
    h = hashlib.sha256()
    for part in (
        tool_digest(),
        json.dumps(entry, sort_keys=True),
        repr((shared.epoch, shared.base_url, http)),
    ):
        h.update(part.encode() + b"\0")
    for name, data in sorted(seed.items()):
        h.update(f"{name}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


INPUTS_FILE = "inputs.json"  # node -> digest of its inputs; kept out of manifest.json, which is golden
PACKED_FILE = "packed.json"  # node -> packed_inputs of its files


def previous_inputs(tree: OutputTree, name: str = INPUTS_FILE) -> dict[str, str]:
    raw = tree.previous_bytes(name)
    try:
        data = json.loads(raw) if raw is not None else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def reuse(
    tree: OutputTree, entry: dict[str, Any] | None, digest: str | None, previous: str | None
) -> dict[str, Any] | None:
    """The previous bake's files of a node whose inputs did not change, linked into this generation,
    or None (nothing linked) when any of them is missing or differs from the previous manifest (or
    either digest is unknown)."""
    if entry is None or digest is None or previous != digest:
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


def carry_over(
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
            tree.write(art.rel, art.data, art.mode, art.same_as)
            artifacts[art.rel] = hashlib.sha256(art.data).hexdigest()
    return {**entry, "artifacts": dict(sorted(artifacts.items()))}


# --------------------------------------------------------------------------------------------------
# A re-bake with the inputs of the current tree's bake: kept on those inputs alone

STEADY_FILE = "steady.json"
"""In the cluster's state directory (beside outputs.STAT_FILE): the digest of the inputs of the bake that
made the current generation, and the span of time its decisions hold in. A bake with the same inputs in
that span would find nothing to change: it keeps the generation after checking its files alone."""


def steady_key(plan: ClusterPlan, bundle_path: Path, base_url: str | None) -> str | None:
    """Digest of everything a bake's output is made of apart from the time: code and templates, the plan
    (the profile and --set, resolved), the bundle's files byte for byte, where it is, the seeds' base URL
    and SOURCE_DATE_EPOCH. None when the bundle is missing or sealed (a bake opens a sealed one)."""
    bundle = bundledir.clear_digest(bundle_path)
    if bundle is None:
        return None
    h = hashlib.sha256()
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    # the plan a node at a time (plan_digest, then each node): 10,000 nodes make a 12 MB repr at once
    where = (str(bundle_path.resolve()), repr(base_url), repr(epoch), bundle)
    for part in chain((tool_digest(), plan_digest(plan)), (repr(node) for node in plan.nodes), where):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def record_steady(
    tree: OutputTree, generation: Path, plan: ClusterPlan, bundle: secrets.Bundle, bundle_path: Path,
    base_url: str | None, now: datetime, warnings: list[str],
) -> None:  # fmt: skip
    """After a bake that warned of no certificate due: what the next one needs to keep `generation`
    without redoing this one's work, with the warnings this one printed."""
    from .. import check  # the calendar is `bake check`'s

    start, until = check.steady_span(bundle, plan.settings.certificate_renewal)
    key = steady_key(plan, bundle_path, base_url)
    if key is None or not start <= now < until:
        return
    doc = {
        "generation": generation.name,
        "key": key,
        "from": start.isoformat(),
        "until": until.isoformat(),
        "warnings": warnings,
    }
    tmp = tree.state / f"{STEADY_FILE}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    write_new(tmp, (json.dumps(doc, indent=2) + "\n").encode(), 0o600)
    os.replace(tmp, tree.state / STEADY_FILE)


def steady(tree: OutputTree, key: str, now: datetime) -> tuple[Mapping[str, str], list[str]] | None:
    """The current generation's SHA256SUMS and warnings when its bake had these inputs, `now` is within
    the span its decisions hold in, and every file is still the one it wrote (intact_previous); else
    None: the bake runs in full."""
    if tree.previous is None:
        return None
    try:
        doc = json.loads((tree.state / STEADY_FILE).read_bytes())
        recorded = (doc["generation"], doc["key"])
        within = datetime.fromisoformat(doc["from"]) <= now < datetime.fromisoformat(doc["until"])
        warnings = [str(w) for w in doc["warnings"]]
    except (OSError, ValueError, KeyError, TypeError):  # TypeError: a time without its zone, too
        return None
    if recorded != (tree.previous.name, key) or not within:
        return None
    sums = tree.intact_previous()
    return (sums, warnings) if sums is not None else None
