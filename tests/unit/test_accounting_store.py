import math
import sqlite3

import pytest

from nomade.exporter.accounting_store import (
    SCHEMA_VERSION,
    AccountingStore,
    Observation,
    StoreError,
    labels_of,
)

C = "nomade_test_finished_total"
H = "nomade_test_ratio"
BUCKETS = {H: (0.5, 1.0)}


def job(key, end, partition="cpu", cls="success", ratio=None):
    samples = () if ratio is None else ((H, labels_of(partition=partition), ratio),)
    return Observation(
        key, end, counters=((C, labels_of(partition=partition, failure_class=cls), 1.0),), samples=samples
    )


def test_counts_and_histograms(tmp_path):
    s = AccountingStore(tmp_path / "a.sqlite3", BUCKETS)
    assert (
        s.record(
            [job("1", 100, ratio=0.25), job("2", 100, ratio=0.75), job("3", 100, cls="failed", ratio=1.2)], now=200
        )
        == 3
    )
    assert s.counters(C) == {
        labels_of(partition="cpu", failure_class="success"): 2.0,
        labels_of(partition="cpu", failure_class="failed"): 1.0,
    }
    (buckets, total, count) = s.histograms(H)[labels_of(partition="cpu")]
    assert buckets == [(0.5, 1.0), (1.0, 2.0), (math.inf, 3.0)]
    assert total == pytest.approx(2.2) and count == 3


def test_dedup_same_job_counts_once(tmp_path):
    s = AccountingStore(tmp_path / "a.sqlite3", BUCKETS)
    assert s.record([job("1", 100, ratio=0.3)], now=200) == 1
    assert s.record([job("1", 100, ratio=0.3), job("1", 100, ratio=0.3)], now=260) == 0
    assert s.counters(C) == {labels_of(partition="cpu", failure_class="success"): 1.0}
    assert s.histograms(H)[labels_of(partition="cpu")][2] == 1


def test_duplicate_within_one_poll_counts_once(tmp_path):
    s = AccountingStore(tmp_path / "a.sqlite3", BUCKETS)
    assert s.record([job("7", 100), job("7", 100)], now=200) == 1
    assert s.counters(C)[labels_of(partition="cpu", failure_class="success")] == 1.0


def test_counters_survive_restart(tmp_path):
    path = tmp_path / "state" / "a.sqlite3"
    s = AccountingStore(path, BUCKETS)
    s.record([job("1", 100, ratio=0.9), job("2", 100, partition="gpu")], now=200)
    s.close()
    s2 = AccountingStore(path, BUCKETS)
    assert s2.counters(C) == {
        labels_of(partition="cpu", failure_class="success"): 1.0,
        labels_of(partition="gpu", failure_class="success"): 1.0,
    }
    assert s2.record([job("1", 100, ratio=0.9)], now=300) == 0  # still remembered after the restart
    assert s2.histograms(H)[labels_of(partition="cpu")] == ([(0.5, 0.0), (1.0, 1.0), (math.inf, 1.0)], 0.9, 1.0)


def test_pruning_forgets_old_keys_but_keeps_counters(tmp_path):
    s = AccountingStore(tmp_path / "a.sqlite3", BUCKETS)
    s.record([job("old", 100)], now=200)
    s.record([job("new", 5000)], now=5000)
    assert s.seen_keys() == 2
    s.record([], now=8000, prune_before=1000)
    assert not s.is_seen("old") and s.is_seen("new")
    assert s.counters(C)[labels_of(partition="cpu", failure_class="success")] == 2.0


def test_recent_sighting_protects_from_pruning(tmp_path):
    # a job with an old or unknown end that sacct still returns must not be pruned and counted again
    s = AccountingStore(tmp_path / "a.sqlite3", BUCKETS)
    s.record([job("x", 100)], now=200)
    s.record([job("x", 100)], now=5000, prune_before=1000)
    assert s.is_seen("x")
    assert s.record([job("x", 100)], now=5100, prune_before=1000) == 0


def test_failed_record_leaves_store_unchanged(tmp_path):
    s = AccountingStore(tmp_path / "a.sqlite3", BUCKETS)
    s.record([job("1", 100)], now=200)
    bad = Observation(
        "2",
        100,
        counters=((C, labels_of(partition="cpu", failure_class="success"), 1.0),),
        samples=(("nomade_undeclared", (), 0.5),),
    )
    with pytest.raises(ValueError):
        s.record([job("3", 100), bad], now=300)
    assert not s.is_seen("2") and not s.is_seen("3")
    assert s.counters(C) == {labels_of(partition="cpu", failure_class="success"): 1.0}
    assert s.record([job("3", 100)], now=400) == 1  # the connection is still usable


def test_non_finite_samples_are_ignored(tmp_path):
    s = AccountingStore(tmp_path / "a.sqlite3", BUCKETS)
    s.record([job("1", 100, ratio=math.nan), job("2", 100, ratio=0.1)], now=200)
    assert s.histograms(H)[labels_of(partition="cpu")][1:] == (0.1, 1.0)


def test_wal_and_schema_version(tmp_path):
    path = tmp_path / "a.sqlite3"
    AccountingStore(path, BUCKETS).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        AccountingStore(path, BUCKETS)


def test_corrupt_file_is_moved_aside(tmp_path):
    path = tmp_path / "a.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    s = AccountingStore(path, BUCKETS)
    assert s.record([job("1", 100)], now=200) == 1
    assert [p.name.startswith("a.sqlite3.corrupt-") for p in tmp_path.iterdir()].count(True) == 1


def test_unwritable_directory_raises_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        AccountingStore(blocker / "sub" / "a.sqlite3", BUCKETS)


def test_bucket_bounds_validated(tmp_path):
    with pytest.raises(ValueError):
        AccountingStore(tmp_path / "a.sqlite3", {H: (1.0, 0.5)})
