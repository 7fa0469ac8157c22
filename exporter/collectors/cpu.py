"""CPU collector (node mode): ``/proc/stat`` tick counters and ``mpstat`` figures, plus CPU PSI.

Counters come from a fresh read on every scrape. The mpstat figures (all-CPU mode shares, per-core busy,
average, maximum, imbalance, saturated cores) cover the interval between the last two readings of a
background sampler (option ``sample_interval``); see :mod:`nomade.exporter.derived` for the formulas.
"""

from __future__ import annotations

import os

from ..derived import SATURATED_BUSY_RATIO, core_summary, cpu_busy_ratio, cpu_mode_ratios
from ..metrics import MetricSet, MetricSpec
from ..parsers.common import ParseResult
from ..parsers.proc_pressure import PressureLine
from ..parsers.proc_stat import ProcStat, parse_stat
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

COUNTER_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
"""Modes of ``nomade_cpu_seconds_total``: the /proc/stat columns whose sum is the CPU's elapsed time
(guest and guest_nice are inside user and nice and go to ``nomade_cpu_guest_seconds_total``)."""


class CpuCollector(Collector):
    """CPU time counters and mpstat figures.

    Options (``[collector.cpu]``):
        sample_interval: seconds between background readings (default 15).
        saturation_threshold: busy ratio above which a core counts as saturated (default 0.95).
        user_hz: ticks per second of /proc/stat (default ``sysconf(_SC_CLK_TCK)``, 100 in practice); only
            useful with a fixture ``proc_root``.

    Busy ratio of a core = ``1 - %idle - %iowait`` (:func:`~nomade.exporter.derived.cpu_busy_ratio`).
    """

    name = "cpu"
    mode = "node"
    description = "CPU time per mode and mpstat figures from /proc/stat."
    metrics = (
        MetricSpec(
            "nomade_cpu_seconds_total",
            "counter",
            "CPU time per CPU and mode since boot (/proc/stat; user and nice include guest time).",
            ("cpu", "mode"),
            "seconds",
        ),
        MetricSpec(
            "nomade_cpu_guest_seconds_total",
            "counter",
            "Time spent running guests per CPU (mode user: guest, nice: guest_nice), already counted in "
            "nomade_cpu_seconds_total user/nice.",
            ("cpu", "mode"),
            "seconds",
        ),
        MetricSpec("nomade_cpu_count", "gauge", "Online CPUs (cpuN lines of /proc/stat)."),
        MetricSpec("nomade_cpu_context_switches_total", "counter", "Context switches since boot (ctxt)."),
        MetricSpec("nomade_cpu_forks_total", "counter", "Processes and threads created since boot (processes)."),
        MetricSpec("nomade_cpu_interrupts_total", "counter", "Interrupts serviced since boot (intr)."),
        MetricSpec("nomade_cpu_boot_time_seconds", "gauge", "System boot time, Unix seconds (btime).", (), "seconds"),
        MetricSpec(
            "nomade_cpu_mode_ratio",
            "gauge",
            "Share of all CPUs' time per mode over the sampling interval (mpstat 'all' row / 100; "
            "user and nice exclude guest time).",
            ("mode",),
            "ratio",
        ),
        MetricSpec(
            "nomade_cpu_core_busy_ratio",
            "gauge",
            "Busy share of one core over the sampling interval: 1 - (%idle + %iowait) / 100.",
            ("cpu",),
            "ratio",
        ),
        MetricSpec("nomade_cpu_busy_average_ratio", "gauge", "Mean of the per-core busy ratios.", (), "ratio"),
        MetricSpec("nomade_cpu_busy_max_ratio", "gauge", "Busy ratio of the busiest core.", (), "ratio"),
        MetricSpec(
            "nomade_cpu_imbalance_ratio",
            "gauge",
            "Spread of per-core busy ratios: population std / mean (0 = balanced).",
            (),
            "ratio",
        ),
        MetricSpec(
            "nomade_cpu_saturated_cores",
            "gauge",
            "Cores busier than the saturation threshold (default 0.95) over the sampling interval.",
        ),
        MetricSpec(
            "nomade_cpu_saturation_threshold_ratio",
            "gauge",
            "Busy ratio above which a core counts in nomade_cpu_saturated_cores.",
            (),
            "ratio",
        ),
        *pressure_specs("nomade_cpu_pressure", "CPU"),
        MetricSpec(
            "nomade_cpu_sample_interval_seconds", "gauge", "Length of the interval the CPU ratios cover.", (), "seconds"
        ),
    )

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self.user_hz = float(self.option("user_hz", 0)) or float(os.sysconf("SC_CLK_TCK"))
        self.threshold = float(self.option("saturation_threshold", SATURATED_BUSY_RATIO))
        # (text, parse) of the last /proc/stat read, see _parse_stat().
        self._stat_parsed: tuple[str, ParseResult[ProcStat]] | None = None
        self.sampler: Sampler[tuple[ProcStat, dict[str, PressureLine] | None]] = Sampler(
            self._read_sample, float(self.option("sample_interval", DEFAULT_SAMPLE_INTERVAL)), name="cpu"
        )
        self.sampler.start()

    def _parse_stat(self, text: str) -> ParseResult[ProcStat]:
        """``parse_stat(text)``, reusing the previous result when the text is the same.

        The sampler and collect() both read ``/proc/stat``; on a live node the tick counters differ at every
        read (one failed string comparison), while a static tree (the simulator's scrape right after its
        sample) is parsed once. The result is shared, never mutated.
        """
        cached = self._stat_parsed
        if cached is not None and cached[0] == text:
            return cached[1]
        result = parse_stat(text)
        self._stat_parsed = (text, result)
        return result

    def _read_sample(self) -> tuple[ProcStat, dict[str, PressureLine] | None]:
        stat = self._parse_stat(read_proc_text(self.ctx.proc_root, "stat")).records[0]
        psi, _ = read_pressure(self.ctx.proc_root, "cpu")
        return stat, psi

    def collect(self, out: MetricSet) -> None:
        """Fill ``out``; raises CollectorError when /proc/stat cannot be read or has no CPU line."""
        result = self._parse_stat(read_proc_text(self.ctx.proc_root, "stat"))
        psi, psi_issues = read_pressure(self.ctx.proc_root, "cpu")
        self.count_parse_errors(len(result.issues) + psi_issues)
        stat = result.records[0]
        if not stat.cpus:
            raise CollectorError("/proc/stat: no cpu line")
        hz = self.user_hz
        per_cpu = [c for c in stat.cpus if c.cpu != "all"]
        for c in per_cpu:
            ticks = c.as_dict()
            for mode in COUNTER_MODES:
                if mode in ticks:
                    out.add("nomade_cpu_seconds_total", ticks[mode] / hz, cpu=c.cpu, mode=mode)
            if "guest" in ticks:
                out.add("nomade_cpu_guest_seconds_total", ticks["guest"] / hz, cpu=c.cpu, mode="user")
            if "guest_nice" in ticks:
                out.add("nomade_cpu_guest_seconds_total", ticks["guest_nice"] / hz, cpu=c.cpu, mode="nice")
        out.add("nomade_cpu_count", len(per_cpu))
        v = stat.values
        out.add("nomade_cpu_context_switches_total", v.get("ctxt"))
        out.add("nomade_cpu_forks_total", v.get("processes"))
        out.add("nomade_cpu_interrupts_total", v.get("intr"))
        out.add("nomade_cpu_boot_time_seconds", v.get("btime"))
        add_pressure_counters(out, "nomade_cpu_pressure", psi)
        self._add_ratios(out)

    def _add_ratios(self, out: MetricSet) -> None:
        out.add("nomade_cpu_saturation_threshold_ratio", self.threshold)
        fresh = self.sampler.fresh_pair()
        if fresh is None:
            return
        prev, cur, dt = fresh
        out.add("nomade_cpu_sample_interval_seconds", dt)
        (s0, psi0), (s1, psi1) = prev.value, cur.value
        all0, all1 = s0.cpu("all"), s1.cpu("all")
        if all0 is not None and all1 is not None:
            for mode, ratio in (cpu_mode_ratios(all0, all1) or {}).items():
                out.add("nomade_cpu_mode_ratio", ratio, mode=mode)
        busy: dict[str, float] = {}
        before = {c.cpu: c for c in s0.cpus}
        for c1 in s1.cpus:
            if c1.cpu == "all":
                continue
            c0 = before.get(c1.cpu)
            b = cpu_busy_ratio(c0, c1) if c0 is not None else None
            if b is not None:
                busy[c1.cpu] = b
                out.add("nomade_cpu_core_busy_ratio", b, cpu=c1.cpu)
        summary = core_summary(busy, self.threshold)
        if summary is not None:
            out.add("nomade_cpu_busy_average_ratio", summary.average)
            out.add("nomade_cpu_busy_max_ratio", summary.maximum)
            out.add("nomade_cpu_imbalance_ratio", summary.imbalance)
            out.add("nomade_cpu_saturated_cores", summary.saturated)
        for kind, ratio in psi_ratios(psi0, psi1, dt).items():
            out.add("nomade_cpu_pressure_stall_ratio", ratio, kind=kind)

    def close(self) -> None:
        """Stop the background sampler."""
        self.sampler.stop()


COLLECTOR = CpuCollector
