"""The per-node file set: what lands on a node's disk, with the mode and owner it must have there."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO


class Sensitivity(StrEnum):
    """How a file must be treated in every artifact that carries it."""

    PUBLIC = "public"
    SECRET = "secret"  # private keys, kubeconfigs with keys, tokens: 0600 everywhere, never on the wrong role


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "root:root"
    sensitivity: Sensitivity = Sensitivity.PUBLIC

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or "\n" in self.path or "/../" in self.path:
            raise ValueError(f"node file path must be absolute and clean: {self.path!r}")
        if self.sensitivity is Sensitivity.SECRET and self.mode & 0o077:
            raise ValueError(f"{self.path}: secret file with group/other permissions {self.mode:o}")

    @property
    def secret(self) -> bool:
        return self.sensitivity is Sensitivity.SECRET

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def mode_text(self) -> str:
        return f"{self.mode:04o}"


def secret(path: str, content: bytes, mode: int = 0o600) -> NodeFile:
    return NodeFile(path, content, mode, sensitivity=Sensitivity.SECRET)


def public(path: str, content: bytes | str, mode: int = 0o644) -> NodeFile:
    data = content.encode() if isinstance(content, str) else content
    return NodeFile(path, data, mode)


def walk_files(root: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Everything below `root` that is not a directory, by its path relative to `root`, with its directory
    entry (whose status needs no second look-up by path). Like os.walk: a link to a directory is not
    followed, an unreadable directory is skipped. A re-bake walks trees of thousands of files: a
    Path.rglob and a stat a file cost several times more."""
    cut = len(root) + 1
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if not entry.is_dir():
                yield entry.path[cut:], entry
            elif not entry.is_symlink():
                stack.append(entry.path)


def sha256_file(path: Path) -> str:
    """Streamed: an images seed holds gigabytes of image archives."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def private_dirs(path: Path) -> None:
    """Create the missing directories of `path` 0700 whatever the umask: they hold keys."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        p.mkdir(mode=0o700)
        os.chmod(p, 0o700)


def write_new(target: Path, data: bytes, mode: int) -> None:
    """Create `target` (it must not exist) with `mode` whatever the umask, then its bytes: a secret is
    never readable by others, not even for an instant."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def sha256_rewound(fh: BinaryIO) -> tuple[str, int]:
    """(sha256, size) of what was just written to `fh`, read back from its start."""
    fh.flush()
    fh.seek(0)
    h = hashlib.sha256()
    while chunk := fh.read(1 << 20):
        h.update(chunk)
    return h.hexdigest(), fh.tell()
