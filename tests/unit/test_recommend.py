"""Recommendation rules on synthetic job tables with known failure rates (nomade.analytics.recommend)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nomade.analytics.recommend import (
    RECOMMEND_METRICS,
    RULE_KEYS,
    Recommendation,
    assess,
    compute,
    families,
    wilson_interval,
)
from nomade.analytics.traces import JOB_COLUMNS


def jobs(groups: list[tuple[int, int, dict]], user: str = "alice", partition: str = "cpu", start: int = 0):
    """A job table: for each ``(n, n_failed, columns)`` group, ``n`` jobs of which the first ``n_failed`` failed."""
    rows = []
    i = start
    for n, n_failed, cols in groups:
        for k in range(n):
            failed = k < n_failed
            row = {c: np.nan for c in JOB_COLUMNS}
            row.update(
                job_id=str(1000 + i),
                user=user,
                account="acct",
                partition=partition,
                job_name="run.sh",
                submit_time=1e9 + 100 * i,
                start_time=1e9 + 100 * i + 60,
                end_time=1e9 + 100 * i + 660,
                req_cpus=1.0,
                elapsed_s=600.0,
                state="FAILED" if failed else "COMPLETED",
                failure_class="failed" if failed else "success",
                failed=failed,
                dataset="synthetic",
            )
            row.update(cols)
            rows.append(row)
            i += 1
    return pd.DataFrame(rows)


LOCAL = {"nfs_ratio": 0.1, "total_write_gb": 5.0}
NFS = {"nfs_ratio": 0.9, "total_write_gb": 5.0}


def fisher_two_sided(a: int, b: int, c: int, d: int) -> float:
    """Fisher's exact test from the hypergeometric law, written out (independent of scipy)."""
    r1, c1, n = a + b, a + c, a + b + c + d

    def prob(x: int) -> float:
        return math.comb(c1, x) * math.comb(n - c1, r1 - x) / math.comb(n, r1)

    p_obs = prob(a)
    lo, hi = max(0, r1 + c1 - n), min(r1, c1)
    return sum(prob(x) for x in range(lo, hi + 1) if prob(x) <= p_obs * (1 + 1e-7))


# -- statistics ---------------------------------------------------------------------------------------------------


def test_wilson_interval_closed_forms():
    # x = 0: (0, z^2 / (n + z^2)); x = n mirrors it
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(1 - z2 / (10 + z2)) and hi == pytest.approx(1.0)
    # 50 / 100: centre 0.5, half-width z * sqrt(0.25/100 + z^2/40000) / (1 + z^2/100)
    half = 1.959963984540054 * math.sqrt(0.25 / 100 + z2 / 40000) / (1 + z2 / 100)
    assert wilson_interval(50, 100) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="failed=3, n=2"):
        wilson_interval(3, 2)


# -- failure rules ------------------------------------------------------------------------------------------------


def test_local_scratch_significant_difference_is_emitted_with_exact_figures():
    df = jobs([(120, 5, LOCAL), (45, 9, NFS)])
    (rec,) = compute(df, per_user=False)
    assert rec.key == "local_scratch" and rec.kind == "failure" and rec.user == "" and rec.scope == "cluster"
    assert (rec.with_jobs, rec.with_failed, rec.without_jobs, rec.without_failed) == (120, 5, 45, 9)
    assert rec.with_rate == 5 / 120 and rec.without_rate == 9 / 45
    assert rec.p_value == pytest.approx(fisher_two_sided(5, 115, 9, 36), rel=1e-9)
    assert rec.p_value < 0.01
    assert rec.with_ci == pytest.approx(wilson_interval(5, 120)) and rec.with_ci[0] < 5 / 120 < rec.with_ci[1]
    # one failure test in this call: the BH-adjusted p equals p
    assert rec.q_value == pytest.approx(rec.p_value)
    assert rec.message == (
        "Write to local scratch instead of NFS: across the cluster, jobs that wrote most of their data (>= 1 GB) "
        "to local disk failed 4.2 % vs 20 % for jobs writing mostly over NFS "
        f"(n = 120 / 45; Fisher p = {rec.p_value:.2g})"
    )


def test_small_writes_do_not_count():
    # the NFS writers wrote under 1 GB: no comparison possible
    df = jobs([(120, 5, LOCAL), (45, 9, {"nfs_ratio": 0.9, "total_write_gb": 0.5})])
    (r,) = [r for r in assess(df, per_user=False) if r.key == "local_scratch"]
    assert r.status == "low_support"
    assert r.recommendation.without_jobs == 0 and r.recommendation.with_jobs == 120
    assert compute(df, per_user=False) == []


def test_no_difference_emits_nothing():
    df = jobs([(100, 10, LOCAL), (100, 10, NFS)])
    (r,) = [r for r in assess(df, per_user=False) if r.key == "local_scratch"]
    assert r.status == "not_significant"
    assert r.recommendation.p_value == pytest.approx(1.0)
    assert compute(df, per_user=False) == []


def test_small_support_emits_nothing_even_with_a_large_difference():
    df = jobs([(120, 0, LOCAL), (19, 19, NFS)])
    (r,) = [r for r in assess(df, per_user=False) if r.key == "local_scratch"]
    assert r.status == "low_support" and "needs 20 jobs; have 120 / 19" in r.reason
    assert compute(df, per_user=False) == []
    # the same data with a lower support requirement is emitted
    assert [x.key for x in compute(df, min_support=19, per_user=False)] == ["local_scratch"]


def test_recommended_group_failing_more_is_not_emitted():
    df = jobs([(100, 30, LOCAL), (100, 5, NFS)])
    (r,) = [r for r in assess(df, per_user=False) if r.key == "local_scratch"]
    assert r.status == "wrong_direction"
    assert compute(df, per_user=False) == []


def test_significant_but_tiny_difference_is_not_emitted():
    # 20 000 jobs per group, 10.0 % vs 11.5 %: significant at this size, but under 2 points
    df = jobs([(20000, 2000, LOCAL), (20000, 2300, NFS)])
    (r,) = [r for r in assess(df, per_user=False) if r.key == "local_scratch"]
    assert r.recommendation.p_value < 1e-4
    assert r.status == "small_difference"
    assert [x.key for x in compute(df, per_user=False, min_difference=0.01)] == ["local_scratch"]


def test_missing_or_empty_columns_yield_no_data_without_crashing():
    df = jobs([(120, 5, {}), (45, 9, {})])
    res = assess(df, per_user=False)
    assert [r.key for r in res] == list(RULE_KEYS)
    assert {r.key: r.status for r in res} == {
        "local_scratch": "no_data",
        "memory_headroom": "no_data",
        "time_headroom": "no_data",
        "right_size_cpus": "no_data",
        "gpu_use": "no_data",
    }
    assert "nfs_ratio" in res[0].reason
    # a column present but all NaN is the same as absent
    df["nfs_ratio"] = np.nan
    df["total_write_gb"] = 3.0
    assert compute(df) == []
    # only the outcome is required
    with pytest.raises(ValueError, match="'failed' or a 'failure_class'"):
        compute(df.drop(columns=["failed", "failure_class"]))
    with pytest.raises(ValueError, match="min_support"):
        compute(df, min_support=0)


def test_outcome_from_failure_class_when_failed_is_absent():
    df = jobs([(120, 5, LOCAL), (45, 9, NFS)]).drop(columns=["failed"])
    (rec,) = compute(df, per_user=False)
    assert (rec.with_failed, rec.without_failed) == (5, 9)


def test_jobs_that_never_ran_are_left_out():
    df = jobs([(120, 5, LOCAL), (45, 9, NFS), (30, 30, {**NFS, "elapsed_s": 0.0})])
    (rec,) = compute(df, per_user=False)
    assert (rec.without_jobs, rec.without_failed) == (45, 9)


def test_memory_headroom_from_rss_and_request_with_middle_band_left_out():
    g = 2**30
    df = jobs(
        [
            (60, 3, {"max_rss_bytes": 0.5 * g, "req_mem_bytes": 1.0 * g}),  # 50 %: headroom
            (40, 2, {"max_rss_bytes": 0.8 * g, "req_mem_bytes": 1.0 * g}),  # 80 %: still headroom
            (50, 25, {"max_rss_bytes": 0.9 * g, "req_mem_bytes": 1.0 * g}),  # 90 %: neither group
            (30, 15, {"max_rss_bytes": 0.99 * g, "req_mem_bytes": 1.0 * g}),  # 99 %: near the limit
            (10, 10, {"max_rss_bytes": 2.0 * g, "req_mem_bytes": 0.0}),  # no valid request: left out
        ]
    )
    (rec,) = compute(df, per_user=False)
    assert rec.key == "memory_headroom"
    assert (rec.with_jobs, rec.with_failed, rec.without_jobs, rec.without_failed) == (100, 5, 30, 15)
    assert "peak stayed within 80 % of the memory request failed 5 % vs 50 % for jobs above 95 %" in rec.message


def test_memory_efficiency_column_wins_over_the_derived_ratio():
    g = 2**30
    df = jobs(
        [
            (100, 5, {"memory_efficiency": 0.5, "max_rss_bytes": 0.99 * g, "req_mem_bytes": g}),
            (30, 15, {"memory_efficiency": np.nan, "max_rss_bytes": 0.99 * g, "req_mem_bytes": g}),
        ]
    )
    (rec,) = compute(df, per_user=False)
    assert (rec.with_jobs, rec.without_jobs) == (100, 30)


def test_time_headroom_reports_the_timeout_share():
    df = jobs([(200, 4, {"timelimit_s": 3600.0}), (30, 0, {"timelimit_s": 3600.0, "elapsed_s": 3500.0})])
    # of the 30 near-limit jobs, 18 were killed at the limit (TIMEOUT), 3 failed otherwise
    df.loc[df.index[200:218], ["failure_class", "failed", "state"]] = ["timeout", True, "TIMEOUT"]
    df.loc[df.index[218:221], ["failure_class", "failed", "state"]] = ["failed", True, "FAILED"]
    # unlimited jobs are left out
    extra = jobs([(50, 50, {"timelimit_s": np.nan})], start=500)
    (rec,) = compute(pd.concat([df, extra], ignore_index=True), per_user=False)
    assert rec.key == "time_headroom"
    assert (rec.with_jobs, rec.with_failed, rec.without_jobs, rec.without_failed) == (200, 4, 30, 21)
    assert rec.extra["timeout_share_without"] == pytest.approx(18 / 30)
    assert rec.message.endswith("; 60 % of the latter were TIMEOUT (killed at the limit)")
    assert "failed 2 % vs 70 % for jobs that reached 95 % of it (n = 200 / 30;" in rec.message


# -- efficiency rules ---------------------------------------------------------------------------------------------


def test_right_size_cpus_counts_idle_core_hours_and_says_it_is_not_failure():
    df = jobs(
        [
            (30, 3, {"req_cpus": 8.0, "cpu_s": 8 * 600 * 0.9}),  # 90 % busy
            (25, 5, {"req_cpus": 16.0, "cpu_s": 16 * 600 * 0.1}),  # 10 % busy: 14.4 idle core-minutes... each
            (40, 40, {"req_cpus": 1.0, "cpu_s": 6.0}),  # one CPU cannot be over-requested: left out
        ]
    )
    (rec,) = compute(df, per_user=False)
    assert rec.key == "right_size_cpus" and rec.kind == "efficiency"
    assert (rec.with_jobs, rec.with_failed, rec.without_jobs, rec.without_failed) == (30, 3, 25, 5)
    # idle = 16 CPUs x 600 s x 0.9 = 8640 core-seconds per job, 25 jobs -> 60 core-hours
    assert rec.extra["wasted_core_hours"] == pytest.approx(60.0)
    assert rec.extra["share_without"] == pytest.approx(25 / 55)
    assert rec.extra["median_wait_with_s"] == 60.0
    assert "25 jobs (45 % of jobs with 2+ CPUs) used under 25 % of their allocated CPU time" in rec.message
    assert "about 60 core-hours idle" in rec.message and "not reliability" in rec.message
    # under min_support wasteful jobs: nothing
    assert compute(df, min_support=26, per_user=False) == []


def test_cpu_efficiency_column_is_used_when_present():
    df = jobs([(30, 0, {"req_cpus": 4.0, "cpu_efficiency": 0.2}), (10, 0, {"req_cpus": 4.0, "cpu_efficiency": 0.8})])
    (rec,) = compute(df, per_user=False)
    assert (rec.with_jobs, rec.without_jobs) == (10, 30)
    assert rec.extra["wasted_core_hours"] == pytest.approx(30 * 4 * 600 * 0.8 / 3600)


def test_gpu_requested_but_unused():
    df = jobs(
        [
            (22, 1, {"req_gpus": 2.0, "used_gpu": 0.0}),
            (10, 1, {"req_gpus": 1.0, "used_gpu": 1.0}),
            (50, 0, {"req_gpus": 0.0, "used_gpu": 0.0}),  # CPU jobs: left out
        ]
    )
    (rec,) = compute(df, per_user=False)
    assert rec.key == "gpu_use" and (rec.with_jobs, rec.without_jobs) == (10, 22)
    assert rec.extra["idle_gpu_hours"] == pytest.approx(22 * 2 * 600 / 3600)
    assert "22 jobs (69 % of GPU jobs) requested GPUs without using them, about 7 GPU-hours held idle" in rec.message


# -- scopes -------------------------------------------------------------------------------------------------------


def test_user_scope_when_the_user_has_support():
    df = pd.concat(
        [
            jobs([(40, 1, LOCAL), (30, 12, NFS)], user="alice"),
            jobs([(200, 10, LOCAL), (10, 0, NFS)], user="bob", start=100),
        ],
        ignore_index=True,
    )
    (rec,) = compute(df, user="alice")
    assert rec.user == "alice" and rec.scope == "user" and rec.user_jobs_without == 30
    assert (rec.with_jobs, rec.without_jobs) == (40, 30)
    assert "among your jobs" in rec.message


def test_partition_then_cluster_scope_when_the_user_lacks_support():
    df = pd.concat(
        [
            jobs([(3, 0, LOCAL), (4, 2, NFS)], user="alice", partition="gpu"),
            jobs([(1, 0, LOCAL)], user="alice", partition="cpu", start=50),
            jobs([(100, 5, LOCAL), (40, 16, NFS)], user="bob", partition="gpu", start=100),
            jobs([(100, 50, LOCAL), (40, 0, NFS)], user="carol", partition="cpu", start=300),
        ],
        ignore_index=True,
    )
    (rec,) = compute(df, user="alice")
    # alice's main partition is gpu (7 of her 8 jobs); the cpu partition's opposite pattern does not enter
    assert rec.scope == "partition" and rec.partition == "gpu" and rec.user == "alice"
    assert (rec.with_jobs, rec.with_failed, rec.without_jobs, rec.without_failed) == (103, 5, 44, 18)
    assert "among jobs in partition gpu" in rec.message
    assert rec.message.endswith("; 4 of your jobs are in the second group")
    # without a partition column, the cluster: 204 / 84 jobs, and the difference is gone (not significant)
    res = assess(df.drop(columns=["partition"]), user="alice")
    (r,) = [r for r in res if r.key == "local_scratch"]
    assert r.recommendation.scope == "cluster" and r.recommendation.with_jobs == 204
    assert r.status == "not_significant"


def test_wider_scope_is_not_shown_to_a_user_it_does_not_concern():
    df = pd.concat(
        [
            jobs([(5, 0, LOCAL)], user="alice"),
            jobs([(100, 5, LOCAL), (40, 16, NFS)], user="bob", start=100),
        ],
        ignore_index=True,
    )
    (r,) = [r for r in assess(df, user="alice") if r.key == "local_scratch"]
    assert r.status == "no_data" and "none of the user's jobs" in r.reason
    assert compute(df, user="alice") == []


def test_unknown_user_gets_no_data_for_every_rule():
    df = jobs([(120, 5, LOCAL), (45, 9, NFS)])
    res = assess(df, user="zed")
    assert [r.status for r in res] == ["no_data"] * len(RULE_KEYS)
    assert "no finished job of user 'zed'" in res[0].reason


def test_per_user_mode_adds_each_users_own_recommendations_and_adjusts_p_values():
    df = pd.concat(
        [
            jobs([(120, 5, LOCAL), (45, 20, NFS)], user="alice"),
            jobs([(100, 10, LOCAL), (100, 11, NFS)], user="bob", start=500),
        ],
        ignore_index=True,
    )
    res = assess(df)
    scratch = {r.user: r for r in res if r.key == "local_scratch"}
    assert scratch[""].status == "emitted" and scratch["alice"].status == "emitted"
    assert scratch["bob"].status == "not_significant"
    assert scratch["alice"].recommendation.scope == "user"
    # Benjamini-Hochberg over the three tests: q_(i) = min over j >= i of p_(j) * m / j
    ps = sorted(r.recommendation.p_value for r in scratch.values())
    expected = [min(ps[j] * 3 / (j + 1) for j in range(i, 3)) for i in range(3)]
    got = sorted(r.recommendation.q_value for r in scratch.values())
    assert got == pytest.approx([min(1.0, e) for e in expected])
    assert [(r.user, r.key) for r in compute(df)] == [("", "local_scratch"), ("alice", "local_scratch")]
    assert compute(df, per_user=False)[0].user == ""


# -- metrics ------------------------------------------------------------------------------------------------------


class _Collector:
    def __init__(self, fams):
        self.fams = fams

    def collect(self):
        return iter(self.fams)


def test_families_render_in_the_exposition_format():
    df = pd.concat(
        [
            jobs([(120, 5, LOCAL), (45, 20, NFS)], user="alice"),
            jobs([(100, 10, LOCAL), (100, 11, NFS)], user="bob", start=500),
        ],
        ignore_index=True,
    )
    recs = compute(df)
    reg = CollectorRegistry()
    reg.register(_Collector(families(recs)))
    text = generate_latest(reg).decode()
    assert "# TYPE nomade_recommendation_info gauge" in text
    assert (
        'nomade_recommendation_failure_rate{group="with",recommendation="local_scratch",user="alice"} '
        f"{5 / 120!r}" in text
    )
    assert 'nomade_recommendation_support_jobs{group="without",recommendation="local_scratch",user=""} 145.0' in text
    assert 'nomade_recommendation_info{message="Write to local scratch' in text
    assert 'scope="cluster",user=""} 1.0' in text
    assert text.count("nomade_recommendation_info{") == 2
    p = next(r.p_value for r in recs if r.user == "alice")
    assert f'nomade_recommendation_p_value{{recommendation="local_scratch",user="alice"}} {p!r}' in text
    assert {s.name for s in RECOMMEND_METRICS} == {f.name for f in families(recs)}


def test_families_drop_nan_and_refuse_duplicates():
    rec = Recommendation(
        "gpu_use", "efficiency", "", "cluster", "m", 0, 22, 0, 1, math.nan, 1 / 22, (math.nan,) * 2, (0, 1), math.nan
    )
    fams = {f.name: f for f in families([rec])}
    rates = fams["nomade_recommendation_failure_rate"].samples
    assert [(s.labels["group"], s.value) for s in rates] == [("without", 1 / 22)]
    assert "nomade_recommendation_p_value" not in fams
    with pytest.raises(ValueError, match="duplicate recommendation 'gpu_use'"):
        families([rec, rec])
    assert families([]) == []
    assert rec.as_dict()["with_rate"] is None and rec.as_dict()["without_ci"] == [0, 1]


def test_empty_table_and_unknown_outcomes():
    empty = pd.DataFrame(columns=list(JOB_COLUMNS))
    assert [r.status for r in assess(empty)] == ["no_data"] * len(RULE_KEYS)
    assert compute(empty, user="alice") == []
    # jobs whose outcome is unknown (failed = NaN, e.g. still running) are left out of every group
    df = jobs([(120, 5, LOCAL), (45, 9, NFS)])
    df["failed"] = df["failed"].astype(object)
    df.loc[df.index[:10], "failed"] = None
    (rec,) = compute(df, per_user=False)
    assert (rec.with_jobs, rec.with_failed) == (110, 0)
