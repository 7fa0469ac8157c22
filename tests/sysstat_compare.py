"""Compare NØMADE's derived node figures with sysstat (iostat, mpstat) and procps (vmstat) output.

The comparisons read NØMADE values through a ``fetch(metric_name) -> {labels_tuple: value}`` callable, where
``labels_tuple`` holds the label values in the metric's declared label order (what
:meth:`nomade.exporter.metrics.MetricSet.samples` returns; ``()`` for a metric without labels). The same
functions can therefore run against a live collector (:func:`fetch_from_sets`) or against values queried from
Prometheus (build the tuples from each series' labels in declaration order).

Agreement is ``|ours - theirs| <= abs_tol + rel_tol × |theirs|`` in the tool's own unit (percent, kB/s, ms).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Fetch = Callable[[str], Mapping[tuple[str, ...], float]]


@dataclass(frozen=True)
class Check:
    """One compared figure."""

    what: str
    ours: float | None
    theirs: float
    abs_tol: float
    rel_tol: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the two values agree within the tolerance (a missing value of ours never does)."""
        if self.ours is None:
            return False
        return abs(self.ours - self.theirs) <= self.abs_tol + self.rel_tol * abs(self.theirs)

    def __str__(self) -> str:
        ours = "absent" if self.ours is None else f"{self.ours:.3f}"
        return (
            f"{'ok ' if self.ok else 'BAD'} {self.what}: ours {ours} vs {self.theirs:.3f} "
            f"(tol {self.abs_tol:g} + {self.rel_tol:.0%})"
        )


def report(checks: Iterable[Check]) -> str:
    """Multi-line text of all checks (for assertion messages)."""
    return "\n".join(str(c) for c in checks)


def fetch_from_sets(*sets: object) -> Fetch:
    """A fetch callable over :class:`~nomade.exporter.metrics.MetricSet` objects (first that declares it)."""

    def fetch(name: str) -> Mapping[tuple[str, ...], float]:
        for s in sets:
            try:
                return s.samples(name)  # type: ignore[attr-defined]
            except KeyError:
                continue
        raise KeyError(name)

    return fetch


def _one(fetch: Fetch, name: str, *labels: str) -> float | None:
    return fetch(name).get(tuple(labels))


# ----------------------------------------------------------------------------------------------- parsing


def last_iostat_report(text: str) -> dict[str, dict[str, float]]:
    """``{device: {column: value}}`` from the last report of ``iostat -x -o JSON``."""
    stats = json.loads(text)["sysstat"]["hosts"][0]["statistics"]
    disks = stats[-1]["disk"]
    return {d["disk_device"]: {k: float(v) for k, v in d.items() if k != "disk_device"} for d in disks}


def last_mpstat_report(text: str) -> dict[str, dict[str, float]]:
    """``{cpu: {column: value}}`` (cpu ``"all"``, ``"0"``...) from the last report of ``mpstat -o JSON``."""
    stats = json.loads(text)["sysstat"]["hosts"][0]["statistics"]
    return {c["cpu"]: {k: float(v) for k, v in c.items() if k != "cpu"} for c in stats[-1]["cpu-load"]}


def last_vmstat_line(text: str) -> dict[str, float]:
    """``{column: value}`` of the last data line of plain ``vmstat`` output (procps-ng, default layout)."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    header = next(ln for ln in lines if "si" in ln and "so" in ln)
    data = [ln for ln in lines if ln and ln[0].isdigit() and len(ln) == len(header)]
    return {k: float(v) for k, v in zip(header, data[-1], strict=True)}


# ------------------------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Tolerances:
    """Tolerances of the comparisons, in the tools' units.

    Attributes:
        pct_points: percent figures (%util, %usr, %sys, %iowait, %idle, per-core busy).
        rate_rel: relative tolerance of rates (r/s, w/s, kB/s, si/so/bi/bo).
        iops_abs: absolute slack of r/s and w/s.
        kbps_abs: absolute slack of kB/s figures.
        await_ms_abs / await_rel: r_await and w_await (only compared at >= ``await_min_iops``).
        queue_abs / queue_rel: aqu-sz.
        vmstat_pct_points: vmstat's integer us/sy/id/wa.
        blocked_abs: vmstat ``b`` (an instantaneous count, read at slightly different moments).
        memory_rel / memory_abs_kb: vmstat free/buff/cache (instantaneous).
    """

    pct_points: float = 5.0
    rate_rel: float = 0.05
    iops_abs: float = 2.0
    kbps_abs: float = 64.0
    await_ms_abs: float = 1.0
    await_rel: float = 0.25
    await_min_iops: float = 5.0
    queue_abs: float = 0.1
    queue_rel: float = 0.20
    vmstat_pct_points: float = 6.0
    blocked_abs: float = 2.0
    memory_rel: float = 0.05
    memory_abs_kb: float = 65536.0


def compare_iostat(
    fetch: Fetch, iostat: Mapping[str, Mapping[str, float]], devices: Iterable[str], tol: Tolerances = Tolerances()
) -> list[Check]:
    """Compare ``iostat -x`` columns of ``devices`` with the ``nomade_disk_*`` gauges."""
    checks: list[Check] = []
    for dev in devices:
        io = iostat[dev]

        def ours(name: str, scale: float = 1.0, dev: str = dev) -> float | None:
            v = _one(fetch, name, dev)
            return None if v is None else v * scale

        checks += [
            Check(f"{dev} r/s", ours("nomade_disk_read_iops"), io["r/s"], tol.iops_abs, tol.rate_rel),
            Check(f"{dev} w/s", ours("nomade_disk_write_iops"), io["w/s"], tol.iops_abs, tol.rate_rel),
            Check(
                f"{dev} rkB/s",
                ours("nomade_disk_read_bytes_per_second", 1 / 1024),
                io["rkB/s"],
                tol.kbps_abs,
                tol.rate_rel,
            ),
            Check(
                f"{dev} wkB/s",
                ours("nomade_disk_write_bytes_per_second", 1 / 1024),
                io["wkB/s"],
                tol.kbps_abs,
                tol.rate_rel,
            ),
            Check(f"{dev} aqu-sz", ours("nomade_disk_queue_size"), io["aqu-sz"], tol.queue_abs, tol.queue_rel),
            Check(f"{dev} %util", ours("nomade_disk_utilization_ratio", 100), io["util"], tol.pct_points),
        ]
        for side, rate_col in (("r", "r/s"), ("w", "w/s")):
            metric = f"nomade_disk_{'read' if side == 'r' else 'write'}_await_seconds"
            if io[rate_col] >= tol.await_min_iops:
                checks.append(
                    Check(
                        f"{dev} {side}_await", ours(metric, 1000), io[f"{side}_await"], tol.await_ms_abs, tol.await_rel
                    )
                )
    return checks


_MPSTAT_MODES = (
    ("usr", "user"),
    ("nice", "nice"),
    ("sys", "system"),
    ("iowait", "iowait"),
    ("irq", "irq"),
    ("soft", "softirq"),
    ("steal", "steal"),
    ("guest", "guest"),
    ("idle", "idle"),
)


def compare_mpstat(
    fetch: Fetch, mpstat: Mapping[str, Mapping[str, float]], tol: Tolerances = Tolerances()
) -> list[Check]:
    """Compare ``mpstat -P ALL`` with ``nomade_cpu_mode_ratio`` (all row) and ``nomade_cpu_core_busy_ratio``."""
    checks = []
    for col, mode in _MPSTAT_MODES:
        v = _one(fetch, "nomade_cpu_mode_ratio", mode)
        checks.append(Check(f"all %{col}", None if v is None else v * 100, mpstat["all"][col], tol.pct_points))
    for cpu, row in mpstat.items():
        if cpu == "all":
            continue
        v = _one(fetch, "nomade_cpu_core_busy_ratio", cpu)
        checks.append(
            Check(f"cpu{cpu} busy", None if v is None else v * 100, 100 - row["idle"] - row["iowait"], tol.pct_points)
        )
    for name, theirs in (
        ("nomade_cpu_busy_max_ratio", max(100 - r["idle"] - r["iowait"] for c, r in mpstat.items() if c != "all")),
        ("nomade_cpu_busy_average_ratio", 100 - mpstat["all"]["idle"] - mpstat["all"]["iowait"]),
    ):
        v = _one(fetch, name)
        checks.append(Check(name, None if v is None else v * 100, theirs, tol.pct_points))
    return checks


def compare_vmstat(fetch: Fetch, vm: Mapping[str, float], tol: Tolerances = Tolerances()) -> list[Check]:
    """Compare the last ``vmstat`` interval line with the ``nomade_memory_*`` and ``nomade_cpu_mode_ratio`` gauges.

    procps maps: si/so/bi/bo in KiB/s; ``us`` = user + nice (guest included), ``sy`` = system + irq + softirq,
    ``id`` = idle, ``wa`` = iowait; ``b`` = procs_blocked; free/buff/cache in KiB with cache = Cached +
    SReclaimable.
    """

    def kb(name: str) -> float | None:
        v = _one(fetch, name)
        return None if v is None else v / 1024

    modes = {k[0]: v * 100 for k, v in fetch("nomade_cpu_mode_ratio").items()}

    def pct(*names: str) -> float | None:
        return sum(modes[n] for n in names) if all(n in modes for n in names) else None

    return [
        Check("vmstat si", kb("nomade_memory_swap_in_bytes_per_second"), vm["si"], tol.kbps_abs, tol.rate_rel),
        Check("vmstat so", kb("nomade_memory_swap_out_bytes_per_second"), vm["so"], tol.kbps_abs, tol.rate_rel),
        Check("vmstat bi", kb("nomade_memory_paged_in_bytes_per_second"), vm["bi"], tol.kbps_abs, tol.rate_rel),
        Check("vmstat bo", kb("nomade_memory_paged_out_bytes_per_second"), vm["bo"], tol.kbps_abs, tol.rate_rel),
        Check("vmstat b", _one(fetch, "nomade_memory_procs_blocked"), vm["b"], tol.blocked_abs),
        Check("vmstat us", pct("user", "nice", "guest", "guest_nice"), vm["us"], tol.vmstat_pct_points),
        Check("vmstat sy", pct("system", "irq", "softirq"), vm["sy"], tol.vmstat_pct_points),
        Check("vmstat id", pct("idle"), vm["id"], tol.vmstat_pct_points),
        Check("vmstat wa", pct("iowait"), vm["wa"], tol.vmstat_pct_points),
        Check("vmstat free", kb("nomade_memory_free_bytes"), vm["free"], tol.memory_abs_kb, tol.memory_rel),
        Check("vmstat buff", kb("nomade_memory_buffers_bytes"), vm["buff"], tol.memory_abs_kb, tol.memory_rel),
        Check("vmstat cache", kb("nomade_memory_cache_bytes"), vm["cache"], tol.memory_abs_kb, tol.memory_rel),
    ]
