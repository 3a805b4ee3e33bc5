"""Embedded profiles and templates, found the same way from a source tree and from an installed wheel.

The wheel carries them as `builder/_data/{profiles,templates}` (pyproject force-include); a source
checkout or editable install reads the top-level `profiles/` and `templates/` directories.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

_PACKAGE = Path(__file__).resolve().parent
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*\Z")


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


@cache
def templates() -> jinja2.Environment:
    """The one Jinja environment of every template. Its templates are plain text (no autoescape) and
    strict (an undefined name is an error); block tags take their own line (trim_blocks, lstrip_blocks);
    comments are `{## ##}`, out of the way of bash's `${#array[@]}`; `shquote` quotes a shell word.
    Jinja is imported here, on first use: a re-bake that renders no node never needs it."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        comment_start_string="{##",
        comment_end_string="##}",
    )
    env.filters["shquote"] = shlex.quote
    return env
