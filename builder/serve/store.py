"""The reports' state: one SQLite file per cluster, so it survives a restart of the server.

What is kept: per node the last sequence number accepted (a report whose number is not larger is a
replay, refused), when it last reported and its current step; per node and step its state (running,
done, failed), when it started and finished (the server's clock: a node's clock may be wrong at first
boot), how many times it started and failed, the last failure's exit code and log tail; and every
accepted report in order. Each report is one transaction (the replay check and the update together),
so a refused or interrupted one changes nothing. The file is created 0600: log tails may say more
than the cluster's name.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BakeError, Problem
from ..files import private_dirs
from .protocol import STEPS, Report

FORMAT = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS node (
    name TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    last_at REAL NOT NULL,
    node_time INTEGER NOT NULL,
    step TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS step (
    node TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    exit TEXT NOT NULL DEFAULT '',
    tail TEXT NOT NULL DEFAULT '',
    failed_at REAL,
    PRIMARY KEY (node, step)
);
CREATE TABLE IF NOT EXISTS event (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    seq INTEGER NOT NULL,
    step TEXT NOT NULL,
    event TEXT NOT NULL,
    received REAL NOT NULL,
    node_time INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    reason: str


class Store:
    """One cluster's state file; safe to share between the server's threads (one lock, one writer)."""

    def __init__(self, path: Path, cluster: str, *, readonly: bool = False) -> None:
        self.path = path
        self.cluster = cluster
        self.version = 0
        """Grows with every accepted report (the page asks only for newer states)."""
        self._lock = threading.Lock()
        try:
            if readonly:
                self._db = sqlite3.connect(
                    f"{path.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
            else:
                private_dirs(path.parent)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                os.close(fd)
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(
                    "PRAGMA synchronous=NORMAL"
                )  # WAL: a crash of the server loses nothing committed
                self._db.executescript(_SCHEMA)
                self._claim()
            self._db.execute("PRAGMA busy_timeout=5000")
            self._check()
        except sqlite3.DatabaseError as exc:
            raise BakeError(
                [Problem(str(path), f"not a bake serve state file ({exc}); move it away to start afresh")]
            ) from None

    def _claim(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for key, value in (("format", str(FORMAT)), ("cluster", self.cluster)):
                self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _check(self) -> None:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != str(FORMAT) or meta.get("cluster") != self.cluster:
            raise BakeError(
                [
                    Problem(
                        str(self.path),
                        f"the state of cluster {meta.get('cluster')!r} (format {meta.get('format')}), "
                        f"not of {self.cluster!r}",
                    )
                ]
            )
        row = self._db.execute("SELECT COUNT(*) FROM event").fetchone()
        self.version = int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing -----------------------------------------------------------------------------------

    def apply(self, report: Report, received: float | None = None) -> Outcome:
        """Record one verified report, or refuse it as a replay; atomic either way."""
        now = time.time() if received is None else received
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT last_seq FROM node WHERE name = ?", (report.node,)).fetchone()
                if row is not None and report.seq <= row[0]:
                    db.execute("ROLLBACK")
                    return Outcome(False, f"replay: sequence {report.seq} is not after {row[0]}")
                db.execute(
                    "INSERT INTO node (name, last_seq, last_at, node_time, step, event)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " last_seq = excluded.last_seq, last_at = excluded.last_at,"
                    " node_time = excluded.node_time, step = excluded.step, event = excluded.event",
                    (report.node, report.seq, now, report.time, report.step, report.event),
                )
                db.execute(
                    "INSERT OR IGNORE INTO step (node, step, state) VALUES (?, ?, 'pending')",
                    (report.node, report.step),
                )
                key = (report.node, report.step)
                if report.event == "started":
                    db.execute(
                        "UPDATE step SET state = 'running', started = ?, finished = NULL,"
                        " attempts = attempts + 1 WHERE node = ? AND step = ?",
                        (now, *key),
                    )
                elif report.event == "done":
                    db.execute(
                        "UPDATE step SET state = 'done', finished = ? WHERE node = ? AND step = ?",
                        (now, *key),
                    )
                else:
                    db.execute(
                        "UPDATE step SET state = 'failed', finished = ?, failures = failures + 1, exit = ?,"
                        " tail = ?, failed_at = ? WHERE node = ? AND step = ?",
                        (now, report.exit, report.tail, now, *key),
                    )
                db.execute(
                    "INSERT INTO event (node, seq, step, event, received, node_time)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (report.node, report.seq, report.step, report.event, now, report.time),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.version += 1
            return Outcome(True, f"{report.step} {report.event}")

    # -- reading -----------------------------------------------------------------------------------

    def nodes(self, names: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Each named node's state: last report, current step and every step in order (pending ones
        too), as the page and `bake status` show it."""
        with self._lock:
            heads = {
                r[0]: r[1:]
                for r in self._db.execute("SELECT name, last_at, node_time, step, event FROM node")
            }
            steps: dict[str, dict[str, tuple[Any, ...]]] = {}
            for r in self._db.execute(
                "SELECT node, step, state, started, finished, attempts, failures, exit, tail, failed_at"
                " FROM step"
            ):
                steps.setdefault(r[0], {})[r[1]] = r[2:]
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            head = heads.get(name)
            rows = steps.get(name, {})
            out[name] = {
                "lastReport": head[0] if head else None,
                "nodeTime": head[1] if head else None,
                "current": {"step": head[2], "event": head[3]} if head else None,
                "steps": [_step(step, rows.get(step)) for step in STEPS],
            }
        return out

    def events(self, node: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, step, event, received, node_time FROM event WHERE node = ? ORDER BY id", (node,)
            ).fetchall()
        return [dict(zip(("seq", "step", "event", "received", "nodeTime"), r, strict=True)) for r in rows]


def no_report() -> dict[str, Any]:
    """The state of a node that never reported (or whose cluster takes no reports)."""
    return {"lastReport": None, "nodeTime": None, "current": None, "steps": [_step(s, None) for s in STEPS]}


def _step(step: str, row: tuple[Any, ...] | None) -> dict[str, Any]:
    if row is None:
        return {"step": step, "state": "pending", "started": None, "finished": None, "seconds": None,
                "attempts": 0, "failures": 0, "exit": "", "tail": "", "failedAt": None}  # fmt: skip
    state, started, finished, attempts, failures, exit_, tail, failed_at = row
    seconds = round(finished - started, 3) if started is not None and finished is not None else None
    return {
        "step": step,
        "state": state,
        "started": started,
        "finished": finished,
        "seconds": seconds,
        "attempts": attempts,
        "failures": failures,
        "exit": exit_,
        "tail": tail,
        "failedAt": failed_at,
    }
