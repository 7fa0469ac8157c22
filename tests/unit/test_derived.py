"""Derived figures against values computed by hand from the fixture snapshots (10 s apart)."""

from __future__ import annotations

import math

import pytest
from conftest import own_fixture
from hypothesis import given
from hypothesis import strategies as st

from nomade.exporter.derived import (
    CPU_MODES,
    core_summary,
    counter_rate,
    cpu_busy_ratio,
    cpu_interval_ticks,
    cpu_mode_ratios,
    disk_rates,
    psi_stall_ratio,
)
from nomade.exporter.parsers.proc_diskstats import parse_diskstats
from nomade.exporter.parsers.proc_stat import CpuTimes, parse_stat


def _disks(t):
    return {d.device: d for d in parse_diskstats(own_fixture("proc", t, "diskstats")).records}


def _cpus(t):
    return {c.cpu: c for c in parse_stat(own_fixture("proc", t, "stat")).records[0].cpus}


def test_disk_rates_sda_hand_computed():
    # sda over 10 s: +200 reads, +40000 sectors read, +1000 ms reading; +500 writes, +100000 sectors written,
    # +4000 ms writing; io_ticks +6000 ms; weighted +5000 ms.
    r = disk_rates(_disks("t0")["sda"], _disks("t1")["sda"], 10.0)
    assert r.read_iops == pytest.approx(20.0)  # iostat r/s 20.00
    assert r.write_iops == pytest.approx(50.0)  # w/s 50.00
    assert r.read_bytes_per_second == pytest.approx(40000 * 512 / 10)  # rkB/s 2000.00
    assert r.write_bytes_per_second == pytest.approx(100000 * 512 / 10)  # wkB/s 5000.00
    assert r.read_await_seconds == pytest.approx(0.005)  # r_await 5.00 ms
    assert r.write_await_seconds == pytest.approx(0.008)  # w_await 8.00 ms
    assert r.queue_size == pytest.approx(0.5)  # aqu-sz 0.50
    assert r.utilization_ratio == pytest.approx(0.6)  # %util 60.00


def test_disk_rates_no_reads_and_reset():
    r = disk_rates(_disks("t0")["nvme0n1"], _disks("t1")["nvme0n1"], 10.0)
    assert r.read_iops == 0.0 and r.read_await_seconds is None  # iostat prints 0.00: undefined, we omit
    assert r.write_iops == pytest.approx(100.0) and r.write_await_seconds == pytest.approx(0.0005)
    assert r.utilization_ratio == pytest.approx(0.1) and r.queue_size == pytest.approx(0.06)
    assert disk_rates(_disks("t0")["dm-0"], _disks("t1")["dm-0"], 10.0) is None  # counters went back
    assert disk_rates(_disks("t0")["sda"], _disks("t1")["sda"], 0.0) is None


def test_disk_util_clamped():
    d0 = _disks("t0")["sda"]
    r = disk_rates(d0, d0.__class__(**{**d0.__dict__, "io_time_ms": d0.io_time_ms + 10_100}), 10.0)
    assert r.utilization_ratio == 1.0


def test_cpu_mode_ratios_all_hand_computed():
    # all: user +1050 (guest +100 inside), system +100, iowait +150, idle +700 -> 2000 ticks.
    ratios = cpu_mode_ratios(_cpus("t0")["all"], _cpus("t1")["all"])
    assert cpu_interval_ticks(_cpus("t0")["all"], _cpus("t1")["all"]) == 2000
    assert ratios == pytest.approx(
        {
            "user": 0.475,  # (1050 - 100) / 2000: mpstat subtracts guest from user
            "nice": 0.0,
            "system": 0.05,
            "iowait": 0.075,
            "irq": 0.0,
            "softirq": 0.0,
            "steal": 0.0,
            "guest": 0.05,
            "guest_nice": 0.0,
            "idle": 0.35,
        }
    )
    assert set(ratios) == set(CPU_MODES)
    # As in mpstat, the ten columns (guest split out of user) add up to 100 %.
    assert sum(ratios.values()) == pytest.approx(1.0)


def test_cpu_busy_and_summary_hand_computed():
    t0, t1 = _cpus("t0"), _cpus("t1")
    busy = {c: cpu_busy_ratio(t0[c], t1[c]) for c in ("0", "1")}
    assert busy["0"] == pytest.approx(1.0)  # 950 user + 50 sys of 1000 ticks
    assert busy["1"] == pytest.approx(0.15)  # 1 - 700/1000 idle - 150/1000 iowait
    s = core_summary(busy)
    assert s.average == pytest.approx(0.575)
    assert s.maximum == pytest.approx(1.0)
    assert s.imbalance == pytest.approx(0.425 / 0.575)  # population std 0.425
    assert s.saturated == 1 and s.cores == 2
    assert core_summary(busy, threshold=1.0).saturated == 0  # strictly above


def test_cpu_guest_ahead_of_user_and_backwards_columns():
    # sysstat get_per_cpu_interval(): when guest grew more than user, the difference is added back.
    p = CpuTimes("0", 100, 0, 0, 100, 10, 0, 0, 0, 50, 0)
    c = CpuTimes("0", 110, 0, 0, 180, 5, 0, 0, 0, 62, 0)  # user-guest 50 -> 48; iowait went back 10 -> 5
    assert cpu_interval_ticks(p, c) == (110 + 180 + 5) - (100 + 100 + 10) + 2
    r = cpu_mode_ratios(p, c)
    assert r["user"] == 0.0 and r["iowait"] == 0.0  # ll_sp_value(): backwards -> 0
    assert r["idle"] == pytest.approx(80 / 87) and r["guest"] == pytest.approx(12 / 87)


def test_cpu_without_ticks_is_absent():
    c = CpuTimes("3", 1, 2, 3, 4)
    assert cpu_mode_ratios(c, c) is None and cpu_busy_ratio(c, c) is None


def test_core_summary_edge_cases():
    assert core_summary({}) is None
    idle = core_summary({"0": 0.0, "1": 0.0})
    assert idle.imbalance is None and idle.average == 0.0
    one_hot = core_summary({str(i): (1.0 if i == 0 else 0.0) for i in range(4)})
    assert one_hot.imbalance == pytest.approx(math.sqrt(3))


def test_memory_rates():
    # pswpin +250 pages of 4096 B over 10 s; pgpgin +20000 KiB.
    assert counter_rate(1000, 1250, 10.0, 4096) == pytest.approx(102400.0)
    assert counter_rate(50000, 70000, 10.0, 1024) == pytest.approx(2048000.0)
    assert counter_rate(5, 4, 10.0) is None and counter_rate(None, 4, 10.0) is None
    assert counter_rate(1, 4, 0.0) is None


def test_psi_stall_ratio():
    assert psi_stall_ratio(1_000_000, 3_500_000, 10.0) == pytest.approx(0.25)
    assert psi_stall_ratio(0, 10_100_000, 10.0) == 1.0  # clock jitter clamp
    assert psi_stall_ratio(5, 4, 10.0) is None


ticks = st.integers(min_value=0, max_value=10**9)


@given(
    st.lists(ticks, min_size=10, max_size=10),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=10, max_size=10),
)
def test_cpu_ratios_properties(base, inc):
    p = CpuTimes("0", *base)
    c = CpuTimes("0", *(b + i for b, i in zip(base, inc, strict=True)))
    r = cpu_mode_ratios(p, c)
    if r is None:
        assert cpu_interval_ticks(p, c) <= 0
        return
    assert all(0.0 <= v for v in r.values())
    busy = cpu_busy_ratio(p, c)
    assert 0.0 <= busy <= 1.0


@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=64))
def test_core_summary_properties(values):
    s = core_summary({str(i): v for i, v in enumerate(values)})
    assert min(values) - 1e-12 <= s.average <= s.maximum + 1e-12
    assert 0 <= s.saturated <= len(values)
    if s.imbalance is not None:
        assert s.imbalance >= 0
