"""Figures derived from two snapshots of kernel counters taken ``interval`` seconds apart.

Pure functions, no I/O. They reproduce the formulas of sysstat (``iostat -x``, ``mpstat``) and procps
(``vmstat``) so that NØMADE's gauges read like the tools operators already know, but in base units: ratios
0-1 instead of percent, seconds instead of milliseconds, bytes/s instead of kB/s.

Common rules:

- a counter that went backwards (reboot, 32-bit wrap, device re-created) makes the figures that depend on it
  ``None`` (absent beats wrong) — except in the CPU mode ratios, where sysstat's own rule applies (see
  :func:`cpu_mode_ratios`);
- a figure that is undefined over the interval (await with no completed I/O, a CPU without ticks) is ``None``;
- ``interval`` is wall time in seconds and must be positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .parsers.proc_diskstats import SECTOR_BYTES, DiskStats
from .parsers.proc_stat import CpuTimes

# --------------------------------------------------------------------------------------------------- disks


@dataclass(frozen=True)
class DiskRates:
    """``iostat -x`` figures of one device over one interval, in base units.

    Attributes:
        read_iops: reads completed per second (iostat ``r/s``).
        write_iops: writes completed per second (``w/s``).
        read_bytes_per_second: bytes read per second (``rkB/s`` × 1024).
        write_bytes_per_second: bytes written per second (``wkB/s`` × 1024).
        read_await_seconds: mean time per completed read, queueing included (``r_await`` / 1000); None when no
            read completed (iostat prints 0.00 there).
        write_await_seconds: same for writes (``w_await`` / 1000).
        queue_size: average number of requests in flight (``aqu-sz``).
        utilization_ratio: share of the interval with at least one request in flight (``%util`` / 100),
            clamped to at most 1.

    """

    read_iops: float
    write_iops: float
    read_bytes_per_second: float
    write_bytes_per_second: float
    read_await_seconds: float | None
    write_await_seconds: float | None
    queue_size: float
    utilization_ratio: float


def _delta(cur: int, prev: int) -> int | None:
    d = cur - prev
    return d if d >= 0 else None


def disk_rates(prev: DiskStats, cur: DiskStats, interval: float) -> DiskRates | None:
    """Compute the ``iostat -x`` figures of one device.

    Formulas (sysstat ``iostat.c`` ``write_ext_stat()`` and ``rd_stats.c`` ``compute_ext_disk_stats()``, with
    ``S_VALUE(m, n, p) = (n - m) / p`` per second; fields per ``Documentation/admin-guide/iostats.rst``)::

        r/s     = Δreads_completed / interval
        rkB/s   = Δsectors_read × 512 / 1024 / interval          -> bytes/s: Δsectors_read × 512 / interval
        r_await = Δread_time_ms / Δreads_completed  (ms)          -> seconds: / 1000
        aqu-sz  = Δweighted_io_time_ms / (interval × 1000)        (field 11, "time_in_queue")
        %util   = Δio_time_ms / (interval × 1000) × 100            (field 10, "io_ticks") -> ratio: no × 100

    and the same for writes. iostat since sysstat 12 measures ``interval`` from ``/proc/uptime``; callers pass
    their own monotonic interval, which agrees to within the sampling jitter. ``%util`` is only meaningful as
    saturation for devices that serve one request at a time; for SSD/NVMe/RAID it is "busy at all" time.

    Args:
        prev: earlier snapshot of the device.
        cur: later snapshot of the same device.
        interval: seconds between the two snapshots (> 0).

    Returns:
        The figures, or None when the interval is not positive or any counter used went backwards.

    """
    if not interval > 0:
        return None
    pairs = {
        "r": (cur.reads_completed, prev.reads_completed),
        "w": (cur.writes_completed, prev.writes_completed),
        "rs": (cur.sectors_read, prev.sectors_read),
        "ws": (cur.sectors_written, prev.sectors_written),
        "rt": (cur.read_time_ms, prev.read_time_ms),
        "wt": (cur.write_time_ms, prev.write_time_ms),
        "io": (cur.io_time_ms, prev.io_time_ms),
        "wio": (cur.io_weighted_time_ms, prev.io_weighted_time_ms),
    }
    d: dict[str, int] = {}
    for key, (c, p) in pairs.items():
        v = _delta(c, p)
        if v is None:
            return None
        d[key] = v
    ms = interval * 1000.0
    return DiskRates(
        read_iops=d["r"] / interval,
        write_iops=d["w"] / interval,
        read_bytes_per_second=d["rs"] * SECTOR_BYTES / interval,
        write_bytes_per_second=d["ws"] * SECTOR_BYTES / interval,
        read_await_seconds=d["rt"] / d["r"] / 1000.0 if d["r"] else None,
        write_await_seconds=d["wt"] / d["w"] / 1000.0 if d["w"] else None,
        queue_size=d["wio"] / ms,
        utilization_ratio=min(1.0, d["io"] / ms),
    )


# ----------------------------------------------------------------------------------------------------- CPU

CPU_MODES = ("user", "nice", "system", "iowait", "irq", "softirq", "steal", "guest", "guest_nice", "idle")
"""Mode names of :func:`cpu_mode_ratios`, in mpstat column order (%usr %nice %sys %iowait %irq %soft %steal
%guest %gnice %idle)."""


def _tick_total(c: CpuTimes) -> int:
    # guest and guest_nice are already inside user and nice (proc(5)); sysstat leaves them out of the total.
    return c.user + c.nice + c.system + c.idle + c.iowait + c.irq + c.softirq + c.steal


def cpu_interval_ticks(prev: CpuTimes, cur: CpuTimes) -> int:
    """Ticks elapsed on one CPU between two snapshots, as sysstat ``get_per_cpu_interval()`` computes them.

    The sum of user, nice, system, idle, iowait, irq, softirq and steal deltas (guest and guest_nice are
    excluded because user and nice already contain them), plus a correction when ``user - guest`` went
    backwards (the kernel may bump guest slightly before user; sysstat adds the difference back).
    """
    shift = 0
    if (cur.user - cur.guest) < (prev.user - prev.guest):
        shift += (prev.user - prev.guest) - (cur.user - cur.guest)
    if (cur.nice - cur.guest_nice) < (prev.nice - prev.guest_nice):
        shift += (prev.nice - prev.guest_nice) - (cur.nice - cur.guest_nice)
    return _tick_total(cur) - _tick_total(prev) + shift


def _share(prev: int, cur: int, total: int) -> float:
    # sysstat common.c ll_sp_value(): "dyn-tick kernel and iowait can go backwards" -> 0 instead of negative.
    return 0.0 if cur < prev else (cur - prev) / total


def cpu_mode_ratios(prev: CpuTimes, cur: CpuTimes) -> dict[str, float] | None:
    """``mpstat`` figures of one CPU (or of ``all``) as ratios 0-1.

    Formulas (sysstat ``mpstat.c`` ``write_plain_cpu_stats()``): with ``T`` from :func:`cpu_interval_ticks`,
    ``%usr = Δ(user - guest) / T``, ``%nice = Δ(nice - guest_nice) / T``, ``%sys = Δsystem / T``,
    ``%iowait``, ``%irq``, ``%soft``, ``%steal``, ``%guest``, ``%gnice``, ``%idle`` likewise from their own
    column. A column that went backwards contributes 0 (sysstat ``ll_sp_value()``). With guest time split
    out of user and nice, the ten ratios sum to 1, like mpstat's ten columns sum to 100 %.

    Returns:
        ``{mode: ratio}`` for the modes of :data:`CPU_MODES`, or None when no tick elapsed (offline or
        fully tickless CPU: mpstat prints it as idle, we omit it).

    """
    total = cpu_interval_ticks(prev, cur)
    if total <= 0:
        return None
    return {
        "user": _share(prev.user - prev.guest, cur.user - cur.guest, total),
        "nice": _share(prev.nice - prev.guest_nice, cur.nice - cur.guest_nice, total),
        "system": _share(prev.system, cur.system, total),
        "iowait": _share(prev.iowait, cur.iowait, total),
        "irq": _share(prev.irq, cur.irq, total),
        "softirq": _share(prev.softirq, cur.softirq, total),
        "steal": _share(prev.steal, cur.steal, total),
        "guest": _share(prev.guest, cur.guest, total),
        "guest_nice": _share(prev.guest_nice, cur.guest_nice, total),
        "idle": _share(prev.idle, cur.idle, total),
    }


def cpu_busy_ratio(prev: CpuTimes, cur: CpuTimes) -> float | None:
    """Share of one CPU's time that was busy: ``1 - (%idle + %iowait)`` from :func:`cpu_mode_ratios`.

    iowait counts as not busy because the CPU was idle (it only had I/O outstanding; ``proc(5)`` calls the
    iowait figure unreliable for exactly that reason); steal counts as busy because the vCPU wanted to run.
    This is the usual "CPU busy" of sar/Grafana node dashboards. Clamped to [0, 1]. None when
    :func:`cpu_mode_ratios` is None.
    """
    ratios = cpu_mode_ratios(prev, cur)
    if ratios is None:
        return None
    return min(1.0, max(0.0, 1.0 - ratios["idle"] - ratios["iowait"]))


SATURATED_BUSY_RATIO = 0.95
"""Default busy share above which a core counts as saturated (the seed's "> 95 % busy")."""


@dataclass(frozen=True)
class CoreSummary:
    """Spread of per-core busy ratios over one interval.

    Attributes:
        average: mean busy ratio over the cores.
        maximum: busiest core's ratio.
        imbalance: population standard deviation divided by the mean (coefficient of variation); None when
            the mean is 0 (all idle: undefined, not balanced).
        saturated: number of cores whose busy ratio is strictly above the threshold.
        cores: number of cores summarised.

    """

    average: float
    maximum: float
    imbalance: float | None
    saturated: int
    cores: int


def core_summary(busy: Mapping[str, float], threshold: float = SATURATED_BUSY_RATIO) -> CoreSummary | None:
    """Summarise per-core busy ratios (``{cpu: ratio}``).

    ``imbalance = sqrt(Σ(b - mean)² / n) / mean``: 0 when every core is equally busy; one core at 100 % and
    n-1 idle gives ``sqrt(n - 1)``.

    Returns:
        The summary, or None for an empty mapping.

    """
    values = list(busy.values())
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return CoreSummary(
        average=mean,
        maximum=max(values),
        imbalance=std / mean if mean > 0 else None,
        saturated=sum(1 for v in values if v > threshold),
        cores=n,
    )


# -------------------------------------------------------------------------------------------------- memory


def counter_rate(prev: int | None, cur: int | None, interval: float, scale: float = 1.0) -> float | None:
    """Return ``(cur - prev) × scale / interval``; None when a value is missing or went back, or interval <= 0.

    Used for the vmstat rates: ``si``/``so`` = Δpswpin/Δpswpout × page size (procps ``vmstat.c`` multiplies
    the page delta by ``kb_per_page`` and divides by the delay), ``bi``/``bo`` = Δpgpgin/Δpgpgout × 1024
    (those counters are in KiB).
    """
    if prev is None or cur is None or not interval > 0 or cur < prev:
        return None
    return (cur - prev) * scale / interval


def psi_stall_ratio(prev_total_us: int | None, cur_total_us: int | None, interval: float) -> float | None:
    """Share of the interval during which tasks were stalled, from PSI ``total=`` microsecond counters.

    ``Δtotal / (interval × 10⁶)`` (``Documentation/accounting/psi.rst``: total is the absolute stall time
    in µs). Unlike the kernel's ``avg10`` (an exponentially decaying average), it covers exactly the
    sampling interval. Clamped to [0, 1] because our interval and the kernel's clock differ by jitter.
    None when a value is missing or went backwards.
    """
    rate = counter_rate(prev_total_us, cur_total_us, interval, 1e-6)
    return None if rate is None else min(1.0, rate)
