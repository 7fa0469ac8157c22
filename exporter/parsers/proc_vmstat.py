"""Parser for ``/proc/vmstat`` (virtual-memory counters, ``name value`` pairs).

Semantics of the names used by NØMADE (``proc(5)``, ``/proc/vmstat``; ``mm/vmstat.c``):
``pswpin``/``pswpout`` pages swapped in/out since boot (procps ``vmstat`` si/so are their per-second deltas
times the page size); ``pgpgin``/``pgpgout`` data paged in/out since boot **in KiB** (procps ``vmstat`` bi/bo);
``pgfault``/``pgmajfault`` page faults; ``oom_kill`` OOM-killer invocations (since 4.13). Values are
unsigned 64-bit counters, except a few ``nr_*`` gauges.
"""

from __future__ import annotations

from .common import ParseResult


def parse_vmstat(text: str) -> ParseResult[tuple[str, int]]:
    """Parse ``/proc/vmstat``.

    Returns:
        ``(name, value)`` records in file order; lines that are not exactly two fields with an integer
        value are issues.

    """
    result: ParseResult[tuple[str, int]] = ParseResult()
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            result.skip(no, f"expected 2 fields, got {len(parts)}", line)
            continue
        try:
            value = int(parts[1])
        except ValueError:
            result.skip(no, "non-integer value", line)
            continue
        result.records.append((parts[0], value))
    return result


def vmstat_dict(result: ParseResult[tuple[str, int]]) -> dict[str, int]:
    """The parsed records as a ``{name: value}`` dict (a repeated name keeps the last value)."""
    return dict(result.records)
