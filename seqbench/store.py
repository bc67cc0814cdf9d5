"""The results store: one SQLite row per job, written by the driver only.

Each write is one transaction, so an interrupted run leaves either the whole row
or none. A rerun of a suite skips every job whose hash already has a row (unless
asked to redo failed jobs or everything).

Three tables:

* ``runs``: one row per job, keyed by the job's hash (its task, model, parameters,
  seed and data budget), so a job finished for one suite is skipped by any other
  suite that lists it. Its ``suite`` and label columns say which suite wrote the row.
* ``suites``: the text of every version of every suite file that was run.
* ``suite_jobs``: each suite's *current* job list, as of its latest ``seqbench run``
  (replaced on every run): hash, task/model labels and sweeps, position in the
  suite's order, and the digest of the suite text. :meth:`Store.frame` reads a
  suite through it, so the tables show exactly the suite's current jobs under its
  current labels; rows of configurations the suite no longer lists stay in ``runs``
  (a cache) but are not shown. A suite with no entry here (a store written before
  this table existed) is read by the ``suite`` column of ``runs``, as before.

Read-only commands open the store with ``create=False``: SQLite's read-only mode, so
they never write to the file, and a file whose ``runs`` table is missing or lacks the
expected columns is refused with a one-line error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import SeqbenchError

DEFAULT_STORE = "results/seqbench.sqlite"
#: seconds a write waits for another process's lock on the store before giving up
LOCK_WAIT_S = 30
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


SUITE_JOB_COLUMNS: dict[str, str] = {
    "suite": "TEXT NOT NULL",
    "position": "INTEGER NOT NULL",  # index of the job in the suite's order
    "hash": "TEXT NOT NULL",
    "task_label": "TEXT",
    "task_sweep": "TEXT",            # JSON
    "model_label": "TEXT",
    "model_sweep": "TEXT",           # JSON
    "task_order": "INTEGER",         # index of the task setting in the suite's order
    "model_order": "INTEGER",        # index of the model configuration in the suite's order
    "digest": "TEXT",                # hash of the suite text these jobs came from
}
#: Columns a ``suite_jobs`` row overrides in the ``runs`` row it points to.
MEMBER_OVERRIDES = ("suite", "task_label", "task_sweep", "model_label", "model_sweep")


class Store:
    """SQLite results store (``results/seqbench.sqlite`` by default).

    ``create=True`` (what ``seqbench run`` uses) creates the file and its tables if
    needed; ``create=False`` opens an existing store read-only (``mode=ro``): nothing
    is written, and a file that is not a seqbench store is a :class:`SeqbenchError`.
    """

    def __init__(self, path: str | Path = DEFAULT_STORE, *, create: bool = True) -> None:
        self.path = check_store_path(path) if create else Path(path)
        self.read_only = not create
        if not create and self.path.is_dir():
            raise SeqbenchError(f"store {path}: expected a file path, got a directory")
        if not create and not self.path.is_file():
            raise SeqbenchError(f"store {path}: no such file (run a suite first)")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=LOCK_WAIT_S)
            else:  # read-only: SQLite refuses every write, and creates nothing
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self.conn = sqlite3.connect(uri, uri=True, timeout=LOCK_WAIT_S)
            self._tables = {r[0] for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            self._check_runs_table(path)
            if create:
                with self._transaction():
                    cols = ", ".join(f"{k} {v}" for k, v in COLUMNS.items())
                    self.conn.execute(f"CREATE TABLE IF NOT EXISTS runs ({cols})")
                    self.conn.execute(
                        "CREATE TABLE IF NOT EXISTS suites (name TEXT, path TEXT, text TEXT, "
                        "hash TEXT PRIMARY KEY, first_run TEXT)"
                    )
                    cols = ", ".join(f"{k} {v}" for k, v in SUITE_JOB_COLUMNS.items())
                    self.conn.execute(f"CREATE TABLE IF NOT EXISTS suite_jobs ({cols}, "
                                      "PRIMARY KEY (suite, position))")
                self._tables |= {"runs", "suites", "suite_jobs"}
        except sqlite3.DatabaseError as exc:
            conn = getattr(self, "conn", None)
            if conn is not None:
                conn.close()
            if "locked" in str(exc):
                raise _locked(path) from None
            raise SeqbenchError(f"store {path}: not a usable SQLite file ({exc})") from None
        except SeqbenchError:
            self.conn.close()
            raise

    def _check_runs_table(self, path) -> None:
        """A ``runs`` table, where there is one, must be seqbench's; read-only, there must
        be one."""
        if "runs" not in self._tables:
            if self.read_only:
                raise SeqbenchError(f"store {path}: not a seqbench store (no runs table; "
                                    "run a suite into it first)")
            if self._tables:  # another program's database: never add tables to it
                raise SeqbenchError(f"store {path}: not a seqbench store (it holds the tables "
                                    f"{', '.join(sorted(self._tables))}); give a new file or "
                                    "a seqbench store")
            return
        have = {r[1] for r in self.conn.execute("PRAGMA table_info(runs)")}
        missing = [c for c in COLUMNS if c not in have]
        if missing:
            raise SeqbenchError(f"store {path}: not a seqbench store (its runs table lacks "
                                f"the columns {', '.join(missing[:6])}"
                                + (", ..." if len(missing) > 6 else "") + ")")

    @contextlib.contextmanager
    def _transaction(self):
        """One write transaction (committed whole, or rolled back); a store that another
        process keeps locked past :data:`LOCK_WAIT_S` is a one-line :class:`SeqbenchError`
        (nothing of this transaction is written)."""
        try:
            with self.conn:
                yield
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise _locked(self.path, " (a program holding it open in a transaction, or "
                          "another run writing to it); what finished before is kept") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def statuses(self) -> dict[str, str]:
        """hash -> status of every stored job."""
        return dict(self.conn.execute("SELECT hash, status FROM runs"))

    def timeout_limits(self) -> dict[str, float]:
        """hash -> the time limit (seconds) each job stored as ``timeout`` ran under, where
        the row says (``provenance.timeout_s``, or its error message for rows written
        before that field)."""
        out = {}
        for h, prov, error in self.conn.execute(
                "SELECT hash, provenance, error FROM runs WHERE status = 'timeout'"):
            limit = None
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                limit = json.loads(prov or "{}").get("timeout_s")
            if limit is None and error:
                m = re.search(r"within its (\S+) s time limit", error)
                limit = m and m.group(1)
            with contextlib.suppress(ValueError, TypeError):
                out[h] = float(limit)
        return out

    def write(self, record: dict[str, Any]) -> None:
        """Insert or replace one job's row, atomically."""
        row = {}
        for key in COLUMNS:
            value = record.get(key)
            if key in JSON_COLUMNS and value is not None:
                value = _json_text(value)
            elif key == "higher_is_better" and value is not None:
                value = int(bool(value))
            row[key] = value
        if row["status"] not in STATUSES:
            raise ValueError(f"status {row['status']!r} not in {STATUSES}")
        keys = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._transaction():
            self.conn.execute(f"INSERT OR REPLACE INTO runs ({keys}) VALUES ({marks})",
                              list(row.values()))

    def write_suite(self, name: str, path: str, text: str, digest: str, when: str,
                    jobs: list[dict[str, Any]] | None = None) -> None:
        """Keep the suite's text (once per distinct text) and, given ``jobs`` (the suite's
        job dicts in the suite's order, :meth:`seqbench.suite.Suite.jobs`), make them the
        suite's current job list, replacing the previous one; one transaction."""
        rows = []
        if jobs is not None:
            settings: dict[tuple, int] = {}
            configs: dict[tuple, int] = {}
            for position, job in enumerate(jobs):
                t_sweep = _json_text(job.get("task_sweep") or {})
                m_sweep = _json_text(job.get("model_sweep") or {})
                t = settings.setdefault((job["task_label"], t_sweep), len(settings))
                m = configs.setdefault((job["model_label"], m_sweep), len(configs))
                rows.append((name, position, job["hash"], job["task_label"], t_sweep,
                             job["model_label"], m_sweep, t, m, digest))
        with self._transaction():
            self.conn.execute("INSERT OR IGNORE INTO suites VALUES (?, ?, ?, ?, ?)",
                              (name, path, text, digest, when))
            if jobs is not None:
                self.conn.execute("DELETE FROM suite_jobs WHERE suite = ?", (name,))
                marks = ", ".join("?" for _ in SUITE_JOB_COLUMNS)
                self.conn.executemany(f"INSERT INTO suite_jobs VALUES ({marks})", rows)

    def suite_texts(self) -> pd.DataFrame:
        """Every stored suite text: ``name``, ``path``, ``text``, ``hash``, ``first_run``."""
        if "suites" not in self._tables:
            return pd.DataFrame(columns=["name", "path", "text", "hash", "first_run"])
        return pd.read_sql_query("SELECT * FROM suites", self.conn)

    def suite_text(self, name: str) -> str | None:
        """The text of the suite file whose jobs :meth:`frame` shows for ``name``: the
        one of its latest run (for a store without ``suite_jobs``, the newest text first
        run under that name); None if the store holds no text for it."""
        if "suites" not in self._tables:
            return None
        if "suite_jobs" in self._tables:
            row = self.conn.execute(
                "SELECT s.text FROM suite_jobs j JOIN suites s ON s.hash = j.digest "
                "WHERE j.suite = ? LIMIT 1", (name,)).fetchone()
            if row is not None:
                return row[0]
        row = self.conn.execute("SELECT text FROM suites WHERE name = ? "
                                "ORDER BY first_run DESC, rowid DESC LIMIT 1", (name,)).fetchone()
        return None if row is None else row[0]

    def _member_suites(self) -> set[str]:
        if "suite_jobs" not in self._tables:
            return set()
        return {r[0] for r in self.conn.execute("SELECT DISTINCT suite FROM suite_jobs")}

    def suite_names(self) -> list[str]:
        """The suites that have been run, in the order they were first run: every suite
        with a job list (even one stopped before its first job finished, which then has
        no row to show yet), and, from stores written before job lists were kept, the
        suites with at least one row."""
        members = self._member_suites()
        names = set(members)
        names |= {r[0] for r in self.conn.execute("SELECT DISTINCT suite FROM runs")
                  if r[0] is not None and r[0] not in members}
        first = {}
        if "suites" in self._tables:
            for n, when in self.conn.execute("SELECT name, MIN(first_run) FROM suites "
                                             "GROUP BY name"):
                first[n] = when or ""
        return sorted(names, key=lambda n: (n not in first, first.get(n, ""), n))

    def job_list(self, suite: str) -> pd.DataFrame | None:
        """The suite's current job list (``suite_jobs``, as of its latest run), whether or
        not each job has a result yet: ``position``, ``hash``, ``task_label``,
        ``task_sweep``, ``model_label``, ``model_sweep`` (sweeps decoded), ``task_order``,
        ``model_order`` and ``status`` (the job's row's status; None without a row), in
        the suite's order. None for a suite without one (a store written before
        ``suite_jobs`` existed)."""
        if "suite_jobs" not in self._tables:
            return None
        jobs = pd.read_sql_query(
            "SELECT j.position, j.hash, j.task_label, j.task_sweep, j.model_label, "
            "j.model_sweep, j.task_order, j.model_order, r.status FROM suite_jobs j "
            "LEFT JOIN runs r ON r.hash = j.hash WHERE j.suite = ? ORDER BY j.position",
            self.conn, params=(suite,))
        return None if jobs.empty else self._decode(jobs, ("task_sweep", "model_sweep"))

    def frame(self, suite: str | None = None, *, columns: list[str] | None = None,
              as_text: tuple[str, ...] = ()) -> pd.DataFrame:
        """The rows of one suite (every suite, one after another, if None) as a
        DataFrame, JSON columns decoded.

        A suite with a current job list (``suite_jobs``) gets exactly those of its jobs
        that have a row, under the suite's current name, labels and sweeps, in the
        suite's order, with ``position``, ``task_order`` and ``model_order`` columns;
        a job listed twice (the same configuration under two labels) appears twice. A
        suite without one gets the rows whose ``suite`` column names it, in the order
        they were written. With ``suite=None`` a job shared by two suites appears once
        per suite.

        ``columns``: only these columns of :data:`COLUMNS` (in that order), for a caller
        that needs a few: the rest are not read. ``as_text``: JSON columns left as the
        stored text (None where NULL), for a caller that decodes them one row at a
        time (:func:`json_value`): a sweep's per-lag slices can take gigabytes decoded
        at once, a fraction of that as text.
        """
        if columns is not None and not columns:
            raise ValueError("Store.frame: columns: expected at least one column name "
                             "(None: every column)")
        for arg, given, accepted in (("columns", columns or (), COLUMNS),
                                     ("as_text", as_text, JSON_COLUMNS)):
            unknown = [c for c in given if c not in accepted]
            if unknown:
                raise ValueError(f"Store.frame: {arg}: unknown columns {unknown}; "
                                 f"accepted: {', '.join(accepted)}")
        names = list(COLUMNS) if columns is None else [c for c in COLUMNS if c in columns]
        decode = tuple(c for c in JSON_COLUMNS if c in names and c not in as_text)
        select = "*" if columns is None else ", ".join(names)
        if suite is None:
            parts = [self.frame(name, columns=columns, as_text=as_text)
                     for name in self.suite_names()]
            parts = [p for p in parts if not p.empty]
            if not parts:
                return self._decode(pd.read_sql_query(f"SELECT {select} FROM runs WHERE 0",
                                                      self.conn), decode)
            return pd.concat(parts, ignore_index=True)
        if suite in self._member_suites():
            members = pd.read_sql_query(
                "SELECT * FROM suite_jobs WHERE suite = ? ORDER BY position", self.conn,
                params=(suite,))
            # the job list's own labels and sweeps stand for those of the rows
            from_runs = ["hash", *(c for c in names if c not in (*MEMBER_OVERRIDES, "hash"))]
            runs = pd.read_sql_query(
                f"SELECT {', '.join(from_runs)} FROM runs "
                "WHERE hash IN (SELECT hash FROM suite_jobs WHERE suite = ?)",
                self.conn, params=(suite,))
            df = members.drop(columns=["digest"]).merge(runs, on="hash", how="inner")
            df = df.sort_values("position", kind="stable").reset_index(drop=True)
            df = df[[*names, "position", "task_order", "model_order"]]
            return self._decode(df, decode)
        df = pd.read_sql_query(f"SELECT {select} FROM runs WHERE suite = ? ORDER BY rowid",
                               self.conn, params=(suite,))
        return self._decode(df, decode)

    @staticmethod
    def _decode(df: pd.DataFrame, cols: tuple[str, ...] = JSON_COLUMNS) -> pd.DataFrame:
        for col in cols:
            df[col] = df[col].map(lambda s: json.loads(s) if isinstance(s, str) else None)
        return df


def json_value(text: Any) -> Any:
    """A JSON column's value from its stored text (None stays None; a value already
    decoded is returned as it is): what :meth:`Store.frame` leaves as text with
    ``as_text``, decoded one row at a time."""
    return json.loads(text) if isinstance(text, str) else text


def plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its JSON columns as the store will keep them (plain lists, dicts,
    numbers and strings; other objects as their ``str``): what a worker sends when the
    record as it is cannot be pickled (a plugin's diagnostics holding a lambda, say)."""
    out = dict(record)
    for key in JSON_COLUMNS:
        if out.get(key) is not None:
            out[key] = json.loads(_json_text(out[key]))
    return out


def _locked(path, why: str = "") -> SeqbenchError:
    return SeqbenchError(f"store {path}: locked by another process for {LOCK_WAIT_S} s{why}: "
                         "run again when it is free")


def _json_text(value: Any) -> str:
    """A JSON column's text: keys sorted, arrays as lists, other objects as their ``str``."""
    return json.dumps(value, sort_keys=True, default=_default)


def _default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, tuple | set):
        return list(o)
    return str(o)
