"""Tests of analytics/features.py: the ended-before-submit history rule (no leakage) and feature values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nomade.analytics.features import (
    DEFAULT_PRIOR,
    SMOOTHING_M,
    past_outcomes,
    run_time_features,
    submit_time_features,
)


def _jobs(rows: list[tuple]) -> pd.DataFrame:
    """(user, job_name, submit, end, failed) rows -> schema frame with fixed requests."""
    df = pd.DataFrame(rows, columns=["user", "job_name", "submit_time", "end_time", "failed"])
    df["start_time"] = df["submit_time"]
    df["account"] = "acct"
    df["partition"] = "cpu"
    df["req_cpus"] = 4.0
    df["req_nodes"] = 1.0
    df["req_gpus"] = 0.0
    df["req_mem_bytes"] = 8 * 2**30
    df["timelimit_s"] = 3600.0
    return df


def test_history_counts_only_jobs_ended_strictly_before_submit() -> None:
    df = _jobs(
        [
            ("a", "x", 0.0, 10.0, True),  # j0
            ("a", "x", 5.0, 20.0, False),  # j1: j0 still running at its submit
            ("a", "y", 15.0, 30.0, False),  # j2: j0 ended (10 < 15), j1 not
            ("a", "x", 20.0, 40.0, True),  # j3: j1 ended exactly at 20 -> NOT before (strict)
            ("b", "x", 50.0, 60.0, False),  # other user: no history
        ]
    )
    X, names = submit_time_features(df)
    assert list(X["user_past_jobs"]) == [0, 0, 1, 1, 0]
    assert list(X["user_past_failures"]) == [0, 0, 1, 1, 0]
    assert X["user_prev_failed"].iloc[2] == 1.0
    assert math.isnan(X["user_prev_failed"].iloc[0])
    # same user+job_name: j3's last ended "x" run before t=20 is j0 (failed)
    assert X["userjob_prev_failed"].iloc[3] == 1.0
    assert math.isnan(X["userjob_prev_failed"].iloc[2])  # no earlier "y"
    # global history at j4 (t=50): j0..j3 ended; 2 of 4 failed -> prior 0.5
    assert X["global_past_fail_rate"].iloc[4] == pytest.approx(0.5)
    assert X["global_past_fail_rate"].iloc[0] == pytest.approx(DEFAULT_PRIOR)
    # smoothed rate for j2: (1 + m*prior)/(1 + m), prior = global rate at t=15 = 1/1
    assert X["user_past_fail_rate"].iloc[2] == pytest.approx((1 + SMOOTHING_M * 1.0) / (1 + SMOOTHING_M))
    assert X["account_past_jobs"].iloc[4] == 4
    for forbidden in ("elapsed", "state", "exit", "cpu_s", "rss"):
        assert not any(forbidden in n for n in names)


def _random_trace(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.uniform(0, 1e5, n))
    end = sub + rng.exponential(3000, n)
    return pd.DataFrame(
        {
            "user": rng.choice(list("abcde"), n),
            "job_name": rng.choice(["j1", "j2"], n),
            "account": rng.choice(["p", "q"], n),
            "partition": rng.choice(["cpu", "gpu", "big"], n),
            "submit_time": sub,
            "start_time": sub,
            "end_time": end,
            "failed": rng.random(n) < 0.3,
            "req_cpus": rng.integers(1, 64, n).astype(float),
        }
    )


HIST = [
    "user_past_jobs",
    "user_past_failures",
    "user_past_fail_rate",
    "user_prev_failed",
    "userjob_past_jobs",
    "userjob_prev_failed",
    "account_past_jobs",
    "account_past_fail_rate",
    "global_past_fail_rate",
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_own_and_later_outcomes_never_change_a_jobs_features(seed: int) -> None:
    df = _random_trace(300, seed)
    X0, _ = submit_time_features(df)
    i = 150
    flipped = df.copy()
    # flip job i's own outcome and that of every job ending at or after its submit
    later = (flipped["end_time"] >= flipped["submit_time"].iloc[i]).to_numpy()
    assert later[i]
    flipped.loc[later, "failed"] = ~flipped.loc[later, "failed"]
    X1, _ = submit_time_features(flipped)
    pd.testing.assert_series_equal(X0.loc[i, HIST], X1.loc[i, HIST])
    # ... while flipping an earlier-ended job of the same user does change it (the test can fail)
    same = (df["user"] == df["user"].iloc[i]) & (df["end_time"] < df["submit_time"].iloc[i])
    j = same[same].index[-1]
    g = df.copy()
    g.loc[j, "failed"] = not g.loc[j, "failed"]
    X2, _ = submit_time_features(g)
    assert X2.loc[i, "user_past_failures"] != X0.loc[i, "user_past_failures"]


def test_corrupt_end_before_submit_cannot_leak_own_outcome() -> None:
    df = _jobs([("a", "x", 100.0, 50.0, True), ("a", "x", 200.0, 250.0, False)])
    X, _ = submit_time_features(df)
    assert X["user_past_jobs"].iloc[0] == 0
    assert X["user_past_jobs"].iloc[1] == 1  # effective end max(50,100,100)=100 < 200


def test_history_matches_bruteforce_and_row_order_does_not_matter() -> None:
    df = _random_trace(200, 7)
    s, e, f = (df[c].to_numpy(float) for c in ("submit_time", "end_time", "failed"))
    cnt, fl, _ = past_outcomes(s, e, f, df["user"])
    for i in range(len(df)):
        m = (df["user"] == df["user"].iloc[i]).to_numpy() & (e < s[i])
        assert cnt[i] == m.sum() and fl[i] == f[m].sum()
    shuffled = df.sample(frac=1, random_state=3)
    Xa, _ = submit_time_features(df)
    Xb, _ = submit_time_features(shuffled)
    pd.testing.assert_frame_equal(Xa, Xb.loc[Xa.index])


def test_missing_user_gets_prior_and_nan_counts() -> None:
    df = _jobs([("a", "x", 0.0, 10.0, True), (None, "x", 20.0, 30.0, False)])
    X, _ = submit_time_features(df)
    assert math.isnan(X["user_past_jobs"].iloc[1])
    assert X["user_past_fail_rate"].iloc[1] == pytest.approx(1.0)  # global past rate at t=20: 1/1


def test_request_partition_and_calendar_features() -> None:
    df = _jobs([("a", "x", 1_700_000_000.0, 1_700_000_100.0, False)] * 3)
    df["partition"] = ["cpu", "gpu", "weird"]
    df.loc[2, "timelimit_s"] = np.nan
    X, names = submit_time_features(df, partitions=["cpu", "gpu"])
    assert X["log_req_cpus"].iloc[0] == pytest.approx(math.log1p(4))
    assert X["log_req_mem_per_cpu_bytes"].iloc[0] == pytest.approx(math.log1p(2 * 2**30))
    assert list(X["part_cpu"]) == [1, 0, 0] and list(X["part_gpu"]) == [0, 1, 0]
    assert list(X["part_other"]) == [0, 0, 1]
    assert list(X["timelimit_unlimited"]) == [0, 0, 1]
    # 1_700_000_000 = 2023-11-14 22:13:20 UTC, a Tuesday
    assert X["submit_hour"].iloc[0] == 22 and X["submit_weekday"].iloc[0] == 1


def test_run_time_features_values() -> None:
    df = _jobs([("a", "x", 0.0, 100.0, False)])
    df["elapsed_s"] = 100.0
    df["cpu_s"] = 200.0
    df["max_rss_bytes"] = 2 * 2**30
    X, names = run_time_features(df)
    assert X["cpu_efficiency"].iloc[0] == pytest.approx(0.5)
    assert X["mem_efficiency"].iloc[0] == pytest.approx(0.25)
    assert X["elapsed_over_timelimit"].iloc[0] == pytest.approx(100 / 3600)
    assert "user_past_fail_rate" in names
