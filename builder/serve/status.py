"""`bake status outputs/<cluster>`: the live page's content in a terminal (rich), or as JSON.

It reads the state file the server writes (read-only: it works while the server runs, and after) and
the tree's manifest; no secret is read. The document is the page's (`page.state_document`), so a
script reading `--json` sees what the page shows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .catalog import catalog, load_cluster
from .page import state_document
from .store import Store

STATE_STYLE = {"done": "green", "running": "yellow", "failed": "bold red", "pending": "dim"}


def document(tree: Path) -> dict[str, Any]:
    cluster = load_cluster(tree, with_secrets=False)
    stores: dict[str, Store] = {}
    if cluster.state.is_file():
        stores[cluster.name] = Store(cluster.state, cluster.name, readonly=True)
    try:
        doc = state_document(catalog([cluster]), stores)
    finally:
        for store in stores.values():
            store.close()
    doc["state"] = str(cluster.state) if stores else None
    return doc


def _duration(seconds: float | None) -> str:
    """As the page writes it (templates/serve/app.js)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes = int(seconds // 60)
        return f"{minutes} min {round(seconds - 60 * minutes)} s"
    if seconds < 86400:
        hours = int(seconds // 3600)
        return f"{hours} h {int((seconds - 3600 * hours) // 60)} min"
    days = int(seconds // 86400)
    return f"{days} d {int((seconds - 86400 * days) // 3600)} h"


def _step_text(step: dict[str, Any], now: float) -> Text:
    state = step["state"]
    if state == "done":
        text = f"done {_duration(step['seconds'])}"
    elif state == "running":
        text = f"running {_duration(now - step['started'])}"
    elif state == "failed":
        text = "failed" + (f" ({step['exit']})" if step["exit"] else "")
    else:
        text = "–"
    return Text(text, style=STATE_STYLE.get(state, ""))


def render(console: Console, doc: dict[str, Any]) -> None:
    now = doc["now"]
    for cluster in doc["clusters"]:
        where = doc.get("state") or "no report received yet"
        reports = f"reports to {cluster['reportUrl']}" if cluster["reportUrl"] else "its nodes do not report"
        table = Table(title=f"{cluster['name']}: {reports} ({where})", title_justify="left")
        for col in ("node", "role", "address", "current step", *doc["steps"], "last report"):
            table.add_column(col, no_wrap=True)
        failures: list[tuple[str, dict[str, Any]]] = []
        for n in cluster["nodes"]:
            steps = {s["step"]: s for s in n["steps"]}
            current = n["current"]
            cells: list[str | Text] = [
                n["name"],
                n["role"],
                n["ip"],
                f"{current['step']} {current['event']}" if current else "–",
            ]
            for name in doc["steps"]:
                step = steps.get(name)
                cells.append(_step_text(step, now) if step else Text("–", style="dim"))
                if step and step["failures"]:
                    failures.append((n["name"], step))
            last = n["lastReport"]
            cells.append("never" if last is None else f"{_duration(max(0.0, now - last))} ago")
            table.add_row(*cells)
        console.print(table)
        for name, step in failures:
            state = "failed" if step["state"] == "failed" else f"failed before, now {step['state']}"
            console.print(
                Text.assemble(
                    (f"{name}: {step['step']} {state}", "bold red"),
                    f" ({step['failures']}x, exit {step['exit'] or '?'}, "
                    f"{time.strftime('%H:%M:%S', time.localtime(step['failedAt'] or now))})",
                ),
                highlight=False,
            )
            for line in (step["tail"] or "(no log tail)").splitlines():
                console.print(Text("  " + line), highlight=False, soft_wrap=True)
