"""Where the secrets bundle lives on disk: apart from the output tree, written whole or not at all.

The bundle is the one artifact that cannot be rebuilt (a new CA is a new cluster), while the output
tree is disposable. So the bundle is kept in `secrets/<cluster>/` (relative to the current directory,
as `outputs/` is) or wherever `--secrets` names, never inside `outputs/`. Bakes before this layout
kept it in the output tree's generation (`outputs/.bake/<cluster>/gen-…/secrets`); such a bundle is
moved out once, with a message.

A changed bundle is written as a complete copy next to the old one and swapped in with two renames;
an interruption between them leaves the previous bundle under a name the next bake points to.
A sealed bundle (sealing.py) keeps its private files as age files; whether it changed is judged on
their clear bytes, since age ciphertext differs at every encryption.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..errors import Problem, SecretsError
from ..files import private_dirs, walk_files, write_new
from . import recipients, sealing
from .secrets import load_bundle, secret_file

DEFAULT_ROOT = Path("secrets")
LEGACY_NAME = "secrets"  # the bundle's directory inside an output generation, before this layout


def default_path(cluster: str) -> Path:
    """The bundle of a cluster when --secrets does not name one: secrets/<cluster>/."""
    return DEFAULT_ROOT / cluster


def _aside(path: Path) -> Path:
    """The previous bundle while a new one is being swapped in."""
    return path.parent / f".{path.name}.previous"


def interrupted(path: Path) -> None:
    """Refuse to go on when an interrupted swap left the only bundle aside (never guess which is good)."""
    aside = _aside(path)
    if aside.is_dir() and not path.exists():
        raise SecretsError(
            [
                Problem(
                    str(path),
                    f"missing, but an interrupted bake left the previous bundle at {aside}; "
                    f"move it back (mv {aside} {path}) and bake again",
                )
            ]
        )


def unchanged(
    path: Path,
    files: list[tuple[str, bytes, int]],
    seal: recipients.Seal | None = None,
    reader: sealing.Reader | None = None,
) -> bool:
    """True when the bundle on disk holds exactly these files, bytes and modes, sealed with `seal`
    (an age file counts as unchanged when `reader` opens it to the same clear bytes)."""
    if not path.is_dir():
        return False
    wanted = recipients.layout(files, seal, secret_file)
    on_disk = {rel: entry for rel, entry in walk_files(str(path)) if entry.is_file()}
    if on_disk.keys() != {rel for rel, _, _, _ in wanted}:
        return False
    for rel, data, mode, sealed in wanted:
        entry = on_disk[rel]
        try:
            if (entry.stat().st_mode & 0o7777) != mode:
                return False
            with open(entry.path, "rb") as fh:
                held = fh.read()
        except OSError:
            return False
        if sealed:
            if reader is None:
                return False
            try:
                held = reader.decrypt(path / rel, held)
            except SecretsError:
                return False
        if held != data and not (rel == recipients.RECIPIENTS and recipients.same_recipients(held, data)):
            return False
    return True


def clear_digest(path: Path) -> str | None:
    """Digest of every file of a bundle in clear (path, mode, bytes); None when there is none at `path`
    or it is sealed (`sealing.Reader.sealed`: opening it is what proves the keys are at hand)."""
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for rel, entry in sorted(walk_files(str(path))):
        if rel in (recipients.RECIPIENTS, recipients.OWN_IDENTITY) or rel.endswith(recipients.SUFFIX):
            return None
        try:  # os-level calls: a re-bake of 1,000 workers reads 2,000 small files here
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                mode = os.fstat(fd).st_mode
                chunks = []
                while chunk := os.read(fd, 1 << 16):
                    chunks.append(chunk)
            finally:
                os.close(fd)
        except OSError:
            return None
        data = b"".join(chunks)
        h.update(f"{rel}\0{mode:o}\0{len(data)}\0".encode() + data)
    return h.hexdigest()


def save(
    path: Path,
    files: Iterable[tuple[str, bytes, int]],
    seal: recipients.Seal | None = None,
    reader: sealing.Reader | None = None,
) -> bool:
    """Make `path` hold exactly `files` (the private ones as age files when `seal`); False when it
    already did (nothing is touched then; `reader` opens the age files it holds to compare).

    The new bundle is written whole beside the old one, then swapped in: a crash leaves either the
    old bundle, the new one, or the old one aside with `interrupted` saying where.
    """
    clear = list(files)
    interrupted(path)
    if unchanged(path, clear, seal, reader):
        return False
    wanted = recipients.layout(clear, seal, secret_file)
    for rel, _, _, _ in wanted:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise SecretsError([Problem(str(path), f"refusing to write outside the bundle: {rel}")])
    private_dirs(path.parent)
    for stale in path.parent.glob(f".{path.name}.new-*"):
        shutil.rmtree(stale, ignore_errors=True)
    aside = _aside(path)
    if aside.exists():  # a swap that finished but did not clean up: the bundle at `path` is complete
        shutil.rmtree(aside)
    work = path.parent / f".{path.name}.new-{os.getpid()}"
    private_dirs(work)
    try:
        for rel, data, mode, sealed in wanted:
            private_dirs((work / rel).parent)
            assert seal is not None or not sealed
            write_new(work / rel, seal.encrypt(data) if seal is not None and sealed else data, mode)
        # one sync for the whole bundle before the swap (an fsync a file cost ~2 ms each: seconds for
        # a bundle with a join credential per worker), as the output tree's commit does
        os.sync()
        if path.exists():
            os.rename(path, aside)
        os.rename(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    return True


def migrate(legacy: Path, path: Path) -> None:
    """Move a bundle out of an old output generation to its own place (once; the caller says so)."""
    private_dirs(path.parent)
    shutil.move(str(legacy), str(path))
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            os.chmod(p, 0o700)


def reseal(path: Path, reader: sealing.Reader, seal: recipients.Seal | None) -> bool:
    """Rewrite the bundle at `path` encrypted with `seal` (None: in clear), the same clear bytes;
    `bake secrets encrypt|decrypt`. The bundle is checked whole first: a bad one is left as it was."""
    interrupted(path)
    if load_bundle(path, reader) is None:
        raise SecretsError([Problem(str(path), "no secrets bundle there")])
    return save(path, reader.clear_files(), seal, reader)
