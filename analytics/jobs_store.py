"""Training store for finished jobs: a SQLite file holding the shared job table (:mod:`nomade.analytics.traces`).

One row per finished job, keyed by ``(cluster, job_id, submit_time)``: the job id alone repeats across clusters
and after a controller's id counter wraps or is reset; a SLURM job id together with its submit time does not.
Re-ingesting the same trace is idempotent (``INSERT ... ON CONFLICT DO UPDATE``: the latest values win, the row
count does not change; columns the new frame lacks keep their stored values, so ingesting a plain sacct dump does
not erase feature vectors harvested earlier).

The database runs in WAL mode (https://sqlite.org/wal.html: readers do not block the single writer, so a model
trainer can read while ``nomade analytics ingest`` writes). ``schema_version`` holds one integer,
:data:`SCHEMA_VERSION`; opening a store written by a newer version raises :class:`JobsStoreError`.

Schema versions
===============
* 1: table ``jobs`` = ``cluster`` + :data:`~nomade.analytics.traces.JOB_COLUMNS` + ``ingested_at``.
* 2: ``jobs`` gains ``nodelist`` (TEXT) and the 19 :data:`~nomade.analytics.job_vectors.VECTOR_COLUMNS` (REAL);
  new tables ``job_snapshots`` (features of pending/running jobs as seen at ``snapshot_time``, keyed by
  ``(cluster, job_id, submit_time, snapshot_time)``) and ``meta`` (key/value text, e.g. harvest watermarks).
  A version-1 file is migrated in place when opened (``ALTER TABLE ... ADD COLUMN`` in one transaction; existing
  rows get NULL vectors).

Threads
=======
A :class:`JobsStore` may be opened in one thread and used or closed from another: the analytics service opens it
in its cycle thread (:meth:`nomade.analytics.risk.RiskEngine.run_cycle`) and closes it from the main thread on
SIGTERM. The connection is therefore opened with ``check_same_thread=False`` and every use of it (each public
method, from the first statement to the last row fetched) holds one re-entrant lock, so two threads never use the
connection at the same time (the sqlite3 module requires the caller to serialise a shared connection). A
:meth:`~JobsStore.close` issued while another thread runs a query waits for that query to end; any use after
:meth:`~JobsStore.close` raises :class:`sqlite3.ProgrammingError` ("Cannot operate on a closed database").
"""

from __future__ import annotations

import functools
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import pandas as pd

from .job_vectors import VECTOR_COLUMNS
from .traces import JOB_COLUMNS, load_trace

#: Version of the table layout below; bump it (with a migration) when columns change.
SCHEMA_VERSION = 2

_TEXT = ("job_id", "user", "account", "partition", "job_name", "state", "failure_class", "dataset", "nodelist")
_KEY = ("cluster", "job_id", "submit_time")
_V1_COLUMNS: tuple[str, ...] = ("cluster", *JOB_COLUMNS)
#: Columns of the ``jobs`` table (``ingested_at`` aside), in order.
_COLUMNS: tuple[str, ...] = (*_V1_COLUMNS, "nodelist", *VECTOR_COLUMNS)
#: Columns of the ``job_snapshots`` table besides ``snapshot_time`` and ``ingested_at``.
SNAPSHOT_COLUMNS: tuple[str, ...] = (*_COLUMNS, "mem_slope_bytes_per_s")


def _sql_type(col: str, snapshot: bool = False) -> str:
    if col == "cluster" or col in _TEXT:
        return "TEXT"
    if col == "failed":
        return "REAL" if snapshot else "INTEGER"  # a snapshot's outcome is unknown (NULL), never a fake 0
    return "REAL"


def _coldefs(cols: tuple[str, ...], snapshot: bool = False) -> str:
    return ", ".join(f'"{c}" {_sql_type(c, snapshot)}' + (" NOT NULL" if c in _KEY else "") for c in cols)


_DDL = f"""
CREATE TABLE IF NOT EXISTS jobs (
    {_coldefs(_COLUMNS)},
    ingested_at REAL NOT NULL,
    PRIMARY KEY (cluster, job_id, submit_time)
);
CREATE INDEX IF NOT EXISTS jobs_end_time ON jobs (end_time);
CREATE TABLE IF NOT EXISTS job_snapshots (
    snapshot_time REAL NOT NULL,
    {_coldefs(SNAPSHOT_COLUMNS, snapshot=True)},
    ingested_at REAL NOT NULL,
    PRIMARY KEY (cluster, job_id, submit_time, snapshot_time)
);
CREATE INDEX IF NOT EXISTS job_snapshots_time ON job_snapshots (snapshot_time);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


class JobsStoreError(RuntimeError):
    """The store file has an unknown (newer) schema version or is not a jobs store."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``method`` holding its store's connection lock (see "Threads" in the module docstring)."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


class JobsStore:
    """SQLite-backed store of finished jobs; safe to share between threads (one lock serialises every use).

    Args:
        path: database file; created (with parent directories) when missing.

    Raises:
        JobsStoreError: when the file's ``schema_version`` is newer than :data:`SCHEMA_VERSION`.
        sqlite3.DatabaseError: when the file is not an SQLite database.

    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # Shared between threads (opened in the service's cycle thread, closed from the main thread on SIGTERM):
        # sqlite3's same-thread check is off and self._lock serialises every use instead.
        self._conn = sqlite3.connect(self.path, check_same_thread=False)
        self._closed = False
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise

    def _open(self) -> None:
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across application crashes
        with self._conn:
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        found = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        if found is not None and found > SCHEMA_VERSION:  # checked before touching anything in a newer file
            raise JobsStoreError(f"{self.path}: schema version {found} is newer than {SCHEMA_VERSION}")
        # One explicit transaction: the sqlite3 module would otherwise autocommit each DDL statement, and a crash
        # between two ALTERs must not leave a half-migrated file marked as version 1.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            have = {r[1] for r in self._conn.execute("PRAGMA table_info(jobs)")}
            if have:
                for c in _COLUMNS:
                    if c not in have:
                        self._conn.execute(f'ALTER TABLE jobs ADD COLUMN "{c}" {_sql_type(c)}')
            for stmt in _DDL.split(";"):
                if stmt.strip():
                    self._conn.execute(stmt)
            if found is None:
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif found < SCHEMA_VERSION:
                self._conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise

    @_locked
    def close(self) -> None:
        """Close the connection, from any thread; waits for a query running in another thread. Idempotent."""
        if not self._closed:
            self._closed = True
            self._conn.close()

    def __enter__(self) -> JobsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    @_locked
    def schema_version(self) -> int:
        """The version recorded in the file."""
        return int(self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    @_locked
    def get_meta(self, key: str) -> str | None:
        """The text stored under ``key`` in the ``meta`` table (e.g. a harvest watermark), or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @_locked
    def set_meta(self, key: str, value: object) -> None:
        """Store ``str(value)`` under ``key`` (replacing any previous value); None deletes the key."""
        with self._conn:
            if value is None:
                self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                sql = (
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                )
                self._conn.execute(sql, (key, str(value)))

    @_locked
    def _write(
        self, table: str, cols: tuple[str, ...], df: pd.DataFrame, cluster: str | None, extra: dict[str, float]
    ) -> int:
        """Upsert ``df`` into ``table``; columns absent from ``df`` are NULL on insert and untouched on update."""
        if df.empty:
            return 0
        body = [c for c in cols if c != "cluster"]
        data = df.reindex(columns=body)
        if "cluster" in df:
            clusters = df["cluster"]
        elif cluster is not None:
            clusters = pd.Series(cluster, index=df.index)
        else:
            clusters = data["dataset"]
        data.insert(0, "cluster", clusters)
        keyed = data["cluster"].notna() & data["job_id"].notna() & data["submit_time"].notna()
        data = data[keyed]
        snapshot = table == "job_snapshots"
        now = time.time()
        head = tuple(extra.values())
        rows = [
            (*head, *(_value(c, v, snapshot) for c, v in zip(cols, rec, strict=True)), now)
            for rec in data.itertuples(index=False, name=None)
        ]
        names = (*extra.keys(), *cols, "ingested_at")
        key = (*_KEY, *extra.keys())
        present = set(df.columns) | {"cluster", "ingested_at"}
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in names if c not in key and c in present)
        sql = (
            f"INSERT INTO {table} ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in names)}) "
            f"VALUES ({', '.join('?' for _ in names)}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
        )
        with self._conn:
            self._conn.executemany(sql, rows)
        return len(rows)

    def upsert(self, df: pd.DataFrame, cluster: str | None = None) -> int:
        """Insert or update the jobs of ``df`` (the shared job-table schema, plus ``nodelist`` and vectors).

        The cluster of a row is ``df["cluster"]`` when that column exists, else ``cluster``, else the row's
        ``dataset``. Rows without ``job_id`` or ``submit_time`` cannot be keyed and are skipped. Schema columns
        missing from ``df`` are stored as NULL in new rows and keep their stored value in updated ones.

        Returns:
            the number of rows written (inserted or updated).

        """
        return self._write("jobs", _COLUMNS, df, cluster, {})

    def upsert_snapshots(self, df: pd.DataFrame, snapshot_time: float, cluster: str | None = None) -> int:
        """Store what was known of pending/running jobs at ``snapshot_time`` (Unix s).

        Args:
            df: :func:`nomade.analytics.harvest.fetch_active_jobs` output (JOB_COLUMNS, ``nodelist``,
                VECTOR_COLUMNS, ``mem_slope_bytes_per_s``; missing columns NULL).
            snapshot_time: when the snapshot was taken, Unix s; part of the key, so a job has one row per snapshot
                and writing the same snapshot again is idempotent.
            cluster: as :meth:`upsert`.

        Returns:
            rows written; rows without ``job_id`` or ``submit_time`` are skipped.

        Raises:
            ValueError: ``snapshot_time`` is not finite.

        """
        if not math.isfinite(float(snapshot_time)):
            raise ValueError(f"snapshot_time must be finite, got {snapshot_time!r}")
        return self._write("job_snapshots", SNAPSHOT_COLUMNS, df, cluster, {"snapshot_time": float(snapshot_time)})

    @_locked
    def count(self) -> int:
        """Number of stored jobs."""
        return int(self._conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    @_locked
    def load(self, since: float | None = None, cluster: str | None = None) -> pd.DataFrame:
        """Stored jobs as a DataFrame: ``cluster`` + JOB_COLUMNS + ``nodelist`` + VECTOR_COLUMNS.

        Args:
            since: keep jobs whose ``end_time`` (Unix s) is at or after it; jobs without an end time are kept
                only when ``since`` is None.
            cluster: keep only this cluster.

        Returns:
            rows ordered by ``submit_time, cluster, job_id``; ``failed`` as bool, text columns None when NULL.

        """
        where, args = [], []
        if since is not None:
            where.append("end_time >= ?")
            args.append(float(since))
        if cluster is not None:
            where.append("cluster = ?")
            args.append(cluster)
        cols = ", ".join(f'"{c}"' for c in _COLUMNS)
        sql = f"SELECT {cols} FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY submit_time, cluster, job_id"
        df = _typed(pd.DataFrame(self._conn.execute(sql, args).fetchall(), columns=list(_COLUMNS)), _COLUMNS)
        df["failed"] = df["failed"].fillna(0).astype(bool)
        return df

    @_locked
    def load_snapshots(self, since: float | None = None, cluster: str | None = None) -> pd.DataFrame:
        """Snapshots joined with the final outcome of their job when it has finished (is in ``jobs``).

        Args:
            since: keep snapshots taken at or after this time, Unix s.
            cluster: keep only this cluster.

        Returns:
            ``snapshot_time`` + :data:`SNAPSHOT_COLUMNS` with, from the finished job: ``failed`` (1.0/0.0, NaN while
            unfinished), ``failure_class`` and ``state`` (None while unfinished), ``final_end_time`` (NaN while
            unfinished); the snapshot's own state (PENDING/RUNNING) is in ``snapshot_state``. The join key is
            ``(cluster, job_id, submit_time)``. Rows ordered by ``snapshot_time, cluster, job_id``.

        """
        where, args = [], []
        if since is not None:
            where.append("s.snapshot_time >= ?")
            args.append(float(since))
        if cluster is not None:
            where.append("s.cluster = ?")
            args.append(cluster)
        outcome = {"failed": "j.failed", "failure_class": "j.failure_class", "state": "j.state"}
        picks = ['s."snapshot_time"'] + [f"{outcome.get(c, f's.{chr(34)}{c}{chr(34)}')}" for c in SNAPSHOT_COLUMNS]
        picks += ['s."state"', 'j."end_time"']
        names = ["snapshot_time", *SNAPSHOT_COLUMNS, "snapshot_state", "final_end_time"]
        sql = (
            f"SELECT {', '.join(picks)} FROM job_snapshots s LEFT JOIN jobs j "
            "ON j.cluster = s.cluster AND j.job_id = s.job_id AND j.submit_time = s.submit_time"
        )
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.snapshot_time, s.cluster, s.job_id"
        df = pd.DataFrame(self._conn.execute(sql, args).fetchall(), columns=names)
        df = _typed(df, (*SNAPSHOT_COLUMNS, "snapshot_state"), snapshot=True)
        for c in ("snapshot_time", "final_end_time"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        return df


def _typed(df: pd.DataFrame, cols: tuple[str, ...], snapshot: bool = False) -> pd.DataFrame:
    for c in cols:
        kind = "TEXT" if c == "snapshot_state" else _sql_type(c, snapshot)
        if kind == "REAL":
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        elif kind == "TEXT":
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def _value(col: str, v: object, snapshot: bool = False) -> object:
    """A DataFrame cell -> an SQLite parameter (NaN/None -> NULL)."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if col == "failed":
        return float(bool(v)) if snapshot else int(bool(v))
    if _sql_type(col, snapshot) == "REAL":
        return float(v)  # type: ignore[arg-type]
    return str(v)


def ingest(store_path: str | Path, trace_path: str | Path, cluster: str | None = None) -> int:
    """Load ``trace_path`` with :func:`nomade.analytics.traces.load_trace` and upsert it into the store.

    Args:
        store_path: the SQLite store (created when missing).
        trace_path: a trace file (sacct dump, SWF, Deucalion JSON, Eagle CSV).
        cluster: key column value; default the trace's ``dataset``.

    Returns:
        rows written (re-ingesting the same trace writes the same rows again and leaves the count unchanged).

    Raises:
        FileNotFoundError: when ``trace_path`` does not exist.

    """
    df = load_trace(trace_path)
    with JobsStore(store_path) as store:
        return store.upsert(df, cluster=cluster)
