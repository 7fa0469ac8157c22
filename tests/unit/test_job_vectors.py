"""The 19-dimension job vector: names, health score, window slicing, node mapping, write rates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nomade.analytics.job_vectors import (
    HEALTH_CREDIT,
    INPUT_COLUMNS,
    NODE_FEATURES,
    VECTOR_COLUMNS,
    add_matchers,
    health_score,
    job_nodes,
    job_vectors,
    node_state_features,
    normalised,
    peak_write_rate,
    window_stats,
)
from nomade.exporter.parsers.slurm_outcome import FAILURE_CLASSES


def test_names_follow_the_seed_order():
    assert len(VECTOR_COLUMNS) == 19 and len(set(VECTOR_COLUMNS)) == 19
    assert VECTOR_COLUMNS[:5] == ("health_score", "cpu_efficiency", "memory_efficiency", "used_gpu", "had_swap")
    assert VECTOR_COLUMNS[10:13] == ("avg_iowait", "peak_iowait", "device_util")
    assert VECTOR_COLUMNS[-3:] == ("memory_pressure", "swap_activity", "procs_blocked")
    assert INPUT_COLUMNS == VECTOR_COLUMNS[1:] and "health_score" not in INPUT_COLUMNS
    assert {f.name for f in NODE_FEATURES} == set(VECTOR_COLUMNS[10:])


def frame(classes, cpu_eff=None, mem_eff=None) -> pd.DataFrame:
    df = pd.DataFrame({"failure_class": classes})
    if cpu_eff is not None:
        df["cpu_efficiency"] = cpu_eff
    if mem_eff is not None:
        df["memory_efficiency"] = mem_eff
    return df


def test_health_score_per_class():
    classes = [c for c in FAILURE_CLASSES if c not in ("success", "other")]
    h = health_score(frame(classes))
    assert dict(zip(classes, h, strict=True)) == {c: HEALTH_CREDIT[c] for c in classes}
    assert h[classes.index("out_of_memory")] == 0.0 and h[classes.index("node_fail")] == 0.0
    assert h[classes.index("segfault")] == 0.0 and h[classes.index("timeout")] == 0.3
    assert h[classes.index("cancelled")] == 0.4 and h[classes.index("failed")] == 0.2
    assert (h < 0.5).all()  # every failure under the seed's threshold of 0.5


def test_health_score_success_efficiency_term_and_bounds():
    df = frame(
        ["success"] * 5 + ["other", None],
        cpu_eff=[1.0, 0.5, 3.0, np.nan, np.nan, 1.0, 1.0],
        mem_eff=[1.0, 0.25, -1.0, 0.2, np.nan, 1.0, 1.0],
    )
    h = health_score(df)
    assert h[0] == 1.0  # used everything it asked for: perfect
    assert h[1] == pytest.approx(0.5 + 0.5 * (0.5 + 0.25) / 2)
    assert h[2] == pytest.approx(0.5 + 0.5 * (1.0 + 0.0) / 2)  # efficiencies clipped to [0, 1]
    assert h[3] == pytest.approx(0.6)  # only memory known
    assert h[4] == 0.75  # neither known: middle of the success band
    assert math.isnan(h[5]) and math.isnan(h[6])  # no terminal outcome: no target
    assert ((h.dropna() >= 0.5) & (h.dropna() <= 1.0)).all()


def test_health_score_from_sacct_columns_and_errors():
    df = pd.DataFrame(
        {
            "failure_class": ["success"],
            "cpu_s": [300.0],
            "elapsed_s": [100.0],
            "req_cpus": [8.0],
            "alloc_cpus": [4.0],
            "max_rss_bytes": [1e9],
            "req_mem_bytes": [4e9],
        }
    )
    assert health_score(df)[0] == pytest.approx(0.5 + 0.5 * (0.75 + 0.25) / 2)  # alloc_cpus wins over req_cpus
    with pytest.raises(ValueError, match="failure_class"):
        health_score(pd.DataFrame({"state": ["COMPLETED"]}))


def test_window_stats_uses_points_whose_step_overlaps_the_job():
    t = np.arange(0.0, 601.0, 60.0)  # 0, 60, ..., 600
    v = t / 60.0  # 0..10
    mean, mx, n = window_stats(t, v, np.array([100.0, 120.0, 130.0, 0.0]), np.array([200.0, 120.0, 140.0, np.nan]), 60)
    # (100, 260): 120, 180, 240 -> 2, 3, 4
    assert n[0] == 3 and mean[0] == pytest.approx(3.0) and mx[0] == 4.0
    # zero-length job at a grid point: (120, 180) holds no point
    assert n[1] == 0 and math.isnan(mean[1]) and math.isnan(mx[1])
    # a 10 s job between grid points: (130, 200) -> 180, the sample describing its interval
    assert n[2] == 1 and mean[2] == 3.0
    assert n[3] == 0 and math.isnan(mean[3])  # unknown end
    v2 = v.copy()
    v2[3] = np.nan  # non-finite samples are ignored
    mean, _, n = window_stats(t, v2, np.array([100.0]), np.array([200.0]), 60)
    assert n[0] == 2 and mean[0] == pytest.approx(3.0)


def test_job_nodes_mapping():
    assert job_nodes("c[01-03],gpu1") == ["c01", "c02", "c03", "gpu1"]
    assert job_nodes("c[01-02]", {"*": "labhost"}) == ["labhost"]
    assert job_nodes("c[01-02]", {"c01": "h1", "*": "lab"}) == ["h1", "lab"]
    assert job_nodes("c[01-02]", {"c01": "h1"}) == ["h1", "c02"]
    assert job_nodes("") == [] and job_nodes(None) == [] and job_nodes("(null)") == []
    with pytest.raises(ValueError):
        job_nodes("c[01-02")


def test_node_state_features_mean_and_max_over_nodes():
    t = np.arange(0.0, 601.0, 60.0)
    series = {
        "avg_iowait": {"a": (t, np.full(t.size, 0.1)), "b": (t, np.full(t.size, 0.3))},
        "peak_iowait": {"a": (t, np.where(t == 120, 0.9, 0.1)), "b": (t, np.full(t.size, 0.3))},
    }
    nodes = [["a", "b"], ["a", "zz"], ["zz"], []]
    out = node_state_features(nodes, np.full(4, 60.0), np.full(4, 300.0), series, 60.0)
    assert out["avg_iowait"].tolist()[:2] == pytest.approx([0.2, 0.1])  # node without series: left out
    assert out["peak_iowait"].tolist()[:2] == pytest.approx([0.9, 0.9])
    assert out.iloc[2:].isna().all(axis=None)  # no sampled node / no node at all
    assert out["device_util"].isna().all()  # feature without series


def test_peak_write_rate_sums_series_and_handles_resets():
    t = np.array([60.0, 120.0, 180.0, 240.0])
    series = [
        ("j", t, np.array([600.0, 1200.0, 1200.0, 300.0])),  # reset at 240: counter restarted, 300 new bytes
        ("j", t, np.array([0.0, 0.0, 6000.0, 6000.0])),
        ("k", t[:1], np.array([5.0])),  # one point, no start: no interval
    ]
    peaks = peak_write_rate(series)
    assert peaks == {"j": pytest.approx(100.0)}  # (0 + 6000)/60 in (120, 180]
    # with the start known, the first point counts from 0 at the start
    peaks = peak_write_rate(series, starts={"j": 55.0, "k": 55.0})
    assert peaks["j"] == pytest.approx(600.0 / 5.0) and peaks["k"] == pytest.approx(1.0)


def test_job_vectors_on_a_trace_and_io_rules():
    df = pd.DataFrame(
        {
            "job_id": ["1", "2", "3"],
            "failure_class": ["success", "timeout", "success"],
            "elapsed_s": [600.0, 0.0, 120.0],
            "cpu_s": [600.0, 0.0, np.nan],
            "req_cpus": [2.0, 1.0, 1.0],
            "req_mem_bytes": [2e9, 1e9, 1e9],
            "max_rss_bytes": [1e9, 0.0, np.nan],
            "req_gpus": [1.0, 0.0, np.nan],
        }
    )
    v = job_vectors(df)
    assert list(v.columns) == list(VECTOR_COLUMNS)
    assert v["cpu_efficiency"].iloc[0] == 0.5 and v["memory_efficiency"].iloc[0] == 0.5
    assert v["used_gpu"].tolist()[:2] == [1.0, 0.0] and math.isnan(v["used_gpu"].iloc[2])
    assert v["runtime_minutes"].tolist() == [10.0, 0.0, 2.0]
    assert v[list(VECTOR_COLUMNS[5:8]) + list(VECTOR_COLUMNS[10:])].isna().all(axis=None)  # no Prometheus
    v = job_vectors(
        df,
        written_by_fs={"1": {"local": 3e9, "network": 1e9}, "2": {"local": 0.0}, "3": {"network": 2e9}},
        swap_peak_bytes={"1": 4096.0},
        gpu_count={"1": 4.0},
    )
    assert v["total_write_gb"].tolist() == [4.0, 0.0, 2.0]
    assert v["nfs_ratio"].iloc[0] == 0.25 and math.isnan(v["nfs_ratio"].iloc[1]) and v["nfs_ratio"].iloc[2] == 1.0
    assert v["write_intensity"].iloc[0] == pytest.approx(0.4) and math.isnan(v["write_intensity"].iloc[1])
    assert v["write_rate_mbps"].iloc[0] == pytest.approx(4e9 / 600 / 1e6)  # mean-rate fallback
    assert v["had_swap"].iloc[0] == 1.0 and math.isnan(v["had_swap"].iloc[1])
    assert v["used_gpu"].iloc[0] == 4.0  # cgroup GPU count wins over the request


def test_normalised():
    df = pd.DataFrame({"total_write_gb": [0.0, math.e - 1, -3.0], "cpu_efficiency": [1.7, 0.5, -0.1], "x": [5, 6, 7]})
    n = normalised(df)
    assert n["total_write_gb"].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert n["cpu_efficiency"].tolist() == [1.0, 0.5, 0.0]
    assert n["x"].tolist() == [5, 6, 7]


def test_add_matchers():
    assert add_matchers("m", "") == "m"
    assert add_matchers("m", 'c="a"') == 'm{c="a"}'
    assert add_matchers('m{mode="x"}', 'c="a"') == 'm{mode="x",c="a"}'
    assert add_matchers("m{}", 'c="a"') == 'm{c="a"}'
