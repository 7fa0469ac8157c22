"""Disk I/O collector (node mode): ``/proc/diskstats`` counters and ``iostat -x`` figures, plus I/O PSI.

Counters come from a fresh read on every scrape; the iostat figures (IOPS, throughput, await, queue size,
%util) cover the interval between the last two readings of a background sampler (option
``sample_interval``), see :func:`nomade.exporter.derived.disk_rates` for the formulas.
"""

from __future__ import annotations

import re

from ..derived import disk_rates
from ..metrics import MetricSet, MetricSpec
from ..parsers.proc_diskstats import SECTOR_BYTES, DiskStats, parse_diskstats
from ..parsers.proc_pressure import PressureLine
from ..sampler import Sampler
from .base import Collector, CollectorContext, CollectorError
from .memory import (
    DEFAULT_SAMPLE_INTERVAL,
    add_pressure_counters,
    pressure_specs,
    psi_ratios,
    read_pressure,
    read_proc_text,
)

DEFAULT_DEVICE_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
"""node_exporter's default ``--collector.diskstats.device-exclude``: RAM disks, loop and floppy devices and
partitions of sd/hd/vd/xvd/NVMe disks (whole disks, dm-*, md*, sr* stay)."""

_D = ("device",)


class DiskstatsCollector(Collector):
    """Per-device I/O counters and iostat figures.

    Options (``[collector.diskstats]``):
        device_exclude: regex of device names to skip (default :data:`DEFAULT_DEVICE_EXCLUDE`).
        device_include: regex; when set, only matching devices are reported (checked before the exclude).
        sample_interval: seconds between background readings (default 15).
    """

    name = "diskstats"
    mode = "node"
    description = "Block-device I/O counters and iostat -x figures from /proc/diskstats."
    metrics = (
        MetricSpec("nomade_disk_reads_completed_total", "counter", "Reads completed (diskstats field 1).", _D),
        MetricSpec("nomade_disk_reads_merged_total", "counter", "Adjacent reads merged (field 2).", _D),
        MetricSpec("nomade_disk_read_bytes_total", "counter", "Bytes read (field 3, 512-byte sectors).", _D, "bytes"),
        MetricSpec("nomade_disk_read_time_seconds_total", "counter", "Time spent on reads (field 4).", _D, "seconds"),
        MetricSpec("nomade_disk_writes_completed_total", "counter", "Writes completed (field 5).", _D),
        MetricSpec("nomade_disk_writes_merged_total", "counter", "Adjacent writes merged (field 6).", _D),
        MetricSpec(
            "nomade_disk_written_bytes_total", "counter", "Bytes written (field 7, 512-byte sectors).", _D, "bytes"
        ),
        MetricSpec("nomade_disk_write_time_seconds_total", "counter", "Time spent on writes (field 8).", _D, "seconds"),
        MetricSpec("nomade_disk_io_now", "gauge", "I/Os in flight at the time of reading (field 9).", _D),
        MetricSpec(
            "nomade_disk_io_time_seconds_total",
            "counter",
            "Time with at least one I/O in flight (field 10, io_ticks; iostat %util source).",
            _D,
            "seconds",
        ),
        MetricSpec(
            "nomade_disk_io_time_weighted_seconds_total",
            "counter",
            "I/O time weighted by the number of I/Os in flight (field 11; iostat aqu-sz source).",
            _D,
            "seconds",
        ),
        MetricSpec("nomade_disk_discards_completed_total", "counter", "Discards completed (field 12, 4.18+).", _D),
        MetricSpec("nomade_disk_discarded_bytes_total", "counter", "Bytes discarded (field 14, 4.18+).", _D, "bytes"),
        MetricSpec(
            "nomade_disk_discard_time_seconds_total", "counter", "Time spent on discards (field 15).", _D, "seconds"
        ),
        MetricSpec("nomade_disk_flush_requests_total", "counter", "Flush requests completed (field 16, 5.5+).", _D),
        MetricSpec(
            "nomade_disk_flush_time_seconds_total", "counter", "Time spent on flushes (field 17).", _D, "seconds"
        ),
        MetricSpec(
            "nomade_disk_read_iops", "gauge", "Reads completed per second over the sampling interval (iostat r/s).", _D
        ),
        MetricSpec("nomade_disk_write_iops", "gauge", "Writes completed per second (iostat w/s).", _D),
        MetricSpec("nomade_disk_read_bytes_per_second", "gauge", "Read throughput (iostat rkB/s x 1024).", _D, "bytes"),
        MetricSpec(
            "nomade_disk_write_bytes_per_second", "gauge", "Write throughput (iostat wkB/s x 1024).", _D, "bytes"
        ),
        MetricSpec(
            "nomade_disk_read_await_seconds",
            "gauge",
            "Mean time per read, queueing included (iostat r_await / 1000); absent without reads.",
            _D,
            "seconds",
        ),
        MetricSpec(
            "nomade_disk_write_await_seconds",
            "gauge",
            "Mean time per write, queueing included (iostat w_await / 1000); absent without writes.",
            _D,
            "seconds",
        ),
        MetricSpec("nomade_disk_queue_size", "gauge", "Average number of I/Os in flight (iostat aqu-sz).", _D),
        MetricSpec(
            "nomade_disk_utilization_ratio",
            "gauge",
            "Share of the sampling interval with at least one I/O in flight (iostat %util / 100).",
            _D,
            "ratio",
        ),
        *pressure_specs("nomade_disk_pressure", "I/O (PSI /proc/pressure/io)"),
        MetricSpec(
            "nomade_disk_sample_interval_seconds",
            "gauge",
            "Length of the interval the disk rates cover.",
            (),
            "seconds",
        ),
    )

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.exclude = re.compile(str(self.option("device_exclude", DEFAULT_DEVICE_EXCLUDE)))
        include = self.option("device_include", None)
        self.include = re.compile(str(include)) if include else None
        self.sampler: Sampler[tuple[dict[str, DiskStats], dict[str, PressureLine] | None]] = Sampler(
            self._read_sample, float(self.option("sample_interval", DEFAULT_SAMPLE_INTERVAL)), name="diskstats"
        )
        self.sampler.start()

    def wanted(self, device: str) -> bool:
        """Whether ``device`` passes the include/exclude filters."""
        if self.include is not None and not self.include.search(device):
            return False
        return not self.exclude.search(device)

    def _read_sample(self) -> tuple[dict[str, DiskStats], dict[str, PressureLine] | None]:
        result = parse_diskstats(read_proc_text(self.ctx.proc_root, "diskstats"))
        psi, _ = read_pressure(self.ctx.proc_root, "io")
        return {d.device: d for d in result.records if self.wanted(d.device)}, psi

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CollectorError when /proc/diskstats cannot be read."""
        result = parse_diskstats(read_proc_text(self.ctx.proc_root, "diskstats"))
        psi, psi_issues = read_pressure(self.ctx.proc_root, "io")
        self.count_parse_errors(len(result.issues) + psi_issues)
        if result.issues and not result.records:
            raise CollectorError("/proc/diskstats: no usable line")
        for d in result.records:
            if self.wanted(d.device):
                self._add_counters(out, d)
        add_pressure_counters(out, "nomade_disk_pressure", psi)
        self._add_rates(out)

    @staticmethod
    def _add_counters(out: MetricSet, d: DiskStats) -> None:
        dev = d.device
        ms = 1e-3
        out.add("nomade_disk_reads_completed_total", d.reads_completed, device=dev)
        out.add("nomade_disk_reads_merged_total", d.reads_merged, device=dev)
        out.add("nomade_disk_read_bytes_total", d.sectors_read * SECTOR_BYTES, device=dev)
        out.add("nomade_disk_read_time_seconds_total", d.read_time_ms * ms, device=dev)
        out.add("nomade_disk_writes_completed_total", d.writes_completed, device=dev)
        out.add("nomade_disk_writes_merged_total", d.writes_merged, device=dev)
        out.add("nomade_disk_written_bytes_total", d.sectors_written * SECTOR_BYTES, device=dev)
        out.add("nomade_disk_write_time_seconds_total", d.write_time_ms * ms, device=dev)
        out.add("nomade_disk_io_now", d.io_in_progress, device=dev)
        out.add("nomade_disk_io_time_seconds_total", d.io_time_ms * ms, device=dev)
        out.add("nomade_disk_io_time_weighted_seconds_total", d.io_weighted_time_ms * ms, device=dev)
        if d.discards_completed is not None:
            out.add("nomade_disk_discards_completed_total", d.discards_completed, device=dev)
            out.add("nomade_disk_discarded_bytes_total", (d.sectors_discarded or 0) * SECTOR_BYTES, device=dev)
            out.add("nomade_disk_discard_time_seconds_total", (d.discard_time_ms or 0) * ms, device=dev)
        if d.flushes_completed is not None:
            out.add("nomade_disk_flush_requests_total", d.flushes_completed, device=dev)
            out.add("nomade_disk_flush_time_seconds_total", (d.flush_time_ms or 0) * ms, device=dev)

    def _add_rates(self, out: MetricSet) -> None:
        fresh = self.sampler.fresh_pair()
        if fresh is None:
            return
        prev, cur, dt = fresh
        out.add("nomade_disk_sample_interval_seconds", dt)
        (disks0, psi0), (disks1, psi1) = prev.value, cur.value
        for dev, d1 in disks1.items():
            d0 = disks0.get(dev)
            # A device re-created under the same name (new major:minor) is a new counter series.
            if d0 is None or (d0.major, d0.minor) != (d1.major, d1.minor):
                continue
            r = disk_rates(d0, d1, dt)
            if r is None:
                continue
            out.add("nomade_disk_read_iops", r.read_iops, device=dev)
            out.add("nomade_disk_write_iops", r.write_iops, device=dev)
            out.add("nomade_disk_read_bytes_per_second", r.read_bytes_per_second, device=dev)
            out.add("nomade_disk_write_bytes_per_second", r.write_bytes_per_second, device=dev)
            out.add("nomade_disk_read_await_seconds", r.read_await_seconds, device=dev)
            out.add("nomade_disk_write_await_seconds", r.write_await_seconds, device=dev)
            out.add("nomade_disk_queue_size", r.queue_size, device=dev)
            out.add("nomade_disk_utilization_ratio", r.utilization_ratio, device=dev)
        for kind, ratio in psi_ratios(psi0, psi1, dt).items():
            out.add("nomade_disk_pressure_stall_ratio", ratio, kind=kind)

    def close(self) -> None:
        """Stop the background sampler."""
        self.sampler.stop()


COLLECTOR = DiskstatsCollector
