"""Memory collector (node mode): ``/proc/meminfo``, ``/proc/vmstat``, ``/proc/stat`` and PSI.

Reports the kernel's memory gauges and counters on every scrape, plus vmstat-style rates and the memory
pressure figures over the interval between the last two readings of a background sampler (option
``sample_interval``), so that every scraper sees the same figures.

**The single memory-pressure figure** ``nomade_memory_pressure_ratio`` is the share of the last sampling
interval during which at least one runnable task was stalled waiting for memory (reclaim, swap-in,
refaults of thrashed page cache): PSI ``some`` of ``/proc/pressure/memory``, computed from its ``total=``
microsecond counter (``Documentation/accounting/psi.rst``). It is absent on kernels without PSI (before 4.20,
or booted without ``psi=1`` where ``CONFIG_PSI_DEFAULT_DISABLED``): no fallback is synthesised, because free
memory or swap rates are not a stall measure; use ``nomade_memory_available_ratio`` and the swap rates there.

The PSI helpers of this module are shared with the cpu and diskstats collectors (their own PSI files).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..derived import counter_rate, psi_stall_ratio
from ..metrics import MetricSet, MetricSpec
from ..parsers.proc_meminfo import meminfo_dict, parse_meminfo
from ..parsers.proc_pressure import PressureLine, parse_pressure, pressure_by_kind
from ..parsers.proc_stat import parse_stat
from ..parsers.proc_vmstat import parse_vmstat, vmstat_dict
from ..sampler import Sampler
from .base import Collector, CollectorContext, CollectorError

DEFAULT_SAMPLE_INTERVAL = 15.0
"""Seconds between background readings (the interval of every derived figure), option ``sample_interval``."""


def read_proc_text(proc_root: Path, rel: str) -> str:
    """Read ``proc_root/rel`` as text.

    Raises:
        CollectorError: the file is missing or unreadable.

    """
    try:
        return (proc_root / rel).read_text(errors="replace")
    except OSError as exc:
        raise CollectorError(f"cannot read {proc_root / rel}: {exc}") from exc


# ------------------------------------------------------------------------------------------- PSI helpers

PSI_WINDOWS = (("10s", "avg10"), ("60s", "avg60"), ("300s", "avg300"))


def pressure_specs(prefix: str, what: str) -> tuple[MetricSpec, ...]:
    """Metric declarations for one PSI resource under ``prefix`` (``nomade_memory_pressure`` ...).

    Args:
        prefix: metric name prefix.
        what: human wording of the resource for the help text (``"memory"``, ``"CPU"``, ``"I/O"``).

    """
    return (
        MetricSpec(
            f"{prefix}_stalled_seconds_total",
            "counter",
            f"Time tasks were stalled on {what} since boot (PSI total=, /proc/pressure), by kind "
            "(some: at least one task, full: all non-idle tasks).",
            ("kind",),
            "seconds",
        ),
        MetricSpec(
            f"{prefix}_stall_ratio",
            "gauge",
            f"Share of the last sampling interval with tasks stalled on {what} (PSI total= delta / interval), by kind.",
            ("kind",),
            "ratio",
        ),
        MetricSpec(
            f"{prefix}_average_ratio",
            "gauge",
            f"Kernel's running average share of time stalled on {what} (PSI avg10/avg60/avg300 / 100), "
            "by kind and window.",
            ("kind", "window"),
            "ratio",
        ),
    )


def read_pressure(proc_root: Path, resource: str) -> tuple[dict[str, PressureLine] | None, int]:
    """Read and parse ``proc_root/pressure/<resource>``.

    Returns:
        ``({kind: line} or None when PSI is unavailable, number of parse issues)``. A missing file (kernel
        without PSI) and EOPNOTSUPP (PSI compiled in but disabled) both give None: not an error of the
        collector.

    """
    try:
        text = (proc_root / "pressure" / resource).read_text(errors="replace")
    except OSError:
        return None, 0
    result = parse_pressure(text)
    return pressure_by_kind(result) or None, len(result.issues)


def add_pressure_counters(out: MetricSet, prefix: str, psi: dict[str, PressureLine] | None) -> None:
    """Add the PSI counters and the kernel's averages of one resource to ``out``."""
    for kind, line in (psi or {}).items():
        out.add(f"{prefix}_stalled_seconds_total", line.total_us / 1e6, kind=kind)
        for window, attr in PSI_WINDOWS:
            out.add(f"{prefix}_average_ratio", getattr(line, attr), kind=kind, window=window)


def psi_ratios(
    prev: dict[str, PressureLine] | None, cur: dict[str, PressureLine] | None, interval: float
) -> dict[str, float]:
    """PSI stall share per kind over an interval (:func:`~nomade.exporter.derived.psi_stall_ratio`)."""
    out: dict[str, float] = {}
    if not prev or not cur:
        return out
    for kind, line in cur.items():
        if kind in prev:
            ratio = psi_stall_ratio(prev[kind].total_us, line.total_us, interval)
            if ratio is not None:
                out[kind] = ratio
    return out


# ------------------------------------------------------------------------------------------------ memory

MEMINFO_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("MemTotal", "nomade_memory_total_bytes", "Usable RAM (MemTotal)."),
    ("MemFree", "nomade_memory_free_bytes", "Unused RAM (MemFree; vmstat 'free')."),
    (
        "MemAvailable",
        "nomade_memory_available_bytes",
        "Kernel's estimate of memory available for new work without swapping (MemAvailable, 3.14+).",
    ),
    ("Buffers", "nomade_memory_buffers_bytes", "Block-device buffer cache (Buffers; vmstat 'buff')."),
    ("Cached", "nomade_memory_cached_bytes", "Page cache excluding swap cache (Cached)."),
    ("SwapCached", "nomade_memory_swap_cached_bytes", "Swapped-out memory also still in RAM (SwapCached)."),
    ("Active", "nomade_memory_active_bytes", "Recently used memory (Active)."),
    ("Inactive", "nomade_memory_inactive_bytes", "Less recently used, reclaimable first (Inactive)."),
    ("SwapTotal", "nomade_memory_swap_total_bytes", "Total swap space (SwapTotal)."),
    ("SwapFree", "nomade_memory_swap_free_bytes", "Unused swap space (SwapFree)."),
    ("Dirty", "nomade_memory_dirty_bytes", "Memory waiting to be written back to disk (Dirty)."),
    ("Writeback", "nomade_memory_writeback_bytes", "Memory being written back to disk (Writeback)."),
    ("AnonPages", "nomade_memory_anon_bytes", "Anonymous memory mapped into user page tables (AnonPages)."),
    ("Mapped", "nomade_memory_mapped_bytes", "Files mapped into memory (Mapped)."),
    ("Shmem", "nomade_memory_shmem_bytes", "Shared memory and tmpfs (Shmem)."),
    ("SReclaimable", "nomade_memory_slab_reclaimable_bytes", "Reclaimable kernel slab (SReclaimable)."),
    ("SUnreclaim", "nomade_memory_slab_unreclaimable_bytes", "Unreclaimable kernel slab (SUnreclaim)."),
    ("CommitLimit", "nomade_memory_commit_limit_bytes", "Overcommit limit (CommitLimit)."),
    ("Committed_AS", "nomade_memory_committed_bytes", "Memory committed to processes (Committed_AS)."),
    ("Hugepagesize", "nomade_memory_hugepage_size_bytes", "Default huge page size (Hugepagesize)."),
)
"""``(meminfo key, metric name, help)`` for the meminfo lines exported as byte gauges."""

HUGEPAGE_STATES = (
    ("HugePages_Total", "total"),
    ("HugePages_Free", "free"),
    ("HugePages_Rsvd", "reserved"),
    ("HugePages_Surp", "surplus"),
)

VMSTAT_COUNTERS: tuple[tuple[str, str, float, str], ...] = (
    ("pswpin", "nomade_memory_swapped_in_pages_total", 1.0, "Pages swapped in since boot (pswpin)."),
    ("pswpout", "nomade_memory_swapped_out_pages_total", 1.0, "Pages swapped out since boot (pswpout)."),
    (
        "pgpgin",
        "nomade_memory_paged_in_bytes_total",
        1024.0,
        "Data paged in from block devices since boot (pgpgin, KiB x 1024).",
    ),
    (
        "pgpgout",
        "nomade_memory_paged_out_bytes_total",
        1024.0,
        "Data paged out to block devices since boot (pgpgout, KiB x 1024).",
    ),
    ("pgfault", "nomade_memory_page_faults_total", 1.0, "Page faults since boot, minor and major (pgfault)."),
    (
        "pgmajfault",
        "nomade_memory_major_page_faults_total",
        1.0,
        "Major page faults (needing I/O) since boot (pgmajfault).",
    ),
    ("oom_kill", "nomade_memory_oom_kills_total", 1.0, "OOM-killer kills since boot (oom_kill, 4.13+)."),
)
"""``(vmstat name, metric name, scale, help)`` for the /proc/vmstat counters exported."""


class MemoryCollector(Collector):
    """vmstat figures, meminfo gauges and memory PSI.

    Options (``[collector.memory]``):
        sample_interval: seconds between background readings (default 15); the rates and PSI shares cover
            the interval between the last two readings and are absent until two exist (or when the last
            reading is older than three intervals).
        page_size: bytes per page for the swap rates (default: this machine's, ``sysconf(_SC_PAGE_SIZE)``);
            only useful with a fixture ``proc_root`` from another architecture.

    Derived figures (procps ``vmstat`` ``si``/``so``/``bi``/``bo``, in bytes/s): swap in/out = Δpswpin/Δpswpout
    × page size / interval; paged in/out = Δpgpgin/Δpgpgout × 1024 / interval. ``nomade_memory_procs_blocked``
    is vmstat's ``b`` (``procs_blocked`` of /proc/stat, an instantaneous count) and
    ``nomade_memory_procs_running`` its ``r`` (``procs_running``).
    """

    name = "memory"
    mode = "node"
    description = "Memory, swap and paging from /proc/meminfo, /proc/vmstat, /proc/stat and PSI."
    metrics = (
        *(MetricSpec(m, "gauge", h, (), "bytes") for _, m, h in MEMINFO_GAUGES),
        MetricSpec(
            "nomade_memory_hugepages",
            "gauge",
            "Huge pages of the default size by state (HugePages_Total/Free/Rsvd/Surp).",
            ("state",),
        ),
        MetricSpec(
            "nomade_memory_cache_bytes",
            "gauge",
            "Page cache plus reclaimable slab (Cached + SReclaimable), procps vmstat/free 'cache'.",
            (),
            "bytes",
        ),
        MetricSpec(
            "nomade_memory_used_bytes",
            "gauge",
            "MemTotal - MemAvailable (procps-ng >= 4.0.1 free 'used').",
            (),
            "bytes",
        ),
        MetricSpec("nomade_memory_available_ratio", "gauge", "MemAvailable / MemTotal.", (), "ratio"),
        *(MetricSpec(m, "counter", h) for _, m, _, h in VMSTAT_COUNTERS),
        MetricSpec(
            "nomade_memory_procs_blocked",
            "gauge",
            "Tasks in uninterruptible sleep, usually waiting for I/O (procs_blocked; vmstat 'b').",
        ),
        MetricSpec("nomade_memory_procs_running", "gauge", "Runnable tasks (procs_running of /proc/stat; vmstat 'r')."),
        MetricSpec(
            "nomade_memory_swap_in_bytes_per_second",
            "gauge",
            "Swap-in rate over the sampling interval (vmstat 'si' in bytes/s).",
            (),
            "bytes",
        ),
        MetricSpec(
            "nomade_memory_swap_out_bytes_per_second",
            "gauge",
            "Swap-out rate over the sampling interval (vmstat 'so' in bytes/s).",
            (),
            "bytes",
        ),
        MetricSpec(
            "nomade_memory_paged_in_bytes_per_second",
            "gauge",
            "Page-in rate from block devices over the sampling interval (vmstat 'bi' in bytes/s).",
            (),
            "bytes",
        ),
        MetricSpec(
            "nomade_memory_paged_out_bytes_per_second",
            "gauge",
            "Page-out rate to block devices over the sampling interval (vmstat 'bo' in bytes/s).",
            (),
            "bytes",
        ),
        MetricSpec(
            "nomade_memory_major_page_faults_per_second",
            "gauge",
            "Major page faults per second over the sampling interval (sar -B majflt/s).",
        ),
        MetricSpec(
            "nomade_memory_pressure_ratio",
            "gauge",
            "NOMADE memory-pressure figure: share of the sampling interval with at least one task "
            "stalled on memory (PSI memory 'some'); absent without PSI.",
            (),
            "ratio",
        ),
        *pressure_specs("nomade_memory_pressure", "memory"),
        MetricSpec(
            "nomade_memory_sample_interval_seconds",
            "gauge",
            "Length of the interval the memory rates and PSI shares cover.",
            (),
            "seconds",
        ),
    )

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.page_size = int(self.option("page_size", 0)) or os.sysconf("SC_PAGE_SIZE")
        self.sampler: Sampler[tuple[dict[str, int], dict[str, PressureLine] | None]] = Sampler(
            self._read_sample, float(self.option("sample_interval", DEFAULT_SAMPLE_INTERVAL)), name="memory"
        )
        self.sampler.start()

    def _read_sample(self) -> tuple[dict[str, int], dict[str, PressureLine] | None]:
        vm = vmstat_dict(parse_vmstat(read_proc_text(self.ctx.proc_root, "vmstat")))
        psi, _ = read_pressure(self.ctx.proc_root, "memory")
        return vm, psi

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CollectorError when meminfo, vmstat or stat cannot be read."""
        root = self.ctx.proc_root
        mi_res = parse_meminfo(read_proc_text(root, "meminfo"))
        vm_res = parse_vmstat(read_proc_text(root, "vmstat"))
        st_res = parse_stat(read_proc_text(root, "stat"))
        psi, psi_issues = read_pressure(root, "memory")
        self.count_parse_errors(len(mi_res.issues) + len(vm_res.issues) + len(st_res.issues) + psi_issues)
        mi = meminfo_dict(mi_res)
        if not mi:
            raise CollectorError(f"{root / 'meminfo'}: no usable line")
        for key, metric, _ in MEMINFO_GAUGES:
            out.add(metric, mi.get(key))
        for key, state in HUGEPAGE_STATES:
            out.add("nomade_memory_hugepages", mi.get(key), state=state)
        if "Cached" in mi and "SReclaimable" in mi:
            out.add("nomade_memory_cache_bytes", mi["Cached"] + mi["SReclaimable"])
        total, avail = mi.get("MemTotal"), mi.get("MemAvailable")
        if total and avail is not None:
            out.add("nomade_memory_used_bytes", total - avail)
            out.add("nomade_memory_available_ratio", avail / total)
        vm = vmstat_dict(vm_res)
        for key, metric, scale, _ in VMSTAT_COUNTERS:
            if key in vm:
                out.add(metric, vm[key] * scale)
        values = st_res.records[0].values
        out.add("nomade_memory_procs_blocked", values.get("procs_blocked"))
        out.add("nomade_memory_procs_running", values.get("procs_running"))
        add_pressure_counters(out, "nomade_memory_pressure", psi)
        self._add_rates(out)

    def _add_rates(self, out: MetricSet) -> None:
        fresh = self.sampler.fresh_pair()
        if fresh is None:
            return
        prev, cur, dt = fresh
        (vm0, psi0), (vm1, psi1) = prev.value, cur.value
        out.add("nomade_memory_sample_interval_seconds", dt)
        rates: dict[str, tuple[str, float]] = {
            "nomade_memory_swap_in_bytes_per_second": ("pswpin", self.page_size),
            "nomade_memory_swap_out_bytes_per_second": ("pswpout", self.page_size),
            "nomade_memory_paged_in_bytes_per_second": ("pgpgin", 1024.0),
            "nomade_memory_paged_out_bytes_per_second": ("pgpgout", 1024.0),
            "nomade_memory_major_page_faults_per_second": ("pgmajfault", 1.0),
        }
        for metric, (key, scale) in rates.items():
            out.add(metric, counter_rate(vm0.get(key), vm1.get(key), dt, scale))
        shares = psi_ratios(psi0, psi1, dt)
        for kind, ratio in shares.items():
            out.add("nomade_memory_pressure_stall_ratio", ratio, kind=kind)
        out.add("nomade_memory_pressure_ratio", shares.get("some"))

    def close(self) -> None:
        """Stop the background sampler."""
        self.sampler.stop()


COLLECTOR = MemoryCollector
