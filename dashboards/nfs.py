"""NFS client dashboard: operations, throughput, round-trip and execution times, retransmissions, timeouts, errors.

Reads the ``nfs`` collector (node mode, /proc/self/mountstats: ``nomade_nfs_*`` per ``node``, ``server``, ``export``,
``mountpoint`` and, for per-operation figures, ``op``) and the analytics service's ``nfs_latency`` watch. Times per
request are computed from the counters as nfsiostat(8) does (delta of the time counter / delta of operations). The
retransmission and latency thresholds are ``[monitoring.thresholds] nfs_retransmission_ratio`` (0.05) and
``nfs_latency_seconds`` (0.1 s), the values of the NFS alerts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "nfs"
TITLE = "NØMADE / NFS"

_MOUNT = "{{node}} {{mountpoint}}"


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The NFS dashboard's JSON model (see :func:`nomade.dashboards.common.dashboard`)."""
    f = c.Sel(cfg)
    t = cfg.thresholds
    s = f(node=True)
    by = "node, server, export, mountpoint"

    def rate(metric: str, sel: str = s) -> str:
        return f"rate({metric}{sel}[$__rate_interval])"

    retrans_steps = c.steps("green", (t.nfs_retransmission_ratio / 5, "orange"), (t.nfs_retransmission_ratio, "red"))
    latency_steps = c.steps("green", (t.nfs_latency_seconds / 2, "orange"), (t.nfs_latency_seconds, "red"))
    panels = [
        c.row("Overview"),
        c.stat(
            "NFS mounts",
            [c.query(f"count(nomade_nfs_mount_info{s})", instant=True)],
            unit="short",
            no_value="0",
            graph_mode="none",
            description="NFS superblocks mounted on the selected nodes (nomade_nfs_mount_info).",
        ),
        c.stat(
            "Nodes with NFS mounts",
            [c.query(f"sum(nomade_nfs_source_available{s})", instant=True)],
            unit="short",
            graph_mode="none",
            description="Nodes whose /proc/self/mountstats lists at least one nfs/nfs4 mount.",
        ),
        c.stat(
            "Operations",
            [c.query(f"sum({rate('nomade_nfs_operations_total')})")],
            unit="ops",
            description="RPC requests completed per second, all mounts and operations.",
        ),
        c.stat(
            "Retransmissions",
            [c.query(f"sum({rate('nomade_nfs_retransmissions_total')}) / sum({rate('nomade_nfs_operations_total')})")],
            unit="percentunit",
            thresholds=retrans_steps,
            description=f"Retransmitted / completed RPC requests; red from {t.nfs_retransmission_ratio:g} "
            "([monitoring.thresholds] nfs_retransmission_ratio).",
        ),
        c.stat(
            "Mean round-trip time",
            [c.query(f"sum({rate('nomade_nfs_rtt_seconds_total')}) / sum({rate('nomade_nfs_operations_total')})")],
            unit="s",
            thresholds=latency_steps,
            description=f"Mean RTT per request, all mounts; red from {t.nfs_latency_seconds:g} s "
            "([monitoring.thresholds] nfs_latency_seconds).",
        ),
        c.stat(
            "Major timeouts",
            [c.query(f"sum(increase(nomade_nfs_timeouts_total{s}[$__range]))", instant=True)],
            unit="short",
            thresholds=c.steps("green", (1.0, "red")),
            graph_mode="none",
            description="RPC major timeouts over the dashboard's time range (a server that stopped answering).",
        ),
        c.row("Traffic"),
        c.timeseries(
            "Operations per mount",
            [c.query(f"sum by ({by}) ({rate('nomade_nfs_operations_total')})", _MOUNT)],
            unit="ops",
            min=0.0,
            description="RPC requests completed per second per mount (nfsiostat ops/s).",
        ),
        c.timeseries(
            "Operations by type",
            [c.query(f"sum by (op) ({rate('nomade_nfs_operations_total')})", "{{op}}")],
            unit="ops",
            min=0.0,
            stack=True,
            description="RPC requests per second by operation (READ, WRITE, GETATTR...), all selected mounts.",
        ),
        c.timeseries(
            "Read and write throughput",
            [
                c.query(f"sum by ({by}) ({rate('nomade_nfs_read_bytes_total')})", _MOUNT + " read"),
                c.query(f"-sum by ({by}) ({rate('nomade_nfs_written_bytes_total')})", _MOUNT + " write"),
            ],
            unit="Bps",
            description="READ payload from and WRITE payload to the server (writes drawn below zero).",
        ),
        c.timeseries(
            "Application I/O",
            [
                c.query(
                    f"sum by ({by}, io) ({rate('nomade_nfs_application_read_bytes_total')})", _MOUNT + " read {{io}}"
                ),
                c.query(
                    f"-sum by ({by}, io) ({rate('nomade_nfs_application_written_bytes_total')})",
                    _MOUNT + " write {{io}}",
                ),
            ],
            unit="Bps",
            description="Bytes applications read (cache hits included) and wrote, buffered and direct I/O.",
        ),
        c.row("Latency and errors"),
        c.timeseries(
            "Round-trip time per request",
            [
                c.query(
                    f"sum by ({by}, op) ({rate('nomade_nfs_rtt_seconds_total')}) / "
                    f"sum by ({by}, op) ({rate('nomade_nfs_operations_total')})",
                    _MOUNT + " {{op}}",
                )
            ],
            unit="s",
            min=0.0,
            thresholds=latency_steps,
            threshold_style="dashed",
            description="Mean time from transmission to reply per request, by operation (nfsiostat avg RTT).",
        ),
        c.timeseries(
            "Execution time per request",
            [
                c.query(
                    f"sum by ({by}, op) ({rate('nomade_nfs_execute_seconds_total')}) / "
                    f"sum by ({by}, op) ({rate('nomade_nfs_operations_total')})",
                    _MOUNT + " {{op}}",
                )
            ],
            unit="s",
            min=0.0,
            description="Mean time from submission to completion per request: queue + RTT + client overhead "
            "(nfsiostat avg exe).",
        ),
        c.timeseries(
            "Retransmission ratio",
            [
                c.query(
                    f"sum by ({by}) ({rate('nomade_nfs_retransmissions_total')}) / "
                    f"sum by ({by}) ({rate('nomade_nfs_operations_total')})",
                    _MOUNT,
                )
            ],
            unit="percentunit",
            min=0.0,
            thresholds=retrans_steps,
            threshold_style="dashed",
            description="Retransmissions per completed request per mount (nfsiostat retrans %).",
        ),
        c.timeseries(
            "Timeouts and errors",
            [
                c.query(f"sum by ({by}) ({rate('nomade_nfs_timeouts_total')})", _MOUNT + " timeouts"),
                c.query(f"sum by ({by}) ({rate('nomade_nfs_errors_total')})", _MOUNT + " errors"),
            ],
            unit="ops",
            min=0.0,
            description="RPC major timeouts and requests completed with an error status, per second.",
        ),
        c.timeseries(
            "Round-trip time trend",
            [
                c.query(
                    f"86400 * nomade_trend_slope_per_second{f(node=True, watch='nfs_latency')}",
                    "{{node}} {{mountpoint}} {{op}}",
                )
            ],
            unit="suffix: s/day",
            description="Slope of the analytics service's fit of the mean RTT (watch nfs_latency), seconds per day.",
        ),
        c.table(
            "Mounts",
            [c.query(f"nomade_nfs_mount_info{s}", instant=True, table=True)],
            unit="none",
            transformations=c.info_table_transformations(),
            description="NFS superblocks: server, export, mount point, protocol version and transport.",
            width=12,
        ),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="NFS client operations, throughput, latency, retransmissions and errors (nfs collector).",
        panels=panels,
        variables=c.standard_variables(cfg, partition=False, node_metric="nomade_nfs_source_available"),
        tags=("nfs",),
    )
