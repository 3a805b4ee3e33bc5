"""The output tree: written whole into a fresh generation, then swapped in with one atomic rename.

`outputs/<cluster>` is a symlink to `outputs/.bake/<cluster>/<generation>/`. A bake writes a new
generation next to the current one and replaces the symlink last, so an interrupted or failed bake
leaves the previous tree untouched. A file whose bytes and mode did not change is hard-linked from
the previous generation instead of being written again. A lock file serialises bakes of one cluster.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import BinaryIO

from ..errors import OutputError
from ..files import private_dirs, sha256_rewound, walk_files, write_new

STATE_DIR = ".bake"
STAT_FILE = "files.stat"
"""In the cluster's state directory: every file of the current generation with its size, mode, inode and
times as the bake left them. An unchanged re-bake trusts a file whose status is the same (as git's index
does): rewriting it changes its ctime, which no tool can set back. Any other file is hashed.
Text, written and read a line at a time: the generation's name, then `<status> <path>` per file."""


def _statuses(root: str) -> Iterator[tuple[str, str]]:
    """Every file below `root`, relative to it, with its status (size, mode, inode, mtime and ctime of
    the file itself, not of what a link points to), in the order the directories list them."""
    for rel, entry in walk_files(root):
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:  # gone since it was listed
            continue
        yield rel, f"{st.st_size} {st.st_mode:o} {st.st_ino} {st.st_mtime_ns} {st.st_ctime_ns}"


class OutputTree:
    """One bake's writer: lock, fresh generation, hard-link-if-unchanged writes, atomic commit."""

    def __init__(self, root: Path, cluster: str) -> None:
        self.root = root
        self.cluster = cluster
        self.state = root / STATE_DIR / cluster
        self.link = root / cluster
        self.previous: Path | None = None
        self.work: Path | None = None
        self._lock_fd: int | None = None
        self.written: dict[str, str] = {}
        """Relative path -> sha256 of every file in the new generation (for SHA256SUMS)."""
        self.rewritten = 0
        self.linked = 0
        self._sums: dict[str, str] | None = None
        self._dirs: set[str] = set()
        """Directories of the new generation (relative) that `write` made or found: not checked again."""

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> OutputTree:
        try:
            if not self.root.exists():
                self.root.mkdir(parents=True)
                os.chmod(self.root, 0o755)  # whatever the umask: others must not swap our symlinks
            private_dirs(self.state)
        except OSError as exc:
            raise OutputError(f"cannot create {self.state}: {exc.strerror}") from None
        if self.link.exists() and not self.link.is_symlink():
            raise OutputError(
                f"{self.link} exists and is not a bake output link; move it away (bake writes "
                f"{self.link} -> {STATE_DIR}/{self.cluster}/<generation>)"
            )
        lock_path = self.state / "lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = lock_path.read_text().strip() or "unknown"
            raise OutputError(
                f"another bake of cluster {self.cluster!r} is running (pid {holder}); "
                f"wait for it to finish (lock: {lock_path})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        if self.link.is_symlink():
            target = self.link.resolve()
            if target.is_dir():
                self.previous = target
        for stale in self.state.glob("tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        self.work = self.state / f"tmp-{os.getpid()}-{time.monotonic_ns()}"
        private_dirs(self.work)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.work is not None and self.work.exists():
            shutil.rmtree(self.work, ignore_errors=True)
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing ---------------------------------------------------------------------------------

    def path(self, rel: str) -> Path:
        assert self.work is not None, "use OutputTree as a context manager"
        return self.work / rel

    def previous_bytes(self, rel: str) -> bytes | None:
        if self.previous is None:
            return None
        try:
            return (self.previous / rel).read_bytes()
        except OSError:
            return None

    def write(self, rel: str, data: bytes, mode: int = 0o600, same_as: str | None = None) -> None:
        """Write one file of the new generation (never outside it), hard-linking unchanged bytes: the
        previous generation's file, or `same_as`, a file of this one written before with these bytes."""
        if rel.startswith("/") or ".." in rel.split("/"):
            raise OutputError(f"refusing to write outside the output tree: {rel}")
        target = self.path(rel)
        parent, _, _ = rel.rpartition("/")
        if parent not in self._dirs:  # nine files a node: its directories are made once, then known
            private_dirs(target.parent)
            self._dirs.add(parent)
        digest = hashlib.sha256(data).hexdigest()
        self.written[rel] = digest
        if self.previous is not None:
            old = self.previous / rel
            try:
                st = old.stat()
                if st.st_size == len(data) and (st.st_mode & 0o7777) == mode and old.read_bytes() == data:
                    os.link(old, target)
                    self.linked += 1
                    return
            except OSError:
                pass
        if same_as is not None and self.written.get(same_as) == digest:
            source = self.path(same_as)
            if (source.stat().st_mode & 0o7777) == mode:
                os.link(source, target)
                self.rewritten += 1
                return
        write_new(target, data, mode)
        self.rewritten += 1

    def write_stream(self, rel: str, produce: Callable[[BinaryIO], None], mode: int = 0o600) -> str:
        """Write a large file by streaming it from `produce` (never whole in memory); return its sha256.

        When the previous generation's SHA256SUMS lists the same digest for `rel` and that file has the
        same size and mode, the new file is replaced by a hard link to it, as `write` does.
        """
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise OutputError(f"refusing to write outside the output tree: {rel}")
        target = self.path(rel)
        private_dirs(target.parent)
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w+b") as fh:
            produce(fh)
            digest, size = sha256_rewound(fh)
        self.written[rel] = digest
        if self.previous is not None and self._previous_sum(rel) == digest:
            old = self.previous / rel
            try:
                st = old.stat()
                if st.st_size == size and (st.st_mode & 0o7777) == mode:
                    os.unlink(target)
                    os.link(old, target)
                    self.linked += 1
                    return digest
            except OSError:
                pass
        self.rewritten += 1
        return digest

    def size(self, rel: str) -> int:
        """The size of a file of the new generation."""
        return self.path(rel).stat().st_size

    def _previous_sum(self, rel: str) -> str | None:
        """One digest of the previous SHA256SUMS, read a line at a time unless the whole of it is loaded
        already: a re-bake that renders nodes does not hold 110,000 digests for a handful of lookups."""
        if self._sums is not None:
            return self._sums.get(rel)
        assert self.previous is not None
        try:
            with (self.previous / "SHA256SUMS").open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    digest, sep, name = line.rstrip("\n").partition("  ")
                    if sep and name == rel:
                        return digest
        except OSError:
            pass
        return None

    def _previous_sums(self) -> dict[str, str]:
        if self._sums is None:
            raw = self.previous_bytes("SHA256SUMS") or b""
            self._sums = {}
            for line in raw.decode(errors="replace").splitlines():
                digest, sep, rel = line.partition("  ")
                if sep:
                    self._sums[rel] = digest
        return self._sums

    def link_previous(self, rel: str) -> bool:
        """Carry a file over unchanged from the previous generation (bake --only)."""
        if self.previous is None or not (self.previous / rel).is_file():
            return False
        target = self.path(rel)
        private_dirs(target.parent)
        os.link(self.previous / rel, target)
        self.written[rel] = hashlib.sha256((self.previous / rel).read_bytes()).hexdigest()
        self.linked += 1
        return True

    def intact_previous(self) -> Mapping[str, str] | None:
        """The previous generation's SHA256SUMS when every file it lists is there with that digest (and
        nothing else is), else None: what a bake may keep as it is instead of building it again."""
        if self.previous is None or self.previous_bytes("SHA256SUMS") is None:
            return None
        sums = self._previous_sums()
        root = str(self.previous)
        # The tree is walked beside the recorded statuses, which list it in the order the same walk did
        # when the bake recorded them: a file whose status is the recorded one needs no other look, and
        # only files met out of that order are held (10,000 nodes make 110,000 files).
        recorded = self._recorded_status()
        out_of_order: dict[str, str] = {}
        unmatched: dict[str, str] = {}
        files = 0
        for rel, status in _statuses(root):
            if rel != "SHA256SUMS":
                if rel not in sums:
                    return None
                files += 1
            record = next(recorded, None)
            if record == (rel, status):
                continue
            unmatched[rel] = status
            if record is not None:
                out_of_order[record[0]] = record[1]
        if files != len(sums):  # with every path in sums and paths unique: the same files
            return None
        for rel, status in recorded:
            out_of_order[rel] = status
        for rel, status in unmatched.items():
            if rel == "SHA256SUMS" or out_of_order.get(rel) == status:
                continue
            try:
                with open(os.path.join(root, rel), "rb") as fh:
                    if sha256_rewound(fh)[0] != sums[rel]:
                        return None
            except OSError:
                return None
        return MappingProxyType(sums)  # not a copy: 110,000 entries at 10,000 nodes

    def _recorded_status(self) -> Iterator[tuple[str, str]]:
        """(path, status) from STAT_FILE, one line at a time, when it describes the previous
        generation; else nothing (every file is hashed)."""
        assert self.previous is not None
        try:
            with (self.state / STAT_FILE).open(encoding="utf-8", errors="replace") as fh:
                if fh.readline().rstrip("\n") != self.previous.name:
                    return
                for line in fh:
                    *status, rel = line.rstrip("\n").split(" ", 5)
                    yield rel, " ".join(status)
        except OSError:
            return

    def _record_status(self, generation: Path) -> None:
        """Write STAT_FILE for `generation`, now current: after the old generations are gone, since
        removing one of a hard-linked file's names changes the file's ctime."""
        root = str(generation)
        tmp = self.state / f"{STAT_FILE}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(generation.name + "\n")
            for rel, status in _statuses(root):
                fh.write(f"{status} {rel}\n")
        os.replace(tmp, self.state / STAT_FILE)

    def keep_previous(self, sums: Mapping[str, str]) -> Path:
        """Nothing changed: the current generation stays (no new one is made); `sums` from intact_previous."""
        assert self.previous is not None
        self.written = dict(sums)
        self.linked = len(sums) + 1  # and SHA256SUMS, as a bake that relinks every file counts it
        return self.previous

    def commit(self) -> Path:
        """Make the new generation current: fsync, rename, swap the symlink, drop old generations."""
        assert self.work is not None
        os.sync()
        final = self.state / f"gen-{time.time_ns()}"
        os.rename(self.work, final)
        self.work = None
        tmp_link = self.state / f"link-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        os.symlink(os.path.relpath(final, self.link.parent), tmp_link)
        os.replace(tmp_link, self.link)
        for old in self.state.glob("gen-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        self._record_status(final)
        return final


class DryTree(OutputTree):
    """`bake plan`: the same calls as a bake, judged against the current tree, nothing written.

    Digests, sizes and counts are kept as a bake would compute them; no directory, lock or file is
    created (large streams go through an anonymous temporary file and are dropped).
    """

    def __init__(self, root: Path, cluster: str) -> None:
        super().__init__(root, cluster)
        self.sizes: dict[str, int] = {}

    def __enter__(self) -> DryTree:
        if self.link.is_symlink() and self.link.resolve().is_dir():
            self.previous = self.link.resolve()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _record(self, rel: str, digest: str, size: int) -> None:
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise OutputError(f"refusing to write outside the output tree: {rel}")
        self.written[rel] = digest
        self.sizes[rel] = size
        old = self.previous_sum(rel)
        if old == digest:
            self.linked += 1
        else:
            self.rewritten += 1

    def previous_sum(self, rel: str) -> str | None:
        """The digest of `rel` in the current tree (SHA256SUMS, else the file itself), None if absent."""
        listed = self._previous_sums().get(rel)
        if listed is not None or self.previous is None:
            return listed
        data = self.previous_bytes(rel)
        return hashlib.sha256(data).hexdigest() if data is not None else None

    def write(self, rel: str, data: bytes, mode: int = 0o600, same_as: str | None = None) -> None:
        self._record(rel, hashlib.sha256(data).hexdigest(), len(data))

    def write_stream(self, rel: str, produce: Callable[[BinaryIO], None], mode: int = 0o600) -> str:
        import tempfile

        with tempfile.TemporaryFile() as fh:
            produce(fh)
            digest, size = sha256_rewound(fh)
        self._record(rel, digest, size)
        return digest

    def size(self, rel: str) -> int:
        return self.sizes[rel]

    def link_previous(self, rel: str) -> bool:
        data = self.previous_bytes(rel)
        if data is None:
            return False
        self._record(rel, hashlib.sha256(data).hexdigest(), len(data))
        return True

    def commit(self) -> Path:
        return self.previous or self.link
