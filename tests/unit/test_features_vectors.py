"""run_time_features carries the job vector's INPUT_COLUMNS (never health_score); submit-time features unchanged."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nomade.analytics.features import run_time_features, submit_time_features
from nomade.analytics.job_vectors import INPUT_COLUMNS, VECTOR_COLUMNS


def jobs(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "job_id": [str(i) for i in range(n)],
            "user": ["a"] * n,
            "account": ["x"] * n,
            "partition": ["cpu"] * n,
            "job_name": ["j"] * n,
            "submit_time": np.arange(n) * 100.0,
            "start_time": np.arange(n) * 100.0 + 10,
            "end_time": np.arange(n) * 100.0 + 70,
            "req_cpus": [2.0] * n,
            "req_gpus": [0.0, 1.0, np.nan][:n],
            "req_mem_bytes": [4e9] * n,
            "timelimit_s": [3600.0] * n,
            "elapsed_s": [60.0] * n,
            "cpu_s": [60.0] * n,
            "max_rss_bytes": [1e9] * n,
            "failure_class": ["success", "timeout", "out_of_memory"][:n],
            "failed": [False, True, True][:n],
        }
    )


def test_trace_gets_every_input_column_nan_when_unknown():
    X, names = run_time_features(jobs())
    assert set(INPUT_COLUMNS) <= set(names)
    assert "health_score" not in names and "mem_slope_bytes_per_s" not in names
    assert X["cpu_efficiency"].tolist() == [0.5] * 3
    assert X["memory_efficiency"].tolist() == [0.25] * 3 == X["mem_efficiency"].tolist()
    assert X["runtime_minutes"].tolist() == [1.0] * 3
    assert X["used_gpu"].tolist()[:2] == [0.0, 1.0] and math.isnan(X["used_gpu"].iloc[2])
    for c in ("avg_iowait", "total_write_gb", "nfs_ratio", "had_swap", "procs_blocked"):
        assert X[c].isna().all()


def test_harvested_columns_are_used_and_slope_when_present():
    df = jobs()
    df["avg_iowait"] = [0.1, np.nan, 0.3]
    df["cpu_efficiency"] = [0.9, np.nan, 0.1]  # harvested with alloc CPUs: wins; NaN falls back to the formula
    df["health_score"] = [1.0, 0.3, 0.0]  # the target rides along but never becomes a feature
    df["mem_slope_bytes_per_s"] = [0.0, 1e6, np.nan]
    X, names = run_time_features(df)
    assert X["avg_iowait"].tolist()[::2] == [0.1, 0.3] and math.isnan(X["avg_iowait"].iloc[1])
    assert X["cpu_efficiency"].tolist() == [0.9, 0.5, 0.1]
    assert X["mem_slope_bytes_per_s"].iloc[1] == 1e6
    assert "health_score" not in names
    # same feature set whatever extra columns a dataset brings (besides the optional slope)
    _, plain = run_time_features(jobs())
    assert [n for n in names if n != "mem_slope_bytes_per_s"] == plain


def test_submit_time_features_ignore_vector_columns():
    df = jobs()
    X0, n0 = submit_time_features(df)
    for c in VECTOR_COLUMNS:
        df[c] = 123.0
    X1, n1 = submit_time_features(df)
    assert n0 == n1 and not set(n1) & set(VECTOR_COLUMNS)
    pd.testing.assert_frame_equal(X0, X1)


def test_run_time_leaves_submit_block_unchanged():
    df = jobs()
    Xs, ns = submit_time_features(df)
    Xr, nr = run_time_features(df)
    assert nr[: len(ns)] == ns
    pd.testing.assert_frame_equal(Xr[ns], Xs)
    assert Xr["elapsed_over_timelimit"].iloc[0] == pytest.approx(60 / 3600)
