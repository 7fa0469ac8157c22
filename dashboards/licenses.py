"""Licenses dashboard: SLURM's license table and the FlexLM/RLM license servers (usage, queue, daemons, expiry).

Sources: the ``slurm_licenses`` collector (``nomade_license_slurm_*`` per ``license``: scontrol show licenses), the
``licenses`` collector (``nomade_license_*`` per ``server``, ``vendor``, ``feature``: lmstat/rlmstat) and the
analytics service's ``license_usage`` watch. The usage threshold is ``[monitoring.thresholds] license_usage_ratio``
(0.9) and the expiry warning ``license_expiry_within`` (30 days), the values of the license alerts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "licenses"
TITLE = "NØMADE / Licenses"

_HIDDEN = {"Time": True, "__name__": True, "instance": True, "job": True, "node": True}


def _organize(hide: dict[str, bool], rename: dict[str, str] | None = None) -> dict[str, Any]:
    return {"id": "organize", "options": {"excludeByName": hide, "indexByName": {}, "renameByName": rename or {}}}


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The licenses dashboard's JSON model (see :func:`nomade.dashboards.common.dashboard`)."""
    f = c.Sel(cfg)
    t = cfg.thresholds
    s = f()
    usage_steps = c.steps("green", (t.license_usage_ratio - 0.1, "orange"), (t.license_usage_ratio, "red"))
    feature = "{{server}} {{feature}}"
    panels = [
        c.row("SLURM licenses"),
        c.bargauge(
            "SLURM licenses in use",
            [
                c.query(
                    f"nomade_license_slurm_used{s} / (nomade_license_slurm_issued{s} > 0)", "{{license}}", instant=True
                )
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=usage_steps,
            description="Licenses held by running jobs / licenses SLURM may allocate (scontrol show licenses); red "
            f"from {t.license_usage_ratio:g} ([monitoring.thresholds] license_usage_ratio).",
        ),
        c.timeseries(
            "SLURM licenses used, free and reserved",
            [
                c.query(f"nomade_license_slurm_used{s}", "{{license}} used"),
                c.query(f"nomade_license_slurm_free{s}", "{{license}} free"),
                c.query(f"nomade_license_slurm_reserved{s}", "{{license}} reserved"),
                c.query(f"nomade_license_slurm_issued{s}", "{{license}} issued"),
            ],
            unit="short",
            min=0.0,
            description="SLURM's license table over time: used by running jobs, free for new jobs, held by "
            "reservations, and the total SLURM may allocate.",
        ),
        c.timeseries(
            "Remote licenses consumed outside SLURM",
            [c.query(f"nomade_license_slurm_last_deficit{s}", "{{license}}")],
            unit="short",
            min=0.0,
            description="Remote licenses (sacctmgr resources): in use on the license server but not through SLURM "
            "jobs at the last update (scontrol LastDeficit).",
        ),
        c.row("License servers (FlexLM, RLM)"),
        c.state_timeline(
            "License servers and vendor daemons",
            [
                c.query(f"nomade_license_server_up{s}", "{{server}} {{host}} ({{role}})"),
                c.query(f"nomade_license_vendor_daemon_up{s}", "{{server}} {{vendor}} daemon"),
                c.query(f"nomade_license_query_success{s}", "{{server}} query"),
            ],
            unit="none",
            mappings=c.value_mapping({0: ("down", "red"), 1: ("up", "green")}),
            description="Whether each license server, its vendor daemons and the lmstat/rlmstat query answered.",
        ),
        c.bargauge(
            "Features in use",
            [
                c.query(
                    f"nomade_license_used{s} / (nomade_license_issued{s} > 0)",
                    feature,
                    instant=True,
                )
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=usage_steps,
            description="Licenses in use / issued per feature as the license server counts them.",
        ),
        c.timeseries(
            "Feature usage",
            [
                c.query(f"nomade_license_used{s}", feature + " used"),
                c.query(f"nomade_license_issued{s}", feature + " issued"),
            ],
            unit="short",
            min=0.0,
            description="Licenses in use and issued per feature over time.",
        ),
        c.timeseries(
            "Queued checkouts",
            [c.query(f"nomade_license_queued{s}", feature)],
            unit="short",
            min=0.0,
            description="Licenses requested by checkouts waiting in the server's queue (FlexLM 'queued for').",
        ),
        c.table(
            "Expiring features",
            [
                c.query(
                    f"sort(nomade_license_expiry_timestamp_seconds{s} - time() < +inf)",
                    instant=True,
                    table=True,
                )
            ],
            unit="s",
            thresholds=c.steps("red", (t.license_expiry_within, "green")),
            transformations=[_organize(_HIDDEN, {"Value": "expires in"})],
            overrides=[c.column_override("expires in", cell_type="color-background")],
            sort_by=[("expires in", False)],
            description="Time until the next expiry of each feature version (permanent licenses left out); red "
            f"within {t.license_expiry_within / 86400:g} days ([monitoring.thresholds] license_expiry_within).",
        ),
        c.table(
            "License holders",
            [c.query(f"topk(20, nomade_license_checkouts{s})", instant=True, table=True)],
            unit="short",
            transformations=[_organize(_HIDDEN, {"Value": "licenses"})],
            sort_by=[("licenses", True)],
            description="Users holding the most licenses (collector option per_user).",
        ),
        c.timeseries(
            "Time until a feature runs out",
            [c.query(f"nomade_trend_time_to_threshold_seconds{f(watch='license_usage')}", feature)],
            unit="s",
            min=0.0,
            description="When the analytics service's fit of used/issued (watch license_usage) reaches its "
            "threshold; absent when the trend never gets there.",
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="SLURM licenses and FlexLM/RLM license servers: usage, queue, daemons, expiry.",
        panels=panels,
        variables=c.standard_variables(cfg, partition=False, node=False),
        tags=("licenses",),
    )
