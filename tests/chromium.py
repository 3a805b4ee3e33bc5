"""The live page of `bake serve` as a real browser shows it: Debian's chromium, headless, and the DOM it
dumps read back into rows, step cells and failure tails (shared by the page test and the e2e boots)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from .peers import program


def chromium(profile_dir: Path, url: str, *mode: str, budget_ms: int, prefix: Sequence[str] = ()) -> str:
    """Debian's chromium, headless, on `url` (`prefix`: e.g. `ip netns exec NS`); its stdout."""
    proc = subprocess.run(
        [*prefix, program("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--no-first-run", "--no-proxy-server", "--disable-extensions",
         "--disable-background-networking",
         f"--user-data-dir={profile_dir}", f"--virtual-time-budget={budget_ms}",
         "--window-size=1400,900", *mode, url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


class Dom(HTMLParser):
    """The rows, step cells, failure tails and status line of a dumped page (stdlib parser)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, Any]] = {}
        self.tails: dict[tuple[str, str], str] = {}
        self.tags: list[str] = []
        self.version: str | None = None
        self._row: str | None = None
        self._cell: dict[str, str] | None = None
        self._cells: list[str] = []
        self._tail: tuple[str, str] | None = None
        self._text = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if tag == "tr" and "data-node" in a:
            self._row = a["data-node"]
            self.rows[self._row] = {"current": (a["data-current-step"], a["data-current-event"]), "steps": {}}
            self._cells = []
        elif tag == "td" and self._row is not None:
            self._cell, self._text = a, ""
        elif tag == "pre" and a.get("class") == "tail":
            self._tail, self._text = (a["data-node"], a["data-step"]), ""
        elif tag == "p" and a.get("id") == "status":
            self.version = a.get("data-version")

    def handle_data(self, data: str) -> None:
        self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            self._cells.append(self._text)
            if self._cell.get("class") == "step":
                step = {
                    "state": self._cell["data-state"],
                    "seconds": self._cell["data-seconds"],
                    "text": self._text,
                }
                self.rows[self._row]["steps"][self._cell["data-step"]] = step
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows[self._row]["cells"] = self._cells
            self._row = None
        elif tag == "pre" and self._tail is not None:
            self.tails[self._tail] = self._text
            self._tail = None
