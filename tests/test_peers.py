"""No silent skips in CI: BAKE_REQUIRE_PEERS=1 turns a skipped peer test into a failure, and the JUnit
summary used by `.ci/run` counts skips and fails on a skipped peer test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from . import junit_skips

REPO = Path(__file__).resolve().parents[1]

SAMPLE = """
import shutil
import pytest
from tests import peers


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("no-such-peer-program") is None, reason="peer program missing")
def test_marked_skipif():
    pass


def test_program_helper():
    peers.program("no-such-peer-program")


@pytest.mark.peer
def test_marked_skip_in_body():
    pytest.skip("no sandbox here")


@pytest.mark.realk8s
def test_realk8s():
    pytest.skip("kubeadm is not built")


def test_plain_skip():
    pytest.skip("not a peer: an optional case")


@pytest.mark.integration
def test_peer_that_runs():
    pass
"""


def _run(tmp_path: Path, require: bool) -> tuple[dict[str, str], Path]:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(SAMPLE))
    junit = tmp_path / f"junit-{int(require)}.xml"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "BAKE_REQUIRE_PEERS")}
    env["PYTHONPATH"] = str(REPO)
    if require:
        env["BAKE_REQUIRE_PEERS"] = "1"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
            "--rootdir", str(tmp_path), "-c", os.devnull, "-o", "junit_family=xunit1",
            f"--junitxml={junit}", "-rA", "-W", "ignore::pytest.PytestUnknownMarkWarning",
            str(tmp_path / "test_sample.py"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [k for k in ("failure", "error", "skipped") if case.find(k) is not None]
        outcomes[str(case.get("name"))] = (
            {"failure": "FAILED", "error": "ERROR", "skipped": "SKIPPED"}[kinds[0]] if kinds else "PASSED"
        )
    return outcomes, junit


def test_skips_are_skips_on_a_developer_machine(tmp_path: Path) -> None:
    outcomes, junit = _run(tmp_path, require=False)
    assert outcomes == {
        "test_marked_skipif": "SKIPPED",
        "test_program_helper": "SKIPPED",
        "test_marked_skip_in_body": "SKIPPED",
        "test_realk8s": "SKIPPED",
        "test_plain_skip": "SKIPPED",
        "test_peer_that_runs": "PASSED",
    }
    total, skipped = junit_skips.skips(junit)
    assert total == 6
    assert {s.test.split("::")[1]: s.peer for s in skipped} == {
        "test_marked_skipif": True,
        "test_program_helper": False,  # not marked: BAKE_REQUIRE_PEERS makes it fail, see below
        "test_marked_skip_in_body": True,
        "test_realk8s": True,
        "test_plain_skip": False,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tests.junit_skips", str(junit)], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == "5 of 6 tests skipped (3 needing a real peer)"
    assert "PEER test_sample::test_realk8s: kubeadm is not built" in proc.stdout


def test_peer_skips_fail_in_ci(tmp_path: Path) -> None:
    outcomes, junit = _run(tmp_path, require=True)
    assert outcomes == {
        "test_marked_skipif": "ERROR",  # a skipif is evaluated in setup: a failure there is an error
        "test_program_helper": "FAILED",
        "test_marked_skip_in_body": "FAILED",
        "test_realk8s": "FAILED",
        "test_plain_skip": "SKIPPED",
        "test_peer_that_runs": "PASSED",
    }
    text = junit.read_text()
    assert "BAKE_REQUIRE_PEERS=1: this test needs a real peer and was skipped: peer program missing" in text
    assert "no-such-peer-program is not installed (apt-get install no-such-peer-program)" in text
    assert junit_skips.main([str(junit)]) == 0  # the one skip left is not a peer test
