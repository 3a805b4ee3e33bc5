"""Loading a profile: read YAML (embedded name or file), merge `extends:` and `--set`, then validate it whole.

Validation is in two passes: the pydantic schema (`builder.model`) checks shapes and field values, then
`builder.validation` checks what only the whole profile can tell. Both collect every problem before
failing, so a user fixes a profile in one go, and nothing is rendered from a profile that fails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import resources, validation, yamlio
from ..errors import Problem, ProfileError
from ..model import Profile


def _loc_to_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part.startswith("function-"):  # pydantic's union/validator markers
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required field is missing"
        problems.append(Problem(_loc_to_path(err["loc"]), msg))
    return sorted(set(problems), key=lambda p: (p.path, p.message))


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced by the override."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override


_SET_PATH = re.compile(r"([A-Za-z0-9_-]+)|\[(\d+)\]")


def _split_set_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    pos = 0
    for segment in path.split("."):
        if not segment:
            raise ValueError("empty path segment")
        pos = 0
        for m in _SET_PATH.finditer(segment):
            if m.start() != pos:
                raise ValueError(f"cannot parse {segment!r}")
            parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
            pos = m.end()
        if pos != len(segment):
            raise ValueError(f"cannot parse {segment!r}")
    return parts


FREE_FORM = ("cluster.kubelet.config.",)
"""Paths into untyped mappings, where a --set value keeps its YAML type (maxPods=110 is an int)."""


def _set_value(raw: str, path: str) -> Any:
    """Parse a --set value without letting YAML guess types for typed fields.

    Scalars stay strings (pydantic converts them by field type, so `1.30` stays "1.30") except
    under FREE_FORM paths; whole `[...]` / `{...}` flow collections are parsed as YAML (a bracketed
    IPv6 endpoint like `[fd00::1]:6443` is not one); `null` / `~` clear a field.
    """
    if raw in ("null", "~"):
        return None
    if path.startswith(FREE_FORM) or (raw[:1], raw[-1:]) in (("[", "]"), ("{", "}")):
        try:
            value = yamlio.load_document(raw, source=f"--set {path}")
        except ProfileError:
            if path.startswith(FREE_FORM):
                raise
            return raw
        if path.startswith(FREE_FORM) or isinstance(value, list | dict):
            return value
    return raw


def apply_set(data: Any, assignment: str) -> Any:
    """Apply one `--set path=value`; the value is parsed as a YAML scalar/flow value."""
    if "=" not in assignment:
        raise ProfileError([Problem(f"--set {assignment}", "expected path=value")])
    path, _, raw = assignment.partition("=")
    try:
        keys = _split_set_path(path)
    except ValueError as exc:
        raise ProfileError([Problem(f"--set {path}", str(exc))]) from None
    value = _set_value(raw, path)
    if not isinstance(data, dict):
        raise ProfileError([Problem("", "profile is not a mapping")])
    node: Any = data
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        where = _loc_to_path(keys[: i + 1])
        if isinstance(key, int):
            if not isinstance(node, list) or not 0 <= key < len(node):
                raise ProfileError([Problem(where, "no such list item (--set)")])
        elif not isinstance(node, dict):
            raise ProfileError([Problem(where, "parent is not a mapping (--set)")])
        if last:
            node[key] = value
        else:
            if isinstance(key, str) and key not in node:
                node[key] = {}
            node = node[key]
    return data


def _read_raw(ref: str, *, base_dir: Path | None, chain: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """Read a profile by embedded name or path and resolve its `extends:` chain into one mapping."""
    if len(chain) > 8:
        raise ProfileError([Problem("extends", "chain longer than 8 profiles: " + " -> ".join(chain))])
    path = Path(ref)
    if base_dir is not None and not path.is_absolute() and (base_dir / path).exists():
        path = base_dir / path
    if path.suffix in (".yaml", ".yml") or "/" in ref or path.is_file():
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise ProfileError([Problem("--profile", f"cannot read {ref}: {exc.strerror}")]) from None
        source, next_base = str(path), path.parent
    else:
        embedded = resources.profile_text(ref)
        if embedded is None:
            names = ", ".join(resources.profile_names())
            raise ProfileError(
                [Problem("--profile", f"no profile file or embedded profile {ref!r} ({names})")]
            )
        text, source, next_base = embedded, f"profiles/{ref}.yaml", None
    if source in chain:
        raise ProfileError([Problem("extends", "cycle: " + " -> ".join((*chain, source)))])
    data = yamlio.load_document(text, source=source)
    if not isinstance(data, dict):
        raise ProfileError([Problem(source, "a profile must be a YAML mapping")])
    if next_base is not None:
        absolutize_paths(data, next_base)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ProfileError([Problem("extends", "must be a profile name or path")])
        base, _ = _read_raw(parent, base_dir=next_base, chain=(*chain, source))
        data = deep_merge(base, data)
    return data, source


def load_profile(ref: str, sets: Sequence[str] = (), *, check_archives: bool = True) -> Profile:
    """Load, merge and fully validate a profile; raise ProfileError listing every problem.

    `check_archives=False` skips the checks of cluster.airgap's image archives (`bake images` lists
    what to put in them before they exist)."""
    data, _ = _read_raw(ref, base_dir=Path.cwd(), chain=())
    for assignment in sets:
        data = apply_set(data, assignment)
    absolutize_paths(data, Path.cwd())  # what --set added is relative to where bake runs
    return validate(data, check_archives=check_archives)


def absolutize_paths(data: dict[str, Any], base: Path) -> None:
    """Make the file paths of cluster.airgap absolute against the directory of the profile file that
    names them, so `extends:` chains and --set each resolve against their own place. Shapes are
    left to validation: only strings where paths belong are touched."""
    cluster = data.get("cluster")
    airgap = cluster.get("airgap") if isinstance(cluster, dict) else None
    if not isinstance(airgap, dict):
        return
    lists = list(airgap["images"].values()) if isinstance(airgap.get("images"), dict) else []
    lists.append(airgap.get("cniManifests"))
    for paths in lists:
        if isinstance(paths, list):
            for i, item in enumerate(paths):
                if isinstance(item, str) and item and not Path(item).is_absolute():
                    paths[i] = str(base / item)


def validate(data: Any, *, check_archives: bool = True) -> Profile:
    """The schema, then (on a profile that has its shape) every whole-profile check; all problems at once."""
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        shape = _pydantic_problems(exc)
        extra = [p for p in validation.raw_problems(data) if p not in shape]
        raise ProfileError(shape + extra) from None
    problems = list(validation.problems(profile, check_archives=check_archives))
    if problems:
        raise ProfileError(problems)
    return profile
