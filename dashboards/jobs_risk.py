"""Jobs and risk dashboard: failure-risk scores of queued jobs with their explanation, failures, efficiency.

Sources: the analytics service's risk engine (``nomade_job_risk_*``: calibrated probability that a pending or running
job fails, the top feature contributions ``nomade_job_risk_driver`` and the outcomes of the most similar finished
jobs ``nomade_job_risk_neighbour_share``, both published for jobs at or above the model's alert threshold only), the
queue collector (``nomade_slurm_queue_job_info``: job name and nodes) and the accounting collector
(``nomade_slurm_job_finished_total`` by failure class, the efficiency histograms
``nomade_slurm_job_{cpu,memory}_efficiency_ratio``). The high-risk job count turns red at
``[monitoring.thresholds] high_risk_jobs`` (10), the value of the high-risk jobs alert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "jobs-risk"
TITLE = "NØMADE / Jobs and risk"

RISK_BUCKETS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Edges of the risk-distribution bars (deciles of the probability)."""

TOP_JOBS = 20
"""Rows of the top risky running jobs table."""

_HIDDEN = {"Time": True, "__name__": True, "instance": True, "job": True}


def _organize(hide: dict[str, bool], rename: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": "organize", "options": {"excludeByName": hide, "indexByName": {}, "renameByName": rename or {}}}


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The jobs and risk dashboard's JSON model (see :func:`nomade.dashboards.common.dashboard`)."""
    f = c.Sel(cfg)
    t = cfg.thresholds
    cl = cfg.cluster_label
    risk_steps = c.steps("green", (0.3, "orange"), (0.6, "red"))
    running = f"nomade_job_risk_score{f(partition=True, state='RUNNING')}"
    finished = "nomade_slurm_job_finished_total"

    def bucket(lo: float, hi: float) -> c.g.Target:
        upper = "<=" if hi >= 1.0 else "<"
        return c.query(
            f"count(nomade_job_risk_score{f(partition=True)} >= {lo:g} {upper} {hi:g}) or vector(0)",
            f"{lo:.1f}–{hi:.1f}",
            instant=True,
        )

    panels = [
        c.row("Risk now"),
        c.stat(
            "Scored jobs",
            [c.query(f"sum by (state) (nomade_job_risk_scored_jobs{f()})", "{{state}}", instant=True)],
            unit="short",
            graph_mode="none",
            text_mode="value_and_name",
            description="Pending and running jobs the risk engine scored in its last scoring.",
            width=5,
        ),
        c.stat(
            "High-risk jobs",
            [c.query(f"sum(nomade_job_risk_partition_high_risk_jobs{f(partition=True)})")],
            unit="short",
            thresholds=c.steps("green", (1.0, "orange"), (float(t.high_risk_jobs), "red")),
            description="Pending and running jobs at or above their model's alert threshold; red from "
            f"{t.high_risk_jobs} ([monitoring.thresholds] high_risk_jobs).",
            width=4,
        ),
        c.stat(
            "Age of the scores",
            [c.query(f"time() - max(nomade_job_risk_last_scored_timestamp_seconds{f()})")],
            unit="s",
            thresholds=c.steps("green", (t.analytics_stale_after, "red")),
            graph_mode="none",
            description="Seconds since the scoring whose values are served; red from "
            f"{t.analytics_stale_after:g} s ([monitoring.thresholds] analytics_stale_after).",
            width=4,
        ),
        c.table(
            "Scoring models",
            [c.query(f"nomade_job_risk_scoring_info{f()}", instant=True, table=True)],
            unit="none",
            transformations=[_organize({**_HIDDEN, "Value": True})],
            description="Model scoring each job state: setting (submit or run) and version (baseline = the user's "
            "past failure rate, before a model is accepted).",
            width=11,
            height=4,
        ),
        c.bargauge(
            "Risk distribution",
            [bucket(lo, hi) for lo, hi in zip(RISK_BUCKETS, RISK_BUCKETS[1:], strict=False)],
            unit="short",
            min=0.0,
            orientation="vertical",
            description="Scored pending and running jobs by risk decile (at most max_scored_jobs jobs, the "
            "highest risks, are published per job).",
            width=10,
        ),
        c.bargauge(
            "Mean risk by partition",
            [c.query(f"nomade_job_risk_partition_mean_score{f(partition=True)}", "{{partition}}", instant=True)],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=risk_steps,
            description="Mean risk score of the partition's pending and running jobs (all scored jobs).",
            width=7,
        ),
        c.bargauge(
            "High-risk jobs by user",
            [c.query(f"topk(10, nomade_job_risk_user_high_risk_jobs{f()})", "{{user}}", instant=True)],
            unit="short",
            min=0.0,
            description="The users with the most pending and running jobs at or above the alert threshold.",
            width=7,
        ),
        c.row("Top risky running jobs"),
        c.table(
            "Top risky running jobs",
            [
                c.query(
                    f"topk({TOP_JOBS}, {running}) * on ({cl}, job_id) group_left (job_name, nodelist) "
                    f"max by ({cl}, job_id, job_name, nodelist) (nomade_slurm_queue_job_info{f()})",
                    instant=True,
                    table=True,
                )
            ],
            unit="percentunit",
            thresholds=risk_steps,
            transformations=[_organize({**_HIDDEN, "state": True}, {"Value": "risk"})],
            overrides=[c.column_override("risk", cell_type="color-background", decimals=0)],
            sort_by=[("risk", True)],
            description=f"The {TOP_JOBS} running jobs most likely to fail (calibrated probability, any failure "
            "class), with their name and nodes. Why: the two tables below.",
            data_links=[
                c.data_link(
                    cfg,
                    "queue",
                    "Queue of partition ${__data.fields.partition}",
                    params="var-partition=${__data.fields.partition}",
                )
            ],  # fmt: skip
            height=9,
        ),
        c.table(
            "Why: top features",
            [c.query(f"nomade_job_risk_driver{f()} and on ({cl}, job_id) {running}", instant=True, table=True)],
            unit="short",
            decimals=3,
            transformations=[_organize(_HIDDEN, {"Value": "contribution"})],
            sort_by=[("job_id", False), ("rank", False)],
            description="The three features that pushed each high-risk running job's score most (rank 1 = "
            "largest contribution); published only for jobs at or above the model's alert threshold.",
            width=12,
            height=9,
        ),
        c.table(
            "Why: outcome of similar finished jobs",
            [
                c.query(
                    f"nomade_job_risk_neighbour_share{f()} and on ({cl}, job_id) {running}", instant=True, table=True
                )
            ],
            unit="percentunit",
            transformations=[_organize(_HIDDEN, {"Value": "share of neighbours"})],
            sort_by=[("job_id", False), ("share of neighbours", True)],
            description="How the most similar finished jobs ended (failure class, success included), for the "
            "high-risk running jobs; classes none of them ended in are left out.",
            width=12,
            height=9,
        ),
        c.row("Failures over time"),
        c.timeseries(
            "Finished jobs by failure class",
            [
                c.query(
                    f"sum by (failure_class) (rate({finished}{f(partition=True)}[$__rate_interval])) * 3600",
                    "{{failure_class}}",
                )
            ],
            unit="suffix: jobs/h",
            min=0.0,
            stack=True,
            draw_style="bars",
            fill_opacity=80,
            description="Jobs reaching a terminal state per hour, by failure class (sacct state and exit code: "
            "success, failed, timeout, out_of_memory, node_fail, cancelled, segfault...).",
        ),
        c.timeseries(
            "Failed share of finished jobs",
            [
                c.query(
                    f"sum(rate({finished}{f(partition=True, failure_class='!success')}[$__rate_interval])) / "
                    f"sum(rate({finished}{f(partition=True)}[$__rate_interval]))",
                    "failed share",
                )
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=c.steps("green", (t.failed_job_ratio, "red")),
            threshold_style="dashed",
            description="Finished jobs that did not succeed / all finished jobs; the dashed line is "
            f"[monitoring.thresholds] failed_job_ratio ({t.failed_job_ratio:g}).",
        ),
        c.bargauge(
            "Failures by class over the time range",
            [
                c.query(
                    f"sum by (failure_class) (increase({finished}{f(partition=True)}[$__range]))",
                    "{{failure_class}}",
                    instant=True,
                )
            ],
            unit="short",
            min=0.0,
            description="Jobs finished in the dashboard's time range by failure class.",
        ),
        c.bargauge(
            "Failed jobs by partition over the time range",
            [
                c.query(
                    f"sum by (partition) (increase({finished}{f(partition=True, failure_class='!success')}[$__range]))",
                    "{{partition}}",
                    instant=True,
                )
            ],
            unit="short",
            min=0.0,
            description="Jobs finished in the dashboard's time range with a failure class other than success.",
        ),
        c.row("Efficiency of finished jobs"),
        c.heatmap(
            "CPU efficiency",
            [
                c.query(
                    f"sum by (le) (increase(nomade_slurm_job_cpu_efficiency_ratio_bucket{f(partition=True)}"
                    f"[$__rate_interval]))",
                    "{{le}}",
                )
            ],
            unit="short",
            y_unit="percentunit",
            description="Finished jobs by CPU efficiency TotalCPU / (Elapsed x AllocCPUS) (seff's figure).",
        ),
        c.heatmap(
            "Memory efficiency",
            [
                c.query(
                    f"sum by (le) (increase(nomade_slurm_job_memory_efficiency_ratio_bucket{f(partition=True)}"
                    f"[$__rate_interval]))",
                    "{{le}}",
                )
            ],
            unit="short",
            y_unit="percentunit",
            description="Finished jobs by memory efficiency: peak step MaxRSS / requested memory (can exceed 1).",
        ),
        c.bargauge(
            "Median efficiency by partition over the time range",
            [
                c.query(
                    "histogram_quantile(0.5, sum by (le, partition) "
                    f"(increase(nomade_slurm_job_cpu_efficiency_ratio_bucket{f(partition=True)}[$__range])))",
                    "{{partition}} CPU",
                    instant=True,
                ),
                c.query(
                    "histogram_quantile(0.5, sum by (le, partition) "
                    f"(increase(nomade_slurm_job_memory_efficiency_ratio_bucket{f(partition=True)}[$__range])))",
                    "{{partition}} memory",
                    instant=True,
                ),
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=c.steps("red", (0.25, "orange"), (0.5, "green")),
            description="Median CPU and memory efficiency of the jobs finished in the time range, per partition "
            "(interpolated within the histogram's buckets).",
            width=24,
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="Failure risk of pending and running jobs with its explanation, failures by class, efficiency.",
        panels=panels,
        variables=c.standard_variables(cfg, node=False),  # risk and accounting series have no node label
        tags=("jobs",),
    )
