"""diskstats, cpu and memory collectors on a fixture proc tree (tests/fixtures/proc/t0 then t1, 10 s apart)."""

from __future__ import annotations

import shutil
import time

import pytest
from conftest import OWN_FIXTURES

from nomade.exporter.collectors.base import CollectorContext, CollectorError
from nomade.exporter.collectors.cpu import CpuCollector
from nomade.exporter.collectors.diskstats import DiskstatsCollector
from nomade.exporter.collectors.memory import MemoryCollector
from nomade.exporter.registry import ScrapeOrchestrator
from nomade.exporter.runner import CommandRunner

FIX = OWN_FIXTURES / "proc"
T0, T1 = 1000.0, 1010.0


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(FIX / "t0", root)
    return root


def make(cls, root, **opts):
    ctx = CollectorContext(runner=CommandRunner(), options={"sample_interval": 3600, **opts}, proc_root=root)
    c = cls(ctx)
    c.sampler.clock = lambda: T1
    return c


def advance(c, root):
    """Re-take the t0 reading at T0, then switch the tree to t1 and read at T1."""
    c.sampler.sample_once(now=T0)
    shutil.copytree(FIX / "t1", root, dirs_exist_ok=True)
    c.sampler.sample_once(now=T1)


def collect(c):
    out = c.new_set()
    c.collect(out)
    return out


def test_diskstats_counters_and_filter(proc):
    c = make(DiskstatsCollector, proc)
    try:
        out = collect(c)
        devices = {k[0] for k in out.samples("nomade_disk_reads_completed_total")}
        assert devices == {"sda", "nvme0n1", "dm-0"}  # loop0 and the partition sda1 are excluded by default
        assert out.value("nomade_disk_read_bytes_total", device="sda") == 80000 * 512
        assert out.value("nomade_disk_io_time_seconds_total", device="sda") == pytest.approx(3.0)
        assert out.value("nomade_disk_flush_requests_total", device="sda") == 400
        assert out.value("nomade_disk_flush_requests_total", device="nvme0n1") is None  # 18-field kernel
        assert out.value("nomade_disk_discarded_bytes_total", device="nvme0n1") == 0
        assert out.value("nomade_disk_io_now", device="nvme0n1") == 2
        assert out.value("nomade_disk_pressure_stalled_seconds_total", kind="some") == pytest.approx(0.1)
        assert out.value("nomade_disk_pressure_average_ratio", kind="full", window="60s") == pytest.approx(0.005)
        # Only one reading so far: no interval figures.
        assert out.samples("nomade_disk_utilization_ratio") == {}
        assert out.samples("nomade_disk_sample_interval_seconds") == {}
    finally:
        c.close()


def test_diskstats_rates(proc):
    c = make(DiskstatsCollector, proc)
    try:
        advance(c, proc)
        out = collect(c)
        assert out.value("nomade_disk_sample_interval_seconds") == 10.0
        assert out.value("nomade_disk_read_iops", device="sda") == pytest.approx(20.0)
        assert out.value("nomade_disk_write_bytes_per_second", device="sda") == pytest.approx(5_120_000.0)
        assert out.value("nomade_disk_write_await_seconds", device="sda") == pytest.approx(0.008)
        assert out.value("nomade_disk_queue_size", device="sda") == pytest.approx(0.5)
        assert out.value("nomade_disk_utilization_ratio", device="sda") == pytest.approx(0.6)
        assert out.value("nomade_disk_read_await_seconds", device="nvme0n1") is None
        assert out.value("nomade_disk_utilization_ratio", device="nvme0n1") == pytest.approx(0.1)
        assert out.value("nomade_disk_utilization_ratio", device="dm-0") is None  # counter reset
        assert out.value("nomade_disk_pressure_stall_ratio", kind="some") == pytest.approx(0.1)
        assert out.value("nomade_disk_pressure_stall_ratio", kind="full") == pytest.approx(0.05)
        # Stale pair (sampler stopped updating): figures disappear.
        c.sampler.clock = lambda: T1 + 3 * 3600 + 2
        assert collect(c).samples("nomade_disk_utilization_ratio") == {}
    finally:
        c.close()


def test_diskstats_include_exclude_options(proc):
    c = make(DiskstatsCollector, proc, device_exclude="^dm-", device_include="^(sd|dm)")
    try:
        devices = {k[0] for k in collect(c).samples("nomade_disk_reads_completed_total")}
        assert devices == {"sda", "sda1"}
    finally:
        c.close()


def test_cpu_counters(proc):
    c = make(CpuCollector, proc, user_hz=100)
    try:
        out = collect(c)
        assert out.value("nomade_cpu_seconds_total", cpu="0", mode="user") == pytest.approx(50.0)
        assert out.value("nomade_cpu_seconds_total", cpu="1", mode="idle") == pytest.approx(400.0)
        assert out.value("nomade_cpu_guest_seconds_total", cpu="0", mode="user") == pytest.approx(5.0)
        assert len(out.samples("nomade_cpu_seconds_total")) == 2 * 8
        assert ("all", "user") not in out.samples("nomade_cpu_seconds_total")
        assert out.value("nomade_cpu_count") == 2
        assert out.value("nomade_cpu_context_switches_total") == 987654
        assert out.value("nomade_cpu_forks_total") == 4321
        assert out.value("nomade_cpu_interrupts_total") == 123456
        assert out.value("nomade_cpu_boot_time_seconds") == 1700000000
        assert out.value("nomade_cpu_saturation_threshold_ratio") == 0.95
        assert out.samples("nomade_cpu_mode_ratio") == {}
    finally:
        c.close()


def test_cpu_mpstat_figures(proc):
    c = make(CpuCollector, proc, user_hz=100)
    try:
        advance(c, proc)
        out = collect(c)
        assert out.value("nomade_cpu_mode_ratio", mode="user") == pytest.approx(0.475)
        assert out.value("nomade_cpu_mode_ratio", mode="iowait") == pytest.approx(0.075)
        assert out.value("nomade_cpu_mode_ratio", mode="guest") == pytest.approx(0.05)
        assert out.value("nomade_cpu_core_busy_ratio", cpu="0") == pytest.approx(1.0)
        assert out.value("nomade_cpu_core_busy_ratio", cpu="1") == pytest.approx(0.15)
        assert out.value("nomade_cpu_busy_average_ratio") == pytest.approx(0.575)
        assert out.value("nomade_cpu_busy_max_ratio") == pytest.approx(1.0)
        assert out.value("nomade_cpu_imbalance_ratio") == pytest.approx(0.425 / 0.575)
        assert out.value("nomade_cpu_saturated_cores") == 1
        assert out.value("nomade_cpu_pressure_stall_ratio", kind="some") == pytest.approx(0.5)
        assert out.value("nomade_cpu_pressure_average_ratio", kind="some", window="10s") == pytest.approx(0.5)
    finally:
        c.close()


def test_cpu_saturation_threshold_option(proc):
    c = make(CpuCollector, proc, saturation_threshold=0.1)
    try:
        advance(c, proc)
        assert collect(c).value("nomade_cpu_saturated_cores") == 2
    finally:
        c.close()


def test_memory_gauges_and_counters(proc):
    c = make(MemoryCollector, proc, page_size=4096)
    try:
        out = collect(c)
        kib = 1024
        assert out.value("nomade_memory_total_bytes") == 16384000 * kib
        assert out.value("nomade_memory_available_bytes") == 12288000 * kib
        assert out.value("nomade_memory_cache_bytes") == (3072000 + 512000) * kib
        assert out.value("nomade_memory_used_bytes") == (16384000 - 12288000) * kib
        assert out.value("nomade_memory_available_ratio") == pytest.approx(0.75)
        assert out.value("nomade_memory_swap_free_bytes") == 4000000 * kib
        assert out.value("nomade_memory_hugepages", state="reserved") == 2
        assert out.value("nomade_memory_hugepage_size_bytes") == 2048 * kib
        assert out.value("nomade_memory_swapped_in_pages_total") == 1000
        assert out.value("nomade_memory_paged_out_bytes_total") == 60000 * kib
        assert out.value("nomade_memory_oom_kills_total") == 2
        assert out.value("nomade_memory_procs_blocked") == 1
        assert out.value("nomade_memory_procs_running") == 3
        assert out.value("nomade_memory_pressure_stalled_seconds_total", kind="some") == pytest.approx(1.0)
        assert out.samples("nomade_memory_pressure_ratio") == {}
    finally:
        c.close()


def test_memory_vmstat_rates_and_pressure(proc):
    c = make(MemoryCollector, proc, page_size=4096)
    try:
        advance(c, proc)
        out = collect(c)
        assert out.value("nomade_memory_swap_in_bytes_per_second") == pytest.approx(250 * 4096 / 10)
        assert out.value("nomade_memory_swap_out_bytes_per_second") == pytest.approx(500 * 4096 / 10)
        assert out.value("nomade_memory_paged_in_bytes_per_second") == pytest.approx(20000 * 1024 / 10)
        assert out.value("nomade_memory_paged_out_bytes_per_second") == pytest.approx(50000 * 1024 / 10)
        assert out.value("nomade_memory_major_page_faults_per_second") == pytest.approx(5.0)
        assert out.value("nomade_memory_pressure_ratio") == pytest.approx(0.25)
        assert out.value("nomade_memory_pressure_stall_ratio", kind="full") == pytest.approx(0.1)
        assert out.value("nomade_memory_pressure_average_ratio", kind="some", window="300s") == pytest.approx(0.0205)
        assert out.value("nomade_memory_procs_blocked") == 4  # fresh read of /proc/stat, not the sampler
    finally:
        c.close()


def test_memory_without_psi(proc):
    shutil.rmtree(proc / "pressure")
    c = make(MemoryCollector, proc)
    try:
        c.sampler.sample_once(now=T0)
        c.sampler.sample_once(now=T1)
        out = collect(c)
        assert out.samples("nomade_memory_pressure_ratio") == {}
        assert out.samples("nomade_memory_pressure_stalled_seconds_total") == {}
        assert out.value("nomade_memory_swap_in_bytes_per_second") == 0.0
    finally:
        c.close()


def test_parse_errors_are_counted(proc):
    (proc / "diskstats").write_text((proc / "diskstats").read_text() + "   8  9 broken 1 2 3\n")
    c = make(DiskstatsCollector, proc)
    try:
        collect(c)
        assert c.parse_errors == 1
    finally:
        c.close()


@pytest.mark.parametrize("cls", [DiskstatsCollector, CpuCollector, MemoryCollector])
def test_missing_source_raises_and_orchestrator_reports_down(tmp_path, cls):
    c = make(cls, tmp_path / "nothing")
    try:
        with pytest.raises(CollectorError):
            collect(c)
        orch = ScrapeOrchestrator([c], CommandRunner(), scrape_timeout=5)
        fams = {f.name: f for f in orch.collect()}
        up = [s for s in fams["nomade_collector_up"].samples if s.labels["collector"] == c.name]
        assert up[0].value == 0
    finally:
        c.close()


def test_background_sampler_runs_and_stops(proc):
    ctx = CollectorContext(runner=CommandRunner(), options={"sample_interval": 0.05}, proc_root=proc)
    c = CpuCollector(ctx)
    try:
        deadline = time.monotonic() + 5
        while c.sampler.pair() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.sampler.pair() is not None
        assert 0.01 <= collect(c).value("nomade_cpu_sample_interval_seconds") <= 2.0
    finally:
        c.close()
    assert not c.sampler._thread.is_alive()
