"""Shared fixtures: one secrets bundle per (profile, --set) per session; RSA keygen is the slow part."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from builder.pki import secrets
from builder.plan import ClusterPlan, build_plan
from builder.validation.profile import load_profile

from . import helpers, peers

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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After a golden refresh, say which goldens changed and how (review before committing)."""
    if not helpers.GOLDEN_CHANGES:
        return
    terminalreporter.section(f"golden files rewritten: {len(helpers.GOLDEN_CHANGES)}")
    for path, summary, _ in helpers.GOLDEN_CHANGES:
        terminalreporter.write_line(f"  {summary:>18}  {path.relative_to(helpers.REPO)}")
    summaries = [summary for _, summary, _ in helpers.GOLDEN_CHANGES]
    new = sum(s.startswith("new") for s in summaries)
    removed = sum(s.startswith("removed") for s in summaries)
    terminalreporter.write_line(f"{len(summaries) - new - removed} changed, {new} new, {removed} removed")
    for path, _, diff in helpers.GOLDEN_CHANGES:
        if diff:
            lines = diff.splitlines()
            terminalreporter.write_line("")
            terminalreporter.write_line("\n".join(lines[:40]))
            if len(lines) > 40:
                rel = path.relative_to(helpers.REPO)
                terminalreporter.write_line(f"... {len(lines) - 40} more diff lines for {rel}")
