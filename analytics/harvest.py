"""Harvest finished and active jobs with their feature vectors from Prometheus, in bulk (DESIGN.md principle 6).

Both functions cost a fixed number of queries whatever the number of jobs or nodes: one instant query per per-job
metric (all jobs at once) and one range query per node metric (all nodes at once, over the union of the jobs'
windows); the per-job slicing happens here with numpy/pandas (:mod:`nomade.analytics.job_vectors`).

Query plan of :func:`fetch_finished_jobs` (window ``[start, end]``, evaluated at ``end``; ``S = end - start``;
``L = end - t0`` with ``t0`` the earliest start of those jobs, clipped to ``max_job_window``):

* 1 x ``last_over_time(nomade_slurm_job_info[S])``: the jobs the accounting collector listed in the window;
* 13 x ``last_over_time(nomade_slurm_job_<g>[S])`` for the per-job sacct gauges (:data:`FINISHED_GAUGES`);
* 3 instants over ``[L]``: ``sum by (job_id, fs) (max_over_time(nomade_job_io_written_bytes_total[L]))``,
  ``sum by (job_id) (max_over_time(nomade_job_usage_swap_bytes[L]))``,
  ``count by (job_id) (last_over_time(nomade_job_usage_gpu_info[L]))``;
* 1 range query of the raw ``nomade_job_io_written_bytes_total`` over ``[t0, end]`` (peak write rate);
* 8 range queries of the node metrics of :data:`~nomade.analytics.job_vectors.NODE_FEATURES` over ``[t0, end]``
  (``avg_iowait`` and ``peak_iowait`` share one).

Total: **26 queries** when the accounting collector listed at least one job in the window, **1** when it listed
none (the rest is skipped). Jobs listed but ending outside ``[start, end]`` still cost the 26, never more.

Query plan of :func:`fetch_active_jobs` (at ``now``):

* 1 x ``nomade_slurm_queue_job_info`` and 7 x ``nomade_slurm_queue_job_<g>`` (:data:`ACTIVE_GAUGES`; the exporter's
  opt-in per-job queue series);
* 5 instants: ``sum by (job_id) (nomade_job_usage_cpu_seconds_total)``, ``sum by (job_id)
  (nomade_job_usage_memory_peak_bytes)``, ``sum by (job_id) (max_over_time(nomade_job_usage_swap_bytes[L]))``,
  ``count by (job_id) (nomade_job_usage_gpu_info)``, ``sum by (job_id, fs) (nomade_job_io_written_bytes_total)``;
* when a job runs: 1 range of the raw job I/O counter over ``[t0, now]``, 1 range of ``sum by (job_id)
  (nomade_job_usage_memory_usage_bytes)`` over ``[now - slope_window, now]`` (memory slope, fitted by
  :func:`nomade.analytics.derivatives.estimate_many`: the local-linear/quadratic slope at ``now``), and the 8 node
  range queries.

Total: **23 queries** when a job runs, **13** when every job is pending, **1** when the queue is empty.

Failure handling: a failing first query (the job list) raises (``PrometheusError``: the caller retries next
cycle); any other failing query leaves its features NaN and is counted in ``df.attrs["failed_queries"]``. Samples
without a ``job_id`` (or node label), with a non-finite value, and host lists that cannot be parsed are skipped and
counted in ``df.attrs["bad_samples"]``; jobs none of whose nodes have a series count in
``df.attrs["jobs_without_node_series"]``. ``df.attrs["queries"]`` is the number of queries this call made.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .derivatives import estimate_many
from .job_vectors import (
    NODE_FEATURES,
    VECTOR_COLUMNS,
    add_matchers,
    job_nodes,
    job_vectors,
    node_state_features,
    peak_write_rate,
)
from .promapi import PrometheusError, Sample, Series
from .traces import JOB_COLUMNS

log = logging.getLogger(__name__)

#: ``nomade_slurm_job_<suffix>`` gauge -> job-table column, read by :func:`fetch_finished_jobs`.
FINISHED_GAUGES: dict[str, str] = {
    "submit_timestamp_seconds": "submit_time",
    "start_timestamp_seconds": "start_time",
    "end_timestamp_seconds": "end_time",
    "requested_cpus": "req_cpus",
    "allocated_cpus": "alloc_cpus",
    "nodes": "req_nodes",
    "requested_gpus": "req_gpus",
    "requested_memory_bytes": "req_mem_bytes",
    "timelimit_seconds": "timelimit_s",
    "elapsed_seconds": "elapsed_s",
    "cpu_seconds": "cpu_s",
    "max_rss_bytes": "max_rss_bytes",
    "exit_code": "exit_code",
}
#: ``nomade_slurm_queue_job_<suffix>`` gauge -> job-table column, read by :func:`fetch_active_jobs`.
ACTIVE_GAUGES: dict[str, str] = {
    "requested_cpus": "req_cpus",
    "requested_nodes": "req_nodes",
    "requested_memory_bytes": "req_mem_bytes",
    "requested_gpus": "req_gpus",
    "timelimit_seconds": "timelimit_s",
    "submit_timestamp_seconds": "submit_time",
    "start_timestamp_seconds": "start_time",
}
_INFO_TEXT = ("user", "account", "partition", "job_name", "state", "failure_class", "nodelist")
#: Extra output columns beyond JOB_COLUMNS and VECTOR_COLUMNS.
OUTPUT_EXTRA = ("nodelist", "alloc_cpus")


class QueryClient(Protocol):
    """What the harvest needs of :class:`nomade.analytics.promapi.PrometheusClient`."""

    def query(self, expr: str, time: float | None = None) -> list[Sample]: ...  # noqa: D102

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]: ...  # noqa: D102


class _Run:
    """Counts queries, failed queries and bad samples of one harvest call."""

    def __init__(self, client: QueryClient, matchers: str) -> None:
        self.client = client
        self.matchers = matchers
        self.queries = 0
        self.failed = 0
        self.bad = 0

    def sel(self, metric: str) -> str:
        return add_matchers(metric, self.matchers)

    def instant(self, expr: str, at: float, required: bool = False) -> list[Sample]:
        self.queries += 1
        try:
            return list(self.client.query(expr, time=at))
        except PrometheusError as exc:
            if required:
                raise
            self.failed += 1
            log.warning("harvest query failed, its features stay NaN: %s: %s", expr, exc)
            return []

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        self.queries += 1
        try:
            return list(self.client.query_range(expr, start, end, step))
        except PrometheusError as exc:
            self.failed += 1
            log.warning("harvest range query failed, its features stay NaN: %s: %s", expr, exc)
            return []

    def by_job(self, samples: list[Sample], extra: str | None = None) -> dict[Any, float]:
        """job_id (or (job_id, extra label)) -> value; bad samples counted and skipped; duplicates: the last wins."""
        out: dict[Any, float] = {}
        for s in samples:
            job = s.labels.get("job_id")
            val = s.value
            if not job or not math.isfinite(val) or (extra is not None and extra not in s.labels):
                self.bad += 1
                continue
            out[(job, s.labels[extra]) if extra is not None else job] = float(val)
        return out

    def attrs(self, df: pd.DataFrame, **more: Any) -> pd.DataFrame:
        df.attrs.update(queries=self.queries, failed_queries=self.failed, bad_samples=self.bad, **more)
        return df


def _dur(seconds: float) -> str:
    """A PromQL duration of at least one second."""
    return f"{max(1, math.ceil(seconds))}s"


def _empty() -> pd.DataFrame:
    cols = [*JOB_COLUMNS, *OUTPUT_EXTRA, *VECTOR_COLUMNS]
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c in (*_INFO_TEXT, "job_id", "dataset") else float) for c in cols}
    )


def _info_rows(run: _Run, samples: list[Sample], states: tuple[str, ...] | None) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for s in samples:
        job = s.labels.get("job_id")
        if not job:
            run.bad += 1
            continue
        if states is not None and s.labels.get("state") not in states:
            continue
        rows[job] = {"job_id": job, **{k: s.labels.get(k) or None for k in _INFO_TEXT}}
    return rows


def _fs_totals(values: Mapping[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for (job, fs), v in values.items():
        out.setdefault(job, {})[fs] = out.get(job, {}).get(fs, 0.0) + v
    return out


def _node_series(run: _Run, series: list[Series], node_label: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for s in series:
        node = s.labels.get(node_label)
        if not node or not s.points:
            run.bad += 1
            continue
        t = np.array([p[0] for p in s.points], dtype=float)
        v = np.array([p[1] for p in s.points], dtype=float)
        if node in out:  # several series for one node despite the server-side aggregation: pool the points
            t = np.concatenate([out[node][0], t])
            v = np.concatenate([out[node][1], v])
        out[node] = (t, v)
    return out


def _vectors(
    run: _Run,
    df: pd.DataFrame,
    ends: np.ndarray,
    t0: float,
    t_end: float,
    step: float,
    node_label: str,
    node_map: Mapping[str, str] | None,
    instants: dict[str, Any],
) -> tuple[pd.DataFrame, int]:
    """Node range queries + job I/O range -> the vector columns; returns (vectors, jobs without node series)."""
    nodes: list[list[str]] = []
    for nl in df["nodelist"]:
        try:
            nodes.append(job_nodes(nl, node_map))
        except ValueError:
            run.bad += 1
            nodes.append([])
    starts = df["start_time"].to_numpy(dtype=float)
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    fetched: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for f in NODE_FEATURES:
        expr = f.expr(node_label, run.matchers)
        if expr not in fetched:
            fetched[expr] = _node_series(run, run.range(expr, t0, t_end, step), node_label)
        series[f.name] = fetched[expr]
    stats = node_state_features(nodes, starts, ends, series, step)
    covered = stats.notna().any(axis=1).to_numpy()
    io = run.range(run.sel("nomade_job_io_written_bytes_total"), t0, t_end, step)
    io_series = []
    wanted = set(df["job_id"])
    for s in io:
        job = s.labels.get("job_id")
        if not job or not s.points:
            run.bad += 1
            continue
        if job not in wanted:  # other jobs' counters in the same range (e.g. still running): not ours
            continue
        io_series.append((job, np.array([p[0] for p in s.points]), np.array([p[1] for p in s.points])))
    # the counter counts from 0 at the job start only when the range reaches back to it (not for clipped long jobs)
    start_by_job = {j: s0 for j, s0 in zip(df["job_id"], starts, strict=True) if s0 >= t0}
    peak = peak_write_rate(io_series, starts=start_by_job)
    vec = job_vectors(df, node_stats=stats.set_axis(df.index), peak_write_bytes_per_s=peak, **instants)
    return vec, int((~covered).sum())


def fetch_finished_jobs(
    client: QueryClient,
    start: float,
    end: float,
    *,
    node_label: str = "node",
    node_map: Mapping[str, str] | None = None,
    step: float = 60.0,
    max_job_window: float = 2 * 86400.0,
    matchers: str = "",
    dataset: str = "prometheus",
) -> pd.DataFrame:
    """Jobs that ended in ``[start, end]`` with their 19-dimension vectors, in a constant number of queries.

    Args:
        client: a :class:`~nomade.analytics.promapi.PrometheusClient` (or anything with its ``query`` and
            ``query_range``).
        start: start of the end-time window, Unix s.
        end: end of the window, Unix s (it should lag "now" by a scrape or two so that the accounting collector has
            listed the jobs; overlapping windows are harmless for an upserting store).
        node_label: label that names the machine on node-mode series.
        node_map: SLURM NodeName -> value of ``node_label``; key ``"*"`` = default for every node; identity else.
        step: range-query resolution, s (the node figures' grid; see ``job_vectors`` "Window and nodes").
        max_job_window: node and I/O ranges start at most this long before ``end``: longer jobs are described by
            their last ``max_job_window`` seconds (bounds the points fetched: 2 days at a 60 s step are 2,880 points
            per series).
        matchers: extra label matchers added to every selector, e.g. ``cluster="a"``.
        dataset: value of the ``dataset`` column.

    Returns:
        One row per job: :data:`~nomade.analytics.traces.JOB_COLUMNS` + ``nodelist``, ``alloc_cpus`` +
        :data:`~nomade.analytics.job_vectors.VECTOR_COLUMNS`, ordered by end time; ``attrs``: ``queries``,
        ``failed_queries``, ``bad_samples``, ``jobs_without_node_series``, ``jobs_without_end_time``.

    Raises:
        ValueError: ``end < start`` or ``step <= 0``.
        PrometheusError: when the first query (the job list) fails.

    """
    if not end >= start:
        raise ValueError(f"end {end} precedes start {start}")
    if not step > 0:
        raise ValueError(f"step must be positive, got {step!r}")
    run = _Run(client, matchers)
    span = _dur(end - start)
    info = run.instant(f"last_over_time({run.sel('nomade_slurm_job_info')}[{span}])", end, required=True)
    rows = _info_rows(run, info, None)
    if not rows:
        return run.attrs(_empty(), jobs_without_node_series=0, jobs_without_end_time=0)
    gauges = {
        col: run.by_job(run.instant(f"last_over_time({run.sel('nomade_slurm_job_' + g)}[{span}])", end))
        for g, col in FINISHED_GAUGES.items()
    }
    df = pd.DataFrame(list(rows.values()))
    for col, vals in gauges.items():
        df[col] = df["job_id"].map(lambda j, vals=vals: vals.get(j, math.nan)).astype(float)
    no_end = int(df["end_time"].isna().sum())
    df = df[(df["end_time"] >= start) & (df["end_time"] <= end)].reset_index(drop=True)
    if df.empty:
        return run.attrs(_empty(), jobs_without_node_series=0, jobs_without_end_time=no_end)
    df["req_cpus"] = df["req_cpus"].fillna(df["alloc_cpus"])
    # start unknown (sacct lists no start for some cancelled jobs): the window opens at end - elapsed
    df["start_time"] = df["start_time"].fillna(df["end_time"] - df["elapsed_s"])
    df["failed"] = (df["failure_class"] != "success").astype(bool)
    df["dataset"] = dataset
    t0 = float(np.nanmin(np.r_[df["start_time"].to_numpy(dtype=float), end]))
    t0 = max(t0, end - max_job_window)
    t0 = math.floor(t0 / step) * step  # grid on multiples of step: identical on Prometheus and VictoriaMetrics
    lookback = _dur(end - t0)
    io = run.by_job(
        run.instant(
            f"sum by (job_id, fs) (max_over_time({run.sel('nomade_job_io_written_bytes_total')}[{lookback}]))", end
        ),
        extra="fs",
    )
    swap = run.by_job(
        run.instant(f"sum by (job_id) (max_over_time({run.sel('nomade_job_usage_swap_bytes')}[{lookback}]))", end)
    )
    gpus = run.by_job(
        run.instant(f"count by (job_id) (last_over_time({run.sel('nomade_job_usage_gpu_info')}[{lookback}]))", end)
    )
    instants = {"written_by_fs": _fs_totals(io), "swap_peak_bytes": swap, "gpu_count": gpus}
    vec, uncovered = _vectors(
        run, df, df["end_time"].to_numpy(dtype=float), t0, end, step, node_label, node_map, instants
    )
    out = _assemble(df, vec)
    out = out.sort_values(["end_time", "job_id"], kind="stable").reset_index(drop=True)
    return run.attrs(out, jobs_without_node_series=uncovered, jobs_without_end_time=no_end)


def _assemble(df: pd.DataFrame, vec: pd.DataFrame) -> pd.DataFrame:
    base = df.reindex(columns=[*JOB_COLUMNS, *OUTPUT_EXTRA])
    for c in ("job_id", "dataset", *_INFO_TEXT):  # object columns with None, as the trace loaders give
        base[c] = base[c].astype(object).where(base[c].notna(), None)
    for c in VECTOR_COLUMNS:
        base[c] = vec[c].to_numpy(dtype=float)
    return base


def fetch_active_jobs(
    client: QueryClient,
    now: float,
    *,
    node_label: str = "node",
    node_map: Mapping[str, str] | None = None,
    step: float = 60.0,
    slope_window: float = 600.0,
    slope_step: float = 30.0,
    max_job_window: float = 2 * 86400.0,
    matchers: str = "",
    dataset: str = "prometheus",
    estimator: Callable[..., Any] = estimate_many,
) -> pd.DataFrame:
    """Pending and running jobs with their usage and vectors so far, in a constant number of queries.

    Needs the exporter's per-job queue series (``[collector.slurm_queue] per_job = true``).

    Args:
        client: as :func:`fetch_finished_jobs`.
        now: evaluation time, Unix s.
        node_label: as :func:`fetch_finished_jobs`.
        node_map: as :func:`fetch_finished_jobs`.
        step: as :func:`fetch_finished_jobs`.
        slope_window: memory-slope window, s: the last ``slope_window`` seconds of the job's summed
            ``nomade_job_usage_memory_usage_bytes`` (at least 4 points needed).
        slope_step: resolution of that range, s.
        max_job_window: as :func:`fetch_finished_jobs`.
        matchers: as :func:`fetch_finished_jobs`.
        dataset: as :func:`fetch_finished_jobs`.
        estimator: :func:`~nomade.analytics.derivatives.estimate_many` (replaceable in tests).

    Returns:
        One row per job in state PENDING or RUNNING: JOB_COLUMNS (``end_time``, ``exit_code``,
        ``failure_class`` NaN/None; ``failed`` NaN; for running jobs ``elapsed_s = now - start``, ``cpu_s`` = CPU
        seconds so far summed over nodes, ``max_rss_bytes`` = memory peak so far summed over nodes; NaN for pending)
        + ``nodelist``, ``alloc_cpus`` + VECTOR_COLUMNS so far (``health_score`` NaN; all NaN for pending jobs) +
        ``mem_slope_bytes_per_s`` (bytes/s at ``now``). ``attrs`` as :func:`fetch_finished_jobs`.

    Raises:
        ValueError: ``step``, ``slope_window`` or ``slope_step`` not positive.
        PrometheusError: when the first query (the job list) fails.

    """
    if not (step > 0 and slope_window > 0 and slope_step > 0):
        raise ValueError("step, slope_window and slope_step must be positive")
    run = _Run(client, matchers)
    info = run.instant(run.sel("nomade_slurm_queue_job_info"), now, required=True)
    rows = _info_rows(run, info, ("PENDING", "RUNNING"))
    if not rows:
        out = _empty()
        out["mem_slope_bytes_per_s"] = pd.Series(dtype=float)
        return run.attrs(out, jobs_without_node_series=0)
    gauges = {
        col: run.by_job(run.instant(run.sel("nomade_slurm_queue_job_" + g), now)) for g, col in ACTIVE_GAUGES.items()
    }
    # lookback of the swap maximum: from the earliest start among running jobs (known from the gauges already)
    run_starts = [gauges["start_time"].get(j, math.nan) for j, r in rows.items() if r["state"] == "RUNNING"]
    finite = [s for s in run_starts if math.isfinite(s)]
    t0 = max(min(finite), now - max_job_window) if finite else now - step
    t0 = math.floor(t0 / step) * step
    lookback = _dur(now - t0)
    cpu = run.by_job(run.instant(f"sum by (job_id) ({run.sel('nomade_job_usage_cpu_seconds_total')})", now))
    peak = run.by_job(run.instant(f"sum by (job_id) ({run.sel('nomade_job_usage_memory_peak_bytes')})", now))
    swap = run.by_job(
        run.instant(f"sum by (job_id) (max_over_time({run.sel('nomade_job_usage_swap_bytes')}[{lookback}]))", now)
    )
    gpus = run.by_job(run.instant(f"count by (job_id) ({run.sel('nomade_job_usage_gpu_info')})", now))
    io = run.by_job(
        run.instant(f"sum by (job_id, fs) ({run.sel('nomade_job_io_written_bytes_total')})", now), extra="fs"
    )
    df = pd.DataFrame(list(rows.values()))
    for col, vals in gauges.items():
        df[col] = df["job_id"].map(lambda j, vals=vals: vals.get(j, math.nan)).astype(float)
    running = (df["state"] == "RUNNING").to_numpy()
    df.loc[~running, "start_time"] = np.nan
    df["end_time"] = np.nan
    df["alloc_cpus"] = df["req_cpus"].where(running)
    df["elapsed_s"] = np.where(running, now - df["start_time"], np.nan)
    df["cpu_s"] = np.where(running, df["job_id"].map(lambda j: cpu.get(j, math.nan)).astype(float), np.nan)
    df["max_rss_bytes"] = np.where(running, df["job_id"].map(lambda j: peak.get(j, math.nan)).astype(float), np.nan)
    df["exit_code"] = np.nan
    df["failure_class"] = None
    df["failed"] = np.nan
    df["dataset"] = dataset
    vec = pd.DataFrame(np.nan, index=df.index, columns=list(VECTOR_COLUMNS))
    slope = pd.Series(np.nan, index=df.index, dtype=float)
    uncovered = 0
    if running.any():
        sub = df[running]
        ids = set(sub["job_id"])
        instants = {
            "written_by_fs": {j: v for j, v in _fs_totals(io).items() if j in ids},
            "swap_peak_bytes": swap,
            "gpu_count": gpus,
        }
        v_run, uncovered = _vectors(
            run, sub, np.full(len(sub), float(now)), t0, now, step, node_label, node_map, instants
        )
        vec.loc[sub.index, list(VECTOR_COLUMNS)] = v_run.to_numpy()
        slope.loc[sub.index] = _mem_slopes(run, sub, now, slope_window, slope_step, estimator)
    vec["health_score"] = np.nan
    out = _assemble(df, vec)
    out["mem_slope_bytes_per_s"] = slope.to_numpy()
    out = out.sort_values(["state", "submit_time", "job_id"], kind="stable").reset_index(drop=True)
    return run.attrs(out, jobs_without_node_series=uncovered)


def _mem_slopes(
    run: _Run, sub: pd.DataFrame, now: float, window: float, step: float, estimator: Callable[..., Any]
) -> np.ndarray:
    """Slope at ``now`` of each running job's summed memory usage over the last ``window`` s (NaN if too short)."""
    t_start = math.floor((now - window) / step) * step
    series = run.range(f"sum by (job_id) ({run.sel('nomade_job_usage_memory_usage_bytes')})", t_start, now, step)
    triples = []
    for s in series:
        job = s.labels.get("job_id")
        if not job or not s.points:
            run.bad += 1
            continue
        triples.append((job, np.array([p[0] for p in s.points]), np.array([p[1] for p in s.points])))
    est = estimator(triples, now=float(now), window=float(window), min_points=4) if triples else []
    by_job = {job: (e.slope if e is not None else math.nan) for job, e in est}
    return sub["job_id"].map(lambda j: by_job.get(j, math.nan)).to_numpy(dtype=float)
