"""manifest.json written as a stream around spooled node entries: the same bytes as the standard
library's `json.dumps(manifest, indent=2)`, which is the format the file has always had."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from builder.bake.manifest import NodeEntries, node_text

from .helpers import bake


def _streamed(doc: dict[str, Any], nodes: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    entries = NodeEntries()
    try:
        for node in nodes:
            entries.add(node_text(node))
        entries.write_manifest(out, {**doc, "nodes": []})
    finally:
        entries.close()
    return out.getvalue()


def _reference(doc: dict[str, Any], nodes: list[dict[str, Any]]) -> bytes:
    return (json.dumps({**doc, "nodes": nodes}, indent=2) + "\n").encode()


NODE = {
    "name": "worker-1",
    "files": [{"path": "/etc/a", "mode": "0644", "secret": False}],
    "certificates": [],
    "artifacts": {},
    "note": 'line\nbreak \u2028 separator \x1c \\ "quoted" \u00e9 \0 nodes',
}


@pytest.mark.parametrize("count", [0, 1, 3])
def test_streamed_manifest_is_json_dumps_indent_2(count: int) -> None:
    doc = {
        "format": 1,
        "cluster": "c",
        "nodes": [],
        "reportUrl": "http://10.0.0.1/r",
        "imageSeeds": [{"a": 1}],
    }
    nodes = [{**NODE, "name": f"worker-{i}"} for i in range(count)]
    assert _streamed(doc, nodes) == _reference(doc, nodes)


def test_a_baked_manifest_is_json_dumps_indent_2(tmp_path: Path) -> None:
    proc = bake("--profile", "ha-stacked", "--quiet", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    raw = (tmp_path / "ha-stacked" / "manifest.json").read_bytes()
    data = json.loads(raw)
    assert [n["name"] for n in data["nodes"]] == ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"]
    assert raw == (json.dumps(data, indent=2) + "\n").encode()


def test_bake_json_prints_the_trees_manifest(tmp_path: Path) -> None:
    proc = bake("--profile", "single-node", "--json", out=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (tmp_path / "single-node" / "manifest.json").read_text()
