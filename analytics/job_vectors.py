"""The seed's 19-dimension job feature vector: definitions and the pure computations behind them (issue 5).

The vector describes one job: its outcome and efficiency (sacct), its own I/O (``nomade_job_io_*``, from
``/proc/<pid>/io`` of the job's processes), and the state of the nodes it ran on while it ran (the iostat, mpstat
and vmstat figures the node exporter publishes), in the seed's order (:data:`VECTOR_COLUMNS`). Prometheus queries
live in :mod:`nomade.analytics.harvest`; this module only turns fetched arrays into features, so the same code
serves finished jobs, running jobs ("so far") and traces (which have the sacct part only).

Window and nodes
================
A job's window is ``[start, end]`` (Unix s; ``end = now`` for running jobs). Node figures come from a range query
on the grid ``t0 + k*step``; a grid value is the exporter's last sample at or before ``t``, which describes the
sampling interval *before* it. The grid points used for a job are therefore those whose preceding step overlaps the
job: ``start < t < end + step`` (every job with ``end > start`` gets at least one point). The job's nodes are its
SLURM ``nodelist`` expanded (``c[01-02]`` -> ``c01, c02``) and mapped to the ``node`` label of node-mode series by
``node_map`` (a NodeName -> label value dict, ``"*"`` the default for every node; identity when absent). A node
without samples in the window does not take part; a job with none of its nodes sampled gets NaN.

Features
========
"time" = aggregation over the window's grid points on one node, "nodes" = then over the job's nodes.
Normalisation = what :func:`normalised` applies before distances or neural models (stored values are raw);
consumers then standardise (z-score) on the training split.

================  ===========================================================  =============  ==================
feature           source and aggregation                                       unit           normalisation
================  ===========================================================  =============  ==================
health_score      TARGET, never an input: :func:`health_score` (below)        0-1            none
cpu_efficiency    ``cpu_s / (elapsed_s * cpus)``, cpus = ``alloc_cpus`` when   ratio          clip to [0, 1]
                  given else ``req_cpus``; finished: sacct TotalCPU
                  (``nomade_slurm_job_cpu_seconds``), Elapsed, AllocCPUS;
                  running: ``sum`` over nodes of
                  ``nomade_job_usage_cpu_seconds_total`` / ((now - start) *
                  requested CPUs) (seff's "CPU Efficiency")
memory_efficiency ``max_rss_bytes / req_mem_bytes``; finished: sacct max step  ratio          clip to [0, 1]
                  MaxRSS (``nomade_slurm_job_max_rss_bytes``) / total ReqMem
                  (``..._requested_memory_bytes``); running: ``sum`` over
                  nodes of ``nomade_job_usage_memory_peak_bytes`` / requested
                  memory (seff's "Memory Efficiency"; may exceed 1)
used_gpu          GPU COUNT, not a flag (the seed: "vram_gb > 0 implies GPU    GPUs           log1p
                  used", no separate boolean): number of
                  ``nomade_job_usage_gpu_info{job_id,gpu}`` series of the job
                  (GPUs its cgroups may use, summed over nodes) when present,
                  else the sacct/squeue GPU request (``req_gpus``, TRES
                  gres/gpu). Per-job VRAM is not exported, so the count stands
                  in for it; 0 = no GPU
had_swap          1.0 when the job's cgroup swap (``max_over_time`` of        0/1            none
                  ``nomade_job_usage_swap_bytes``, summed over nodes) was ever
                  > 0 in the window, 0.0 when always 0, NaN when unmeasured
total_write_gb    bytes the job's processes sent to storage: per node and      GB (1e9 B)     log1p
                  ``fs``, ``max_over_time`` of the counter
                  ``nomade_job_io_written_bytes_total`` (it starts at 0 with
                  the job and never decreases), summed over nodes and fs
write_rate_mbps   PEAK write throughput: the counter's increase between        MB/s (1e6 B/s) log1p
                  consecutive grid points (and from the job start to its first
                  point, counting from 0), divided by the elapsed time, summed
                  over the job's series (nodes x fs) per interval, max over
                  intervals; a counter that went down restarted from 0. Jobs
                  with no interval (shorter than a step): the mean rate
                  ``total / elapsed`` (the only interval observed)
nfs_ratio         network share of written bytes: ``fs="network"`` /           ratio          none
                  (``local`` + ``network``); NaN when nothing was written or
                  when bytes are unattributed (``fs="unknown"``)
runtime_minutes   ``elapsed_s / 60`` (sacct Elapsed; running: now - start)    minutes        log1p
write_intensity   ``total_write_gb / runtime_minutes``, mean write rate; NaN   GB/min         log1p
                  for a zero runtime
avg_iowait        ``nomade_cpu_mode_ratio{mode="iowait"}`` (mpstat %iowait of  ratio 0-1      none
                  all CPUs / 100): time mean, nodes mean
peak_iowait       same series: time max, nodes max                             ratio 0-1      none
device_util       ``nomade_disk_utilization_ratio`` (iostat %util / 100) of    ratio 0-1      none
                  the node's BUSIEST device at each grid point (``max by
                  (node)``: idle loop/optical devices would dilute a mean;
                  jobs mostly hit one device): time mean, nodes mean
avg_core_busy     ``nomade_cpu_busy_average_ratio`` (mean per-core busy,       ratio 0-1      none
                  mpstat 1 - (%idle + %iowait)/100): time mean, nodes mean
imbalance_ratio   ``nomade_cpu_imbalance_ratio`` (population std / mean of     ratio >= 0     none
                  per-core busy): time mean, nodes mean
max_core_busy     ``nomade_cpu_busy_max_ratio`` (busiest core): time mean      ratio 0-1      none
                  (a max over time is ~1 for nearly every job), nodes max
memory_pressure   ``nomade_memory_pressure_ratio`` (PSI memory "some" share    ratio 0-1      none
                  of the interval): time mean, nodes mean; NaN without PSI
swap_activity     ``nomade_memory_swap_in_bytes_per_second +                   bytes/s        log1p
                  nomade_memory_swap_out_bytes_per_second`` (vmstat si + so):
                  time max, nodes max (the seed: "peak swap in+out")
procs_blocked     ``nomade_memory_procs_blocked`` (vmstat "b"): time mean,     tasks          log1p
                  nodes mean
================  ===========================================================  =============  ==================

Node figures are whole-node state, not the job's own: on a shared node they include other jobs' load (the seed's
"time-correlated system state"). Series with several values per node are reduced server-side per node as written
(``avg by (node)`` otherwise, which also folds duplicate scrapes from HA Prometheus pairs).

Health score (the target)
=========================
A continuous outcome in [0, 1] (the seed: "0 (catastrophic) -> 1 (perfect)", alert threshold 0.5):

* ``success``: ``0.5 + 0.5 * e`` with ``e`` the mean of the available clipped efficiencies
  ``clip(cpu_efficiency, 0, 1)`` and ``clip(memory_efficiency, 0, 1)``; ``e = 0.5`` when neither is known (the
  middle of the success band: the outcome is known, the quality is not). A job that finished and used what it
  asked for is "perfect"; one that held 16 cores and used one is healthy but wasteful.
* failures get a fixed credit by class (:data:`HEALTH_CREDIT`), all below 0.5, so ``health < 0.5`` exactly when
  ``failed`` (the seed's ``health_threshold = 0.5`` separates outcomes): 0.4 ``cancelled``/``preempted`` (stopped
  from outside; the work may have been fine), 0.3 ``timeout``/``deadline`` (ran until its limit; results unknown,
  checkpointing jobs may keep them), 0.2 ``failed`` (the program reported failure: some output may exist), 0.1
  ``signal`` (killed by an unexplained signal), 0.0 ``out_of_memory``, ``segfault``, ``abort``, ``node_fail``,
  ``boot_fail`` (the run's work is lost: "catastrophic").
* ``other`` (non-terminal or unknown state) and a missing class: NaN.

The credits are a stated ordinal convention (how much of a run's work is typically usable), not a measurement;
binary models use ``failed``, and the health score serves similarity views and regression targets. It depends on
the outcome and end-of-job efficiency, so it is never an input feature (:data:`INPUT_COLUMNS` excludes it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nomade.exporter.parsers.slurm_units import expand_hostlist

#: The seed's 19 names, in the seed's order.
VECTOR_COLUMNS: tuple[str, ...] = (
    "health_score",
    "cpu_efficiency",
    "memory_efficiency",
    "used_gpu",
    "had_swap",
    "total_write_gb",
    "write_rate_mbps",
    "nfs_ratio",
    "runtime_minutes",
    "write_intensity",
    "avg_iowait",
    "peak_iowait",
    "device_util",
    "avg_core_busy",
    "imbalance_ratio",
    "max_core_busy",
    "memory_pressure",
    "swap_activity",
    "procs_blocked",
)
#: The 18 columns usable as model inputs: everything but the target ``health_score``.
INPUT_COLUMNS: tuple[str, ...] = tuple(c for c in VECTOR_COLUMNS if c != "health_score")

#: Health credit of each failure class (module docstring); ``success`` is computed from the efficiencies.
HEALTH_CREDIT: dict[str, float] = {
    "cancelled": 0.4,
    "preempted": 0.4,
    "timeout": 0.3,
    "deadline": 0.3,
    "failed": 0.2,
    "signal": 0.1,
    "out_of_memory": 0.0,
    "segfault": 0.0,
    "abort": 0.0,
    "node_fail": 0.0,
    "boot_fail": 0.0,
}

#: Columns that :func:`normalised` passes through ``log1p`` (heavy-tailed, >= 0); the ratios are clipped instead.
LOG1P_COLUMNS: tuple[str, ...] = (
    "used_gpu",
    "total_write_gb",
    "write_rate_mbps",
    "runtime_minutes",
    "write_intensity",
    "swap_activity",
    "procs_blocked",
)
_CLIP01 = ("cpu_efficiency", "memory_efficiency")

GB = 1e9
MB = 1e6


@dataclass(frozen=True)
class NodeFeature:
    """How one node-state feature is computed (module docstring table).

    Attributes:
        name: the feature (one of :data:`VECTOR_COLUMNS`).
        terms: metric selectors (``name{matchers}``) added together server-side (e.g. swap in + out).
        by: server-side aggregation over one node's series (``avg``, ``max``, ``sum``).
        over_time: ``mean`` or ``max`` over the job window's grid points.
        over_nodes: ``mean`` or ``max`` over the job's nodes.

    """

    name: str
    terms: tuple[str, ...]
    by: str
    over_time: str
    over_nodes: str

    def expr(self, node_label: str = "node", matchers: str = "") -> str:
        """The PromQL range-query expression: one series per ``node_label`` value.

        ``matchers`` are added to each selector (e.g. ``cluster="a"``).
        """
        return f"{self.by} by ({node_label}) ({' + '.join(add_matchers(t, matchers) for t in self.terms)})"


NODE_FEATURES: tuple[NodeFeature, ...] = (
    NodeFeature("avg_iowait", ('nomade_cpu_mode_ratio{mode="iowait"}',), "avg", "mean", "mean"),
    NodeFeature("peak_iowait", ('nomade_cpu_mode_ratio{mode="iowait"}',), "avg", "max", "max"),
    NodeFeature("device_util", ("nomade_disk_utilization_ratio",), "max", "mean", "mean"),
    NodeFeature("avg_core_busy", ("nomade_cpu_busy_average_ratio",), "avg", "mean", "mean"),
    NodeFeature("imbalance_ratio", ("nomade_cpu_imbalance_ratio",), "avg", "mean", "mean"),
    NodeFeature("max_core_busy", ("nomade_cpu_busy_max_ratio",), "max", "mean", "max"),
    NodeFeature("memory_pressure", ("nomade_memory_pressure_ratio",), "avg", "mean", "mean"),
    NodeFeature(
        "swap_activity",
        ("nomade_memory_swap_in_bytes_per_second", "nomade_memory_swap_out_bytes_per_second"),
        "avg",
        "max",
        "max",
    ),
    NodeFeature("procs_blocked", ("nomade_memory_procs_blocked",), "avg", "mean", "mean"),
)


def add_matchers(selector: str, matchers: str) -> str:
    """``name{a="b"}`` + ``c="d"`` -> ``name{a="b",c="d"}``; ``matchers`` empty -> unchanged."""
    if not matchers:
        return selector
    if selector.endswith("}"):
        return selector[:-1] + ("," if not selector.endswith("{}") else "") + matchers + "}"
    return f"{selector}{{{matchers}}}"


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=df.index, dtype=float)


def _efficiencies(jobs: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(cpu_efficiency, memory_efficiency) from columns of that name, else from the sacct columns."""
    el = _col(jobs, "elapsed_s")
    cpus = _col(jobs, "alloc_cpus").fillna(_col(jobs, "req_cpus"))
    cpu = _col(jobs, "cpu_s") / (el * cpus).where((el > 0) & (cpus > 0))
    mem_req = _col(jobs, "req_mem_bytes")
    mem = _col(jobs, "max_rss_bytes") / mem_req.where(mem_req > 0)
    if "cpu_efficiency" in jobs.columns:
        cpu = _col(jobs, "cpu_efficiency").fillna(cpu)
    if "memory_efficiency" in jobs.columns:
        mem = _col(jobs, "memory_efficiency").fillna(mem)
    return cpu, mem


def health_score(jobs: pd.DataFrame) -> pd.Series:
    """The continuous health target in [0, 1] (formula and reasons in the module docstring).

    Args:
        jobs: job table with ``failure_class``; the success term reads ``cpu_efficiency``/``memory_efficiency``
            when present, else ``cpu_s``, ``elapsed_s``, ``alloc_cpus``/``req_cpus``, ``max_rss_bytes``,
            ``req_mem_bytes``.

    Returns:
        float Series on ``jobs.index``; NaN for class ``other``, unknown classes and missing classes.

    Raises:
        ValueError: when ``jobs`` has no ``failure_class`` column.

    """
    if "failure_class" not in jobs.columns:
        raise ValueError("health_score needs the column 'failure_class'")
    fc = jobs["failure_class"].astype(object)
    credit = fc.map(lambda c: HEALTH_CREDIT.get(c, math.nan) if isinstance(c, str) else math.nan).astype(float)
    cpu, mem = _efficiencies(jobs)
    both = pd.concat([cpu.clip(0, 1), mem.clip(0, 1)], axis=1)
    e = both.mean(axis=1, skipna=True).fillna(0.5)
    success = (fc == "success").to_numpy()
    out = credit.to_numpy().copy()
    out[success] = 0.5 + 0.5 * e.to_numpy()[success]
    return pd.Series(out, index=jobs.index, dtype=float, name="health_score")


def job_nodes(nodelist: object, node_map: Mapping[str, str] | None = None) -> list[str]:
    """Node-label values of a job: its SLURM host list expanded and mapped (``"*"`` = default), duplicates removed.

    Returns [] for an empty/None/``(null)`` list. Raises ValueError for a malformed host list.
    """
    if not isinstance(nodelist, str) or not nodelist.strip() or nodelist.strip() in ("(null)", "None"):
        return []
    names = expand_hostlist(nodelist)
    m = node_map or {}
    default = m.get("*")
    out: list[str] = []
    for n in names:
        v = m.get(n, default if default is not None else n)
        if v not in out:
            out.append(v)
    return out


def window_stats(
    t: np.ndarray, v: np.ndarray, starts: np.ndarray, ends: np.ndarray, step: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, max and count of ``v`` over the grid points ``start < t < end + step`` of each window.

    Args:
        t: grid times, Unix s, shape (m,), any order.
        v: values, shape (m,) (non-finite values are ignored).
        starts: window starts, shape (n,), Unix s.
        ends: window ends, shape (n,), Unix s.
        step: the range query's step, s (see "Window and nodes" in the module docstring).

    Returns:
        ``(mean, max, count)``, each shape (n,); NaN mean/max where a window holds no finite point.

    """
    t = np.asarray(t, dtype=float)
    v = np.asarray(v, dtype=float)
    ok = np.isfinite(v) & np.isfinite(t)
    order = np.argsort(t[ok], kind="stable")
    t, v = t[ok][order], v[ok][order]
    starts = np.asarray(starts, dtype=float)
    ends = np.asarray(ends, dtype=float)
    lo = np.searchsorted(t, starts, side="right")
    hi = np.searchsorted(t, ends + step, side="left")
    bad = ~(np.isfinite(starts) & np.isfinite(ends))
    hi = np.where(bad | (hi < lo), lo, hi)
    n = hi - lo
    cs = np.concatenate([[0.0], np.cumsum(v)])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, (cs[hi] - cs[lo]) / np.maximum(n, 1), np.nan)
    mx = np.array([v[a:b].max() if b > a else np.nan for a, b in zip(lo, hi, strict=True)], dtype=float)
    return mean, mx, n.astype(float)


def node_state_features(
    nodes: Sequence[Sequence[str]],
    starts: np.ndarray,
    ends: np.ndarray,
    series: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    step: float,
    features: Sequence[NodeFeature] = NODE_FEATURES,
) -> pd.DataFrame:
    """The node-state features of jobs from per-node series (module docstring: window rule and aggregations).

    Args:
        nodes: per job, its node-label values (:func:`job_nodes`), length n.
        starts: job starts, Unix s, shape (n,).
        ends: job ends (``now`` for running jobs), Unix s, shape (n,).
        series: feature name -> node-label value -> ``(t, v)`` arrays of that feature's range query.
        step: the range queries' step, s.
        features: which features to compute.

    Returns:
        DataFrame with n rows (positional index) and one column per feature; NaN where no node of the job has a
        finite point in the window, or where ``series`` lacks the feature.

    """
    n = len(nodes)
    starts = np.asarray(starts, dtype=float)
    ends = np.asarray(ends, dtype=float)
    job_idx = np.array([i for i, ns in enumerate(nodes) for _ in ns], dtype=np.int64)
    node_of = [nd for ns in nodes for nd in ns]
    out = pd.DataFrame(index=range(n))
    for f in features:
        by_node = series.get(f.name)
        vals = np.full(len(job_idx), np.nan)
        if by_node is not None and len(job_idx):
            node_arr = np.array(node_of, dtype=object)
            for nd, (t, v) in by_node.items():
                rows = np.flatnonzero(node_arr == nd)
                if not len(rows):
                    continue
                mean, mx, _ = window_stats(t, v, starts[job_idx[rows]], ends[job_idx[rows]], step)
                vals[rows] = mean if f.over_time == "mean" else mx
        col = np.full(n, np.nan)
        if len(job_idx):
            agg = pd.Series(vals).groupby(job_idx).agg("mean" if f.over_nodes == "mean" else "max")
            col[agg.index.to_numpy()] = agg.to_numpy()
        out[f.name] = col
    return out


def peak_write_rate(
    series: Sequence[tuple[str, np.ndarray, np.ndarray]], starts: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Peak write throughput per job, bytes/s, from the raw ``nomade_job_io_written_bytes_total`` range series.

    Args:
        series: ``(job_id, t, v)`` per series (one per node and ``fs``), counter values in bytes on the range grid.
        starts: job start times; when given, the interval from the start to a series' first point counts too (the
            counter starts at 0 with the job).

    Returns:
        job_id -> max over intervals of the summed per-series increase / interval length; jobs without any
        interval are absent. A decrease is a counter restart: the increase is then the new value.

    """
    parts: list[pd.DataFrame] = []
    for job, t, v in series:
        t = np.asarray(t, dtype=float)
        v = np.asarray(v, dtype=float)
        ok = np.isfinite(t) & np.isfinite(v)
        t, v = t[ok], v[ok]
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        s0 = (starts or {}).get(job, math.nan)
        if np.isfinite(s0) and len(t) and t[0] > s0:
            t = np.concatenate([[s0], t])
            v = np.concatenate([[0.0], v])
        if len(t) < 2:
            continue
        dv = np.diff(v)
        dv = np.where(dv < 0, v[1:], dv)
        dt = np.diff(t)
        keep = dt > 0
        parts.append(pd.DataFrame({"job": job, "t": t[1:][keep], "rate": dv[keep] / dt[keep]}))
    if not parts:
        return {}
    df = pd.concat(parts, ignore_index=True)
    per_t = df.groupby(["job", "t"], sort=False)["rate"].sum()
    return {str(k): float(x) for k, x in per_t.groupby(level=0).max().items()}


def job_vectors(
    jobs: pd.DataFrame,
    *,
    node_stats: pd.DataFrame | None = None,
    written_by_fs: Mapping[str, Mapping[str, float]] | None = None,
    peak_write_bytes_per_s: Mapping[str, float] | None = None,
    swap_peak_bytes: Mapping[str, float] | None = None,
    gpu_count: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """The 19 :data:`VECTOR_COLUMNS` of each job (module docstring for each definition).

    Args:
        jobs: job table (``nomade.analytics.traces.JOB_COLUMNS``; ``alloc_cpus`` used when present). With nothing
            else given (a trace), the sacct-derived columns are filled and the rest is NaN.
        node_stats: :func:`node_state_features` output, positionally aligned with ``jobs``.
        written_by_fs: job_id -> {fs: bytes written} (``local``, ``network``, ``unknown``).
        peak_write_bytes_per_s: job_id -> peak write rate, bytes/s (:func:`peak_write_rate`).
        swap_peak_bytes: job_id -> highest cgroup swap use, bytes.
        gpu_count: job_id -> GPUs in the job's cgroups.

    Returns:
        float DataFrame on ``jobs.index`` with exactly :data:`VECTOR_COLUMNS`.

    """
    out = pd.DataFrame(index=jobs.index)
    ids = jobs["job_id"].astype(str) if "job_id" in jobs.columns else pd.Series("", index=jobs.index)

    def by_id(m: Mapping[str, float] | None) -> pd.Series:
        if m is None:
            return pd.Series(np.nan, index=jobs.index, dtype=float)
        return ids.map(lambda j: m.get(j, math.nan)).astype(float)

    cpu, mem = _efficiencies(jobs)
    el = _col(jobs, "elapsed_s")
    out["health_score"] = health_score(jobs) if "failure_class" in jobs.columns else np.nan
    out["cpu_efficiency"] = cpu
    out["memory_efficiency"] = mem
    out["used_gpu"] = by_id(gpu_count).fillna(_col(jobs, "req_gpus"))
    swap = by_id(swap_peak_bytes)
    out["had_swap"] = np.where(swap.isna(), np.nan, (swap > 0).astype(float))
    if written_by_fs is not None:
        local = ids.map(lambda j: written_by_fs.get(j, {}).get("local", 0.0)).astype(float)
        net = ids.map(lambda j: written_by_fs.get(j, {}).get("network", 0.0)).astype(float)
        unk = ids.map(lambda j: written_by_fs.get(j, {}).get("unknown", 0.0)).astype(float)
        seen = ids.map(lambda j: j in written_by_fs)
        total = (local + net + unk).where(seen)
        attributed = (local + net).where(seen & (unk == 0))
        out["total_write_gb"] = total / GB
        out["nfs_ratio"] = net.where(seen) / attributed.where(attributed > 0)
    else:
        total = pd.Series(np.nan, index=jobs.index)
        out["total_write_gb"] = np.nan
        out["nfs_ratio"] = np.nan
    runtime = el / 60.0
    mean_rate = total / el.where(el > 0)
    out["write_rate_mbps"] = by_id(peak_write_bytes_per_s).fillna(mean_rate) / MB
    out["runtime_minutes"] = runtime
    out["write_intensity"] = out["total_write_gb"] / runtime.where(runtime > 0)
    for f in NODE_FEATURES:
        if node_stats is not None and f.name in node_stats.columns:
            out[f.name] = node_stats[f.name].to_numpy(dtype=float)
        else:
            out[f.name] = np.nan
    return out[list(VECTOR_COLUMNS)].astype(float)


def normalised(vectors: pd.DataFrame) -> pd.DataFrame:
    """Apply the "normalisation" column of the module docstring to the columns of ``vectors`` that it knows.

    ``log1p`` of the heavy-tailed counts and amounts (:data:`LOG1P_COLUMNS`, negative values clipped to 0 first),
    clip of the efficiencies to [0, 1]; other columns unchanged; NaN stays NaN. Standardising (z-score on the
    training split) is left to the consumer.
    """
    out = vectors.copy()
    for c in LOG1P_COLUMNS:
        if c in out.columns:
            out[c] = np.log1p(pd.to_numeric(out[c], errors="coerce").astype(float).clip(lower=0))
    for c in _CLIP01:
        if c in out.columns:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float).clip(0, 1)
    return out
