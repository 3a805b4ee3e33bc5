"""Summarise the skips of a pytest JUnit report; exit 1 when a test that needs a real peer was skipped.

`.ci/run` calls it after the suite: `python -m tests.junit_skips REPORT.xml`. Peer tests are tagged with
the JUnit property `peer=1` by conftest.py (see tests/peers.py). Under BAKE_REQUIRE_PEERS=1 such a skip
is already a failure; this is the second look, and the place where the skip count is printed.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Skip:
    test: str
    reason: str
    peer: bool


def skips(report: Path) -> tuple[int, list[Skip]]:
    """(number of test cases, the skipped ones)."""
    root = ET.parse(report).getroot()
    cases = list(root.iter("testcase"))
    out = []
    for case in cases:
        skipped = case.find("skipped")
        if skipped is None:
            continue
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        reason = skipped.get("message") or (skipped.text or "").strip()
        out.append(Skip(name, reason, props.get("peer") == "1"))
    return len(cases), out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.junit_skips REPORT.xml", file=sys.stderr)
        return 2
    total, skipped = skips(Path(argv[0]))
    peer = [s for s in skipped if s.peer]
    print(f"{len(skipped)} of {total} tests skipped ({len(peer)} needing a real peer)")
    for s in skipped:
        print(f"  {'PEER ' if s.peer else ''}{s.test}: {s.reason}")
    if peer:
        print("a test that needs a real peer was skipped: install the peer (see .ci/run)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
