"""Parser for ``/proc/meminfo``.

Lines look like ``MemTotal:       16318412 kB`` or, for counts, ``HugePages_Total:       0`` (``proc(5)``,
``/proc/meminfo``). The ``kB`` unit is in fact KiB (``fs/proc/meminfo.c`` shifts page counts by
``PAGE_SHIFT - 10``), so values with a ``kB`` suffix are converted to bytes (×1024); values without a unit are
plain counts and kept as is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import ParseResult


@dataclass(frozen=True)
class MeminfoField:
    """One ``/proc/meminfo`` line.

    Attributes:
        name: the key without the colon (``"MemTotal"``, ``"HugePages_Total"``).
        value: bytes when ``is_bytes``, else a count.
        is_bytes: whether the line carried the ``kB`` unit.

    """

    name: str
    value: int
    is_bytes: bool


def parse_meminfo(text: str) -> ParseResult[MeminfoField]:
    """Parse ``/proc/meminfo``.

    Returns:
        One :class:`MeminfoField` per valid line; a line without ``key:``, with a non-integer value or an
        unknown unit is an issue.

    """
    result: ParseResult[MeminfoField] = ParseResult()
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not key.strip() or not parts or len(parts) > 2:
            result.skip(no, "expected 'Key: value [kB]'", line)
            continue
        try:
            value = int(parts[0])
        except ValueError:
            result.skip(no, "non-integer value", line)
            continue
        if len(parts) == 2 and parts[1] != "kB":
            result.skip(no, f"unknown unit {parts[1]!r}", line)
            continue
        is_bytes = len(parts) == 2
        result.records.append(MeminfoField(key.strip(), value * 1024 if is_bytes else value, is_bytes))
    return result


def meminfo_dict(result: ParseResult[MeminfoField]) -> dict[str, int]:
    """The parsed records as ``{name: value}`` (bytes for ``kB`` lines, counts otherwise)."""
    return {r.name: r.value for r in result.records}
