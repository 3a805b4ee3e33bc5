"""Shared fixtures: one secrets bundle per (profile, --set) per session; RSA keygen is the slow part."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from builder import secrets
from builder.plan import ClusterPlan, build_plan
from builder.profile import load_profile

from . import peers

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag peer tests in the JUnit report, so `.ci/run` can tell a skipped peer test from another skip."""
    for item in items:
        if peers.needs_peer(item):
            item.user_properties.append(("peer", "1"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """BAKE_REQUIRE_PEERS=1 (CI): a skipped peer test is a failure."""
    outcome = yield
    peers.skip_to_failure(item, outcome.get_result())
