"""The results store: one SQLite row per job, written by the driver only.

Each write is one transaction, so an interrupted run leaves either the whole row
or none. A rerun of a suite skips every job whose hash already has a row (unless
asked to redo failed jobs or everything).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import SeqbenchError

DEFAULT_STORE = "results/seqbench.sqlite"
STATUSES = ("ok", "failed", "timeout", "diverged", "skipped")
REDO_ON_RETRY = ("failed", "timeout", "diverged")

COLUMNS: dict[str, str] = {
    "hash": "TEXT PRIMARY KEY",
    "suite": "TEXT",
    "task": "TEXT",
    "task_label": "TEXT",
    "task_version": "INTEGER",
    "task_params": "TEXT",   # JSON, every parameter (defaults resolved)
    "task_sweep": "TEXT",    # JSON, the parameters the suite set
    "model": "TEXT",
    "model_label": "TEXT",
    "model_version": "INTEGER",
    "model_params": "TEXT",
    "model_sweep": "TEXT",
    "seed": "INTEGER",
    "data": "TEXT",          # JSON data budget
    "status": "TEXT",
    "error": "TEXT",
    "metric": "TEXT",
    "higher_is_better": "INTEGER",
    "score": "REAL",
    "chance": "REAL",
    "oracle": "REAL",
    "normalised": "REAL",
    "metrics": "TEXT",       # JSON, every metric on the test split
    "slices": "TEXT",        # JSON, {meta column: {value: metrics}}
    "curve": "TEXT",         # JSON learning curve
    "diagnostics": "TEXT",   # JSON probes (gradient decay, ...)
    "n_params": "INTEGER",
    "wall_s": "REAL",
    "cpu_s": "REAL",
    "fit_s": "REAL",
    "peak_mem_mb": "REAL",
    "device": "TEXT",
    "started": "TEXT",
    "finished": "TEXT",
    "provenance": "TEXT",    # JSON: versions, git commit, host, ...
}
JSON_COLUMNS = ("task_params", "task_sweep", "model_params", "model_sweep", "data", "metrics",
                "slices", "curve", "diagnostics", "provenance")


def check_store_path(path: str | Path) -> Path:
    """Fail early, with one line, if ``path`` cannot hold a store."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise SeqbenchError(f"store {path}: expected a file path, got a directory")
    parent = p.parent if str(p.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise SeqbenchError(f"store {path}: directory {existing} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise SeqbenchError(f"store {path}: file is not writable")
    return p


class Store:
    """SQLite results store (``results/seqbench.sqlite`` by default)."""

    def __init__(self, path: str | Path = DEFAULT_STORE, *, create: bool = True) -> None:
        self.path = check_store_path(path) if create else Path(path)
        if not create and not self.path.is_file():
            raise SeqbenchError(f"store {path}: no such file (run a suite first)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30)
            with self.conn:
                cols = ", ".join(f"{k} {v}" for k, v in COLUMNS.items())
                self.conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS suites (name TEXT, path TEXT, text TEXT, "
                    "hash TEXT PRIMARY KEY, first_run TEXT)"
                )
        except sqlite3.DatabaseError as exc:
            raise SeqbenchError(f"store {path}: not a usable SQLite file ({exc})") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def statuses(self) -> dict[str, str]:
        """hash -> status of every stored job."""
        return dict(self.conn.execute("SELECT hash, status FROM runs"))

    def write(self, record: dict[str, Any]) -> None:
        """Insert or replace one job's row, atomically."""
        row = {}
        for key in COLUMNS:
            value = record.get(key)
            if key in JSON_COLUMNS and value is not None:
                value = json.dumps(value, sort_keys=True, default=_default)
            elif key == "higher_is_better" and value is not None:
                value = int(bool(value))
            row[key] = value
        if row["status"] not in STATUSES:
            raise ValueError(f"status {row['status']!r} not in {STATUSES}")
        keys = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self.conn:
            self.conn.execute(f"INSERT OR REPLACE INTO runs ({keys}) VALUES ({marks})",
                              list(row.values()))

    def write_suite(self, name: str, path: str, text: str, digest: str, when: str) -> None:
        with self.conn:
            self.conn.execute("INSERT OR IGNORE INTO suites VALUES (?, ?, ?, ?, ?)",
                              (name, path, text, digest, when))

    def suite_texts(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM suites", self.conn)

    def frame(self, suite: str | None = None) -> pd.DataFrame:
        """Every row (of one suite, if given) as a DataFrame, JSON columns decoded."""
        query, args = "SELECT * FROM runs", ()
        if suite is not None:
            query, args = "SELECT * FROM runs WHERE suite = ?", (suite,)
        df = pd.read_sql_query(query, self.conn, params=args)
        for col in JSON_COLUMNS:
            df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else None)
        return df


def _default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, tuple | set):
        return list(o)
    return str(o)
