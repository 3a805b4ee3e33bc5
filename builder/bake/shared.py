"""What every node's rendering reads, in one object: the parent builds it, forked workers inherit it."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ..emit.outputs import OutputTree
from ..node import cloudinit
from ..pki import secrets
from ..plan import ClusterPlan, NodePlan
from .manifest import PreviousManifest


@dataclass(frozen=True)
class Shared:
    """What every node's rendering reads; handed to the worker processes by fork (it holds keys)."""

    plan: ClusterPlan
    bundle: secrets.Bundle
    epoch: int
    base_url: str | None
    publish: bool
    tree: OutputTree
    observe: Callable[[NodePlan, cloudinit.RenderedNode], None] | None = None
    """BakeOptions.observe: only with one job, so that it is called in this process."""
    plan_digest: str = ""
    """incremental.plan_digest: the plan but its workers, part of every node's inputs."""
    parent: int = field(default_factory=os.getpid)
    inputs: dict[str, str] = field(default_factory=dict)
    """Node name -> digest of its inputs, known before rendering for the nodes the previous bake has."""
    previous: PreviousManifest | None = None
    packed: dict[str, str] = field(default_factory=dict)
    """Node name -> the previous bake's incremental.packed_inputs: a rendered node whose digest is the
    same gets its previous files linked (empty: every rendered node is packed)."""
