"""Node I/O, CPU and memory: the seed's iostat, mpstat and vmstat figures per compute node, plus pressure stall
information (PSI).

* iostat -x: %util, r_await/w_await, r/s and w/s, rkB/s and wkB/s, aqu-sz (``nomade_disk_*``, diskstats collector).
* mpstat -P ALL: time per mode (%usr, %sys, %iowait...), mean and busiest core, imbalance (std / mean of the per-core
  busy ratios), saturated cores (``nomade_cpu_*``, cpu collector).
* vmstat: memory (free, buff, cache), swap in/out (si/so), paging (bi/bo), blocked and runnable processes (b, r),
  major faults and OOM kills (``nomade_memory_*``, memory collector).

The ``node`` variable lists the nodes that run a node-mode exporter (``nomade_cpu_count``); ``device`` the block
devices of the selected nodes.
"""  # noqa: D205

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nomade.dashboards import common as c

if TYPE_CHECKING:
    from nomade.alerting.config import MonitoringConfig

KEY = "node-resources"
TITLE = "NØMADE / Node I/O, CPU and memory"


def build(cfg: MonitoringConfig) -> dict[str, Any]:
    """The node I/O, CPU and memory dashboard's JSON model (variables: datasource, cluster, node, device)."""
    f = c.Sel(cfg)
    cl = cfg.cluster_label
    q = c.query
    n = f(node=True)
    dev = f(node=True, device="~$device")
    by_dev = "{{node}} {{device}}"
    panels = [
        c.row("Disk I/O (iostat -x)"),
        c.timeseries(
            "Device utilisation (%util)",
            [q(f"nomade_disk_utilization_ratio{dev}", by_dev)],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Share of time with at least one I/O in flight (iostat %util). Near 100 % a single-queue "
            "disk is saturated; NVMe and RAID devices serve many I/Os at once and can do more.",
        ),
        c.timeseries(
            "I/O latency (r_await, w_await)",
            [
                q(f"nomade_disk_read_await_seconds{dev}", "{{node}} {{device}} read"),
                q(f"nomade_disk_write_await_seconds{dev}", "{{node}} {{device}} write"),
            ],
            unit="s",
            min=0.0,
            description="Mean time per read and per write, queueing included (iostat r_await, w_await).",
        ),
        c.timeseries(
            "IOPS (r/s, w/s)",
            [
                q(f"nomade_disk_read_iops{dev}", "{{node}} {{device}} read"),
                q(f"nomade_disk_write_iops{dev}", "{{node}} {{device}} write"),
            ],
            unit="iops",
            min=0.0,
            description="Reads and writes completed per second (iostat r/s, w/s).",
        ),
        c.timeseries(
            "Throughput (rkB/s, wkB/s)",
            [
                q(f"nomade_disk_read_bytes_per_second{dev}", "{{node}} {{device}} read"),
                q(f"nomade_disk_write_bytes_per_second{dev}", "{{node}} {{device}} write"),
            ],
            unit="Bps",
            min=0.0,
            description="Bytes read and written per second (iostat rkB/s and wkB/s, in bytes).",
        ),
        c.timeseries(
            "Queue size (aqu-sz)",
            [q(f"nomade_disk_queue_size{dev}", by_dev)],
            unit="short",
            min=0.0,
            description="Average number of I/Os in flight (iostat aqu-sz).",
        ),
        c.timeseries(
            "I/O pressure (PSI)",
            [q(f"nomade_disk_pressure_stall_ratio{n}", "{{node}} {{kind}}")],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Share of time tasks were stalled on I/O (/proc/pressure/io; some = at least one task, "
            "full = all non-idle tasks).",
        ),
        c.row("CPU (mpstat)"),
        c.timeseries(
            "CPU time by mode",
            [q(f"avg by ({cl}, node, mode) (nomade_cpu_mode_ratio{f(node=True, mode='!idle')})", "{{node}} {{mode}}")],
            unit="percentunit",
            min=0.0,
            max=1.0,
            stack=True,
            fill_opacity=40,
            description="Share of all CPUs' time per mode (mpstat 'all' row: %usr, %nice, %sys, %iowait, %irq, "
            "%soft, %steal, %guest), idle left out so the stack is the busy share.",
        ),
        c.timeseries(
            "iowait",
            [q(f"nomade_cpu_mode_ratio{f(node=True, mode='iowait')}", "{{node}}")],
            unit="percentunit",
            min=0.0,
            description="Share of CPU time idle while I/O was outstanding (mpstat %iowait): the seed's avg/peak "
            "iowait figures.",
        ),
        c.timeseries(
            "Core busy: mean and busiest core",
            [
                q(f"nomade_cpu_busy_average_ratio{n}", "{{node}} mean"),
                q(f"nomade_cpu_busy_max_ratio{n}", "{{node}} busiest"),
            ],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Mean of the per-core busy ratios and the busiest core's, busy = 1 - (%idle + %iowait) / "
            "100 (mpstat -P ALL).",
        ),
        c.timeseries(
            "Core imbalance (std / mean)",
            [q(f"nomade_cpu_imbalance_ratio{n}", "{{node}}")],
            unit="short",
            min=0.0,
            description="Spread of the per-core busy ratios, population standard deviation / mean (0 = balanced): "
            "high values mean few cores do the work (single-threaded jobs on a many-core allocation).",
        ),
        c.bargauge(
            "Per-core busy (now)",
            [q(f"nomade_cpu_core_busy_ratio{n}", "{{node}} cpu{{cpu}}", instant=True)],
            unit="percentunit",
            min=0.0,
            max=1.0,
            thresholds=c.steps("green", (0.8, "orange"), (0.95, "red")),
            orientation="vertical",
            description="Busy share of each core over the last sampling interval (mpstat -P ALL). Red from 0.95, "
            "the cpu collector's default saturation threshold (nomade_cpu_saturation_threshold_ratio).",
        ),
        c.timeseries(
            "Saturated cores",
            [
                q(f"nomade_cpu_saturated_cores{n}", "{{node}} saturated"),
                q(f"nomade_cpu_count{n}", "{{node}} online"),
            ],
            unit="short",
            min=0.0,
            description="Cores busier than the saturation threshold over the sampling interval, and online CPUs.",
        ),
        c.timeseries(
            "CPU pressure (PSI)",
            [q(f"nomade_cpu_pressure_stall_ratio{n}", "{{node}} {{kind}}")],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Share of time runnable tasks waited for a CPU (/proc/pressure/cpu).",
        ),
        c.timeseries(
            "Context switches and interrupts",
            [
                q(f"rate(nomade_cpu_context_switches_total{n}[$__rate_interval])", "{{node}} context switches"),
                q(f"rate(nomade_cpu_interrupts_total{n}[$__rate_interval])", "{{node}} interrupts"),
            ],
            unit="ops",
            min=0.0,
            description="Context switches and interrupts per second (/proc/stat ctxt and intr; vmstat cs and in).",
        ),
        c.row("Memory (vmstat)"),
        c.timeseries(
            "Memory",
            [
                q(f"nomade_memory_used_bytes{n}", "{{node}} used"),
                q(f"nomade_memory_cache_bytes{n}", "{{node}} cache"),
                q(f"nomade_memory_buffers_bytes{n}", "{{node}} buffers"),
                q(f"nomade_memory_free_bytes{n}", "{{node}} free"),
                q(f"nomade_memory_total_bytes{n}", "{{node}} total"),
            ],
            unit="bytes",
            min=0.0,
            description="Used (MemTotal - MemAvailable), page cache + reclaimable slab, buffers, free (vmstat free, "
            "buff, cache) and total.",
        ),
        c.timeseries(
            "Memory available",
            [q(f"nomade_memory_available_ratio{n}", "{{node}}")],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="MemAvailable / MemTotal: the kernel's estimate of what new work can use without swapping.",
        ),
        c.timeseries(
            "Swap in/out (si, so)",
            [
                q(f"nomade_memory_swap_in_bytes_per_second{n}", "{{node}} in"),
                q(f"nomade_memory_swap_out_bytes_per_second{n}", "{{node}} out"),
            ],
            unit="Bps",
            min=0.0,
            description="Bytes swapped in and out per second (vmstat si, so): sustained swap-out on a compute "
            "node slows jobs by orders of magnitude.",
        ),
        c.timeseries(
            "Paging in/out (bi, bo)",
            [
                q(f"nomade_memory_paged_in_bytes_per_second{n}", "{{node}} in"),
                q(f"nomade_memory_paged_out_bytes_per_second{n}", "{{node}} out"),
            ],
            unit="Bps",
            min=0.0,
            description="Bytes paged in from and out to block devices per second (vmstat bi, bo).",
        ),
        c.timeseries(
            "Blocked and runnable processes (b, r)",
            [
                q(f"nomade_memory_procs_blocked{n}", "{{node}} blocked"),
                q(f"nomade_memory_procs_running{n}", "{{node}} runnable"),
            ],
            unit="short",
            min=0.0,
            description="Tasks in uninterruptible sleep, usually waiting for I/O (vmstat b), and runnable tasks "
            "(vmstat r).",
        ),
        c.timeseries(
            "Memory pressure (PSI)",
            [q(f"nomade_memory_pressure_stall_ratio{n}", "{{node}} {{kind}}")],
            unit="percentunit",
            min=0.0,
            max=1.0,
            description="Share of time tasks were stalled on memory (/proc/pressure/memory): NØMADE's memory "
            "pressure figure is the 'some' line.",
        ),
        c.timeseries(
            "Major page faults and OOM kills",
            [
                q(f"nomade_memory_major_page_faults_per_second{n}", "{{node}} major faults/s"),
                q(f"rate(nomade_memory_oom_kills_total{n}[$__rate_interval])", "{{node}} OOM kills/s"),
            ],
            unit="ops",
            min=0.0,
            description="Major page faults per second (sar -B majflt/s) and OOM-killer kills per second "
            "(/proc/vmstat oom_kill).",
        ),
    ]
    variables = [
        *c.standard_variables(cfg, partition=False, node_metric="nomade_cpu_count"),
        c.query_variable("device", f"nomade_disk_utilization_ratio{n}", "device", title="Device"),
    ]
    return c.dashboard(
        cfg,
        KEY,
        TITLE,
        description="Per-node iostat, mpstat and vmstat figures: disk utilisation and latency, CPU modes and core "
        "imbalance, memory, swap, paging and pressure.",
        panels=panels,
        variables=variables,
    )
