"""Parser for a Pressure Stall Information file (``/proc/pressure/{cpu,memory,io}``).

Format (kernel ``Documentation/accounting/psi.rst``)::

    some avg10=0.00 avg60=0.00 avg300=0.00 total=0
    full avg10=0.00 avg60=0.00 avg300=0.00 total=0

``some`` is the share of wall time in which at least one task was stalled on the resource, ``full`` the share
in which all non-idle tasks were stalled at once. ``avg10/60/300`` are the kernel's running averages in
percent over 10 s, 60 s and 300 s; ``total`` is the cumulative stall time in microseconds. The ``full`` line
of ``cpu`` exists only since kernel 5.13 (and is always zero at system level).
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import ParseResult

_KEYS = ("avg10", "avg60", "avg300", "total")


@dataclass(frozen=True)
class PressureLine:
    """One PSI line.

    Attributes:
        kind: ``"some"`` or ``"full"``.
        avg10: running average over 10 s, as a ratio 0-1 (the file's percent divided by 100).
        avg60: same over 60 s.
        avg300: same over 300 s.
        total_us: cumulative stall time in microseconds.

    """

    kind: str
    avg10: float
    avg60: float
    avg300: float
    total_us: int


def parse_pressure(text: str) -> ParseResult[PressureLine]:
    """Parse one ``/proc/pressure/<resource>`` file.

    Returns:
        The ``some`` and (when present) ``full`` lines; a line with an unknown kind, a missing key or a
        non-numeric value is an issue.

    """
    result: ParseResult[PressureLine] = ParseResult()
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        kind = parts[0]
        if kind not in ("some", "full"):
            result.skip(no, f"unknown PSI line kind {kind!r}", line)
            continue
        fields: dict[str, str] = {}
        for item in parts[1:]:
            key, sep, value = item.partition("=")
            if sep:
                fields[key] = value
        if any(k not in fields for k in _KEYS):
            result.skip(no, "missing avg10/avg60/avg300/total", line)
            continue
        try:
            avgs = [float(fields[k]) / 100.0 for k in _KEYS[:3]]
            total = int(fields["total"])
        except ValueError:
            result.skip(no, "non-numeric PSI value", line)
            continue
        if total < 0 or any(not 0.0 <= a <= 1.0 for a in avgs):
            result.skip(no, "PSI value out of range", line)
            continue
        result.records.append(PressureLine(kind, avgs[0], avgs[1], avgs[2], total))
    return result


def pressure_by_kind(result: ParseResult[PressureLine]) -> dict[str, PressureLine]:
    """Index parsed PSI lines by kind (``{"some": ..., "full": ...}``); a repeated kind keeps the last."""
    return {r.kind: r for r in result.records}
