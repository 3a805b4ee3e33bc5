"""Pack cloud-init NoCloud seed ISOs (ISO 9660 + Joliet + Rock Ridge, label `cidata`) reproducibly.

A seed must be byte-identical for the same files and epoch, whatever the clock, time zone, working
directory or hash seed of the process that builds it. pycdlib (1.22) has no SOURCE_DATE_EPOCH-style
option: it calls `time.time()` while building (root and dot/dotdot records, file records, Rock Ridge TF
entries, the volume creation/effective dates) *and* again while writing (the volume modification date is
made inside `PrimaryOrSupplementaryVD.record()`), and turns seconds into fields with `time.localtime()`
plus a GMT offset, so both the clock and the time zone leak into the image. See `_pinned_clock`.
"""

from __future__ import annotations

import calendar
import contextlib
import io
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from time import struct_time
from types import ModuleType
from typing import IO, TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # imported by the functions that use it: a bake that renders no node packs no ISO
    import pycdlib

from ..errors import BakeError, Problem

__all__ = [
    "SEED_LABEL",
    "SeedIsoError",
    "build_seed_iso",
    "iso9660_name",
    "read_seed_iso",
    "read_tree_iso",
    "write_tree_iso",
]

SEED_LABEL = "cidata"
"""Volume label cloud-init's NoCloud datasource looks for."""

_APP_IDENT = "BAKE NOCLOUD SEED"
"""Set explicitly so the image does not depend on pycdlib's default (which names its own version)."""

_FILE_MODE = 0o100444
"""Rock Ridge mode of every seed file: regular, read-only (pycdlib's default for in-memory files)."""

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_MAX_NAME = 64
"""Joliet caps a name at 64 UCS-2 characters; seeds' names are far shorter."""

_ISO_STEM = 8
"""ISO 9660 stem length: 8.3-style names (`USER_DAT.;1`) read everywhere, even by level-1 readers."""

# ISO 9660 directory record dates store the year as an unsigned byte counted from 1900.
_MAX_EPOCH = calendar.timegm((2155, 12, 31, 23, 59, 59, 0, 0, 0))

_CLOCK_LOCK = threading.Lock()


class SeedIsoError(BakeError, ValueError):
    """Bad seed input (file names, epoch) or an unreadable seed image.

    A `BakeError` so the CLI prints it without a traceback, and a `ValueError` because that is what
    callers of a packing function expect for bad arguments.
    """


def _pycdlib_time_users() -> tuple[ModuleType, ...]:
    """pycdlib modules that did `import time`: every place its clock and time zone come from.

    Found by looking rather than listed by hand, so a pycdlib upgrade that reads the clock from one more
    module is still pinned (the byte-identity tests would catch it otherwise).
    """
    return tuple(
        module
        for name, module in sorted(sys.modules.items())
        if (name == "pycdlib" or name.startswith("pycdlib.")) and getattr(module, "time", None) is time
    )


class _FrozenUtcTime:
    """Stands in for the `time` module inside pycdlib: the clock reads `epoch`, local time is UTC."""

    def __init__(self, epoch: int) -> None:
        self._epoch = float(epoch)

    def time(self) -> float:
        return self._epoch

    def localtime(self, secs: float | None = None) -> struct_time:
        return time.gmtime(self._epoch if secs is None else secs)

    def gmtime(self, secs: float | None = None) -> struct_time:
        return time.gmtime(self._epoch if secs is None else secs)

    def __getattr__(self, name: str) -> object:
        # strftime, strptime, struct_time ... are pure functions of their arguments.
        return getattr(time, name)


@contextlib.contextmanager
def _pinned_clock(epoch: int) -> Iterator[None]:
    """Make pycdlib see `epoch` as "now" and UTC as the local zone, for the duration of the block.

    pycdlib offers no hook for its timestamps and also stamps the volume modification date while
    *writing*, so fixing dates on the objects after the fact cannot cover everything. Instead the `time`
    attribute of pycdlib's own modules (not the global `time` module: the rest of the process keeps its
    real clock) is swapped for `_FrozenUtcTime`. With `localtime` answering in UTC, pycdlib's GMT-offset
    computation yields 0, so TZ cannot leak either. Module attributes are process-wide, hence the lock:
    concurrent builds in threads are serialised (each build is well under a millisecond). Code elsewhere
    that uses pycdlib directly from another thread during a build would also see the pinned clock; in
    this repo only this module uses pycdlib.
    """
    frozen = _FrozenUtcTime(epoch)
    with _CLOCK_LOCK:
        modules = _pycdlib_time_users()
        # setattr and back, not unittest.mock: importing it (and asyncio with it) costs every bake
        try:
            for module in modules:
                module.time = frozen  # type: ignore[attr-defined]
            yield
        finally:
            for module in modules:
                module.time = time  # type: ignore[attr-defined]


def iso9660_name(name: str) -> str:
    """The ISO 9660 (level 3, 8.3-style) path for a seed file name: `user-data` -> `/USER_DAT.;1`."""
    return "/" + name.upper().replace("-", "_")[:_ISO_STEM] + ".;1"


def _check_names(files: Mapping[str, bytes]) -> list[str]:
    """Validate names and contents; return the names sorted, which fixes the order files are added in."""
    problems: list[Problem] = []
    if not files:
        problems.append(Problem("seed", "no files to pack (a NoCloud seed needs at least meta-data)"))
    by_iso: dict[str, str] = {}
    for name in sorted(files, key=str):
        where = f"seed[{name!r}]"
        if not isinstance(name, str):
            problems.append(Problem(where, "file name must be a string"))
            continue
        if not _NAME_RE.fullmatch(name) or len(name) > _MAX_NAME:
            problems.append(
                Problem(
                    where,
                    f"invalid seed file name: use 1-{_MAX_NAME} of a-z, 0-9 and '-', "
                    "starting with a letter or digit (e.g. 'user-data')",
                )
            )
            continue
        if not isinstance(files[name], bytes | bytearray | memoryview):
            problems.append(Problem(where, f"content must be bytes, not {type(files[name]).__name__}"))
        iso_name = iso9660_name(name)
        other = by_iso.setdefault(iso_name, name)
        if other != name:
            problems.append(
                Problem(
                    where, f"ISO 9660 name {iso_name} collides with that of {other!r}; rename one of them"
                )
            )
    if problems:
        raise SeedIsoError(problems)
    return sorted(files)


def _new_iso(iso: pycdlib.PyCdlib, label: str, app_ident: str) -> None:
    """ISO 9660 level 3 with Joliet and Rock Ridge: every NoCloud reader and OS mounts it."""
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label, app_ident_str=app_ident)


def _check_epoch(epoch: int) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise SeedIsoError([Problem("seed.epoch", f"must be an integer, not {type(epoch).__name__}")])
    if not 0 <= epoch <= _MAX_EPOCH:
        raise SeedIsoError(
            [Problem("seed.epoch", f"{epoch} is outside what ISO 9660 dates hold (0 .. {_MAX_EPOCH})")]
        )


def build_seed_iso(files: Mapping[str, bytes], *, epoch: int) -> bytes:
    """Return the seed image for `files` (name -> content), every timestamp in it set to `epoch` (UTC).

    Built entirely in memory; the result depends only on the names, contents and `epoch` (and on the
    pycdlib version, which should therefore stay pinned). Epoch 0 leaves the volume dates "not specified",
    as ISO 9660 spells a zero date that way.
    """
    _check_epoch(epoch)
    names = _check_names(files)
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    out = io.BytesIO()
    try:
        with _pinned_clock(epoch):
            _new_iso(iso, SEED_LABEL, _APP_IDENT)
            for name in names:
                data = bytes(files[name])
                iso.add_fp(
                    io.BytesIO(data),
                    len(data),
                    iso_path=iso9660_name(name),
                    rr_name=name,
                    joliet_path="/" + name,
                    file_mode=_FILE_MODE,
                )
            iso.write_fp(out)
    except PyCdlibException as exc:  # names are validated above, so this is not the user's input
        raise SeedIsoError(f"could not pack the seed ISO: {exc}") from exc
    finally:
        with contextlib.suppress(PyCdlibException):
            iso.close()
    return out.getvalue()


def read_seed_iso(data_or_path: bytes | Path) -> dict[str, bytes]:
    """Read a seed image back as {Rock Ridge name: content}; for checks, not on the build path."""
    if isinstance(data_or_path, Path):
        try:
            data = data_or_path.read_bytes()
        except OSError as exc:
            raise SeedIsoError([Problem(str(data_or_path), f"cannot read: {exc.strerror or exc}")]) from exc
        where = str(data_or_path)
    else:
        data = bytes(data_or_path)
        where = "seed ISO"
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(data))
    except PyCdlibException as exc:
        raise SeedIsoError([Problem(where, f"not a readable ISO 9660 image: {exc}")]) from exc
    try:
        if not iso.has_rock_ridge():
            raise SeedIsoError([Problem(where, "image has no Rock Ridge names")])
        result: dict[str, bytes] = {}
        for record in iso.list_children(rr_path="/"):
            if record.is_dot() or record.is_dotdot():
                continue
            if record.rock_ridge is None:
                raise SeedIsoError([Problem(where, "a root entry has no Rock Ridge name")])
            name = record.rock_ridge.name().decode("utf-8")
            if record.is_dir():
                raise SeedIsoError([Problem(where, f"unexpected directory {name!r} in a seed")])
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path="/" + name)
            result[name] = buf.getvalue()
        return result
    except PyCdlibException as exc:
        raise SeedIsoError([Problem(where, f"corrupt ISO 9660 image: {exc}")]) from exc
    finally:
        with contextlib.suppress(PyCdlibException):
            iso.close()


# --------------------------------------------------------------------------------------------------
# Images seeds: large files, one directory level, streamed


_TREE_APP_IDENT = "BAKE IMAGES SEED"
_DIR_MODE = 0o40555


def write_tree_iso(
    out: BinaryIO, entries: Sequence[tuple[str, Path | bytes]], *, label: str, epoch: int
) -> None:
    """Stream an ISO 9660 + Joliet + Rock Ridge image of `entries` (`name` or `dir/name` -> a file to
    read, or bytes) to `out`, every timestamp at `epoch`. Files are read while the image is written,
    never held in memory. ISO 9660 names are generated (`F0000001.;1`, sorted order): Rock Ridge and
    Joliet carry the real ones, which callers validate (at most 64 characters, no '/' inside)."""
    _check_epoch(epoch)
    ordered = sorted(entries, key=lambda e: e[0])
    dirs = sorted({name.split("/", 1)[0] for name, _ in ordered if "/" in name})
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    handles: list[IO[bytes]] = []
    try:
        with _pinned_clock(epoch):
            _new_iso(iso, label, _TREE_APP_IDENT)
            for d in dirs:
                iso_dir = f"/{d.upper().replace('-', '_')[:_ISO_STEM]}"
                iso.add_directory(iso_dir, rr_name=d, joliet_path=f"/{d}", file_mode=_DIR_MODE)
            counters: dict[str, int] = {}
            for name, source in ordered:
                parent, _, base = name.rpartition("/")
                index = counters[parent] = counters.get(parent, 0) + 1
                iso_parent = f"/{parent.upper().replace('-', '_')[:_ISO_STEM]}" if parent else ""
                fh: IO[bytes]
                if isinstance(source, bytes):
                    fh, length = io.BytesIO(source), len(source)
                else:
                    fh = source.open("rb")
                    length = os.fstat(fh.fileno()).st_size
                handles.append(fh)
                iso.add_fp(
                    fh,
                    length,
                    iso_path=f"{iso_parent}/F{index:07d}.;1",
                    rr_name=base,
                    joliet_path=f"/{name}",
                    file_mode=_FILE_MODE,
                )
            iso.write_fp(out)
    except PyCdlibException as exc:
        raise SeedIsoError(f"could not pack the images seed: {exc}") from exc
    finally:
        with contextlib.suppress(PyCdlibException):
            iso.close()
        for fh in handles:
            fh.close()


def read_tree_iso(path: Path) -> dict[str, bytes]:
    """{`name` or `dir/name`: content} of an image written by write_tree_iso; for checks of small images."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except PyCdlibException as exc:
        raise SeedIsoError([Problem(str(path), f"not a readable ISO 9660 image: {exc}")]) from exc
    try:
        out: dict[str, bytes] = {}
        for top, dirs, files in iso.walk(rr_path="/"):
            for name in files:
                rr = f"{top.rstrip('/')}/{name}"
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=rr)
                out[rr.lstrip("/")] = buf.getvalue()
            del dirs
        return out
    except PyCdlibException as exc:
        raise SeedIsoError([Problem(str(path), f"corrupt ISO 9660 image: {exc}")]) from exc
    finally:
        with contextlib.suppress(PyCdlibException):
            iso.close()
