"""Parser for ``/proc/stat`` (kernel/system statistics).

Layout (``proc(5)``, ``/proc/stat``; ``fs/proc/stat.c``):

- ``cpu  user nice system idle iowait irq softirq steal guest guest_nice`` — the sum over all CPUs, then one
  ``cpuN`` line per online CPU. Values are in USER_HZ ticks (``sysconf(_SC_CLK_TCK)``, 100 on all common
  platforms). ``iowait`` appeared in 2.5.41, ``irq``/``softirq`` in 2.6.0, ``steal`` in 2.6.11, ``guest`` in
  2.6.24, ``guest_nice`` in 2.6.33; missing trailing fields read as 0, as sysstat does. **guest and
  guest_nice are already included in user and nice** (``kernel/sched/cputime.c`` adds guest time to both), so
  a sum over all ten fields counts guest time twice.
- ``intr N ...`` (first number = total interrupts), ``ctxt``, ``btime``, ``processes`` (forks since boot),
  ``procs_running``, ``procs_blocked`` (tasks in uninterruptible sleep, vmstat's ``b``), ``softirq N ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .common import ParseResult

CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
"""The per-CPU tick columns of ``/proc/stat`` in file order."""


@dataclass(frozen=True)
class CpuTimes:
    """One ``cpu``/``cpuN`` line, in USER_HZ ticks (cumulative since boot).

    Attributes:
        cpu: ``"all"`` for the aggregate ``cpu`` line, else the CPU number as text (``"0"``, ``"1"``...).
        fields: how many tick columns the line had (4 to 10); absent columns are 0.

    """

    cpu: str
    user: int
    nice: int
    system: int
    idle: int
    iowait: int = 0
    irq: int = 0
    softirq: int = 0
    steal: int = 0
    guest: int = 0
    guest_nice: int = 0
    fields: int = 10

    def as_dict(self) -> dict[str, int]:
        """The tick columns as ``{name: ticks}`` (only those the kernel printed)."""
        return {name: getattr(self, name) for name in CPU_FIELDS[: self.fields]}


@dataclass
class ProcStat:
    """Parsed ``/proc/stat``.

    Attributes:
        cpus: the CPU lines in file order (``all`` first on a real kernel).
        values: the single-number lines (``ctxt``, ``btime``, ``processes``, ``procs_running``,
            ``procs_blocked``) and the first number (the total) of ``intr`` and ``softirq``.

    """

    cpus: list[CpuTimes] = field(default_factory=list)
    values: dict[str, int] = field(default_factory=dict)

    def cpu(self, name: str) -> CpuTimes | None:
        """The line for CPU ``name`` (``"all"`` for the aggregate), or None."""
        for c in self.cpus:
            if c.cpu == name:
                return c
        return None


_SCALARS = ("ctxt", "btime", "processes", "procs_running", "procs_blocked", "intr", "softirq")


def parse_stat(text: str) -> ParseResult[ProcStat]:
    """Parse the text of ``/proc/stat``.

    Returns:
        A result with exactly one :class:`ProcStat` record (possibly empty) and one issue per malformed
        ``cpu*`` or known scalar line. Unknown keys (``page``, ``swap`` of 2.4 kernels) are ignored.

    """
    result: ParseResult[ProcStat] = ParseResult()
    stat = ProcStat()
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        key = parts[0]
        if key.startswith("cpu"):
            suffix = key[3:]
            if suffix and not suffix.isdigit():
                result.skip(no, f"bad CPU name {key!r}", line)
                continue
            nums = parts[1:11]
            if len(nums) < 4:
                result.skip(no, f"expected at least 4 CPU columns, got {len(nums)}", line)
                continue
            try:
                ticks = [int(n) for n in nums]
            except ValueError:
                result.skip(no, "non-integer CPU ticks", line)
                continue
            if any(t < 0 for t in ticks):
                result.skip(no, "negative CPU ticks", line)
                continue
            stat.cpus.append(CpuTimes(suffix or "all", *ticks, fields=len(ticks)))  # type: ignore[arg-type]
        elif key in _SCALARS:
            try:
                stat.values[key] = int(parts[1])
            except (IndexError, ValueError):
                result.skip(no, f"bad {key} value", line)
    result.records.append(stat)
    return result
