"""Declarations of every metric the analytics service (``nomade-analytics``) publishes on its ``/metrics``.

Two families of names:

* ``nomade_trend_*`` — one set per watched series and watch (see :mod:`nomade.analytics.config`). Their label set
  is ``watch`` (the watch's name) **plus the watched series' identifying labels**: the source series' labels minus
  ``__name__``, ``job`` and ``instance`` (unless the watch keeps them with ``keep_labels``). These vary from watch to
  watch (``mountpoint``/``device``/``fstype``/``node`` for filesystems, ``job_id``/``node`` for job memory...), so
  only the fixed labels are declared here; a published series joins back to its source on the shared labels
  (``nomade_trend_level{watch="filesystem_used"} / on(node, mountpoint) nomade_filesystem_size_bytes``).
* ``nomade_analytics_*`` — the service's own health (declared labels are the complete label sets).

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
        "the watches only, never on the series behind them.",
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
        "(the engine failed).",
        ("watch", "reason"),
    ),
    MetricSpec(
        "nomade_analytics_watch_info",
        "info",
        "One per configured watch: its unit, threshold direction and query.",
        ("watch", "unit", "direction", "query"),
    ),
)

ANALYTICS_METRICS: tuple[MetricSpec, ...] = TREND_METRICS + SELF_METRICS
"""Everything ``nomade-analytics`` may publish."""

SPECS: dict[str, MetricSpec] = {s.name: s for s in ANALYTICS_METRICS}


def catalog() -> list[tuple[str, MetricSpec]]:
    """``(owner, spec)`` pairs in the shape of :func:`nomade.exporter.catalog.catalog`.

    The owner is ``analytics`` for the ``nomade_trend_*`` families (labels: ``watch`` and the watched series'
    own labels) and ``analytics-self`` for the service's health metrics.
    """
    return [("analytics", s) for s in TREND_METRICS] + [("analytics-self", s) for s in SELF_METRICS]


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
