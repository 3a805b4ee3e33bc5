"""`bake plan`: what a bake would change, judged against the current output tree, without writing.

The bake itself runs (bake.run with dry_run), so the plan cannot disagree with what `bake` does:
the same secrets reconciliation (leaves re-issued and why, secrets created), the same rendering, the
same digests. Each node's files are compared with the previous manifest as it is rendered; a changed
text file that holds no secret gets a short unified diff. Nothing is written: no output tree, no lock,
no bundle, no move of an old bundle.
"""

from __future__ import annotations

import binascii
import dataclasses
import difflib
import json
from typing import Any

import yaml

from . import check
from .bake import BakeOptions, run
from .emit.outputs import DryTree
from .node import cloudinit
from .plan import NodePlan, build_plan
from .validation.profile import load_profile

DIFF_LINES = 40  # per file: enough to see what changed, short enough to read a fleet's plan


def _text(data: bytes) -> list[str] | None:
    try:
        return data.decode().splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _short_diff(path: str, old: bytes, new: bytes) -> str | None:
    a, b = _text(old), _text(new)
    if a is None or b is None:
        return None
    lines = list(difflib.unified_diff(a, b, f"{path} (now)", f"{path} (baked)", n=1))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... {len(lines) - DIFF_LINES} more lines\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class _Nodes:
    """Compares each rendered node with its entry in the current manifest, as the bake renders it."""

    def __init__(self, previous: dict[str, dict[str, Any]], tree_bytes: Any) -> None:
        self.previous = previous
        self.tree_bytes = tree_bytes
        self.report: dict[str, dict[str, Any]] = {}

    def _old_contents(self, name: str) -> dict[str, bytes]:
        raw = self.tree_bytes(f"nodes/{name}/user-data")
        if raw is None:
            return {}
        try:
            return {path: content for path, (content, _, _) in check.write_files_of(raw).items()}
        except (yaml.YAMLError, KeyError, TypeError, ValueError, binascii.Error):
            return {}

    def __call__(self, node: NodePlan, rendered: cloudinit.RenderedNode) -> None:
        entry = self.previous.get(node.name)
        if entry is None:
            self.report[node.name] = {"status": "added", "instanceId": rendered.instance_id}
            return
        before = {f["path"]: f for f in entry.get("files", [])}
        after = {f.path: f for f in rendered.files}
        changed = []
        old_contents: dict[str, bytes] | None = None
        for path in sorted(set(before) & set(after)):
            new = after[path]
            if before[path].get("sha256") == new.sha256 and before[path].get("mode") == new.mode_text:
                continue
            item: dict[str, Any] = {"path": path}
            if before[path].get("mode") != new.mode_text:
                item["mode"] = {"from": before[path].get("mode"), "to": new.mode_text}
            if new.secret or before[path].get("secret"):
                item["diff"] = None  # never print a key, a token or a kubeconfig
                item["secret"] = True
            else:
                if old_contents is None:
                    old_contents = self._old_contents(node.name)
                old = old_contents.get(path)
                item["diff"] = _short_diff(path, old, new.content) if old is not None else None
            changed.append(item)
        files = {
            "added": sorted(set(after) - set(before)),
            "changed": changed,
            "removed": sorted(set(before) - set(after)),
        }
        result: dict[str, Any] = {"status": "unchanged"}
        seed = []  # the seed files beside user-data: no secrets in them, so always with their diff
        for fname, data in (("meta-data", rendered.meta_data), ("network-config", rendered.network_config)):
            old = self.tree_bytes(f"nodes/{node.name}/{fname}")
            if old != data:
                seed.append({"file": fname, "diff": _short_diff(fname, old, data) if old else None})
        if seed:
            result["seed"] = seed
        if entry.get("instanceId") != rendered.instance_id:
            result["instanceId"] = {"from": entry.get("instanceId"), "to": rendered.instance_id}
        if any(files.values()):
            result["files"] = files
        if len(result) > 1:
            result["status"] = "changed"
        self.report[node.name] = result


def _sums(tree: DryTree) -> dict[str, str]:
    raw = tree.previous_bytes("SHA256SUMS") or b""
    sums = {}
    for line in raw.decode(errors="replace").splitlines():
        digest, sep, rel = line.partition("  ")
        if sep:
            sums[rel] = digest
    return sums


def plan(options: BakeOptions) -> dict[str, Any]:
    """The plan as data (printed by the CLI, or as JSON); "changes" says whether a bake would write."""
    cluster = build_plan(load_profile(options.profile, options.sets)).name
    with DryTree(options.out_root, cluster) as tree:  # the current tree, read only
        raw = tree.previous_bytes("manifest.json")
        try:
            entries = json.loads(raw).get("nodes", []) if raw else []
        except (ValueError, AttributeError):
            entries = []
        nodes = _Nodes({e.get("name"): e for e in entries}, tree.previous_bytes)
        result = run(dataclasses.replace(options, dry_run=True, observe=nodes))
        before = _sums(tree)
        exists = tree.previous is not None
    after = {rel: d for rel, d in result.written.items() if rel != "SHA256SUMS"}  # it lists itself not
    outputs = {
        "added": sorted(set(after) - set(before)),
        "changed": sorted(r for r in set(after) & set(before) if after[r] != before[r]),
        "removed": sorted(set(before) - set(after)),
    }
    report = nodes.report
    for entry in entries:
        report.setdefault(str(entry.get("name")), {"status": "removed"})
    secrets_changes = [str(c) for c in result.changes]
    changes = bool(
        not exists
        or any(outputs.values())
        or secrets_changes
        or result.bundle_written
        or any(n["status"] != "unchanged" for n in report.values())
    )
    return {
        "cluster": result.plan.name,
        "tree": str(options.out_root / result.plan.name),
        "treeExists": exists,
        "secrets": {
            "bundle": str(result.secrets_dir),
            "written": result.bundle_written,
            "changes": secrets_changes,
        },
        "nodes": dict(sorted(report.items())),
        "outputs": outputs,
        "changes": changes,
    }
