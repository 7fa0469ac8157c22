"""Harvest of finished and active jobs from a fake Prometheus: hand-computed vectors and a constant query count."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from nomade.analytics.harvest import fetch_active_jobs, fetch_finished_jobs
from nomade.analytics.job_vectors import VECTOR_COLUMNS
from nomade.analytics.promapi import PrometheusUnavailable, Sample, Series
from nomade.analytics.traces import JOB_COLUMNS

T0 = 1_700_000_040.0  # a multiple of 60: grid points land on t0 + 60 k
STEP = 60.0
END = T0 + 3600.0


class FakeProm:
    """Answers by the first ``nomade_*`` metric name of the expression; unknown metrics have no series."""

    def __init__(self, instants=None, ranges=None):
        self.instants = dict(instants or {})
        self.ranges = dict(ranges or {})
        self.calls: list[tuple] = []

    @staticmethod
    def key(expr: str) -> str:
        return re.search(r"nomade_[a-z0-9_]+", expr).group(0)

    def query(self, expr, time=None):
        self.calls.append(("instant", expr, time))
        ans = self.instants.get(self.key(expr), [])
        if isinstance(ans, Exception):
            raise ans
        return ans

    def query_range(self, expr, start, end, step):
        self.calls.append(("range", expr, start, end, step))
        ans = self.ranges.get(self.key(expr), [])
        if isinstance(ans, Exception):
            raise ans
        return ans


def smp(value: float, **labels) -> Sample:
    return Sample(dict(labels), float(value), END)


def grid(labels: dict, f, t0: float = T0, t1: float = END) -> Series:
    """Series on the 60 s grid over [t0, t1]; f takes the time relative to T0 (None = no point)."""
    pts = [(float(t), f(t - T0)) for t in np.arange(t0, t1 + 1e-9, STEP)]
    return Series(dict(labels), tuple((t, float(v)) for t, v in pts if v is not None))


def piece(default: float, *parts: tuple[float, float, float]):
    """Value ``v`` on the open interval (a, b) of relative time, else ``default``; parts (a, b, v)."""

    def f(rel: float) -> float:
        for a, b, v in parts:
            if a < rel < b:
                return v
        return default

    return f


INFO = {
    "101": dict(
        user="alice",
        account="phys",
        partition="cpu",
        state="COMPLETED",
        failure_class="success",
        nodelist="c01",
        job_name="sim",
    ),
    "102": dict(
        user="bob",
        account="chem",
        partition="gpu",
        state="OUT_OF_MEMORY",
        failure_class="out_of_memory",
        nodelist="c[01-02]",
        job_name="md",
    ),
    "103": dict(
        user="carol",
        account="bio",
        partition="cpu",
        state="TIMEOUT",
        failure_class="timeout",
        nodelist="c04",
        job_name="align",
    ),
    "104": dict(
        user="alice",
        account="phys",
        partition="cpu",
        state="COMPLETED",
        failure_class="success",
        nodelist="c01",
        job_name="old",
    ),  # ended before the window
    "105": dict(
        user="dan",
        account="x",
        partition="cpu",
        state="FAILED",
        failure_class="failed",
        nodelist="c01",
        job_name="noend",
    ),  # no end time gauge
}
# job -> (submit, start, end, elapsed, alloc cpus, cpu_s, req_mem, max_rss, req_gpus) in seconds relative to T0
GAUGES = {
    "101": (500, 600, 1200, 600, 4, 1200, 4e9, 3e9, 0),
    "102": (1700, 1800, 2400, 600, 8, 2400, 8e9, 9e9, 2),
    "103": (50, 100, 3100, 3000, 1, 2900, 1e9, 5e8, None),
    "104": (-900, -800, -100, 700, 1, 100, 1e9, 1e8, 0),
}
GAUGE_INDEX = {
    "submit_timestamp_seconds": 0,
    "start_timestamp_seconds": 1,
    "end_timestamp_seconds": 2,
    "elapsed_seconds": 3,
    "allocated_cpus": 4,
    "requested_cpus": 4,
    "cpu_seconds": 5,
    "requested_memory_bytes": 6,
    "max_rss_bytes": 7,
    "requested_gpus": 8,
}
ABSOLUTE = {"submit_timestamp_seconds", "start_timestamp_seconds", "end_timestamp_seconds"}


def finished_instants() -> dict:
    inst: dict = {"nomade_slurm_job_info": [smp(1, job_id=j, **lab) for j, lab in INFO.items()]}
    for g, i in GAUGE_INDEX.items():
        rows = []
        for j, vals in GAUGES.items():
            if vals[i] is not None:
                rows.append(smp(vals[i] + (T0 if g in ABSOLUTE else 0), job_id=j))
        inst[f"nomade_slurm_job_{g}"] = rows
    inst["nomade_slurm_job_exit_code"] = [smp(0, job_id="101"), smp(0, job_id="102")]
    inst["nomade_job_io_written_bytes_total"] = [  # sum by (job_id, fs) of the per-node maxima
        smp(9e8, job_id="101", fs="local"),
        smp(1.2e8, job_id="101", fs="network"),
        smp(5e8, job_id="102", fs="unknown"),
        smp(3.0, fs="local"),  # no job_id: counted as bad, skipped
        smp(float("nan"), job_id="102", fs="local"),  # non-finite: counted as bad, skipped
    ]
    inst["nomade_job_usage_swap_bytes"] = [smp(0, job_id="101"), smp(1e6, job_id="102")]
    inst["nomade_job_usage_gpu_info"] = [smp(2, job_id="102")]
    return inst


LOCAL_101 = {660: 6e7, 720: 1.2e8, 780: 1.8e8, 840: 2.4e8, 900: 3.0e8, 960: 9.0e8}
NET_101 = {960: 1.2e8}


def io_counter(values: dict[int, float], start: int, end: int):
    last = [0.0]

    def f(rel: float):
        if not start < rel < end + STEP:
            return None
        last[0] = values.get(int(rel), last[0])
        return last[0]

    return f


def finished_ranges(node: str = "node", names=("c01", "c02", "c03")) -> dict:
    c01, c02, c03 = names
    return {
        "nomade_cpu_mode_ratio": [
            grid({node: c01}, piece(0.9, (600, 901, 0.1), (901, 1260, 0.3), (1800, 2460, 0.05))),
            grid({node: c02}, piece(0.7, (1800, 2460, 0.15))),
            grid({node: c03}, piece(0.5)),
        ],
        "nomade_cpu_imbalance_ratio": [
            grid({node: c01}, piece(5.0, (600, 1260, 0.25), (1800, 2460, 0.2))),
            grid({node: c02}, piece(5.0, (1800, 2460, 0.4))),
        ],
        "nomade_disk_utilization_ratio": [
            grid({node: c01}, piece(1.0, (600, 901, 0.2), (901, 1260, 0.6))),
        ],
        "nomade_cpu_busy_max_ratio": [
            grid({node: c01}, piece(0.0, (1800, 2460, 0.6))),
            grid({node: c02}, piece(0.0, (1800, 2460, 0.8))),
        ],
        "nomade_memory_swap_in_bytes_per_second": [
            grid({node: c01}, piece(0.0)),
            grid({node: c02}, piece(5e4, (2099, 2101, 1000.0), (1800, 2460, 10.0))),
        ],
        "nomade_memory_procs_blocked": [grid({node: c01}, piece(9.0, (600, 1260, 2.0)))],
        "nomade_job_io_written_bytes_total": [
            grid({node: c01, "job_id": "101", "fs": "local"}, io_counter(LOCAL_101, 600, 1200)),
            grid({node: c01, "job_id": "101", "fs": "network"}, io_counter(NET_101, 600, 1200)),
        ],
    }


def test_finished_jobs_hand_computed_vectors():
    fake = FakeProm(finished_instants(), finished_ranges())
    df = fetch_finished_jobs(fake, T0, END, dataset="lab")
    assert list(df.columns[: len(JOB_COLUMNS)]) == list(JOB_COLUMNS)
    assert {"nodelist", *VECTOR_COLUMNS} <= set(df.columns)
    assert list(df["job_id"]) == ["101", "102", "103"]  # 104 ended before the window, 105 has no end time
    assert df.attrs["jobs_without_end_time"] == 1
    assert df.attrs["bad_samples"] == 2
    assert df.attrs["failed_queries"] == 0
    j = df.set_index("job_id")
    a, b, c = j.loc["101"], j.loc["102"], j.loc["103"]
    # job table
    assert a["start_time"] == T0 + 600 and a["end_time"] == T0 + 1200 and a["req_cpus"] == 4
    assert a["user"] == "alice" and a["nodelist"] == "c01" and a["dataset"] == "lab" and not a["failed"]
    assert b["failed"] and b["failure_class"] == "out_of_memory"
    # sacct part
    assert a["cpu_efficiency"] == pytest.approx(0.5) and a["memory_efficiency"] == pytest.approx(0.75)
    assert a["health_score"] == pytest.approx(0.5 + 0.5 * (0.5 + 0.75) / 2)
    assert b["health_score"] == 0.0 and c["health_score"] == pytest.approx(0.3)
    assert a["runtime_minutes"] == 10.0
    assert a["used_gpu"] == 0 and b["used_gpu"] == 2 and math.isnan(c["used_gpu"])
    assert a["had_swap"] == 0.0 and b["had_swap"] == 1.0 and math.isnan(c["had_swap"])
    # job I/O: 9e8 local + 1.2e8 network
    assert a["total_write_gb"] == pytest.approx(1.02)
    assert a["nfs_ratio"] == pytest.approx(1.2e8 / 1.02e9)
    assert a["write_intensity"] == pytest.approx(0.102)
    # peak: local 6e8 and network 1.2e8 both in the interval (900, 960]: 7.2e8 / 60 s = 12 MB/s
    assert a["write_rate_mbps"] == pytest.approx(12.0)
    assert b["total_write_gb"] == pytest.approx(0.5)
    assert math.isnan(b["nfs_ratio"])  # unattributed bytes: unknown share
    assert b["write_rate_mbps"] == pytest.approx(5e8 / 600 / 1e6)  # no interval observed: mean rate
    assert math.isnan(c["total_write_gb"]) and math.isnan(c["write_rate_mbps"]) and math.isnan(c["nfs_ratio"])
    # node state, window = grid points start < t < end + step
    assert a["avg_iowait"] == pytest.approx(0.2)  # 5 points at 0.1, 5 at 0.3
    assert a["peak_iowait"] == pytest.approx(0.3)
    assert b["avg_iowait"] == pytest.approx(0.1)  # mean over nodes of 0.05 (c01) and 0.15 (c02)
    assert b["peak_iowait"] == pytest.approx(0.15)
    assert a["imbalance_ratio"] == pytest.approx(0.25) and b["imbalance_ratio"] == pytest.approx(0.3)
    assert a["device_util"] == pytest.approx(0.4)
    assert b["max_core_busy"] == pytest.approx(0.8)  # time mean per node, max over nodes
    assert b["swap_activity"] == pytest.approx(1000.0)
    assert a["procs_blocked"] == pytest.approx(2.0)
    assert math.isnan(a["memory_pressure"]) and math.isnan(a["avg_core_busy"])  # no series at all
    # job 103 ran on c04, which has no series
    for col in ("avg_iowait", "peak_iowait", "device_util", "imbalance_ratio", "procs_blocked"):
        assert math.isnan(c[col])
    assert df.attrs["jobs_without_node_series"] == 1


def test_finished_query_plan():
    fake = FakeProm(finished_instants(), finished_ranges())
    df = fetch_finished_jobs(fake, T0, END)
    assert df.attrs["queries"] == len(fake.calls) == 26
    instants = [c[1] for c in fake.calls if c[0] == "instant"]
    ranges = [c for c in fake.calls if c[0] == "range"]
    assert instants[0] == "last_over_time(nomade_slurm_job_info[3600s])"
    assert "last_over_time(nomade_slurm_job_elapsed_seconds[3600s])" in instants
    t0 = T0 + 60  # earliest start (job 103 at T0 + 100) floored to the step
    lookback = f"{int(END - t0)}s"
    assert f"sum by (job_id, fs) (max_over_time(nomade_job_io_written_bytes_total[{lookback}]))" in instants
    assert {c[1] for c in ranges} == {
        'avg by (node) (nomade_cpu_mode_ratio{mode="iowait"})',
        "max by (node) (nomade_disk_utilization_ratio)",
        "avg by (node) (nomade_cpu_busy_average_ratio)",
        "avg by (node) (nomade_cpu_imbalance_ratio)",
        "max by (node) (nomade_cpu_busy_max_ratio)",
        "avg by (node) (nomade_memory_pressure_ratio)",
        "avg by (node) (nomade_memory_swap_in_bytes_per_second + nomade_memory_swap_out_bytes_per_second)",
        "avg by (node) (nomade_memory_procs_blocked)",
        "nomade_job_io_written_bytes_total",
    }
    assert all(c[2] == t0 and c[3] == END and c[4] == STEP for c in ranges)
    assert all(c[2] == END for c in fake.calls if c[0] == "instant")


def test_matchers_and_node_label_are_applied():
    fake = FakeProm(finished_instants(), finished_ranges(node="instance"))
    df = fetch_finished_jobs(fake, T0, END, node_label="instance", matchers='cluster="a"')
    exprs = [c[1] for c in fake.calls]
    assert 'avg by (instance) (nomade_cpu_mode_ratio{mode="iowait",cluster="a"})' in exprs
    assert 'last_over_time(nomade_slurm_job_info{cluster="a"}[3600s])' in exprs
    assert df.set_index("job_id").loc["101", "avg_iowait"] == pytest.approx(0.2)


def test_node_map_default_rule():
    # the lab: every slurmd on one host, node-mode series carry node="labhost"
    fake = FakeProm(finished_instants(), finished_ranges(names=("labhost", "other", "spare")))
    df = fetch_finished_jobs(fake, T0, END, node_map={"*": "labhost"}).set_index("job_id")
    assert df.loc["101", "avg_iowait"] == pytest.approx(0.2)
    # c[01-02] both map to labhost: one node, the c01-like series only
    assert df.loc["102", "avg_iowait"] == pytest.approx(0.05)
    # c04 -> labhost too; window (100, 3160): 51 points, 5 at 0.1, 5 at 0.3, 10 at 0.05, 31 at 0.9
    assert df.loc["103", "avg_iowait"] == pytest.approx((5 * 0.1 + 5 * 0.3 + 10 * 0.05 + 31 * 0.9) / 51)
    # an explicit entry wins over "*"; names without an entry and no "*" keep their own name
    fake = FakeProm(finished_instants(), finished_ranges(names=("host-a", "c02", "c03")))
    df = fetch_finished_jobs(fake, T0, END, node_map={"c01": "host-a"}).set_index("job_id")
    assert df.loc["101", "avg_iowait"] == pytest.approx(0.2)
    assert df.loc["102", "avg_iowait"] == pytest.approx(0.1)


def synthetic(n: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    inst: dict = {"nomade_slurm_job_info": [], "nomade_job_io_written_bytes_total": []}
    for g in GAUGE_INDEX:
        inst[f"nomade_slurm_job_{g}"] = []
    io_ranges = []
    for k in range(n):
        j = str(1000 + k)
        start = float(rng.integers(0, 3000))
        end = start + float(rng.integers(60, 600))
        end = min(end, 3600.0)
        node = f"c0{rng.integers(1, 4)}"
        inst["nomade_slurm_job_info"].append(
            smp(
                1,
                job_id=j,
                state="COMPLETED",
                failure_class="success",
                nodelist=node,
                user="u",
                account="a",
                partition="p",
                job_name="x",
            )
        )
        vals = {
            "submit_timestamp_seconds": T0 + start - 10,
            "start_timestamp_seconds": T0 + start,
            "end_timestamp_seconds": T0 + end,
            "elapsed_seconds": end - start,
            "allocated_cpus": 2,
            "requested_cpus": 2,
            "cpu_seconds": end - start,
            "requested_memory_bytes": 1e9,
            "max_rss_bytes": 5e8,
            "requested_gpus": 0,
        }
        for g, v in vals.items():
            inst[f"nomade_slurm_job_{g}"].append(smp(v, job_id=j))
        inst["nomade_job_io_written_bytes_total"].append(smp(1e6 * (end - start), job_id=j, fs="local"))
        io_ranges.append(
            grid(
                {"node": node, "job_id": j, "fs": "local"},
                lambda rel, s=start, e=end: 1e6 * (rel - s) if s < rel < e + STEP else None,
            )
        )
    ranges = {
        "nomade_cpu_mode_ratio": [grid({"node": f"c0{i}"}, piece(0.1 * i)) for i in (1, 2, 3)],
        "nomade_job_io_written_bytes_total": io_ranges,
    }
    return inst, ranges


def test_query_count_does_not_grow_with_jobs():
    counts = {}
    for n in (5, 500):
        fake = FakeProm(*synthetic(n))
        df = fetch_finished_jobs(fake, T0, END)
        assert len(df) == n
        counts[n] = (df.attrs["queries"], len(fake.calls))
        # the bulk path really ran: every job got its node's iowait (0.1 x node number) and a write rate of 1 MB/s
        node_no = df["nodelist"].str[-1].astype(float)
        np.testing.assert_allclose(df["avg_iowait"], 0.1 * node_no)
        np.testing.assert_allclose(df["write_rate_mbps"], 1.0)
    assert counts[5] == counts[500] == (26, 26)


def test_failed_queries_leave_nan_and_are_counted():
    inst = finished_instants()
    inst["nomade_job_usage_swap_bytes"] = PrometheusUnavailable("HTTP 503")
    ranges = finished_ranges()
    ranges["nomade_cpu_mode_ratio"] = PrometheusUnavailable("timeout")
    df = fetch_finished_jobs(FakeProm(inst, ranges), T0, END).set_index("job_id")
    assert df.attrs["failed_queries"] == 2 and df.attrs["queries"] == 26
    assert df["had_swap"].isna().all() and df["avg_iowait"].isna().all() and df["peak_iowait"].isna().all()
    assert df.loc["101", "imbalance_ratio"] == pytest.approx(0.25)  # the other queries still count
    inst = finished_instants()
    inst["nomade_slurm_job_info"] = PrometheusUnavailable("refused")
    with pytest.raises(PrometheusUnavailable):
        fetch_finished_jobs(FakeProm(inst, {}), T0, END)


def test_no_jobs_in_window():
    fake = FakeProm({}, {})
    df = fetch_finished_jobs(fake, T0, END)
    assert df.empty and {"job_id", *VECTOR_COLUMNS} <= set(df.columns)
    assert df.attrs["queries"] == 1 == len(fake.calls)
    with pytest.raises(ValueError, match="precedes"):
        fetch_finished_jobs(fake, END, T0)


# ---------------------------------------------------------------- active jobs

NOW = T0 + 3000.0


def active_fake(extra_running: int = 0) -> FakeProm:
    info = [
        smp(
            1,
            job_id="201",
            state="RUNNING",
            nodelist="c02",
            user="alice",
            account="a",
            partition="cpu",
            job_name="grow",
        ),
        smp(1, job_id="202", state="PENDING", nodelist="", user="bob", account="a", partition="cpu", job_name="p"),
        smp(
            1, job_id="203", state="COMPLETING", nodelist="c01", user="bob", account="a", partition="cpu", job_name="c"
        ),
    ]
    g = {
        "requested_cpus": {"201": 2, "202": 4},
        "requested_nodes": {"201": 1, "202": 1},
        "requested_memory_bytes": {"201": 8e9, "202": 1e9},
        "requested_gpus": {"201": 0, "202": 0},
        "timelimit_seconds": {"201": 7200, "202": 600},
        "submit_timestamp_seconds": {"201": T0 + 1700, "202": T0 + 2900},
        "start_timestamp_seconds": {"201": T0 + 1800},
    }
    mem = [grid({"job_id": "201"}, lambda rel: 1e9 + 5e5 * (rel - 2400), NOW - 600, NOW)]
    io = [
        grid(
            {"node": "c02", "job_id": "201", "fs": "local"},
            lambda rel: 2e6 * (rel - 1800) if rel > 1800 else None,
            T0,
            NOW,
        )
    ]
    for k in range(extra_running):
        j = str(3000 + k)
        info.append(
            smp(
                1,
                job_id=j,
                state="RUNNING",
                nodelist=f"c0{1 + k % 3}",
                user="u",
                account="a",
                partition="cpu",
                job_name="x",
            )
        )
        for name in g:
            g[name][j] = T0 + 1000 if "timestamp" in name else 1
        mem.append(grid({"job_id": j}, lambda rel: 1e9, NOW - 600, NOW))
        io.append(
            grid(
                {"node": f"c0{1 + k % 3}", "job_id": j, "fs": "local"},
                lambda rel: 1e3 * (rel - 1000) if rel > 1000 else None,
                T0,
                NOW,
            )
        )
    inst = {"nomade_slurm_queue_job_info": info}
    for name, vals in g.items():
        inst[f"nomade_slurm_queue_job_{name}"] = [smp(v, job_id=j) for j, v in vals.items()]
    inst["nomade_job_usage_cpu_seconds_total"] = [smp(1200, job_id="201")]
    inst["nomade_job_usage_memory_peak_bytes"] = [smp(2e9, job_id="201")]
    inst["nomade_job_usage_swap_bytes"] = [smp(0, job_id="201")]
    inst["nomade_job_io_written_bytes_total"] = [smp(2.4e9, job_id="201", fs="local")]
    ranges = {
        "nomade_cpu_mode_ratio": [grid({"node": "c02"}, piece(0.9, (1800, 3060, 0.2)), T0, NOW)],
        "nomade_job_usage_memory_usage_bytes": mem,
        "nomade_job_io_written_bytes_total": io,
    }
    return FakeProm(inst, ranges)


def test_active_jobs_so_far():
    fake = active_fake()
    df = fetch_active_jobs(fake, NOW)
    assert list(df["job_id"]) == ["202", "201"]  # PENDING sorts before RUNNING; COMPLETING is left out
    assert df.attrs["queries"] == len(fake.calls) == 23
    j = df.set_index("job_id")
    r, p = j.loc["201"], j.loc["202"]
    assert r["state"] == "RUNNING" and math.isnan(r["end_time"]) and math.isnan(r["failed"])
    assert r["elapsed_s"] == 1200 and r["cpu_s"] == 1200 and r["max_rss_bytes"] == 2e9
    assert r["cpu_efficiency"] == pytest.approx(0.5)  # 1200 CPU s / (1200 s x 2 CPUs)
    assert r["memory_efficiency"] == pytest.approx(0.25)
    assert r["runtime_minutes"] == 20 and r["had_swap"] == 0.0
    assert r["total_write_gb"] == pytest.approx(2.4) and r["nfs_ratio"] == 0.0
    assert r["write_rate_mbps"] == pytest.approx(2.0)
    assert r["avg_iowait"] == pytest.approx(0.2) and r["peak_iowait"] == pytest.approx(0.2)
    assert r["mem_slope_bytes_per_s"] == pytest.approx(5e5, rel=1e-6)
    assert math.isnan(r["health_score"])
    assert p["state"] == "PENDING" and math.isnan(p["elapsed_s"]) and math.isnan(p["start_time"])
    assert p[list(VECTOR_COLUMNS)].isna().all() and math.isnan(p["mem_slope_bytes_per_s"])
    assert p["req_cpus"] == 4 and p["submit_time"] == T0 + 2900
    mem_call = [c for c in fake.calls if c[0] == "range" and "memory_usage" in c[1]][0]
    assert mem_call[1] == "sum by (job_id) (nomade_job_usage_memory_usage_bytes)"
    assert mem_call[2] == NOW - 600 and mem_call[3] == NOW and mem_call[4] == 30.0


def test_active_query_count_constant():
    small = fetch_active_jobs(active_fake(5), NOW)
    big = fetch_active_jobs(active_fake(500), NOW)
    assert len(small) == 7 and len(big) == 502
    assert small.attrs["queries"] == big.attrs["queries"] == 23
    extra = big[big["job_id"].astype(int) >= 3000]
    np.testing.assert_allclose(extra["write_rate_mbps"], 1e-3)
    np.testing.assert_allclose(extra["mem_slope_bytes_per_s"], 0.0, atol=1e-6)
    assert extra["avg_iowait"].notna().sum() == (extra["nodelist"] == "c02").sum()  # only c02 has series


def test_active_empty_queue():
    fake = FakeProm({}, {})
    df = fetch_active_jobs(fake, NOW)
    assert df.empty and "mem_slope_bytes_per_s" in df.columns
    assert df.attrs["queries"] == 1 == len(fake.calls)
    # only pending jobs: no range query at all
    fake = active_fake()
    fake.instants["nomade_slurm_queue_job_info"] = fake.instants["nomade_slurm_queue_job_info"][1:]
    df = fetch_active_jobs(fake, NOW)
    assert list(df["state"]) == ["PENDING"] and df.attrs["queries"] == 13
    assert not [c for c in fake.calls if c[0] == "range"]


def test_frames_round_trip_through_the_store(tmp_path):
    from nomade.analytics.jobs_store import JobsStore

    fin = fetch_finished_jobs(FakeProm(finished_instants(), finished_ranges()), T0, END, dataset="lab")
    act = fetch_active_jobs(active_fake(), NOW, dataset="lab")
    with JobsStore(tmp_path / "s.db") as s:
        assert s.upsert(fin) == 3
        assert s.upsert_snapshots(act, NOW) == 2
        got = s.load().set_index("job_id")
        snaps = s.load_snapshots()
    pd.testing.assert_series_equal(
        got.loc[["101", "102", "103"], "avg_iowait"], fin.set_index("job_id")["avg_iowait"], check_names=False
    )
    assert snaps.set_index("job_id").loc["201", "mem_slope_bytes_per_s"] == pytest.approx(5e5, rel=1e-6)
    assert snaps["failed"].isna().all()  # neither job has finished
