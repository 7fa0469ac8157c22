"""Schema v2 of the training store: in-place migration from v1, vectors, snapshots joined with outcomes, meta."""

import math
import sqlite3

import numpy as np
import pandas as pd
import pytest

from nomade.analytics.job_vectors import VECTOR_COLUMNS
from nomade.analytics.jobs_store import SNAPSHOT_COLUMNS, JobsStore, JobsStoreError
from nomade.analytics.traces import JOB_COLUMNS

# The version-1 layout exactly as the v1 code created it (cluster + JOB_COLUMNS + ingested_at).
_V1_TYPES = {c: "REAL" for c in JOB_COLUMNS}
_V1_TYPES.update({c: "TEXT" for c in ("job_id", "user", "account", "partition", "job_name", "state")})
_V1_TYPES.update({"failure_class": "TEXT", "dataset": "TEXT", "failed": "INTEGER"})


def make_v1(path) -> None:
    cols = ", ".join(
        f'"{c}" {_V1_TYPES.get(c, "TEXT")}' + (" NOT NULL" if c in ("cluster", "job_id", "submit_time") else "")
        for c in ("cluster", *JOB_COLUMNS)
    )
    conn = sqlite3.connect(path)
    conn.executescript(
        f"""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        INSERT INTO schema_version VALUES (1);
        CREATE TABLE jobs ({cols}, ingested_at REAL NOT NULL, PRIMARY KEY (cluster, job_id, submit_time));
        CREATE INDEX jobs_end_time ON jobs (end_time);
        """
    )
    conn.execute(
        'INSERT INTO jobs (cluster, job_id, "user", submit_time, end_time, state, failure_class, failed, '
        "elapsed_s, ingested_at) VALUES ('lab', '7', 'alice', 100.0, 200.0, 'TIMEOUT', 'timeout', 1, 90.0, 1.0)"
    )
    conn.commit()
    conn.close()


def job(job_id: str, submit: float, **kw) -> dict:
    row = {c: None for c in JOB_COLUMNS}
    row.update(job_id=job_id, user="u", submit_time=submit, dataset="lab", failed=False, failure_class="success")
    row.update(kw)
    return row


def test_v1_file_is_migrated_in_place_and_keeps_its_rows(tmp_path):
    db = tmp_path / "v1.db"
    make_v1(db)
    with JobsStore(db) as s:
        assert s.schema_version == 2
        old = s.load()
        assert list(old["job_id"]) == ["7"]
        assert old.loc[0, "failure_class"] == "timeout" and bool(old.loc[0, "failed"]) is True
        assert old.loc[0, "elapsed_s"] == 90.0
        assert old[list(VECTOR_COLUMNS)].isna().all(axis=None) and old.loc[0, "nodelist"] is None
        # the migrated table takes v2 rows
        new = pd.DataFrame([job("8", 300.0, nodelist="c[01-02]", avg_iowait=0.25, health_score=0.9)])
        assert s.upsert(new, cluster="lab") == 1
        got = s.load().set_index("job_id")
    assert got.loc["8", "nodelist"] == "c[01-02]" and got.loc["8", "avg_iowait"] == 0.25
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
    assert cols[: len(JOB_COLUMNS) + 1] == ["cluster", *JOB_COLUMNS]
    assert set(VECTOR_COLUMNS) <= set(cols)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"job_snapshots", "meta"} <= tables
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    conn.close()
    with JobsStore(db) as s:  # opening again is a no-op
        assert s.schema_version == 2 and s.count() == 2


def test_newer_file_is_refused_untouched(tmp_path):
    db = tmp_path / "v9.db"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (9);")
    conn.close()
    with pytest.raises(JobsStoreError, match="9"):
        JobsStore(db)
    conn = sqlite3.connect(db)
    assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} == {"schema_version"}
    conn.close()


def test_upsert_without_vector_columns_keeps_stored_vectors(tmp_path):
    with JobsStore(tmp_path / "j.db") as s:
        s.upsert(pd.DataFrame([job("1", 10.0, total_write_gb=3.5, nodelist="c01")]))
        # a later plain sacct ingest of the same job (no vector columns) updates its state, not the vectors
        s.upsert(pd.DataFrame([job("1", 10.0, state="COMPLETED", elapsed_s=5.0)]))
        got = s.load()
    assert got.loc[0, "total_write_gb"] == 3.5 and got.loc[0, "nodelist"] == "c01"
    assert got.loc[0, "state"] == "COMPLETED" and got.loc[0, "elapsed_s"] == 5.0


def test_meta_round_trip(tmp_path):
    with JobsStore(tmp_path / "j.db") as s:
        assert s.get_meta("harvest.finished.watermark") is None
        s.set_meta("harvest.finished.watermark", 1700000000.5)
        s.set_meta("harvest.finished.watermark", 1700000060.5)
        assert s.get_meta("harvest.finished.watermark") == "1700000060.5"
    with JobsStore(tmp_path / "j.db") as s:
        assert float(s.get_meta("harvest.finished.watermark")) == 1700000060.5
        s.set_meta("harvest.finished.watermark", None)
        assert s.get_meta("harvest.finished.watermark") is None


def snapshot_frame() -> pd.DataFrame:
    rows = [
        job("1", 100.0, state="RUNNING", failure_class=None, failed=np.nan, cpu_efficiency=0.5),
        job("2", 110.0, state="RUNNING", failure_class=None, failed=np.nan, mem_slope_bytes_per_s=1e6),
        job("3", 120.0, state="PENDING", failure_class=None, failed=np.nan),
        job("4", float("nan"), state="PENDING", failure_class=None, failed=np.nan),  # cannot be keyed
    ]
    return pd.DataFrame(rows)


def test_snapshots_join_final_outcomes(tmp_path):
    with JobsStore(tmp_path / "j.db") as s:
        snap = snapshot_frame()
        assert s.upsert_snapshots(snap, 1000.0, cluster="lab") == 3
        assert s.upsert_snapshots(snap, 1000.0, cluster="lab") == 3  # idempotent
        assert s.upsert_snapshots(snap.iloc[:1], 1060.0, cluster="lab") == 1
        # job 1 later failed with OOM, job 2 succeeded, job 3 still pending; job 1 on another cluster is unrelated
        finals = pd.DataFrame(
            [
                job("1", 100.0, state="OUT_OF_MEMORY", failure_class="out_of_memory", failed=True, end_time=1500.0),
                job("2", 110.0, state="COMPLETED", failure_class="success", failed=False, end_time=1400.0),
            ]
        )
        s.upsert(finals, cluster="lab")
        s.upsert(finals.assign(failure_class="timeout", state="TIMEOUT"), cluster="other")
        got = s.load_snapshots()
        later = s.load_snapshots(since=1030.0)
        with pytest.raises(ValueError, match="snapshot_time"):
            s.upsert_snapshots(snap, float("nan"))
    assert list(got.columns) == ["snapshot_time", *SNAPSHOT_COLUMNS, "snapshot_state", "final_end_time"]
    assert list(zip(got["snapshot_time"], got["job_id"], strict=True)) == [
        (1000.0, "1"),
        (1000.0, "2"),
        (1000.0, "3"),
        (1060.0, "1"),
    ]
    by = got[got["snapshot_time"] == 1000.0].set_index("job_id")
    assert by.loc["1", "failed"] == 1.0 and by.loc["1", "failure_class"] == "out_of_memory"
    assert by.loc["1", "state"] == "OUT_OF_MEMORY" and by.loc["1", "snapshot_state"] == "RUNNING"
    assert by.loc["1", "final_end_time"] == 1500.0 and by.loc["1", "cpu_efficiency"] == 0.5
    assert by.loc["2", "failed"] == 0.0 and by.loc["2", "failure_class"] == "success"
    assert by.loc["2", "mem_slope_bytes_per_s"] == 1e6
    assert math.isnan(by.loc["3", "failed"]) and by.loc["3", "failure_class"] is None and by.loc["3", "state"] is None
    assert math.isnan(by.loc["3", "final_end_time"]) and by.loc["3", "snapshot_state"] == "PENDING"
    assert list(later["job_id"]) == ["1"] and later.loc[0, "snapshot_time"] == 1060.0
