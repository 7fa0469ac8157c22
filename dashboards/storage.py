"""Storage: filesystem usage, its trend from nomade-analytics (slope in GB/day, acceleration in GB/day², its
significance, projections and time to full), inodes, mount health, and quotas.

The trend panels read the ``nomade_trend_*`` series of the ``filesystem_used`` watch (used bytes = size - avail,
threshold = size: see :data:`nomade.analytics.config.DEFAULT_WATCHES`); they are in bytes per second and per second²
(DESIGN.md "Derivatives") and converted here: GB/day = B/s x 86 400 / 10⁹, GB/day² = B/s² x 86 400² / 10⁹ (SI
gigabytes, the seed's ``disk_acceleration_warning`` unit). Thresholds are ``cfg.thresholds``' (seed
``disk_warning_percent = 85``, ``disk_critical_percent = 95``; node-mixin fill horizons 24 h and 4 h).
"""  # noqa: D205

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nomade.dashboards import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "storage"
TITLE = "NØMADE / Storage"


WATCH = "filesystem_used"
"""The nomade-analytics watch of filesystem usage (its name is the ``watch`` label)."""

GB_PER_DAY = "* 86400 / 1e9"
"""PromQL factor from bytes per second to GB per day."""
GB_PER_DAY2 = "* 86400 * 86400 / 1e9"
"""PromQL factor from bytes per second² to GB per day²."""

# Trend classes of nomade_trend_state (nomade.analytics.catalog) as numbers and colours for the state timeline.
TREND_STATE_CODES: tuple[tuple[str, int, str], ...] = (
    ("accelerating_decline", -3, "dark-blue"),
    ("linear_decline", -2, "blue"),
    ("decelerating_decline", -1, "light-blue"),
    ("stable", 0, "green"),
    ("decelerating_growth", 1, "yellow"),
    ("linear_growth", 2, "orange"),
    ("accelerating_growth", 3, "red"),
)


def trend_state_expr(sel: str, by: str) -> str:
    """PromQL giving each watched series the number of its current trend class (:data:`TREND_STATE_CODES`).

    Args:
        sel: matchers in braces (with ``watch``), without ``state``.
        by: the grouping labels (comma-separated) of the result.

    """
    inner = sel[1:-1]
    parts = [f'(nomade_trend_state{{{inner},state="{s}"}} == 1) * {code}' for s, code, _ in TREND_STATE_CODES]
    return f"max by ({by}) (\n  " + "\n  or ".join(parts) + "\n)"


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The storage dashboard's JSON model (variables: datasource, cluster, node, mountpoint)."""
    t = cfg.thresholds
    f = c.Sel(cfg)
    cl = cfg.cluster_label
    q = c.query

    def fs(**fixed: str) -> str:
        """Matchers of the selected nodes and mount points."""
        return f(node=True, mountpoint="~$mountpoint", **fixed)

    tr = fs(watch=WATCH)
    key = f"{cl}, node, mountpoint"
    legend = "{{node}}:{{mountpoint}}"
    fs_steps = c.steps("green", (t.filesystem_warning_ratio, "orange"), (t.filesystem_critical_ratio, "red"))
    ttf_steps = c.steps("red", (t.filesystem_full_within_critical, "orange"), (t.filesystem_full_within, "green"))
    z = t.acceleration_z
    columns = [
        ("A", "Used", "percentunit"),
        ("B", "Slope", "suffix: GB/day"),
        ("C", "Acceleration", "suffix: GB/day²"),
        ("D", "Acceleration z", "short"),
        ("E", "Time to full", "s"),
        ("F", "Time to full (early bound)", "s"),
    ]
    panels = [
        c.row("Usage"),
        c.bargauge(
            "Used share (df Use%)",
            [q(f"max by ({key}) (nomade_filesystem_used_ratio{fs()})", legend, instant=True)],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=fs_steps,
            height=10,
            description="(size - free) / (size - free + avail), as df's Use%. Orange and red at the warning and "
            "critical thresholds (monitoring.thresholds.filesystem_*_ratio; seed 85 % and 95 %).",
        ),
        c.timeseries(
            "Used share over time",
            [q(f"max by ({key}) (nomade_filesystem_used_ratio{fs()})", legend)],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=fs_steps,
            threshold_style="line",
            height=10,
            description="df Use% per filesystem; lines at the warning and critical thresholds.",
        ),
        c.timeseries(
            "Available space",
            [q(f"max by ({key}) (nomade_filesystem_avail_bytes{fs()})", legend)],
            unit="bytes",
            min=0.0,
            description="Space available to unprivileged users (statvfs f_bavail x f_frsize).",
        ),
        c.timeseries(
            "Inodes used",
            [
                q(
                    f"max by ({key}) ((nomade_filesystem_files{fs()} - nomade_filesystem_files_free{fs()}) "
                    f"/ (nomade_filesystem_files{fs()} > 0))",
                    legend,
                )
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=fs_steps,
            threshold_style="line",
            description="Share of inodes in use (f_files - f_ffree) / f_files; filesystems without an inode count "
            "(btrfs, some network filesystems report 0) are left out.",
        ),
        c.stat(
            "Read-only mounts",
            [q(f"sum(nomade_filesystem_readonly{fs()}) or vector(0)")],
            unit="short",
            thresholds=c.steps("green", (1, "orange")),
            graph_mode="none",
            description="Filesystems mounted read-only (ro option): expected for some, an alarm when a "
            "filesystem was remounted read-only after errors.",
        ),
        c.stat(
            "Stuck mounts",
            [q(f"sum(nomade_filesystem_stuck{fs()}) or vector(0)")],
            unit="short",
            thresholds=c.steps("green", (1, "red")),
            graph_mode="none",
            description="Mounts whose statvfs did not return within the timeout (hung NFS or parallel filesystem).",
        ),
        c.stat(
            "statvfs errors",
            [q(f"sum(nomade_filesystem_device_error{fs()}) or vector(0)")],
            unit="short",
            thresholds=c.steps("green", (1, "red")),
            graph_mode="none",
            description="Mounts whose statvfs failed (permission, I/O error, stale file handle) in the last scrape.",
        ),
        c.row("Trend (nomade-analytics, filesystem_used watch)"),
        c.timeseries(
            "Fill rate (slope)",
            [q(f"max by ({key}) (nomade_trend_slope_per_second{tr}) {GB_PER_DAY}", legend)],
            unit="suffix: GB/day",
            description="First derivative of the fitted used space (local quadratic regression over the watch "
            "window), in GB per day; negative when space is being freed.",
        ),
        c.timeseries(
            "Fill acceleration",
            [q(f"max by ({key}) (nomade_trend_acceleration_per_second_squared{tr}) {GB_PER_DAY2}", legend)],
            unit="suffix: GB/day²",
            description="Second derivative of the fitted used space, in GB per day²: positive when the fill speeds "
            "up. See the next panel for whether it is significant.",
        ),
        c.timeseries(
            "Acceleration significance (z)",
            [
                q(
                    f"max by ({key}) (nomade_trend_acceleration_per_second_squared{tr} "
                    f"/ nomade_trend_acceleration_stderr{tr})",
                    legend,
                )
            ],
            unit="short",
            thresholds=c.steps("red", (-z, "green"), (z, "red")),
            threshold_style="line",
            description=f"Acceleration / its standard error. Beyond ±{z:g} (monitoring.thresholds.acceleration_z) "
            "the acceleration is significant, not noise.",
        ),
        c.timeseries(
            "Time to full",
            [q(f"min by ({key}) (nomade_trend_time_to_threshold_seconds{tr})", legend)],
            unit="s",
            thresholds=ttf_steps,
            threshold_style="line",
            log_scale=True,
            description="Time until the fitted curve first reaches the filesystem size (avail = 0); absent while "
            "it never does. Lines at monitoring.thresholds.filesystem_full_within_critical and _within.",
        ),
        c.timeseries(
            "Projected used share",
            [
                q(
                    f"max by ({key}, horizon) (nomade_trend_projected_value{tr}) "
                    f"/ on ({key}) group_left () max by ({key}) (nomade_filesystem_size_bytes{fs()} > 0)",
                    legend + " +{{horizon}}",
                )
            ],
            unit="percentunit",
            min=0.0,
            thresholds=fs_steps,
            threshold_style="line",
            description="Fitted used space extrapolated to each horizon of the watch, divided by the size.",
        ),
        c.state_timeline(
            "Trend class",
            [q(trend_state_expr(tr, key), legend)],
            unit="none",
            mappings=c.value_mapping({code: (s.replace("_", " "), colour) for s, code, colour in TREND_STATE_CODES}),
            thresholds=c.steps("text"),
            width=12,
            description="The analytics' classification of each filesystem's fill: stable, linear, accelerating or "
            "decelerating growth or decline (accelerating only when significant).",
        ),
        c.table(
            "Projection per filesystem",
            [
                q(f"max by ({key}) (nomade_filesystem_used_ratio{fs()})", instant=True, table=True, ref_id="A"),
                q(
                    f"max by ({key}) (nomade_trend_slope_per_second{tr}) {GB_PER_DAY}",
                    instant=True,
                    table=True,
                    ref_id="B",
                ),
                q(
                    f"max by ({key}) (nomade_trend_acceleration_per_second_squared{tr}) {GB_PER_DAY2}",
                    instant=True,
                    table=True,
                    ref_id="C",
                ),
                q(
                    f"max by ({key}) (nomade_trend_acceleration_per_second_squared{tr} "
                    f"/ nomade_trend_acceleration_stderr{tr})",
                    instant=True,
                    table=True,
                    ref_id="D",
                ),
                q(
                    f"min by ({key}) (nomade_trend_time_to_threshold_seconds{tr})",
                    instant=True,
                    table=True,
                    ref_id="E",
                ),
                q(
                    f"min by ({key}) (nomade_trend_time_to_threshold_lower_seconds{tr})",
                    instant=True,
                    table=True,
                    ref_id="F",
                ),
            ],
            unit="short",
            width=24,
            height=10,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {f"Value #{ref}": name for ref, name, _ in columns},
                    },
                },
            ],
            overrides=[
                c.column_override("Used", unit="percentunit", thresholds=fs_steps, cell_type="color-text"),
                c.column_override("Slope", unit="suffix: GB/day", decimals=2),
                c.column_override("Acceleration", unit="suffix: GB/day²", decimals=3),
                c.column_override("Acceleration z", decimals=1),
                c.column_override("Time to full", unit="s", thresholds=ttf_steps, cell_type="color-text"),
                c.column_override("Time to full (early bound)", unit="s"),
            ],
            sort_by=[("Used", True)],
            filterable=True,
            description="Per filesystem: used share, slope (GB/day), acceleration (GB/day²) and its z, and time to "
            "full with the early end of its confidence band.",
        ),
        c.row("Quotas"),
        c.table(
            "Largest quota users",
            [
                q(
                    f"topk(20, max by ({cl}, filesystem, type, name) (nomade_quota_used_bytes{f()}))",
                    instant=True,
                    table=True,
                    ref_id="A",
                ),
                q(
                    f"max by ({cl}, filesystem, type, name) (nomade_quota_soft_limit_bytes{f()}) "
                    f"and on ({cl}, filesystem, type, name) "
                    f"topk(20, max by ({cl}, filesystem, type, name) (nomade_quota_used_bytes{f()}))",
                    instant=True,
                    table=True,
                    ref_id="B",
                ),
                q(
                    f"max by ({cl}, filesystem, type, name) (nomade_quota_hard_limit_bytes{f()}) "
                    f"and on ({cl}, filesystem, type, name) "
                    f"topk(20, max by ({cl}, filesystem, type, name) (nomade_quota_used_bytes{f()}))",
                    instant=True,
                    table=True,
                    ref_id="C",
                ),
            ],
            unit="bytes",
            width=16,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #A": "Used", "Value #B": "Soft limit", "Value #C": "Hard limit"},
                    },
                },
            ],
            sort_by=[("Used", True)],
            description="The 20 largest users and groups by space used (repquota / lfs quota), with their limits.",
        ),
        c.stat(
            "Quota entries over limit",
            [q(f"sum(nomade_quota_over_limit_entries{f()}) or vector(0)")],
            unit="short",
            thresholds=c.steps("green", (1, "orange")),
            width=8,
            height=8,
            description="Users and groups over a soft limit (or a hard limit where no soft limit is set).",
        ),
    ]
    variables = [
        *c.standard_variables(cfg, partition=False, node_metric="nomade_filesystem_size_bytes"),
        c.query_variable(
            "mountpoint", f"nomade_filesystem_size_bytes{f(node=True)}", "mountpoint", title="Mount point"
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="Filesystem usage and its trend (GB/day, GB/day², time to full), inodes, mount health, quotas.",
        panels=panels,
        variables=variables,
    )
