"""Per-job features for job-failure prediction from the shared job-table schema (issue 5).

Input is the shared job table (one row per finished job; see ``nomade.analytics.traces``): ``job_id, user,
account, partition, job_name, submit_time, start_time, end_time`` (Unix s), ``req_cpus, req_nodes, req_gpus,
req_mem_bytes, timelimit_s, elapsed_s, cpu_s, max_rss_bytes, state, exit_code, failure_class, failed, dataset``.
Missing columns are treated as all-NaN, so every dataset yields the same feature columns (absent beats wrong:
NaN is left as NaN; ``HistGradientBoostingClassifier`` handles it natively).

Submit-time features (:func:`submit_time_features`)
===================================================
Only what the scheduler knows when the job is submitted. ``elapsed_s``, ``state``, ``exit_code``, ``cpu_s``,
``max_rss_bytes``, ``start_time`` and ``end_time`` of the job itself are NEVER used.

============================  =================================================================================
feature                       source, unit
============================  =================================================================================
log_req_cpus                  ``log1p(req_cpus)``; req_cpus = AllocCPUS/ReqCPUS (SWF req_procs), count
log_req_nodes                 ``log1p(req_nodes)``; count
log_req_gpus                  ``log1p(req_gpus)``; count (GRES gpu)
log_req_mem_bytes             ``log1p(req_mem_bytes)``; per-job total ReqMem, bytes
log_req_mem_per_cpu_bytes     ``log1p(req_mem_bytes / req_cpus)``; bytes per CPU
log_timelimit_s               ``log1p(timelimit_s)``; Timelimit, seconds (NaN = unlimited or unknown)
timelimit_unlimited           1.0 when ``timelimit_s`` is NaN, else 0.0
part_<name> / part_other      one-hot of the top-k partitions (by job count in the frame given, or the list
                              passed in ``partitions``), every other partition -> ``part_other``
submit_hour                   hour of day of ``submit_time`` in UTC (traces carry no site time zone), 0-23
submit_weekday                weekday of ``submit_time`` in UTC, 0 = Monday
user_past_jobs                number of the same user's jobs that ENDED strictly before this job's submit, count
user_past_failures            how many of those failed (``failed`` column), count
user_past_fail_rate           smoothed past failure rate, ratio 0-1 (see "Smoothing" below)
user_prev_failed              outcome (1.0 failed / 0.0 ok) of the same user's most recently ENDED job before
                              this submit; NaN if none
userjob_past_jobs             as ``user_past_jobs`` for the same (user, job_name) pair, count
userjob_prev_failed           as ``user_prev_failed`` for the same (user, job_name): "did my last run of this
                              script fail?"; NaN if none
account_past_jobs             as ``user_past_jobs`` for the same account, count
account_past_fail_rate        smoothed past failure rate of the account, ratio 0-1
global_past_fail_rate         failure rate of ALL jobs ended before this submit (the smoothing prior), ratio 0-1
============================  =================================================================================

"Ended before submit" rule (no leakage)
---------------------------------------
A job's outcome is only known once it has ended, so the history of job *i* counts only jobs *j* with
``end_j < submit_i`` (strict). The job's own outcome can never enter: its effective end time is taken as
``max(end, start, submit)`` (corrupt rows with ``end < submit`` cannot leak), so ``end_i >= submit_i``. Jobs with an
unknown end time never enter anyone's history. Implementation per group: sort the group's jobs by end time,
cumulative-sum the failures, and ``searchsorted(ends, submit, side="left")`` gives, for every job at once, the number
of jobs that ended strictly before its submit -- O(n log n), no pairwise loop.

Smoothing
---------
``rate = (failures + m * prior) / (count + m)`` with ``m = 5`` pseudo-jobs (additive / "m-estimate" smoothing,
Cestnik 1990, "Estimating probabilities: a crucial task in machine learning", ECAI) and ``prior`` the global past
failure rate at that submit (itself computed with the same rule, so also leakage-free; before any job of the trace
has ended it falls back to ``default_prior``). A user with no past jobs
gets the prior; rows with a missing user/account get the prior and NaN counts.

Run-time features (:func:`run_time_features`)
=============================================
Adds usage-derived features. **Caveat (leakage):** on the traces these are computed from END-of-job accounting
values (TotalCPU, MaxRSS, Elapsed of the finished job). A real run-time model only sees partial values while the
job runs, so results in the "run" setting are an optimistic UPPER BOUND. ``elapsed_over_timelimit`` in particular
is close to 1 by construction for TIMEOUT jobs, and ``max_rss_over_req_mem`` for OOM kills.

============================  =================================================================================
cpu_efficiency                ``cpu_s / (elapsed_s * req_cpus)`` (seff's "CPU Efficiency"), ratio (may exceed 1
                              on traces with per-node averages)
mem_efficiency                ``max_rss_bytes / req_mem_bytes`` (seff's "Memory Efficiency"), ratio
elapsed_over_timelimit        ``elapsed_s / timelimit_s``, ratio; NaN when unlimited
log_elapsed_s                 ``log1p(elapsed_s)``, seconds
<the 18 INPUT_COLUMNS>        the seed's job vector without its target
                              (:data:`nomade.analytics.job_vectors.INPUT_COLUMNS`; definitions, sources and units
                              in that module): cpu_efficiency, memory_efficiency, used_gpu, had_swap,
                              total_write_gb, write_rate_mbps, nfs_ratio, runtime_minutes, write_intensity,
                              avg_iowait, peak_iowait, device_util, avg_core_busy, imbalance_ratio, max_core_busy,
                              memory_pressure, swap_activity, procs_blocked. A column the frame carries (harvested
                              from Prometheus, or stored) is used as is; otherwise the sacct-derived ones are
                              computed from the job table (cpu/memory efficiency, used_gpu = ``req_gpus``,
                              runtime_minutes) and the rest is NaN, so every dataset yields the same columns.
                              ``health_score`` is the target and never a feature.
mem_slope_bytes_per_s         only when the frame has that column (running-job snapshots): slope at the snapshot
                              time of the job's memory use, bytes/s (:func:`nomade.analytics.harvest
                              .fetch_active_jobs`, derivative engine)
============================  =================================================================================

``cpu_efficiency`` is both a legacy run-time feature and an INPUT_COLUMN: one column, the frame's own value when it
has one, else ``cpu_s / (elapsed_s * cpus)`` (cpus = ``alloc_cpus`` when present, else ``req_cpus``).
``mem_efficiency`` (legacy name) and ``memory_efficiency`` hold the same ratio when computed from the job table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .job_vectors import INPUT_COLUMNS, job_vectors

#: Pseudo-job count of the m-estimate smoothing of past failure rates (Cestnik 1990).
SMOOTHING_M = 5.0
#: Prior failure rate used before any job in the trace has ended.
DEFAULT_PRIOR = 0.1
#: Number of partitions one-hot encoded; the rest go to ``part_other``.
TOP_K_PARTITIONS = 8

_NUMERIC = ("req_cpus", "req_nodes", "req_gpus", "req_mem_bytes", "timelimit_s")


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as float, or all-NaN when the dataset lacks it."""
    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce").astype(float)
    return pd.Series(np.nan, index=df.index, dtype=float)


def _key(df: pd.DataFrame, cols: Sequence[str]) -> pd.Series:
    """Group key joining ``cols`` as strings; None where any part is missing (no history for that row)."""
    parts = []
    for c in cols:
        if c not in df.columns:
            return pd.Series([None] * len(df), index=df.index, dtype=object)
        s = df[c]
        parts.append(s.where(s.notna() & (s.astype(str) != ""), None))
    ok = pd.concat(parts, axis=1).notna().all(axis=1)
    joined = parts[0].astype(str)
    for p in parts[1:]:
        joined = joined + "\x1f" + p.astype(str)
    out = joined.astype(object).where(ok, None)
    return out.where(out.notna(), None)


def effective_end(df: pd.DataFrame) -> np.ndarray:
    """End time used by the history rule: ``max(end, start, submit)``, Unix s; NaN when ``end_time`` is unknown.

    Taking the max guarantees ``eff_end_i >= submit_i``, so a job can never be in its own history even on corrupt
    rows whose recorded end precedes their submit.
    """
    end = _col(df, "end_time").to_numpy()
    start = _col(df, "start_time").to_numpy()
    sub = _col(df, "submit_time").to_numpy()
    eff = np.fmax(np.fmax(end, start), sub)
    eff[np.isnan(end)] = np.nan
    return eff


def past_outcomes(
    submit: np.ndarray, end: np.ndarray, failed: np.ndarray, groups: pd.Series | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """History of jobs that ENDED strictly before each job's submit, within groups.

    Args:
        submit: submit times, shape (n,), Unix s.
        end: effective end times, shape (n,), Unix s; NaN = never enters any history.
        failed: 1.0/0.0 outcome, shape (n,); NaN outcomes are treated as never-ended (excluded).
        groups: group key per row (None/NaN = no group: counts NaN); None = one group of all rows.

    Returns:
        ``(count, failures, prev_failed)`` arrays of shape (n,): number of group jobs with ``end < submit``, how
        many of them failed, and the outcome of the latest-ending one (NaN if none). Rows without a group or with a
        NaN submit get NaN everywhere.

    Method: per group, sort by end, cumulative-sum failures, ``searchsorted(ends, submit, "left")`` (strict ``<``).

    """
    n = len(submit)
    count = np.full(n, np.nan)
    fails = np.full(n, np.nan)
    prev = np.full(n, np.nan)
    usable = ~np.isnan(end) & ~np.isnan(failed)
    if groups is None:
        codes = np.zeros(n, dtype=np.int64)
    else:
        codes, _ = pd.factorize(pd.Series(groups).reset_index(drop=True), use_na_sentinel=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for idx in np.split(order, bounds):
        if len(idx) == 0 or codes[idx[0]] < 0:
            continue
        h = idx[usable[idx]]
        h = h[np.argsort(end[h], kind="stable")]
        ends = end[h]
        cum = np.concatenate([[0.0], np.cumsum(failed[h])])
        outs = failed[h]
        s = submit[idx]
        ok = ~np.isnan(s)
        k = np.searchsorted(ends, s[ok], side="left")
        tgt = idx[ok]
        count[tgt] = k
        fails[tgt] = cum[k]
        p = np.full(len(k), np.nan)
        has = k > 0
        p[has] = outs[k[has] - 1]
        prev[tgt] = p
    return count, fails, prev


def _smoothed(fails: np.ndarray, count: np.ndarray, prior: np.ndarray, m: float) -> np.ndarray:
    """m-estimate ``(fails + m*prior) / (count + m)``; the prior alone where the counts are NaN."""
    rate = (np.nan_to_num(fails) + m * prior) / (np.nan_to_num(count) + m)
    return np.where(np.isnan(count), prior, rate)


def top_partitions(df: pd.DataFrame, k: int = TOP_K_PARTITIONS) -> list[str]:
    """The ``k`` most frequent partition names of ``df`` (ties broken by name), for a consistent one-hot."""
    if "partition" not in df.columns:
        return []
    vc = df["partition"].dropna().astype(str).value_counts()
    vc = vc.sort_index().sort_values(ascending=False, kind="stable")
    return list(vc.index[:k])


def submit_time_features(
    df: pd.DataFrame,
    partitions: Sequence[str] | None = None,
    k: int = TOP_K_PARTITIONS,
    m: float = SMOOTHING_M,
    default_prior: float = DEFAULT_PRIOR,
) -> tuple[pd.DataFrame, list[str]]:
    """Submit-time feature matrix (see the module docstring for every feature's source and unit).

    Args:
        df: job table in the shared schema, any row order; needs ``submit_time`` and, for history, ``end_time`` and
            ``failed``.
        partitions: partition names to one-hot (e.g. the training split's :func:`top_partitions`, so train and test
            columns agree without looking at test frequencies); default: top ``k`` of ``df``.
        k: number of partitions when ``partitions`` is None.
        m: smoothing pseudo-count.
        default_prior: prior failure rate before any job of the trace has ended.

    Returns:
        ``(X, names)``: float DataFrame with ``df``'s index, columns ``names``. History features use only jobs that
        ended strictly before each row's submit, so computing them on the whole trace does not leak the test
        period into training rows (nor a row's own outcome into itself).

    """
    X = pd.DataFrame(index=df.index)
    c = {n: _col(df, n) for n in _NUMERIC}
    X["log_req_cpus"] = np.log1p(c["req_cpus"].clip(lower=0))
    X["log_req_nodes"] = np.log1p(c["req_nodes"].clip(lower=0))
    X["log_req_gpus"] = np.log1p(c["req_gpus"].clip(lower=0))
    X["log_req_mem_bytes"] = np.log1p(c["req_mem_bytes"].clip(lower=0))
    per_cpu = c["req_mem_bytes"] / c["req_cpus"].where(c["req_cpus"] > 0)
    X["log_req_mem_per_cpu_bytes"] = np.log1p(per_cpu.clip(lower=0))
    X["log_timelimit_s"] = np.log1p(c["timelimit_s"].clip(lower=0))
    X["timelimit_unlimited"] = c["timelimit_s"].isna().astype(float)

    parts = list(partitions) if partitions is not None else top_partitions(df, k)
    pcol = df["partition"].astype(object) if "partition" in df.columns else pd.Series(None, index=df.index)
    known = pd.Series(False, index=df.index)
    for p in parts:
        hit = pcol.astype(str).eq(str(p)) & pcol.notna()
        X[f"part_{p}"] = hit.astype(float)
        known |= hit
    X["part_other"] = (~known).astype(float)

    sub = _col(df, "submit_time")
    ts = pd.to_datetime(sub, unit="s", utc=True)
    X["submit_hour"] = ts.dt.hour.astype(float)
    X["submit_weekday"] = ts.dt.day_of_week.astype(float)

    s = sub.to_numpy()
    e = effective_end(df)
    f = _col(df, "failed").to_numpy() if "failed" in df.columns else np.full(len(df), np.nan)
    gc, gf, _ = past_outcomes(s, e, f, None)
    prior = np.where(gc > 0, gf / np.where(gc > 0, gc, 1.0), default_prior)
    prior = np.where(np.isnan(gc), default_prior, prior)

    uc, uf, up = past_outcomes(s, e, f, _key(df, ["user"]))
    X["user_past_jobs"] = uc
    X["user_past_failures"] = uf
    X["user_past_fail_rate"] = _smoothed(uf, uc, prior, m)
    X["user_prev_failed"] = up
    jc, _, jp = past_outcomes(s, e, f, _key(df, ["user", "job_name"]))
    X["userjob_past_jobs"] = jc
    X["userjob_prev_failed"] = jp
    ac, af, _ = past_outcomes(s, e, f, _key(df, ["account"]))
    X["account_past_jobs"] = ac
    X["account_past_fail_rate"] = _smoothed(af, ac, prior, m)
    X["global_past_fail_rate"] = prior
    X = X.astype(float)
    return X, list(X.columns)


def run_time_features(
    df: pd.DataFrame, partitions: Sequence[str] | None = None, **kwargs: float
) -> tuple[pd.DataFrame, list[str]]:
    """Submit-time features plus usage-derived ones (END-of-job values on traces: optimistic upper bound).

    Args/returns as :func:`submit_time_features`. Added columns (see module docstring): ``cpu_efficiency``,
    ``mem_efficiency``, ``elapsed_over_timelimit``, ``log_elapsed_s``, then the rest of
    :data:`~nomade.analytics.job_vectors.INPUT_COLUMNS` (always all of them, NaN when unknown) and
    ``mem_slope_bytes_per_s`` when ``df`` has it. Division by zero or missing inputs -> NaN.
    """
    X, _ = submit_time_features(df, partitions=partitions, **kwargs)
    el = _col(df, "elapsed_s")
    cpus = _col(df, "req_cpus")
    denom = (el * cpus).where((el > 0) & (cpus > 0))
    X["cpu_efficiency"] = _col(df, "cpu_s") / denom
    mem = _col(df, "req_mem_bytes")
    X["mem_efficiency"] = _col(df, "max_rss_bytes") / mem.where(mem > 0)
    tl = _col(df, "timelimit_s")
    X["elapsed_over_timelimit"] = el / tl.where(tl > 0)
    X["log_elapsed_s"] = np.log1p(el.clip(lower=0))
    vec = job_vectors(df)  # sacct-derived columns from the job table; the rest NaN
    for c in INPUT_COLUMNS:
        X[c] = _col(df, c).fillna(vec[c]) if c in df.columns else vec[c]
    if "mem_slope_bytes_per_s" in df.columns:
        X["mem_slope_bytes_per_s"] = _col(df, "mem_slope_bytes_per_s")
    X = X.astype(float)
    return X, list(X.columns)
