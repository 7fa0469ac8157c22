"""The job harvest against REAL Prometheus and VictoriaMetrics servers started on loopback (tests/backfill.py).

Checks that every PromQL expression of :mod:`nomade.analytics.harvest` is accepted by both servers and that the
server-side aggregations (``avg/max by (node)``, ``sum by (job_id, fs)``, ``last_over_time``, ``count by``) give the
hand-computed vectors, with the same fixed query counts. Not the lab: each server gets a temporary directory and a
free port and is stopped again. Skipped without the ``prometheus``/``promtool``/``victoria-metrics`` binaries.
"""

from __future__ import annotations

import math
import time

import pytest
from backfill import PROMETHEUS, PROMTOOL, VICTORIAMETRICS, prometheus_server, require_binaries, victoriametrics_server

from nomade.analytics.harvest import fetch_active_jobs, fetch_finished_jobs
from nomade.analytics.promapi import PrometheusClient

pytestmark = pytest.mark.integration

SAMPLE = 15.0


def history(T: float, t_end: float) -> list:
    """Samples every 15 s over [T - 600, t_end]; relative times below are seconds after T."""
    grid = [T - 600 + k * SAMPLE for k in range(int((t_end - T + 600) // SAMPLE) + 1)]

    def series(labels: dict, f, lo: float = -600, hi: float = 1e9) -> tuple:
        pts = [(t, f(t - T)) for t in grid if lo <= t - T <= hi]
        return (labels, [(t, float(v)) for t, v in pts if v is not None])

    def iowait_c1(rel: float) -> float:
        if 600 < rel <= 900:
            return 0.1
        if 900 < rel < 1260:
            return 0.3
        return 0.9

    local = {660: 6e7, 720: 1.2e8, 780: 1.8e8, 840: 2.4e8, 900: 3.0e8, 960: 9.0e8}

    def local_101(rel: float) -> float:
        keys = [k for k in local if k <= rel]
        return local[max(keys)] if keys else 0.0

    out = [
        series({"__name__": "nomade_cpu_mode_ratio", "node": "c1", "mode": "iowait"}, iowait_c1),
        series({"__name__": "nomade_cpu_mode_ratio", "node": "c1", "mode": "user"}, lambda r: 0.5),
        series({"__name__": "nomade_cpu_mode_ratio", "node": "c2", "mode": "iowait"}, lambda r: 0.25),
        series({"__name__": "nomade_disk_utilization_ratio", "node": "c1", "device": "sda"}, lambda r: 0.4),
        series({"__name__": "nomade_disk_utilization_ratio", "node": "c1", "device": "loop0"}, lambda r: 0.0),
        series({"__name__": "nomade_memory_swap_in_bytes_per_second", "node": "c1"}, lambda r: 100.0),
        series({"__name__": "nomade_memory_swap_out_bytes_per_second", "node": "c1"}, lambda r: 50.0),
        # finished job 101 on c1, [600, 1200]; its job series while it ran, its sacct series after it ended
        series(
            {"__name__": "nomade_job_io_written_bytes_total", "node": "c1", "job_id": "101", "fs": "local"},
            local_101,
            615,
            1245,
        ),
        series(
            {"__name__": "nomade_job_io_written_bytes_total", "node": "c1", "job_id": "101", "fs": "network"},
            lambda r: 1.2e8 if r >= 960 else 0.0,
            615,
            1245,
        ),
        series({"__name__": "nomade_job_usage_swap_bytes", "node": "c1", "job_id": "101"}, lambda r: 0.0, 615, 1245),
        series(
            {"__name__": "nomade_job_usage_gpu_info", "node": "c1", "job_id": "101", "gpu": "0"},
            lambda r: 1.0,
            615,
            1245,
        ),
        series(
            {"__name__": "nomade_job_usage_gpu_info", "node": "c1", "job_id": "101", "gpu": "1"},
            lambda r: 1.0,
            615,
            1245,
        ),
        series(
            {
                "__name__": "nomade_slurm_job_info",
                "job_id": "101",
                "user": "alice",
                "account": "phys",
                "partition": "cpu",
                "state": "COMPLETED",
                "failure_class": "success",
                "nodelist": "c1",
                "job_name": "sim",
            },
            lambda r: 1.0,
            1260,
        ),
    ]
    gauges = {
        "submit_timestamp_seconds": T + 500,
        "start_timestamp_seconds": T + 600,
        "end_timestamp_seconds": T + 1200,
        "elapsed_seconds": 600,
        "allocated_cpus": 4,
        "requested_cpus": 4,
        "cpu_seconds": 1200,
        "requested_memory_bytes": 4e9,
        "max_rss_bytes": 3e9,
        "requested_gpus": 2,
        "nodes": 1,
        "exit_code": 0,
    }
    for g, v in gauges.items():
        out.append(series({"__name__": f"nomade_slurm_job_{g}", "job_id": "101"}, lambda r, v=v: v, 1260))
    # running job 201 on c2 since 1800 (pending from 1700), pending job 202 since 3000
    info = {"job_id": "201", "user": "bob", "account": "chem", "partition": "cpu", "job_name": "grow"}
    out += [
        series(
            {"__name__": "nomade_slurm_queue_job_info", **info, "state": "PENDING", "nodelist": ""},
            lambda r: 1.0,
            1700,
            1785,
        ),
        series(
            {"__name__": "nomade_slurm_queue_job_info", **info, "state": "RUNNING", "nodelist": "c2"},
            lambda r: 1.0,
            1800,
        ),
        series(
            {
                "__name__": "nomade_slurm_queue_job_info",
                "job_id": "202",
                "user": "bob",
                "account": "chem",
                "partition": "cpu",
                "job_name": "p",
                "state": "PENDING",
                "nodelist": "",
            },
            lambda r: 1.0,
            3000,
        ),
        series(
            {"__name__": "nomade_job_usage_cpu_seconds_total", "node": "c2", "job_id": "201"},
            lambda r: 1.0 * (r - 1800),
            1815,
        ),
        series(
            {"__name__": "nomade_job_usage_memory_usage_bytes", "node": "c2", "job_id": "201"},
            lambda r: 1e9 + 5e5 * (r - 1800),
            1815,
        ),
        series(
            {"__name__": "nomade_job_usage_memory_peak_bytes", "node": "c2", "job_id": "201"},
            lambda r: 1e9 + 5e5 * (r - 1800),
            1815,
        ),
        series(
            {"__name__": "nomade_job_io_written_bytes_total", "node": "c2", "job_id": "201", "fs": "local"},
            lambda r: 2e6 * (r - 1800),
            1815,
        ),
    ]
    queue = {
        "requested_cpus": (2, 4),
        "requested_memory_bytes": (8e9, 1e9),
        "requested_nodes": (1, 1),
        "requested_gpus": (0, 0),
        "timelimit_seconds": (7200, 600),
        "submit_timestamp_seconds": (T + 1700, T + 3000),
    }
    for g, (a, b) in queue.items():
        out.append(series({"__name__": f"nomade_slurm_queue_job_{g}", "job_id": "201"}, lambda r, a=a: a, 1700))
        out.append(series({"__name__": f"nomade_slurm_queue_job_{g}", "job_id": "202"}, lambda r, b=b: b, 3000))
    out.append(
        series(
            {"__name__": "nomade_slurm_queue_job_start_timestamp_seconds", "job_id": "201"}, lambda r: T + 1800, 1800
        )
    )
    return out


@pytest.fixture(scope="module", params=["prometheus", "victoriametrics"])
def loaded(request, tmp_path_factory):
    if request.param == "prometheus":
        require_binaries(PROMETHEUS, PROMTOOL)
        manager = prometheus_server
    else:
        require_binaries(VICTORIAMETRICS)
        manager = victoriametrics_server
    t_end = math.floor(time.time() / 60) * 60 - 120.0  # whole minutes, clear of VictoriaMetrics' latency offset
    T = t_end - 3600.0
    with manager(history(T, t_end), tmp_path_factory.mktemp(request.param)) as proc:
        yield proc.url, T, t_end


def test_finished_job_vectors_on_a_real_server(loaded):
    url, T, t_end = loaded
    client = PrometheusClient(url)
    df = fetch_finished_jobs(client, T, t_end)
    assert df.attrs["queries"] == 26 == client.queries_issued
    assert df.attrs["failed_queries"] == 0
    assert list(df["job_id"]) == ["101"]
    a = df.iloc[0]
    assert a["start_time"] == T + 600 and a["user"] == "alice" and a["nodelist"] == "c1"
    assert a["health_score"] == pytest.approx(0.8125)
    assert a["used_gpu"] == 2 and a["had_swap"] == 0.0
    assert a["total_write_gb"] == pytest.approx(1.02) and a["nfs_ratio"] == pytest.approx(1.2e8 / 1.02e9)
    assert a["write_rate_mbps"] == pytest.approx(12.0)
    assert a["avg_iowait"] == pytest.approx(0.2) and a["peak_iowait"] == pytest.approx(0.3)
    assert a["device_util"] == pytest.approx(0.4)  # busiest device, not the idle loop device
    assert a["swap_activity"] == pytest.approx(150.0)  # in + out
    assert math.isnan(a["memory_pressure"])


def test_active_jobs_on_a_real_server(loaded):
    url, T, t_end = loaded
    client = PrometheusClient(url)
    df = fetch_active_jobs(client, t_end)
    assert df.attrs["queries"] == 23 == client.queries_issued
    assert df.attrs["failed_queries"] == 0
    assert list(df["job_id"]) == ["202", "201"]
    r = df.set_index("job_id").loc["201"]
    assert r["state"] == "RUNNING" and r["elapsed_s"] == 1800
    assert r["cpu_efficiency"] == pytest.approx(0.5)
    assert r["memory_efficiency"] == pytest.approx((1e9 + 5e5 * 1800) / 8e9)
    assert r["total_write_gb"] == pytest.approx(3.6)
    assert r["write_rate_mbps"] == pytest.approx(2.0)
    assert r["avg_iowait"] == pytest.approx(0.25)
    assert r["mem_slope_bytes_per_s"] == pytest.approx(5e5, rel=1e-6)
