"""Parser for ``/proc/diskstats`` (block-device I/O counters).

Field layout (kernel ``Documentation/admin-guide/iostats.rst``, section "Disk statistics"): each line is
``major minor name`` followed by

====  ==========================================  ===========
 n    field                                        since
====  ==========================================  ===========
 1    reads completed successfully                 2.6
 2    reads merged                                 2.6
 3    sectors read                                 2.6
 4    time spent reading (ms)                      2.6
 5    writes completed                             2.6
 6    writes merged                                2.6
 7    sectors written                              2.6
 8    time spent writing (ms)                      2.6
 9    I/Os currently in progress (a gauge)         2.6
 10   time spent doing I/Os (ms, "io_ticks")       2.6
 11   weighted time spent doing I/Os (ms)          2.6
 12   discards completed                           4.18
 13   discards merged                              4.18
 14   sectors discarded                            4.18
 15   time spent discarding (ms)                   4.18
 16   flush requests completed                     5.5
 17   time spent flushing (ms)                     5.5
====  ==========================================  ===========

So a line has 14, 18 or 20 whitespace-separated fields. A "sector" here is always 512 bytes whatever the
device's real sector size (iostats.rst; the block layer counts in 512-byte units). Lines with fewer than 14
fields (the 7-field partition format of kernels before 2.6.25) or with non-integer values are skipped and
reported as issues; extra trailing fields from future kernels are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import ParseResult

SECTOR_BYTES = 512
"""Bytes per diskstats sector (always 512, ``Documentation/admin-guide/iostats.rst``)."""


@dataclass(frozen=True)
class DiskStats:
    """One ``/proc/diskstats`` line. Counts are cumulative since boot; times are milliseconds.

    The discard and flush fields are ``None`` on kernels that do not report them (before 4.18 and 5.5).
    """

    major: int
    minor: int
    device: str
    reads_completed: int
    reads_merged: int
    sectors_read: int
    read_time_ms: int
    writes_completed: int
    writes_merged: int
    sectors_written: int
    write_time_ms: int
    io_in_progress: int
    io_time_ms: int
    io_weighted_time_ms: int
    discards_completed: int | None = None
    discards_merged: int | None = None
    sectors_discarded: int | None = None
    discard_time_ms: int | None = None
    flushes_completed: int | None = None
    flush_time_ms: int | None = None


def parse_diskstats(text: str) -> ParseResult[DiskStats]:
    """Parse the text of ``/proc/diskstats``.

    Args:
        text: the file's content.

    Returns:
        One :class:`DiskStats` per valid line, in file order; one issue per skipped non-empty line.

    """
    result: ParseResult[DiskStats] = ParseResult()
    for no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 14:
            result.skip(no, f"expected at least 14 fields, got {len(parts)}", line)
            continue
        try:
            nums = [int(p) for p in parts[:2]] + [int(p) for p in parts[3:20]]
        except ValueError:
            result.skip(no, "non-integer field", line)
            continue
        if any(n < 0 for n in nums):
            result.skip(no, "negative counter", line)
            continue
        v = nums[2:]
        extra: list[int | None] = [None] * 6
        if len(v) >= 15:
            extra[0:4] = v[11:15]
        if len(v) >= 17:
            extra[4:6] = v[15:17]
        result.records.append(DiskStats(nums[0], nums[1], parts[2], *v[:11], *extra))
    return result
