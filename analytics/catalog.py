"""Declarations of every metric the analytics service (``nomade-analytics``) publishes on its ``/metrics``.

Two families of names:

* ``nomade_trend_*`` — one set per watched series and watch (see :mod:`nomade.analytics.config`). Their label set
  is ``watch`` (the watch's name) **plus the watched series' identifying labels**: the source series' labels minus
  ``__name__``, ``job`` and ``instance`` (unless the watch keeps them with ``keep_labels``). These vary from watch to
  watch (``mountpoint``/``device``/``fstype``/``node`` for filesystems, ``job_id``/``node`` for job memory...), so
  only the fixed labels are declared here; a published series joins back to its source on the shared labels
  (``nomade_trend_level{watch="filesystem_used"} / on(node, mountpoint) nomade_filesystem_size_bytes``).
* ``nomade_analytics_*`` — the service's own health (declared labels are the complete label sets).
* ``nomade_job_risk_*`` and ``nomade_model_*`` — failure-risk scores of pending and running jobs and the models
  behind them (:mod:`nomade.analytics.risk`); ``nomade_recommendation_*`` (:mod:`nomade.analytics.recommend`).

Values of ``nomade_trend_*`` are in the watch's unit (``unit`` in its configuration: bytes, seconds, jobs...) and
per second / per second² for the derivatives, as DESIGN.md ("Derivatives") requires; dashboards convert.

This module imports nothing heavy (no numpy), so the metric catalog and the docs can list it cheaply.
"""

from __future__ import annotations

from nomade.exporter.metrics import MetricSpec

SERIES_LABELS_NOTE = "plus the watched series' identifying labels"
"""What the catalog appends to the labels of the ``nomade_trend_*`` families (their label sets vary per watch)."""

TREND_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "nomade_trend_level",
        "gauge",
        "Fitted value of the watched series at the evaluation time (local quadratic regression), in the watch's unit.",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_level_stderr",
        "gauge",
        "Standard error of nomade_trend_level, in the watch's unit.",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_slope_per_second",
        "gauge",
        "First derivative of the fitted curve at the evaluation time (watch unit per second).",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_slope_stderr",
        "gauge",
        "Standard error of nomade_trend_slope_per_second (watch unit per second).",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_acceleration_per_second_squared",
        "gauge",
        "Second derivative of the fitted curve (watch unit per second squared; twice the quadratic coefficient).",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_acceleration_stderr",
        "gauge",
        "Standard error of nomade_trend_acceleration_per_second_squared (watch unit per second squared).",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_residual_stddev",
        "gauge",
        "Standard deviation of the samples around the fitted curve, in the watch's unit.",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_projected_value",
        "gauge",
        "Value of the fitted curve extrapolated to evaluation time + horizon, in the watch's unit.",
        ("watch", "horizon"),
    ),
    MetricSpec(
        "nomade_trend_projected_value_lower",
        "gauge",
        "Lower end of the confidence band of nomade_trend_projected_value.",
        ("watch", "horizon"),
    ),
    MetricSpec(
        "nomade_trend_projected_value_upper",
        "gauge",
        "Upper end of the confidence band of nomade_trend_projected_value.",
        ("watch", "horizon"),
    ),
    MetricSpec(
        "nomade_trend_threshold",
        "gauge",
        "Threshold the series is compared with (the watch's threshold, or the matching threshold_query value).",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_time_to_threshold_seconds",
        "gauge",
        "Seconds until the fitted curve first reaches the threshold (0 when already past it); absent when it never "
        "does.",
        ("watch",),
        "seconds",
    ),
    MetricSpec(
        "nomade_trend_time_to_threshold_lower_seconds",
        "gauge",
        "Early end of the confidence band of nomade_trend_time_to_threshold_seconds.",
        ("watch",),
        "seconds",
    ),
    MetricSpec(
        "nomade_trend_time_to_threshold_upper_seconds",
        "gauge",
        "Late end of the confidence band of nomade_trend_time_to_threshold_seconds; absent when the slow bound "
        "never crosses.",
        ("watch",),
        "seconds",
    ),
    MetricSpec(
        "nomade_trend_state",
        "gauge",
        "Trend class as a state set: 1 for the current state, 0 for the others (stable, linear_growth, "
        "linear_decline, accelerating_growth, decelerating_growth, accelerating_decline, decelerating_decline).",
        ("watch", "state"),
    ),
    MetricSpec(
        "nomade_trend_points",
        "gauge",
        "Samples of the window that the fit used.",
        ("watch",),
    ),
    MetricSpec(
        "nomade_trend_window_seconds",
        "gauge",
        "Length of the fit window.",
        ("watch",),
        "seconds",
    ),
)

SELF_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "nomade_analytics_up",
        "gauge",
        "1 if the last cycle reached Prometheus and produced results, else 0 (the last good values keep being served).",
    ),
    MetricSpec(
        "nomade_analytics_queries_total",
        "counter",
        "Queries sent to Prometheus, by watch and kind (range, instant); a cycle sends a number that depends on "
        "the watches only, never on the series behind them (watch=risk: the risk engine's job harvest).",
        ("watch", "kind"),
    ),
    MetricSpec(
        "nomade_analytics_http_requests_total",
        "counter",
        "HTTP requests sent to Prometheus, retries and split ranges included.",
    ),
    MetricSpec(
        "nomade_analytics_cycles_total",
        "counter",
        "Analytics cycles run, by result (success, failure).",
        ("result",),
    ),
    MetricSpec(
        "nomade_analytics_cycle_duration_seconds",
        "gauge",
        "Duration of the last cycle.",
        (),
        "seconds",
    ),
    MetricSpec(
        "nomade_analytics_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful cycle: the age of the nomade_trend_* values being served.",
        (),
        "seconds",
    ),
    MetricSpec(
        "nomade_analytics_watch_last_success_timestamp_seconds",
        "gauge",
        "Unix time at which the watch's values being served were computed.",
        ("watch",),
        "seconds",
    ),
    MetricSpec(
        "nomade_analytics_watched_series",
        "gauge",
        "Series the watch's query returned in its last successful evaluation (after removing duplicates).",
        ("watch",),
    ),
    MetricSpec(
        "nomade_analytics_estimated_series",
        "gauge",
        "Series of the watch with an estimate (enough fresh points for a fit).",
        ("watch",),
    ),
    MetricSpec(
        "nomade_analytics_cycle_errors_total",
        "counter",
        "Problems met while evaluating a watch, by reason: unavailable (Prometheus unreachable or failing), "
        "promql (expression rejected), duplicate_series (series equal after dropping job/instance; the one with "
        "most points kept), ambiguous_threshold (several threshold series match one key; none used), estimate "
        "(the engine failed); with watch=risk the risk engine's: unavailable, promql, harvest, active, store, "
        "train, registry, score, explain, drift, recommend, internal.",
        ("watch", "reason"),
    ),
    MetricSpec(
        "nomade_analytics_watch_info",
        "info",
        "One per configured watch: its unit, threshold direction and query.",
        ("watch", "unit", "direction", "query"),
    ),
)

_JOB = ("job_id",)

RISK_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "nomade_job_risk_score",
        "gauge",
        "Calibrated probability (0-1) that the pending or running job fails (any failure class, cancellations "
        "included), from the accepted model of its setting or, before one exists, the user-history baseline.",
        ("job_id", "user", "account", "partition", "state"),
    ),
    MetricSpec(
        "nomade_job_risk_class_probability",
        "gauge",
        "Probability (0-1) that the job ends in this failure class (timeout, out_of_memory, failed, node_fail, "
        "cancelled); absent under the baseline.",
        ("job_id", "failure_class"),
    ),
    MetricSpec(
        "nomade_job_risk_ood",
        "gauge",
        "1 when the job lies outside the training distribution (its score deserves less trust), else 0.",
        _JOB,
    ),
    MetricSpec(
        "nomade_job_risk_ood_score",
        "gauge",
        "Out-of-distribution score of the job (higher = less like the training jobs).",
        _JOB,
    ),
    MetricSpec(
        "nomade_job_risk_driver",
        "gauge",
        "Contribution of a feature to the job's risk score (top 3 by rank), for jobs at or above the alert "
        "threshold only.",
        ("job_id", "rank", "feature"),
    ),
    MetricSpec(
        "nomade_job_risk_neighbour_share",
        "gauge",
        "Share (0-1) of the job's most similar finished jobs that ended in this failure class (success included), "
        "for jobs at or above the alert threshold only; classes none of them ended in are left out.",
        ("job_id", "failure_class"),
    ),
    MetricSpec(
        "nomade_job_risk_neighbours",
        "gauge",
        "Number of similar finished jobs behind nomade_job_risk_neighbour_share.",
        _JOB,
    ),
    MetricSpec(
        "nomade_job_risk_partition_mean_score",
        "gauge",
        "Mean risk score of the pending and running jobs of the partition (all scored jobs, not only the published "
        "ones).",
        ("partition",),
    ),
    MetricSpec(
        "nomade_job_risk_partition_high_risk_jobs",
        "gauge",
        "Pending and running jobs of the partition whose risk is at or above their model's alert threshold.",
        ("partition",),
    ),
    MetricSpec(
        "nomade_job_risk_user_mean_score",
        "gauge",
        "Mean risk score of the user's pending and running jobs.",
        ("user",),
    ),
    MetricSpec(
        "nomade_job_risk_user_high_risk_jobs",
        "gauge",
        "The user's pending and running jobs whose risk is at or above their model's alert threshold.",
        ("user",),
    ),
    MetricSpec(
        "nomade_job_risk_scored_jobs",
        "gauge",
        "Jobs scored in the last scoring, by state (PENDING, RUNNING).",
        ("state",),
    ),
    MetricSpec(
        "nomade_job_risk_series_dropped",
        "gauge",
        "Scored jobs left out of the per-job series by max_scored_jobs (the lowest risks are dropped; the "
        "aggregates still count them).",
    ),
    MetricSpec(
        "nomade_job_risk_scoring_info",
        "info",
        "Which model scores the jobs of a state: setting (submit or run) and version (baseline = the user-history "
        "baseline, before a model is accepted).",
        ("state", "setting", "version"),
    ),
    MetricSpec(
        "nomade_job_risk_last_scored_timestamp_seconds",
        "gauge",
        "Unix time of the scoring whose per-job values are being served.",
        (),
        "seconds",
    ),
)
"""Per-job failure-risk scores and their aggregates (:mod:`nomade.analytics.risk`). Per-job series exist for pending
and running jobs only, at most ``[analytics.risk] max_scored_jobs`` of them (DESIGN.md principle 4)."""

MODEL_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "nomade_model_info",
        "info",
        "The accepted model of a setting: its version and the members the pipeline kept (absent before a model "
        "is accepted; nomade_job_risk_scoring_info then names the baseline).",
        ("setting", "version", "models"),
    ),
    MetricSpec(
        "nomade_model_trained_timestamp_seconds",
        "gauge",
        "Unix time at which the serving model was trained.",
        ("setting",),
        "seconds",
    ),
    MetricSpec(
        "nomade_model_training_jobs",
        "gauge",
        "Labelled jobs (run setting: running-job snapshots) the serving model was trained on.",
        ("setting",),
    ),
    MetricSpec(
        "nomade_model_auc_roc",
        "gauge",
        "AUC-ROC of the serving model on its time-ordered holdout (the newest jobs), per model: pipeline (what is "
        "served), baseline (the user's past failure rate) and the pipeline's members when it reports them.",
        ("setting", "model"),
    ),
    MetricSpec(
        "nomade_model_brier_score",
        "gauge",
        "Brier score (mean squared error of the probability, lower is better) of the serving model on its holdout.",
        ("setting",),
    ),
    MetricSpec(
        "nomade_model_threshold",
        "gauge",
        "Alert threshold on the risk score chosen from the cost ratio (jobs at or above it are high-risk).",
        ("setting",),
    ),
    MetricSpec(
        "nomade_model_drift_psi",
        "gauge",
        "Population stability index of an input feature between the training sample and the jobs of the drift "
        "window (Siddiqi 2006: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift).",
        ("setting", "feature"),
    ),
    MetricSpec(
        "nomade_model_drift_jobs",
        "gauge",
        "Recent jobs (drift window) behind nomade_model_drift_psi; no PSI is published below 200 (sampling noise).",
        ("setting",),
    ),
    MetricSpec(
        "nomade_model_retrains_total",
        "counter",
        "Retraining attempts by result: accepted (the candidate replaced the model), rejected (worse than the "
        "serving model on the same holdout, which stays), failed (training raised).",
        ("setting", "result"),
    ),
    MetricSpec(
        "nomade_model_store_jobs",
        "gauge",
        "Finished jobs in the training store within the history window.",
    ),
    MetricSpec(
        "nomade_model_store_failed_jobs",
        "gauge",
        "Failed jobs among nomade_model_store_jobs (training waits for min_train_failures of them).",
    ),
    MetricSpec(
        "nomade_model_load_errors_total",
        "counter",
        "Model artefacts that could not be loaded (corrupt, unreadable, unsafe permissions); an older one is used.",
    ),
)
"""Model metadata and quality (:mod:`nomade.analytics.risk`, :mod:`nomade.analytics.model_store`)."""

try:  # H3b's recommendations; declared there so that module owns its names
    from .recommend import RECOMMEND_METRICS
except ImportError:  # pragma: no cover - only while the module does not exist
    RECOMMEND_METRICS: tuple[MetricSpec, ...] = ()  # type: ignore[no-redef]

PREDICTION_METRICS: tuple[MetricSpec, ...] = RISK_METRICS + MODEL_METRICS + tuple(RECOMMEND_METRICS)
"""Everything the prediction engine publishes (risk scores, models, recommendations)."""

ANALYTICS_METRICS: tuple[MetricSpec, ...] = TREND_METRICS + SELF_METRICS + PREDICTION_METRICS
"""Everything ``nomade-analytics`` may publish."""

SPECS: dict[str, MetricSpec] = {s.name: s for s in ANALYTICS_METRICS}


def catalog() -> list[tuple[str, MetricSpec]]:
    """``(owner, spec)`` pairs in the shape of :func:`nomade.exporter.catalog.catalog`.

    The owner is ``analytics`` for the ``nomade_trend_*`` families (labels: ``watch`` and the watched series'
    own labels) and ``analytics-self`` for the service's health metrics.
    """
    return (
        [("analytics", s) for s in TREND_METRICS]
        + [("analytics-self", s) for s in SELF_METRICS]
        + [("analytics-risk", s) for s in RISK_METRICS]
        + [("analytics-model", s) for s in MODEL_METRICS]
        + [("analytics-recommend", s) for s in RECOMMEND_METRICS]
    )


def render_markdown() -> str:
    """The analytics section of ``docs/metrics.md`` (two tables: trends, then the service's own metrics)."""
    lines = [
        "## analytics (`nomade-analytics`, 127.0.0.1:9867)",
        "",
        "Trend estimates of the watched series (local quadratic regression over each watch's window; DESIGN.md "
        '"Derivatives"). Labels: `watch`, ' + SERIES_LABELS_NOTE + " (the source labels minus `__name__`, `job` "
        "and `instance`), so each result joins back to its source series. Values are in the watch's unit.",
        "",
    ]
    lines += _table(TREND_METRICS, extra=SERIES_LABELS_NOTE)
    lines += ["## analytics (self-metrics)", ""]
    lines += _table(SELF_METRICS)
    lines += [
        "## analytics (job failure risk)",
        "",
        "Scores of pending and running jobs (`[analytics.risk]`). Per-job series carry `job_id` (join with "
        "`nomade_slurm_queue_job_info`); at most `max_scored_jobs` jobs, the highest risks.",
        "",
    ]
    lines += _table(RISK_METRICS)
    lines += ["## analytics (models)", ""]
    lines += _table(MODEL_METRICS)
    if RECOMMEND_METRICS:
        lines += ["## analytics (recommendations)", ""]
        lines += _table(tuple(RECOMMEND_METRICS))
    return "\n".join(lines)


def _table(specs: tuple[MetricSpec, ...], extra: str = "") -> list[str]:
    out = ["| metric | type | unit | labels | help |", "|---|---|---|---|---|"]
    for s in specs:
        labels = ", ".join(f"`{label}`" for label in s.labels) or "—"
        if extra:
            labels += f", {extra}"
        help_text = s.help.replace("|", "\\|")
        out.append(f"| `{s.name}` | {s.type} | {s.unit or '—'} | {labels} | {help_text} |")
    out.append("")
    return out
