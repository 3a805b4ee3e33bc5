"""cloud-init's schema verdict on many user-data files, fast, and cross-checked by the real command.

`cloud-init schema --config-file FILE` costs ~0.2 s per file, nearly all of it interpreter start-up and
imports: a 1,000-node tree took minutes. The same validation code run over many files in one
interpreter (builder/model/_schema_batch.py, run by cloud-init's own Python, which is the one that can import
it) costs ~10 ms per file, so the files are split over a few such processes running in parallel with
the rest of `bake check`. One real `cloud-init schema` run per node shape (role, OS, architecture: the
nodes whose documents are built alike) cross-checks the batch; if the two ever disagree, or the batch
cannot run, every file goes through the real command, as before.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BATCH_SCRIPT = Path(__file__).with_name("_schema_batch.py")
TIMEOUT = 600  # seconds, for one batch process or one command run
Shape = tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    failed: bool
    output: str  # what `cloud-init schema` printed, stdout then stderr


def run_command(cloud_init: str, path: Path) -> Verdict:
    """The real command on one file: the reference the batch is checked against."""
    proc = subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)], capture_output=True, text=True, timeout=60
    )
    return Verdict(proc.returncode != 0, proc.stdout + proc.stderr)


def interpreter(cloud_init: str) -> list[str] | None:
    """The Python that runs cloud-init, from its script's `#!` line (None when it is not a script)."""
    try:
        with open(cloud_init, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    argv = first[2:].decode(errors="replace").split()
    if not argv or not any("python" in Path(a).name for a in argv):
        return None
    return argv


def shape(node: dict[str, Any]) -> Shape:
    """Nodes of one shape get user-data built by the same code paths, differing in values only."""
    return (str(node.get("role")), str(node.get("os")), str(node.get("arch")))


class Batch:
    """Validation of `paths` started in the background; `verdicts()` collects it."""

    def __init__(self, cloud_init: str, paths: list[Path], shapes: list[Shape], jobs: int) -> None:
        self.cloud_init = cloud_init
        self.paths = paths
        self.shapes = dict(zip(paths, shapes, strict=True))
        self._procs: list[tuple[subprocess.Popen[bytes], IO[bytes], list[Path]]] = []
        # an exception between start and collection must not leave the processes behind
        self._finalizer = weakref.finalize(self, Batch._stop, self._procs)
        python = interpreter(cloud_init)
        if python is None or not paths:
            return
        jobs = max(1, min(jobs, len(paths) // 50 + 1))
        size = -(-len(paths) // jobs)
        for i in range(0, len(paths), size):
            chunk = paths[i : i + size]
            out = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _stop, after the process ends)
            proc = subprocess.Popen(
                [*python, "-I", str(BATCH_SCRIPT), *map(str, chunk)],
                stdout=out,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
            self._procs.append((proc, out, chunk))

    def _batch(self) -> dict[Path, Verdict] | None:
        if not self._procs:
            return None
        verdicts: dict[Path, Verdict] = {}
        for proc, out, chunk in self._procs:
            try:
                rc = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                return None
            if rc != 0:
                return None
            out.seek(0)
            try:
                results = json.loads(out.read())
            except ValueError:
                return None
            if len(results) != len(chunk):
                return None
            for path, (failed, output) in zip(chunk, results, strict=True):
                verdicts[path] = Verdict(bool(failed), str(output))
        return verdicts

    def verdicts(self, paths: Iterable[Path]) -> dict[Path, Verdict]:
        """cloud-init's verdict on each of `paths` (a subset of those started)."""
        wanted = list(paths)
        batch = self._batch()
        reference: dict[Path, Verdict] = {}
        seen: set[Shape] = set()
        for path in wanted:
            s = self.shapes.get(path, ("?",))
            if s not in seen:
                seen.add(s)
                reference[path] = run_command(self.cloud_init, path)
        if batch is None or any(batch.get(p) != v for p, v in reference.items()):
            batch = {p: reference.get(p) or run_command(self.cloud_init, p) for p in wanted}
        return {p: reference.get(p) or batch[p] for p in wanted}

    @staticmethod
    def _stop(procs: list[tuple[subprocess.Popen[bytes], IO[bytes], list[Path]]]) -> None:
        for proc, out, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
        procs.clear()

    def close(self) -> None:
        self._finalizer()
