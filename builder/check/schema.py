"""cloud-init's own schema validation of every user-data, started first: it runs while the other checks
do."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..model import cloudinit_schema
from .findings import Report


def start_schema(tree: Path, nodes: list[dict[str, Any]], jobs: int) -> cloudinit_schema.Batch | None:
    """Start cloud-init's validation of every node's user-data; it runs while the other checks do."""
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        return None
    paths = [tree / "nodes" / str(n.get("name")) / "user-data" for n in nodes]
    return cloudinit_schema.Batch(cloud_init, paths, [cloudinit_schema.shape(n) for n in nodes], jobs)


def check_schema(batch: cloudinit_schema.Batch | None, paths: list[Path], report: Report) -> None:
    """The batch's verdicts as findings; without cloud-init, one warning that the schema was not checked."""
    if batch is None:
        report.warn("schema-unavailable", "user-data", "cloud-init is not installed here: schema not checked")
        return
    try:
        verdicts = batch.verdicts(paths)
    finally:
        batch.close()
    for path in paths:
        verdict = verdicts[path]
        if verdict.failed:
            report.error("schema", str(path), "cloud-init schema: " + verdict.output.strip()[-500:])
    if paths:
        report.ok("user-data", f"{len(paths)} files checked with cloud-init schema")
