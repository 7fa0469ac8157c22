"""The risk engine: harvest finished jobs, retrain on a schedule, watch drift, score pending and running jobs.

:class:`RiskEngine` runs inside each analytics cycle (:meth:`nomade.analytics.service.AnalyticsService.run_cycle`)
and publishes ``nomade_job_risk_*`` and ``nomade_model_*`` (:data:`nomade.analytics.catalog.RISK_METRICS`,
:data:`~nomade.analytics.catalog.MODEL_METRICS`) plus the recommendations of :mod:`nomade.analytics.recommend`.

One cycle
=========
1. **Harvest** (:func:`nomade.analytics.harvest.fetch_finished_jobs`, bulk queries): jobs that ended in
   ``[watermark - HARVEST_OVERLAP, now]`` are upserted into the training store; the watermark (store meta
   :data:`WATERMARK_KEY`) then moves to ``now``. The first harvest covers ``harvest_lookback``. The overlap
   (:data:`HARVEST_OVERLAP`, 15 min) re-reads rows that reached sacct late; upserts are idempotent (the store is keyed
   by cluster, job id and submit time). A failed harvest leaves the watermark alone, so the next cycle retries the
   whole window; after a long outage the window is capped at :data:`MAX_HARVEST_WINDOW` (back-fill older history
   with ``nomade analytics ingest``).
2. **Active jobs** (:func:`~nomade.analytics.harvest.fetch_active_jobs`): pending and running jobs with their usage
   so far. At most every :data:`SNAPSHOT_EVERY` seconds the running ones are stored as snapshots
   (``JobsStore.upsert_snapshots``): once those jobs finish, the snapshots labelled with the final outcome are the
   training data of the ``run`` setting.
3. **Retraining** (when due, see "Retraining policy"), in a background thread.
4. **Drift** (every :data:`DRIFT_EVERY` seconds): population stability index of each input feature.
5. **Scoring** of every active job, then the per-job series of the :data:`max_scored_jobs` highest risks.

Retraining policy
=================
* **Due** when the setting has an accepted model and ``retrain_interval`` (default 7 days, the seed's
  ``retrain_interval_days``) has passed since the last attempt (store meta :data:`ATTEMPT_KEY`, so a restart does
  not retrain at once), or when it has none and no attempt was made in the last ``min(COLD_RETRY,
  retrain_interval)`` seconds; and the data suffice: ``min_train_jobs`` labelled jobs of which ``min_train_failures``
  failed (``submit``: finished jobs in the history window; ``run``: running-job snapshots whose job has finished,
  one snapshot per job). A due setting's data are checked at most every :data:`DATA_CHECK_EVERY` seconds, and each
  check re-reads the store, so jobs back-filled with ``nomade analytics ingest`` are used from then on.
* **Split**: jobs sorted by submit time; the newest :data:`HOLDOUT_FRAC` (20 %) are the holdout, the older ones the
  training set, from which jobs that had not ended by the first holdout submit are removed (their outcome was not
  known yet: the gap rule of :mod:`nomade.analytics.evaluate`). The candidate
  (:class:`nomade.analytics.pipeline.RiskPipeline`) is fitted on the training set only (it makes its own internal
  calibration split) and scored on the holdout with the full finished-job history as ``history``: the pipeline
  uses only jobs that ended before each job's submit, so a holdout job sees exactly what it would have seen when
  served.
* **Comparison**: the serving model is scored on the same holdout. When it was trained on part of it (its
  ``train_end`` is after the first holdout submit) both are compared on the holdout jobs submitted after
  ``train_end`` only, if at least :data:`MIN_COMPARE_JOBS` with both outcomes remain (else on the whole holdout,
  which favours the serving model: the conservative direction). Every figure of the comparison (and the published
  holdout AUC-ROC and Brier score) weighs each submission once (:func:`submission_weights`: the tasks of one job
  array share the weight 1), so that one array's tied scores cannot decide it. The candidate is **rejected** when
  its AUC-ROC is lower by more than :data:`AUC_TOLERANCE` (0.01: the standard error of an AUC on a few hundred
  jobs is 0.02-0.03, Hanley & McNeil 1982, Radiology 143(1)), or when it has no AUC and the serving model has one;
  otherwise it is **accepted**. A training error counts as **failed**. The serving model stays in every case but
  acceptance (``nomade_model_retrains_total{result}``).
* **No refit**: the accepted candidate is served exactly as fitted and evaluated (DESIGN.md 7: what is evaluated is
  what is served). The newest 20 % still inform it at serving time through ``history`` (user history, neighbours);
  they enter the model's parameters at the next retraining.
* **Background**: training runs in a daemon thread on copies of the data; scoring goes on with the serving model
  and the accepted one is swapped in atomically (one reference assignment under the engine's lock). One training
  thread at a time; ``background=False`` trains inside the cycle (``--once``, tests).
* **Cold start**: until a model is accepted, jobs are scored with the user-history baseline computed from the
  store (:func:`baseline_scores`, version ``baseline``); with no finished job at all, nothing is published (absent
  beats wrong). Running jobs use the ``run`` model when one exists, else the ``submit`` model
  (``nomade_job_risk_scoring_info{state,setting,version}`` says which).

Previous scores
===============
A successful active-job fetch replaces all per-job series: jobs that left the queue disappear at once. When the fetch
fails (Prometheus down), the previous scores are kept for ``scores_max_age`` seconds (default 600), then dropped;
``nomade_job_risk_last_scored_timestamp_seconds`` gives their age. Model and store metrics are always served.

Drift
=====
Population stability index, ``PSI = sum_i (a_i - e_i) ln(a_i / e_i)`` over bins of the training sample's deciles
(edges and expected shares are saved in the model metadata; missing values are a bin of their own; empty bins take
:data:`PSI_EPSILON`), between the training sample and the jobs that finished within ``drift_window`` (``run``: the
snapshots of that window). Rule of thumb (Siddiqi 2006, "Credit Risk Scorecards", Wiley, ch. 8): < 0.1 no
significant shift, 0.1-0.25 moderate, > 0.25 major. That rule assumes large samples: with fewer than
:data:`MIN_DRIFT_JOBS` recent jobs no PSI is published (sampling noise alone would exceed 0.1);
``nomade_model_drift_jobs`` gives the sample size.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client.core import Metric

from nomade.exporter.metrics import MetricSet

from .catalog import MODEL_METRICS, RISK_METRICS
from .config import RiskConfig
from .model_store import ModelRegistry
from .promapi import PrometheusUnavailable, PromQLError

log = logging.getLogger("nomade.analytics.risk")

HARVEST_OVERLAP = 900.0
"""Seconds re-read before the watermark at each harvest (sacct rows may arrive late)."""
MAX_HARVEST_WINDOW = 7 * 86400.0
"""Longest window one harvest covers (after an outage); older jobs come from ``nomade analytics ingest``."""
SNAPSHOT_EVERY = 600.0
"""Seconds between two stored snapshots of the running jobs (bounds the snapshot table: 144 per job-day)."""
HOLDOUT_FRAC = 0.2
"""Share of the newest labelled jobs held out to compare candidate and serving models."""
AUC_TOLERANCE = 0.01
"""AUC-ROC a candidate may lose against the serving model and still be accepted (noise level; module docstring)."""
MIN_COMPARE_JOBS = 30
"""Holdout jobs unseen by the serving model needed to compare on those alone."""
COLD_RETRY = 3600.0
"""Seconds between training attempts while a setting has no model."""
DATA_CHECK_EVERY = 300.0
"""Seconds between two checks whether a due setting has enough labelled jobs (each check re-reads the store)."""
DRIFT_EVERY = 600.0
"""Seconds between two drift computations."""
PSI_BINS = 10
"""Quantile bins of the training sample for the PSI (deciles, Siddiqi 2006)."""
PSI_EPSILON = 1e-4
"""Share given to an empty bin so that the PSI's logarithm stays finite."""
MIN_DRIFT_JOBS = 200
"""Recent jobs needed for a PSI. Two samples of ONE distribution already differ: the PSI is then about
``(bins - 1) * (1/n + 1/N)`` (its chi-square approximation; Yurdakul 2018, "Statistical properties of population
stability index", Western Michigan University), 0.045 + 9/N for n = 200 recent jobs and 10 bins, safely below the
0.1 "stable" mark; with 20 jobs it would be 0.45, noise read as a major shift."""
BASELINE_VERSION = "baseline"
"""``version`` label of scores from the user-history baseline (no accepted model)."""

WATERMARK_KEY = "risk.harvest_watermark"
ATTEMPT_KEY = "risk.last_train_attempt.{setting}"

DRIFT_SUBMIT_COLUMNS = ("req_cpus", "req_nodes", "req_gpus", "req_mem_bytes", "timelimit_s")
"""Raw inputs of the submit-time features whose drift is watched (requests and limits)."""
_RUN_FALLBACK_COLUMNS = ("elapsed_s", "cpu_s", "max_rss_bytes")
_ACTIVE_STATES = ("PENDING", "RUNNING")
_RESULTS = ("accepted", "rejected", "failed")


def _drift_columns(setting: str) -> tuple[str, ...]:
    if setting == "submit":
        return DRIFT_SUBMIT_COLUMNS
    try:
        from .job_vectors import INPUT_COLUMNS
    except ImportError:  # pragma: no cover - the module is part of the package
        INPUT_COLUMNS = ()
    return DRIFT_SUBMIT_COLUMNS + _RUN_FALLBACK_COLUMNS + tuple(INPUT_COLUMNS)


# -- pure helpers ----------------------------------------------------------------------------------------------


def psi_reference(values: np.ndarray | pd.Series, bins: int = PSI_BINS) -> dict[str, Any] | None:
    """Bin edges and expected shares of a training sample for :func:`psi`.

    Args:
        values: the feature over the training jobs, shape (n,); NaN = missing.
        bins: number of quantile bins (edges at the 1/bins ... (bins-1)/bins quantiles; repeated edges merged, so
            a feature with few distinct values gets fewer bins).

    Returns:
        ``{"edges": [...], "expected": [...], "missing": share}`` with ``len(expected) == len(edges) + 1`` (bins
        ``(-inf, e1), [e1, e2), ..., [ek, inf)``) over the non-missing values; ``None`` when fewer than 10 values
        are present.

    """
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if finite.size < 10:
        return None
    qs = np.quantile(finite, np.arange(1, bins) / bins)
    edges = np.unique(qs)
    expected = bin_shares(finite, edges)
    return {"edges": edges.tolist(), "expected": expected.tolist(), "missing": float(1 - finite.size / v.size)}


def bin_shares(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of ``values`` (finite ones) in each bin ``(-inf, e1), [e1, e2), ..., [ek, inf)``; shape (len(edges)+1,)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    idx = np.searchsorted(np.asarray(edges, dtype=float), v, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return counts / counts.sum() if counts.sum() else counts


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = PSI_EPSILON) -> float:
    """Population stability index ``sum (a - e) ln(a / e)`` of two share vectors (Siddiqi 2006).

    Args:
        expected: bin shares of the reference (training) sample, summing to 1.
        actual: bin shares of the recent sample, same bins.
        eps: floor of a share (empty bins), so the logarithm is finite.

    Returns:
        The PSI (>= 0; 0 for identical distributions).

    Raises:
        ValueError: the vectors differ in length.

    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape:
        raise ValueError(f"psi: {e.size} expected bins but {a.size} actual bins")
    e = np.maximum(e, eps)
    a = np.maximum(a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(
    reference: Mapping[str, Any], values: np.ndarray | pd.Series, min_values: int = MIN_DRIFT_JOBS
) -> float | None:
    """PSI of recent ``values`` against a :func:`psi_reference`; the missing share is one more bin.

    Returns ``None`` when fewer than ``min_values`` values (missing included) are given (default
    :data:`MIN_DRIFT_JOBS`: below it sampling noise dominates).
    """
    v = np.asarray(values, dtype=float)
    if v.size < min_values:
        return None
    finite = np.isfinite(v)
    miss_a = 1 - finite.mean()
    miss_e = float(reference.get("missing", 0.0))
    exp = np.asarray(reference["expected"], dtype=float) * (1 - miss_e)
    act = bin_shares(v[finite], reference["edges"]) * (1 - miss_a)
    return psi(np.append(exp, miss_e), np.append(act, miss_a))


def baseline_scores(jobs: pd.DataFrame, history: pd.DataFrame) -> np.ndarray:
    """User-history baseline P(fail) of ``jobs``: the user's smoothed past failure rate (DESIGN.md principle 7).

    The ``user_past_fail_rate`` feature of :func:`nomade.analytics.features.submit_time_features` (m-estimate with
    the cluster's past failure rate as prior, Cestnik 1990), computed from the finished jobs of ``history`` that
    ended before each job's submit. Jobs submitted before any history job ended get NaN: the prior would be the
    features module's made-up default, not data.

    Args:
        jobs: job table rows (their own outcomes are ignored).
        history: finished jobs (``end_time`` and ``failed``).

    Returns:
        float array of shape ``(len(jobs),)``, NaN where there is no history.

    """
    from .features import effective_end, submit_time_features

    if len(jobs) == 0:
        return np.zeros(0)
    j = jobs.copy()
    j["failed"] = np.nan
    j["end_time"] = np.nan
    h = history[history["failed"].notna()] if "failed" in history.columns else history.iloc[0:0]
    h = h.copy()
    h["failed"] = pd.to_numeric(h["failed"], errors="coerce").astype(float)
    both = pd.concat([h, j], ignore_index=True, sort=False)
    X, _ = submit_time_features(both, partitions=[])
    p = X["user_past_fail_rate"].to_numpy(float)[len(h) :]
    ends = np.sort(effective_end(h)[~np.isnan(effective_end(h))])
    sub = pd.to_numeric(j["submit_time"], errors="coerce").to_numpy(float)
    known = np.searchsorted(ends, np.where(np.isnan(sub), -np.inf, sub), side="left") > 0
    return np.where(known, p, np.nan)


def submission_weights(jobs: pd.DataFrame) -> np.ndarray:
    """Weight 1 / (jobs in the same submission) per job: each ``sbatch`` counts once in an evaluation.

    A submission is the jobs sharing user, job name and submit second: the tasks of one job array (``sbatch
    --array``) or a scripted burst. Their submit-time features are identical, so with one weight per job a single
    400-task array is 400 tied scores and decides the holdout's AUC alone; with these weights every submission
    weighs 1 (the same idea as clustered AUC, Obuchowski 1997, Biometrics 53(2)). Columns used: ``user``,
    ``job_name``, ``submit_time``; a missing column is treated as distinct per job.

    Returns:
        float array of shape (len(jobs),), each in (0, 1]; they sum to the number of submissions.

    """
    n = len(jobs)
    keys = pd.DataFrame(
        {
            c: jobs[c].astype(str).to_numpy() if c in jobs.columns else np.arange(n)
            for c in ("user", "job_name", "submit_time")
        }
    )
    return 1.0 / keys.groupby(list(keys.columns), sort=False)["user"].transform("size").to_numpy(float)


def holdout_metrics(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> dict[str, float]:
    """AUC-ROC and Brier score of scores ``p`` for labels ``y`` (NaN scores dropped; AUC NaN with one class).

    Args:
        y: labels, shape (n,), 1 = failed.
        p: scores in [0, 1], shape (n,).
        w: optional sample weights, shape (n,) (:func:`submission_weights`); ``None`` = 1 per job.

    Returns:
        ``auc_roc``, ``brier`` (weighted when ``w`` is given), ``n`` (jobs), ``positives`` (failed jobs) and
        ``submissions`` (sum of the weights).

    """
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    ok = np.isfinite(p)
    y, p, w = y[ok], np.clip(p[ok], 0.0, 1.0), w[ok]
    two = 0 < y.sum() < len(y)
    return {
        "auc_roc": float(roc_auc_score(y, p, sample_weight=w)) if two else math.nan,
        "brier": float(brier_score_loss(y, p, sample_weight=w)) if len(y) else math.nan,
        "n": int(len(y)),
        "positives": int(y.sum()),
        "submissions": float(w.sum()),
    }


def accept_candidate(candidate_auc: float, current_auc: float | None, tolerance: float = AUC_TOLERANCE) -> bool:
    """The acceptance rule of a retrained candidate (module docstring, "Retraining policy").

    Accept unless the candidate's AUC-ROC is lower than the serving model's by more than ``tolerance``, or is
    undefined (NaN) while the serving model's is defined. No serving model (``None``) or one without an AUC: accept.
    """
    if current_auc is None or math.isnan(current_auc):
        return True
    if math.isnan(candidate_auc):
        return False
    return candidate_auc >= current_auc - tolerance


def time_holdout(df: pd.DataFrame, frac: float = HOLDOUT_FRAC) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Split labelled jobs by submit time: ``(train, holdout, t_holdout)``.

    The holdout is the newest ``frac`` of jobs (all jobs submitted at or after ``t_holdout``); training jobs whose
    end is known and at or after ``t_holdout`` are dropped (gap rule). Both frames are sorted by submit time.

    Raises:
        ValueError: fewer than 10 jobs.

    """
    d = df.sort_values("submit_time", kind="stable").reset_index(drop=True)
    n = len(d)
    if n < 10:
        raise ValueError(f"need >= 10 labelled jobs, got {n}")
    sub = d["submit_time"].to_numpy(float)
    t_h = float(sub[n - max(1, int(math.ceil(frac * n)))])
    end = pd.to_numeric(d["end_time"], errors="coerce").to_numpy(float) if "end_time" in d else np.full(n, np.nan)
    train = d[(sub < t_h) & ~(end >= t_h)]
    return train, d[sub >= t_h], t_h


# -- the engine ------------------------------------------------------------------------------------------------


@dataclass
class ServingModel:
    """A model serving one setting (or the baseline): the unpickled pipeline and its registry metadata."""

    setting: str
    version: str
    pipeline: Any
    metadata: dict[str, Any]

    @property
    def threshold(self) -> float:
        """The alert threshold recorded with the model."""
        t = self.metadata.get("threshold", getattr(self.pipeline, "threshold", math.nan))
        return float(t) if t is not None else math.nan


@dataclass
class _Scores:
    computed_at: float
    families: list[Metric] = field(default_factory=list)


class _CountingClient:
    """Passes queries to the real client, counting them by kind for ``nomade_analytics_queries_total``."""

    def __init__(self, client: Any, counts: Counter[str], lock: threading.Lock) -> None:
        self._client = client
        self._counts = counts
        self._lock = lock

    def query(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._counts["instant"] += 1
        return self._client.query(*args, **kwargs)

    def query_range(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._counts["range"] += 1
        return self._client.query_range(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _default_pipeline_factory(setting: str, models: Sequence[str], cost_ratio: float, seed: int) -> Any:
    from .pipeline import RiskPipeline

    return RiskPipeline(setting=setting, models=models, cost_ratio=cost_ratio, seed=seed)


class RiskEngine:
    """Failure-risk scoring inside the analytics cycle (see the module docstring for the policy).

    Args:
        config: the ``[analytics.risk]`` settings.
        client: the Prometheus query client (its queries are counted under ``watch="risk"``).
        cluster: value of the store's ``cluster`` key column for harvested jobs (default ``"local"``).
        store: an open :class:`nomade.analytics.jobs_store.JobsStore` (default: opened from ``config.store`` at the
            first cycle; a failure is counted and retried next cycle).
        registry: model registry (default ``ModelRegistry(config.model_dir, config.keep_models)``).
        harvest: object with ``fetch_finished_jobs`` and ``fetch_active_jobs`` (default
            :mod:`nomade.analytics.harvest`).
        pipeline_factory: ``(setting, models, cost_ratio, seed) -> pipeline`` (default
            :class:`nomade.analytics.pipeline.RiskPipeline`).
        recommend: object with ``compute`` and ``families`` (default :mod:`nomade.analytics.recommend` when
            importable; ``False`` disables recommendations).
        clock: wall clock, Unix seconds.
        background: train in a background thread (``False``: inside the cycle).
        scores_max_age: seconds the previous scores are served when the active-job fetch fails.
        seed: random seed of the pipelines.
        matchers: extra label matchers for the harvest's selectors (``cluster="hpc1"`` for a one-cluster service).

    The engine never raises from :meth:`run_cycle` for data, Prometheus, store or model problems: they are
    counted by reason (:meth:`error_counts`, published by the service as ``nomade_analytics_cycle_errors_total
    {watch="risk",reason}``): ``unavailable``, ``promql``, ``harvest``, ``active``, ``store``, ``train``,
    ``registry``, ``score``, ``explain``, ``drift``, ``recommend``.

    """

    def __init__(
        self,
        config: RiskConfig,
        client: Any,
        *,
        cluster: str | None = None,
        store: Any = None,
        registry: ModelRegistry | None = None,
        harvest: Any = None,
        pipeline_factory: Callable[[str, Sequence[str], float, int], Any] | None = None,
        recommend: Any = None,
        clock: Callable[[], float] = time.time,
        background: bool = True,
        scores_max_age: float = 600.0,
        seed: int = 0,
        matchers: str = "",
    ) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._query_counts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self.client = _CountingClient(client, self._query_counts, self._lock)
        self.cluster = cluster or "local"
        self._store = store
        self._owns_store = store is None
        self.registry = registry or ModelRegistry(config.model_dir, keep=config.keep_models, clock=clock)
        self._harvest = harvest
        self._factory = pipeline_factory or _default_pipeline_factory
        self._recommend = recommend
        self._clock = clock
        self.background = background
        self.scores_max_age = scores_max_age
        self.seed = seed
        self._harvest_kw: dict[str, Any] = {"node_label": config.node_label, "node_map": config.node_map}
        if matchers:
            self._harvest_kw["matchers"] = matchers
        self._serving: dict[str, ServingModel] = {}
        self._models_loaded = False
        self._history: pd.DataFrame | None = None
        self._meta: dict[str, str] = {}  # fallback when the store has no meta table
        self._last_snapshot: float | None = None
        self._last_drift: float | None = None
        self._drift: dict[str, dict[str, float]] = {}
        self._drift_jobs: dict[str, int] = {}
        self._retrains: Counter[tuple[str, str]] = Counter()
        self._scores: _Scores | None = None
        self._recs: list[Metric] | None = None
        self._recs_tried = False
        self._last_check: dict[str, float] = {}
        self._training: threading.Thread | None = None
        self._store_jobs: tuple[int, int] | None = None
        self._last_log: dict[str, str] = {}

    # -- counters for the service ----------------------------------------------------------------------------

    def error_counts(self) -> dict[str, int]:
        """Problems met so far, by reason (``nomade_analytics_cycle_errors_total{watch="risk"}``)."""
        with self._lock:
            return dict(self._errors)

    def query_counts(self) -> dict[str, int]:
        """Prometheus queries sent so far, by kind (``range``, ``instant``)."""
        with self._lock:
            return dict(self._query_counts)

    def _error(self, reason: str, msg: str, *args: Any, exc: bool = False) -> None:
        with self._lock:
            self._errors[reason] += 1
        text = msg % args if args else msg
        # the same message every cycle would flood the log: repeat it at debug level only
        level = logging.WARNING if self._last_log.get(reason) != text else logging.DEBUG
        self._last_log[reason] = text
        log.log(level, "risk: %s", text, exc_info=exc and level == logging.WARNING)

    # -- the cycle -------------------------------------------------------------------------------------------

    def run_cycle(self, now: float | None = None) -> None:
        """Harvest, snapshot, retrain when due, compute drift and score; see the module docstring.

        Args:
            now: the cycle's time (Unix s; default the clock).

        """
        now = self._clock() if now is None else float(now)
        store = self._open_store()
        reachable = True
        if store is not None:
            self._load_models()
            try:
                self.history(store, now)  # scoring needs it even when this cycle's harvest fails
            except Exception as exc:
                self._error("store", "cannot read the training store: %s", exc, exc=True)
            reachable = self._harvest_finished(store, now)
        active = self._fetch_active(now) if reachable else None
        if store is not None and active is not None:
            self._snapshot(store, active, now)
        if store is not None:
            self._maybe_train(store, now)
            self._maybe_drift(store, now)
        self._score(active, now)

    def close(self) -> None:
        """Close the training store if the engine opened it (a training in progress runs on its own copies).

        May be called from any thread: the store is opened in the service's cycle thread and closed from the main
        thread at shutdown; :class:`~nomade.analytics.jobs_store.JobsStore` serialises its connection with a lock
        (a cycle still querying it is waited for). An error while closing is logged as a warning, never raised.
        """
        if self._owns_store and self._store is not None:
            try:
                self._store.close()
            except Exception as exc:  # closing must not fail a shutdown
                log.warning("risk: closing the store: %s", exc)
            self._store = None

    def wait_training(self, timeout: float | None = None) -> bool:
        """Wait for a background training to end; ``True`` when none is running afterwards."""
        t = self._training
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    # -- store and models ------------------------------------------------------------------------------------

    def _open_store(self) -> Any:
        if self._store is not None:
            return self._store
        from .jobs_store import JobsStore

        try:
            self._store = JobsStore(self.config.store)
        except Exception as exc:  # sqlite3.Error, OSError, JobsStoreError: retried next cycle
            self._error("store", "cannot open the training store %s: %s", self.config.store, exc)
            return None
        return self._store

    def _load_models(self) -> None:
        if self._models_loaded:
            return
        self._models_loaded = True
        for setting in self.config.settings:
            try:
                got = self.registry.current(setting)
            except Exception as exc:  # a registry that cannot even be listed: run on the baseline
                self._error("registry", "cannot read the model registry: %s", exc)
                continue
            if got is not None:
                pipeline, meta = got
                with self._lock:
                    self._serving[setting] = ServingModel(setting, str(meta.get("version")), pipeline, meta)
                log.info("risk: serving %s model %s", setting, meta.get("version"))

    def _get_meta(self, store: Any, key: str) -> str | None:
        getter = getattr(store, "get_meta", None)
        if getter is None:
            return self._meta.get(key)
        try:
            v = getter(key)
        except Exception as exc:
            self._error("store", "cannot read store meta %s: %s", key, exc)
            return self._meta.get(key)
        return None if v is None else str(v)

    def _set_meta(self, store: Any, key: str, value: float) -> None:
        self._meta[key] = repr(float(value))
        setter = getattr(store, "set_meta", None)
        if setter is None:
            return
        try:
            setter(key, repr(float(value)))
        except Exception as exc:
            self._error("store", "cannot write store meta %s: %s", key, exc)

    def _meta_float(self, store: Any, key: str) -> float | None:
        v = self._get_meta(store, key)
        try:
            x = float(v) if v is not None else None
        except ValueError:
            return None
        return x if x is not None and math.isfinite(x) else None

    def history(self, store: Any, now: float) -> pd.DataFrame:
        """Finished jobs that ended within ``history_window`` (cached; harvested rows are merged in).

        One row per ``(job_id, submit_time)``: a SLURM job id with its submit time names one job, so rows of the
        same job stored under two cluster names (harvested, and back-filled by ``nomade analytics ingest`` with
        another ``--cluster``) count once. The engine serves one cluster, so ids of different clusters do not mix.
        """
        if self._history is None:
            df = _normalise_finished(store.load(since=now - self.config.history_window))
            # A job back-filled under another cluster name (``ingest --cluster``) is the same job: one row.
            self._history = df.drop_duplicates(subset=["job_id", "submit_time"], keep="last").reset_index(drop=True)
        h = self._history
        keep = pd.to_numeric(h["end_time"], errors="coerce") >= now - self.config.history_window
        if not keep.all():
            self._history = h = h[keep].reset_index(drop=True)
        with self._lock:
            self._store_jobs = (len(h), int(np.nansum(h["failed"].to_numpy(float))))
        return h

    # -- harvest ---------------------------------------------------------------------------------------------

    def _harvest_mod(self) -> Any:
        if self._harvest is None:
            from . import harvest

            self._harvest = harvest
        return self._harvest

    def _prom_error(self, what: str, exc: Exception) -> bool:
        """Count a Prometheus failure; ``False`` when nothing answered at all (skip the other queries)."""
        if isinstance(exc, PrometheusUnavailable):
            self._error("unavailable", "%s: Prometheus unavailable: %s", what, exc)
            return exc.status_code is not None
        if isinstance(exc, PromQLError):
            self._error("promql", "%s: query rejected: %s", what, exc)
            return True
        self._error(what, "%s failed: %s", what, exc, exc=True)
        return True

    def _harvest_finished(self, store: Any, now: float) -> bool:
        """Fetch jobs finished since the watermark into the store; ``False`` when Prometheus did not answer."""
        wm = self._meta_float(store, WATERMARK_KEY)
        if wm is None:
            start = now - self.config.harvest_lookback
        else:
            start = max(min(wm, now) - HARVEST_OVERLAP, now - MAX_HARVEST_WINDOW)
        try:
            mod = self._harvest_mod()
            df = mod.fetch_finished_jobs(self.client, start, now, **self._harvest_kw)
        except Exception as exc:
            return self._prom_error("harvest", exc)
        try:
            if len(df):
                done = df[df["end_time"].notna() & df["failed"].notna()] if "end_time" in df else df.iloc[0:0]
                if len(done) < len(df):
                    self._error("harvest", "%d harvested jobs without end time or outcome skipped", len(df) - len(done))
                store.upsert(done, cluster=self.cluster)
                self._merge_history(done)
            self._set_meta(store, WATERMARK_KEY, now)
        except Exception as exc:
            self._error("store", "cannot store harvested jobs: %s", exc, exc=True)
        return True

    def _merge_history(self, new: pd.DataFrame) -> None:
        if self._history is None or new.empty:
            return
        n = _normalise_finished(new)
        if "cluster" not in n.columns or n["cluster"].isna().all():
            n["cluster"] = self.cluster
        both = pd.concat([self._history, n], ignore_index=True, sort=False)
        both = both.drop_duplicates(subset=["job_id", "submit_time"], keep="last")
        self._history = both.sort_values("submit_time", kind="stable").reset_index(drop=True)

    def _fetch_active(self, now: float) -> pd.DataFrame | None:
        try:
            df = self._harvest_mod().fetch_active_jobs(self.client, now, **self._harvest_kw)
        except Exception as exc:
            self._prom_error("active", exc)
            return None
        if df is None:
            return None
        missing = [c for c in ("job_id", "state", "submit_time") if c not in df.columns]
        if missing:
            if len(df):
                self._error("active", "active jobs lack column(s) %s", missing)
                return None
            df = df.reindex(columns=[*df.columns, *missing])
        df = df[df["state"].isin(_ACTIVE_STATES) & df["job_id"].notna()]
        dup = df["job_id"].duplicated(keep="first")
        if dup.any():
            self._error("active", "%d duplicate active job ids ignored", int(dup.sum()))
            df = df[~dup]
        return df.reset_index(drop=True)

    def _snapshot(self, store: Any, active: pd.DataFrame, now: float) -> None:
        if "run" not in self.config.settings:
            return
        if self._last_snapshot is not None and now - self._last_snapshot < SNAPSHOT_EVERY:
            return
        up = getattr(store, "upsert_snapshots", None)
        if up is None:
            return
        running = active[active["state"] == "RUNNING"]
        try:
            if len(running):
                up(running, now, cluster=self.cluster)
            self._last_snapshot = now
        except Exception as exc:
            self._error("store", "cannot store running-job snapshots: %s", exc, exc=True)

    # -- training --------------------------------------------------------------------------------------------

    def _due(self, store: Any, setting: str, now: float) -> bool:
        last = self._meta_float(store, ATTEMPT_KEY.format(setting=setting))
        with self._lock:
            model = self._serving.get(setting)
        if model is not None:
            if last is None:
                last = float(model.metadata.get("created_at") or 0.0)
            return now - last >= self.config.retrain_interval
        return last is None or now - last >= min(COLD_RETRY, self.config.retrain_interval)

    def training_data(self, store: Any, setting: str, now: float) -> pd.DataFrame | None:
        """Labelled jobs of ``setting``: finished jobs (``submit``) or one snapshot per finished job (``run``)."""
        history = self.history(store, now)
        if setting == "submit":
            return history
        load = getattr(store, "load_snapshots", None)
        if load is None:
            return None
        snaps = load(since=now - self.config.history_window)
        if snaps is None or snaps.empty or "failed" not in snaps.columns:
            return None
        snaps = snaps[snaps["failed"].notna()]
        if snaps.empty:
            return None
        # One snapshot per job, drawn at random (seeded): every stage of a job's life is represented and no job
        # counts several times in the model's user history.
        rng = np.random.default_rng(self.seed)
        snaps = snaps.assign(_r=rng.random(len(snaps))).sort_values("_r")
        snaps = snaps.drop_duplicates(subset=["job_id", "submit_time"], keep="first").drop(columns="_r")
        # The job's final end time (the store's ``final_end_time``) lets the pipeline's "ended before submit" rule
        # place the job in other jobs' histories and the holdout's gap rule drop it from training in time.
        if "final_end_time" in snaps.columns:
            snaps = snaps.assign(end_time=snaps["final_end_time"])
        return _normalise_finished(snaps)

    def _enough(self, data: pd.DataFrame | None) -> bool:
        if data is None or data.empty:
            return False
        y = pd.to_numeric(data["failed"], errors="coerce")
        return len(data) >= self.config.min_train_jobs and int(y.sum()) >= self.config.min_train_failures

    def _maybe_train(self, store: Any, now: float) -> None:
        if self._training is not None and self._training.is_alive():
            return
        jobs = []
        reloaded = False
        for setting in self.config.settings:
            if not self._due(store, setting, now):
                continue
            last = self._last_check.get(setting)
            if last is not None and now - last < DATA_CHECK_EVERY:
                continue
            self._last_check[setting] = now
            try:
                if not reloaded:
                    # Re-read the store: jobs back-filled by `nomade analytics ingest` since start are seen now.
                    self._history, reloaded = None, True
                data = self.training_data(store, setting, now)
            except Exception as exc:
                self._error("store", "cannot load %s training data: %s", setting, exc, exc=True)
                continue
            if not self._enough(data):
                continue
            self._set_meta(store, ATTEMPT_KEY.format(setting=setting), now)
            jobs.append((setting, data.copy()))
        want_recs = self._recommend is not False and bool(jobs or not self._recs_tried)
        if not jobs and not (want_recs and self._history is not None and len(self._history)):
            return
        self._recs_tried = self._recs_tried or want_recs
        history = self.history(store, now).copy()
        if self.background:
            self._training = threading.Thread(
                target=self._train_all, args=(jobs, history, now, want_recs), name="risk-training", daemon=True
            )
            self._training.start()
        else:
            self._train_all(jobs, history, now, want_recs)

    def _train_all(self, jobs: list[tuple[str, pd.DataFrame]], history: pd.DataFrame, now: float, recs: bool) -> None:
        for setting, data in jobs:
            try:
                result = self.train(setting, data, history, now)
            except Exception as exc:
                self._error("train", "training the %s model failed: %s", setting, exc, exc=True)
                result = "failed"
            with self._lock:
                self._retrains[(setting, result)] += 1
        if recs:
            self._refresh_recommendations(history)

    def train(self, setting: str, data: pd.DataFrame, history: pd.DataFrame, now: float) -> str:
        """Fit a candidate for ``setting`` on ``data``, compare it with the serving model, save and swap it in.

        Args:
            setting: ``submit`` or ``run``.
            data: labelled jobs (see :meth:`training_data`).
            history: finished jobs (the ``history`` of the pipeline's predictions).
            now: the cycle's time.

        Returns:
            ``"accepted"`` or ``"rejected"`` (see the module docstring's policy).

        Raises:
            ValueError: too few jobs or a single class in the training part; anything the pipeline raises.

        """
        train, hold, t_h = time_holdout(data)
        cand = self._factory(setting, self.config.models, self.config.cost_ratio, self.seed)
        cand.fit(train)
        y = hold["failed"].astype(float).to_numpy().astype(int)
        w = submission_weights(hold)  # one vote per sbatch: a 400-task array must not decide the comparison alone
        cols = _predict_all(cand, hold, history)
        cand_m = holdout_metrics(y, cols["risk"], w)
        members = {
            name: holdout_metrics(y, cols[name], w)["auc_roc"]
            for name in cols.columns
            if name not in ("risk", "autoencoder_score", "ood", "ood_score") and not name.startswith("p_")
        }
        if "baseline" not in members:
            members["baseline"] = holdout_metrics(y, baseline_scores(hold, history), w)["auc_roc"]
        with self._lock:
            current = self._serving.get(setting)
        compare = {"on": "holdout", "n": int(len(hold))}
        cur_auc: float | None = None
        cand_auc = cand_m["auc_roc"]
        if current is not None:
            mask = np.ones(len(hold), dtype=bool)
            seen_until = current.metadata.get("train_end")
            if isinstance(seen_until, int | float) and seen_until >= t_h:
                unseen = hold["submit_time"].to_numpy(float) > seen_until
                yu = y[unseen]
                if unseen.sum() >= MIN_COMPARE_JOBS and 0 < yu.sum() < len(yu):
                    mask = unseen
                    compare = {"on": "holdout_unseen_by_current", "n": int(unseen.sum())}
                else:
                    compare["note"] = "current model saw part of the holdout"
            try:
                cur_risk = current.pipeline.predict(hold, history)["risk"].to_numpy(float)
                cur_auc = holdout_metrics(y[mask], cur_risk[mask], w[mask])["auc_roc"]
            except Exception as exc:  # e.g. an old artefact that no longer fits the data: it cannot win
                log.warning("risk: the serving %s model cannot score the holdout: %s", setting, exc)
                cur_auc = math.nan
            cand_auc = holdout_metrics(y[mask], cols["risk"].to_numpy(float)[mask], w[mask])["auc_roc"]
            compare.update({"candidate_auc_roc": cand_auc, "current_auc_roc": cur_auc, "current": current.version})
        accepted = accept_candidate(cand_auc, cur_auc)
        log.info(
            "risk: %s candidate AUC %.3f vs serving %s: %s",
            setting,
            cand_auc,
            "none" if cur_auc is None else f"{cur_auc:.3f}",
            "accepted" if accepted else "rejected",
        )
        if not accepted:
            return "rejected"
        pmeta = dict(getattr(cand, "metadata", {}) or {})
        threshold = float(getattr(cand, "threshold", math.nan))
        if not math.isfinite(threshold):
            threshold = 1.0 / (1.0 + self.config.cost_ratio)
        drift = {}
        for col in _drift_columns(setting):
            if col in train.columns:
                ref = psi_reference(pd.to_numeric(train[col], errors="coerce").to_numpy(float))
                if ref is not None:
                    drift[col] = ref
        sub = train["submit_time"].to_numpy(float)
        meta = {
            "setting": setting,
            "models": list(self.config.models),
            "trained_at": now,
            "train_start": float(np.nanmin(sub)),
            "train_end": float(np.nanmax(np.fmax(sub, _col(train, "end_time")))),
            "holdout_start": t_h,
            "n_train": int(len(train)),
            "n_holdout": int(len(hold)),
            "n_train_failures": int(train["failed"].astype(float).sum()),
            "features": list(pmeta.get("features") or getattr(cand, "feature_names", []) or []),
            "holdout": {"pipeline": cand_m, "auc_roc": members},
            "comparison": compare,
            "threshold": threshold,
            "cost_ratio": self.config.cost_ratio,
            "drift_reference": drift,
            "pipeline": {k: v for k, v in pmeta.items() if k not in ("threshold_table_cal",)},
        }
        try:
            version = self.registry.save(cand, meta, setting=setting)
        except Exception as exc:
            self._error("registry", "cannot save the %s model: %s", setting, exc, exc=True)
            raise
        saved = self.registry.metadata(setting, version) or {**meta, "version": version, "created_at": now}
        with self._lock:
            self._serving[setting] = ServingModel(setting, version, cand, saved)
            self._drift.pop(setting, None)
            self._drift_jobs.pop(setting, None)
        self._last_drift = None  # recompute against the new reference at the next cycle
        return "accepted"

    def _refresh_recommendations(self, history: pd.DataFrame) -> None:
        mod = self._recommend
        if mod is None:
            try:
                from . import recommend as mod
            except ImportError:
                self._recommend = False
                return
            self._recommend = mod
        if mod is False or history.empty:
            return
        try:
            fams = list(mod.families(mod.compute(history)))
        except Exception as exc:
            self._error("recommend", "recommendations failed: %s", exc, exc=True)
            return
        with self._lock:
            self._recs = fams

    # -- drift -----------------------------------------------------------------------------------------------

    def _maybe_drift(self, store: Any, now: float) -> None:
        if self._last_drift is not None and now - self._last_drift < DRIFT_EVERY:
            return
        self._last_drift = now
        with self._lock:
            models = dict(self._serving)
        for setting, m in models.items():
            ref = m.metadata.get("drift_reference") or {}
            if not ref:
                continue
            try:
                if setting == "submit":
                    h = self.history(store, now)
                    recent = h[pd.to_numeric(h["end_time"], errors="coerce") >= now - self.config.drift_window]
                else:
                    load = getattr(store, "load_snapshots", None)
                    recent = load(since=now - self.config.drift_window) if load else None
                out: dict[str, float] = {}
                n_recent = 0 if recent is None else len(recent)
                if n_recent:
                    for col, r in ref.items():
                        if col in recent.columns:
                            v = feature_psi(r, pd.to_numeric(recent[col], errors="coerce").to_numpy(float))
                            if v is not None:
                                out[col] = v
            except Exception as exc:
                self._error("drift", "drift of the %s model failed: %s", setting, exc, exc=True)
                continue
            with self._lock:
                self._drift[setting] = out
                self._drift_jobs[setting] = n_recent

    # -- scoring ---------------------------------------------------------------------------------------------

    def _score(self, active: pd.DataFrame | None, now: float) -> None:
        if active is None:
            with self._lock:
                if self._scores is not None and now - self._scores.computed_at > self.scores_max_age:
                    self._scores = None  # too old to describe the queue: absent beats wrong
            return
        history = self._history if self._history is not None else pd.DataFrame(columns=["submit_time", "failed"])
        with self._lock:
            serving = dict(self._serving)
        baseline_threshold = 1.0 / (1.0 + self.config.cost_ratio)
        parts = []
        used: dict[str, tuple[str, str]] = {}
        for state in _ACTIVE_STATES:
            jobs = active[active["state"] == state]
            if jobs.empty:
                continue
            order = ("submit",) if state == "PENDING" else ("run", "submit")
            model = next((serving[s] for s in order if s in serving), None)
            res = None
            if model is not None:
                try:
                    res = model.pipeline.predict(jobs, history).reindex(jobs.index)
                    res["threshold"] = model.threshold
                    res["setting"], res["version"] = model.setting, model.version
                except Exception as exc:
                    self._error(
                        "score", "the %s model failed to score %s jobs: %s", model.setting, state, exc, exc=True
                    )
                    res, model = None, None
            if res is None:
                try:
                    risk = baseline_scores(jobs, history) if len(history) else np.full(len(jobs), np.nan)
                except Exception as exc:
                    self._error("score", "baseline scoring failed: %s", exc, exc=True)
                    risk = np.full(len(jobs), np.nan)
                res = pd.DataFrame({"risk": risk, "threshold": baseline_threshold}, index=jobs.index)
                res["setting"], res["version"] = "submit", BASELINE_VERSION
            used[state] = (str(res["setting"].iloc[0]), str(res["version"].iloc[0]))
            parts.append((jobs, res, model))
        ms = MetricSet(RISK_METRICS)
        self._publish(ms, parts, used, history, now)
        with self._lock:
            self._scores = _Scores(now, ms.families())

    def _publish(
        self,
        ms: MetricSet,
        parts: list[tuple[pd.DataFrame, pd.DataFrame, ServingModel | None]],
        used: dict[str, tuple[str, str]],
        history: pd.DataFrame,
        now: float,
    ) -> None:
        frames = []
        for jobs, res, _ in parts:
            f = jobs[["job_id", "state"]].copy()
            for c in ("user", "account", "partition"):
                f[c] = jobs[c].astype(object).where(jobs[c].notna(), "") if c in jobs.columns else ""
            f = f.join(res)
            frames.append(f)
        ms.add("nomade_job_risk_last_scored_timestamp_seconds", now)
        for state, (setting, version) in used.items():
            ms.info("nomade_job_risk_scoring_info", state=state, setting=setting, version=version)
        if not frames:
            for state in _ACTIVE_STATES:
                ms.add("nomade_job_risk_scored_jobs", 0, state=state)
            ms.add("nomade_job_risk_series_dropped", 0)
            return
        allj = pd.concat(frames)
        allj = allj[np.isfinite(pd.to_numeric(allj["risk"], errors="coerce").astype(float))]
        high = allj["risk"] >= allj["threshold"]
        for state in _ACTIVE_STATES:
            ms.add("nomade_job_risk_scored_jobs", int((allj["state"] == state).sum()), state=state)
        for key, mean_name, high_name in (
            ("partition", "nomade_job_risk_partition_mean_score", "nomade_job_risk_partition_high_risk_jobs"),
            ("user", "nomade_job_risk_user_mean_score", "nomade_job_risk_user_high_risk_jobs"),
        ):
            g = allj.assign(_high=high).groupby(key, sort=True)
            for name, grp in g:
                ms.add(mean_name, float(grp["risk"].mean()), **{key: str(name)})
                ms.add(high_name, int(grp["_high"].sum()), **{key: str(name)})
        top = allj.sort_values("risk", ascending=False, kind="stable").head(self.config.max_scored_jobs)
        ms.add("nomade_job_risk_series_dropped", len(allj) - len(top))
        score: dict[tuple[str, ...], float] = {}
        for r in top.itertuples(index=False):
            score[(str(r.job_id), str(r.user), str(r.account), str(r.partition), str(r.state))] = float(r.risk)
        ms.extend("nomade_job_risk_score", score)
        for c in [c for c in top.columns if c.startswith("p_")]:
            ms.extend(
                "nomade_job_risk_class_probability",
                {(str(j), c[2:]): v for j, v in zip(top["job_id"], top[c].astype(float), strict=True)},
            )
        if "ood" in top.columns:
            ood = top[top["ood"].notna()]
            ms.extend(
                "nomade_job_risk_ood",
                {(str(j),): float(bool(v)) for j, v in zip(ood["job_id"], ood["ood"], strict=True)},
            )
        if "ood_score" in top.columns:
            ms.extend(
                "nomade_job_risk_ood_score",
                {(str(j),): float(v) for j, v in zip(top["job_id"], top["ood_score"].astype(float), strict=True)},
            )
        # Explanations for the published high-risk jobs, model by model (the baseline has none).
        top_high = set(top.index[top["risk"] >= top["threshold"]])
        for jobs, _, model in parts:
            if model is None:
                continue
            sel = jobs.loc[[i for i in jobs.index if i in top_high]]
            if sel.empty:
                continue
            try:
                drivers = model.pipeline.explain(sel, history, top=3)
                for jid, feats in zip(sel["job_id"], drivers, strict=True):
                    for rank, (feat, contrib) in enumerate(feats, start=1):
                        ms.add("nomade_job_risk_driver", contrib, job_id=str(jid), rank=str(rank), feature=str(feat))
                nb = model.pipeline.neighbours(sel, history, k=10)
                for idx, row in nb.iterrows():
                    jid = str(sel.at[idx, "job_id"])
                    n = row.get("n_neighbours")
                    ms.add("nomade_job_risk_neighbours", n, job_id=jid)
                    if n and n > 0:
                        for c in nb.columns:
                            # zero shares are left out: a known 0, but ~12 classes per job would be mostly zeros
                            if c.startswith("share_") and row[c] > 0:
                                ms.add("nomade_job_risk_neighbour_share", row[c], job_id=jid, failure_class=c[6:])
            except Exception as exc:
                self._error("explain", "explanations of the %s model failed: %s", model.setting, exc, exc=True)

    # -- publishing ------------------------------------------------------------------------------------------

    def families(self) -> list[Metric]:
        """The engine's metric families: the last scores, model and store metrics, recommendations."""
        with self._lock:
            scores = self._scores
            serving = dict(self._serving)
            drift = {k: dict(v) for k, v in self._drift.items()}
            drift_jobs = dict(self._drift_jobs)
            retrains = dict(self._retrains)
            store_jobs = self._store_jobs
            recs = list(self._recs or [])
        ms = MetricSet(MODEL_METRICS)
        for setting in self.config.settings:
            m = serving.get(setting)
            for result in _RESULTS:
                ms.add(
                    "nomade_model_retrains_total", retrains.get((setting, result), 0), setting=setting, result=result
                )
            if m is None:  # no accepted model: nothing to describe (scoring_info says "baseline" where used)
                continue
            meta = m.metadata
            kept = ((meta.get("pipeline") or {}).get("selection") or {}).get("kept") or meta.get("models") or []
            ms.info("nomade_model_info", setting=setting, version=m.version, models=",".join(map(str, kept)))
            ms.add("nomade_model_trained_timestamp_seconds", _num(meta.get("created_at")), setting=setting)
            ms.add("nomade_model_training_jobs", _num(meta.get("n_train")), setting=setting)
            hold = meta.get("holdout") or {}
            ms.add(
                "nomade_model_auc_roc",
                _num((hold.get("pipeline") or {}).get("auc_roc")),
                setting=setting,
                model="pipeline",
            )
            for name, auc in (hold.get("auc_roc") or {}).items():
                ms.add("nomade_model_auc_roc", _num(auc), setting=setting, model=str(name))
            ms.add("nomade_model_brier_score", _num((hold.get("pipeline") or {}).get("brier")), setting=setting)
            ms.add("nomade_model_threshold", _num(m.threshold), setting=setting)
            for feat, v in sorted(drift.get(setting, {}).items()):
                ms.add("nomade_model_drift_psi", v, setting=setting, feature=feat)
            ms.add("nomade_model_drift_jobs", drift_jobs.get(setting), setting=setting)
        if store_jobs is not None:
            ms.add("nomade_model_store_jobs", store_jobs[0])
            ms.add("nomade_model_store_failed_jobs", store_jobs[1])
        ms.add("nomade_model_load_errors_total", self.registry.load_errors)
        out = list(scores.families) if scores is not None else []
        return out + ms.families() + recs


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def _col(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(float)


def _normalise_finished(df: pd.DataFrame) -> pd.DataFrame:
    """Finished-job frame with ``failed`` as float 0/1 (NaN unknown) and numeric times."""
    out = df.copy()
    if "failed" in out.columns:
        out["failed"] = pd.to_numeric(out["failed"].astype(object), errors="coerce").astype(float)
    for c in ("submit_time", "start_time", "end_time"):
        if c in out.columns:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out


def _predict_all(pipeline: Any, jobs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Each member's P(fail) and the served ``risk`` when the pipeline offers ``predict_models``, else ``risk``."""
    pm = getattr(pipeline, "predict_models", None)
    if callable(pm):
        return pm(jobs, history)
    return pipeline.predict(jobs, history)


__all__ = [
    "AUC_TOLERANCE",
    "RiskEngine",
    "ServingModel",
    "accept_candidate",
    "baseline_scores",
    "bin_shares",
    "feature_psi",
    "holdout_metrics",
    "psi",
    "psi_reference",
    "time_holdout",
]
