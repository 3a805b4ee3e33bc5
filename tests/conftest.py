"""Shared fixtures: one secrets bundle per (profile, --set) per session; RSA keygen is the slow part."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from builder import secrets
from builder.plan import ClusterPlan, build_plan
from builder.profile import load_profile

Baked = Callable[..., tuple[ClusterPlan, secrets.Bundle]]


@pytest.fixture(scope="session")
def baked() -> Baked:
    """`baked(profile, *sets)` -> (plan, fresh bundle); cached, so tests must not mutate the bundle."""
    cache: dict[tuple[str, tuple[str, ...]], tuple[ClusterPlan, secrets.Bundle]] = {}

    def get(name: str, *sets: str) -> tuple[ClusterPlan, secrets.Bundle]:
        key = (name, sets)
        if key not in cache:
            plan = build_plan(load_profile(name, sets))
            bundle, _ = secrets.reconcile(plan, None, now=secrets.utcnow())
            cache[key] = (plan, bundle)
        return cache[key]

    return get
