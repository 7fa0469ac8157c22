"""Health dashboard: NØMADE's own health (scrape targets, collectors, external commands, analytics, risk models).

Sources: Prometheus' synthetic ``up`` and ``scrape_duration_seconds`` of the exporter and analytics jobs
(``[monitoring] exporter_job`` and ``analytics_job``), the exporter's self-metrics (``nomade_collector_*``,
``nomade_exporter_*``), the analytics service's (``nomade_analytics_*``) and the risk models' (``nomade_model_*``).
Staleness turns red after ``[monitoring.thresholds] analytics_stale_after`` (600 s), the analytics-stale alert's
value; feature drift is coloured with Siddiqi's (2006) population stability index bands (0.1 and 0.25).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "health"
TITLE = "NØMADE / Exporter and analytics health"

PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds"})
"""Series this dashboard reads that Prometheus itself writes for every scrape target (not in the metric catalog)."""

_HIDDEN = {"Time": True, "__name__": True, "instance": True, "job": True}


def _organize(hide: dict[str, bool], rename: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": "organize", "options": {"excludeByName": hide, "indexByName": {}, "renameByName": rename or {}}}


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The health dashboard's JSON model (see :func:`nomade.dashboards.common.dashboard`)."""
    f = c.Sel(cfg)
    t = cfg.thresholds
    s = f()
    sn = f(node=True)
    exp = f(job=cfg.exporter_job)
    ana = f(job=cfg.analytics_job)
    both = f(job=f"~{cfg.exporter_job}|{cfg.analytics_job}")
    stale_steps = c.steps("green", (t.analytics_stale_after / 2, "orange"), (t.analytics_stale_after, "red"))
    updown = c.value_mapping({0: ("down", "red"), 1: ("up", "green")})

    def rate(metric: str, sel: str = sn) -> str:
        return f"rate({metric}{sel}[$__rate_interval])"

    panels = [
        c.row("Scrape targets"),
        c.stat(
            "Exporter targets up",
            [c.query(f"sum(up{exp})", instant=True)],
            unit="short",
            graph_mode="none",
            description=f"Targets of the Prometheus job {cfg.exporter_job!r} that answered the last scrape.",
        ),
        c.stat(
            "Exporter targets down",
            [c.query(f"sum(1 - up{exp})", instant=True)],
            unit="short",
            graph_mode="none",
            thresholds=c.steps("green", (1.0, "red")),
            description=f"Targets of the Prometheus job {cfg.exporter_job!r} whose last scrape failed.",
        ),
        c.stat(
            "Analytics service",
            [c.query(f"min(up{ana}) * min(nomade_analytics_up{s})", instant=True)],
            unit="none",
            graph_mode="none",
            color_mode="background",
            mappings=updown,
            thresholds=c.steps("red", (1.0, "green")),
            description="Up when Prometheus scrapes the analytics service and its last cycle reached Prometheus "
            "(nomade_analytics_up).",
        ),
        c.stat(
            "Age of the analytics results",
            [c.query(f"time() - max(nomade_analytics_last_success_timestamp_seconds{s})")],
            unit="s",
            thresholds=stale_steps,
            graph_mode="none",
            description="Seconds since the analytics service's last successful cycle; red from "
            f"{t.analytics_stale_after:g} s ([monitoring.thresholds] analytics_stale_after).",
        ),
        c.stat(
            "Series per exporter scrape",
            [c.query(f"sum(nomade_exporter_scrape_series{sn})")],
            unit="short",
            description="Samples in the exporters' previous scrape (cardinality).",
        ),
        c.stat(
            "Model load errors",
            [c.query(f"sum(increase(nomade_model_load_errors_total{s}[$__range]))", instant=True)],
            unit="short",
            graph_mode="none",
            thresholds=c.steps("green", (1.0, "red")),
            description="Model artefacts that could not be loaded in the time range (an older model was used).",
        ),
        c.state_timeline(
            "Scrape targets",
            [c.query(f"up{both}", "{{job}} {{instance}} {{node}}")],
            unit="none",
            mappings=updown,
            thresholds=c.steps("red", (1.0, "green")),
            description="Prometheus' up series of the NØMADE exporter and analytics targets.",
            width=12,
        ),
        c.timeseries(
            "Scrape duration",
            [c.query(f"scrape_duration_seconds{both}", "{{job}} {{instance}} {{node}}")],
            unit="s",
            min=0.0,
            description="How long Prometheus took to scrape each target (the exporter runs its collectors "
            "during the scrape).",
            width=12,
        ),
        c.row("Collectors"),
        c.state_timeline(
            "Collectors up",
            [c.query(f"nomade_collector_up{sn}", "{{node}} {{collector}}")],
            unit="none",
            mappings=updown,
            thresholds=c.steps("red", (1.0, "green")),
            description="1 when the collector's source answered in the last scrape (nomade_collector_up).",
            height=10,
        ),
        c.table(
            "Time since each collector's last success",
            [
                c.query(
                    f"time() - nomade_collector_last_success_timestamp_seconds{sn}",
                    instant=True,
                    table=True,
                )
            ],
            unit="s",
            thresholds=stale_steps,
            transformations=[_organize(_HIDDEN, {"Value": "since last success"})],
            overrides=[c.column_override("since last success", cell_type="color-background")],
            sort_by=[("since last success", True)],
            description="Seconds since each collector last collected successfully.",
            width=12,
        ),
        c.timeseries(
            "Collector duration",
            [c.query(f"nomade_collector_duration_seconds{sn}", "{{node}} {{collector}}")],
            unit="s",
            min=0.0,
            description="Time each collector took in the last scrape.",
        ),
        c.timeseries(
            "Collection failures and parse errors",
            [
                c.query(
                    f"sum by (node, collector, reason) ({rate('nomade_collector_failures_total')})",
                    "{{node}} {{collector}} {{reason}}",
                ),
                c.query(
                    f"sum by (node, collector) ({rate('nomade_collector_parse_errors_total')})",
                    "{{node}} {{collector}} parse errors",
                ),
            ],
            unit="ops",
            min=0.0,
            description="Failed collections per second by reason (error, timeout), and input lines or fields "
            "skipped because they could not be parsed.",
        ),
        c.timeseries(
            "External command runs",
            [c.query(f"sum by (node, command) ({rate('nomade_exporter_command_runs_total')})", "{{node}} {{command}}")],
            unit="ops",
            min=0.0,
            description="Runs of squeue, sinfo, sacct, sdiag... per second (cache misses).",
        ),
        c.timeseries(
            "External command errors",
            [
                c.query(
                    f"sum by (node, command, reason) ({rate('nomade_exporter_command_errors_total')})",
                    "{{node}} {{command}} {{reason}}",
                )
            ],
            unit="ops",
            min=0.0,
            description="Failed command runs per second by reason (missing, timeout, exit).",
        ),
        c.table(
            "Exporter versions",
            [c.query(f"nomade_exporter_build_info{sn}", instant=True, table=True)],
            unit="none",
            transformations=[_organize({**_HIDDEN, "Value": True})],
            description="Version of each exporter and of the Python running it.",
        ),
        c.row("Analytics"),
        c.timeseries(
            "Analytics cycles",
            [c.query(f"sum by (result) ({rate('nomade_analytics_cycles_total', s)}) * 60", "{{result}}")],
            unit="suffix: /min",
            min=0.0,
            description="Analytics cycles per minute by result (success, failure).",
        ),
        c.timeseries(
            "Queries to Prometheus",
            [
                c.query(f"sum by (watch) ({rate('nomade_analytics_queries_total', s)})", "{{watch}}"),
                c.query(f"sum({rate('nomade_analytics_http_requests_total', s)})", "HTTP requests"),
            ],
            unit="reqps",
            min=0.0,
            description="Queries per second by watch (O(watches), never O(series)) and the HTTP requests behind "
            "them (retries and split ranges included).",
        ),
        c.timeseries(
            "Cycle duration",
            [c.query(f"nomade_analytics_cycle_duration_seconds{s}", "cycle")],
            unit="s",
            min=0.0,
            description="Duration of the analytics service's last cycle.",
        ),
        c.timeseries(
            "Cycle errors",
            [
                c.query(
                    f"sum by (watch, reason) ({rate('nomade_analytics_cycle_errors_total', s)})",
                    "{{watch}} {{reason}}",
                )
            ],
            unit="ops",
            min=0.0,
            description="Problems met while evaluating a watch, per second, by reason (unavailable, promql, "
            "duplicate_series, ambiguous_threshold, estimate...).",
        ),
        c.bargauge(
            "Series with an estimate, per watch",
            [
                c.query(
                    f"nomade_analytics_estimated_series{s} / nomade_analytics_watched_series{s}",
                    "{{watch}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=c.steps("orange", (0.5, "green")),
            description="Share of each watch's series with enough fresh points for a fit (empty watches show "
            "no value).",
        ),
        c.table(
            "Age of each watch's values",
            [
                c.query(
                    f"time() - nomade_analytics_watch_last_success_timestamp_seconds{s}",
                    instant=True,
                    table=True,
                )
            ],
            unit="s",
            thresholds=stale_steps,
            transformations=[_organize(_HIDDEN, {"Value": "age"})],
            overrides=[c.column_override("age", cell_type="color-background")],
            sort_by=[("age", True)],
            description="Seconds since each watch's served values were computed.",
        ),
        c.row("Risk models"),
        c.table(
            "Serving models",
            [
                c.query(f"nomade_model_info{s}", instant=True, table=True),
            ],
            unit="none",
            transformations=[_organize({**_HIDDEN, "Value": True})],
            description="The accepted model of each setting (submit, run): version and members (absent before a "
            "model is accepted: the user-history baseline scores the jobs).",
            width=12,
        ),
        c.stat(
            "Model age",
            [c.query(f"time() - nomade_model_trained_timestamp_seconds{s}", "{{setting}}")],
            unit="s",
            graph_mode="none",
            text_mode="value_and_name",
            description="Time since the serving model of each setting was trained.",
            width=6,
        ),
        c.stat(
            "Training store",
            [
                c.query(f"sum(nomade_model_store_jobs{s})", "finished jobs"),
                c.query(f"sum(nomade_model_store_failed_jobs{s})", "failed"),
            ],
            unit="short",
            graph_mode="none",
            text_mode="value_and_name",
            description="Finished jobs in the training store within the history window, and the failed ones.",
            width=6,
        ),
        c.bargauge(
            "AUC-ROC on the holdout",
            [c.query(f"nomade_model_auc_roc{s}", "{{setting}} {{model}}", instant=True)],
            unit="none",
            min=0.5,
            max=1.0,
            decimals=3,
            thresholds=c.steps("red", (0.6, "orange"), (0.7, "green")),
            description="AUC-ROC of the serving model (pipeline), of the user-history baseline it must beat, and "
            "of the pipeline's members, on the time-ordered holdout (0.5 = chance).",
        ),
        c.stat(
            "Brier score and alert threshold",
            [
                c.query(f"nomade_model_brier_score{s}", "{{setting}} Brier"),
                c.query(f"nomade_model_threshold{s}", "{{setting}} threshold"),
            ],
            unit="none",
            decimals=3,
            graph_mode="none",
            text_mode="value_and_name",
            description="Brier score on the holdout (lower is better) and the risk threshold chosen from the cost "
            "ratio.",
        ),
        c.timeseries(
            "Feature drift (PSI)",
            [c.query(f"topk(10, nomade_model_drift_psi{s})", "{{setting}} {{feature}}")],
            unit="none",
            min=0.0,
            thresholds=c.steps("green", (0.1, "orange"), (0.25, "red")),
            threshold_style="dashed",
            description="Population stability index of the input features between training and recent jobs "
            "(Siddiqi 2006: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift); needs 200 recent jobs.",
        ),
        c.bargauge(
            "Retraining attempts over the time range",
            [
                c.query(
                    f"sum by (setting, result) (increase(nomade_model_retrains_total{s}[$__range]))",
                    "{{setting}} {{result}}",
                    instant=True,
                )
            ],
            unit="short",
            min=0.0,
            description="Retraining attempts by result: accepted, rejected (worse on the same holdout), failed.",
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="Health of NØMADE itself: scrape targets, collectors, external commands, analytics, models.",
        panels=panels,
        variables=c.standard_variables(cfg, partition=False, node_metric="nomade_collector_up"),
        tags=("health",),
    )
