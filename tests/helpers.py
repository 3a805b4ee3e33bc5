"""Shared helpers for the end-to-end tests: run the real CLI, hash a tree."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

BAKE = [sys.executable, "-m", "builder.cli"]


def bake(*args: str, out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `bake --out OUT ARGS...` as a user would, in a child process."""
    return subprocess.run(
        [*BAKE, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def check_golden(path: Path, content: bytes) -> None:
    """Compare with a golden file; UPDATE_GOLDEN=1 (`make golden`) rewrites it instead."""
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    assert path.is_file(), f"missing golden {path}: run with UPDATE_GOLDEN=1"
    assert path.read_bytes() == content, f"{path} differs: review, then refresh with UPDATE_GOLDEN=1"
