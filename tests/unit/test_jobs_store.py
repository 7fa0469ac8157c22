import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from nomade.analytics.job_vectors import VECTOR_COLUMNS
from nomade.analytics.jobs_store import SCHEMA_VERSION, JobsStore, JobsStoreError, ingest
from nomade.analytics.traces import JOB_COLUMNS, load_swf

# computed here, not imported from conftest: with tests/integration collected too, "conftest" may be that one
FIX = Path(__file__).resolve().parents[1] / "fixtures" / "traces"


def test_wal_and_schema_version(tmp_path):
    db = tmp_path / "sub" / "jobs.db"
    with JobsStore(db) as s:
        assert s.schema_version == SCHEMA_VERSION == 2
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    conn.close()


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "jobs.db"
    JobsStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(JobsStoreError, match="99"):
        JobsStore(db)


def test_upsert_round_trip_and_idempotent(tmp_path):
    df = load_swf(FIX / "tiny.swf")
    with JobsStore(tmp_path / "jobs.db") as s:
        assert s.upsert(df) == 4
        assert s.upsert(df) == 4
        assert s.count() == 4
        out = s.load()
    assert list(out.columns) == ["cluster", *JOB_COLUMNS, "nodelist", *VECTOR_COLUMNS]
    assert (out["cluster"] == "tiny").all()
    pd.testing.assert_frame_equal(out[list(JOB_COLUMNS)], df, check_dtype=True)
    assert out[list(VECTOR_COLUMNS)].isna().all().all()  # a trace carries no vectors: NULL, not 0


def test_upsert_updates_and_keys(tmp_path):
    df = load_swf(FIX / "tiny.swf")
    with JobsStore(tmp_path / "jobs.db") as s:
        s.upsert(df, cluster="a")
        s.upsert(df, cluster="b")  # same job ids on another cluster: separate rows
        assert s.count() == 8
        changed = df.copy()
        changed.loc[changed["job_id"] == "1", "failure_class"] = "failed"
        changed["failed"] = changed["failure_class"] != "success"
        s.upsert(changed, cluster="a")
        assert s.count() == 8
        a = s.load(cluster="a").set_index("job_id")
        b = s.load(cluster="b").set_index("job_id")
        assert a.loc["1", "failure_class"] == "failed" and bool(a.loc["1", "failed"]) is True
        assert b.loc["1", "failure_class"] == "success"
        resubmitted = df[df["job_id"] == "1"].assign(submit_time=df["submit_time"].iat[0] + 1e6)
        s.upsert(resubmitted, cluster="a")  # same id, other submit time (id counter reset): a new row
        assert s.count() == 9


def test_load_since_filters_on_end_time(tmp_path):
    df = load_swf(FIX / "tiny.swf")
    with JobsStore(tmp_path / "jobs.db") as s:
        s.upsert(df)
        # job 1 ends at EPOCH+110, job 2 has no start (no end), job 3 EPOCH+125, job 6 EPOCH+322
        got = s.load(since=781275672 + 120)
    assert list(got["job_id"]) == ["3", "6"]


def test_unkeyed_rows_skipped(tmp_path):
    df = load_swf(FIX / "tiny.swf")
    df.loc[0, "submit_time"] = float("nan")
    with JobsStore(tmp_path / "jobs.db") as s:
        assert s.upsert(df) == 3
        assert s.upsert(df.iloc[0:0]) == 0


def test_ingest(tmp_path):
    db = tmp_path / "jobs.db"
    assert ingest(db, FIX / "deucalion_truncated.json") == 4
    assert ingest(db, FIX / "deucalion_truncated.json") == 4
    assert ingest(db, FIX / "sacct_header_steps.txt", cluster="lab") == 5
    with JobsStore(db) as s:
        assert s.count() == 9
        lab = s.load(cluster="lab").set_index("job_id")
    assert lab.loc["501", "max_rss_bytes"] == 3 * 1024**3
    assert lab.loc["502", "failure_class"] == "out_of_memory"


def test_nomade_analytics_ingest_command(tmp_path, capsys):
    from nomade.analytics.cli import main
    from nomade.analytics.jobs_store import JobsStore

    swf = Path(__file__).resolve().parents[1] / "fixtures" / "traces" / "tiny.swf"
    store = tmp_path / "jobs.sqlite3"
    assert main(["ingest", "--store", str(store), str(swf)]) == 0
    assert main(["ingest", "--store", str(store), str(swf)]) == 0  # idempotent
    with JobsStore(store) as s:
        n = s.count()
    assert n > 0
    assert f"{n} jobs written" in capsys.readouterr().out
    assert main(["ingest", "--store", str(store), str(tmp_path / "missing.swf")]) == 2
