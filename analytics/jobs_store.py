"""Training store for finished jobs: a SQLite file holding the shared job table (:mod:`nomade.analytics.traces`).

One row per finished job, keyed by ``(cluster, job_id, submit_time)``: the job id alone repeats across clusters
and after a controller's id counter wraps or is reset; a SLURM job id together with its submit time does not.
Re-ingesting the same trace is idempotent (``INSERT ... ON CONFLICT DO UPDATE``: the latest values win, the row
count does not change).

The database runs in WAL mode (https://sqlite.org/wal.html: readers do not block the single writer, so a model
trainer can read while ``nomade analytics ingest`` writes). ``schema_version`` holds one integer,
:data:`SCHEMA_VERSION`; opening a store written by a newer version raises :class:`JobsStoreError`.
"""

from __future__ import annotations

import math
import sqlite3
import time
from pathlib import Path

import pandas as pd

from .traces import JOB_COLUMNS, load_trace

#: Version of the table layout below; bump it (with a migration) when columns change.
SCHEMA_VERSION = 1

_TEXT = ("job_id", "user", "account", "partition", "job_name", "state", "failure_class", "dataset")
_COLUMNS: tuple[str, ...] = ("cluster", *JOB_COLUMNS)


def _sql_type(col: str) -> str:
    if col == "cluster" or col in _TEXT:
        return "TEXT"
    if col == "failed":
        return "INTEGER"
    return "REAL"


_DDL = f"""
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    {
    ", ".join(
        f'"{c}" {_sql_type(c)}' + (" NOT NULL" if c in ("cluster", "job_id", "submit_time") else "") for c in _COLUMNS
    )
},
    ingested_at REAL NOT NULL,
    PRIMARY KEY (cluster, job_id, submit_time)
);
CREATE INDEX IF NOT EXISTS jobs_end_time ON jobs (end_time);
"""


class JobsStoreError(RuntimeError):
    """The store file has an unknown (newer) schema version or is not a jobs store."""


class JobsStore:
    """SQLite-backed store of finished jobs.

    Args:
        path: database file; created (with parent directories) when missing.

    Raises:
        JobsStoreError: when the file's ``schema_version`` is newer than :data:`SCHEMA_VERSION`.
        sqlite3.DatabaseError: when the file is not an SQLite database.

    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across application crashes
        with self._conn:
            self._conn.executescript(_DDL)
            row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if row[0] is None:
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise JobsStoreError(f"{self.path}: schema version {row[0]} is newer than {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> JobsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The version recorded in the file."""
        return int(self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    def upsert(self, df: pd.DataFrame, cluster: str | None = None) -> int:
        """Insert or update the jobs of ``df`` (the shared job-table schema).

        The cluster of a row is ``df["cluster"]`` when that column exists, else ``cluster``, else the row's
        ``dataset``. Rows without ``job_id`` or ``submit_time`` cannot be keyed and are skipped. Schema columns
        missing from ``df`` are stored as NULL.

        Returns:
            the number of rows written (inserted or updated).

        """
        if df.empty:
            return 0
        data = df.reindex(columns=list(JOB_COLUMNS))
        if "cluster" in df:
            clusters = df["cluster"]
        elif cluster is not None:
            clusters = pd.Series(cluster, index=df.index)
        else:
            clusters = data["dataset"]
        data.insert(0, "cluster", clusters)
        keyed = data["cluster"].notna() & data["job_id"].notna() & data["submit_time"].notna()
        data = data[keyed]
        now = time.time()
        rows = [
            (*(_value(c, v) for c, v in zip(_COLUMNS, rec, strict=True)), now)
            for rec in data.itertuples(index=False, name=None)
        ]
        cols = ", ".join(f'"{c}"' for c in (*_COLUMNS, "ingested_at"))
        marks = ", ".join("?" for _ in range(len(_COLUMNS) + 1))
        updates = ", ".join(
            f'"{c}" = excluded."{c}"'
            for c in (*_COLUMNS, "ingested_at")
            if c not in ("cluster", "job_id", "submit_time")
        )
        sql = (
            f"INSERT INTO jobs ({cols}) VALUES ({marks}) "
            f"ON CONFLICT (cluster, job_id, submit_time) DO UPDATE SET {updates}"
        )
        with self._conn:
            self._conn.executemany(sql, rows)
        return len(rows)

    def count(self) -> int:
        """Number of stored jobs."""
        return int(self._conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    def load(self, since: float | None = None, cluster: str | None = None) -> pd.DataFrame:
        """Stored jobs as a DataFrame: ``cluster`` + the :data:`~nomade.analytics.traces.JOB_COLUMNS`.

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
        df = pd.DataFrame(self._conn.execute(sql, args).fetchall(), columns=list(_COLUMNS))
        for c in _COLUMNS:
            if _sql_type(c) == "REAL":
                df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
            elif _sql_type(c) == "TEXT":
                df[c] = df[c].astype(object).where(df[c].notna(), None)
        df["failed"] = df["failed"].fillna(0).astype(bool)
        return df


def _value(col: str, v: object) -> object:
    """A DataFrame cell -> an SQLite parameter (NaN/None -> NULL)."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if col == "failed":
        return int(bool(v))
    if _sql_type(col) == "REAL":
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
