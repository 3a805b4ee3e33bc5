"""Real peers (programs, the root sandbox, QEMU, the upstream Kubernetes builds) and what a missing one means.

On a developer machine a test whose peer is missing is skipped, with the reason. In CI
(`BAKE_REQUIRE_PEERS=1`, set by `.ci/run`) such a skip is a failure: a peer test that did not run
proves nothing, and nobody reads skip lines. Two ways a test says it needs a peer:

- it calls `program(name)` / `missing(reason)` from here, or
- it carries one of the markers in PEER_MARKERS; then any skip of it (a `skipif`, a `pytest.skip` in
  a fixture) is turned into a failure by the hook in conftest.py.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE_ENV = "BAKE_REQUIRE_PEERS"
# integration: real peer programs; vm: QEMU boots; realk8s: the upstream Kubernetes builds; peer: any
# other real peer (the root sandbox, ...)
PEER_MARKERS = ("peer", "integration", "vm", "realk8s")


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def missing(reason: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) because a peer is not available."""
    if required():
        pytest.fail(f"{REQUIRE_ENV}=1 and a real peer is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def program(name: str, package: str | None = None) -> str:
    """The path of a peer program, or skip / fail naming the Debian package that provides it."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (apt-get install {package or name})")
    return path


def needs_peer(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) is not None for m in PEER_MARKERS)


def skip_to_failure(item: pytest.Item, report: pytest.TestReport) -> None:
    """In CI, a skipped peer test becomes a failed one (called from pytest_runtest_makereport)."""
    if report.skipped and required() and needs_peer(item) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_ENV}=1: this test needs a real peer and was skipped: {reason}"
