"""Embedded profiles and templates, found the same way from a source tree and from an installed wheel.

The wheel carries them as `builder/_data/{profiles,templates}` (pyproject force-include); a source
checkout or editable install reads the top-level `profiles/` and `templates/` directories.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@cache
def data_dir(kind: str) -> Path:
    for candidate in (_PACKAGE / "_data" / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bake installation is missing its {kind}/ directory")


def profile_names() -> list[str]:
    return sorted(p.stem for p in data_dir("profiles").glob("*.yaml"))


def profile_text(name: str) -> bytes | None:
    if not _NAME.match(name):
        return None
    path = data_dir("profiles") / f"{name}.yaml"
    return path.read_bytes() if path.is_file() else None


def templates_dir() -> Path:
    return data_dir("templates")
