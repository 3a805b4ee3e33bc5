"""What a bake writes into the output tree: each node's files, rendered and written in a worker
process, and the images seeds."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .. import parallel
from ..emit import packaging
from ..emit.outputs import OutputTree
from ..errors import Problem
from ..node import airgap, cloudinit, distribute
from . import incremental
from .manifest import node_manifest, node_text
from .shared import Shared


@dataclass(frozen=True)
class NodeOutput:
    """A rendered node, its files already written; from a worker, what the parent's tree must learn."""

    entry: bytes
    """Its manifest entry, encoded here (manifest.node_text): the parent spools it as it is."""
    problems: list[Problem]
    written: dict[str, str]
    rewritten: int
    linked: int
    remote: bool
    inputs: str
    """The digest of its inputs (incremental.node_inputs), for the next bake."""
    packed: str
    """incremental.packed_inputs, for the next bake."""


def write_node(shared: Shared, index: int) -> NodeOutput:
    """One node's files and manifest entry: independent of every other node, so run in any process."""
    plan, bundle = shared.plan, shared.bundle
    node = plan.nodes[index]
    sources = distribute.node_pki_sources(plan, node, bundle)
    inputs = shared.inputs.get(node.name) or incremental.node_inputs(node, sources, bundle, shared)
    rendered = cloudinit.render_node(
        plan, node, pki_files=[f.file() for f in sources], token=bundle.token, ca_hash=bundle.discovery_hash
    )
    if shared.observe is not None:
        shared.observe(node, rendered)
    gz = packaging.gzip_bytes(rendered.user_data)
    problems = packaging.size_problems(index, rendered, list(plan.settings.seed.targets), gz)
    http = packaging.http_published(node.role, shared.publish)
    entry = node_manifest(node, rendered, {}, bundle)
    packed = incremental.packed_inputs(entry, packaging.seed_files(rendered), http, shared)
    # written here, in the worker (its own files only, under nodes/<name>/ and http/<name>/): sending
    # ~200 KB a node back to the parent cost more than writing it
    tree = shared.tree
    rewritten, linked = tree.rewritten, tree.linked
    before = shared.packed.get(node.name)
    found = shared.previous.node(node.name) if shared.previous is not None and before == packed else None
    if found is not None and incremental.reuse(tree, found[0], packed, before):
        text, digests = found[1], dict(found[0]["artifacts"])
    else:
        arts = packaging.node_artifacts(
            rendered, epoch=shared.epoch, base_url=shared.base_url, gz=gz, http=http
        )
        for art in arts:
            tree.write(art.rel, art.data, art.mode, art.same_as)
        digests = {art.rel: tree.written[art.rel] for art in arts}
        text = node_text({**entry, "artifacts": dict(sorted(digests.items()))})
    remote = os.getpid() != shared.parent
    return NodeOutput(
        text, problems, digests, tree.rewritten - rewritten, tree.linked - linked, remote, inputs, packed
    )


@contextlib.contextmanager
def lock_kept_from_workers(tree: OutputTree) -> Iterator[None]:
    """Worker processes close the tree's lock: one outliving this bake must not block the next."""
    fd = tree._lock_fd
    if fd is not None:
        parallel.WORKER_CLOSES.add(fd)
    try:
        yield
    finally:
        if fd is not None:
            parallel.WORKER_CLOSES.discard(fd)


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


def seed_warnings(seeds: list[airgap.ArchSeed]) -> list[str]:
    return [
        f"images seed {s.arch}: {', '.join(s.unknown)} do not name all their images; which images the "
        f"{s.arch} nodes will find is checked at first boot only"
        for s in seeds
        if s.unknown
    ]
