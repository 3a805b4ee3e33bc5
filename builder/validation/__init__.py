"""The validation stage: every problem of the whole profile, each with its path, before anything renders.

`builder.validation.profile.validate` runs the schema (`builder.model`) and then `problems` here, for every
node whatever `--only` selects, so a profile that a renderer would choke on, or that kubeadm, the kubelet or
the node's OS would refuse, fails the bake in one run that lists all of it. Renderers trust a validated
profile: they keep at most an `assert`.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import Problem
from ..model import Profile
from ..node import airgap
from . import components, structure
from .structure import raw_problems

__all__ = ["problems", "raw_problems"]


def problems(p: Profile, *, check_archives: bool = True) -> Iterator[Problem]:
    """Everything a schema-valid profile can still get wrong; `check_archives=False` skips the airgap
    archives' contents (`bake images` lists what to put in them before they exist)."""
    yield from structure.problems(p)
    yield from components.problems(p)
    yield from airgap.profile_problems(p, check_archives=check_archives)
